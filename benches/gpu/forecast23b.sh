#!/usr/bin/env bash
# forecast23.sh, then each store's runs as CSV (dump_runs.py) and the plans, to $OUT.
set -u
timeout "${T:-470}" bash benches/gpu/forecast23.sh > /tmp/f23.txt 2>&1
cp /tmp/f23.txt "$OUT/forecast-log.txt"
python3 benches/gpu/dump_runs.py /tmp/c/probes.db /tmp/fc/*.db > "$OUT/runs.csv"
cat /tmp/fc/*.plan > "$OUT/plans.txt"

#!/usr/bin/env bash
# The executors' measurement on one GPU: benches/jobs_sweep.toml (8 runs of 300 steps) with
# --jobs 1, 2 and 4, after one short run has filled CubeCL's caches; wall time of each `xp run`,
# and every run's record (device, tokens/s, start and end) as JSON.
set -u
XP_TIMEOUT=150
. benches/gpu/setup.sh xp
x warm /tmp/xp bench train --preset shakespeare-char --device vulkan --steps 30 --warmup 10
for j in 1 2 4; do
  s=$(date +%s.%N)
  (cd /tmp && timeout 250 /tmp/xp --db /tmp/jobs$j.db run "$OLDPWD/benches/jobs_sweep.toml" --jobs $j > "$OUT/jobs$j.txt" 2>&1)
  rc=$?
  e=$(date +%s.%N)
  echo "== --jobs $j: rc=$rc wall $(python3 -c "print(round($e-$s,1))") s; $(tail -1 "$OUT/jobs$j.txt")"
  /tmp/xp --db /tmp/jobs$j.db runs --format json > "$OUT/jobs$j.json"
  python3 - "$OUT/jobs$j.json" <<'PY'
import json, sys
runs = json.load(open(sys.argv[1]))
for r in runs:
    e = r["provenance"].get("executed") or {}
    print(r["id"], r["status"], r["attempts"], round(r["summary"]["median_tokens_per_s"] or 0),
          e.get("pid"), e.get("device"), r["started_at"][11:23], r["finished_at"][11:23])
PY
done

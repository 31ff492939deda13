#!/usr/bin/env bash
# The precision check on xp's fastest path: the SPIR-V build, f32 vs f16, two seeds, 500 steps.
set -u
. benches/gpu/setup.sh xp_spirv
timeout 560 /tmp/xp_spirv --db /tmp/pc.db run experiments/precision_check.toml --set hardware.device=vulkan > $OUT/pc_run.txt 2>&1; echo rc=$?; grep -E "completed|failed|started" $OUT/pc_run.txt
/tmp/xp_spirv --db /tmp/pc.db compare run-1 run-2 run-3 run-4 --plot $OUT/precision.svg > $OUT/pc_compare.txt 2>&1; sed -n 1,20p $OUT/pc_compare.txt
cp /tmp/pc.db $OUT/pc.db

#!/usr/bin/env bash
# Run after first_lease_1.sh on the same machine (it unpacked the binaries and filled CubeCL's
# caches): the precision check (WGSL build), SPIR-V f16, then second starts.
set -u
REPO=$PWD
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json XP_CACHE=/tmp/c
echo "== precision check (wgsl build)"
timeout 330 /tmp/xp --db /tmp/pc.db run experiments/precision_check.toml --set hardware.device=vulkan > $OUT/pc_run.txt 2>&1; echo rc=$?; tail -4 $OUT/pc_run.txt
/tmp/xp --db /tmp/pc.db compare run-1 run-2 run-3 run-4 --plot $OUT/precision.svg > $OUT/pc_compare.txt 2>&1; head -30 $OUT/pc_compare.txt
cp /tmp/pc.db $OUT/pc.db
cd /tmp
B="bench train --preset shakespeare-char --device vulkan"
echo "== spirv f16"; timeout 150 /tmp/xp_spirv $B --steps 200 --warmup 50 --set hardware.precision=f16 > $OUT/spirv_f16.txt 2>&1; grep -E "first step|tokens/s|step time|^loss|rror" $OUT/spirv_f16.txt; tail -2 $OUT/spirv_f16.txt
for p in f32 f16; do echo "== second start spirv $p"; timeout 60 /tmp/xp_spirv $B --steps 30 --warmup 10 --set hardware.precision=$p 2>&1 | grep -E "first step|tokens/s"; done
du -sh /tmp/c/cubecl; ls /tmp/c/cubecl

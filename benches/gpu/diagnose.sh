#!/usr/bin/env bash
# Finding the wrong kernel of issue 19: the conformance check's ops and forwards at the lengths
# around the failure (batch 1, 3 and 7), in f32, with SPIR-V kernels compiled as launched
# (CUBECL_SPIRV_UNCHECKED=1: unchecked where burn launches them unchecked) and then
# bounds-checked (xp's default, vendor/cubecl-wgpu/XP-PATCH.md), each with fresh caches; the
# autotune log of the first (which kernel each matmul key got), in order. $OUT/results.tar.xz.
set -u
. benches/gpu/setup.sh xp
R=/tmp/res; mkdir -p $R
REPO=$PWD
cd /tmp
L=--lengths=129,170,171,172,255,256
for mode in unchecked checked; do
  vars=(XP_CACHE=/tmp/c_$mode); [ $mode = unchecked ] && vars+=(CUBECL_SPIRV_UNCHECKED=1 CUBECL_DEBUG_LOG=/tmp/cubecl_$mode.log)
  mkdir -p /tmp/c_$mode/datasets; cp "$REPO/.dev/tinyshakespeare.txt" /tmp/c_$mode/datasets/
  s=$(date +%s)
  env "${vars[@]}" timeout 130 /tmp/xp bench conformance --device vulkan --precision f32 --quick --skip-units $L \
    --cases $R/cases_$mode.csv --out $R/table_$mode.md > $R/$mode.txt 2>&1
  echo "== $mode: exit $? after $(( $(date +%s) - s )) s"; grep -E "FAIL|cases, " $R/table_$mode.md || tail -5 $R/$mode.txt
  tar -cJf "$OUT/results.tar.xz" -C $R .
done
grep -E "look up key=Matmul|Autotune\[|Short circuit|fastest|Fastest" /tmp/cubecl_unchecked.log | grep -v "skipped manually" | head -3000 > $R/autotune_unchecked.txt
tar -cJf "$OUT/results.tar.xz" -C $R .

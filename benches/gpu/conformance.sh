#!/usr/bin/env bash
# The GPU conformance check (`xp bench conformance`) on the GPU box, in one call: xp's model on
# Vulkan (SPIR-V) against the CPU backend in f32 and f16; then the short list of shapes (a) with
# the same kernels compiled to WGSL on the same GPU (CUBECL_WGPU_WGSL=1, the vendored
# cubecl-wgpu's switch: a SPIR-V compiler fault or a kernel's?) and (b) with burn's fusions of
# reductions and element-wise work turned off in turn (XP_FUSION_OFF: which fused kernel?).
# Tables and every case come back in $OUT/results.tar.xz, packed after each step so that a run
# cut short still returns what it did. Arguments: extra flags for the full SPIR-V runs.
set -u
. benches/gpu/setup.sh xp
R=/tmp/res; mkdir -p $R
pack() { tar -cJf "$OUT/results.tar.xz" -C $R . ; }
cd /tmp
/tmp/xp profiles > "$R/profiles.txt" 2>&1; cat "$R/profiles.txt"
# check NAME TIMEOUT [VAR=VALUE…] -- XP-FLAGS…
check() {
  local name=$1 t=$2; shift 2; local vars=()
  while [ "$1" != "--" ]; do vars+=("$1"); shift; done; shift
  echo "== $name ${vars[*]} $*"
  local s=$(date +%s)
  env "${vars[@]}" timeout "$t" /tmp/xp bench conformance --device vulkan \
    --cases "$R/cases_$name.csv" --out "$R/table_$name.md" "$@" > "$R/$name.txt" 2>&1
  echo "exit $? after $(( $(date +%s) - s )) s"
  grep -E "FAIL|cases, " "$R/table_$name.md" 2>/dev/null | head -30 || tail -20 "$R/$name.txt"
  pack
}
check spirv_f32 ${T_F32:-240} CUBECL_DEBUG_LOG=/tmp/cubecl_f32.log -- --precision f32 "$@"
grep -i "autotune\|fastest" /tmp/cubecl_f32.log 2>/dev/null | sort | uniq -c | sort -rn | head -400 > "$R/autotune_f32.txt"
check wgsl_f32 90 CUBECL_WGPU_WGSL=1 -- --precision f32 --quick
check nofuse_rb_f32 60 XP_FUSION_OFF=ReduceBroadcasted -- --precision f32 --quick
check nofuse_all_f32 60 XP_FUSION_OFF=ReduceBroadcasted,Reduce,ElementWise -- --precision f32 --quick
check spirv_f16 ${T_F16:-150} -- --precision f16 --train-steps 0 "$@"

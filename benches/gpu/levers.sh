#!/usr/bin/env bash
# Issue 13's table, part 2: each lever alone, every configuration cold. The compiler
# (CUBECL_WGPU_WGSL=1: WGSL instead of SPIR-V, the vendored cubecl-wgpu's switch), matmul
# fusion (XP_MATMUL_FUSION=on: burn's default), precision. $1 picks the half to run.
set -u
XP_TIMEOUT=230
. benches/gpu/setup.sh xp
B="bench train --preset shakespeare-char --device vulkan --steps 300 --warmup 50"
case "${1:-a}" in
  a)
    cold spirv_f16_fused XP_MATMUL_FUSION=on -- $B --set hardware.precision=f16
    cold wgsl_f32_fused CUBECL_WGPU_WGSL=1 XP_MATMUL_FUSION=on -- $B --set hardware.precision=f32
    ;;
  b)
    cold wgsl_f32 CUBECL_WGPU_WGSL=1 -- $B --set hardware.precision=f32
    cold wgsl_f16 CUBECL_WGPU_WGSL=1 -- $B --set hardware.precision=f16
    ;;
esac

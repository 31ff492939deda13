#!/usr/bin/env bash
# The side-by-side table in one command: xp's fastest path (SPIR-V f16) and default path (WGSL
# f32) against PyTorch fp32 and bf16, cold machine; then the fastest path's second start.
set -u
XP_TIMEOUT=200
. benches/gpu/setup.sh xp xp_spirv
B="bench train --preset shakespeare-char --device vulkan --steps 300 --warmup 50"
x spirv_f16 /tmp/xp_spirv $B --set hardware.precision=f16
T="python3 benches/torch_reference.py --data .dev/tinyshakespeare.txt --unit glu --alpha 1.0 --steps 300 --log-every 10 --eval-every 300 --eval-batches 1"
echo "== torch fp32"; timeout 100 $T > $OUT/torch_fp32.jsonl; head -1 $OUT/torch_fp32.jsonl; tail -1 $OUT/torch_fp32.jsonl
echo "== torch bf16"; timeout 100 $T --dtype bf16 > $OUT/torch_bf16.jsonl; tail -1 $OUT/torch_bf16.jsonl
x wgsl_f32 /tmp/xp $B
x spirv_f16_second /tmp/xp_spirv bench train --preset shakespeare-char --device vulkan --steps 30 --warmup 10 --set hardware.precision=f16
x spirv_f16_third /tmp/xp_spirv bench train --preset shakespeare-char --device vulkan --steps 30 --warmup 10 --set hardware.precision=f16
du -sh /tmp/c/cubecl

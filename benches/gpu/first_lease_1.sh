#!/usr/bin/env bash
# Side by side, one lease: xp WGSL f32/f16, PyTorch fp32/bf16, xp SPIR-V f32/f16 (cold caches).
set -u
. benches/gpu/setup.sh xp xp_spirv
REPO=$PWD
B="bench train --preset shakespeare-char --device vulkan --steps 300 --warmup 50"
x wgsl_f32 /tmp/xp $B
x wgsl_f16 /tmp/xp $B --set hardware.precision=f16
T="python3 benches/torch_reference.py --data .dev/tinyshakespeare.txt --unit glu --alpha 1.0 --steps 300 --log-every 10 --eval-every 300 --eval-batches 1"
echo "== torch fp32"; timeout 120 $T > $OUT/torch_fp32.jsonl; head -1 $OUT/torch_fp32.jsonl; tail -1 $OUT/torch_fp32.jsonl
echo "== torch bf16"; timeout 120 $T --dtype bf16 > $OUT/torch_bf16.jsonl; tail -1 $OUT/torch_bf16.jsonl
x spirv_f32 /tmp/xp_spirv $B
x spirv_f16 /tmp/xp_spirv $B --set hardware.precision=f16
ls -la /tmp/c/cubecl 2>&1 | head

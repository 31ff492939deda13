#!/usr/bin/env bash
# Run on the GPU box from the repository root, with .dev/ holding xp.xz (default build),
# xp_spirv.xz (--features spirv,persistent-cache), both stripped and xz-compressed, and
# tinyshakespeare.txt; .gl/ holds the Vulkan loader packages (the device tool's README).
# Side by side, one lease: xp WGSL f32/f16, PyTorch fp32/bf16, xp SPIR-V f32/f16 (cold caches).
set -u
for f in .gl/*.deb; do dpkg -x $f /; done; ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
for b in xp xp_spirv; do python3 -c "import lzma,shutil; shutil.copyfileobj(lzma.open('.dev/$b.xz'), open('/tmp/$b','wb'))"; chmod +x /tmp/$b; done
mkdir -p /tmp/c/datasets && cp .dev/tinyshakespeare.txt /tmp/c/datasets/
export XP_CACHE=/tmp/c PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
REPO=$PWD
B="bench train --preset shakespeare-char --device vulkan --steps 300 --warmup 50"
x() { out=$1; shift; echo "== $out: $*"; (cd /tmp && timeout 240 "$@" > $OUT/$out.txt 2>&1); grep -E "device|first step|tokens/s|step time|peak|^loss|rror" $OUT/$out.txt; }
x wgsl_f32 /tmp/xp $B
x wgsl_f16 /tmp/xp $B --set hardware.precision=f16
T="python3 benches/torch_reference.py --data .dev/tinyshakespeare.txt --unit glu --alpha 1.0 --steps 300 --log-every 10 --eval-every 300 --eval-batches 1"
echo "== torch fp32"; timeout 120 $T > $OUT/torch_fp32.jsonl; head -1 $OUT/torch_fp32.jsonl; tail -1 $OUT/torch_fp32.jsonl
echo "== torch bf16"; timeout 120 $T --dtype bf16 > $OUT/torch_bf16.jsonl; tail -1 $OUT/torch_bf16.jsonl
x spirv_f32 /tmp/xp_spirv $B
x spirv_f16 /tmp/xp_spirv $B --set hardware.precision=f16
ls -la /tmp/c/cubecl 2>&1 | head

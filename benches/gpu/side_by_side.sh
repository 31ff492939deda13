#!/usr/bin/env bash
# Run on the GPU box from the repository root, with .dev/ holding xp.xz (default build),
# xp_spirv.xz (--features spirv,persistent-cache), both stripped and xz-compressed, and
# tinyshakespeare.txt; .gl/ holds the Vulkan loader packages (the device tool's README).
# The side-by-side table in one command: xp's fastest path (SPIR-V f16) and default path (WGSL
# f32) against PyTorch fp32 and bf16, cold machine; then the fastest path's second start.
set -u
for f in .gl/*.deb; do dpkg -x $f /; done; ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
for b in xp xp_spirv; do python3 -c "import lzma,shutil; shutil.copyfileobj(lzma.open('.dev/$b.xz'), open('/tmp/$b','wb'))"; chmod +x /tmp/$b; done
mkdir -p /tmp/c/datasets && cp .dev/tinyshakespeare.txt /tmp/c/datasets/
export XP_CACHE=/tmp/c PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
B="bench train --preset shakespeare-char --device vulkan --steps 300 --warmup 50"
x() { out=$1; shift; echo "== $out: $*"; (cd /tmp && timeout 200 "$@" > $OUT/$out.txt 2>&1); grep -E "device|first step|tokens/s|step time|peak|^loss|rror" $OUT/$out.txt; }
x spirv_f16 /tmp/xp_spirv $B --set hardware.precision=f16
T="python3 benches/torch_reference.py --data .dev/tinyshakespeare.txt --unit glu --alpha 1.0 --steps 300 --log-every 10 --eval-every 300 --eval-batches 1"
echo "== torch fp32"; timeout 100 $T > $OUT/torch_fp32.jsonl; head -1 $OUT/torch_fp32.jsonl; tail -1 $OUT/torch_fp32.jsonl
echo "== torch bf16"; timeout 100 $T --dtype bf16 > $OUT/torch_bf16.jsonl; tail -1 $OUT/torch_bf16.jsonl
x wgsl_f32 /tmp/xp $B
x spirv_f16_second /tmp/xp_spirv bench train --preset shakespeare-char --device vulkan --steps 30 --warmup 10 --set hardware.precision=f16
x spirv_f16_third /tmp/xp_spirv bench train --preset shakespeare-char --device vulkan --steps 30 --warmup 10 --set hardware.precision=f16
du -sh /tmp/c/cubecl

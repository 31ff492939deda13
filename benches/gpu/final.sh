#!/usr/bin/env bash
# Issue 13's table with the default build as committed (burn 0.23.0-pre.1, matmul fusion by
# precision), one call: PyTorch as a nanoGPT user runs it (SDPA; fp32, bf16 autocast, bf16 +
# torch.compile), then xp at the H100 profile's default (f16) cold and on a second start. (Its
# f32 path, matmul fusion off, is the one `b23.sh b` measured.)
set -u
XP_TIMEOUT=230
. benches/gpu/setup.sh xp
T="python3 benches/torch_reference.py --data .dev/tinyshakespeare.txt --unit glu --alpha 1.0 --steps 300 --log-every 10 --eval-every 300 --eval-batches 1"
t() { local name=$1; shift; echo "== torch $name"; timeout 200 $T "$@" > "$OUT/torch_$name.jsonl" 2>&1; head -1 "$OUT/torch_$name.jsonl"; tail -1 "$OUT/torch_$name.jsonl"; }
t sdpa_fp32
t sdpa_bf16 --dtype bf16
t sdpa_bf16_compile --dtype bf16 --compile
B="bench train --preset shakespeare-char --device vulkan"
cold default -- $B --steps 300 --warmup 50
x default_second env XP_CACHE=/tmp/cold_default __GL_SHADER_DISK_CACHE_PATH=/tmp/cold_default/gl /tmp/xp $B --steps 60 --warmup 10

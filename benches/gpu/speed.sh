#!/usr/bin/env bash
# Issue 13's table, part 1 (one lease): PyTorch as a nanoGPT user runs it (SDPA; fp32, bf16
# autocast, bf16 + torch.compile; and the hand-written attention), then xp's default build in
# its default configuration on an H100 (SPIR-V, f16 from the H100 profile, matmul fusion off),
# cold and at its second start, and at f32.
set -u
XP_TIMEOUT=230
. benches/gpu/setup.sh xp
/tmp/xp profiles | tail -2
T="python3 benches/torch_reference.py --data .dev/tinyshakespeare.txt --unit glu --alpha 1.0 --steps 300 --log-every 10 --eval-every 300 --eval-batches 1"
t() { local name=$1; shift; echo "== torch $name"; timeout 200 $T "$@" > "$OUT/torch_$name.jsonl" 2>&1; head -1 "$OUT/torch_$name.jsonl"; tail -1 "$OUT/torch_$name.jsonl"; }
t sdpa_fp32
t sdpa_bf16 --dtype bf16
t sdpa_bf16_compile --dtype bf16 --compile
t manual_fp32 --attention manual
B="bench train --preset shakespeare-char --device vulkan --steps 300 --warmup 50"
cold default -- $B
x default_second env XP_CACHE=/tmp/cold_default __GL_SHADER_DISK_CACHE_PATH=/tmp/cold_default/gl /tmp/xp bench train --preset shakespeare-char --device vulkan --steps 60 --warmup 10
cold spirv_f32 -- $B --set hardware.precision=f32
du -sh /tmp/cold_default/cubecl

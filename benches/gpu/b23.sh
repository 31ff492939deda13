#!/usr/bin/env bash
# Issue 13, item 5, and the second start: xp built against burn 0.23.0-pre.1 (.dev/xp23.xz: the
# tree of commit b3325c8, which moved to it) beside the burn 0.22.1 default build (.dev/xp.xz:
# commit 2751eb1), on one H100, every configuration cold. $1 picks the part: a) the 0.22
# build's second and third start with CubeCL's log (what a second start still compiles or
# tunes), and burn 0.23 at f16 cold and on a second start;
# b) PyTorch (SDPA fp32, bf16, bf16 + compile) and burn 0.23 at f32, in the same call; and the
# second start of both builds with the driver's shader cache folder in place; c) burn 0.23 with
# matmul fusion on (burn's default), at f16 and f32, against the figures of a) and b).
set -u
XP_TIMEOUT=230
. benches/gpu/setup.sh xp xp23
B="bench train --preset shakespeare-char --device vulkan"
case "${1:-a}" in
  a)
    cold second -- $B --steps 300 --warmup 50
    for n in 2 3; do
      x second_$n env XP_CACHE=/tmp/cold_second __GL_SHADER_DISK_CACHE_PATH=/tmp/cold_second/gl \
        CUBECL_DEBUG_LOG=$OUT/second_$n.cubecl.log /tmp/xp $B --steps 30 --warmup 10
    done
    ls -R /tmp/cold_second/cubecl | head -40
    d=/tmp/cold_b23; mkdir -p $d/datasets; cp .dev/tinyshakespeare.txt $d/datasets/
    x b23_f16 env XP_CACHE=$d __GL_SHADER_DISK_CACHE_PATH=$d/gl /tmp/xp23 $B --steps 300 --warmup 50
    x b23_f16_second env XP_CACHE=$d __GL_SHADER_DISK_CACHE_PATH=$d/gl /tmp/xp23 $B --steps 60 --warmup 10
    ;;
  b)
    T="python3 benches/torch_reference.py --data .dev/tinyshakespeare.txt --unit glu --alpha 1.0 --steps 300 --log-every 10 --eval-every 300 --eval-batches 1"
    t() { local name=$1; shift; echo "== torch $name"; timeout 200 $T "$@" > "$OUT/torch_$name.jsonl" 2>&1; head -1 "$OUT/torch_$name.jsonl"; tail -1 "$OUT/torch_$name.jsonl"; }
    t sdpa_fp32
    t sdpa_bf16 --dtype bf16
    t sdpa_bf16_compile --dtype bf16 --compile
    d=/tmp/cold_b23_f32; mkdir -p $d/datasets $d/gl; cp .dev/tinyshakespeare.txt $d/datasets/
    x b23_f32 env XP_CACHE=$d __GL_SHADER_DISK_CACHE_PATH=$d/gl /tmp/xp23 $B --steps 300 --warmup 50 --set hardware.precision=f32
    x b23_f32_second env XP_CACHE=$d __GL_SHADER_DISK_CACHE_PATH=$d/gl /tmp/xp23 $B --steps 60 --warmup 10 --set hardware.precision=f32
    # The second start of a) again, now with the driver's shader cache folder in place (`cold`
    # creates it): the default build, then burn 0.23.
    cold gl -- $B --steps 60 --warmup 10
    x gl_second env XP_CACHE=/tmp/cold_gl __GL_SHADER_DISK_CACHE_PATH=/tmp/cold_gl/gl /tmp/xp $B --steps 60 --warmup 10
    x gl_third env XP_CACHE=/tmp/cold_gl __GL_SHADER_DISK_CACHE_PATH=/tmp/cold_gl/gl /tmp/xp $B --steps 60 --warmup 10
    du -sh /tmp/cold_gl/gl /tmp/cold_gl/cubecl
    d=/tmp/cold_b23_gl; mkdir -p $d/datasets $d/gl; cp .dev/tinyshakespeare.txt $d/datasets/
    x b23_gl env XP_CACHE=$d __GL_SHADER_DISK_CACHE_PATH=$d/gl /tmp/xp23 $B --steps 60 --warmup 10
    x b23_gl_second env XP_CACHE=$d __GL_SHADER_DISK_CACHE_PATH=$d/gl /tmp/xp23 $B --steps 60 --warmup 10
    ;;
  c)
    for p in f16 f32; do
      d=/tmp/cold_b23_fuse_$p; mkdir -p $d/datasets $d/gl; cp .dev/tinyshakespeare.txt $d/datasets/
      x b23_fuse_$p env XP_CACHE=$d __GL_SHADER_DISK_CACHE_PATH=$d/gl XP_MATMUL_FUSION=on /tmp/xp23 $B --steps 300 --warmup 50 --set hardware.precision=$p
    done
    ;;
esac

#!/usr/bin/env bash
# Issue 13, item 5, and the second start: xp built against burn 0.23.0-pre.1 (.dev/xp23.xz, from
# the burn-0.23 branch) beside the default build (.dev/xp.xz), on one H100, every configuration
# cold. $1 picks the half: a) the default build's second and third start with CubeCL's log (what
# a second start still compiles or tunes), and burn 0.23 at f16 cold and on a second start;
# b) burn 0.23 at f32.
set -u
XP_TIMEOUT=230
. benches/gpu/setup.sh xp xp23
B="bench train --preset shakespeare-char --device vulkan"
case "${1:-a}" in
  a)
    cold second -- $B --steps 60 --warmup 10
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
    d=/tmp/cold_b23_f32; mkdir -p $d/datasets; cp .dev/tinyshakespeare.txt $d/datasets/
    x b23_f32 env XP_CACHE=$d __GL_SHADER_DISK_CACHE_PATH=$d/gl /tmp/xp23 $B --steps 300 --warmup 50 --set hardware.precision=f32
    ;;
esac

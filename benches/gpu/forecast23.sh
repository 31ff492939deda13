#!/usr/bin/env bash
# Issue 23 on one H200: the forecast check (benches/forecast/check.sh) on the GPU — each
# sweep forecast by `xp plan --measure` (its probes in a fresh cache), then trained by `xp run`
# and timed. The summary lines go to $OUT/forecast.txt as each sweep ends, and everything else
# (plans, logs, stores) to $OUT/forecast.tar.xz after each when TAR=1.
set -u
. benches/gpu/setup.sh xp
mkdir -p /tmp/c/gl
export __GL_SHADER_DISK_CACHE_PATH=/tmp/c/gl
for spec in ${SWEEPS:-grid.toml:1 search.toml:1}; do
  m=${spec%%:*}; j=${spec##*:}
  XP=/tmp/xp JOBS=$j OUT=/tmp/fc bash benches/forecast/check.sh "$m" | tee -a "$OUT/forecast.txt"
  [ "${TAR:-0}" = 1 ] && tar -cJf "$OUT/forecast.tar.xz" -C /tmp/fc .
done

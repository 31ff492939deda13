#!/usr/bin/env bash
# Per-kernel device times and autotune decisions (CubeCL's profile log) of the default
# build at f32, then the first step at autotune level minimal and at the default level.
set -u
. benches/gpu/setup.sh xp
cd /tmp
B="/tmp/xp bench train --preset shakespeare-char --device vulkan"
echo "== profile"
CUBECL_DEBUG_LOG=/tmp/cl.log CUBECL_DEBUG_OPTION=profile timeout 300 $B --steps 40 --warmup 20 --log-every 20 > $OUT/prof_run.txt 2>&1; echo rc=$?
tail -8 $OUT/prof_run.txt
ls -la /tmp/cl.log
python3 - <<'PY'
import lzma, os
src = open('/tmp/cl.log', errors='replace').read()
out = os.environ['OUT']
# Summary tables (4 columns) and autotune lines only: compiled sources are bulky.
keep = [l for l in src.splitlines() if (l.startswith('| ') and l.count('|') == 5) or 'utotun' in l or 'Tuning' in l or 'fastest' in l.lower()]
open(out + '/prof_tables.txt', 'w').write('\n'.join(keep))
print(len(keep), 'lines kept;', os.path.getsize(out + '/cl.log.xz'), 'bytes xz')
PY
for lvl in minimal default; do
  echo "== autotune $lvl, cold driver cache"
  d=$(mktemp -d)
  if [ $lvl = minimal ]; then export CUBECL_AUTOTUNE_LEVEL=minimal; else unset CUBECL_AUTOTUNE_LEVEL; fi
  __GL_SHADER_DISK_CACHE_PATH=$d timeout 200 $B --steps 200 --warmup 50 2>&1 | tail -9
done

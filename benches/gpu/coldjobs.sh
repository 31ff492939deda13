#!/usr/bin/env bash
# Issue 20, third call on the 2 × H200 box (nvidia-h200-x2):
# 1. first step of shakespeare-char (f16, xp's default explicit attention) from cold caches on
#    GPU 0, as xp runs it and with CubeCL's minimal autotune (CUBECL_AUTOTUNE_LEVEL=minimal);
#    at the same time on GPU 1, the explicit attention at block 1024 and 512 (speed, peak memory);
# 2. benches/jobs_sweep.toml with --jobs 1, 2 and 4 on the caches step 1 filled; each run's
#    device, start, end and first-step time from runs.db.
# Results in $OUT/results.tar.xz, packed after every step.
set -u
. benches/gpu/setup.sh xp
R=/tmp/res; mkdir -p $R; REPO=$PWD
pack() { tar -cJf "$OUT/r.part" -C $R . && mv "$OUT/r.part" "$OUT/results.tar.xz"; }
XB() { # NAME GPU CACHE-DIR [VAR=VALUE…] -- BENCH-ARGS…
  local name=$1 gpu=$2 d=$3; shift 3; local vars=()
  while [ "$1" != "--" ]; do vars+=("$1"); shift; done; shift
  mkdir -p "$d/datasets" "$d/gl"; cp "$REPO/.dev/tinyshakespeare.txt" "$d/datasets/"
  local s=$(date +%s)
  env XP_CACHE="$d" __GL_SHADER_DISK_CACHE_PATH="$d/gl" "${vars[@]}" timeout ${XP_T:-150} /tmp/xp bench train --device vulkan --gpu $gpu "$@" > $R/xp_$name.txt 2>&1
  echo "== xp $name: rc=$? $(( $(date +%s) - s )) s; $(grep -E "first step|tokens/s|peak device" $R/xp_$name.txt | tr -s ' ' | tr '\n' ';')"
}
S256="--preset shakespeare-char --batch-size 64"
( XB cold_default 0 /tmp/k256 -- $S256 --steps 100 --warmup 40
  XB cold_minimal 0 /tmp/kmin CUBECL_AUTOTUNE_LEVEL=minimal -- $S256 --steps 100 --warmup 40 ) &
(
  XB x1024 1 /tmp/k1024 -- --preset large --batch-size 16 --steps 60 --warmup 25
  XB x512 1 /tmp/k512 -- --preset medium --batch-size 32 --steps 80 --warmup 30 ) &
wait; pack
for j in 1 2 4; do
  s=$(date +%s.%N)
  (cd /tmp && XP_CACHE=/tmp/k256 __GL_SHADER_DISK_CACHE_PATH=/tmp/k256/gl timeout 200 /tmp/xp --db /tmp/jobs$j.db run "$REPO/benches/jobs_sweep.toml" --jobs $j > "$R/jobs$j.txt" 2>&1)
  rc=$?
  e=$(date +%s.%N)
  echo "== --jobs $j: rc=$rc wall $(python3 -c "print(round($e-$s,1))") s"
  python3 - /tmp/jobs$j.db <<'PY' | tee $R/jobs$j.summary
import json, sqlite3, sys
db = sqlite3.connect(sys.argv[1])
cols = [r[1] for r in db.execute("pragma table_info(runs)")]
for row in db.execute("select * from runs order by id"):
    r = dict(zip(cols, row))
    ex = (json.loads(r.get("provenance") or "{}").get("executed")) or {}
    m = lambda name: db.execute("select step, value, t_ms from metrics m join metric_names n on n.id = m.name_id where m.run_id=? and n.name=? order by step", (r["id"], name)).fetchall()
    first = m("step_ms")[:1]
    tps = sorted(v for _, v, _ in m("tokens_per_s"))
    print(r["id"], r["status"], "attempts", r["attempts"], "pid", ex.get("pid"), "device", ex.get("device"),
          r["started_at"][11:23] if r["started_at"] else None, r["finished_at"][11:23] if r["finished_at"] else None,
          "first step ms", [round(v) for _, v, _ in first], "t_ms", [t for _, _, t in first],
          "median tok/s", round(tps[len(tps)//2]) if tps else None)
PY
  pack
done

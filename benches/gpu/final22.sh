#!/usr/bin/env bash
# Issue 22 on one H200: the GPU conformance check (f16 through SPIR-V, then f32 through WGSL,
# each cut at $T_CONF s), and, where $SEEDS names seeds, the early-stopping savings benchmark
# on the CPU cores beside it (one pipeline per seed, $JOBS workers each, one rayon thread per
# worker). Conformance cases and the benchmark's stores come back in $OUT.
set -u
. benches/gpu/setup.sh xp
REPO=$PWD; R=/tmp/res; mkdir -p $R
conf() { # NAME FLAGS…
  local name=$1; shift
  mkdir -p /tmp/c_$name/datasets; cp "$REPO/.dev/tinyshakespeare.txt" /tmp/c_$name/datasets/
  (cd /tmp && XP_CACHE=/tmp/c_$name timeout "${T_CONF:-100}" /tmp/xp bench conformance \
    --device vulkan --gpu 0 "$@" --lengths ${LENGTHS:-1,16,64,171,256} --skip-units \
    --train-steps 0 --cases $R/cases_$name.csv > $R/$name.txt 2>&1)
  echo "== conformance $name: exit $?"
}
# T_CONF=0: the benchmark alone.
[ "${T_CONF:-100}" != 0 ] && ( conf f16 --precision f16; conf f32 --precision f32 ) &
for s in ${SEEDS-}; do
  RAYON_NUM_THREADS=1 XP=/tmp/xp JOBS=${JOBS:-4} SEEDS=$s OUT=/tmp/savings \
    bash benches/early_stop/savings.sh > /tmp/savings-$s.txt 2>&1 &
done
wait
[ -n "${SEEDS-}" ] && cat /tmp/savings-*.txt | grep -v "^best configuration\|^seed \|^ \|^seeds within"
for n in f16 f32; do [ -f $R/cases_$n.csv ] && python3 - $R/cases_$n.csv <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
bad = [r for r in rows if r["result"] != "pass"]
print(sys.argv[1].split("/")[-1], len(rows), "cases,", len(bad), "outside tolerance;",
      "lengths", sorted({int(r["length"]) for r in rows}))
for r in bad: print("  FAIL", r["check"], r["batch"], r["length"], r["error"])
PY
done
tar -cJf "$OUT/results.tar.xz" -C $R .
[ -d /tmp/savings ] && tar -cJf "$OUT/savings.tar.xz" -C /tmp/savings .

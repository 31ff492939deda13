#!/usr/bin/env bash
# Issue 20 as committed, the conformance check of xp's default attention (explicit) on the
# 2 × H200 box: f16 (SPIR-V) on GPU 0 and f32 (WGSL) on GPU 1 side by side, at the lengths in
# $LENGTHS of shakespeare-char, cut at $T_CONF s. Results in $OUT/results.tar.xz.
set -u
. benches/gpu/setup.sh xp
R=/tmp/res; mkdir -p $R; REPO=$PWD; cd /tmp
LENGTHS=${LENGTHS:-1,16,64,171,256}
conf() { # NAME GPU FLAGS…
  local name=$1 gpu=$2; shift 2
  mkdir -p /tmp/c_$name/datasets; cp "$REPO/.dev/tinyshakespeare.txt" /tmp/c_$name/datasets/
  XP_CACHE=/tmp/c_$name timeout "${T_CONF:-120}" /tmp/xp bench conformance --device vulkan --gpu $gpu "$@" \
    --lengths $LENGTHS --skip-units --train-steps 0 --cases $R/cases_$name.csv > $R/$name.txt 2>&1
  echo "== conformance $name: exit $?"
}
conf f16 0 --precision f16 &
conf f32 1 --precision f32 &
wait
for n in f16 f32; do python3 - $R/cases_$n.csv <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
bad = [r for r in rows if r["result"] != "pass"]
print(sys.argv[1].split("/")[-1], len(rows), "cases,", len(bad), "outside tolerance;",
      "lengths", sorted({int(r["length"]) for r in rows}))
for r in rows:
    if r["check"] in ("logits", "gradients", "op attention backward"):
        print("  ", r["check"], r["batch"], r["length"], r["error"][:8], r["result"])
for r in bad: print("  FAIL", r["check"], r["batch"], r["length"], r["error"])
PY
done
tar -cJf "$OUT/results.tar.xz" -C $R .

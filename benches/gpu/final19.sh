#!/usr/bin/env bash
# Issue 19 as committed, on the 2 × H200 box, one call:
# 1. `xp bench conformance` in f32 on GPU 0 (kernels compiled to WGSL: xp's f32 default; first
#    the greedy 400-token sample of a checkpoint trained 300 steps, CPU against GPU) and in f16
#    on GPU 1 (SPIR-V), side by side;
# 2. `xp profiles`, `xp plan` and `xp run experiments/shakespeare_char.toml --jobs 2` with no
#    --set, stopped by Ctrl-C after $XP_RUN_S s; each run's device from its provenance;
# 3. `xp sample --temperature 0 --tokens 400` of run-1's checkpoint on the GPU padded (xp's
#    default), on the GPU at each exact length (XP_SAMPLE_PADDED=0, what xp did before) and on
#    the CPU, timed and compared.
# Everything in $OUT/results.tar.xz.
set -u
. benches/gpu/setup.sh xp
R=/tmp/res; mkdir -p $R; REPO=$PWD
pack() { tar -cJf "$OUT/results.tar.xz" -C $R . ; }
cd /tmp
conf() { # NAME GPU TIMEOUT FLAGS…
  local name=$1 gpu=$2 t=$3; shift 3
  mkdir -p /tmp/c_$name/datasets; cp "$REPO/.dev/tinyshakespeare.txt" /tmp/c_$name/datasets/
  XP_CACHE=/tmp/c_$name timeout "$t" /tmp/xp bench conformance --device vulkan --gpu $gpu "$@" \
    --cases $R/cases_$name.csv --out $R/table_$name.md > $R/$name.txt 2>&1
  echo "== conformance $name: exit $?"
}
s=$(date +%s)
conf f32 0 ${T_CONF:-300} --precision f32 &
conf f16 1 ${T_CONF:-300} --precision f16 --train-steps 0 &
wait
echo "conformance: $(( $(date +%s) - s )) s"
for n in f32 f16; do grep -E "FAIL|cases, |greedy" $R/table_$n.md 2>/dev/null | cut -c1-400 || tail -3 $R/$n.txt; done
pack
M=$REPO/experiments/shakespeare_char.toml
/tmp/xp profiles | tail -4 | cut -c1-300
/tmp/xp plan "$M" 2>&1 | head -6 | cut -c1-200
s=$(date +%s)
timeout -s INT "${XP_RUN_S:-60}" /tmp/xp --db /tmp/auto.db run "$M" --jobs 2 > $R/run.txt 2>&1
echo "== xp run --jobs 2: rc=$? after $(( $(date +%s) - s )) s"
/tmp/xp --db /tmp/auto.db runs --format json > $R/runs.json 2>&1
python3 - $R/runs.json <<'PY'
import json, sys
for r in json.load(open(sys.argv[1])):
    e = (r.get("provenance") or {}).get("executed") or {}
    hw = ((r.get("spec") or {}).get("config") or {}).get("hardware") or {}
    print(r.get("id"), r.get("status"), r.get("step"), r.get("backend"), r.get("adapter"), "device", e.get("device"),
          "profile", hw.get("profile"), "precision", hw.get("precision"))
PY
pack
for v in padded exact cpu; do
  env=(); [ $v = exact ] && env=(XP_SAMPLE_PADDED=0); [ $v = cpu ] && env=(VK_DRIVER_FILES=/nonexistent)
  s=$(date +%s.%N)
  env "${env[@]}" timeout 60 /tmp/xp --db /tmp/auto.db sample run-1 --checkpoint last --temperature 0 --tokens 400 > $R/sample_$v.txt 2>&1
  echo "== sample $v: rc=$? $(python3 -c "print(round($(date +%s.%N)-$s,2))") s for 400 tokens"
done
for v in exact cpu; do cmp -s $R/sample_padded.txt $R/sample_$v.txt && echo "padded = $v" || echo "padded != $v"; done
head -c 300 $R/sample_padded.txt; echo
pack

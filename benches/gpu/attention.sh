#!/usr/bin/env bash
# Issue 20, first call on the 2 × H200 box (nvidia-h200-x2):
# 1. `xp bench conformance` with the fused attention (XP_ATTENTION=fused), f16 (SPIR-V) on GPU 0
#    and f32 (WGSL; first the greedy 400-token sample of a checkpoint trained 300 steps) on
#    GPU 1, side by side, at the lengths in $LENGTHS;
# 2. speed at block 256, 512, 1024 (shakespeare-char batch 64, medium batch 32, large batch 16):
#    xp f16 with the fused attention (XP_ATTENTION=fused; the binary that ran had it as its
#    default), each cold (fresh CubeCL and driver caches), then shakespeare-char again on a
#    second start, on GPU 0; PyTorch SDPA fp32, bf16 and bf16 + compile on GPU 1 at the same
#    time; then xp f16 explicit and f32 (fused) where time is left.
# Results in $OUT/conf.tar.xz, gpu0.tar.xz and gpu1.tar.xz, packed after every step.
set -u
. benches/gpu/setup.sh xp
R=/tmp/res; mkdir -p $R/conf $R/gpu0 $R/gpu1; REPO=$PWD
pack() { tar -cJf "$OUT/$1.tar.xz.part" -C $R/$1 . && mv "$OUT/$1.tar.xz.part" "$OUT/$1.tar.xz"; }
cd /tmp
LENGTHS=${LENGTHS:-1,15,16,17,31,32,63,64,65,127,128,129,200,255,256}
conf() { # NAME GPU TIMEOUT FLAGS…
  local name=$1 gpu=$2 t=$3; shift 3
  mkdir -p /tmp/c_$name/datasets; cp "$REPO/.dev/tinyshakespeare.txt" /tmp/c_$name/datasets/
  XP_ATTENTION=fused XP_CACHE=/tmp/c_$name timeout "$t" /tmp/xp bench conformance --device vulkan --gpu $gpu "$@" \
    --cases $R/conf/cases_$name.csv --out $R/conf/table_$name.md > $R/conf/$name.txt 2>&1
  echo "== conformance $name: exit $?"
}
s=$(date +%s)
conf f16 0 ${T_CONF:-200} --precision f16 --train-steps 0 --lengths $LENGTHS --skip-units &
conf f32 1 ${T_CONF:-200} --precision f32 --lengths $LENGTHS --skip-units &
wait
echo "conformance: $(( $(date +%s) - s )) s"
for n in f16 f32; do grep -E "FAIL|cases, |greedy|attention" $R/conf/table_$n.md 2>/dev/null | cut -c1-300 || tail -3 $R/conf/$n.txt; done
pack conf
# xp on GPU 0 (one process at a time), PyTorch on GPU 1, at once.
XB() { # NAME CACHE-DIR [VAR=VALUE…] -- BENCH-ARGS…
  local name=$1 d=$2; shift 2; local vars=()
  while [ "$1" != "--" ]; do vars+=("$1"); shift; done; shift
  mkdir -p "$d/datasets" "$d/gl"; cp "$REPO/.dev/tinyshakespeare.txt" "$d/datasets/"
  local s=$(date +%s)
  env XP_CACHE="$d" __GL_SHADER_DISK_CACHE_PATH="$d/gl" "${vars[@]}" timeout ${XP_T:-150} /tmp/xp bench train --device vulkan --gpu 0 "$@" > $R/gpu0/xp_$name.txt 2>&1
  echo "== xp $name: rc=$? $(( $(date +%s) - s )) s; $(grep -E "first step|tokens/s|peak device|attention" $R/gpu0/xp_$name.txt | tr -s ' ' | tr '\n' ';')"
  pack gpu0
}
S256="--preset shakespeare-char --batch-size 64"; S512="--preset medium --batch-size 32"; S1024="--preset large --batch-size 16"
(
  XB f16_256 /tmp/k256 XP_ATTENTION=fused -- $S256 --steps 150 --warmup 50
  XB f16_512 /tmp/k512 XP_ATTENTION=fused -- $S512 --steps 100 --warmup 40
  XB f16_1024 /tmp/k1024 XP_ATTENTION=fused -- $S1024 --steps 80 --warmup 30
  XB f16_256_second /tmp/k256 XP_ATTENTION=fused -- $S256 --steps 60 --warmup 20
  XB f16x_256 /tmp/k256 XP_ATTENTION=explicit -- $S256 --steps 100 --warmup 40
  XB f16x_1024 /tmp/k1024 XP_ATTENTION=explicit -- $S1024 --steps 60 --warmup 25
  XB f16x_512 /tmp/k512 XP_ATTENTION=explicit -- $S512 --steps 80 --warmup 30
) &
(
  T="python3 $REPO/benches/torch_reference.py --data $REPO/.dev/tinyshakespeare.txt --unit glu --alpha 1.0 --eval-every 100000 --eval-batches 1 --log-every 10"
  t() { local name=$1; shift; CUDA_VISIBLE_DEVICES=1 timeout 150 $T "$@" > $R/gpu1/torch_$name.jsonl 2>&1; echo "== torch $name: $(tail -1 $R/gpu1/torch_$name.jsonl)"; pack gpu1; }
  for m in "fp32" "bf16 --dtype bf16" "bf16c --dtype bf16 --compile"; do
    set -- $m; n=$1; shift
    t ${n}_256 "$@" --steps 150 --batch 64 --layers 6 --heads 6 --dim 384 --block 256 --dropout 0.2
    t ${n}_512 "$@" --steps 100 --batch 32 --layers 8 --heads 8 --dim 512 --block 512 --dropout 0.1
    t ${n}_1024 "$@" --steps 80 --batch 16 --layers 12 --heads 12 --dim 768 --block 1024 --dropout 0.1
  done
  mkdir -p /tmp/g1
  for L in "256 $S256 --steps 100 --warmup 40" "512 $S512 --steps 80 --warmup 30" "1024 $S1024 --steps 60 --warmup 25"; do
    set -- $L; n=$1; shift
    d=/tmp/g1_$n; mkdir -p $d/datasets $d/gl; cp $REPO/.dev/tinyshakespeare.txt $d/datasets/
    s=$(date +%s)
    XP_ATTENTION=fused XP_CACHE=$d __GL_SHADER_DISK_CACHE_PATH=$d/gl timeout 120 /tmp/xp bench train --device vulkan --gpu 1 --set hardware.precision=f32 "$@" > $R/gpu1/xp_f32_$n.txt 2>&1
    echo "== xp f32_$n (GPU 1): rc=$? $(( $(date +%s) - s )) s; $(grep -E "first step|tokens/s|peak device|attention" $R/gpu1/xp_f32_$n.txt | tr -s ' ' | tr '\n' ';')"
    pack gpu1
  done
) &
wait

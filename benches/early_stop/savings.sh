#!/usr/bin/env bash
# The early-stopping savings benchmark: for each seed, benches/early_stop/grid.toml trained in
# full, then with ASHA, Hyperband and the median rule (rungs at steps 9, 27 and 81 of 243,
# eta 3), each a store of its own under $OUT; then `analyse.py` compares them.
#   XP=target/debug/xp JOBS=2 SEEDS="1 2 3 4 5" OUT=/tmp/savings bash benches/early_stop/savings.sh
set -eu
XP=${XP:-xp}
JOBS=${JOBS:-2}
SEEDS=${SEEDS:-1 2 3 4 5}
OUT=${OUT:-bench-early-stop}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$OUT"
for s in $SEEDS; do
  for method in full asha hyperband median; do
    m="$OUT/$method-$s.toml"
    sed 's|#:schema ../../schemas|#:schema|' "$here/grid.toml" > "$m"
    if [ "$method" != full ]; then
      printf '\n[sweep.early_stop]\nmethod = "%s"\nmin_steps = 9\neta = 3\nseed = %s\n' \
        "$method" "$s" >> "$m"
    fi
    start=$(date +%s.%N)
    "$XP" --db "$OUT/$method-$s.db" run "$m" --jobs "$JOBS" \
      --set "experiment.name=$method-$s" --set "train.seed=$s" > "$OUT/$method-$s.log" 2>&1
    end=$(date +%s.%N)
    echo "$method seed $s: $(tail -1 "$OUT/$method-$s.log"); $(python3 -c "print(round($end-$start))") s"
  done
done
python3 "$here/analyse.py" "$OUT" $SEEDS

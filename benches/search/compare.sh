#!/usr/bin/env bash
# The search benchmark (docs/benchmarks.md, "Search"): for each seed, TPE and random search
# over the early-stopping benchmark's space (unit, learning rate, width; 243 steps), the same
# number of trials, without and with ASHA; each a store of its own under $OUT. Random search
# draws with its own seed (seed + 100), as a second method would, not TPE's startup trials.
# `analyse.py` compares them with the full grids of benches/early_stop/savings.sh (in $GRIDS).
# METHODS (tpe random) and STOPS (none asha) pick the columns to run.
#   XP=target/debug/xp JOBS=2 TRIALS=16 SEEDS="1 2 3 4 5" OUT=/tmp/search GRIDS=/tmp/savings \
#     bash benches/search/compare.sh
set -eu
XP=${XP:-xp}
JOBS=${JOBS:-1}
TRIALS=${TRIALS:-16}
SEEDS=${SEEDS:-1 2 3 4 5}
OUT=${OUT:-bench-search}
GRIDS=${GRIDS:-bench-early-stop}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$OUT"
METHODS=${METHODS:-tpe random}
STOPS=${STOPS:-none asha}
for s in $SEEDS; do
  for method in $METHODS; do
    seed=$s
    [ "$method" = random ] && seed=$((s + 100))
    for stop in $STOPS; do
      name="$method-$stop-$s"
      m="$OUT/$name.toml"
      # The grid's settings without its axes, and the search over the same three keys.
      sed -e 's|#:schema ../../schemas|#:schema|' -e '/^\[sweep.grid\]/,$d' \
        "$here/../early_stop/grid.toml" > "$m"
      cat >> "$m" <<TOML
[sweep.search]
method = "$method"
trials = $TRIALS
startup_trials = 5
lag = 1
seed = $seed

[sweep.search.space]
"model.ffn.unit" = { choice = ["glu", "swish", "gelu"] }
"train.lr" = { loguniform = [3e-4, 3e-3] }
"model.dim" = { choice = [32, 48, 64] }
TOML
      if [ "$stop" = asha ]; then
        printf '\n[sweep.early_stop]\nmethod = "asha"\nmin_steps = 9\neta = 3\n' >> "$m"
      fi
      start=$(date +%s.%N)
      "$XP" --db "$OUT/$name.db" run "$m" --jobs "$JOBS" \
        --set "experiment.name=$name" --set "train.seed=$s" > "$OUT/$name.log" 2>&1
      end=$(date +%s.%N)
      echo "$name: $(tail -1 "$OUT/$name.log"); $(python3 -c "print(round($end-$start))") s"
    done
  done
done
[ -n "${ANALYSE-1}" ] && python3 "$here/analyse.py" "$OUT" "$GRIDS" $SEEDS

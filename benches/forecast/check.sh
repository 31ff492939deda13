#!/usr/bin/env bash
# The forecast check (docs/benchmarks.md, "Forecasts"): for each manifest, `xp plan --measure`
# forecasts it on this machine with $JOBS runs at once (measuring each model shape it has not
# seen: a short run, kept in $XP_CACHE/probes.db), then `xp run` trains it in a fresh store
# and the wall time is compared with the forecast.
#   XP=target/debug/xp JOBS=1 OUT=/tmp/forecast bash benches/forecast/check.sh grid.toml search.toml
set -eu
XP=${XP:-xp}
JOBS=${JOBS:-1}
OUT=${OUT:-bench-forecast}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$OUT"
for m in "$@"; do
  name=$(basename "$m" .toml)
  path="$here/$m"
  [ -f "$path" ] || path="$m"
  db="$OUT/$name-x$JOBS.db"
  rm -rf "$db" "$db"-*
  XP_DB="$db" "$XP" plan "$path" --measure --jobs "$JOBS" > "$OUT/$name-x$JOBS.plan" 2> "$OUT/$name-x$JOBS.measure"
  forecast=$(grep '^forecast' "$OUT/$name-x$JOBS.plan")
  start=$(date +%s.%N)
  XP_DB="$db" "$XP" run "$path" --jobs "$JOBS" > "$OUT/$name-x$JOBS.log" 2>&1
  end=$(date +%s.%N)
  echo "$name --jobs $JOBS: $forecast; actual $(python3 -c "print(round($end-$start, 1))") s; $(tail -1 "$OUT/$name-x$JOBS.log")"
done

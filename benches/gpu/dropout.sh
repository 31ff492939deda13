#!/usr/bin/env bash
# Issue 20's dropout measurement on the 2 × H200 box (nvidia-h200-x2), one call:
# experiments/attention_dropout.toml (nanoGPT's shakespeare-char recipe, 5000 steps; attention
# dropout 0.2 against 0, two seeds each) with `xp run --jobs 4` (two runs on each GPU at once),
# stopped by Ctrl-C after $XP_RUN_S s; then each run's best val_loss, device and speed from
# runs.db. Results (and runs.db) in $OUT/results.tar.xz.
set -u
. benches/gpu/setup.sh xp
R=/tmp/res; mkdir -p $R; REPO=$PWD
s=$(date +%s)
(cd /tmp && timeout -s INT "${XP_RUN_S:-540}" /tmp/xp --db /tmp/dropout.db run "$REPO/experiments/attention_dropout.toml" --jobs 4 > $R/run.txt 2>&1)
echo "== xp run --jobs 4: rc=$? after $(( $(date +%s) - s )) s"
python3 - /tmp/dropout.db <<'PY' | tee $R/summary.txt
import json, sqlite3, sys
db = sqlite3.connect(sys.argv[1])
cols = [r[1] for r in db.execute("pragma table_info(runs)")]

for row in db.execute("select * from runs order by id"):
    r = dict(zip(cols, row))
    spec = json.loads(r.get("spec") or "{}")
    cfg = spec.get("config", {})
    prov = json.loads(r.get("provenance") or "{}")
    ex = prov.get("executed") or {}
    vals = db.execute("select step, value from metrics m join metric_names n on n.id = m.name_id where m.run_id=? and n.name='val_loss' order by step", (r["id"],)).fetchall()
    speed = db.execute("select value from metrics m join metric_names n on n.id = m.name_id where m.run_id=? and n.name='tokens_per_s' order by step", (r["id"],)).fetchall()
    speed = sorted(v for (v,) in speed)
    print(r["id"], r["status"], "attn_dropout", cfg.get("model", {}).get("attention_dropout"), "seed", cfg.get("train", {}).get("seed"),
          "device", ex.get("device"), ex.get("attention"),
          "best", min((v for _, v in vals), default=None), "at", min(vals, key=lambda x: x[1])[0] if vals else None,
          "last", vals[-1] if vals else None, "median tok/s", round(speed[len(speed)//2]) if speed else None)
PY
cp /tmp/dropout.db $R/
tar -cJf "$OUT/results.tar.xz" -C $R .

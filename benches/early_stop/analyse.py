"""Compares the early-stopped sweeps of savings.sh with the full grid, seed by seed.

For each seed: the full grid's best validation loss, and for each method the best validation
loss it found (over all its runs) and the steps it trained (each run's last step, summed) as a
share of the full grid's. The seed-to-seed spread is that of the configuration with the best
mean over the seeds (max - min). "top 1/eta at the first rung" (Egele et al., 2024) is computed
from the full grid's recorded curves: every run to step 9, the best third to the end. A
paused and promoted run records the same values as an uninterrupted one (tested), so the curves
are what that baseline would have trained.

    python3 analyse.py OUT SEED...
"""
import json
import sqlite3
import sys

out, seeds = sys.argv[1], [int(s) for s in sys.argv[2:]]
FIRST_RUNG = 9  # min_steps in savings.sh


def runs(method, seed):
    c = sqlite3.connect(f"{out}/{method}-{seed}.db")
    rows = c.execute(
        """SELECT r.id, r.step, r.steps_total, r.status, s.best_val_loss,
                  json_extract(r.spec, '$.swept')
           FROM runs r LEFT JOIN summaries s ON s.run_id = r.id"""
    ).fetchall()
    return c, rows


def val_at(c, run, step):
    row = c.execute(
        """SELECT m.value FROM metrics m JOIN metric_names n ON n.id = m.name_id
           WHERE m.run_id = ? AND n.name = 'val_loss' AND m.step = ?""",
        (run, step),
    ).fetchone()
    return row[0]


results = {}
by_config = {}
for s in seeds:
    c, full = runs("full", s)
    grid_steps = sum(r[2] for r in full)
    best = min(r[4] for r in full)
    for r in full:
        by_config.setdefault(r[5], []).append(r[4])
    # Top 1/eta at the first rung: all to it, the best 9 of 27 to the end.
    first = sorted(full, key=lambda r: val_at(c, r[0], FIRST_RUNG))
    kept = first[: len(full) // 3]
    sha1 = {
        "best": min(r[4] for r in kept),
        "steps": FIRST_RUNG * len(full) + sum(r[2] - FIRST_RUNG for r in kept),
    }
    results[s] = {"grid_best": best, "grid_steps": grid_steps, "top 1/eta at the first rung": sha1}
    full_best = {r[5]: r[4] for r in full}
    for method in ["asha", "hyperband", "median"]:
        _, rows = runs(method, s)
        completed = [r for r in rows if r[3] == "completed"]
        results[s][method] = {
            "best": min(r[4] for r in rows if r[4] is not None),
            "steps": sum(r[1] for r in rows),
            "completed": len(completed),
            # A run paused and promoted trains as the uninterrupted one: each completed run's
            # best validation loss equals, bit for bit, its configuration's in the full grid.
            "equal_to_full_grid": sum(full_best[r[5]] == r[4] for r in completed),
        }

means = {k: sum(v) / len(v) for k, v in by_config.items() if len(v) == len(seeds)}
best_config = min(means, key=means.get)
spread = max(by_config[best_config]) - min(by_config[best_config])
tolerance = max(0.01, spread)
print(f"best configuration over the seeds: {best_config}, mean best val {means[best_config]:.4f}, "
      f"spread {spread:.4f}; tolerance max(0.01, spread) = {tolerance:.4f}")
methods = ["asha", "hyperband", "median", "top 1/eta at the first rung"]
print("seed  grid best  " + "  ".join(f"{m:>26}" for m in methods))
passes = {m: 0 for m in methods}
for s in seeds:
    r = results[s]
    cells = []
    for m in methods:
        gap = r[m]["best"] - r["grid_best"]
        share = r[m]["steps"] / r["grid_steps"]
        ok = gap <= tolerance and share <= 0.25
        passes[m] += ok
        cells.append(f"{r[m]['best']:.4f} (+{gap:.4f}) {100 * share:4.1f}%{' ok' if ok else '   '}")
    print(f"{s:>4}  {r['grid_best']:.4f}     " + "  ".join(f"{c:>26}" for c in cells))
for m in ["asha", "hyperband", "median"]:
    done = sum(results[s][m]["completed"] for s in seeds)
    equal = sum(results[s][m]["equal_to_full_grid"] for s in seeds)
    print(f"{m}: {equal} of its {done} completed runs have the full grid's best val loss, bit for bit")
print("seeds within tolerance using <= 25% of the grid's steps: "
      + ", ".join(f"{m} {passes[m]}/{len(seeds)}" for m in methods))
json.dump({"tolerance": tolerance, "best_config": best_config, "spread": spread,
           "seeds": results}, open(f"{out}/savings.json", "w"), indent=1)

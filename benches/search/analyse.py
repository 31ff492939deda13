"""Compares TPE with random search, seed by seed, against the full grid (savings.sh's stores).

Target: the full grid's best validation loss of that seed plus a tolerance, the seed-to-seed
spread of the grid's best configuration (its best validation loss over the seeds), taken two
ways: as the early-stopping benchmark's max − min (from $GRIDS/savings.json), and as the
standard deviation (stricter). For each search: the trials in trial order, and the steps trained (each
run's last step) up to and including the first trial whose best validation loss reaches the
target; "never" when none does. TPE wins a seed when it reaches the target with fewer steps
than random search with the same number of trials (or random search never does). Without early
stopping, random search's steps to the target are also given as their mean over 1,000 orders of
its own draws (its trials are exchangeable; "inf" when none of its draws reaches the target).

    python3 analyse.py OUT GRIDS SEED...
"""
import json
import random
import sqlite3
import statistics
import sys

out, grids, seeds = sys.argv[1], sys.argv[2], [int(s) for s in sys.argv[3:]]
saved = json.load(open(f"{grids}/savings.json"))
best_config = saved["best_config"]
spread_values = []
for s in saved["seeds"]:
    c = sqlite3.connect(f"{grids}/full-{s}.db")
    for swept, best in c.execute(
        "SELECT json_extract(r.spec, '$.swept'), s.best_val_loss FROM runs r "
        "JOIN summaries s ON s.run_id = r.id"
    ):
        if swept == best_config:
            spread_values.append(best)
tolerances = {"range": saved["tolerance"], "std": statistics.stdev(spread_values)}


def grid_best(seed):
    c = sqlite3.connect(f"{grids}/full-{seed}.db")
    return c.execute("SELECT min(best_val_loss) FROM summaries").fetchone()[0]


def trials(name):
    c = sqlite3.connect(f"{out}/{name}.db")
    return c.execute(
        """SELECT t.trial, r.step, s.best_val_loss FROM trials t JOIN runs r ON r.id = t.run_id
           LEFT JOIN summaries s ON s.run_id = r.id ORDER BY t.trial"""
    ).fetchall()


def to_target(rows, target):
    steps = 0
    for trial, step, best in rows:
        steps += step
        if best is not None and best <= target:
            return steps, trial
    return None, None


results = {}
summary = {}
for name, tolerance in tolerances.items():
    wins = {"none": 0, "asha": 0}
    print(f"\ntolerance {name} = {tolerance:.4f}")
    print("seed  grid best  target   | stop  tpe: steps to target (trial), best, all steps | random: same | TPE fewer?")
    for s in seeds:
        best = grid_best(s)
        target = best + tolerance
        results.setdefault(s, {"grid_best": best})[name] = {"target": target}
        for stop in ["none", "asha"]:
            cells = {}
            for method in ["tpe", "random"]:
                rows = trials(f"{method}-{stop}-{s}")
                steps, trial = to_target(rows, target)
                cells[method] = {
                    "steps_to_target": steps,
                    "trial": trial,
                    "best": min(r[2] for r in rows if r[2] is not None),
                    "steps": sum(r[1] for r in rows),
                    "trials": len(rows),
                }
            if stop == "none":
                # Random search's trials are exchangeable: its expected steps to the target over
                # every order of the same draws (1,000 shuffles), without the luck of the order.
                rows = trials(f"random-{stop}-{s}")
                rng = random.Random(s)
                got = []
                for _ in range(1000):
                    order = rows[:]
                    rng.shuffle(order)
                    steps, _ = to_target(order, target)
                    got.append(steps if steps is not None else float("inf"))
                cells["random"]["mean_over_orders"] = sum(got) / len(got)
            t, r = cells["tpe"]["steps_to_target"], cells["random"]["steps_to_target"]
            win = t is not None and (r is None or t < r)
            wins[stop] += win
            results[s][name][stop] = cells
            fmt = lambda c: (f"{c['steps_to_target'] if c['steps_to_target'] is not None else 'never':>6} "
                             f"(#{c['trial'] if c['trial'] is not None else '-'}), {c['best']:.4f}, {c['steps']}")
            mean = cells["random"].get("mean_over_orders")
            shuffled = "" if mean is None else f" | over orders {mean:.0f}" + (" (TPE fewer)" if t is not None and t < mean else "")
            print(f"{s:>4}  {best:.4f}     {target:.4f} | {stop:<4}  {fmt(cells['tpe'])} | {fmt(cells['random'])} | {'yes' if win else 'no'}{shuffled}")
    summary[name] = wins
    print(f"TPE reached the target with fewer steps than random search: "
          f"without early stopping {wins['none']}/{len(seeds)}, with ASHA {wins['asha']}/{len(seeds)}")
json.dump({"tolerances": tolerances, "wins": summary, "seeds": results},
          open(f"{out}/search.json", "w"), indent=1)

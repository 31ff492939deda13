"""Writes one CSV line per run of each store given (store, run, experiment, pid, shape keys,
status, attempts, step, trainer seconds, started, finished, first and last metric times), so
that a forecast can be checked against what each run took without carrying the stores back."""
import json
import sqlite3
import sys

print("store,run,experiment,pid,dim,unit,status,attempts,step,trainer_s,started,finished,t_first_ms,t_last_ms")
for path in sys.argv[1:]:
    c = sqlite3.connect(path)
    rows = c.execute(
        """SELECT r.id, e.name, r.pid, r.spec, r.status, r.attempts, r.step, s.wall_s,
                  r.started_at, r.finished_at,
                  (SELECT min(t_ms) FROM metrics m WHERE m.run_id = r.id),
                  (SELECT max(t_ms) FROM metrics m WHERE m.run_id = r.id)
           FROM runs r JOIN experiments e ON e.id = r.experiment_id
           LEFT JOIN summaries s ON s.run_id = r.id ORDER BY r.id""").fetchall()
    for (rid, exp, pid, spec, status, attempts, step, wall, started, finished, t0, t1) in rows:
        m = json.loads(spec)["config"]["model"]
        print(",".join(str(x) for x in [path.split("/")[-1], rid, exp, pid, m["dim"], m["ffn"]["unit"],
                                        status, attempts, step, wall, started, finished, t0, t1]))

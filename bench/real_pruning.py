#!/usr/bin/python3
"""Does the replay's saving hold in wall time? A real two-worker study with a pruner, next to one without.

The no-pruning arm is a recording made by bench/record_curves.sh (a real study: hpo-server and two hpo-workers
with one thread each, random configurations of bench/record-curves.json, 10 epochs on 10,000 Fashion-MNIST
images). This script runs the same study (same spec, sampler seed and so the same configurations in the same
trial order, the first --trials of them) with --pruner, on the same binaries and worker settings, and compares
the first --trials trials of both: wall time (first start to last finish, from the stored timestamps), epochs
trained, and the best final validation accuracy.

Machine load differs between two runs made at different times, so it also reports the load factor: the
median ratio of epoch durations of the same trial and epoch in both runs (identical work), and the wall-time
ratio corrected by it.

  /usr/bin/python3 bench/real_pruning.py --baseline-db /tmp/hpo-record.XXXX/hpo.db [--trials 30]
      [--pruner '{"type": "asha", "min_resource": 1, "reduction_factor": 3}'] [--build build]
"""
import argparse
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(REPO, "examples", "python"))
import hpo_client  # noqa: E402
from sampler_bench import Server  # noqa: E402


def summarize(db, trials):
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    rows = con.execute("SELECT t.id, t.number, t.state, t.value, t.started_ms, t.finished_ms FROM trials t "
                       "WHERE t.number < ? ORDER BY t.number", (trials,)).fetchall()
    if len(rows) < trials or any(r[5] is None or r[5] == 0 for r in rows):
        sys.exit(f"{db}: fewer than {trials} finished trials")
    epochs, seconds = 0, {}
    for tid, number, *_ in rows:
        for step, metrics in con.execute("SELECT step, metrics_json FROM measurements WHERE trial_id = ?", (tid,)):
            epochs += 1
            seconds[(number, step)] = json.loads(metrics).get("epoch_seconds")
    done = [r for r in rows if r[2] == "COMPLETED"]
    best = max(done, key=lambda r: r[3])
    return {"wall_s": (max(r[5] for r in rows) - min(r[4] for r in rows)) / 1000, "epochs": epochs,
            "completed": len(done), "pruned": sum(r[2] == "PRUNED" for r in rows), "best_value": best[3],
            "best_trial": best[1], "epoch_seconds": seconds}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--baseline-db", required=True)
    ap.add_argument("--trials", type=int, default=30)
    ap.add_argument("--pruner", default='{"type": "asha", "min_resource": 1, "reduction_factor": 3}')
    ap.add_argument("--build", default=os.path.join(REPO, "build"))
    ap.add_argument("--out", default=os.path.join(HERE, "results", "real_pruning.json"))
    args = ap.parse_args()
    con = sqlite3.connect(f"file:{args.baseline_db}?mode=ro", uri=True)
    spec = json.loads(con.execute("SELECT spec_json FROM studies ORDER BY id LIMIT 1").fetchone()[0])
    con.close()
    spec.update({"name": "real-pruning", "max_trials": args.trials, "pruner": json.loads(args.pruner)})
    server = Server(os.path.join(args.build, "server", "hpo-server"))
    workers = []
    try:
        study = hpo_client.create_study(server.addr, spec)
        for i in (1, 2):
            log = open(os.path.join(server.dir, f"worker-{i}.log"), "w")
            workers.append(subprocess.Popen([os.path.join(args.build, "worker", "hpo-worker"),
                                             f"--coordinator={server.addr}", "--threads=1",
                                             f"--worker_id=real-{i}"], stdout=log, stderr=subprocess.STDOUT))
        while hpo_client.get_study(server.addr, study)["state"] == "RUNNING":
            time.sleep(5)
        for w in workers:
            w.terminate()
            w.wait()
        server.proc.terminate()
        server.proc.wait()
        pruned = summarize(os.path.join(server.dir, "bench.db"), args.trials)
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
        server.close()
    base = summarize(args.baseline_db, args.trials)
    pairs = [pruned["epoch_seconds"][k] / base["epoch_seconds"][k] for k in pruned["epoch_seconds"]
             if k in base["epoch_seconds"] and base["epoch_seconds"][k] and pruned["epoch_seconds"][k]]
    load = statistics.median(pairs)
    print(f"first {args.trials} configurations of seed {spec['sampler']['seed']}, 2 workers x 1 thread\n")
    print("| run | wall s | epochs | completed / pruned | best val accuracy (trial) |")
    print("|---|---|---|---|---|")
    for name, r in (("no pruning (recording)", base), (f"pruner {args.pruner}", pruned)):
        print(f"| {name} | {r['wall_s']:.0f} | {r['epochs']} | {r['completed']} / {r['pruned']} | "
              f"{r['best_value']:.4f} ({r['best_trial']}) |")
    ratio = pruned["wall_s"] / base["wall_s"]
    print(f"\nwall-time ratio {ratio:.2f}; epochs ratio {pruned['epochs'] / base['epochs']:.2f}; load factor "
          f"(median epoch-time ratio over {len(pairs)} identical epochs) {load:.2f}; wall-time ratio at equal "
          f"load {ratio / load:.2f}")
    for r in (base, pruned):
        del r["epoch_seconds"]
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"trials": args.trials, "pruner": json.loads(args.pruner), "baseline": base, "pruned": pruned,
                   "load_factor": load, "wall_ratio": ratio}, f, indent=1)


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""Which pruner finds the best *completed* model within a wall-clock budget? (issue 16)

bench/pruner_replay.py asks how many epochs a pruner saves. A user with a fixed budget asks something else:
how good is the best trial that has *completed* (a final model with a test accuracy) when the time is up.
Pruning too hard means few trials ever complete; pruning too little means few trials are tried.

This replays the recorded learning curves (bench/curves/*.json: hpo-worker training random configurations
of the Fashion-MNIST space for 10 epochs, with each epoch's time) through the real hpo-server's pruners over
gRPC, as bench/pruner_replay.py does, but with --workers simulated workers, trials of --epochs epochs (the
first epochs of each curve) and a time budget. A trial's value is its best validation accuracy over its
epochs, as hpo's `val_accuracy` objective is. Every pruner sees the same trial orders (the configurations
in a random order per seed, i.e. random search), so the differences are the pruner's alone.

Budgets are given in epochs per worker (--budgets): in the 10-minute search-outcome run (30,000 training
images, 2 workers with 1 thread) hpo trained 43 epochs, about 21 per worker per 10 minutes, so 21,43,64 stand
for 10, 20 and 30 minutes. A budget of B is B times the mean recorded epoch time.

It prints, per pruner and budget, the mean (over seeds) best completed validation accuracy, its test accuracy
(the curve's recorded test accuracy), how many trials completed, and in how many seeds none beyond the
first had completed.

  /usr/bin/python3 bench/budget_replay.py [--seeds 40] [--workers 2] [--epochs 8] [--budgets 21,43,64]
"""
import argparse
import heapq
import json
import os
import random
import statistics
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "examples", "python"))
import hpo_client  # noqa: E402
from pruner_replay import load_curves, replay_params  # noqa: E402
from sampler_bench import Server  # noqa: E402

PB = hpo_client.coordinator_pb2

PRUNERS = {
    "none": {"type": "none"},
    "asha min 1 rf 3": {"type": "asha", "min_resource": 1, "reduction_factor": 3},
    "asha min 1 rf 2": {"type": "asha", "min_resource": 1, "reduction_factor": 2},
    "asha min 1 rf 3 bootstrap 3": {"type": "asha", "min_resource": 1, "reduction_factor": 3, "bootstrap_count": 3},
    "asha min 1 rf 3 bootstrap 6": {"type": "asha", "min_resource": 1, "reduction_factor": 3, "bootstrap_count": 6},
    "asha min 2 rf 3": {"type": "asha", "min_resource": 2, "reduction_factor": 3},
    "asha min 2 rf 2": {"type": "asha", "min_resource": 2, "reduction_factor": 2},
    "asha min 3 rf 3": {"type": "asha", "min_resource": 3, "reduction_factor": 3},
    "hyperband min 1 rf 3": {"type": "hyperband", "min_resource": 1, "reduction_factor": 3},
    "median startup 4 warmup 1": {"type": "median", "startup_trials": 4, "warmup_steps": 1},
    "median startup 4 warmup 2": {"type": "median", "startup_trials": 4, "warmup_steps": 2},
    "percentile keep 33 startup 4 warmup 2": {"type": "percentile", "keep_top": 33, "startup_trials": 4,
                                              "warmup_steps": 2},
}


def simulate(curves, order, workers, epochs, horizon, ask, report, finish):
    """Asynchronous workers over recorded curves until simulated time `horizon`. Returns the completions as
    (time, value, test accuracy) in time order, the epochs trained and the trials started."""
    events, next_i, trained = [], 0, 0
    running, completions = {}, []

    def start(worker, t):
        nonlocal next_i
        i = order[next_i % len(order)]
        next_i += 1
        running[worker] = (i, ask(i), 0)
        heapq.heappush(events, (t + curves[i]["epoch_seconds"][0], worker))

    for w in range(workers):
        start(w, 0.0)
    while events:
        clock, w = heapq.heappop(events)
        if clock > horizon:
            break
        i, handle, done = running[w]
        value = curves[i]["values"][done]
        done += 1
        trained += 1
        prune = report(handle, done, value)
        if prune or done == epochs:
            finish(handle, prune)
            if not prune:
                completions.append((clock, max(curves[i]["values"][:epochs]), curves[i].get("test_accuracy")))
            start(w, clock)
        else:
            running[w] = (i, handle, done)
            heapq.heappush(events, (clock + curves[i]["epoch_seconds"][done], w))
    return {"completions": completions, "epochs": trained, "started": next_i}


def run_hpo(stub, curves, order, pruner, seed, workers, epochs, horizon):
    params = replay_params(curves)
    spec = {"name": f"budget-{seed}", "objective": {"direction": "maximize"},
            "task": {"type": "external", "max_steps": epochs}, "parameters": params,
            "sampler": {"type": "random", "seed": seed}, "pruner": pruner, "max_trials": 100000}
    study = stub.CreateStudy(PB.CreateStudyRequest(spec_json=json.dumps(spec))).study.id

    def ask(i):
        stub.EnqueueTrial(PB.EnqueueTrialRequest(study_id=study, params_json=json.dumps(curves[i]["params"])))
        r = stub.AskTrial(PB.AskTrialRequest(worker_id="replay", task_types=["external"], study_id=study))
        assert r.assigned
        return {"id": r.trial.id, "best": float("-inf")}

    def report(h, step, value):
        h["best"] = max(h["best"], value)
        m = hpo_client.study_pb2.Measurement(step=step, value=value)
        for d in stub.ReportProgress(iter([PB.ProgressReport(trial_id=h["id"], measurement=m)])):
            return d.action != PB.ProgressDecision.CONTINUE
        return False

    def finish(h, pruned):
        if not pruned:
            stub.CompleteTrial(PB.CompleteTrialRequest(trial_id=h["id"]))

    result = simulate(curves, order, workers, epochs, horizon, ask, report, finish)
    stub.StopStudy(PB.StopStudyRequest(study_id=study))
    return result


def best_at(completions, t):
    done = [c for c in completions if c[0] <= t]
    if not done:
        return None
    return max(done, key=lambda c: c[1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--curves", default=os.path.join(HERE, "curves", "*.json"))
    ap.add_argument("--seeds", type=int, default=40)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--budgets", default="21,43,64", help="epochs per worker, comma-separated")
    ap.add_argument("--pruners", default=",".join(PRUNERS), help="comma-separated names from PRUNERS")
    ap.add_argument("--server", default=os.path.join(os.path.dirname(HERE), "build", "server", "hpo-server"))
    ap.add_argument("--out", default=os.path.join(HERE, "results", "budget_replay.json"))
    args = ap.parse_args()
    import grpc
    curves = load_curves(args.curves)
    budgets = [float(b) for b in args.budgets.split(",")]
    mean_epoch = statistics.mean(s for c in curves for s in c["epoch_seconds"][:args.epochs])
    horizon = max(budgets) * mean_epoch
    names = args.pruners.split(",")
    server = Server(args.server)
    results = {}
    try:
        stub = hpo_client.coordinator_pb2_grpc.CoordinatorStub(grpc.insecure_channel(server.addr))
        for seed in range(args.seeds):
            order = list(range(len(curves)))
            random.Random(seed).shuffle(order)
            for name in names:
                results.setdefault(name, []).append(
                    run_hpo(stub, curves, order, PRUNERS[name], seed, args.workers, args.epochs, horizon))
    finally:
        server.close()
    no_prune_best = max(max(c["values"][:args.epochs]) for c in curves)
    print(f"{len(curves)} recorded curves, {args.seeds} random trial orders, {args.workers} simulated workers, "
          f"{args.epochs}-epoch trials, mean epoch {mean_epoch:.2f} s; best of all curves {no_prune_best:.4f}\n")
    head = " | ".join(f"{b:g} epochs/worker: best val, test, completed" for b in budgets)
    print(f"| pruner | {head} | epochs trained, trials started by the end |")
    print("|---|" + "---|" * len(budgets) + "---|")
    summary = {}
    for name in names:
        rs = results[name]
        cells = []
        for b in budgets:
            t = b * mean_epoch
            bests = [best_at(r["completions"], t) for r in rs]
            vals = [x[1] if x else float("nan") for x in bests]
            tests = [x[2] for x in bests if x and x[2] is not None]
            counts = [sum(1 for c in r["completions"] if c[0] <= t) for r in rs]
            found = [v for v in vals if v == v]
            summary.setdefault(name, {})[f"{b:g}"] = {
                "mean_best_val": statistics.mean(found) if found else None,
                "median_best_val": statistics.median(found) if found else None,
                "mean_test": statistics.mean(tests) if tests else None,
                "mean_completed": statistics.mean(counts), "seeds_with_completion": len(found)}
            cells.append(f"{statistics.mean(found):.4f}, {statistics.mean(tests):.4f}, "
                         f"{statistics.mean(counts):.1f}" + ("" if len(found) == len(rs) else
                                                            f" [{len(found)}/{len(rs)}]"))
        epochs = statistics.mean(r["epochs"] for r in rs)
        started = statistics.mean(r["started"] for r in rs)
        print(f"| {name} | " + " | ".join(cells) + f" | {epochs:.0f}, {started:.0f} |")
    print("\nmean over seeds; best = best completed trial by validation accuracy at that time; test = its "
          "recorded test accuracy; [k/n]: only k seeds had a completed trial by then")
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"args": vars(args), "mean_epoch_s": mean_epoch, "summary": summary,
                   "results": {k: [{"epochs": r["epochs"], "started": r["started"],
                                    "completions": r["completions"]} for r in v] for k, v in results.items()}},
                  f, indent=1)


if __name__ == "__main__":
    main()

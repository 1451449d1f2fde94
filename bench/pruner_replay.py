#!/usr/bin/python3
"""Replays recorded learning curves through hpo's pruners (a real hpo-server over gRPC) and Optuna 3.1's.

The curves (bench/curves/*.json, recorded by bench/record_curves.sh: hpo-worker training random
configurations for 10 epochs) are replayed in the same trial order for every pruner, per seed, by 4
simulated asynchronous workers: each epoch of a trial takes the time recorded for it, and the pruner is
asked after each epoch in the order the epochs end in simulated time. hpo's trials are queued with
EnqueueTrial in that order and asked for by the simulated workers, so the coordinator sees the same
RUNNING/finished trials a real study would.

Per pruner it prints: total epochs trained, simulated wall time of the 4 workers, best final validation
accuracy found, epochs spent until a trial within 0.3 points of the no-pruning best was found, and how
often the overall best configuration was pruned.

  /usr/bin/python3 bench/pruner_replay.py [--seeds 5] [--curves 'bench/curves/*.json']
"""
import argparse
import glob
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
from sampler_bench import Server  # noqa: E402

PB = hpo_client.coordinator_pb2
WORKERS = 4
EPOCHS = 10
NEAR = 0.003  # 0.3 points of accuracy

HPO_PRUNERS = {
    "none": {"type": "none"},
    "median": {"type": "median", "startup_trials": 5, "warmup_steps": 1},
    "asha": {"type": "asha", "min_resource": 1, "reduction_factor": 3},
    "hyperband": {"type": "hyperband", "min_resource": 1, "reduction_factor": 3},
    "asha+patience": [{"type": "asha", "min_resource": 1, "reduction_factor": 3}, {"type": "patience", "patience": 3}],
}


def optuna_pruner(optuna, name):
    return {"none": optuna.pruners.NopPruner(),
            "median": optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=2),
            "sha": optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3),
            "hyperband": optuna.pruners.HyperbandPruner(min_resource=1, max_resource=EPOCHS, reduction_factor=3)}[name]


def load_curves(pattern):
    curves = []
    for path in sorted(glob.glob(pattern)):
        with open(path) as f:
            curves += [c for c in json.load(f)["curves"] if len(c["values"]) == EPOCHS]
    return curves


def simulate(curves, order, ask, report, finish):
    """Event loop of 4 async workers. ask() -> handle; report(handle, step, value) -> True to prune;
    finish(handle, pruned). Returns the record of what happened."""
    events, clock, next_i, epochs = [], 0.0, 0, 0
    best_final, best_at_epochs, pruned_best = -1.0, None, False
    no_pruning_best = max(max(c["values"]) for c in curves)
    overall_best = max(range(len(curves)), key=lambda i: max(curves[i]["values"]))
    running = {}

    def start(worker, t):
        nonlocal next_i
        if next_i >= len(order):
            return
        i = order[next_i]
        next_i += 1
        running[worker] = (i, ask(), 0)
        heapq.heappush(events, (t + curves[i]["epoch_seconds"][0], worker))

    for w in range(WORKERS):
        start(w, 0.0)
    while events:
        clock, w = heapq.heappop(events)
        i, handle, done = running[w]
        value = curves[i]["values"][done]
        done += 1
        epochs += 1
        prune = report(handle, done, value)
        if prune or done == EPOCHS:
            finish(handle, prune)
            if prune and i == overall_best:
                pruned_best = True
            if not prune:
                final = max(curves[i]["values"])
                best_final = max(best_final, final)
                if best_at_epochs is None and final >= no_pruning_best - NEAR:
                    best_at_epochs = epochs
            start(w, clock)
        else:
            running[w] = (i, handle, done)
            heapq.heappush(events, (clock + curves[i]["epoch_seconds"][done], w))
    return {"epochs": epochs, "wall_s": clock, "best_final": best_final, "epochs_to_near_best": best_at_epochs,
            "pruned_overall_best": pruned_best}


def replay_params(curves):
    """The recorded configurations' values as categorical parameters (so any of them can be enqueued)."""
    space = {}
    for c in curves:
        for k, v in c["params"].items():
            space.setdefault(k, set()).add(json.dumps(v))
    return [{"name": k, "type": "categorical", "choices": sorted((json.loads(x) for x in vals), key=str)}
            for k, vals in space.items()]


def run_hpo(addr, curves, order, pruner, seed):
    import grpc
    params = replay_params(curves)
    spec = {"name": f"replay-{seed}", "objective": {"direction": "maximize"},
            "task": {"type": "external", "max_steps": EPOCHS}, "parameters": params,
            "sampler": {"type": "random", "seed": seed}, "pruner": pruner, "max_trials": len(order)}
    study = hpo_client.create_study(addr, spec)
    ch = grpc.insecure_channel(addr)
    stub = hpo_client.coordinator_pb2_grpc.CoordinatorStub(ch)
    for i in order:
        stub.EnqueueTrial(PB.EnqueueTrialRequest(study_id=study, params_json=json.dumps(curves[i]["params"])))

    def ask():
        r = stub.AskTrial(PB.AskTrialRequest(worker_id="replay", task_types=["external"], study_id=study))
        assert r.assigned
        return r.trial.id

    def report(trial_id, step, value):
        m = hpo_client.study_pb2.Measurement(step=step, value=value)
        for d in stub.ReportProgress(iter([PB.ProgressReport(trial_id=trial_id, measurement=m)])):
            return d.action != PB.ProgressDecision.CONTINUE
        return False

    def finish(trial_id, pruned):
        if not pruned:
            stub.CompleteTrial(PB.CompleteTrialRequest(trial_id=trial_id))

    result = simulate(curves, order, ask, report, finish)
    ch.close()
    return result


def run_optuna(optuna, curves, order, name):
    study = optuna.create_study(direction="maximize", pruner=optuna_pruner(optuna, name),
                                sampler=optuna.samplers.RandomSampler(seed=0))

    def ask():
        return {"trial": study.ask(), "best": float("-inf")}

    def report(h, step, value):
        h["best"] = max(h["best"], value)
        h["trial"].report(value, step)
        return h["trial"].should_prune()

    def finish(h, pruned):
        if pruned:
            study.tell(h["trial"], state=optuna.trial.TrialState.PRUNED)
        else:
            study.tell(h["trial"], h["best"])

    return simulate(curves, order, ask, report, finish)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--curves", default=os.path.join(HERE, "curves", "*.json"))
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--server", default=os.path.join(os.path.dirname(HERE), "build", "server", "hpo-server"))
    ap.add_argument("--out", default=os.path.join(HERE, "results", "pruner_replay.json"))
    args = ap.parse_args()
    curves = load_curves(args.curves)
    if len(curves) < WORKERS:
        sys.exit(f"only {len(curves)} complete curves in {args.curves}: record more with bench/record_curves.sh")
    import optuna
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    server = Server(args.server)
    results = {}
    try:
        for seed in range(args.seeds):
            order = list(range(len(curves)))
            random.Random(seed).shuffle(order)
            for name, cfg in HPO_PRUNERS.items():
                results.setdefault(f"hpo {name}", []).append(run_hpo(server.addr, curves, order, cfg, seed))
            for name in ("none", "median", "sha", "hyperband"):
                results.setdefault(f"optuna {name}", []).append(run_optuna(optuna, curves, order, name))
    finally:
        server.close()
    base = statistics.mean(r["epochs"] for r in results["hpo none"])
    print(f"{len(curves)} recorded curves, {args.seeds} trial orders, {WORKERS} simulated workers\n")
    print("| pruner | epochs (share of none) | simulated wall s | best final val acc | epochs to within 0.3 pt "
          "of the best | overall best pruned |")
    print("|---|---|---|---|---|---|")
    for name, rs in results.items():
        near = [r["epochs_to_near_best"] for r in rs if r["epochs_to_near_best"] is not None]
        near_text = f"{statistics.mean(near):.0f} ({len(near)}/{len(rs)} found)" if near else "- (0 found)"
        epochs = statistics.mean(r["epochs"] for r in rs)
        print(f"| {name} | {epochs:.0f} ({epochs / base:.2f}) | {statistics.mean(r['wall_s'] for r in rs):.0f} | "
              f"{statistics.mean(r['best_final'] for r in rs):.4f} | {near_text} | ", end="")
        print(f"{sum(r['pruned_overall_best'] for r in rs)}/{len(rs)} |")
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"curves": len(curves), "seeds": args.seeds, "results": results}, f, indent=1)


if __name__ == "__main__":
    main()

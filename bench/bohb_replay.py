#!/usr/bin/python3
"""Does TPE learn from pruned trials? Samplers with ASHA on a surrogate built from recorded learning curves.

The recorded curves (bench/curves/*.json: hpo-worker training random configurations of bench/record-curves.json
for 10 epochs) become a lookup surrogate: a suggested configuration trains as the recorded configuration
nearest to it (numeric parameters scaled to [0, 1], log scale where the spec says so; a differing categorical
counts 1), replaying that configuration's per-epoch validation accuracy and epoch times. 4 simulated
asynchronous workers run each study until --budget epochs have been trained, every trial under ASHA
(min_resource 1, reduction_factor 3) and the sampler under test, which sees the pruned trials as they are.

Arms: hpo tpe (rung fitting, the default: while fewer than parameters + 3 trials have completed, the model
splits good from bad at the highest step enough trials reached, as in BOHB), hpo tpe with rung_fit false
(pruned trials count by their last value, ranked below completed ones), hpo tpe with use_pruned false
(completed trials only), hpo random, and Optuna 3.1's default TPESampler with SuccessiveHalvingPruner.
Reported: the regret (best recorded accuracy minus the best final accuracy found) after --checkpoints
epochs, median and mean over --seeds seeds.

--surrogate hartmann6 replaces the recorded curves by smooth synthetic ones (see Hartmann6Curves).

  /usr/bin/python3 bench/bohb_replay.py [--surrogate curves|hartmann6] [--seeds 10] [--budget 200]
                                        [--checkpoints 50,100,200]
"""
import argparse
import heapq
import json
import math
import os
import statistics
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "examples", "python"))
import hpo_client  # noqa: E402
from pruner_replay import load_curves, EPOCHS, WORKERS  # noqa: E402
from sampler_bench import Server  # noqa: E402

PB = hpo_client.coordinator_pb2
ASHA = {"type": "asha", "min_resource": 1, "reduction_factor": 3}
ARMS = {
    "hpo tpe (rung fitting)": {"type": "tpe"},
    "hpo tpe, rung_fit false": {"type": "tpe", "rung_fit": False},
    "hpo tpe, use_pruned false": {"type": "tpe", "use_pruned": False},
    "hpo gp (rung fitting)": {"type": "gp"},
    "hpo gp, rung_fit false": {"type": "gp", "rung_fit": False},
    "hpo random": {"type": "random"},
}


class Surrogate:
    def __init__(self, curves, params):
        self.curves, self.params = curves, params

    def nearest(self, config):
        def dist(c):
            d = 0.0
            for p in self.params:
                a, b = config[p["name"]], c["params"][p["name"]]
                if p["type"] == "categorical":
                    d += 0.0 if a == b else 1.0
                else:
                    f = math.log if p.get("log") else (lambda x: x)
                    d += ((f(a) - f(b)) / (f(p["high"]) - f(p["low"]))) ** 2
            return d
        return min(range(len(self.curves)), key=lambda i: dist(self.curves[i]))

    def curve(self, config):
        return self.curves[self.nearest(config)]


class Hartmann6Curves:
    """A smooth synthetic alternative: configuration x in [0, 1]^6 reaches A(x) = -Hartmann6(x) / 3.3224 (1 at the
    optimum) as A(x) * (1 - exp(-step / tau)) with tau = 0.5 + 4 * x1, so slow starters exist and curves cross;
    an epoch takes 1 + 0.5 * x2 simulated seconds."""

    def __init__(self):
        from sampler_bench import hartmann6_x, H6_MIN
        self.f, self.norm = hartmann6_x, -H6_MIN
        self.params = [{"name": f"x{i}", "type": "float", "low": 0.0, "high": 1.0} for i in range(1, 7)]
        self.top = 1.0

    def curve(self, config):
        x = [config[f"x{i}"] for i in range(1, 7)]
        a, tau = -self.f(x) / self.norm, 0.5 + 4 * x[0]
        return {"values": [a * (1 - math.exp(-s / tau)) for s in range(1, EPOCHS + 1)],
                "epoch_seconds": [1 + 0.5 * x[1]] * EPOCHS}


def simulate(surrogate, budget, checkpoints, ask, report, finish):
    """4 async workers until `budget` epochs are trained. Returns the best final accuracy found at each checkpoint."""
    events, epochs, best, trace = [], 0, -1.0, {}
    running = {}

    def start(w, t):
        handle, config = ask()
        c = surrogate.curve(config)
        running[w] = (c, handle, 0)
        heapq.heappush(events, (t + c["epoch_seconds"][0], w))

    for w in range(WORKERS):
        start(w, 0.0)
    while events and epochs < budget:
        clock, w = heapq.heappop(events)
        c, handle, done = running[w]
        done += 1
        epochs += 1
        prune = report(handle, done, c["values"][done - 1])
        if prune or done == EPOCHS:
            finish(handle, prune, max(c["values"][:done]))
            if not prune:
                best = max(best, max(c["values"]))
            start(w, clock)
        else:
            running[w] = (c, handle, done)
            heapq.heappush(events, (clock + c["epoch_seconds"][done], w))
        for c in checkpoints:
            if epochs == c:
                trace[c] = best
    return trace


def run_hpo(addr, spec_params, surrogate, sampler, seed, budget, checkpoints):
    import grpc
    spec = {"name": f"bohb-{seed}", "objective": {"direction": "maximize"},
            "task": {"type": "external", "max_steps": EPOCHS}, "parameters": spec_params,
            "sampler": dict(sampler, seed=seed), "pruner": ASHA, "max_trials": 100000}
    study = hpo_client.create_study(addr, spec)
    ch = grpc.insecure_channel(addr)
    stub = hpo_client.coordinator_pb2_grpc.CoordinatorStub(ch)

    def ask():
        r = stub.AskTrial(PB.AskTrialRequest(worker_id="bohb", task_types=["external"], study_id=study))
        assert r.assigned
        return r.trial.id, {k: hpo_client._param_value(v) for k, v in r.trial.params.items()}

    def report(trial_id, step, value):
        m = hpo_client.study_pb2.Measurement(step=step, value=value)
        for d in stub.ReportProgress(iter([PB.ProgressReport(trial_id=trial_id, measurement=m)])):
            return d.action != PB.ProgressDecision.CONTINUE
        return False

    def finish(trial_id, pruned, best):
        if not pruned:
            stub.CompleteTrial(PB.CompleteTrialRequest(trial_id=trial_id))

    trace = simulate(surrogate, budget, checkpoints, ask, report, finish)
    ch.close()
    return trace


def run_optuna(optuna, spec_params, surrogate, seed, budget, checkpoints):
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed),
                                pruner=optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3))

    def ask():
        t = study.ask()
        config = {}
        for p in spec_params:
            if p["type"] == "categorical":
                config[p["name"]] = t.suggest_categorical(p["name"], p["choices"])
            elif p["type"] == "int":
                config[p["name"]] = t.suggest_int(p["name"], p["low"], p["high"], step=p.get("step", 1))
            else:
                config[p["name"]] = t.suggest_float(p["name"], p["low"], p["high"], log=p.get("log", False))
        return t, config

    def report(t, step, value):
        t.report(value, step)
        return t.should_prune()

    def finish(t, pruned, best):
        study.tell(t, state=optuna.trial.TrialState.PRUNED) if pruned else study.tell(t, best)

    return simulate(surrogate, budget, checkpoints, ask, report, finish)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--curves", default=os.path.join(HERE, "curves", "*.json"))
    ap.add_argument("--spec", default=os.path.join(HERE, "record-curves.json"))
    ap.add_argument("--surrogate", choices=["curves", "hartmann6"], default="curves")
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--budget", type=int, default=200)
    ap.add_argument("--checkpoints", default="50,100,200")
    ap.add_argument("--server", default=os.path.join(os.path.dirname(HERE), "build", "server", "hpo-server"))
    ap.add_argument("--out", default=os.path.join(HERE, "results", "bohb_replay.json"))
    args = ap.parse_args()
    checkpoints = [int(c) for c in args.checkpoints.split(",")]
    if args.surrogate == "curves":
        curves = load_curves(args.curves)
        with open(args.spec) as f:
            spec_params = json.load(f)["parameters"]
        surrogate = Surrogate(curves, spec_params)
        top = max(max(c["values"]) for c in curves)
        what = f"{len(curves)} recorded curves (best {top:.4f})"
    else:
        surrogate = Hartmann6Curves()
        spec_params, top, what = surrogate.params, surrogate.top, "Hartmann6 learning curves (best 1)"
    import optuna
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    server = Server(args.server)
    results = {}
    try:
        for seed in range(args.seeds):
            for name, sampler in ARMS.items():
                results.setdefault(name, []).append(
                    run_hpo(server.addr, spec_params, surrogate, sampler, seed, args.budget, checkpoints))
            results.setdefault("optuna tpe", []).append(
                run_optuna(optuna, spec_params, surrogate, seed, args.budget, checkpoints))
    finally:
        server.close()
    print(f"{what}, {args.seeds} seeds, {args.budget} epochs, {WORKERS} simulated workers, "
          f"ASHA (min_resource 1, reduction_factor 3)\n")
    print("| sampler | " + " | ".join(f"regret after {c} epochs: median (mean)" for c in checkpoints) + " |")
    print("|---|" + "---|" * len(checkpoints))
    summary = {}
    for name, traces in results.items():
        cells = []
        for c in checkpoints:
            regrets = [top - t[c] if t.get(c, -1) >= 0 else top for t in traces]
            summary.setdefault(name, {})[c] = regrets
            cells.append(f"{statistics.median(regrets) * 100:.2f} pt ({statistics.mean(regrets) * 100:.2f})")
        print(f"| {name} | " + " | ".join(cells) + " |")
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"surrogate": what, "best": top, "seeds": args.seeds, "budget": args.budget,
                   "regrets": summary}, f, indent=1)


if __name__ == "__main__":
    main()

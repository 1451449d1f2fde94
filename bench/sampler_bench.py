#!/usr/bin/python3
"""Sampler benchmark: hpo's samplers (over gRPC, against a real hpo-server) next to Optuna 3.1's.

Usage: /usr/bin/python3 bench/sampler_bench.py [--seeds 20] [--trials 100]
           [--hpo-samplers random,tpe,tpe-univariate,gp] [--optuna-samplers random,tpe,tpe-multivariate]
           [--latency [--latency-sizes 1000,10000] [--latency-asks 50]] [--server PATH] [--out FILE]

Quality: for every function (Branin 2-D, Hartmann6 6-D, both minimized), sampler and seed (0..seeds-1,
the sampler's seed), one study of --trials trials is run sequentially: this script is the worker
(hpo_client.run_worker: ask -> report the value as step 0 -> complete). The best value after 25, 50 and
100 trials (prefixes of the same run) is summarized over seeds as median and IQR (25th-75th percentile,
numpy 'linear'), with the median regret (best - f*) divided by Optuna TPE's median regret at the same
checkpoint (< 1: better than Optuna TPE). Optuna runs exactly as /work/shared/anchors/optuna_bench.py
does (same functions, constants, parameter order and seeds; in-memory storage).

Latency (--latency): p50/p99 of one AskTrial over gRPC when the study already has N completed trials, for
hpo random and hpo tpe (a tpe study with n_startup_trials = N is filled with N quick random trials, so
the timed asks are the first TPE ones), next to Optuna's study.ask() with all parameters suggested
(RandomSampler, TPESampler; N trials added with study.add_trials, in-memory storage).

A sampler the server refuses (INVALID_ARGUMENT at CreateStudy, e.g. 'sampler.type "tpe" is unknown') is
reported as not available and skipped. All numbers go to --out as JSON.
"""
import argparse
import datetime
import json
import math
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import warnings

import numpy as np

REPO = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.join(REPO, "examples", "python"))
import hpo_client  # noqa: E402

# ---------------------------------------------------------------- functions
# The same definitions and constants as the anchors (/work/shared/anchors/optuna_bench.py).
BRANIN_MIN = 0.397887357729738


def branin_xy(x1, x2):
    a, b, c = 1.0, 5.1 / (4 * math.pi ** 2), 5.0 / math.pi
    r, s, t = 6.0, 10.0, 1.0 / (8 * math.pi)
    return a * (x2 - b * x1 ** 2 + c * x1 - r) ** 2 + s * (1 - t) * math.cos(x1) + s


# Hartmann 6-D (Surjanovic & Bingham, https://www.sfu.ca/~ssurjano/hart6.html)
H6_MIN = -3.32236801141551
H6_ALPHA = np.array([1.0, 1.2, 3.0, 3.2])
H6_A = np.array([
    [10, 3, 17, 3.5, 1.7, 8],
    [0.05, 10, 17, 0.1, 8, 14],
    [3, 3.5, 1.7, 10, 17, 8],
    [17, 8, 0.05, 10, 0.1, 14],
])
H6_P = 1e-4 * np.array([
    [1312, 1696, 5569, 124, 8283, 5886],
    [2329, 4135, 8307, 3736, 1004, 9991],
    [2348, 1451, 3522, 2883, 3047, 6650],
    [4047, 8828, 8732, 5743, 1091, 381],
])


def hartmann6_x(x):
    x = np.asarray(x, dtype=float)
    return float(-np.sum(H6_ALPHA * np.exp(-np.sum(H6_A * (x - H6_P) ** 2, axis=1))))


# name -> (parameters as (name, low, high) in suggestion order, f(params dict), f*)
FUNCTIONS = {
    "branin": ([("x1", -5.0, 10.0), ("x2", 0.0, 15.0)],
               lambda p: branin_xy(p["x1"], p["x2"]), BRANIN_MIN),
    "hartmann6": ([(f"x{i}", 0.0, 1.0) for i in range(6)],
                  lambda p: hartmann6_x([p[f"x{i}"] for i in range(6)]), H6_MIN),
}

HPO_SAMPLERS = {
    "random": lambda seed: {"type": "random", "seed": seed},
    "tpe": lambda seed: {"type": "tpe", "seed": seed},  # hpo's default TPE is multivariate
    "tpe-univariate": lambda seed: {"type": "tpe", "multivariate": False, "seed": seed},
    "gp": lambda seed: {"type": "gp", "seed": seed},
}
OPTUNA_SAMPLERS = ("random", "tpe", "tpe-multivariate")
REFERENCE = "optuna tpe"  # the regret ratios are relative to this one


def optuna_sampler(optuna, name, seed):
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if name == "tpe-multivariate":
        return optuna.samplers.TPESampler(seed=seed, multivariate=True)
    raise ValueError(name)


def optuna_objective(fname):
    space, f, _ = FUNCTIONS[fname]

    def objective(trial):
        return f({name: trial.suggest_float(name, lo, hi) for name, lo, hi in space})

    return objective


def hpo_spec(fname, sampler, trials, name):
    space, _, _ = FUNCTIONS[fname]
    return {"name": name, "objective": {"direction": "minimize"}, "task": {"type": "external"},
            "parameters": [{"name": n, "type": "float", "low": lo, "high": hi} for n, lo, hi in space],
            "sampler": sampler, "max_trials": trials}


# ---------------------------------------------------------------- the server


class Server:
    def __init__(self, binary):
        self.dir = tempfile.mkdtemp(prefix="hpo-bench-")
        port_file = os.path.join(self.dir, "port")
        self.log_path = os.path.join(self.dir, "server.log")
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [binary, "--listen=127.0.0.1:0", f"--port_file={port_file}",
             f"--db={os.path.join(self.dir, 'bench.db')}", "--log_level=warn"],
            stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"hpo-server exited with status {self.proc.returncode}:\n{self.tail()}")
            if os.path.exists(port_file):
                with open(port_file) as f:
                    port = f.read().strip()
                if port:
                    self.addr = f"127.0.0.1:{port}"
                    return
            time.sleep(0.02)
        self.close()
        raise SystemExit("hpo-server did not write its port file within 15 s")

    def tail(self):
        with open(self.log_path) as f:
            return "".join(f.readlines()[-20:])

    def close(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def refused(err):
    """Whether CreateStudy refused the sampler section (the sampler is not (yet) available)."""
    return err.code == "INVALID_ARGUMENT" and "sampler" in err.details


# ---------------------------------------------------------------- quality


def best_so_far(values):
    return np.minimum.accumulate(np.asarray(values, dtype=float))


def run_hpo_quality(addr, fname, sname, seeds, trials, log):
    """Returns {"available": True, "curves": [...], "time_s": [...]} or {"available": False, "reason"}."""
    _, f, _ = FUNCTIONS[fname]
    curves, times = [], []
    for seed in range(seeds):
        spec = hpo_spec(fname, HPO_SAMPLERS[sname](seed), trials, f"bench-{fname}-{sname}-seed{seed}")
        try:
            study = hpo_client.create_study(addr, spec)
        except hpo_client.HpoError as e:
            if refused(e):
                return {"available": False, "reason": str(e)}
            raise
        t0 = time.perf_counter()
        try:
            hpo_client.run_worker(addr, study, lambda params, report: f(params), worker_id="sampler-bench")
        except hpo_client.HpoError as e:
            log(f"  hpo {sname} on {fname}, seed {seed}: {e}")
            return {"available": False, "reason": f"failed while running: {e}"}
        times.append(time.perf_counter() - t0)
        ts = sorted(hpo_client.list_trials(addr, study), key=lambda t: t["trial"])
        bad = [t for t in ts if t["state"] != "COMPLETED"]
        if len(ts) != trials or bad:
            return {"available": False,
                    "reason": f"study {study} ended with {len(ts)} trials, {len(bad)} not completed"}
        curves.append(best_so_far([t["value"] for t in ts]).tolist())
    return {"available": True, "curves": curves, "time_s": times}


def run_optuna_quality(optuna, fname, sname, seeds, trials):
    curves, times = [], []
    for seed in range(seeds):
        study = optuna.create_study(direction="minimize", sampler=optuna_sampler(optuna, sname, seed))
        t0 = time.perf_counter()
        study.optimize(optuna_objective(fname), n_trials=trials)
        times.append(time.perf_counter() - t0)
        curves.append(best_so_far([t.value for t in study.trials]).tolist())
    return {"available": True, "curves": curves, "time_s": times}


def q(a):
    a = np.asarray(a, dtype=float)
    return float(np.median(a)), float(np.percentile(a, 25)), float(np.percentile(a, 75))


def summarize(quality, fmins, checkpoints):
    for fname, per_sampler in quality.items():
        ref = per_sampler.get(REFERENCE)
        for r in per_sampler.values():
            if not r["available"]:
                continue
            r["best"] = {str(c): [curve[c - 1] for curve in r["curves"]] for c in checkpoints}
            r["summary"] = {}
            for c in checkpoints:
                best = np.array(r["best"][str(c)])
                m, lo, hi = q(best)
                rm, rlo, rhi = q(best - fmins[fname])
                ratio = None
                if ref is not None and ref["available"]:
                    ref_rm = float(np.median(np.array([cv[c - 1] for cv in ref["curves"]]) - fmins[fname]))
                    ratio = rm / ref_rm if ref_rm > 0 else (1.0 if rm == ref_rm else math.inf)
                r["summary"][str(c)] = {
                    "best_median": m, "best_q25": lo, "best_q75": hi,
                    "regret_median": rm, "regret_q25": rlo, "regret_q75": rhi,
                    "regret_ratio_to_optuna_tpe": ratio,
                }


def fmt_ratio(x):
    if x is None:
        return "-"
    return "inf" if math.isinf(x) else f"{x:.2f}"


def print_quality(quality, fmins, checkpoints, seeds, trials):
    for fname, per_sampler in quality.items():
        print(f"\n### {fname} (minimize, f* = {fmins[fname]:.6f}); {seeds} seeds, {trials} trials per study")
        print()
        print("| sampler | trials | best: median [IQR] | regret: median [IQR] | regret / optuna tpe | s/study |")
        print("|---|---|---|---|---|---|")
        for sname, r in per_sampler.items():
            if not r["available"]:
                print(f"| {sname} | - | not available: {r['reason']} | | | |")
                continue
            for c in checkpoints:
                s = r["summary"][str(c)]
                print(f"| {sname} | {c} | {s['best_median']:.4f} [{s['best_q25']:.4f}, {s['best_q75']:.4f}] | "
                      f"{s['regret_median']:.4g} [{s['regret_q25']:.3g}, {s['regret_q75']:.3g}] | "
                      f"{fmt_ratio(s['regret_ratio_to_optuna_tpe'])} | {np.mean(r['time_s']):.2f} |")


# ---------------------------------------------------------------- latency


def hpo_trial(c, study, f, ask_timeout):
    """One sequential ask -> report (step 0) -> complete; returns the AskTrial latency in seconds."""
    pb = hpo_client.coordinator_pb2
    req = pb.AskTrialRequest(worker_id="sampler-bench", task_types=["external"], study_id=study)
    t0 = time.perf_counter()
    resp = c.stub.AskTrial(req, timeout=ask_timeout)
    dt = time.perf_counter() - t0
    if not resp.assigned:
        raise RuntimeError(f"study {study}: AskTrial assigned nothing")
    t = resp.trial
    params = {k: getattr(v, v.WhichOneof("kind")) for k, v in t.params.items()}
    m = hpo_client.study_pb2.Measurement(step=0, value=f(params))
    decisions = c.stub.ReportProgress(iter([pb.ProgressReport(trial_id=t.id, measurement=m)]), timeout=60)
    for _ in decisions:
        pass
    c.stub.CompleteTrial(pb.CompleteTrialRequest(trial_id=t.id), timeout=60)
    return dt


def hpo_latency(addr, sname, fname, n, asks, log):
    _, f, _ = FUNCTIONS[fname]
    sampler = ({"type": "random", "seed": 0} if sname == "random"
               else {"type": sname, "seed": 0, "n_startup_trials": n})
    spec = hpo_spec(fname, sampler, n + asks, f"latency-{sname}-{n}")
    try:
        study = hpo_client.create_study(addr, spec)
    except hpo_client.HpoError as e:
        if refused(e):
            return {"available": False, "reason": str(e)}
        raise
    import grpc
    with grpc.insecure_channel(addr) as ch:
        c = type("C", (), {})()
        c.stub = hpo_client.coordinator_pb2_grpc.CoordinatorStub(ch)
        t0 = time.perf_counter()
        for _ in range(n):
            hpo_trial(c, study, f, 60)
        fill = time.perf_counter() - t0
        samples = []
        try:
            for _ in range(asks):
                samples.append(hpo_trial(c, study, f, 300))
        except grpc.RpcError as e:
            return {"available": False, "reason": f"failed while asking: {e.code().name}: {e.details()}"}
    log(f"  hpo {sname}: filled {n} trials in {fill:.1f} s, timed {asks} asks")
    return latency_record(samples, fill)


def optuna_latency(optuna, sname, fname, n, asks, log):
    space, f, _ = FUNCTIONS[fname]
    dists = {name: optuna.distributions.FloatDistribution(lo, hi) for name, lo, hi in space}
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    study = optuna.create_study(direction="minimize", sampler=optuna_sampler(optuna, sname, 0))
    fill = []
    for _ in range(n):
        p = {name: float(rng.uniform(lo, hi)) for name, lo, hi in space}
        fill.append(optuna.trial.create_trial(params=p, distributions=dists, value=f(p)))
    study.add_trials(fill)
    fill_s = time.perf_counter() - t0
    samples = []
    for _ in range(asks):
        t1 = time.perf_counter()
        trial = study.ask(fixed_distributions=dists)  # samples every parameter, like AskTrial
        samples.append(time.perf_counter() - t1)
        study.tell(trial, f(trial.params))
    log(f"  optuna {sname}: added {n} trials in {fill_s:.1f} s, timed {asks} asks")
    return latency_record(samples, fill_s)


def latency_record(samples, fill_s):
    ms = np.array(samples) * 1000.0
    return {"available": True, "p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)),
            "mean_ms": float(ms.mean()), "max_ms": float(ms.max()), "asks": len(samples),
            "fill_s": fill_s, "samples_ms": ms.tolist()}


def print_latency(lat):
    print(f"\n### suggest latency on {lat['function']}: one ask with N completed trials, "
          f"{lat['asks']} asks each (p99 of {lat['asks']} is close to the max)")
    print()
    print("| sampler | N completed | p50 ms | p99 ms | mean ms |")
    print("|---|---|---|---|---|")
    for r in lat["results"]:
        if not r["available"]:
            print(f"| {r['sampler']} | {r['n']} | not available: {r['reason']} | | |")
        else:
            print(f"| {r['sampler']} | {r['n']} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['mean_ms']:.2f} |")


# ---------------------------------------------------------------- main


def csv(s):
    return [x.strip() for x in s.split(",") if x.strip() and x.strip() != "none"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=20, help="seeds 0..N-1 per function and sampler (20)")
    ap.add_argument("--trials", type=int, default=100, help="trials per study (100)")
    ap.add_argument("--checkpoints", default="25,50,100",
                    help="report the best value after these many trials (those <= --trials, plus --trials)")
    ap.add_argument("--functions", default=",".join(FUNCTIONS), help="branin,hartmann6")
    ap.add_argument("--gp-latency-sizes", default="100,300,1000",
                    help="with --latency: completed trials before the timed gp asks ('' skips)")
    ap.add_argument("--gp-latency-asks", type=int, default=10)
    ap.add_argument("--hpo-samplers", default="random,tpe,tpe-univariate,gp",
                    help=f"of {','.join(HPO_SAMPLERS)}")
    ap.add_argument("--optuna-samplers", default=",".join(OPTUNA_SAMPLERS),
                    help=f"of {','.join(OPTUNA_SAMPLERS)}; 'none' to skip Optuna")
    ap.add_argument("--latency", action="store_true", help="also measure suggest latency")
    ap.add_argument("--latency-sizes", default="1000,10000", help="completed trials before the timed asks")
    ap.add_argument("--latency-asks", type=int, default=50, help="timed asks per size")
    ap.add_argument("--latency-function", default="branin", choices=list(FUNCTIONS))
    ap.add_argument("--server", default=None,
                    help="hpo-server binary (default: build/server/hpo-server, else /tmp/hpo-bin/hpo-server)")
    ap.add_argument("--out", default=os.path.join(REPO, "bench", "results", "sampler_bench.json"))
    args = ap.parse_args()

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    functions = csv(args.functions)
    hpo_samplers = csv(args.hpo_samplers)
    optuna_samplers = csv(args.optuna_samplers)
    for name, allowed, what in ((functions, FUNCTIONS, "function"), (hpo_samplers, HPO_SAMPLERS, "hpo sampler"),
                                (optuna_samplers, OPTUNA_SAMPLERS, "optuna sampler")):
        for x in name:
            if x not in allowed:
                ap.error(f"unknown {what} {x!r}; expected one of {', '.join(allowed)}")
    if args.seeds < 1 or args.trials < 1:
        ap.error("--seeds and --trials must be >= 1")
    checkpoints = sorted({c for c in (int(x) for x in csv(args.checkpoints)) if 1 <= c <= args.trials}
                         | {args.trials})
    sizes = [int(x) for x in csv(args.latency_sizes)]

    server_bin = args.server
    if server_bin is None:
        for cand in (os.path.join(REPO, "build", "server", "hpo-server"), "/tmp/hpo-bin/hpo-server"):
            if os.access(cand, os.X_OK):
                server_bin = cand
                break
        else:
            raise SystemExit("no hpo-server binary: build it (build/server/hpo-server) or pass --server")
    elif not os.access(server_bin, os.X_OK):
        raise SystemExit(f"--server {server_bin}: not an executable file")

    optuna = None
    if optuna_samplers or args.latency:
        try:
            import optuna
        except ImportError:
            raise SystemExit("Optuna is missing: apt-get install python3-optuna") from None
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)

    fmins = {f: FUNCTIONS[f][2] for f in functions}
    commit = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    meta = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "server": server_bin,
            "commit": commit, "seeds": args.seeds, "trials": args.trials, "checkpoints": checkpoints,
            "optuna": getattr(optuna, "__version__", None), "python": platform.python_version(),
            "host": platform.node(), "cpus": os.cpu_count()}
    print(f"hpo-server {server_bin} (repo {commit or '?'}), optuna {meta['optuna'] or '-'}; "
          f"seeds 0..{args.seeds - 1}, {args.trials} trials per study, checkpoints {checkpoints}")

    server = Server(server_bin)
    result = {"meta": meta, "functions": {f: {"fmin": fmins[f], "dim": len(FUNCTIONS[f][0])} for f in functions},
              "quality": {}, "latency": None}
    try:
        for fname in functions:
            per = result["quality"][fname] = {}
            for sname in hpo_samplers:
                r = run_hpo_quality(server.addr, fname, sname, args.seeds, args.trials, log)
                per[f"hpo {sname}"] = r
                log(f"done {fname} / hpo {sname}: " + (f"{np.mean(r['time_s']):.2f} s/study" if r["available"]
                                                      else f"not available ({r['reason']})"))
            for sname in optuna_samplers:
                r = run_optuna_quality(optuna, fname, sname, args.seeds, args.trials)
                per[f"optuna {sname}"] = r
                log(f"done {fname} / optuna {sname}: {np.mean(r['time_s']):.2f} s/study")
        summarize(result["quality"], fmins, checkpoints)

        if args.latency:
            lat = result["latency"] = {"function": args.latency_function, "asks": args.latency_asks,
                                       "results": []}
            for n in sizes:
                for sname in ("random", "tpe"):
                    r = hpo_latency(server.addr, sname, args.latency_function, n, args.latency_asks, log)
                    lat["results"].append({"sampler": f"hpo {sname} (AskTrial over gRPC)", "n": n, **r})
                for sname in ("random", "tpe"):
                    r = optuna_latency(optuna, sname, args.latency_function, n, args.latency_asks, log)
                    lat["results"].append({"sampler": f"optuna {sname} (study.ask, in memory)", "n": n, **r})
            # The GP's cost grows with the study: 100, 300 and 1,000 trials by default (fewer asks).
            for n in [int(x) for x in args.gp_latency_sizes.split(",") if x]:
                r = hpo_latency(server.addr, "gp", args.latency_function, n, args.gp_latency_asks, log)
                lat["results"].append({"sampler": "hpo gp (AskTrial over gRPC)", "n": n, **r})
    finally:
        server.close()

    print_quality(result["quality"], fmins, checkpoints, args.seeds, args.trials)
    if result["latency"]:
        print_latency(result["latency"])
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()

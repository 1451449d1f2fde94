#!/usr/bin/python3
"""Retrain the configurations the searches picked: how good they are, and how much of a best test accuracy is
one training's luck (issue 16).

A search-outcome run reports the test accuracy of one training of the configuration it picked (the best
completed trial by validation accuracy). That figure mixes two things: how good the configuration is, and how
lucky that one training was (weight initialisation, shuffling, dropout). It is also picked as a maximum over
many noisy validation values, so it flatters the search that tried more trials.

This script takes, from each run in the given bench/search_outcome.py result files, the trial that was best at
the end of the budget (or at --at_min), and trains its configuration --repeats more times with real
`hpo-server` and `hpo-worker` processes (--layout, default two workers with one thread each) on the run's own
task: the same training, validation and test subsets, the same epochs, no pruning. Each retraining is a new
trial number, so a new training seed. The configurations of all runs are retrained by the same trainer,
hpo-worker, including those Optuna's PyTorch trainer picked; --trainer pytorch retrains them all with the
PyTorch trainer of Optuna's side instead (--layout then counts processes x threads). A retraining's
seed follows its repeat number (PyTorch) or the study id and trial number (hpo-worker), which start again
with every run, so a second run gives new trainings only with --seed_offset N: the PyTorch seeds move by
1000 x N, and hpo-worker's study gets `task.training_seed` N (give each later run its own N).

It prints, per picked configuration, the original and retrained validation and test accuracy; the spread of one
training's test accuracy for a fixed configuration (pooled within-configuration standard deviation of the
retrainings); how much the original validation accuracy overstated the retrained one, per system (selection);
what training each pick twice more and keeping the best of three by validation would change in its test
accuracy (every two of its retrainings in turn), per system; and, per seed, the retrained test accuracy of one
system's pick minus the other's (the first system named against each other one): a comparison of what the
searches found with one training's luck averaged out.

  /usr/bin/python3 bench/retrain_best.py --repeats 2 bench/results/search_outcome_30min_seed0.json \\
      bench/results/search_outcome_30min_seed{1,2,3,4}_{hpo,optuna}.json --out bench/results/retrain_best.json
  # smoke, ~1 min: 1 epoch on small subsets
  /usr/bin/python3 bench/retrain_best.py --repeats 1 --train_examples 2000 --val_examples 500 --max_epochs 1 \\
      bench/results/search_outcome_30min_seed0.json --out /tmp/retrain_smoke.json

  # one more PyTorch retraining of each pick, with new seeds; then one report over all the retrainings
  /usr/bin/python3 bench/retrain_best.py --trainer pytorch --repeats 1 --seed_offset 1 FILES... --out B.json
  # two more hpo-worker retrainings, with new seeds (task.training_seed 1)
  /usr/bin/python3 bench/retrain_best.py --repeats 2 --seed_offset 1 FILES... --out C.json
  /usr/bin/python3 bench/retrain_best.py --report A.json B.json

FILE#SYSTEM takes one system's runs of FILE, as in `search_outcome.py --merge`. --report with several files
pools each pick's retrainings over them (by system, seed and trial), whichever trainer ran them: the training
SD is then pooled over both trainers.
"""
import argparse
import copy
import itertools
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import search_outcome as so  # noqa: E402


def picks_of(paths, at_min):
    """One pick per run: (system, seed, trial, task, spec) of the best completed trial at at_min or the end."""
    picks = []
    for path in paths:
        for r in so.read_runs(path):
            point = so.at_time(r["curve"], at_min * 60 if at_min else r["budget_s"])
            if point is None:
                print(f"{path}: {r['system']} seed {r['seed']} has no completed trial by then; left out")
                continue
            trial = next(t for t in r["trials"] if t["number"] == point[3])
            picks.append({"system": r["system"], "seed": r["seed"], "file": path, "trial": trial["number"],
                          "params": trial["params"], "val": trial["value"], "test": trial["test_accuracy"],
                          "task": r["spec"]["task"], "spec": r["spec"],
                          "epoch_s": (trial["epoch_end_s"][-1] - trial["started_s"]) / len(trial["epoch_end_s"])})
    return picks


def task_of(group, args):
    """The group's task, with the smoke-run overrides of the command line."""
    task = copy.deepcopy(group[0]["task"])
    for k in ("train_examples", "val_examples", "max_epochs"):
        if getattr(args, k) is not None:
            task[k] = getattr(args, k)
    if args.trainer == "hpo" and args.seed_offset:
        task["training_seed"] = args.seed_offset  # hpo-worker's seeds follow the study id and trial number
    return task


def retrain(group, repeats, args, tmp):
    """Trains every pick of one task `repeats` times in one study (pruner none, max_trials = the number
    enqueued); returns the completed trainings, each with the index of its pick."""
    base = group[0]["spec"]
    spec = {"name": "retrain-best", "objective": base.get("objective", {"metric": "val_accuracy"}),
            "task": task_of(group, args), "parameters": base["parameters"],
            "sampler": {"type": "random", "seed": 0}, "pruner": {"type": "none"},
            "max_trials": len(group) * repeats}
    pick_of = {}  # trial number -> index of its pick in group

    def enqueue(ctl, study):
        # Round by round, so that an interrupted run still has one retraining of every pick; the slowest
        # configurations first in each round, so that the two workers finish the round together.
        order = sorted(range(len(group)), key=lambda i: -group[i]["epoch_s"])
        for r in range(repeats):
            for i in order:
                p = group[i]
                path = os.path.join(tmp, f"params-{r}-{i}.json")
                with open(path, "w") as f:
                    json.dump(p["params"], f)
                out = subprocess.run(ctl + ["--json", "enqueue", study, path], capture_output=True, text=True)
                if out.returncode != 0:
                    raise SystemExit(f"hpoctl enqueue failed for {p['system']} seed {p['seed']}: "
                                     f"{out.stdout}{out.stderr}")
                pick_of[json.loads(out.stdout)["trial"]] = i

    wall0 = time.time()
    n = len(group) * repeats
    with so.hpo_service(spec, args.layout, args, tmp, before_workers=enqueue) as (ctl, study, workers, db):
        # The server holds its database exclusively while it runs: `hpoctl watch` returns when the study is
        # finished, that is when all max_trials trainings have ended.
        with open(os.path.join(tmp, "watch.log"), "w") as wl:
            watch = subprocess.Popen(ctl + ["watch", study], stdout=wl, stderr=subprocess.STDOUT)
            try:
                while watch.poll() is None:
                    time.sleep(2)
                    so.check_workers(workers, tmp)
                    if time.time() - wall0 > args.max_min * 60:
                        so.log(f"stopped after --max_min {args.max_min:g} before all {n} trainings ended")
                        break
            finally:
                so.stop_proc(watch)
        if watch.returncode not in (0, -15):
            raise SystemExit(f"hpoctl watch exited with {watch.returncode}; see {tmp}/watch.log")
    trials = [t for t in so.read_trials(db, wall0) if t["finished_s"] is not None and t["number"] in pick_of]
    failed = [t for t in trials if t["state"] != "COMPLETED"]
    if failed:
        so.log(f"{len(failed)} retrainings did not complete: {[t['reason'] for t in failed]}")
    return [{"pick": pick_of[t["number"]], **{k: t[k] for k in ("number", "value", "best_step", "test_accuracy",
                                                                "values")}}
            for t in trials if t["state"] == "COMPLETED"]


def retrain_torch(group, repeats, args, tmp):
    """The same retrainings by the PyTorch trainer of Optuna's side (search_outcome.py's train_trial, which
    mirrors hpo-worker's), in --layout's processes x threads, each process with search_outcome.py's
    allocator and thread settings. Returns the finished trainings, each with the index of its pick."""
    procs_n, threads = so.parse_layout(args.layout)
    task = task_of(group, args)
    jobs = [[] for _ in range(procs_n)]
    load = [0.0] * procs_n
    # Round by round, the slowest configurations first, each onto the least loaded process.
    for r in range(repeats):
        for i in sorted(range(len(group)), key=lambda i: -group[i]["epoch_s"]):
            k = load.index(min(load))
            seed = 0x7E7A0000 + 1000 * (r + args.seed_offset) + i
            jobs[k].append({"pick": i, "repeat": r, "params": group[i]["params"], "seed": seed})
            load[k] += group[i]["epoch_s"]
    env, _ = so.child_env(threads)
    procs, outs = [], []
    for k in range(procs_n):
        job = os.path.join(tmp, f"torch-jobs-{k}.json")
        outs.append(os.path.join(tmp, f"torch-out-{k}.json"))
        with open(job, "w") as f:
            json.dump({"task": task, "objective": group[0]["spec"].get("objective", {}), "threads": threads,
                       "data_root": args.data_root, "jobs": jobs[k], "out": outs[k]}, f)
        log = open(os.path.join(tmp, f"torch-{k}.log"), "w")
        procs.append((subprocess.Popen([sys.executable, os.path.abspath(__file__), "--_torch_child", job],
                                       stdout=log, stderr=subprocess.STDOUT, env=env), log))
    deadline = time.time() + args.max_min * 60
    try:
        for pr, _ in procs:
            try:
                pr.wait(timeout=max(1.0, deadline - time.time()))
            except subprocess.TimeoutExpired:
                so.log(f"stopped after --max_min {args.max_min:g}: the trainings finished by then count")
                break
    finally:
        for pr, log in procs:
            so.stop_proc(pr)
            log.close()
    done = []
    for k, out in enumerate(outs):
        if procs[k][0].returncode != 0:
            so.log(f"PyTorch process {k} exited with {procs[k][0].returncode}; see {tmp}/torch-{k}.log")
        if os.path.exists(out):
            with open(out) as f:
                done += json.load(f)
    return done


def torch_child(job_path):
    """One PyTorch process: trains its jobs one after the other, writing the results after each."""
    with open(job_path) as f:
        job = json.load(f)
    import torch
    torch.set_num_threads(job["threads"])
    task = job["task"]
    data = so.load_split(job["data_root"], task)
    metric = job["objective"].get("metric", "val_accuracy")
    minimize = job["objective"].get("direction", "minimize" if metric == "val_loss" else "maximize") == "minimize"
    results = []
    for j in job["jobs"]:
        values = []
        best, best_epoch, _, model, _ = so.train_trial(
            so.cnn_config(j["params"]), data, int(task.get("max_epochs", 10)), metric, minimize, j["seed"],
            lambda epoch, value, m: values.append(value) or True, float("inf"),
            so.partial_epochs_of(task))
        net, mean, std, loss_fn = model
        tx, ty = data["test"]
        test = so.evaluate(net, tx, ty, mean, std, data["classes"], loss_fn)["val_accuracy"]
        results.append({"pick": j["pick"], "repeat": j["repeat"], "seed": j["seed"], "value": best,
                        "best_step": best_epoch, "test_accuracy": test, "values": values})
        with open(job["out"] + ".tmp", "w") as f:
            json.dump(results, f)
        os.replace(job["out"] + ".tmp", job["out"])
        print(f"pick {j['pick']} repeat {j['repeat']}: val {best:.4f} test {test:.4f}", flush=True)


def report(picks):
    lines = ["| system | seed | trial | original val / test | retrained val / test | retrained test mean |",
             "|---|---|---|---|---|---|"]
    for p in picks:
        rt = ", ".join(f"{v:.4f}/{t:.4f}" for v, t in zip(p["retrain_val"], p["retrain_test"]))
        mean = f"{statistics.mean(p['retrain_test']):.4f}" if p["retrain_test"] else "-"
        lines.append(f"| {p['system']} | {p['seed']} | {p['trial']} | {p['val']:.4f} / {p['test']:.4f} | {rt} | "
                     f"{mean} |")
    out = {"table": "\n".join(lines)}
    # Pooled within-configuration SD of one training's test accuracy (retrainings only: one trainer).
    ss, df = 0.0, 0
    for p in picks:
        xs = p["retrain_test"]
        if len(xs) > 1:
            m = statistics.mean(xs)
            ss += sum((x - m) ** 2 for x in xs)
            df += len(xs) - 1
    out["training_sd_points"] = 100 * math.sqrt(ss / df) if df else None
    out["training_sd_df"] = df
    systems = list(dict.fromkeys(p["system"] for p in picks))
    out["selection"] = {}
    for s in systems:
        ps = [p for p in picks if p["system"] == s and p["retrain_val"]]
        if ps:
            gap = [100 * (p["val"] - statistics.mean(p["retrain_val"])) for p in ps]
            orig_gap = [100 * (p["test"] - statistics.mean(p["retrain_test"])) for p in ps]
            out["selection"][s] = {"picks": len(ps), "val_overstated_points": statistics.mean(gap),
                                   "original_test_minus_retrained_points": statistics.mean(orig_gap),
                                   "retrained_test_median": statistics.median(
                                       statistics.mean(p["retrain_test"]) for p in ps),
                                   "original_test_median": statistics.median(p["test"] for p in ps)}
            gain = best_of_gain(ps, 2)
            if gain is not None:
                out["selection"][s]["best_of_3_test_gain_points"] = gain
    out["paired"] = {}
    by = {(p["system"], p["seed"]): p for p in picks if p["retrain_test"]}
    for other in systems[1:]:
        seeds = sorted(s for (sy, s) in by if sy == systems[0] and (other, s) in by)
        d = [100 * (statistics.mean(by[(systems[0], s)]["retrain_test"]) -
                    statistics.mean(by[(other, s)]["retrain_test"])) for s in seeds]
        if d:
            se = statistics.stdev(d) / math.sqrt(len(d)) if len(d) > 1 else None
            out["paired"][f"{systems[0]} - {other}"] = {"seeds": seeds, "diff_points": d,
                                                        "mean": statistics.mean(d), "se": se}
    return out


def best_of_gain(picks, k):
    """Retraining a pick k more times and keeping, of the original and those k, the training with the
    best validation accuracy: the kept training's test accuracy minus the original's, in points, averaged
    over every k of each pick's retrainings and then over the picks. None when no pick has k retrainings."""
    per_pick = []
    for p in picks:
        runs = list(zip(p["retrain_val"], p["retrain_test"]))
        if len(runs) < k:
            continue
        gains = [max([(p["val"], p["test"])] + list(c), key=lambda vt: vt[0])[1] - p["test"]
                 for c in itertools.combinations(runs, k)]
        per_pick.append(100 * statistics.mean(gains))
    return statistics.mean(per_pick) if per_pick else None


def print_report(out):
    print(out["table"])
    print()
    if out["training_sd_points"] is not None:
        print(f"One training's test accuracy, fixed configuration: SD {out['training_sd_points']:.2f} points "
              f"(pooled over retrainings, {out['training_sd_df']} degrees of freedom)")
    for s, v in out["selection"].items():
        print(f"{s}: {v['picks']} picks; original validation exceeds the retrained mean by "
              f"{v['val_overstated_points']:+.2f} points; original test minus retrained mean "
              f"{v['original_test_minus_retrained_points']:+.2f}; median test original {v['original_test_median']:.4f}, "
              f"retrained {v['retrained_test_median']:.4f}")
        if "best_of_3_test_gain_points" in v:
            print(f"{s}: two more trainings of each pick, keeping the best of three by validation: test "
                  f"{v['best_of_3_test_gain_points']:+.2f} points against the original training (mean over "
                  f"every two of a pick's retrainings)")
    for k, v in out["paired"].items():
        se = f" ± {v['se']:.2f}" if v["se"] is not None else ""
        print(f"paired by seed, retrained test, {k}: {v['mean']:+.2f}{se} points over seeds {v['seeds']} "
              f"({', '.join(f'{x:+.2f}' for x in v['diff_points'])})")


def pooled_picks(paths):
    """The picks of earlier --out files, each pick's retrainings pooled over the files, in first-seen order."""
    picks = {}
    for path in paths:
        try:
            with open(path) as f:
                doc = json.load(f)
            for p in doc["picks"]:
                key = (p["system"], p["seed"], p["trial"])
                if key not in picks:
                    picks[key] = dict(p, retrain_val=[], retrain_test=[])
                picks[key]["retrain_val"] += p["retrain_val"]
                picks[key]["retrain_test"] += p["retrain_test"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise SystemExit(f"cannot read a retrain_best.py results file at {path}: {e}")
    return list(picks.values())


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="*", help="search_outcome.py result files (FILE or FILE#SYSTEM)")
    ap.add_argument("--repeats", type=int, default=2, help="retrainings of each picked configuration")
    ap.add_argument("--at_min", type=float, default=None, help="take the best trial at this minute (default: end)")
    ap.add_argument("--trainer", choices=["hpo", "pytorch"], default="hpo",
                    help="hpo: real hpo-server and hpo-workers; pytorch: the PyTorch trainer of Optuna's side")
    ap.add_argument("--layout", default="2x1", help="hpo-workers (or PyTorch processes) x threads")
    ap.add_argument("--train_examples", type=int, default=None, help="overrides the task (smoke runs only)")
    ap.add_argument("--val_examples", type=int, default=None, help="overrides the task (smoke runs only)")
    ap.add_argument("--max_epochs", type=int, default=None, help="overrides the task (smoke runs only)")
    ap.add_argument("--max_min", type=float, default=120.0, help="stop waiting after this many minutes")
    ap.add_argument("--data_root", default="/usr/share/datasets")
    ap.add_argument("--build", default=os.path.join(so.REPO, "build"))
    ap.add_argument("--out", default=None, help="write picks, retrainings and the summary as JSON")
    ap.add_argument("--seed_offset", type=int, default=0,
                    help="new seeds for a later run: PyTorch seeds move by 1000 x N (start past the "
                         "repeats an earlier run made); hpo-worker trains with task.training_seed N")
    ap.add_argument("--report", nargs="+", default=None, metavar="FILE",
                    help="print the report of earlier --out files (pooling each pick's retrainings) and exit")
    ap.add_argument("--_torch_child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._torch_child:
        torch_child(args._torch_child)
        return
    if args.repeats < 1:
        raise SystemExit("--repeats must be at least 1")
    if not 0 <= args.seed_offset <= 2147483647:
        raise SystemExit("--seed_offset must be in [0, 2147483647]")
    if args.report:
        print_report(report(pooled_picks(args.report)))
        return
    if not args.files:
        raise SystemExit("name at least one search_outcome.py results file")
    picks = picks_of(args.files, args.at_min)
    if not picks:
        raise SystemExit("no run has a completed trial to retrain")
    groups = {}
    for p in picks:
        groups.setdefault(json.dumps(p["task"], sort_keys=True), []).append(p)
    load0 = os.getloadavg()
    t0 = time.time()
    for group in groups.values():
        tmp = tempfile.mkdtemp(prefix="retrain-best.")
        so.log(f"retraining {len(group)} configurations x {args.repeats} with the {args.trainer} trainer in {tmp}")
        run = retrain_torch if args.trainer == "pytorch" else retrain
        done = run(group, args.repeats, args, tmp)
        for i, p in enumerate(group):
            mine = [t for t in done if t["pick"] == i]
            p["retrain_val"] = [t["value"] for t in mine]
            p["retrain_test"] = [t["test_accuracy"] for t in mine]
            p["retrain_trials"] = mine
    out = report(picks)
    print_report(out)
    if args.out:
        doc = {"command": " ".join([os.path.basename(sys.argv[0])] + sys.argv[1:]), "trainer": args.trainer,
               "machine": so.machine_info(), "loadavg_before": load0, "loadavg_after": os.getloadavg(),
               "wall_s": time.time() - t0,
               "picks": [{k: v for k, v in p.items() if k not in ("spec",)} for p in picks], "summary": out}
        so.write(args.out, doc)
        print(f"\nraw results: {os.path.relpath(args.out, os.getcwd())}")


if __name__ == "__main__":
    main()

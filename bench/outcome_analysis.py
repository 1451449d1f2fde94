#!/usr/bin/python3
"""Where a search-outcome run spent its time, and how well early epochs rank the trials (issue 16).

Reads result files of bench/search_outcome.py and prints, per run:
  - trials, completed, epochs, the median seconds per epoch of a trial (one worker's view);
  - by batch size (or --param), and for all trials: trials, completed, median validation accuracy after
    epoch 1 (what the sampler proposes, as the first rung sees it), and, for trials that trained all epochs,
    the median and best final value;
  - the best completed trial's configuration.
Then, pooled over every run given: the Spearman rank correlation between a trial's best value up to epoch k
and its final value, over the trials that trained all epochs (how well rung k ranks the trials that count),
and the correlation of each numeric parameter with the value after epoch 1, the best up to epoch 3 and the
final value (a parameter whose sign or size changes between them is one an early rung misjudges).
Last, over the runs where every completed trial has a test accuracy (hpo's; Optuna evaluates only its
best-so-far trials): how much picking differently among the trials completed within the budget would have
changed the pick's test accuracy (by the value of the last epoch or the mean of the last 2 or 3 epochs,
instead of the best epoch's value; and the oracle, the completed trial with the best test accuracy), and the
best test accuracy of any completed trial: the ceiling a pick could reach on this spec.

  /usr/bin/python3 bench/outcome_analysis.py bench/results/search_outcome_30min_seed*.json
  # FILE#SYSTEM takes one system's runs of FILE, as in `search_outcome.py --merge`
  /usr/bin/python3 bench/outcome_analysis.py "bench/results/search_outcome_30min_seed0.json#hpo 2x1"
"""
import argparse
import collections
import json
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from search_outcome import read_runs  # noqa: E402  FILE#SYSTEM, as in search_outcome.py --merge


def ranks(xs):
    order = sorted(range(len(xs)), key=lambda i: xs[i])
    r = [0.0] * len(xs)
    i = 0
    while i < len(order):  # ties share their mean rank
        j = i
        while j + 1 < len(order) and xs[order[j + 1]] == xs[order[i]]:
            j += 1
        for k in range(i, j + 1):
            r[order[k]] = (i + j) / 2
        i = j + 1
    return r


def spearman(a, b):
    ra, rb = ranks(a), ranks(b)
    n = len(a)
    ma, mb = sum(ra) / n, sum(rb) / n
    num = sum((x - ma) * (y - mb) for x, y in zip(ra, rb))
    den = (sum((x - ma) ** 2 for x in ra) * sum((y - mb) ** 2 for y in rb)) ** 0.5
    return num / den if den else float("nan")


def med(xs):
    return f"{statistics.median(xs):.4f}" if xs else "-"


PICK_RULES = {
    "value of the last epoch": lambda t: t["values"][-1],
    "mean of the last 2 epochs": lambda t: sum(t["values"][-2:]) / len(t["values"][-2:]),
    "mean of the last 3 epochs": lambda t: sum(t["values"][-3:]) / len(t["values"][-3:]),
    "oracle: the best test accuracy": lambda t: t["test_accuracy"],
}


def picks(runs):
    """Other ways to pick among each run's completed trials, against the best-value pick (test points)."""
    diffs = collections.defaultdict(list)
    tests = []
    for run in runs:
        done = [t for t in run["trials"] if t["state"] == "COMPLETED" and t.get("finished_s") is not None
                and t["finished_s"] <= run["budget_s"] and t.get("values")]
        if len(done) < 2 or any(t.get("test_accuracy") is None for t in done):
            continue
        tests += [t["test_accuracy"] for t in done]
        base = max(done, key=lambda t: t["value"])["test_accuracy"]
        for name, key in PICK_RULES.items():
            diffs[name].append(100 * (max(done, key=key)["test_accuracy"] - base))
    if not tests:
        return
    n = len(next(iter(diffs.values())))
    print(f"## Picking among the completed trials, {n} runs with a test accuracy for every completed trial")
    print("| pick by | test minus the best-value pick's, mean ± SE (points) | runs ahead / behind |")
    print("|---|---|---|")
    for name, d in diffs.items():
        se = statistics.stdev(d) / len(d) ** 0.5 if len(d) > 1 else float("nan")
        print(f"| {name} | {statistics.mean(d):+.2f} ± {se:.2f} | {sum(x > 0 for x in d)} / {sum(x < 0 for x in d)} |")
    print(f"best test accuracy of any of the {len(tests)} completed trials: {max(tests):.4f}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("files", nargs="+")
    ap.add_argument("--param", default="batch_size", help="the parameter to break trials down by")
    args = ap.parse_args()
    full = []  # (values, params) of the trials that trained every epoch, pooled
    all_runs = []
    for path in args.files:
        runs = read_runs(path)
        all_runs += runs
        for run in runs:
            epochs = run["spec"]["task"]["max_epochs"]
            trials = run["trials"]
            done = [t for t in trials if t["state"] == "COMPLETED" and t.get("value") is not None]
            per_epoch = [(t["epoch_end_s"][-1] - t["started_s"]) / len(t["epoch_end_s"])
                         for t in trials if t.get("epoch_end_s")]
            trained = sum(len(t["values"]) for t in trials)
            print(f"## {path}: {run['system']} seed {run['seed']}")
            print(f"{len(trials)} trials, {len(done)} completed, {trained} epochs; median {statistics.median(per_epoch):.1f} s "
                  f"per epoch of a trial" if per_epoch else f"{len(trials)} trials")
            groups = collections.defaultdict(list)
            for t in trials:
                groups[json.dumps(t["params"].get(args.param))].append(t)
            print(f"| {args.param} | trials | completed | median val after epoch 1 | trials with all {epochs} epochs: "
                  f"median / best final |")
            print("|---|---|---|---|---|")
            rows = [(key, groups[key]) for key in sorted(groups, key=lambda k: (len(k), k))] + [("all", trials)]
            for key, g in rows:
                first = [t["values"][0] for t in g if t["values"]]
                fin = [max(t["values"]) for t in g if len(t["values"]) >= epochs]
                print(f"| {key} | {len(g)} | {sum(t['state'] == 'COMPLETED' for t in g)} | {med(first)} | "
                      f"{len(fin)}: {med(fin)} / {max(fin):.4f} |" if fin else
                      f"| {key} | {len(g)} | {sum(t['state'] == 'COMPLETED' for t in g)} | {med(first)} | 0 |")
            if done:
                best = max(done, key=lambda t: t["value"])
                print(f"best completed: trial {best['number']}, val {best['value']}, test {best.get('test_accuracy')}: "
                      f"{json.dumps(best['params'], sort_keys=True)}")
            print()
            full += [(t["values"][:epochs], t["params"]) for t in trials if len(t["values"]) >= epochs]
    if len(full) >= 5:
        full_params = [p for _, p in full]
        full = [v for v, _ in full]
        epochs = min(len(v) for v in full)
        final = [max(v) for v in full]
        print(f"## Rank correlation with the final value, {len(full)} trials that trained all epochs, pooled")
        print("| best value up to epoch | " + " | ".join(str(k) for k in range(1, epochs)) + " |")
        print("|---|" + "---|" * (epochs - 1))
        print("| Spearman rho | " + " | ".join(f"{spearman([max(v[:k]) for v in full], final):.2f}"
                                              for k in range(1, epochs)) + " |")
        numeric = [k for k in sorted(full_params[0]) if all(isinstance(p.get(k), (int, float)) for p in full_params)]
        print()
        print(f"## Rank correlation of each numeric parameter with the value, the same {len(full)} trials")
        mid = min(3, epochs)
        print(f"| parameter | after epoch 1 | best up to epoch {mid} | final |")
        print("|---|---|---|---|")
        first, up_to_mid = [v[0] for v in full], [max(v[:mid]) for v in full]
        for k in numeric:
            x = [float(p[k]) for p in full_params]
            print(f"| {k} | {spearman(x, first):+.2f} | {spearman(x, up_to_mid):+.2f} | {spearman(x, final):+.2f} |")
        print()
    picks(all_runs)


if __name__ == "__main__":
    main()

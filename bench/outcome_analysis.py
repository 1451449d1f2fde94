#!/usr/bin/python3
"""Where a search-outcome run spent its time, and how well early epochs rank the trials (issue 16).

Reads result files of bench/search_outcome.py and prints, per run:
  - trials, completed, epochs, the median seconds per epoch of a trial (one worker's view);
  - by batch size: trials, completed, median validation accuracy after epoch 1, and, for trials that trained
    all epochs, the median and best final value;
  - the best completed trial's configuration.
Then, pooled over every run given: the Spearman rank correlation between a trial's best value up to epoch k
and its final value, over the trials that trained all epochs (how well rung k ranks the trials that count),
and the correlation of each numeric parameter with the value after epoch 1, the best up to epoch 3 and the
final value (a parameter whose sign or size changes between them is one an early rung misjudges).

  /usr/bin/python3 bench/outcome_analysis.py bench/results/search_outcome_30min_seed*.json
"""
import argparse
import collections
import json
import statistics


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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("files", nargs="+")
    ap.add_argument("--param", default="batch_size", help="the parameter to break trials down by")
    args = ap.parse_args()
    full = []  # (values, params) of the trials that trained every epoch, pooled
    for path in args.files:
        with open(path) as f:
            doc = json.load(f)
        for run in doc["runs"]:
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
            for key in sorted(groups, key=lambda k: (len(k), k)):
                g = groups[key]
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


if __name__ == "__main__":
    main()

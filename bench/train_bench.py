#!/usr/bin/python3
"""Training speed of hpo's LibTorch trainer against the PyTorch anchor, side by side in one run.

Trains the anchor's small CNN (conv32-pool-conv64-pool-fc128-fc10, batch 128, Adam 1e-3) on
Fashion-MNIST with build/bench/hpo-train-bench and with ../shared/anchors/torch_fmnist.py
(--mode train), alternately, seed by seed, with the same thread count, image counts and epochs.
Prints training images/s of both and their ratio, validation accuracy after each epoch, hpo's peak
RSS, and the fraction of the CPU's peak FLOP rate reached.

  /usr/bin/python3 bench/train_bench.py [--seeds 3 --epochs 3 --threads 2 --train 50000 --val 10000]
Needs python3-torch (the anchor) besides hpo's build.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
# 3 x the forward cost (forward + backward), per training image; see torch_fmnist.py --mode flops.
TRAIN_FLOP_PER_IMAGE = 3 * 8.48e6
PEAK_FLOPS = 520e9  # the 2 cores' fp32 multiply-add peak (AVX-512), ../shared/anchors/README.md


def run_hpo(args, seed, augment=False):
    cmd = [args.hpo_bench, f"--threads={args.threads}", f"--epochs={args.epochs}", f"--seed={seed}",
           f"--train={args.train}", f"--val={args.val}", f"--augment={'true' if augment else 'false'}"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_anchor(args, seed):
    with tempfile.NamedTemporaryFile(suffix=".json") as f:
        cmd = ["/usr/bin/python3", args.anchor, "--mode", "train", "--threads", str(args.threads), "--epochs",
               str(args.epochs), "--seed", str(seed), "--train", str(args.train), "--val", str(args.val),
               "--out", f.name]
        subprocess.run(cmd, check=True, capture_output=True, text=True)
        with open(f.name) as fh:
            return json.load(fh)["train"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--train", type=int, default=50000)
    ap.add_argument("--val", type=int, default=10000)
    ap.add_argument("--hpo-bench", default=os.path.join(ROOT, "build", "bench", "hpo-train-bench"))
    ap.add_argument("--anchor", default=os.path.join(ROOT, "..", "shared", "anchors", "torch_fmnist.py"))
    ap.add_argument("--out", default=os.path.join(HERE, "results", "train_bench.json"))
    ap.add_argument("--augmentation", action="store_true",
                    help="instead: hpo's images/s with and without on-the-fly augmentation (rotation 10, shift "
                         "0.1, zoom 0.1, shear 5, flips), alternately, and the cost")
    args = ap.parse_args()
    if args.augmentation:
        plain, augmented = [], []
        for seed in range(args.seeds):
            for flag, into in ((False, plain), (True, augmented)):
                r = run_hpo(args, seed, augment=flag)
                into.append(statistics.mean(h["train_img_per_s"] for h in r["history"]))
                print(f"seed {seed} augment={flag}: {into[-1]:.0f} train img/s", flush=True)
        cost = 1 - statistics.mean(augmented) / statistics.mean(plain)
        print(f"augmentation costs {100 * cost:.1f}% of the un-augmented throughput "
              f"({statistics.mean(augmented):.0f} vs {statistics.mean(plain):.0f} img/s)")
        return 0
    rows = []
    for seed in range(args.seeds):
        for name, fn in (("hpo", run_hpo), ("pytorch", run_anchor)):
            r = fn(args, seed)
            ips = [h["train_img_per_s"] for h in r["history"]]
            rows.append({"impl": name, "seed": seed, "img_per_s": ips, "val_acc": [h["val_acc"] for h in r["history"]],
                         "test_acc": r["test_acc"], "peak_rss_mb": r.get("peak_rss_mb")})
            print(f"seed {seed} {name:8s}: train img/s per epoch {', '.join(f'{x:.0f}' for x in ips)}; "
                  f"val acc {', '.join(f'{x:.4f}' for x in rows[-1]['val_acc'])}", flush=True)
    summary = {}
    for name in ("hpo", "pytorch"):
        mine = [r for r in rows if r["impl"] == name]
        mean_ips = statistics.mean(statistics.mean(r["img_per_s"]) for r in mine)
        summary[name] = {
            "train_img_per_s": mean_ips,
            "val_acc_per_epoch": [statistics.mean(r["val_acc"][e] for r in mine) for e in range(args.epochs)],
            "test_acc": statistics.mean(r["test_acc"] for r in mine),
            "peak_flop_fraction": mean_ips * TRAIN_FLOP_PER_IMAGE / PEAK_FLOPS,
        }
    ratios = [statistics.mean(a["img_per_s"]) / statistics.mean(b["img_per_s"])
              for a, b in zip([r for r in rows if r["impl"] == "hpo"], [r for r in rows if r["impl"] == "pytorch"])]
    summary["ratio_per_seed"] = ratios
    summary["ratio"] = summary["hpo"]["train_img_per_s"] / summary["pytorch"]["train_img_per_s"]
    summary["hpo_peak_rss_mb"] = max(r["peak_rss_mb"] for r in rows if r["impl"] == "hpo")
    print()
    print(f"{args.threads} threads, {args.train} training / {args.val} validation images, {args.epochs} epochs, "
          f"{args.seeds} seeds (alternating)")
    print("| | train img/s | val acc per epoch | test acc | peak FLOP fraction |")
    print("|---|---|---|---|---|")
    for name in ("hpo", "pytorch"):
        s = summary[name]
        print(f"| {name} | {s['train_img_per_s']:.0f} | {' / '.join(f'{x:.4f}' for x in s['val_acc_per_epoch'])} | "
              f"{s['test_acc']:.4f} | {100 * s['peak_flop_fraction']:.1f}% |")
    print(f"hpo / pytorch images per second: {summary['ratio']:.2f} (per seed: "
          f"{', '.join(f'{x:.2f}' for x in ratios)}); hpo peak RSS {summary['hpo_peak_rss_mb']:.0f} MB")
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"args": vars(args), "rows": rows, "summary": summary}, f, indent=1)


if __name__ == "__main__":
    sys.exit(main())

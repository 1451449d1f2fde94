#!/usr/bin/python3
"""Tune a small PyTorch CNN on Fashion-MNIST from Python, with pruning: hpo the Optuna way.

Your training loop, your model; hpo's coordinator samples each trial's hyperparameters (TPE), stores every
epoch's validation accuracy, and prunes trials whose curves fall below the median of the finished ones.

    # terminal 1
    build/server/hpo-server --db=/tmp/torch.db
    # terminal 2 (pip install ./python first, or run from the repository: it then uses examples/python)
    /usr/bin/python3 examples/python/torch_fmnist.py --trials=12 --epochs=4
    # more workers on the same study, for parallel trials (other terminals or machines):
    /usr/bin/python3 examples/python/torch_fmnist.py --study=ID

Needs Debian's python3-torch (no torchvision: the IDX files are read with gzip and struct) and the data in
--data_dir (train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz as in /usr/share/datasets/fashion-mnist).
The validation split is carved from the training file with a fixed seed, the same for every trial.
"""
import argparse
import gzip
import logging
import os
import struct
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

try:
    import hpo  # the installed package (pip install ./python)
except ImportError:  # run from a repository checkout without installing: the shim builds it from source
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import hpo_client
    hpo = hpo_client.hpo

SPACE = [
    {"name": "learning_rate", "type": "float", "low": 1e-4, "high": 3e-2, "log": True},
    {"name": "optimizer", "type": "categorical", "choices": ["adam", "sgd"]},
    {"name": "momentum", "type": "float", "low": 0.5, "high": 0.99,
     "condition": {"parent": "optimizer", "values": ["sgd"]}},
    {"name": "batch_size", "type": "categorical", "choices": [32, 64, 128]},
    {"name": "conv_blocks", "type": "int", "low": 1, "high": 2},
    {"name": "filters", "type": "int", "low": 8, "high": 32, "step": 8},
    {"name": "dropout", "type": "float", "low": 0.0, "high": 0.5},
]


def read_idx(path):
    """An IDX file (gzip-compressed or not) as a uint8 tensor of its declared shape."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    zero, dtype, ndim = struct.unpack_from(">HBB", data, 0)
    if zero != 0 or dtype != 0x08:
        raise ValueError(f"{path}: not an IDX file of unsigned bytes")
    shape = struct.unpack_from(f">{ndim}I", data, 4)
    offset = 4 + 4 * ndim
    n = 1
    for d in shape:
        n *= d
    if len(data) - offset != n:
        raise ValueError(f"{path}: {len(data) - offset} bytes of data for shape {shape}")
    return torch.frombuffer(bytearray(data[offset:]), dtype=torch.uint8).reshape(shape)


def load_fmnist(data_dir, train_examples, val_examples, seed=1234):
    """(x_train, y_train, x_val, y_val): float images in [0, 1] with shape N x 1 x 28 x 28."""
    images = read_idx(os.path.join(data_dir, "train-images-idx3-ubyte.gz"))
    labels = read_idx(os.path.join(data_dir, "train-labels-idx1-ubyte.gz")).long()
    if train_examples + val_examples > len(images):
        raise ValueError(f"{train_examples} + {val_examples} examples asked, the file has {len(images)}")
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))
    val, train = order[:val_examples], order[val_examples:val_examples + train_examples]
    x = images.unsqueeze(1).float().div_(255.0)
    return x[train], labels[train], x[val], labels[val]


class SmallCnn(nn.Module):
    def __init__(self, conv_blocks, filters, dropout):
        super().__init__()
        layers, channels, size = [], 1, 28
        for i in range(conv_blocks):
            out = filters * (2 ** i)
            layers += [nn.Conv2d(channels, out, 3, padding=1), nn.BatchNorm2d(out), nn.ReLU(), nn.MaxPool2d(2)]
            channels, size = out, size // 2
        self.features = nn.Sequential(*layers)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(channels * size * size, 10)

    def forward(self, x):
        return self.head(self.dropout(torch.flatten(self.features(x), 1)))


def evaluate(model, x, y, batch=512):
    model.eval()
    correct, loss = 0, 0.0
    with torch.no_grad():
        for i in range(0, len(x), batch):
            out = model(x[i:i + batch])
            loss += F.cross_entropy(out, y[i:i + batch], reduction="sum").item()
            correct += (out.argmax(1) == y[i:i + batch]).sum().item()
    return correct / len(x), loss / len(x)


def make_objective(data, epochs):
    x_train, y_train, x_val, y_val = data

    def objective(params, report):
        torch.manual_seed(0)
        model = SmallCnn(params["conv_blocks"], params["filters"], params["dropout"])
        if params["optimizer"] == "adam":
            opt = torch.optim.Adam(model.parameters(), lr=params["learning_rate"])
        else:
            opt = torch.optim.SGD(model.parameters(), lr=params["learning_rate"], momentum=params["momentum"])
        bs = params["batch_size"]
        print(f"trial: {dict(sorted(params.items()))}", flush=True)
        for epoch in range(epochs):
            start = time.monotonic()
            model.train()
            perm = torch.randperm(len(x_train))
            train_loss = 0.0
            for i in range(0, len(x_train), bs):
                idx = perm[i:i + bs]
                opt.zero_grad()
                loss = F.cross_entropy(model(x_train[idx]), y_train[idx])
                loss.backward()
                opt.step()
                train_loss += loss.item() * len(idx)
            acc, val_loss = evaluate(model, x_val, y_val)
            print(f"  epoch {epoch}: val_accuracy {acc:.4f}, val_loss {val_loss:.4f}", flush=True)
            if report(epoch, acc, {"val_loss": val_loss, "train_loss": train_loss / len(x_train),
                                   "epoch_seconds": time.monotonic() - start}):
                print("  pruned", flush=True)
                return None  # the coordinator pruned it: its reported epochs are its record
        return None  # the trial's value is its best reported epoch (the coordinator computes it)

    return objective


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--coordinator", default="127.0.0.1:50051")
    ap.add_argument("--study", type=int, default=0, help="join this study instead of creating one")
    ap.add_argument("--trials", type=int, default=12)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--train_examples", type=int, default=6000)
    ap.add_argument("--val_examples", type=int, default=2000)
    ap.add_argument("--data_dir", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--seed", type=int, default=42, help="the sampler's seed")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)

    data = load_fmnist(args.data_dir, args.train_examples, args.val_examples)
    client = hpo.Client(args.coordinator)
    study = args.study
    if not study:
        study = client.create_study({
            "name": "torch-fmnist",
            "objective": {"metric": "val_accuracy", "direction": "maximize"},
            "task": {"type": "external"},
            "parameters": SPACE,
            "sampler": {"type": "tpe", "seed": args.seed},
            "pruner": {"type": "median", "startup_trials": 3, "warmup_steps": 1},
            "max_trials": args.trials,
        })
        print(f"study {study} created: {args.trials} trials of up to {args.epochs} epochs", flush=True)
    ran = client.run_worker(study, make_objective(data, args.epochs))
    s = client.get_study(study)
    print(f"this worker ran {ran} trials; study {study} is {s.state}: {s.counts.completed} completed, "
          f"{s.counts.pruned} pruned, {s.counts.failed} failed")
    for t in client.trials(study):
        curve = " ".join(f"{v:.3f}" for v in t.values)
        print(f"  trial {t.number:2d} {t.state.value:9s} value {t.value if t.value is None else round(t.value, 4)} "
              f"[{curve}] {t.params}")
    best = client.best_trial(study)
    print(f"best: trial {best.number}, val_accuracy {best.value:.4f} at epoch {best.best_step}, {best.params}")
    client.close()


if __name__ == "__main__":
    main()

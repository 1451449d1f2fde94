#!/usr/bin/python3
"""Search outcome: how good a model hpo and Optuna driving PyTorch find in the same wall-clock budget.

Issue 16. For every seed and system, one after the other on the same machine, a search runs for
--budget_min minutes on the same spec (the same search space, train/validation/test subsets, epochs and
architecture rules); the script records its anytime curve: whenever a trial completes with a better
validation accuracy than every earlier completed trial, (elapsed seconds, that best validation accuracy,
that trial's test accuracy). It reports the best validation and its test accuracy at budget/3, 2/3 and
the budget (10, 20, 30 minutes for a 30-minute budget) as the median and range over seeds, prints a
markdown table and writes every trial to a JSON file.

Systems (--systems, comma-separated):
  hpo            real build/server/hpo-server + build/worker/hpo-worker processes on a temporary SQLite
                 database, the spec's sampler (seeded) and pruner; --hpo_layout WxT: W workers with T
                 threads each (2x1, 1x2; a comma list runs each layout as its own system, "hpo 2x1")
  optuna         Optuna 3.1 (python3-optuna) with SQLite storage driving a PyTorch (python3-torch) CNN built
                 by the worker's rules; the spec's sampler and pruner mapped to Optuna's (TPESampler,
                 SuccessiveHalvingPruner, MedianPruner, ...); --optuna_layout PxT: P processes sharing the
                 study with T torch threads each (default 1x2, the usual way to run Optuna on one machine)
  hpo-random     floors: random search, no pruning
  optuna-random

Elapsed time starts before the first process is launched (server, workers, study creation, data loading and
imports are inside the budget for both). A trial counts once it has completed (COMPLETED: its value and test
accuracy are final) before the budget ends; trials still running at the end are cut off. Pruned trials have no
test accuracy in either system, so "best" is the best completed trial, as `hpoctl best` and Optuna's
`study.best_trial` define it.

Test accuracy:
  hpo:    the trial's final metrics (`test_accuracy`, evaluated by the worker with its best epoch's weights),
          read from the SQLite database after the run.
  Optuna: when a trial completes with a validation value better than the study's best so far, its best
          epoch's weights are evaluated on the test subset and stored as the user attr `test_accuracy`
          (only then: a skilled user would not evaluate every trial; hpo evaluates every completed one).

Usage (the full comparison of issue 16, ~3 hours on 2 cores, needs a quiet machine):
  /usr/bin/python3 bench/search_outcome.py --budget_min 30 --seeds 3 \\
      --systems hpo,optuna,hpo-random,optuna-random --train_examples 30000 --val_examples 10000
  /usr/bin/python3 bench/search_outcome.py --budget_min 30 --seeds 3 --systems hpo --hpo_layout 2x1,1x2 ...
Smoke run (~2 min):
  nice -n 10 /usr/bin/python3 bench/search_outcome.py --budget_min 1 --seeds 1 --systems hpo,optuna \\
      --train_examples 3000 --val_examples 1000 --out bench/results/search_outcome_smoke.json
Merge result files of separate sessions and print the table again:
  /usr/bin/python3 bench/search_outcome.py --merge bench/results/search_outcome_A.json bench/results/search_outcome_B.json
"""
import argparse
import contextlib
import copy
import datetime
import gzip
import json
import math
import os
import shutil
import signal
import sqlite3
import statistics
import struct
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The spec of the first side-by-side measurement (issue 16): the quick-start parameters plus dense_units and
# batch_norm (their ranges as `hpoctl init` drafts them), 8 epochs, tpe + asha. --spec replaces it.
DEFAULT_SPEC = {
    "name": "search-outcome",
    "objective": {"metric": "val_accuracy", "direction": "maximize"},
    "task": {"type": "cnn", "dataset": "fashion-mnist", "train_examples": 30000, "val_examples": 10000,
             "max_epochs": 8},
    "parameters": [
        {"name": "learning_rate", "type": "float", "low": 0.0001, "high": 0.05, "log": True},
        {"name": "optimizer", "type": "categorical", "choices": ["adam", "rmsprop", "sgd"]},
        {"name": "batch_size", "type": "categorical", "choices": [32, 64, 128]},
        {"name": "conv_blocks", "type": "int", "low": 1, "high": 3},
        {"name": "filters", "type": "int", "low": 8, "high": 64, "step": 8},
        {"name": "dropout", "type": "float", "low": 0.0, "high": 0.5},
        {"name": "dense_units", "type": "categorical", "choices": [0, 64, 128, 256]},
        {"name": "batch_norm", "type": "categorical", "choices": [False, True]},
    ],
    "sampler": {"type": "tpe", "seed": 0},
    "pruner": {"type": "asha", "min_resource": 1, "reduction_factor": 3},
    "max_trials": 1000,
}

TCMALLOC = ["/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4", "/usr/lib/x86_64-linux-gnu/libtcmalloc.so.4"]
JEMALLOC = ["/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"]


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------- the data
# The worker's split (worker/data/dataset.cc): a Fisher-Yates permutation of the training file drawn from
# std::mt19937_64(data_seed) as rng() % (i + 1); training = its first train_examples, validation = its last
# val_examples; test = the first test_examples of the t10k files (all by default).

class MT19937_64:
    """std::mt19937_64, bit for bit."""
    N, M = 312, 156
    MASK = (1 << 64) - 1

    def __init__(self, seed):
        self.mt = [0] * self.N
        self.mt[0] = seed & self.MASK
        for i in range(1, self.N):
            prev = self.mt[i - 1]
            self.mt[i] = (6364136223846793005 * (prev ^ (prev >> 62)) + i) & self.MASK
        self.i = self.N

    def _twist(self):
        mt, n, m = self.mt, self.N, self.M
        for k in range(n):
            y = (mt[k] & 0xFFFFFFFF80000000) | (mt[(k + 1) % n] & 0x7FFFFFFF)
            v = mt[(k + m) % n] ^ (y >> 1)
            if y & 1:
                v ^= 0xB5026F5AA96619E9
            mt[k] = v
        self.i = 0

    def __call__(self):
        if self.i >= self.N:
            self._twist()
        y = self.mt[self.i]
        self.i += 1
        y ^= (y >> 29) & 0x5555555555555555
        y ^= (y << 17) & 0x71D67FFFEDA60000
        y ^= (y << 37) & 0xFFF7EEE000000000
        y ^= y >> 43
        return y & self.MASK


def permutation(n, seed):
    perm = list(range(n))
    rng = MT19937_64(seed)
    for i in range(n - 1, 0, -1):
        j = rng() % (i + 1)
        perm[i], perm[j] = perm[j], perm[i]
    return perm


def read_idx(path):
    if not os.path.exists(path) and os.path.exists(path + ".gz"):
        path += ".gz"
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    zero, dtype, ndim = struct.unpack_from(">HBB", data, 0)
    if zero != 0 or dtype != 0x08:
        raise ValueError(f"{path}: not an IDX file of unsigned bytes")
    shape = struct.unpack_from(f">{ndim}I", data, 4)
    return data[4 + 4 * ndim:], shape


def load_split(data_root, task):
    """uint8 tensors (N,1,H,W) and int64 labels of the worker's train, validation and test subsets."""
    import torch
    d = os.path.join(data_root, task["dataset"])
    tx, tshape = read_idx(os.path.join(d, "train-images-idx3-ubyte"))
    ty, _ = read_idx(os.path.join(d, "train-labels-idx1-ubyte"))
    ex, eshape = read_idx(os.path.join(d, "t10k-images-idx3-ubyte"))
    ey, _ = read_idx(os.path.join(d, "t10k-labels-idx1-ubyte"))
    h, w = tshape[1], tshape[2]
    train_x = torch.frombuffer(bytearray(tx), dtype=torch.uint8).view(-1, 1, h, w)
    train_y = torch.frombuffer(bytearray(ty), dtype=torch.uint8).to(torch.int64)
    test_x = torch.frombuffer(bytearray(ex), dtype=torch.uint8).view(-1, 1, h, w)
    test_y = torch.frombuffer(bytearray(ey), dtype=torch.uint8).to(torch.int64)
    n = train_x.shape[0]
    carved = task.get("val_examples") or 10000
    n_train = task.get("train_examples") or (n - carved)
    if n_train + carved > n:
        raise ValueError(f"train_examples {n_train} + val_examples {carved} exceed the {n} training images")
    perm = torch.tensor(permutation(n, int(task.get("data_seed", 0))), dtype=torch.int64)
    tr, va = perm[:n_train], perm[n - carved:]
    if task.get("imbalance"):
        raise ValueError("task.imbalance is not mirrored on the Optuna side")
    n_test = task.get("test_examples") or test_x.shape[0]
    n_test = min(n_test, test_x.shape[0])
    return {"train": (train_x[tr].contiguous(), train_y[tr].contiguous()),
            "val": (train_x[va].contiguous(), train_y[va].contiguous()),
            "test": (test_x[:n_test].contiguous(), test_y[:n_test].contiguous()),
            "classes": int(max(int(train_y.max()), int(test_y.max())) + 1)}


# ------------------------------------------------------------------------- the PyTorch side's network
# Mirrors worker/train/trainer.cc (TrainCnn, Net, Augment, ScheduledRate, MakeOptimizer).

CNN_DEFAULTS = {
    "learning_rate": 1e-3, "optimizer": "adam", "momentum": -1.0, "nesterov": False, "batch_size": 64,
    "weight_decay": 0.0, "lr_schedule": "constant", "label_smoothing": 0.0, "patience": 0,
    "conv_blocks": 2, "filters": 32, "kernel_size": 3, "dense_units": 128, "dropout": 0.0, "batch_norm": False,
    "activation": "relu", "global_pooling": "flatten", "class_weighting": "none", "sampling": "shuffle",
    "aug_rotation": 0.0, "aug_shift": 0.0, "aug_zoom": 0.0, "aug_shear": 0.0, "aug_hflip": False,
    "aug_fill": "constant",
}


def cnn_config(params):
    c = dict(CNN_DEFAULTS)
    for k, v in params.items():
        if k not in c:
            raise ValueError(f"the cnn task has no parameter {k!r}")
        c[k] = v
    return c


def build_net(c, channels, h, w, classes):
    from torch import nn

    def act():
        return {"elu": nn.ELU, "gelu": nn.GELU}.get(c["activation"], nn.ReLU)()

    layers = []
    k = int(c["kernel_size"])
    pad = k // 2
    for b in range(int(c["conv_blocks"])):
        out = int(c["filters"]) << min(b, 10)
        layers.append(nn.Conv2d(channels, out, k, padding=pad))
        h = h + 2 * pad - k + 1
        w = w + 2 * pad - k + 1
        if c["batch_norm"]:
            layers.append(nn.BatchNorm2d(out))
        pool = h >= 2 and w >= 2
        # hpo pools before a monotone activation (the same function, computed on a quarter of the values);
        # here the usual order, activation then pool.
        layers.append(act())
        if pool:
            layers.append(nn.MaxPool2d(2))
            h //= 2
            w //= 2
        channels = out
    if c["global_pooling"] == "average":
        layers.append(nn.AdaptiveAvgPool2d((1, 1)))
        h = w = 1
    layers.append(nn.Flatten())
    if c["dropout"] > 0:
        layers.append(nn.Dropout(c["dropout"]))
    n_in = channels * h * w
    if int(c["dense_units"]) > 0:
        layers += [nn.Linear(n_in, int(c["dense_units"])), act()]
        if c["dropout"] > 0:
            layers.append(nn.Dropout(c["dropout"]))
        n_in = int(c["dense_units"])
    layers.append(nn.Linear(n_in, classes))
    return nn.Sequential(*layers)


def make_optimizer(c, params):
    import torch
    lr, wd, mom = c["learning_rate"], c["weight_decay"], c["momentum"]
    if c["optimizer"] == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=mom if mom >= 0 else 0.9, nesterov=bool(c["nesterov"]),
                               weight_decay=wd)
    if c["optimizer"] == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, momentum=mom if mom >= 0 else 0.0, weight_decay=wd)
    if c["optimizer"] == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd)
    return torch.optim.Adam(params, lr=lr, weight_decay=wd)


def scheduled_rate(c, epoch, max_epochs):
    progress = (epoch - 1) / max(1, max_epochs)
    if c["lr_schedule"] == "cosine":
        return c["learning_rate"] * 0.5 * (1 + math.cos(math.pi * progress))
    if c["lr_schedule"] == "step":
        return c["learning_rate"] * (0.01 if progress >= 0.75 else 0.1 if progress >= 0.5 else 1.0)
    return c["learning_rate"]


def augments(c):
    return c["aug_rotation"] > 0 or c["aug_shift"] > 0 or c["aug_zoom"] > 0 or c["aug_shear"] > 0 or c["aug_hflip"]


def augment(x, c, gen):
    """The worker's batched random affine transform, on the [0, 1] scale, before normalization."""
    import torch
    import torch.nn.functional as F
    n = x.shape[0]
    u = torch.rand(n, 6, generator=gen, dtype=torch.float64) * 2 - 1
    rot = c["aug_rotation"] * u[:, 0] * math.pi / 180
    shear = c["aug_shear"] * u[:, 1] * math.pi / 180
    zoom = 1 + c["aug_zoom"] * u[:, 2]
    flip = torch.where((u[:, 3] < 0) & bool(c["aug_hflip"]), -1.0, 1.0).to(torch.float64)
    tx, ty = 2 * c["aug_shift"] * u[:, 4], 2 * c["aug_shift"] * u[:, 5]
    theta = torch.stack([flip * torch.cos(rot) / zoom, -torch.sin(rot + shear) / zoom, tx,
                         flip * torch.sin(rot) / zoom, torch.cos(rot + shear) / zoom, ty], 1).view(n, 2, 3)
    grid = F.affine_grid(theta.float(), list(x.shape), align_corners=False)
    mode = {"nearest": "border", "reflect": "reflection"}.get(c["aug_fill"], "zeros")
    return F.grid_sample(x, grid, mode="bilinear", padding_mode=mode, align_corners=False)


def evaluate(net, x, y, mean, std, classes, loss_fn):
    import torch
    net.eval()
    conf = torch.zeros(classes * classes, dtype=torch.int64)
    loss_sum = 0.0
    with torch.no_grad():
        for i in range(0, x.shape[0], 1000):
            xb = (x[i:i + 1000].float().div_(255.0) - mean) / std
            yb = y[i:i + 1000]
            logits = net(xb)
            loss_sum += float(loss_fn(logits, yb, reduction="sum"))
            conf += torch.bincount(yb * classes + logits.argmax(1), minlength=classes * classes)
    net.train()
    m = conf.view(classes, classes).double()
    n = max(1, x.shape[0])
    tp, rows, cols = m.diag(), m.sum(1), m.sum(0)
    present = rows > 0
    recall = (tp[present] / rows[present])
    f1 = (2 * tp[present] / (rows[present] + cols[present]))
    return {"val_accuracy": float(tp.sum()) / n, "val_loss": loss_sum / n,
            "val_balanced_accuracy": float(recall.mean()) if present.any() else 0.0,
            "val_macro_f1": float(f1.mean()) if present.any() else 0.0}


class Deadline(Exception):
    pass


def partial_epochs_of(task):
    """The task's partial_epochs (epoch k trains on that fraction of the training images), as floats."""
    return [float(f) for f in task.get("partial_epochs", [])]


def train_trial(c, data, max_epochs, metric, minimize, seed, on_epoch, deadline, partial_epochs=()):
    """Trains one configuration as hpo-worker does. on_epoch(epoch, value, metrics) -> False stops
    (pruned). partial_epochs: epoch k trains on the first ceil(partial_epochs[k-1] x n) images of its
    shuffled order (the spec's task.partial_epochs). Returns (best_value, best_epoch, epochs_run, best_state,
    stopped)."""
    import torch
    import torch.nn.functional as F
    xtr, ytr = data["train"]
    xva, yva = data["val"]
    classes = data["classes"]
    n_train, ch, h, w = xtr.shape
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed ^ 0x5DEECE66D)
    xf = xtr.float().div_(255.0)                   # [0, 1]; normalized per batch after augmentation
    mean = xf.mean(dim=(0, 2, 3)).view(1, ch, 1, 1)
    std = xf.std(dim=(0, 2, 3), unbiased=False).clamp_min(1e-6).view(1, ch, 1, 1)
    aug = augments(c)
    xn = None if aug else (xf - mean) / std        # no augmentation: normalize once
    counts = torch.bincount(ytr, minlength=classes)
    weight = None
    if c["class_weighting"] != "none":
        v = n_train / (classes * counts.double().clamp_min(1))
        if c["class_weighting"] == "sqrt_inverse":
            v = v.sqrt()
        v = torch.where(counts > 0, v, torch.zeros_like(v))
        v = v * int((counts > 0).sum()) / v.sum()
        weight = v.float()
    ls = float(c["label_smoothing"])

    def loss_fn(logits, y, reduction="mean"):
        return F.cross_entropy(logits, y, weight=weight, label_smoothing=ls, reduction=reduction)

    net = build_net(c, ch, h, w, classes)
    opt = make_optimizer(c, net.parameters())
    bs = int(c["batch_size"])
    best_value, best_epoch, best_state, since_best = None, 0, None, 0
    epoch = 0
    for epoch in range(1, max_epochs + 1):
        lr = scheduled_rate(c, epoch, max_epochs)
        for g in opt.param_groups:
            g["lr"] = lr
        if c["sampling"] == "balanced":
            present = torch.nonzero(counts > 0).flatten()
            cls = present[torch.randint(len(present), (n_train,), generator=gen)]
            by_class = [torch.nonzero(ytr == k).flatten() for k in range(classes)]
            order = torch.empty(n_train, dtype=torch.int64)
            for k in present.tolist():
                sel = cls == k
                pool = by_class[k]
                order[sel] = pool[torch.randint(len(pool), (int(sel.sum()),), generator=gen)]
        else:
            order = torch.randperm(n_train, generator=gen)
        batches = nonfinite = 0
        n_epoch = n_train
        if epoch <= len(partial_epochs):
            n_epoch = min(n_train, max(1, math.ceil(partial_epochs[epoch - 1] * n_train)))
        for i in range(0, n_epoch, bs):
            if time.time() > deadline:
                raise Deadline()
            idx = order[i:min(i + bs, n_epoch)]
            if aug:
                xb = (augment(xf[idx], c, gen) - mean) / std
            else:
                xb = xn[idx]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(net(xb), ytr[idx])
            loss.backward()
            opt.step()
            batches += 1
            nonfinite += not math.isfinite(float(loss))
        m = evaluate(net, xva, yva, mean, std, classes, loss_fn)
        value = m[metric]
        if not math.isfinite(value):
            raise RuntimeError(f"validation {metric} is not finite at epoch {epoch}")
        if best_value is None or (value < best_value if minimize else value > best_value):
            best_value, best_epoch, since_best = value, epoch, 0
            best_state = {k: t.detach().clone() for k, t in net.state_dict().items()}
        else:
            since_best += 1
        if not on_epoch(epoch, value, m):
            return best_value, best_epoch, epoch, None, True
        if c["patience"] and since_best >= c["patience"]:
            break
        if batches and nonfinite == batches:   # NaN weights: hpo-worker completes the trial with its best epoch
            break
    if best_state is not None:
        net.load_state_dict(best_state)
    return best_value, best_epoch, epoch, (net, mean, std, loss_fn), False


# ---------------------------------------------------------------------------------- Optuna, as a process

def merge_patch(target, patch):
    """RFC 7386: objects merge key by key, null deletes a key, anything else replaces."""
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


def optuna_sampler(optuna, spec, seed, processes):
    s = spec.get("sampler", {"type": "random"})
    if s["type"] == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if s["type"] in ("tpe", "gp"):   # Optuna 3.1 has no GP sampler: TPE stands in (noted in the results)
        kw = {"seed": seed, "n_startup_trials": s.get("n_startup_trials", 10),
              "n_ei_candidates": s.get("n_ei_candidates", 24), "multivariate": s.get("multivariate", True),
              "prior_weight": s.get("prior_weight", 1.0)}
        if s.get("multivariate", True):
            kw["group"] = any("condition" in p for p in spec["parameters"])
        if processes > 1:
            kw["constant_liar"] = s.get("constant_liar", True)
        return optuna.samplers.TPESampler(**kw)
    raise ValueError(f"sampler {s['type']!r} has no Optuna counterpart here")


class _AnyPruner:
    """A list of pruners: prune when any of them says so (hpo's pruner lists)."""

    def __new__(cls, optuna, pruners):
        class AnyPruner(optuna.pruners.BasePruner):
            def prune(self, study, trial):
                return any(p.prune(study, trial) for p in pruners)
        return AnyPruner()


def optuna_pruner(optuna, spec):
    p = spec.get("pruner", {"type": "none"})
    if isinstance(p, list):
        return _AnyPruner(optuna, [optuna_pruner(optuna, {"pruner": q, "task": spec["task"]}) for q in p])
    t = p["type"]
    P = optuna.pruners
    # Optuna steps are the epochs, from 1, as hpo's; Optuna judges step >= n_warmup_steps, hpo never judges
    # steps 1..warmup_steps: Optuna's n_warmup_steps = hpo's warmup_steps + 1.
    if t == "none":
        return P.NopPruner()
    if t == "median":
        return P.MedianPruner(n_startup_trials=p.get("startup_trials", 5), n_warmup_steps=p.get("warmup_steps", 0) + 1,
                              interval_steps=p.get("interval_steps", 1), n_min_trials=p.get("min_trials_at_step", 1))
    if t == "percentile":
        return P.PercentilePruner(p.get("keep_top", 50), n_startup_trials=p.get("startup_trials", 5),
                                  n_warmup_steps=p.get("warmup_steps", 0) + 1,
                                  interval_steps=p.get("interval_steps", 1),
                                  n_min_trials=p.get("min_trials_at_step", 1))
    if t == "asha":
        return P.SuccessiveHalvingPruner(min_resource=p.get("min_resource", 1),
                                         reduction_factor=p.get("reduction_factor", 3),
                                         min_early_stopping_rate=p.get("min_early_stopping_rate", 0),
                                         bootstrap_count=p.get("bootstrap_count", 0))
    if t == "hyperband":
        return P.HyperbandPruner(min_resource=p.get("min_resource", 1),
                                 max_resource=p.get("max_resource", spec["task"].get("max_epochs", 10)),
                                 reduction_factor=p.get("reduction_factor", 3))
    if t == "patience":
        return P.PatientPruner(None, patience=p.get("patience", 3), min_delta=p.get("min_delta", 0.0))
    if t == "threshold":
        return P.ThresholdPruner(lower=p.get("lower"), upper=p.get("upper"),
                                 n_warmup_steps=p.get("warmup_steps", 0) + 1)
    raise ValueError(f"pruner {t!r} has no Optuna counterpart here")


def suggest(trial, parameters):
    params = {}
    for p in parameters:
        cond = p.get("condition")
        if cond and params.get(cond["parent"]) not in cond["values"]:
            continue
        name, t = p["name"], p["type"]
        if t == "float":
            params[name] = trial.suggest_float(name, p["low"], p["high"], log=p.get("log", False), step=p.get("step"))
        elif t == "int":
            params[name] = trial.suggest_int(name, p["low"], p["high"], step=p.get("step", 1), log=p.get("log", False))
        else:
            params[name] = trial.suggest_categorical(name, p["choices"])
    return params


def optuna_child(args):
    """One Optuna process: loads the data, then runs study.optimize until the deadline."""
    import torch
    torch.set_num_threads(args.child_threads)
    import optuna
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    import warnings
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    with open(args.child_spec) as f:
        spec = json.load(f)
    task = spec["task"]
    data = load_split(args.data_root, task)
    max_epochs = int(task.get("max_epochs", 10))
    metric = spec.get("objective", {}).get("metric", "val_accuracy")
    minimize = spec.get("objective", {}).get("direction", "minimize" if metric == "val_loss" else "maximize") == "minimize"
    if int(task.get("executions_per_trial", 1)) != 1:
        raise SystemExit("executions_per_trial > 1 is not mirrored on the Optuna side")
    study = optuna.load_study(study_name=args.child_study, storage=args.child_storage,
                              sampler=optuna_sampler(optuna, spec, args.child_seed, args.child_processes),
                              pruner=optuna_pruner(optuna, spec))
    deadline = args.child_deadline

    def objective(trial):
        params = suggest(trial, spec["parameters"])
        c = cnn_config(params)
        epoch_times = []

        def on_epoch(epoch, value, m):
            epoch_times.append(round(time.time(), 3))
            trial.set_user_attr("epoch_end_unix", epoch_times)
            trial.report(value, epoch)
            return not trial.should_prune()

        seed = (args.child_seed * 1_000_003 + trial.number) & 0x7FFFFFFF
        best, best_epoch, epochs, model, stopped = train_trial(c, data, max_epochs, metric, minimize, seed,
                                                               on_epoch, deadline, partial_epochs_of(task))
        trial.set_user_attr("best_epoch", best_epoch)
        trial.set_user_attr("epochs_run", epochs)
        if stopped:
            raise optuna.TrialPruned()
        try:
            prev = study.best_value
        except ValueError:
            prev = None
        if prev is None or (best < prev if minimize else best > prev):
            net, mean, std, loss_fn = model
            tx, ty = data["test"]
            te = evaluate(net, tx, ty, mean, std, data["classes"], loss_fn)
            trial.set_user_attr("test_accuracy", te["val_accuracy"])
            trial.set_user_attr("test_loss", te["val_loss"])
        trial.set_user_attr("finished_unix", round(time.time(), 3))
        return best

    try:
        # A trial that raises (a diverged validation loss) fails and the search goes on, as in hpo.
        study.optimize(objective, n_trials=int(spec.get("max_trials", 1000000)), gc_after_trial=False,
                       catch=(RuntimeError, ValueError))
    except Deadline:
        pass


# ------------------------------------------------------------------------------------------ the runners

def find_binary(build, sub, name):
    for p in (os.path.join(build, sub, name), os.path.join("/tmp/hpo-bin", name)):
        if os.access(p, os.X_OK):
            return p
    raise SystemExit(f"{name} not found under {build}/{sub} (build it, or pass --build)")


def stop_proc(p, timeout=20):
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def run_spec(base, system, seed, args):
    spec = copy.deepcopy(base)
    spec["name"] = f"search-outcome-{system.replace(' ', '-')}-s{seed}"
    spec["max_trials"] = 1000000
    random_floor = system.split()[0].endswith("-random")
    if random_floor:
        spec["sampler"] = {"type": "random", "seed": seed}
        spec["pruner"] = {"type": "none"}
    else:
        spec["sampler"] = dict(spec.get("sampler", {"type": "tpe"}), seed=seed)
    return spec


def parse_layout(s):
    a, b = s.lower().split("x")
    return int(a), int(b)


@contextlib.contextmanager
def hpo_service(spec, layout, args, tmp, before_workers=None):
    """A real hpo-server on a temporary SQLite database in tmp, the study of `spec` created with hpoctl, then
    `before_workers(ctl, study)` (to enqueue trials, say) and layout's hpo-workers (WORKERSxTHREADS) started.
    Yields (ctl, study, workers, db): ctl is the hpoctl command prefix for this server. Stops them all on exit."""
    server_bin = find_binary(args.build, "server", "hpo-server")
    worker_bin = find_binary(args.build, "worker", "hpo-worker")
    ctl_bin = find_binary(args.build, "client", "hpoctl")
    workers_n, threads = parse_layout(layout)
    spec_path = os.path.join(tmp, "spec.json")
    with open(spec_path, "w") as f:
        json.dump(spec, f, indent=1)
    db = os.path.join(tmp, "hpo.db")
    port_file = os.path.join(tmp, "port")
    logs = []
    t0 = time.time()
    slog = open(os.path.join(tmp, "server.log"), "w")
    logs.append(slog)
    server = subprocess.Popen([server_bin, "--listen=127.0.0.1:0", f"--port_file={port_file}", f"--db={db}",
                               "--log_level=warn"], stdout=slog, stderr=subprocess.STDOUT)
    workers = []
    try:
        while not (os.path.exists(port_file) and open(port_file).read().strip()):
            if server.poll() is not None or time.time() - t0 > 30:
                raise SystemExit(f"hpo-server did not start; see {tmp}/server.log")
            time.sleep(0.02)
        ctl = [ctl_bin, f"--coordinator=127.0.0.1:{open(port_file).read().strip()}"]
        out = subprocess.run(ctl + ["create", spec_path], capture_output=True, text=True)
        if out.returncode != 0:
            raise SystemExit(f"hpoctl create failed: {out.stdout}{out.stderr}")
        study = out.stdout.strip().splitlines()[-1].strip()
        if before_workers:
            before_workers(ctl, study)
        for i in range(workers_n):
            wlog = open(os.path.join(tmp, f"worker{i}.log"), "w")
            logs.append(wlog)
            workers.append(subprocess.Popen(
                [worker_bin, ctl[1], f"--data_root={args.data_root}", f"--threads={threads}",
                 f"--worker_id=w{i}"], stdout=wlog, stderr=subprocess.STDOUT))
        yield ctl, study, workers, db
    finally:
        for wp in workers:
            stop_proc(wp)
        stop_proc(server)
        for f in logs:
            f.close()


def check_workers(workers, tmp):
    for wp in workers:
        if wp.poll() is not None:
            raise SystemExit(f"hpo-worker exited with {wp.returncode}; see {tmp}")


def read_trials(db, wall0):
    """Every trial of an hpo database, times in seconds since wall0."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    trials = []
    for tid, number, state, value, best_step, fm, params, started, finished, reason in con.execute(
            "SELECT id, number, state, value, best_step, final_metrics_json, params_json, started_ms, finished_ms, "
            "reason FROM trials ORDER BY number"):
        ms = con.execute("SELECT step, value, time_ms FROM measurements WHERE trial_id = ? ORDER BY step",
                         (tid,)).fetchall()
        fm = json.loads(fm or "{}")
        trials.append({
            "number": number, "state": state, "value": value, "best_step": best_step,
            "params": json.loads(params),
            "test_accuracy": fm.get("test_accuracy"),
            "started_s": None if started is None else started / 1000 - wall0,
            "finished_s": None if finished is None else finished / 1000 - wall0,
            "values": [v for _, v, _ in ms], "epoch_end_s": [t / 1000 - wall0 for _, _, t in ms],
            "train_pixel_mean": fm.get("train_pixel_mean"), "val_pixel_mean": fm.get("val_pixel_mean"),
            "reason": reason if state != "COMPLETED" else "",
        })
    con.close()
    return trials


def run_hpo(spec, seed, layout, args, tmp):
    wall0 = time.time()
    deadline = wall0 + args.budget_min * 60
    with hpo_service(spec, layout, args, tmp) as (ctl, study, workers, db):
        while time.time() < deadline:
            time.sleep(min(1.0, max(0.0, deadline - time.time())))
            check_workers(workers, tmp)
        subprocess.run(ctl + ["stop", study], capture_output=True, text=True)
    return read_trials(db, wall0)


def child_env(threads):
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = str(threads)
    env["OPENBLAS_NUM_THREADS"] = str(threads)
    env["MKL_NUM_THREADS"] = str(threads)
    pre = next((p for p in TCMALLOC + JEMALLOC if os.path.exists(p)), None)
    if pre:  # tcmalloc measured best for torch here (../shared/anchors/README.md); jemalloc otherwise
        env["LD_PRELOAD"] = (pre + " " + env.get("LD_PRELOAD", "")).strip()
    else:   # glibc: keep freed batch buffers (the same tuning hpo-worker applies itself)
        env["MALLOC_MMAP_THRESHOLD_"] = "33554432"
        env["MALLOC_TRIM_THRESHOLD_"] = "536870912"
    return env, pre


def run_optuna(spec, seed, layout, args, tmp):
    procs_n, threads = parse_layout(layout)
    spec_path = os.path.join(tmp, "spec.json")
    with open(spec_path, "w") as f:
        json.dump(spec, f, indent=1)
    storage = f"sqlite:///{os.path.join(tmp, 'optuna.db')}"
    env, preload = child_env(threads)
    wall0 = time.time()
    deadline = wall0 + args.budget_min * 60
    import optuna  # noqa: F401  (the parent creates the study; inside the budget, as hpoctl create is)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    metric = spec.get("objective", {}).get("metric", "val_accuracy")
    direction = spec.get("objective", {}).get("direction", "minimize" if metric == "val_loss" else "maximize")
    optuna.create_study(study_name=spec["name"], storage=storage, direction=direction)
    procs, logs = [], []
    try:
        for i in range(procs_n):
            lf = open(os.path.join(tmp, f"optuna{i}.log"), "w")
            logs.append(lf)
            procs.append(subprocess.Popen(
                [sys.executable, os.path.abspath(__file__), "--_optuna_child", "--child_spec", spec_path,
                 "--child_storage", storage, "--child_study", spec["name"], "--child_seed", str(seed * 100 + i),
                 "--child_threads", str(threads), "--child_processes", str(procs_n),
                 "--child_deadline", repr(deadline), "--data_root", args.data_root],
                stdout=lf, stderr=subprocess.STDOUT, env=env))
        for p in procs:
            p.wait(timeout=max(1.0, deadline - time.time()) + 120)
    finally:
        for p in procs:
            stop_proc(p)
        for f in logs:
            f.close()
    for i, p in enumerate(procs):
        if p.returncode != 0:
            with open(os.path.join(tmp, f"optuna{i}.log")) as f:
                raise SystemExit(f"optuna process {i} exited with {p.returncode}:\n{f.read()[-3000:]}")
    study = optuna.load_study(study_name=spec["name"], storage=storage)
    trials = []
    for t in study.get_trials(deepcopy=False):
        ua = t.user_attrs
        ends = ua.get("epoch_end_unix", [])
        finished = ua.get("finished_unix")
        if finished is None and t.datetime_complete is not None and t.state.name == "PRUNED":
            finished = ends[-1] if ends else t.datetime_complete.timestamp()
        state = {"COMPLETE": "COMPLETED", "PRUNED": "PRUNED", "FAIL": "FAILED"}.get(t.state.name, t.state.name)
        trials.append({
            "number": t.number, "state": state, "value": t.value,
            "best_step": ua.get("best_epoch", -1), "params": t.params,
            "test_accuracy": ua.get("test_accuracy"),
            "started_s": t.datetime_start.timestamp() - wall0 if t.datetime_start else None,
            "finished_s": None if finished is None else finished - wall0,
            "values": [t.intermediate_values[k] for k in sorted(t.intermediate_values)],
            "epoch_end_s": [e - wall0 for e in ends],
        })
    return trials, preload


# ------------------------------------------------------------------------------------------- analysis

def anytime_curve(trials, budget_s, minimize):
    """(elapsed s, best completed value so far, its test accuracy, trial number) at each improvement."""
    done = sorted((t for t in trials if t["state"] == "COMPLETED" and t["finished_s"] is not None
                   and t["finished_s"] <= budget_s and t["value"] is not None), key=lambda t: t["finished_s"])
    curve, best = [], None
    for t in done:
        if best is None or (t["value"] < best if minimize else t["value"] > best):
            best = t["value"]
            curve.append([round(t["finished_s"], 2), t["value"], t["test_accuracy"], t["number"]])
    return curve


def at_time(curve, t):
    last = None
    for p in curve:
        if p[0] <= t:
            last = p
    return last


def counts_at(trials, t):
    epochs = sum(sum(1 for e in tr["epoch_end_s"] if e <= t) for tr in trials)
    fin = [tr for tr in trials if tr["finished_s"] is not None and tr["finished_s"] <= t]
    return {"epochs": epochs, "completed": sum(tr["state"] == "COMPLETED" for tr in fin),
            "pruned": sum(tr["state"] == "PRUNED" for tr in fin)}


def checkpoints_of(budget_s):
    return [budget_s / 3, 2 * budget_s / 3, budget_s]


def summarize(runs):
    """system -> checkpoint label -> {val, test: [median, min, max], n, epochs, completed, pruned}."""
    out = {}
    for system in dict.fromkeys(r["system"] for r in runs):
        rs = [r for r in runs if r["system"] == system]
        out[system] = {}
        for k, label in enumerate(rs[0]["checkpoint_labels"]):
            pts = [r["checkpoints"][k] for r in rs]

            def stat(key):
                xs = [p[key] for p in pts if p.get(key) is not None]
                return [statistics.median(xs), min(xs), max(xs)] if xs else None
            out[system][label] = {"val": stat("best_val"), "test": stat("test_accuracy"), "seeds": len(rs),
                                  "seeds_with_result": sum(p.get("best_val") is not None for p in pts),
                                  "epochs": stat("epochs"), "completed": stat("completed"), "pruned": stat("pruned")}
    return out


def fmt(s, digits=4):
    if s is None:
        return "-"
    med, lo, hi = s
    if lo == hi:
        return f"{med:.{digits}f}"
    return f"{med:.{digits}f} ({lo:.{digits}f}-{hi:.{digits}f})"


def markdown(summary, runs):
    labels = runs[0]["checkpoint_labels"]
    head = "| system | " + " | ".join(f"{l}: best val | {l}: its test" for l in labels) + \
        f" | at {labels[-1]}: trials completed / pruned, epochs |"
    lines = [head, "|" + "---|" * (2 * len(labels) + 2)]
    for system, s in summary.items():
        cells = []
        for l in labels:
            short = "" if s[l]["seeds_with_result"] == s[l]["seeds"] else \
                f" [{s[l]['seeds_with_result']}/{s[l]['seeds']} seeds]"
            cells += [fmt(s[l]["val"]) + short, fmt(s[l]["test"])]
        e = s[labels[-1]]
        cnt = f"{fmt(e['completed'], 0)} / {fmt(e['pruned'], 0)}, {fmt(e['epochs'], 0)}"
        lines.append(f"| {system} | " + " | ".join(cells) + f" | {cnt} |")
    seeds = sorted({r["seed"] for r in runs})
    lines.append("")
    lines.append(f"median (min-max) over seeds {seeds}; best = best completed trial by validation accuracy at that "
                 "time, test = that trial's test accuracy; [k/n seeds]: only k runs had a completed trial by then "
                 "(the median is over those)")
    return "\n".join(lines)


def paired(runs):
    """The first system against each other one, seed by seed: test-accuracy differences in points at each
    checkpoint over the seeds both ran (a seed where either has no completed trial yet is left out)."""
    systems = list(dict.fromkeys(r["system"] for r in runs))
    labels = runs[0]["checkpoint_labels"]
    by = {(r["system"], r["seed"]): r for r in runs}
    lines = []
    for other in systems[1:]:
        seeds = sorted(s for (sy, s) in by if sy == systems[0] and (other, s) in by)
        if len(seeds) < 2:
            continue
        cells = []
        for k, l in enumerate(labels):
            pairs = [(by[(systems[0], s)]["checkpoints"][k].get("test_accuracy"),
                      by[(other, s)]["checkpoints"][k].get("test_accuracy")) for s in seeds]
            d = [100 * (a - b) for a, b in pairs if a is not None and b is not None]
            if len(d) < 2:
                cells.append("-")
                continue
            mean, se = statistics.mean(d), statistics.stdev(d) / math.sqrt(len(d))
            wins, losses = sum(x > 0 for x in d), sum(x < 0 for x in d)
            cells.append(f"{mean:+.2f} ± {se:.2f} (median {statistics.median(d):+.2f}; {wins} ahead, "
                         f"{losses} behind, {len(d)} seeds)")
        lines.append(f"| {systems[0]} − {other} | " + " | ".join(cells) + " |")
    if not lines:
        return ""
    head = ["| test accuracy, points | " + " | ".join(labels) + " |", "|" + "---|" * (len(labels) + 1)]
    return "\n".join(["", "Paired by seed: mean ± standard error of the difference (seeds both systems ran)", ""]
                     + head + lines)


def machine_info():
    info = {"nproc": os.cpu_count(), "loadavg_at_start": os.getloadavg()}
    try:
        with open("/proc/cpuinfo") as f:
            info["cpu"] = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), "")
    except OSError:
        pass
    try:
        info["hpo_commit"] = subprocess.run(["git", "-C", REPO, "rev-parse", "HEAD"], capture_output=True,
                                            text=True).stdout.strip()
    except OSError:
        pass
    info["libblas"] = os.path.realpath("/usr/lib/x86_64-linux-gnu/libblas.so.3")   # openblas-openmp is the fast one
    try:
        import torch
        import optuna
        info["torch"], info["optuna"] = torch.__version__, optuna.__version__
    except ImportError:
        pass
    return info


def write(path, doc):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(doc, f, indent=1)
    os.replace(tmp, path)


def read_runs(arg):
    """The runs of a results file named FILE, or only one system's runs with FILE#SYSTEM."""
    path, _, only = arg.partition("#")
    try:
        with open(path) as f:
            runs = json.load(f)["runs"]
    except (OSError, ValueError, KeyError) as e:
        raise SystemExit(f"cannot read a results file at {path}: {e}")
    if only:
        runs = [r for r in runs if r["system"] == only]
        if not runs:
            raise SystemExit(f"{path} has no runs of system {only!r}")
    return runs


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--budget_min", type=float, default=30.0, help="wall-clock minutes per system and seed")
    ap.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 (sampler seeds of both systems)")
    ap.add_argument("--seed_list", default="", help="explicit seeds, e.g. 3,4 (overrides --seeds)")
    ap.add_argument("--systems", default="hpo,optuna,hpo-random,optuna-random")
    ap.add_argument("--hpo_layout", default="2x1", help="WORKERSxTHREADS; a comma list runs each as a system")
    ap.add_argument("--optuna_layout", default="1x2", help="PROCESSESxTHREADS; a comma list runs each")
    ap.add_argument("--train_examples", type=int, default=None, help="overrides the spec's task")
    ap.add_argument("--val_examples", type=int, default=None, help="overrides the spec's task")
    ap.add_argument("--max_epochs", type=int, default=None, help="overrides the spec's task")
    ap.add_argument("--spec", default=None, help="a study spec (JSON), or {\"merge_patch\": {...}} over issue 16's 8-parameter spec (the default)")
    ap.add_argument("--data_root", default="/usr/share/datasets")
    ap.add_argument("--build", default=os.path.join(REPO, "build"))
    ap.add_argument("--out", default=None, help="default bench/results/search_outcome_<timestamp>.json")
    ap.add_argument("--keep", action="store_true", help="keep each run's temporary folder (databases, logs)")
    ap.add_argument("--merge", nargs="+", default=None,
                    help="merge result files and print the table; FILE#SYSTEM takes one system's runs, LABEL=FILE names "
                         "them LABEL; the first system is paired against each other one")
    # internal: one Optuna process
    ap.add_argument("--_optuna_child", action="store_true", help=argparse.SUPPRESS)
    for k, t in (("child_spec", str), ("child_storage", str), ("child_study", str), ("child_seed", int),
                 ("child_threads", int), ("child_processes", int), ("child_deadline", float)):
        ap.add_argument(f"--{k}", type=t, help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args._optuna_child:
        optuna_child(args)
        return
    if args.merge:
        runs = []
        for arg in args.merge:
            # LABEL=FILE names every run of FILE's system LABEL, so that two variants of one system (a spec
            # option, a pruner setting) are told apart in the table and paired against each other.
            # FILE#SYSTEM takes only that system's runs from FILE.
            label, sep, path = arg.partition("=")
            if not sep or os.path.exists(arg):
                label, path = None, arg
            file_runs = read_runs(path)
            if label is not None:
                if len({r["system"] for r in file_runs}) > 1:
                    raise SystemExit(f"{path} holds more than one system: name one with {path}#SYSTEM")
                for r in file_runs:
                    r["system"] = label
            runs += file_runs
        budgets = {r["budget_s"] for r in runs}
        if len(budgets) > 1:
            raise SystemExit(f"the files mix budgets {sorted(budgets)} s: merge runs of one budget")
        seen = [(r["system"], r["seed"]) for r in runs]
        if len(set(seen)) < len(seen):
            log("warning: some (system, seed) runs appear more than once; all of them count")
        print(markdown(summarize(runs), runs))
        print(paired(runs))
        return

    base = copy.deepcopy(DEFAULT_SPEC)
    if args.spec:
        with open(args.spec) as f:
            loaded = json.load(f)
        # A variant of the default spec is stored as its difference: {"merge_patch": {...}} (RFC 7386).
        base = merge_patch(base, loaded["merge_patch"]) if set(loaded) == {"merge_patch"} else loaded
    for k in ("train_examples", "val_examples", "max_epochs"):
        if getattr(args, k) is not None:
            base["task"][k] = getattr(args, k)
    if base["task"].get("type") != "cnn":
        raise SystemExit("the spec's task must be cnn")
    metric = base.get("objective", {}).get("metric", "val_accuracy")
    minimize = base.get("objective", {}).get("direction", "minimize" if metric == "val_loss" else "maximize") \
        == "minimize"
    seeds = [int(s) for s in args.seed_list.split(",")] if args.seed_list else list(range(args.seeds))
    systems = []
    for s in [x.strip() for x in args.systems.split(",") if x.strip()]:
        if s not in ("hpo", "optuna", "hpo-random", "optuna-random"):
            raise SystemExit(f"unknown system {s!r}")
        layouts = (args.hpo_layout if s.startswith("hpo") else args.optuna_layout).split(",")
        systems += [(f"{s} {l}", s, l) for l in layouts]
    budget_s = args.budget_min * 60
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = args.out or os.path.join(REPO, "bench", "results", f"search_outcome_{stamp}.json")
    labels = [f"{c / 60:g} min" if c % 60 == 0 else f"{c:.0f} s" for c in checkpoints_of(budget_s)]
    doc = {"created": stamp, "command": " ".join([os.path.basename(sys.argv[0])] + sys.argv[1:]),
           "args": {k: v for k, v in vars(args).items() if not k.startswith("child") and k != "_optuna_child"},
           "spec": base, "machine": machine_info(), "runs": []}
    total = len(seeds) * len(systems) * budget_s
    log(f"{len(seeds)} seeds x {len(systems)} systems x {args.budget_min:g} min = {total / 3600:.2f} h of runs; "
        f"results -> {out}")
    for seed in seeds:                  # seeds outermost: systems alternate, so load drift hits all alike
        for label, system, layout in systems:
            spec = run_spec(base, label, seed, args)
            tmp = tempfile.mkdtemp(prefix=f"search-outcome-{system}-s{seed}.")
            log(f"{label} seed {seed}: running {args.budget_min:g} min in {tmp}")
            t_start = time.time()
            load0 = os.getloadavg()
            extra = {}
            if system.startswith("hpo"):
                trials = run_hpo(spec, seed, layout, args, tmp)
            else:
                trials, preload = run_optuna(spec, seed, layout, args, tmp)
                extra["optuna_ld_preload"] = preload
                if spec.get("sampler", {}).get("type") == "gp":
                    extra["note"] = "Optuna 3.1 has no GP sampler: TPESampler ran instead"
            curve = anytime_curve(trials, budget_s, minimize)
            cps = []
            for c in checkpoints_of(budget_s):
                p = at_time(curve, c)
                cps.append(dict(counts_at(trials, c), best_val=p[1] if p else None,
                                test_accuracy=p[2] if p else None, trial=p[3] if p else None))
            run = {"system": label, "kind": system, "layout": layout, "seed": seed, "budget_s": budget_s,
                   "spec": spec, "started_unix": t_start, "wall_s": time.time() - t_start,
                   "loadavg_before": load0, "loadavg_after": os.getloadavg(), "curve": curve,
                   "checkpoint_labels": labels, "checkpoints": cps, "trials": trials, **extra}
            if args.keep:
                run["tmp"] = tmp
            else:
                shutil.rmtree(tmp, ignore_errors=True)
            doc["runs"].append(run)
            doc["summary"] = summarize(doc["runs"])
            write(out, doc)
            last = cps[-1]
            log(f"{label} seed {seed}: {len(trials)} trials, {last['completed']} completed, {last['pruned']} pruned, "
                f"{last['epochs']} epochs; best val {last['best_val']} test {last['test_accuracy']} "
                f"(trial {last['trial']})")
    table = markdown(doc["summary"], doc["runs"])
    doc["table"] = table
    write(out, doc)
    print(table)
    print(f"\nraw results: {os.path.relpath(out, os.getcwd())}")


if __name__ == "__main__":
    main()

#!/usr/bin/env python
"""Predict gRDA's early sparsity from a preset without training (no data, seconds on a CPU). The library; its command
line is scripts/analysis/early_sparsity.py:

    python scripts/analysis/early_sparsity.py --experiment cifar100_wrn28x10 [--epochs 1,2,3,5,10] [--per-layer]
                                     [override ...]          # any Hydra override, e.g. optim.mu=0.55

gRDA sets w_n = S_tau_n(a_n) with a_n = a_0 - sum(lr * g) and a threshold tau_n that grows with n. Early in
training the accumulated gradient steps are small against the spread of the start a_0, so the weights that are
zero after n steps are, to a first approximation, those that started inside the threshold:

    predicted zeros after n steps = fraction of entries with |a_0| <= tau_n        (a static model: no gradients)

The static model holds while tau_n is small against the spread of a_0 and the gradient steps add up to little.
Against the authors' logs: WRN-28-10 (CIFAR-10 and -100, c 0.001) within 0.01 points after epoch 1 at every mu
(0.501-0.65), within 0.5 points up to epoch 5 at mu <= 0.6 (1.5 at 0.65); after 10 epochs +0.3/+0.8 points at
mu 0.501, up to +11 at mu 0.65 (the gradients pull weights out). VGG16 (mu 0.51): within 0.1 points up to epoch 10.
Keras CNN with the uniform start: within 0.1 points of the figure at epochs 10 and 100. Where tau_n soon exceeds
most initial weights (the MNIST preset, c = 0.1; ImageNet, 5,005 steps per epoch at c = 0.005) the gradients decide
which weights survive, and the prediction means little (the script says so).

a_0 is the model's initial weights (a_0 = w_0; the preset's model, init and seed, built exactly as src/train.py
builds it: torch.manual_seed(seed), then the model) or, with optim.accumulator_init=uniform, the uniform draw
GRDA makes (U(-range, range), seed + the parameter's position). tau_n sums src/optim/grda.threshold_increment
over the steps with each epoch's lr from the preset's schedule (= closed_form_threshold at constant lr); steps
per epoch = ceil(training images / global batch) (CIFAR 50,000; ImageNet 1,281,167; MNIST 60,000).

Counted over ALL trainable parameters, BatchNorm and biases included, as the authors count. Entries that start
at exactly 0 (BN biases; conv biases under Kaiming init; zero-initialised Keras biases) count as NON-zero in the
"zeros %" column: their accumulator leaves 0 by lr * gradient at the first step and, against a threshold that
starts near 0, stays out. The authors' WRN-28-10 logs decide it: after epoch 1, at all 8 settings (CIFAR-10/100,
mu 0.501-0.65), the prediction counting the 8,976 BN biases as non-zero is within 0.01 points of the logged
mean, while counting them as zeros (the literal |a_0| <= tau) overshoots every time by their share, 0.025 points
("0-init %" column). "weights %" counts the conv and linear weights only.

Where the authors' logs give early sparsity for the same setting (WRN-28-10 CIFAR-10/100 and VGG16 CIFAR-10 at
their lr, c, mu and batch; the Keras CNN figure), they are printed beside. For the WRN, results/authors_wrn_curves.csv
(per-epoch means from their logs) is read when present; else the means below, computed from the same logs.
"""

from __future__ import annotations

import argparse
import csv
import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from src.errors import UserError, cli_main

ROOT = Path(__file__).resolve().parents[1]

CONFIG_DIR = ROOT / "configs"
AUTHORS_CSV = ROOT / "results" / "authors_wrn_curves.csv"
PAPER_CSV = ROOT / "results" / "paper_results.csv"
DEFAULT_EPOCHS = (1, 2, 3, 5, 10)

# Training-set size, classes and input shape of each dataset (no data is read).
DATASETS: Dict[str, Tuple[int, int, Tuple[int, int, int]]] = {
    "cifar10": (50_000, 10, (3, 32, 32)),
    "cifar100": (50_000, 100, (3, 32, 32)),
    "imagenet": (1_281_167, 1000, (3, 224, 224)),
    "mnist": (60_000, 10, (1, 28, 28)),
    "digits": (1_437, 10, (1, 8, 8)),
}

_WRN_LOGS = "gRDA-Optimizer, directional_pruning/Figures/appendix/train_{ds}/wrn28x10/*/grda_c0.001_mu{mu}.txt"
_VGG_LOGS = "gRDA-Optimizer, directional_pruning/Figures/appendix/train_cifar10/vgg16/mu_{mu}_c_0.0005_lr_*.txt"


@dataclass(frozen=True)
class Reference:
    """Early % zeros from the authors' logs for one setting."""

    model: str
    dataset: str
    lr: float
    c: float
    mu: float
    batch_size: int
    zeros: Dict[int, float]  # epoch -> % zeros (mean over runs)
    source: str


# Mean % zeros over the authors' runs (1 - printed nonzeros / total after each epoch), computed from their logs.
# WRN: 10 runs each (4 for CIFAR-10 mu 0.4), all seed 1, so they agree to +-0.01 points. VGG: 12 runs.
BUILTIN_REFERENCES: Tuple[Reference, ...] = (
    Reference(
        "wrn",
        "cifar100",
        0.1,
        0.001,
        0.501,
        128,
        {1: 13.53, 2: 19.11, 3: 23.37, 4: 26.96, 5: 30.10, 10: 42.08},
        _WRN_LOGS.format(ds="cifar100", mu=0.501),
    ),
    Reference(
        "wrn",
        "cifar100",
        0.1,
        0.001,
        0.55,
        128,
        {1: 16.19, 2: 23.65, 3: 29.51, 4: 34.51, 5: 38.94, 10: 55.44},
        _WRN_LOGS.format(ds="cifar100", mu=0.55),
    ),
    Reference(
        "wrn",
        "cifar100",
        0.1,
        0.001,
        0.6,
        128,
        {1: 19.44, 2: 29.41, 3: 37.43, 4: 44.39, 5: 50.57, 10: 70.36},
        _WRN_LOGS.format(ds="cifar100", mu=0.6),
    ),
    Reference(
        "wrn",
        "cifar100",
        0.1,
        0.001,
        0.65,
        128,
        {1: 23.35, 2: 36.55, 3: 47.46, 4: 56.97, 5: 64.99, 10: 82.09},
        _WRN_LOGS.format(ds="cifar100", mu=0.65),
    ),
    Reference(
        "wrn",
        "cifar10",
        0.1,
        0.001,
        0.4,
        128,
        {1: 9.36, 2: 12.33, 3: 14.49, 4: 16.24, 5: 17.74, 10: 23.33},
        _WRN_LOGS.format(ds="cifar10", mu=0.4),
    ),
    Reference(
        "wrn",
        "cifar10",
        0.1,
        0.001,
        0.501,
        128,
        {1: 13.54, 2: 19.14, 3: 23.43, 4: 27.03, 5: 30.20, 10: 42.56},
        _WRN_LOGS.format(ds="cifar10", mu=0.501),
    ),
    Reference(
        "wrn",
        "cifar10",
        0.1,
        0.001,
        0.55,
        128,
        {1: 16.20, 2: 23.69, 3: 29.57, 4: 34.61, 5: 39.09, 10: 56.77},
        _WRN_LOGS.format(ds="cifar10", mu=0.55),
    ),
    Reference(
        "wrn",
        "cifar10",
        0.1,
        0.001,
        0.6,
        128,
        {1: 19.46, 2: 29.45, 3: 37.51, 4: 44.53, 5: 50.83, 10: 74.16},
        _WRN_LOGS.format(ds="cifar10", mu=0.6),
    ),
    Reference(
        "wrn",
        "cifar10",
        0.1,
        0.001,
        0.65,
        128,
        {1: 23.37, 2: 36.61, 3: 47.58, 4: 57.25, 5: 65.88, 10: 86.77},
        _WRN_LOGS.format(ds="cifar10", mu=0.65),
    ),
    Reference(
        "vgg16",
        "cifar10",
        0.1,
        0.0005,
        0.4,
        128,
        {1: 2.49, 2: 3.29, 3: 3.86, 5: 4.72, 10: 6.19},
        _VGG_LOGS.format(mu=0.4),
    ),
    Reference(
        "vgg16",
        "cifar10",
        0.1,
        0.0005,
        0.51,
        128,
        {1: 3.73, 2: 5.31, 3: 6.52, 5: 8.43, 10: 11.91},
        _VGG_LOGS.format(mu=0.51),
    ),
    Reference(
        "vgg16",
        "cifar10",
        0.1,
        0.0005,
        0.6,
        128,
        {1: 5.19, 2: 7.85, 3: 9.99, 5: 13.52, 10: 20.22},
        _VGG_LOGS.format(mu=0.6),
    ),
    Reference(
        "vgg16",
        "cifar10",
        0.1,
        0.0005,
        0.7,
        128,
        {1: 7.48, 2: 12.11, 3: 16.02, 5: 22.71, 10: 35.88},
        _VGG_LOGS.format(mu=0.7),
    ),
)


# ----------------------------------------------------------------------------------------------- config


def compose_config(experiment: str, overrides: Sequence[str] = ()) -> Any:
    """The preset's config, composed as src/train.py composes it (Hydra's Compose API, typed schema)."""
    from hydra import compose, initialize_config_dir

    from src import config as _config  # noqa: F401  (registers the schema and resolvers)

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name="train", overrides=[f"experiment={experiment}", *overrides])


def dataset_info(cfg: Any) -> Tuple[int, int, Tuple[int, int, int]]:
    """(training images, classes, input shape) of cfg.data, train_subset applied."""
    name = str(cfg.data.name).lower()
    if name not in DATASETS:
        raise UserError(f"early_sparsity knows no dataset '{name}'; known: {', '.join(DATASETS)}")
    n, classes, shape = DATASETS[name]
    if cfg.data.train_subset is not None:
        n = min(n, int(cfg.data.train_subset))
    return n, classes, shape


# ------------------------------------------------------------------------------------------- threshold


@dataclass
class Schedule:
    steps_per_epoch: int
    lr: float  # after the linear scaling rule
    lr_note: str
    epoch_lr: Dict[int, float] = field(default_factory=dict)  # 1-based epoch -> lr during it
    tau: Dict[int, float] = field(default_factory=dict)  # 1-based epoch -> threshold after it


def threshold_schedule(cfg: Any, epochs: Sequence[int], n_train: int) -> Schedule:
    """tau after each listed epoch: threshold_increment summed over every step, at each epoch's lr."""
    from grda import threshold_increment
    from src.optimizers import effective_lr
    from src.schedule import lr_factor

    batch = int(cfg.trainer.batch_size)
    steps = math.ceil(n_train / batch)
    if cfg.trainer.max_steps_per_epoch is not None:
        steps = min(steps, int(cfg.trainer.max_steps_per_epoch))
    lr, note = effective_lr(cfg.optim, batch)
    factor = lr_factor(cfg.schedule, int(cfg.trainer.epochs))
    c, mu = float(cfg.optim.c), float(cfg.optim.mu)
    out = Schedule(steps_per_epoch=steps, lr=lr, lr_note=note)
    tau, step, wanted = 0.0, 0, set(epochs)
    for epoch in range(1, max(epochs) + 1):
        epoch_lr = lr * factor(epoch - 1)  # the trainer's epoch index counts from 0
        for _ in range(steps):
            step += 1
            tau += threshold_increment(step, epoch_lr, c, mu)
        if epoch in wanted:
            out.epoch_lr[epoch], out.tau[epoch] = epoch_lr, tau
    return out


# ------------------------------------------------------------------------------------------- prediction


def _kind(module: nn.Module, param_name: str) -> str:
    if isinstance(module, nn.modules.conv._ConvNd):
        kind = "conv"
    elif isinstance(module, nn.Linear):
        kind = "linear"
    elif isinstance(module, nn.modules.batchnorm._NormBase):
        kind = "BN"
    else:
        kind = type(module).__name__
    return f"{kind} {param_name}"


@dataclass
class Layer:
    name: str  # parameter name
    kind: str  # e.g. "conv weight", "BN bias"
    numel: int
    zero_start: int  # entries with a_0 == 0 exactly
    zeros: Dict[int, int]  # epoch -> entries with 0 < |a_0| <= tau


@dataclass
class Prediction:
    experiment: str
    model_desc: str
    num_params: int
    schedule: Schedule
    accumulator: str
    layers: List[Layer] = field(default_factory=list)  # every trainable parameter, in model order

    def pooled(self, epoch: int, kinds: Optional[Sequence[str]] = None, zero_start_counts: bool = False) -> float:
        """% predicted zeros over all parameters (or those of the given kinds).

        ``zero_start_counts``: count entries that start at exactly 0 as zeros (the literal static rule); by
        default they count as non-zero, which is what the authors' logs show (see the module docstring)."""
        rows = [r for r in self.layers if kinds is None or r.kind in kinds]
        total = sum(r.numel for r in rows)
        zeros = sum(r.zeros[epoch] + (r.zero_start if zero_start_counts else 0) for r in rows)
        return 100.0 * zeros / total if total else math.nan


def build_initial_model(cfg: Any, num_classes: int, input_shape: Sequence[int]) -> nn.Module:
    """The model as src/train.py starts it: torch.manual_seed(seed), build, optional init_from weights."""
    from src.models import build_model

    torch.manual_seed(int(cfg.seed))
    model = build_model(cfg.model, num_classes=num_classes, input_shape=tuple(input_shape))
    if cfg.model.init_from:
        from src.checkpoint import load_weights_from

        path = Path(str(cfg.model.init_from)).expanduser().resolve()
        load_weights_from(model, path)
    return model


def predict(cfg: Any, epochs: Sequence[int] = DEFAULT_EPOCHS) -> Prediction:
    """Predicted zeros after each listed epoch for the composed config ``cfg`` (see the module docstring)."""
    if str(cfg.optim.name) != "grda":
        raise UserError(f"early sparsity is gRDA's: this config uses optim={cfg.optim.name}; pass optim=grda")
    epochs = sorted({int(e) for e in epochs})
    if not epochs or epochs[0] < 1:
        raise UserError(f"--epochs must list epochs >= 1, got {epochs}")
    n_train, num_classes, input_shape = dataset_info(cfg)
    schedule = threshold_schedule(cfg, epochs, n_train)
    with torch.no_grad():
        model = build_initial_model(cfg, num_classes, input_shape)
        init = str(getattr(cfg.optim, "accumulator_init", "weights"))
        if init not in ("weights", "uniform"):
            raise UserError(f"unknown optim.accumulator_init '{init}'; choose weights or uniform")
        if init == "uniform":
            from grda import uniform_accumulator

            bound, seed = float(cfg.optim.accumulator_range), int(cfg.optim.accumulator_seed)
            accumulator = f"a_0 ~ U(-{bound:g}, {bound:g}) (optim.accumulator_init=uniform, seed {seed} + position)"
        else:
            accumulator = "a_0 = w_0 (the initial weights)"
        m = cfg.model
        extras = ([f"variant {m.variant}"] if m.name == "wrn" else []) + (
            [f"init {m.init}"] if m.name in ("wrn", "vgg16") else []
        )
        desc = f"{m.name} ({', '.join(extras)})" if extras else str(m.name)
        pred = Prediction(
            experiment=str(cfg.experiment), model_desc=desc, num_params=0, schedule=schedule, accumulator=accumulator
        )
        owners = {id(p): (mod, pname) for mod in model.modules() for pname, p in mod.named_parameters(recurse=False)}
        position = 0
        for name, p in model.named_parameters():
            if not p.requires_grad:
                continue
            a0 = uniform_accumulator(p, bound, seed + position) if init == "uniform" else p.detach()
            position += 1
            mag = a0.abs().flatten().to(torch.float64)
            zero_start = int((mag == 0).sum())
            zeros = {e: int((mag <= schedule.tau[e]).sum()) - zero_start for e in epochs}
            mod, pname = owners[id(p)]
            pred.layers.append(Layer(name, _kind(mod, pname), p.numel(), zero_start, zeros))
            pred.num_params += p.numel()
    return pred


# ------------------------------------------------------------------------------------------- references


def _norm(text: Any) -> str:
    return re.sub(r"[^a-z0-9]", "", str(text).lower())


def _float(text: Any) -> Optional[float]:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def read_authors_csv(path: Path, dataset: str, mu: float, c: float) -> Optional[Dict[int, float]]:
    """{epoch: % zeros} for gRDA at (dataset, mu[, c]) from the per-epoch means file, or None if absent/unusable."""
    if not path.is_file():
        return None
    try:
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f))
    except (OSError, csv.Error, UnicodeDecodeError):
        return None
    if not rows:
        return None
    cols = {_norm(k): k for k in rows[0] if k}
    need = [cols.get(k) for k in ("dataset", "mu", "epoch")]
    sparsity = next((k for n, k in cols.items() if "sparsity" in n and "mean" in n), None) or next(
        (k for n, k in cols.items() if n.startswith("sparsity")), None
    )
    if None in need or sparsity is None:
        return None
    ds_col, mu_col, ep_col = need
    opt_col, c_col = cols.get("optimizer"), cols.get("c")
    out: Dict[int, float] = {}
    for r in rows:
        if _norm(r.get(ds_col)) != _norm(dataset):
            continue
        if opt_col and _norm(r.get(opt_col)) not in ("grda", ""):
            continue
        r_mu, epoch, value = _float(r.get(mu_col)), _float(r.get(ep_col)), _float(r.get(sparsity))
        r_c = _float(r.get(c_col)) if c_col else None
        if r_mu is None or abs(r_mu - mu) > 1e-9 or epoch is None or value is None:
            continue
        if r_c is not None and abs(r_c - c) > 1e-12:
            continue
        out[int(epoch)] = value
    if not out:
        return None
    if max(out.values()) <= 1.0:  # fractions rather than percent
        out = {e: 100.0 * v for e, v in out.items()}
    return out


def keras_figure_reference(cfg: Any) -> Optional[Reference]:
    """% zeros at epochs 10 and 100 read off the authors' Keras-CNN figure (results/paper_results.csv)."""
    if not PAPER_CSV.is_file():
        return None
    with PAPER_CSV.open(newline="") as f:
        for r in csv.DictReader(f):
            if r.get("experiment") != "cifar10_keras_cnn" or r.get("optimizer") != "grda":
                continue
            if _float(r.get("mu")) != float(cfg.optim.mu) or _float(r.get("c")) != float(cfg.optim.c):
                continue
            zeros = {
                e: 100.0 * (1.0 - v)
                for e, v in ((10, _float(r.get("nonzero_ratio_e10"))), (100, _float(r.get("nonzero_ratio_e100"))))
                if v is not None
            }
            if zeros:
                return Reference(
                    "keras_cnn",
                    "cifar10",
                    _float(r.get("lr")) or 0.0,
                    float(cfg.optim.c),
                    float(cfg.optim.mu),
                    10,
                    zeros,
                    f"results/paper_results.csv: {r.get('source', '')}",
                )
    return None


def find_reference(cfg: Any) -> Optional[Reference]:
    """The authors' early sparsity for exactly this setting (model, dataset, lr, c, mu, batch), if known."""
    model, dataset = str(cfg.model.name), str(cfg.data.name)
    lr, c, mu, batch = float(cfg.optim.lr), float(cfg.optim.c), float(cfg.optim.mu), int(cfg.trainer.batch_size)
    if cfg.data.train_subset is not None or cfg.trainer.max_steps_per_epoch is not None:
        return None
    if model == "keras_cnn" and dataset == "cifar10" and batch == 10 and abs(lr - 0.005) < 1e-12:
        return keras_figure_reference(cfg)
    if model == "wrn" and (int(cfg.model.depth), int(cfg.model.widen_factor)) != (28, 10):
        return None
    for ref in BUILTIN_REFERENCES:
        if (ref.model, ref.dataset, ref.batch_size) == (model, dataset, batch) and all(
            abs(a - b) < 1e-12 for a, b in ((ref.lr, lr), (ref.c, c), (ref.mu, mu))
        ):
            if model == "wrn":
                from_csv = read_authors_csv(AUTHORS_CSV, dataset, mu, c)
                if from_csv:
                    return Reference(
                        model,
                        dataset,
                        lr,
                        c,
                        mu,
                        batch,
                        from_csv,
                        f"{AUTHORS_CSV.relative_to(ROOT)} (per-epoch means of the authors' logs)",
                    )
            return ref
    if model == "wrn" and abs(lr - 0.1) < 1e-12 and batch == 128:
        from_csv = read_authors_csv(AUTHORS_CSV, dataset, mu, c)
        if from_csv:
            return Reference(model, dataset, lr, c, mu, batch, from_csv, f"{AUTHORS_CSV.relative_to(ROOT)}")
    return None


# ------------------------------------------------------------------------------------------- report


def report(cfg: Any, pred: Prediction, reference: Optional[Reference], per_layer: bool = False) -> str:
    s = pred.schedule
    epochs = sorted(s.tau)
    n_train = dataset_info(cfg)[0]
    lines = [
        f"{pred.experiment}: {pred.model_desc}, {pred.num_params:,} parameters, seed {cfg.seed}, "
        f"data {cfg.data.name} ({n_train:,} training images)",
        f"gRDA lr {s.lr:g} (global batch {cfg.trainer.batch_size}{'; ' + s.lr_note if s.lr_note else ''}), "
        f"c {cfg.optim.c:g}, mu {cfg.optim.mu:g}; {s.steps_per_epoch:,} steps per epoch; "
        f"schedule {cfg.schedule.name} (epoch_base {cfg.schedule.epoch_base}, {cfg.trainer.epochs} epochs)",
        f"predicted zeros after n steps = share of entries with |a_0| <= tau_n, {pred.accumulator}",
        "",
    ]
    head = f"{'epoch':>5} {'steps':>8} {'lr':>8} {'tau':>10} {'zeros %':>8} {'0-init %':>8} {'weights %':>9}"
    if reference:
        head += f" {'authors %':>9} {'diff':>6}"
    lines.append(head)
    weight_kinds = ("conv weight", "linear weight")
    for e in epochs:
        z = pred.pooled(e)
        row = (
            f"{e:>5} {e * s.steps_per_epoch:>8,} {s.epoch_lr[e]:>8.4g} {s.tau[e]:>10.4e} {z:>8.2f} "
            f"{pred.pooled(e, zero_start_counts=True):>8.2f} {pred.pooled(e, weight_kinds):>9.2f}"
        )
        if reference:
            ref = reference.zeros.get(e)
            row += f" {ref:>9.2f} {z - ref:>+6.2f}" if ref is not None else f" {'-':>9} {'':>6}"
        lines.append(row)
    if reference:
        lines.append(f"authors: {reference.source}")
    if any(pred.pooled(e) > 50 for e in epochs):
        lines.append(
            "note: tau exceeds most initial weights here; the static model does not hold (the gradients "
            "decide which weights survive)"
        )
    zero_start = sum(r.zero_start for r in pred.layers)
    lines.append(
        f"zeros %: the {zero_start:,} entries that start at exactly 0 count as non-zero (as the authors' logs "
        f"show);\n0-init %: counted as zeros; weights %: conv and linear weights only"
    )
    lines += ["", "by kind (% predicted zeros; 'start 0': entries starting at exactly 0, not counted):"]
    kinds: Dict[str, Tuple[int, int]] = {}
    for r in pred.layers:
        numel, zs = kinds.get(r.kind, (0, 0))
        kinds[r.kind] = (numel + r.numel, zs + r.zero_start)
    lines.append(f"{'kind':<14} {'entries':>12} {'start 0':>10} " + " ".join(f"{'ep ' + str(e):>7}" for e in epochs))
    for kind, (numel, zs) in kinds.items():
        lines.append(
            f"{kind:<14} {numel:>12,} {zs:>10,} " + " ".join(f"{pred.pooled(e, [kind]):>7.2f}" for e in epochs)
        )
    if per_layer:
        width = max(len(r.name) for r in pred.layers)
        lines += [
            "",
            "per tensor (% predicted zeros):",
            f"{'tensor':<{width}} {'entries':>12} {'start 0':>10} " + " ".join(f"{'ep ' + str(e):>7}" for e in epochs),
        ]
        for r in pred.layers:
            lines.append(
                f"{r.name:<{width}} {r.numel:>12,} {r.zero_start:>10,} "
                + " ".join(f"{100.0 * r.zeros[e] / r.numel:>7.2f}" for e in epochs)
            )
    return "\n".join(lines)


def parse_epochs(text: str) -> List[int]:
    try:
        epochs = sorted({int(t) for t in text.split(",") if t.strip()})
    except ValueError:
        raise UserError(f"--epochs takes a comma-separated list of integers, got '{text}'") from None
    if not epochs or epochs[0] < 1:
        raise UserError(f"--epochs takes epochs >= 1, got '{text}'")
    return epochs


def _main(argv: Optional[Sequence[str]]) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--experiment", required=True, help="a preset in configs/experiment/")
    parser.add_argument("--epochs", default=",".join(map(str, DEFAULT_EPOCHS)), help="e.g. 1,2,3,5,10")
    parser.add_argument("--per-layer", action="store_true", help="also print every parameter tensor")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. optim.mu=0.55 model.init=auto")
    args = parser.parse_args(argv)
    epochs = parse_epochs(args.epochs)
    cfg = compose_config(args.experiment, args.overrides)
    pred = predict(cfg, epochs)
    print(report(cfg, pred, find_reference(cfg), per_layer=args.per_layer))


def main(argv: Optional[Sequence[str]] = None) -> int:
    """The command line; a UserError prints one line and returns 2."""
    return cli_main(_main, argv)


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python
"""Training throughput (img/s) and peak memory: the harness against a bare PyTorch loop, SGD against gRDA.

    python scripts/bench_train.py --setup keras_cnn --data-root ../shared/data/cifar10 [--batch-size 10]
                                  [--steps 600] [--rounds 3] [--out results/bench/train_keras_cnn.md]
    python scripts/bench_train.py --setup resnet50 --batch-size 8 --steps 8

Throughput is timed from the second optimizer step on (the first warms up, and builds gRDA's fused kernel).
Each measurement is its own process: the harness is `src/train.py` for one epoch cut at --steps optimizer
steps (its metrics.csv reports train_img_per_s over the training loop, per-layer sparsity logging at the
default interval included); the bare loop is the minimal DataLoader -> forward -> backward -> step loop below
on the same dataset, model and batch size. Rounds interleave the six variants (harness and bare loop; SGD, SGD with
momentum, gRDA); medians are reported. Peak memory is the process's peak resident set (ru_maxrss), which for the
harness includes its evaluation and checkpoint writing. On a shared machine whose speed drifts, a last, paired
measurement compares the optimizers in one process, stepping each one's own model copy on its own copy of the data
in turn (loading included).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SETUPS = {
    # name: (experiment preset, extra overrides)
    "keras_cnn": ("cifar10_keras_cnn", []),
    "resnet50": ("imagenet_resnet50", ["trainer.workers=1"]),
}
OPTIMS = {"sgd": ["optim=sgd"], "sgd_momentum": ["optim=sgd_momentum"], "grda": ["optim=grda"]}


def bare_loop(args) -> None:
    """The minimal loop, run in a child process: prints a JSON line with img/s and peak memory."""
    import resource

    import torch
    from hydra import compose, initialize_config_dir

    from src import config as _config  # noqa: F401
    from src.data import build_datasets
    from src.models import build_model
    from src.optim.build import build_optimizer

    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=harness_overrides(args, args.optim))
    torch.manual_seed(0)
    bundle = build_datasets(cfg.data)
    model = build_model(cfg.model, bundle.num_classes, tuple(bundle.input_shape))
    optimizer = build_optimizer(model, cfg.optim, cfg.optim.lr)
    loader = torch.utils.data.DataLoader(bundle.train, batch_size=args.batch_size, shuffle=True,
                                         num_workers=cfg.trainer.workers if cfg.trainer.workers >= 0 else 0)
    loss_fn = torch.nn.CrossEntropyLoss()
    model.train()
    images_seen = 0
    start = time.perf_counter()
    for step, (x, y) in enumerate(loader):
        if step >= args.steps:
            break
        loss = loss_fn(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step == 0:  # like the harness, time from the second step on
            start = time.perf_counter()
        else:
            images_seen += y.shape[0]
    elapsed = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"img_per_s": images_seen / elapsed, "peak_memory_mb": peak}))


def paired_loop(args) -> None:
    """Every optimizer on its own copy of the model and its own DataLoader (same seed, so the same batches), stepped in
    turn in one process (a new order each step), so that drifts in machine speed hit them alike; prints a JSON line of
    img/s per optimizer. Loading each batch is timed with the step, as in the bare loop."""
    import random

    import torch
    from hydra import compose, initialize_config_dir

    from src import config as _config  # noqa: F401
    from src.data import build_datasets
    from src.models import build_model
    from src.optim.build import build_optimizer

    runs = {}
    for optim in OPTIMS:
        with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
            cfg = compose("train", overrides=harness_overrides(args, optim))
        torch.manual_seed(0)
        bundle = build_datasets(cfg.data)
        model = build_model(cfg.model, bundle.num_classes, tuple(bundle.input_shape))
        loader = torch.utils.data.DataLoader(bundle.train, batch_size=args.batch_size, shuffle=True,
                                             generator=torch.Generator().manual_seed(0))
        runs[optim] = (model.train(), build_optimizer(model, cfg.optim, cfg.optim.lr), iter(loader))
    loss_fn = torch.nn.CrossEntropyLoss()
    seconds = {optim: 0.0 for optim in runs}
    images = 0
    order = list(runs)
    for step in range(args.steps):
        random.shuffle(order)
        for optim in order:
            model, optimizer, batches = runs[optim]
            start = time.perf_counter()
            x, y = next(batches)
            loss = loss_fn(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if step > 0:  # the first step warms up
                seconds[optim] += time.perf_counter() - start
        images += y.shape[0] if step > 0 else 0
    print(json.dumps({optim: images / s for optim, s in seconds.items()}))


def harness_overrides(args, optim: str) -> list:
    experiment, extra = SETUPS[args.setup]
    out = [f"experiment={experiment}", f"trainer.batch_size={args.batch_size}", *OPTIMS[optim], *extra]
    if args.data_root:
        out.append(f"data.root={args.data_root}")
    out += [f"data.train_subset={args.steps * args.batch_size}", "data.test_subset=100"]
    return out


def run_harness(args, optim: str, workdir: Path) -> dict:
    run_dir = workdir / f"harness_{optim}_{time.time_ns()}"
    cmd = [sys.executable, "src/train.py", f"hydra.run.dir={run_dir}", "trainer.epochs=1", "trainer.progress=false",
           f"trainer.max_steps_per_epoch={args.steps}", *harness_overrides(args, optim)]
    subprocess.run(cmd, cwd=REPO, check=True, capture_output=True, text=True)
    row = next(csv.DictReader((run_dir / "metrics.csv").open()))
    summary = json.loads((run_dir / "summary.json").read_text())
    return {"img_per_s": float(row["train_img_per_s"]), "peak_memory_mb": summary["peak_memory_mb"]}


def run_bare(args, optim: str) -> dict:
    cmd = [sys.executable, __file__, "--child-bare", "--optim", optim, "--setup", args.setup,
           "--batch-size", str(args.batch_size), "--steps", str(args.steps)]
    if args.data_root:
        cmd += ["--data-root", args.data_root]
    proc = subprocess.run(cmd, cwd=REPO, check=True, capture_output=True, text=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_paired(args) -> dict:
    cmd = [sys.executable, __file__, "--child-paired", "--setup", args.setup, "--batch-size", str(args.batch_size),
           "--steps", str(args.steps)]
    if args.data_root:
        cmd += ["--data-root", args.data_root]
    proc = subprocess.run(cmd, cwd=REPO, check=True, capture_output=True, text=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def make_imagenet_like(root: Path, n: int = 32) -> None:
    """A small ImageFolder of random 256x256 JPEGs (ResNet-50 compute does not depend on the pixels)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for cls in ("a", "b"):
            (root / split / cls).mkdir(parents=True, exist_ok=True)
            for i in range(n // 2):
                Image.fromarray(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)).save(root / split / cls / f"{i}.jpg")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--setup", choices=list(SETUPS), default="keras_cnn")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--batch-size", type=int, default=10)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default=None)
    parser.add_argument("--child-bare", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--child-paired", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--optim", default="sgd", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_bare:
        bare_loop(args)
        return 0
    if args.child_paired:
        paired_loop(args)
        return 0

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.setup == "resnet50" and not args.data_root:
            make_imagenet_like(tmp / "imagenet", n=max(32, args.steps * args.batch_size))
            args.data_root = str(tmp / "imagenet")
        results = {(kind, optim): [] for kind in ("harness", "bare") for optim in OPTIMS}
        for _ in range(args.rounds):
            for optim in OPTIMS:
                results[("harness", optim)].append(run_harness(args, optim, tmp))
                results[("bare", optim)].append(run_bare(args, optim))
        paired = run_paired(args)
    med = {k: {m: statistics.median(r[m] for r in v) for m in ("img_per_s", "peak_memory_mb")} for k, v in results.items()}

    cpus = len(os.sched_getaffinity(0))
    lines = [
        f"# Training throughput: {args.setup}, batch {args.batch_size}",
        "",
        f"Machine: {platform.machine()}, {cpus} CPU cores, no GPU. Command: `python scripts/bench_train.py --setup "
        f"{args.setup} --batch-size {args.batch_size} --steps {args.steps} --rounds {args.rounds}"
        + (f" --data-root {args.data_root}`" if args.setup == "keras_cnn" and args.data_root else "`"),
        f"Median over {args.rounds} interleaved rounds of {args.steps} optimizer steps each (one process per measurement).",
        "",
        "| loop | optimizer | img/s | peak memory (MB) |",
        "|---|---|---:|---:|",
    ]
    for (kind, optim), m in med.items():
        lines.append(f"| {kind} | {optim} | {m['img_per_s']:.1f} | {m['peak_memory_mb']:.0f} |")
    ratio = lambda a, b: med[a]["img_per_s"] / med[b]["img_per_s"]  # noqa: E731
    # the two runs of a round are minutes apart at most, so their ratio is less exposed to drifts in machine speed
    round_ratio = lambda kind: statistics.median(  # noqa: E731
        g["img_per_s"] / s["img_per_s"] for g, s in zip(results[(kind, "grda")], results[(kind, "sgd")]))
    extra_mb = lambda kind: med[(kind, "grda")]["peak_memory_mb"] - med[(kind, "sgd_momentum")]["peak_memory_mb"]  # noqa: E731
    lines += [
        "",
        f"- gRDA / SGD throughput, harness: {ratio(('harness', 'grda'), ('harness', 'sgd')):.3f} (ratio of medians); "
        f"{round_ratio('harness'):.3f} (median of the rounds' ratios)",
        f"- gRDA / SGD throughput, bare loop: {ratio(('bare', 'grda'), ('bare', 'sgd')):.3f} (ratio of medians); "
        f"{round_ratio('bare'):.3f} (median of the rounds' ratios)",
        "- harness / bare loop: " + "; ".join(f"{o} {ratio(('harness', o), ('bare', o)):.3f}" for o in OPTIMS),
        f"- peak memory, gRDA minus SGD momentum: harness {extra_mb('harness'):+.0f} MB, bare loop {extra_mb('bare'):+.0f} MB",
        "",
        f"Paired bare loop ({args.steps} steps in one process; every optimizer loads its batch and steps its own copy of "
        "the model in turn, on the same batches, in a new order each step, so that machine-speed drifts hit all alike): "
        + ", ".join(f"{o} {v:.1f} img/s" for o, v in paired.items())
        + f"; gRDA / SGD {paired['grda'] / paired['sgd']:.3f}, gRDA / SGD momentum {paired['grda'] / paired['sgd_momentum']:.3f}.",
    ]
    text = "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

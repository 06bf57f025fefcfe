#!/usr/bin/env python
"""Training throughput (img/s) and peak memory: the harness against a bare PyTorch loop, SGD against gRDA.

    python scripts/bench/bench_train.py --setup keras_cnn --data-root ../shared/data/cifar10 [--batch-size 10]
                                  [--steps 600] [--rounds 3] [--out results/bench/train_keras_cnn.md]
    python scripts/bench/bench_train.py --setup resnet50 --batch-size 8 --steps 8

Two measurements. First, interleaved in one process (what the ratios should be read from: this machine's speed
drifts between processes by more than the differences measured): the harness's training loop (train_one_epoch from
src/train.py, with its logging at the default intervals) and the minimal DataLoader -> forward -> backward -> step
loop below, for every optimizer, each on its own model copy and data loader, take turns of --chunk steps in a new order
each round. Second, separate processes: the harness is a whole `src/train.py` run of one epoch cut at --steps
optimizer steps (its metrics.csv reports train_img_per_s over the training loop, timed from the second step), the bare
loop a child process; rounds run the six variants (harness and bare loop; SGD, SGD with momentum, gRDA) in a new order
each round, and medians are reported with each process's peak resident set (ru_maxrss, which for the harness includes
its evaluation and checkpoint writing).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

SETUPS = {
    # name: (experiment preset, extra overrides)
    "keras_cnn": ("cifar10_keras_cnn", []),
    "resnet50": ("imagenet_resnet50", ["trainer.workers=1"]),
}
OPTIMS = {"sgd": ["optim=sgd"], "sgd_momentum": ["optim=sgd_momentum"], "grda": ["optim=grda"]}


def build_run(overrides: list):
    """(cfg, dataset bundle, model in train mode, optimizer) as the harness builds them for these overrides."""
    import torch
    from hydra import compose, initialize_config_dir

    from src import config as _config  # noqa: F401
    from src.data import build_datasets
    from src.models import build_model
    from src.optimizers import build_optimizer

    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    torch.manual_seed(0)
    bundle = build_datasets(cfg.data)
    model = build_model(cfg.model, bundle.num_classes, tuple(bundle.input_shape)).train()
    return cfg, bundle, model, build_optimizer(model, cfg.optim, cfg.optim.lr)


def bare_step(model, optimizer, loss_fn, x, y) -> None:
    """One step of the minimal loop."""
    loss = loss_fn(model(x), y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def bare_loop(args) -> None:
    """The minimal loop, run in a child process: prints a JSON line with img/s and peak memory."""
    import resource

    import torch

    cfg, bundle, model, optimizer = build_run(harness_overrides(args, args.optim))
    loader = torch.utils.data.DataLoader(
        bundle.train,
        batch_size=args.batch_size,
        shuffle=True,
        num_workers=cfg.trainer.workers if cfg.trainer.workers >= 0 else 0,
    )
    loss_fn = torch.nn.CrossEntropyLoss()
    images_seen = 0
    start = time.perf_counter()
    for step, (x, y) in enumerate(loader):
        if step >= args.steps:
            break
        bare_step(model, optimizer, loss_fn, x, y)
        if step == 0:  # like the harness, time from the second step on
            start = time.perf_counter()
        else:
            images_seen += y.shape[0]
    elapsed = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"img_per_s": images_seen / elapsed, "peak_memory_mb": peak}))


def interleaved_loops(args) -> None:
    """The harness's training loop (src/loop.py's train_one_epoch: its logging at the default intervals, TensorBoard
    included) and the bare loop, for every optimizer, each on its own model copy and data loader, all in one process:
    they take turns in chunks of --chunk steps, in a new order each round, so that drifts in machine speed hit all
    alike. Loading the data is timed with the steps (no worker processes, for every variant). Prints a JSON line of
    img/s per "loop/optimizer"."""
    import torch
    from torch.utils.tensorboard import SummaryWriter

    from src.data.loaders import build_loaders
    from src.distributed import Dist
    from src.loop import TrainContext, train_one_epoch

    device, world, loss_fn = torch.device("cpu"), Dist(), torch.nn.CrossEntropyLoss()
    tensorboard = tempfile.TemporaryDirectory(prefix="bench_train_tb_")
    setups = {}
    for kind in ("harness", "bare"):
        for optim in args.optims:
            cfg, bundle, model, optimizer = build_run(
                harness_overrides(args, optim)
                + ["trainer.workers=0", "trainer.progress=false", f"trainer.max_steps_per_epoch={args.chunk}"]
            )
            loader = build_loaders(cfg, bundle, world, device)[0]
            loader.sampler.generator.manual_seed(0)
            setups[f"{kind}/{optim}"] = dict(
                cfg=cfg,
                model=model,
                loader=loader,
                optimizer=optimizer,
                step=0,
                writer=SummaryWriter(log_dir=f"{tensorboard.name}/{optim}") if kind == "harness" else None,
            )

    def bare_chunk(s: dict) -> int:
        images = 0
        for i, (x, y) in enumerate(s["loader"]):
            if i >= args.chunk:
                break
            bare_step(s["model"], s["optimizer"], loss_fn, x, y)
            images += y.shape[0]
        return images

    def harness_chunk(s: dict) -> int:
        ctx = TrainContext(s["model"], s["optimizer"], device, s["cfg"], world, s["writer"], loss_fn=loss_fn)
        out = train_one_epoch(ctx, s["loader"], 0, s["step"])
        steps = out["global_step"] - s["step"]
        s["step"] = out["global_step"]
        return steps * args.batch_size

    seconds = {name: 0.0 for name in setups}
    images = {name: 0 for name in setups}
    order = list(setups)
    for round_ in range(args.steps // args.chunk):  # main() checks there are at least two
        random.shuffle(order)
        for name in order:
            start = time.perf_counter()
            n = harness_chunk(setups[name]) if name.startswith("harness") else bare_chunk(setups[name])
            if round_ > 0:  # the first round warms up (and builds gRDA's fused kernel)
                seconds[name] += time.perf_counter() - start
                images[name] += n
    for s in setups.values():
        if s["writer"] is not None:
            s["writer"].close()
    tensorboard.cleanup()
    print(json.dumps({name: images[name] / seconds[name] for name in setups}))


def harness_overrides(args, optim: str) -> list:
    experiment, extra = SETUPS[args.setup]
    out = [f"experiment={experiment}", f"trainer.batch_size={args.batch_size}", *OPTIMS[optim], *extra]
    if args.data_root:
        out.append(f"data.root={args.data_root}")
    out += [f"data.train_subset={args.steps * args.batch_size}", "data.test_subset=100"]
    return out


def run_harness(args, optim: str, workdir: Path) -> dict:
    run_dir = workdir / f"harness_{optim}_{time.time_ns()}"
    cmd = [
        sys.executable,
        "src/train.py",
        f"hydra.run.dir={run_dir}",
        "trainer.epochs=1",
        "trainer.progress=false",
        f"trainer.max_steps_per_epoch={args.steps}",
        *harness_overrides(args, optim),
    ]
    subprocess.run(cmd, cwd=REPO, check=True, capture_output=True, text=True)
    row = next(csv.DictReader((run_dir / "metrics.csv").open()))
    summary = json.loads((run_dir / "summary.json").read_text())
    return {"img_per_s": float(row["train_img_per_s"]), "peak_memory_mb": summary["peak_memory_mb"]}


def run_bare(args, optim: str) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--child-bare",
        "--optim",
        optim,
        "--setup",
        args.setup,
        "--batch-size",
        str(args.batch_size),
        "--steps",
        str(args.steps),
    ]
    if args.data_root:
        cmd += ["--data-root", args.data_root]
    proc = subprocess.run(cmd, cwd=REPO, check=True, capture_output=True, text=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_interleaved(args) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--child-interleaved",
        "--setup",
        args.setup,
        "--batch-size",
        str(args.batch_size),
        "--steps",
        str(args.steps),
        "--chunk",
        str(args.chunk),
        "--optims",
        *args.optims,
    ]
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
                Image.fromarray(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)).save(
                    root / split / cls / f"{i}.jpg"
                )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--setup", choices=list(SETUPS), default="keras_cnn")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--batch-size", type=int, default=10)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default=None)
    parser.add_argument("--child-bare", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--chunk", type=int, default=20, help="steps per turn in the interleaved measurement")
    parser.add_argument("--child-interleaved", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--optim", default="sgd", help=argparse.SUPPRESS)
    parser.add_argument(
        "--optims",
        nargs="+",
        choices=list(OPTIMS),
        default=list(OPTIMS),
        help="the optimizers to measure (default: all three); the report compares gRDA with SGD",
    )
    args = parser.parse_args()
    if not {"sgd", "grda"} <= set(args.optims):
        parser.error(f"--optims must include sgd and grda (the report compares them), got {' '.join(args.optims)}")
    args.optims = [o for o in OPTIMS if o in args.optims]  # one order, whatever the command line's
    if args.steps < 2 * args.chunk and not args.child_bare:
        parser.error(f"--steps ({args.steps}) must be at least twice --chunk ({args.chunk}): one turn warms up")
    return args


def measure(args) -> tuple:
    """The separate-process rounds (medians and every run) and the interleaved in-process turns."""
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.setup == "resnet50" and not args.data_root:
            make_imagenet_like(tmp / "imagenet", n=max(32, args.steps * args.batch_size))
            args.data_root = str(tmp / "imagenet")
        results = {(kind, optim): [] for kind in ("harness", "bare") for optim in args.optims}
        order = list(results)
        shuffle = random.Random(0).shuffle
        for _ in range(args.rounds):
            shuffle(order)  # a new order each round: no variant always runs first, or after the same one
            for kind, optim in order:
                run = run_harness(args, optim, tmp) if kind == "harness" else run_bare(args, optim)
                results[(kind, optim)].append(run)
        together = run_interleaved(args)
    med = {
        k: {m: statistics.median(r[m] for r in v) for m in ("img_per_s", "peak_memory_mb")} for k, v in results.items()
    }
    return med, results, together


def report(args, med: dict, results: dict, together: dict) -> str:
    """The markdown table of the measurements."""
    cpus = len(os.sched_getaffinity(0))
    t = together
    rounds_together = args.steps // args.chunk - 1
    lines = [
        f"# Training throughput: {args.setup}, batch {args.batch_size}",
        "",
        f"Machine: {platform.machine()}, {cpus} CPU cores, no GPU. "
        f"Command: `python scripts/bench/bench_train.py --setup {args.setup} --batch-size {args.batch_size} "
        f"--steps {args.steps} --rounds {args.rounds} --chunk {args.chunk}"
        + (f" --data-root {args.data_root}`" if args.setup == "keras_cnn" and args.data_root else "`"),
        "",
        f"## Interleaved in one process ({rounds_together} timed turns of {args.chunk} steps per variant, after one "
        f"warm-up turn; the {2 * len(args.optims)} variants in a new order each round, each on its own model copy and "
        "data loader; data loading timed, no worker processes)",
        "",
        "| optimizer | harness img/s | bare loop img/s | harness / bare loop |",
        "|---|---:|---:|---:|",
    ]
    for optim in args.optims:
        h, b = t[f"harness/{optim}"], t[f"bare/{optim}"]
        lines.append(f"| {optim} | {h:.1f} | {b:.1f} | {h / b:.3f} |")
    lines += [
        "",
        f"- gRDA / SGD: harness {t['harness/grda'] / t['harness/sgd']:.3f}, "
        f"bare loop {t['bare/grda'] / t['bare/sgd']:.3f}",
    ]
    if "sgd_momentum" in args.optims:
        lines.append(
            f"- gRDA / SGD momentum: harness {t['harness/grda'] / t['harness/sgd_momentum']:.3f}, "
            f"bare loop {t['bare/grda'] / t['bare/sgd_momentum']:.3f}"
        )
    lines += [
        "",
        f"## Separate processes (median over {args.rounds} rounds of {args.steps} steps each; "
        "the variants in a new order each round; the harness is a whole `src/train.py` run)",
        "",
        "| loop | optimizer | img/s | peak memory (MB) |",
        "|---|---|---:|---:|",
    ]
    for (kind, optim), m in med.items():
        lines.append(f"| {kind} | {optim} | {m['img_per_s']:.1f} | {m['peak_memory_mb']:.0f} |")
    ratio = lambda a, b: med[a]["img_per_s"] / med[b]["img_per_s"]  # noqa: E731
    # the runs of one round are minutes apart at most, so their ratio is less exposed to drifts in machine speed
    round_ratio = lambda kind: statistics.median(  # noqa: E731
        g["img_per_s"] / s["img_per_s"] for g, s in zip(results[(kind, "grda")], results[(kind, "sgd")])
    )
    extra_mb = lambda kind: med[(kind, "grda")]["peak_memory_mb"] - med[(kind, "sgd_momentum")]["peak_memory_mb"]  # noqa: E731
    lines += [
        "",
        f"- gRDA / SGD throughput, harness: {ratio(('harness', 'grda'), ('harness', 'sgd')):.3f} (ratio of medians); "
        f"{round_ratio('harness'):.3f} (median of the rounds' ratios)",
        f"- gRDA / SGD throughput, bare loop: {ratio(('bare', 'grda'), ('bare', 'sgd')):.3f} (ratio of medians); "
        f"{round_ratio('bare'):.3f} (median of the rounds' ratios)",
        "- harness / bare loop: " + "; ".join(f"{o} {ratio(('harness', o), ('bare', o)):.3f}" for o in args.optims),
    ]
    if "sgd_momentum" in args.optims:
        lines.append(
            f"- peak memory, gRDA minus SGD momentum: harness {extra_mb('harness'):+.0f} MB, "
            f"bare loop {extra_mb('bare'):+.0f} MB"
        )
    return "\n".join(lines)


def main() -> int:
    args = parse_args()
    if args.child_bare:
        bare_loop(args)
        return 0
    if args.child_interleaved:
        interleaved_loops(args)
        return 0

    med, results, together = measure(args)
    text = report(args, med, results, together)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python
"""Optimizer step time on real models' parameter sets: gRDA's paths against plain SGD.

    python scripts/bench/bench_optimizer.py [--models resnet50 wrn28x10 keras_cnn] [--repeats 30] [--device cpu]
                                      [--out results/bench/optimizer_cpu.md]

Every optimizer steps the same parameters with fixed gradients; the variants are timed in rounds, in a new
order each round, in one process (so drifts in machine load hit them alike), each step after a cache flush, and the
median of --repeats steps is reported with the ratio to torch.optim.SGD(foreach=True). Step times include the
optimizer's host-side (Python) work and wait for the device. Before timing, the default path is checked against the
reference path.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Callable, Dict, List

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402

from grda import GRDA  # noqa: E402
from src.models import build_model  # noqa: E402

MODELS = {
    "resnet50": (dict(name="resnet50"), 1000, (3, 224, 224)),
    "wrn28x10": (dict(name="wrn", depth=28, widen_factor=10, dropout=0.0, conv_bias=True), 100, (3, 32, 32)),
    "keras_cnn": (dict(name="keras_cnn"), 10, (3, 32, 32)),
}


class PerParameterLoopGRDA(torch.optim.Optimizer):
    """gRDA written the straightforward way, in the style of the authors' PyTorch code: one parameter at a time,
    step count and threshold as 1-element tensors, the threshold increment from torch.pow, and each new weight a
    freshly allocated tensor bound with ``p.data = ...``. The baseline the fast paths are measured against."""

    def __init__(self, params, lr, c, mu):
        super().__init__(params, dict(lr=lr, c=c, mu=mu))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            lr, c, mu = group["lr"], group["c"], group["mu"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["iter_num"] = torch.zeros(1)
                    state["accumulator"] = p.detach().clone()
                    state["l1_accumulation"] = torch.zeros(1)
                n = state["iter_num"].add_(1)
                a = state["accumulator"].add_(p.grad, alpha=-lr)
                scale = c * torch.pow(torch.tensor(lr), mu + 0.5)
                state["l1_accumulation"] += scale * torch.pow(n, mu) - scale * torch.pow(n - 1, mu)
                shrunk = torch.abs(a) - state["l1_accumulation"].to(p.device)
                p.data = torch.sign(a) * shrunk.clamp(min=0)


def make_params(model_name: str, device: torch.device) -> List[torch.nn.Parameter]:
    cfg, classes, shape = MODELS[model_name]
    torch.manual_seed(0)
    model = build_model(
        SimpleNamespace(**{"depth": 28, "widen_factor": 10, "dropout": 0.0, "conv_bias": True, **cfg}), classes, shape
    )
    gen = torch.Generator().manual_seed(1)
    params = [torch.nn.Parameter(p.detach().to(device)) for p in model.parameters()]
    return params, [(torch.randn(p.shape, generator=gen) * 1e-3).to(device) for p in params]


OPTIMIZERS: Dict[str, Callable] = {
    "GRDA (default: auto)": lambda ps: GRDA(ps, lr=0.1, c=0.005, mu=0.51),
    "GRDA impl=fused": lambda ps: GRDA(ps, lr=0.1, c=0.005, mu=0.51, impl="fused"),
    "GRDA impl=compiled": lambda ps: GRDA(ps, lr=0.1, c=0.005, mu=0.51, impl="compiled"),
    "GRDA impl=foreach": lambda ps: GRDA(ps, lr=0.1, c=0.005, mu=0.51, impl="foreach"),
    "GRDA impl=reference": lambda ps: GRDA(ps, lr=0.1, c=0.005, mu=0.51, impl="reference"),
    "per-parameter loop": lambda ps: PerParameterLoopGRDA(ps, lr=0.1, c=0.005, mu=0.51),
    "SGD plain (foreach)": lambda ps: torch.optim.SGD(ps, lr=0.1, foreach=True),
    "SGD momentum (foreach)": lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, foreach=True),
}
BASELINE = "SGD plain (foreach)"
FLUSH_BYTES = 256 * 2**20


@torch.no_grad()
def check_exactness(model_name: str, device: torch.device) -> float:
    """Largest difference between the default path and the reference path after 3 steps."""
    runs = []
    for impl in ("auto", "reference"):
        params, grads = make_params(model_name, device)
        opt = GRDA(params, lr=0.1, c=0.05, mu=0.51, impl=impl)
        for _ in range(3):
            for p, g in zip(params, grads):
                p.grad = g
            opt.step()
        runs.append(params)
    return max(float((p - q).abs().max()) for p, q in zip(*runs))


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench(model_name: str, device: torch.device, repeats: int, warmup: int) -> Dict[str, float]:
    setups = {}
    for name, make in OPTIMIZERS.items():
        params, grads = make_params(model_name, device)
        for p, g in zip(params, grads):
            p.grad = g
        setups[name] = make(params)
    times: Dict[str, List[float]] = {name: [] for name in setups}
    # Read a buffer larger than the caches before every step, so each variant starts from the same cold cache
    # (not from the leftovers of the variant timed before it), as triton.testing.do_bench does on GPUs.
    flush = torch.ones(FLUSH_BYTES // 4, device=device)
    order = list(setups)
    shuffle = random.Random(0).shuffle
    for i in range(warmup + repeats):
        shuffle(order)  # a new order each round, so that no variant always follows the same one
        for name in order:
            opt = setups[name]
            flush.sum()
            sync(device)
            t0 = time.perf_counter()
            opt.step()
            sync(device)
            if i >= warmup:
                times[name].append(time.perf_counter() - t0)
    medians = {name: statistics.median(t) * 1e3 for name, t in times.items()}
    state_mb = {name: state_bytes(opt) / 2**20 for name, opt in setups.items()}
    return medians, state_mb


def state_bytes(opt: torch.optim.Optimizer) -> int:
    """Bytes of tensor state the optimizer keeps (its extra memory beyond parameters and gradients)."""
    return sum(v.numel() * v.element_size() for s in opt.state.values() for v in s.values() if torch.is_tensor(v))


def machine(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpus = len(os.sched_getaffinity(0))
    return f"{platform.processor() or platform.machine()}, {cpus} CPU cores, {torch.get_num_threads()} torch threads"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", default=None, help="write the markdown table here")
    args = parser.parse_args()
    device = torch.device(args.device)

    # the allocator setting decides what the per-parameter loop's fresh tensors cost: say it when it is set
    malloc_env = "".join(f"{k}={v} " for k, v in os.environ.items() if k.startswith("MALLOC_"))
    lines = [
        "# Optimizer step time",
        "",
        f"Machine: {machine(device)}; torch {torch.__version__}; device {device}.",
        f"Command: `{malloc_env}python scripts/bench/bench_optimizer.py --device {args.device} "
        f"--repeats {args.repeats} --models {' '.join(args.models)}`",
        f"Median of {args.repeats} steps after {args.warmup} warm-up steps, variants interleaved in a shuffled order, "
        "each step from a cold "
        f"cache (a {FLUSH_BYTES // 2**20} MiB buffer is read before it); "
        f"ratio = time / `{BASELINE}`.",
        "",
    ]
    for model_name in args.models:
        params, _ = make_params(model_name, device)
        numel = sum(p.numel() for p in params)
        diff = check_exactness(model_name, device)
        result, state_mb = bench(model_name, device, args.repeats, args.warmup)
        base = result[BASELINE]
        loop = result["per-parameter loop"]
        lines += [
            f"## {model_name}: {len(params)} tensors, {numel:,} parameters",
            "",
            f"Default path vs reference path after 3 steps: max |difference| = {diff:.3g}.",
            "",
            "| optimizer | step (ms) | × SGD plain | speed-up over per-parameter loop | state (MB) |",
            "|---|---:|---:|---:|---:|",
        ]
        for name, ms in result.items():
            lines.append(f"| {name} | {ms:.2f} | {ms / base:.2f} | {loop / ms:.1f}× | {state_mb[name]:.1f} |")
        lines.append("")
    text = "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

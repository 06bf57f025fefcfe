#!/usr/bin/env python
r"""CPU inference: dense PyTorch vs the sparse runtime (src/sparse_runtime), end to end.

Writes results/bench/sparse_inference_cpu.md:

    python scripts/bench/bench_sparse_inference.py                                # the full table (~45 min, idle)
    python scripts/bench/bench_sparse_inference.py --threads 1 --json-out a.json  # a part (one thread count) ...
    python scripts/bench/bench_sparse_inference.py --from-json a.json b.json      # ... and the table from parts
    python scripts/bench/bench_sparse_inference.py \
        --keras-ckpt ~/grda-runs/cifar10_keras_cnn/figure/grda_mu1.0/checkpoint.pth

Models: torchvision ResNet-50 (3x224x224, 1000 classes), WRN-28-10 (3x32x32, 10 classes), the Keras CNN (3x32x32,
10 classes), each with a uniformly random fraction of every conv/linear weight set to zero (exactly that fraction
per layer, seeded) and random BatchNorm statistics; optionally the Keras CNN from real gRDA checkpoints.

For each thread count, model, sparsity and batch size, in one process: the runtime is built (BN folded, ReLU fused),
planned (each layer timed dense and sparse on its real input; the plan kept only if faster end to end than the
original model), then dense PyTorch (the unmodified model, eval mode, inference_mode) and the runtime are timed
interleaved, medians of up to --rounds rounds (at least 3; fewer than --rounds where they would take longer than
--budget seconds). The plan cache is a fresh temp file unless
--plan-cache is given, so every plan here is measured in this run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torchvision  # noqa: E402

from src.errors import cli_main  # noqa: E402
from src.models.keras_cnn import KerasCNN  # noqa: E402
from src.models.wrn import WideResNet  # noqa: E402
from src.sparse_runtime import build_dense_model, convert, kernel  # noqa: E402
from src.sparse_runtime.bench import bench, randomize_bn, sparsify_uniform  # noqa: E402
from src.sparse_runtime.plan import cpu_model  # noqa: E402

MODELS = {
    "resnet50": ("ResNet-50", lambda: torchvision.models.resnet50(weights=None), (3, 224, 224)),
    "wrn28_10": ("WRN-28-10", lambda: WideResNet(depth=28, widen_factor=10, num_classes=10), (3, 32, 32)),
    "keras_cnn": ("Keras CNN", lambda: KerasCNN(10, (3, 32, 32)), (3, 32, 32)),
}


def portable(path: str) -> str:
    """A path as the committed table may show it: relative inside the repository, ~/... under the home directory,
    <dir>/NAME elsewhere (no machine's absolute paths in results/)."""
    p = Path(path).expanduser()
    if not p.is_absolute():
        return str(path)
    p = Path(os.path.abspath(p))
    for base, shown in ((ROOT, None), (Path.home(), "~")):
        try:
            rel = p.relative_to(base)
        except ValueError:
            continue
        return str(rel) if shown is None else f"{shown}/{rel}"
    return f"<dir>/{p.name}"


def portable_command(argv: List[str]) -> str:
    """The command line with every absolute path (also in --flag=PATH) made :func:`portable`."""

    def one(arg: str) -> str:
        flag, eq, value = arg.partition("=") if arg.startswith("--") else ("", "", arg)
        return flag + eq + portable(value) if value.startswith(("/", "~")) else arg

    return "python scripts/bench/bench_sparse_inference.py " + " ".join(one(a) for a in argv)


def _ints(text: str) -> List[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def _machine() -> Dict[str, Any]:
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "kernel": "avx2" if kernel.uses_avx2() else ("generic" if kernel.available() else "none"),
    }


class Rows(list):
    """The result rows; with a path, written out after every row (a run cut short keeps what it measured)."""

    def __init__(self, path: Optional[str]) -> None:
        super().__init__()
        self.path = path

    def __iadd__(self, more):
        self.extend(more)
        if self.path:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            Path(self.path).write_text(json.dumps({"machine": _machine(), "rows": list(self)}, indent=1))
        return self


def run(args) -> Dict[str, Any]:
    rows: List[Dict[str, Any]] = Rows(args.json_out)
    for threads in _ints(args.threads):
        torch.set_num_threads(threads)
        for key in args.models.split(","):
            title, build, shape = MODELS[key]
            batches = _ints(args.wrn_batches) if key == "wrn28_10" else _ints(args.batches)
            batches = [b for b in batches if f"{key}:{b}:{threads}" not in args.skip]
            for pct in _ints(args.sparsities):
                torch.manual_seed(0)
                model = randomize_bn(sparsify_uniform(build(), pct / 100, seed=1), seed=2).eval()
                rows += measure_model(
                    model, shape, batches, threads, args, model=title, source=f"uniform {pct}%", sparsity=pct
                )
                del model
        for path in args.keras_ckpt:
            path = Path(path).expanduser()
            if not path.is_file():
                print(f"skipped (not found): {path}", file=sys.stderr)
                continue
            model, shape, _ = build_dense_model(path)
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
            epoch = ckpt.get("epoch") if isinstance(ckpt, dict) else None
            weights = [m.weight for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
            zeros = 100 * sum(int((w == 0).sum()) for w in weights) / sum(w.numel() for w in weights)
            per_layer = {
                n: round(100 * float((m.weight == 0).float().mean()), 1)
                for n, m in model.named_modules()
                if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))
            }
            rows += measure_model(
                model,
                shape,
                _ints(args.batches),
                threads,
                args,
                model="Keras CNN",
                source=f"gRDA {checkpoint_label(path)}, epoch {epoch}",
                sparsity=round(zeros, 2),
                extra={"checkpoint": str(path), "epoch": epoch, "per_layer_zeros": per_layer},
            )
    return {"machine": _machine(), "rows": list(rows)}


def checkpoint_label(path: Path) -> str:
    """A run's checkpoint is named by its run directory (…/grda_mu1.0/checkpoint.pth), a copy by its own name."""
    return path.parent.name if path.name == "checkpoint.pth" else path.stem


def _busy_s() -> Optional[float]:
    """CPU seconds all processes have used (Linux /proc/stat), or None."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
        user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
        return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def measure_model(net, shape, batches, threads, args, **meta) -> List[Dict[str, Any]]:
    out = []
    for b in batches:
        rt = convert(net)
        t = time.time()
        busy0, own0 = _busy_s(), sum(os.times()[:2])
        res = bench(net, rt, shape, [b], rounds=args.rounds, budget_s=args.budget)[str(b)]
        row = {
            **{k: v for k, v in meta.items() if k != "extra"},
            "threads": threads,
            "batch": b,
            **{
                k: res[k]
                for k in (
                    "dense_ms",
                    "sparse_ms",
                    "speedup",
                    "dense_per_s",
                    "sparse_per_s",
                    "plan",
                    "plan_s",
                    "plan_sparse_ms",
                    "plan_dense_ms",
                    "rounds",
                )
            },
            "calls_per_sample": res.get("calls_per_sample"),
            "wall_s": round(time.time() - t, 1),
            # CPU time other processes took while this row was measured, per second of it (0: a quiet machine)
            "others_cpu": (
                None
                if busy0 is None
                else round(max(0.0, (_busy_s() - busy0) - (sum(os.times()[:2]) - own0)) / (time.time() - t), 3)
            ),
            "layers": [
                {k: r[k] for k in ("name", "input", "density", "dense_ms", "sparse_ms", "best_sparse", "choice")}
                for r in res["layers"]
            ],
            **(meta.get("extra") or {}),
        }
        print(
            f"{row['model']:10s} {row['source']:28s} {threads}t b={b:<3d} dense {row['dense_ms']:9.2f} ms  "
            f"sparse {row['sparse_ms']:9.2f} ms  {row['speedup']:5.2f}x  plan {row['plan']:6s} "
            f"({row['wall_s']:.0f} s, others {row['others_cpu']} cpu)",
            flush=True,
        )
        out.append(row)
        del rt
    return out


def _fmt_speedup(rows, model, source, threads, batch) -> str:
    for r in rows:
        if (r["model"], r["source"], r["threads"], r["batch"]) == (model, source, threads, batch):
            return f"{r['speedup']:.2f}×" + ("" if r["plan"] == "sparse" else " (d)")
    return "–"


def _rounds(row) -> str:
    """Rounds, and the calls averaged per sample where more than one (sub-millisecond calls; dense / sparse)."""
    calls = row.get("calls_per_sample") or {}
    if max(calls.values(), default=1) <= 1:
        return str(row["rounds"])
    return f"{row['rounds']} × {calls.get('dense', 1)}/{calls.get('sparse', 1)}"


def _intro(machine: Dict[str, Any], threads: List[int], command: str, note: str) -> List[str]:
    lines = [
        "# Sparse inference on the CPU: dense PyTorch vs `src/sparse_runtime`",
        "",
        f"Machine: {machine['cpu']}, {machine['cores']} cores, torch {machine['torch']}, direct kernel: "
        f"{machine['kernel']}; threads: {', '.join(map(str, threads))} (`torch.set_num_threads`). Generated by "
        f"`{command}`.",
        "",
        "Speed-up = dense PyTorch latency / sparse runtime latency, end to end (medians of interleaved runs in one "
        "process; `rounds` per row below). Dense PyTorch is the unmodified model in eval mode under "
        "`torch.inference_mode()`. The runtime folds BatchNorm into the convolutions, fuses ReLUs, and runs each "
        'Conv2d/Linear dense or sparse as timed per layer on this machine; "(d)" marks a model whose per-layer plan '
        "was not faster end to end than the original model, which then runs (plain PyTorch). Max pooling runs "
        "as a separable max (of strided views, or in the sparse kernel's C library) where that measured faster "
        "(PyTorch's NCHW max-pool kernel is slow), so "
        "folding and pooling alone make the runtime faster than dense PyTorch at 0 % zeros. Uniform "
        'sparsity: exactly that fraction of every conv/linear weight is zero, at random positions. "–": not '
        "measured.",
        "",
    ]
    return lines + ([note, ""] if note else [])


def _speedup_table(rows: List[Dict[str, Any]], threads: List[int]) -> List[str]:
    models = []
    for r in rows:
        if (r["model"], r["source"]) not in models:
            models.append((r["model"], r["source"]))
    batches = sorted({r["batch"] for r in rows})
    header = "| model | weights | " + " | ".join(f"b={b}, {t}t" for t in threads for b in batches) + " |"
    lines = [header, "|---|---|" + "---:|" * (len(threads) * len(batches))]
    for model, source in models:
        lines.append(
            f"| {model} | {source} | "
            + " | ".join(_fmt_speedup(rows, model, source, t, b) for t in threads for b in batches)
            + " |"
        )
    return lines


def _latency_table(rows: List[Dict[str, Any]]) -> List[str]:
    lines = [
        "",
        'Latencies (ms; throughput = batch / latency). "plan vs original": the plan\'s own end-to-end '
        'check, the original model against the planned one (fastest of their runs). "rounds": samples per '
        'candidate; "7 × 40/90" means each sample was the mean of 40 dense / 90 sparse calls in a row (calls '
        'under 20 ms are repeated so that one timer interrupt cannot decide a row). "others\' CPU": CPU '
        "seconds per second that other processes used while the row ran (0 = quiet; 2 = both cores busy "
        "elsewhere).",
        "",
        "| model | weights | threads | batch | dense ms | sparse ms | speed-up | plan vs original | dense /s | "
        "sparse /s | plan | conv/linear sparse | rounds | plan + bench s | others' CPU |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        convs = [x for x in r["layers"] if x.get("density") is not None]  # Conv2d/Linear, not the pooling
        sparse_layers = sum(1 for x in convs if x["choice"] != "dense")
        vs = f"{r['plan_dense_ms'] / r['plan_sparse_ms']:.2f}×" if r.get("plan_sparse_ms") else "–"
        others = "–" if r.get("others_cpu") is None else f"{r['others_cpu']:.2f}"
        lines.append(
            f"| {r['model']} | {r['source']} | {r['threads']} | {r['batch']} | {r['dense_ms']:.2f} | "
            f"{r['sparse_ms']:.2f} | {r['speedup']:.2f}× | {vs} | {r['dense_per_s']:.1f} | {r['sparse_per_s']:.1f} | "
            f"{r['plan']} | {sparse_layers}/{len(convs)} | {_rounds(r)} | {r['wall_s']:.0f} | {others} |"
        )
    return lines


def _layer_detail(rows: List[Dict[str, Any]]) -> List[str]:
    """Where sparsity does not pay: per-layer times for the heaviest configurations."""
    lines = [
        "",
        "Per-layer times behind two rows (ms, medians; dense = PyTorch on the BN-folded weights; "
        "sparse = the best sparse candidate):",
        "",
    ]
    for want in (("ResNet-50", "uniform 90%", 1), ("ResNet-50", "uniform 95%", 1)):
        pick = [r for r in rows if (r["model"], r["source"], r["batch"]) == want]
        if not pick:
            continue
        r = max(pick, key=lambda r: r["threads"])
        lines += [
            f"{want[0]}, {want[1]}, batch {want[2]}, {r['threads']} threads:",
            "",
            "| layer | input | dense | sparse | best sparse | choice |",
            "|---|---|---:|---:|---|---|",
        ]
        for x in r["layers"]:
            dense = "–" if x["dense_ms"] is None else f"{x['dense_ms']:.3f}"
            sparse = "–" if x["sparse_ms"] is None else f"{x['sparse_ms']:.3f}"
            lines.append(
                f"| {x['name']} | {'×'.join(map(str, x['input']))} | {dense} | {sparse} | "
                f"{x['best_sparse'] or '–'} | {x['choice']} |"
            )
        lines.append("")
    return lines


def _checkpoint_notes(rows: List[Dict[str, Any]]) -> List[str]:
    lines, seen = [], set()
    for r in rows:
        if "checkpoint" in r and r["checkpoint"] not in seen:
            seen.add(r["checkpoint"])
            lines += [
                f"Checkpoint {portable(r['checkpoint'])} (epoch {r['epoch']}, {r['sparsity']:.2f} % zeros): "
                "zeros per layer (%) " + ", ".join(f"{k} {v}" for k, v in r["per_layer_zeros"].items()),
                "",
            ]
    return lines


def render(results: List[Dict[str, Any]], command: str, note: str = "") -> str:
    """The markdown report: the speed-up grid, every row's latencies, per-layer detail, the checkpoints' zeros."""
    rows = [r for res in results for r in res["rows"]]
    threads = sorted({r["threads"] for r in rows})
    lines = _intro(results[0]["machine"], threads, command, note)
    lines += _speedup_table(rows, threads) + _latency_table(rows) + _layer_detail(rows) + _checkpoint_notes(rows)
    return "\n".join(lines).rstrip() + "\n"


def _main(argv: Optional[Sequence[str]]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="resnet50,wrn28_10,keras_cnn")
    parser.add_argument("--sparsities", default="0,80,90,95,98", help="percent zeros, comma-separated")
    parser.add_argument("--batches", default="1,32")
    parser.add_argument("--wrn-batches", default="1,32", help="WRN-28-10's batch sizes (batch 32 is the slowest part)")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument(
        "--rounds",
        type=int,
        default=7,
        help="end-to-end rounds (median) at most; fewer (at least 3) where they exceed --budget",
    )
    parser.add_argument("--budget", type=float, default=4.0, help="seconds of end-to-end timing per row")
    parser.add_argument(
        "--skip",
        default="",
        help="MODEL:BATCH:THREADS,... combinations to leave out (e.g. resnet50:32:1, the heaviest)",
    )
    parser.add_argument("--keras-ckpt", action="append", default=[], help="a real gRDA Keras CNN checkpoint")
    parser.add_argument("--plan-cache", default=None, help="plan cache file (default: a fresh temp file)")
    parser.add_argument("--json-out", default=None, help="also write the raw results here")
    parser.add_argument("--from-json", nargs="+", default=None, help="render the table from these results only")
    parser.add_argument("--out", default="results/bench/sparse_inference_cpu.md")
    parser.add_argument("--note", default="", help="a paragraph to print under the introduction")
    args = parser.parse_args(argv)
    args.skip = {v.strip() for v in args.skip.split(",") if v.strip()}
    command = portable_command(sys.argv[1:] if argv is None else argv)
    if args.from_json:
        results = [json.loads(Path(p).read_text()) for p in args.from_json]
    else:
        with tempfile.TemporaryDirectory() as tmp:
            os.environ["GRDA_SPARSE_PLAN"] = args.plan_cache or str(Path(tmp) / "plan.json")
            results = [run(args)]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(render(results, command.strip(), args.note))
    print(f"wrote {args.out}")


def main(argv: Optional[List[str]] = None) -> int:
    """The command line; a UserError prints one line and returns 2."""
    return cli_main(_main, argv)


if __name__ == "__main__":
    sys.exit(main())

"""Per-layer sparsity of a checkpoint, and how much faster its sparsity makes CPU inference.

    python src/eval_sparsity.py runs/default/base/checkpoint.pth
    python src/eval_sparsity.py model_best.pth.tar --json
    python src/eval_sparsity.py runs/.../checkpoint.pth --bench --batch 1,32 --threads 2 [--json]
    python src/eval_sparsity.py model.sparse.safetensors --bench --model resnet50

Accepts this harness's checkpoints ({'model': ...}), bare state_dicts, the authors' ResNet-50
files ({'state_dict': ...} with 'module.' prefixes) and sparse exports (src/sparse_export.py). Counts exact
zeros over every floating-point parameter tensor (BatchNorm running statistics excluded) and over conv/linear
weights only. Files are read with torch.load(weights_only=True): nothing in them is executed.

``--bench`` builds the model (from the file's saved training config; for a file without one, from --model,
--num-classes and --input-shape, which defaults to the input of the model's dataset), converts it with
src.sparse_runtime (each Conv2d/Linear runs dense or sparse, whichever measured faster for that layer and input
shape on this machine) and prints, per batch size, each layer's dense and best sparse time and the choice, then
the end-to-end latency and throughput of dense PyTorch and of the sparse runtime (and of onnxruntime on the dense
model, where installed; its threads stop spinning when a call returns, leaving the cores to the next backend
timed), interleaved in this process (medians). With --json: one JSON object whose
"bench" maps each batch size to {"dense_ms", "sparse_ms", "speedup", ...}.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Dict, List, NoReturn, Optional, Sequence

if __package__ in (None, ""):  # `python src/eval_sparsity.py` from the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from src.checkpoint import extract_state_dict, load_checkpoint
from src.errors import UserError, cli_main
from src.sparse_export import describe_export, export_checkpoint
from src.sparsity import LayerSparsity, format_table, state_dict_sparsity, summarize


def _state_dict(path: str) -> Dict[str, Any]:
    """The weights of a checkpoint or of a sparse export (told apart by content)."""
    from src.sparse_runtime import load_weights

    if Path(path).suffix == ".safetensors":
        return load_weights(path)[0]
    return extract_state_dict(load_checkpoint(path), path)


def checkpoint_layers(path: str) -> List[LayerSparsity]:
    """Per-layer counts of the checkpoint (or sparse export) at ``path``; UserError for a bad file."""
    layers = state_dict_sparsity(_state_dict(path))
    if not layers:
        raise UserError(f"'{path}' holds no floating-point parameters to count")
    return layers


def checkpoint_sparsity(path: str) -> Dict[str, Any]:
    """Totals and per-layer counts of the checkpoint at ``path``, with the file's size."""
    out = summarize(checkpoint_layers(path))
    out["file"] = str(path)
    out["file_bytes"] = Path(path).stat().st_size
    return out


# ------------------------------------------------------------------------------ --bench


def _int_list(text: str, what: str) -> List[int]:
    try:
        values = [int(v) for v in text.replace("x", ",").split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or any(v < 1 for v in values):
        raise UserError(f"{what} must be positive integers separated by commas, got '{text}'")
    return values


def run_bench(
    path: str,
    batches: Sequence[int],
    threads: Optional[int],
    rounds: int,
    model: Optional[str],
    num_classes: Optional[int],
    input_shape: Optional[Sequence[int]],
) -> Dict[str, Any]:
    import torch

    from src.sparse_runtime import build_dense_model, convert, machine_key
    from src.sparse_runtime.bench import bench, onnxruntime_runner
    from src.sparse_runtime.plan import cpu_model

    if threads is not None:
        torch.set_num_threads(threads)
    dense, shape, meta = build_dense_model(path, model, num_classes, input_shape)
    runtime = convert(dense)
    ort_run, ort_missing = onnxruntime_runner(dense, shape, torch.get_num_threads())
    totals = summarize(state_dict_sparsity(dense.state_dict()))
    return {
        "file": str(path),
        "model": meta["model"],
        "num_classes": meta["num_classes"],
        "model_from": "config" if meta["config"] and model is None else "flags",
        "input_shape": list(shape),
        "threads": torch.get_num_threads(),
        "cpu": cpu_model(),
        "torch": torch.__version__,
        "machine": machine_key(),
        "convert": runtime.info,
        "sparsity_weights": totals["sparsity_weights"],
        "sparsity": totals["sparsity"],
        "onnxruntime": ort_missing or "dense export, CPUExecutionProvider",
        "bench": bench(
            dense, runtime, shape, batches, rounds=rounds, extra={"onnxruntime": ort_run} if ort_run else None
        ),
    }


def _ms(v: Optional[float]) -> str:
    return "-" if v is None else f"{v:.3f}"


def format_bench(out: Dict[str, Any]) -> str:
    lines = [
        f"{out['model']} ({out['num_classes']} classes, from the file's {out['model_from']}), input "
        f"{'x'.join(map(str, out['input_shape']))}, {out['sparsity_weights']:.2f}% zeros in conv/linear weights; "
        f"{out['cpu']}, {out['threads']} threads, torch {out['torch']}",
        f"folded BatchNorms: {out['convert'].get('folded_bn', 0)}, fused ReLUs: {out['convert'].get('fused_relu', 0)}",
    ]
    for b, r in out["bench"].items():
        rows = r["layers"]
        width = max([len(x["name"]) for x in rows] + [5])
        lines += [
            "",
            f"batch {b}, per layer (ms, medians; dense = PyTorch on the folded weights):",
            f"{'layer':<{width}}  {'input':<16} {'zeros %':>7} {'dense':>9} {'sparse':>9} {'(best)':<8} choice",
        ]
        for x in rows:
            lines.append(
                f"{x['name']:<{width}}  {'x'.join(map(str, x['input'])):<16} "
                f"{'-' if x['density'] is None else format(100 * (1 - x['density']), '.2f'):>7} "
                f"{_ms(x['dense_ms']):>9} {_ms(x['sparse_ms']):>9} {(x['best_sparse'] or '-'):<8} {x['choice']}"
                + (f" ({x['why']})" if x.get("why") else "")
            )
        note = ""
        if r["plan"] == "dense" and r["plan_sparse_ms"] is not None:
            note = (
                f" (the per-layer plan measured {r['plan_sparse_ms']:.3f} ms vs {r['plan_dense_ms']:.3f} for the "
                "original model, which runs)"
            )
        ort = (
            f"onnxruntime (dense export) {r['onnxruntime_ms']:.3f} ms ({r['onnxruntime_per_s']:.1f}/s)"
            if "onnxruntime_ms" in r
            else f"onnxruntime: {out.get('onnxruntime', 'not measured')}"
        )
        lines.append(
            f"batch {b}: dense PyTorch {r['dense_ms']:.3f} ms ({r['dense_per_s']:.1f}/s) | sparse runtime "
            f"{r['sparse_ms']:.3f} ms ({r['sparse_per_s']:.1f}/s) | "
            f"speed-up {r['speedup']:.2f}x | plan {r['plan']}{note}"
            f" | {ort}"
        )
    return "\n".join(lines)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, exit 2, like every other error here
        print(f"error: {message} (see --help)", file=sys.stderr)
        sys.exit(2)


def _main(argv: Optional[Sequence[str]]) -> None:
    parser = _Parser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "checkpoint",
        help="a .pth file (harness checkpoint, state_dict or {'state_dict': ...}) or a sparse export (.safetensors)",
    )
    parser.add_argument("--json", action="store_true", help="print the table (or the benchmark) as JSON")
    parser.add_argument(
        "--export",
        metavar="OUT",
        default=None,
        help="also write the model weights to OUT as a compact sparse safetensors file (zeros not stored; "
        "read it back with src.sparse_export.load_sparse)",
    )
    bench = parser.add_argument_group("inference benchmark (dense PyTorch vs src.sparse_runtime, CPU)")
    bench.add_argument("--bench", action="store_true", help="time the model dense and sparse, per layer and end to end")
    bench.add_argument("--batch", default="1", help="batch sizes, comma-separated (default 1)")
    bench.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's default)")
    bench.add_argument("--rounds", type=int, default=7, help="end-to-end timing rounds (median; default 7)")
    bench.add_argument("--model", default=None, help="model name, for files without a training config")
    bench.add_argument("--num-classes", type=int, default=None, help="classifier outputs (default: from the weights)")
    bench.add_argument(
        "--input-shape",
        default=None,
        help="C,H,W (default: from the config's dataset, else the model's: resnet50 3,224,224)",
    )
    args = parser.parse_args(argv)
    if args.bench:
        if args.threads is not None and args.threads < 1:
            raise UserError(f"--threads must be at least 1, got {args.threads}")
        if args.rounds < 1:
            raise UserError(f"--rounds must be at least 1, got {args.rounds}")
        shape = _int_list(args.input_shape, "--input-shape") if args.input_shape else None
        if shape is not None and len(shape) != 3:
            raise UserError(f"--input-shape must be C,H,W (three numbers), got '{args.input_shape}'")
        if not Path(args.checkpoint).is_file():
            raise UserError(f"checkpoint not found: '{args.checkpoint}' (check the path)")
        out = run_bench(
            args.checkpoint,
            _int_list(args.batch, "--batch"),
            args.threads,
            args.rounds,
            args.model,
            args.num_classes,
            shape,
        )
        if args.export:
            out["export"] = export_checkpoint(args.checkpoint, args.export)
        print(json.dumps(out, indent=2) if args.json else format_bench(out))
    elif args.json:
        out = checkpoint_sparsity(args.checkpoint)
        if args.export:
            out["export"] = export_checkpoint(args.checkpoint, args.export)
        print(json.dumps(out, indent=2))
    else:
        print(format_table(checkpoint_layers(args.checkpoint)))
        if args.export:
            print(describe_export(export_checkpoint(args.checkpoint, args.export)))


def main(argv: Optional[List[str]] = None) -> int:
    """The command line; a UserError prints one line and returns 2."""
    return cli_main(_main, argv)


if __name__ == "__main__":
    sys.exit(main())

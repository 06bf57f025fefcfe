"""End-to-end timing of a dense model against its sparse runtime (eval_sparsity --bench and the bench script use it)."""

from __future__ import annotations

import io
import time
import warnings
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from src.sparse_runtime import SparseModel
from src.sparse_runtime.plan import measure


def sparsify_uniform(model: nn.Module, fraction: float, seed: int = 0) -> nn.Module:
    """Zero exactly round(fraction * n) uniformly random entries of every Conv2d / Linear weight, in place."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)) and fraction > 0:
                flat = m.weight.view(-1)
                k = int(round(fraction * flat.numel()))
                flat[torch.randperm(flat.numel(), generator=g)[:k]] = 0
    return model


def randomize_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BatchNorm non-trivial statistics and affine parameters (so that folding them is exercised)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
                m.running_var.copy_(0.5 + torch.rand(n, generator=g))
                if m.weight is not None:
                    m.weight.copy_(0.5 + torch.rand(n, generator=g))
                    m.bias.copy_(0.2 * (torch.rand(n, generator=g) - 0.5))
    return model


def onnxruntime_runner(
    model: nn.Module, input_shape: Sequence[int], threads: int
) -> Tuple[Optional[Callable[[torch.Tensor], object]], str]:
    """(run(x), "") for the dense ``model`` exported to ONNX and run by onnxruntime on the CPU with ``threads``
    threads, any batch size; (None, why not) when onnx / onnxruntime are missing or the export fails. Its threads
    stop spinning when a call returns, so that they do not run beside the next backend timed."""
    try:
        import onnxruntime as ort
    except ImportError:
        return None, "onnxruntime is not installed (pip install onnx onnxruntime)"
    model = model.eval()
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model,
                (torch.zeros(1, *input_shape),),
                buffer,
                dynamo=False,
                input_names=["input"],
                output_names=["output"],
                dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
            )
    except Exception as e:  # no onnx package, an operator ONNX lacks...
        return None, f"the ONNX export failed ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
    options = ort.SessionOptions()
    options.intra_op_num_threads = int(threads)
    options.inter_op_num_threads = 1
    # onnxruntime's pool threads spin-wait after a call by default and would take the cores from whatever is timed
    # next (dense PyTorch's ResNet-50 at batch 1 on 2 cores: 44 ms alone, 95 ms right after one onnxruntime call).
    # Stopping the spin when run() returns keeps onnxruntime's own latency (its threads still spin within a call)
    # and leaves the cores free between calls: interleaved timing stays fair to every backend.
    options.add_session_config_entry("session.force_spinning_stop", "1")
    try:
        session = ort.InferenceSession(buffer.getvalue(), options, providers=["CPUExecutionProvider"])
    except Exception as e:  # an operator or opset this onnxruntime cannot run
        return (
            None,
            f"onnxruntime cannot load the export ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})",
        )
    return (lambda x: session.run(None, {"input": x.numpy()})), ""


def layer_rows(summary: Dict[str, Any]) -> List[Dict[str, Any]]:
    """Per-layer rows of a plan: dense ms, the best sparse candidate and its ms, the choice."""
    out = []
    for r in summary["layers"]:
        ms = r.get("ms") or {}
        sparse = {c: t for c, t in ms.items() if c != "dense"}
        best = min(sparse, key=sparse.get) if sparse else None
        out.append(
            {
                "name": r["name"],
                "layer": r["layer"],
                "input": r["input"],
                "kind": r.get("kind", "layer"),
                "density": None if r["density"] is None else round(r["density"], 4),
                "dense_ms": ms.get("dense"),
                "sparse_ms": sparse.get(best) if best else None,
                "best_sparse": best,
                "choice": r["choice"],
                "why": r.get("why"),
                "ms": ms,
            }
        )
    return out


@torch.inference_mode()
def bench(
    dense: nn.Module,
    runtime: SparseModel,
    input_shape: Sequence[int],
    batches: Sequence[int],
    rounds: int = 7,
    budget_s: float = 5.0,
    seed: int = 0,
    min_sample_s: float = 0.02,
    extra: Optional[Dict[str, Callable[[torch.Tensor], object]]] = None,
) -> Dict[str, Dict[str, Any]]:
    """For each batch size: plan the runtime, then time dense vs runtime end to end (interleaved, medians; a sample
    of a call faster than ``min_sample_s`` is the mean of enough calls in a row to last that long).

    Returns {str(batch): {"dense_ms", "sparse_ms", "speedup", "dense_per_s", "sparse_per_s", "plan_s",
    "plan": "sparse"|"dense", "layers": [...], **{name + "_ms": ...} for each extra}}.
    """
    g = torch.Generator().manual_seed(seed)
    out: Dict[str, Dict[str, Any]] = {}
    dense.eval()
    for b in batches:
        x = torch.randn(int(b), *input_shape, generator=g)
        t = time.perf_counter()
        summary = runtime.plan(x)
        plan_s = time.perf_counter() - t
        fns: Dict[str, Callable[[], object]] = {"dense": lambda x=x: dense(x), "sparse": lambda x=x: runtime(x)}
        for name, fn in (extra or {}).items():
            fns[name] = lambda fn=fn, x=x: fn(x)
        info: Dict[str, Any] = {}
        ms = {
            k: 1e3 * v
            for k, v in measure(fns, rounds, budget_s, drop_factor=None, info=info, min_sample_s=min_sample_s).items()
        }
        row = {
            "dense_ms": float(f"{ms['dense']:.6g}"),
            "sparse_ms": float(f"{ms['sparse']:.6g}"),  # sub-ms latencies
            "speedup": round(ms["dense"] / ms["sparse"], 4),
            "dense_per_s": round(1e3 * b / ms["dense"], 2),
            "sparse_per_s": round(1e3 * b / ms["sparse"], 2),
            "plan_s": round(plan_s, 3),
            "plan": summary["choice"],
            "rounds": info["rounds"],
            "calls_per_sample": info["calls_per_sample"],
            "plan_sparse_ms": summary.get("sparse_ms"),
            "plan_dense_ms": summary.get("dense_ms"),
            "layers": layer_rows(summary),
        }
        for name in extra or {}:
            row[f"{name}_ms"] = float(f"{ms[name]:.6g}")
            row[f"{name}_per_s"] = round(1e3 * b / ms[name], 2)
        out[str(b)] = row
    return out

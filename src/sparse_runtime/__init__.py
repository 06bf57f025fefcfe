"""Sparse inference on the CPU: run a gRDA model's Linear and Conv2d layers dense or sparse, whichever is faster.

    from src.sparse_runtime import load_runtime, convert
    rt = load_runtime("runs/.../checkpoint.pth")          # or a sparse export (src.sparse_export), see load_runtime
    y = rt(x)                                             # first call with a new input shape plans it (timings)

    rt = convert(model)                                   # any nn.Module holding Conv2d / Linear layers
    rt.plan(example_input)                                # optional: plan now instead of at the first call

The package, by concern (this module only re-exports their public names):

- :mod:`src.sparse_runtime.conversion`: :func:`convert`: fx rewriting (BatchNorm folding, ReLU fusion) and the
  swap of Conv2d / Linear / MaxPool2d for the layers below;
- :mod:`src.sparse_runtime.model`: :class:`SparseModel`, the runtime, and its planning (which implementation each
  operation uses for an input shape, checked end to end against the original model);
- :mod:`src.sparse_runtime.loading`: :func:`load_runtime`, :func:`build_dense_model`, :func:`load_weights`:
  checkpoints and sparse exports to a model;
- :mod:`src.sparse_runtime.layers`: the layers and their implementations (dense, direct kernel, CSR/BSR);
- :mod:`src.sparse_runtime.plan`: timing the candidates and the plan cache (``$GRDA_SPARSE_PLAN``);
- :mod:`src.sparse_runtime.kernel`: the C kernels (``spconv_cpu.c``), built once per machine;
- :mod:`src.sparse_runtime.bench`: end-to-end timing of a dense model against its runtime.
"""

from __future__ import annotations

from src.sparse_runtime import kernel as kernel
from src.sparse_runtime.conversion import convert
from src.sparse_runtime.layers import CANDIDATES, SparseConv2d, SparseLinear
from src.sparse_runtime.loading import DATA_INPUT_SHAPES as DATA_INPUT_SHAPES
from src.sparse_runtime.loading import MODEL_DATA as MODEL_DATA
from src.sparse_runtime.loading import build_dense_model, load_runtime, load_weights
from src.sparse_runtime.model import SparseModel
from src.sparse_runtime.plan import PlanCache, cache_path, machine_key

__all__ = [
    "CANDIDATES",
    "PlanCache",
    "SparseConv2d",
    "SparseLinear",
    "SparseModel",
    "cache_path",
    "convert",
    "load_runtime",
    "load_weights",
    "build_dense_model",
    "machine_key",
]

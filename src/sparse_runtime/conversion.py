"""Converting a model for the sparse runtime: :func:`convert` rewrites a copy and wraps it in a SparseModel.

What :func:`convert` does to (a copy of) the model, in eval mode:

1. traces it with ``torch.fx``; drops Identity/Dropout; folds every BatchNorm2d into the convolution before it
   (when that convolution feeds only it); fuses a ReLU into the Conv2d/Linear before it;
2. replaces each Conv2d and Linear with a :class:`~src.sparse_runtime.layers.SparseConv2d` /
   :class:`~src.sparse_runtime.layers.SparseLinear` that can run dense (PyTorch), with the direct sparse kernel
   (``spconv_cpu.c``: no im2col, the padded input read in place), or with torch's CSR/BSR tensors (MKL) in both
   orientations; each nn.MaxPool2d (without ``return_indices``) becomes a
   :class:`~src.sparse_runtime.layers.MaxPool2d` that can also pool with strided views or in C.

A model that fx cannot trace is converted module by module, without folding. The result is a
:class:`~src.sparse_runtime.model.SparseModel`, which plans each input shape (see :mod:`src.sparse_runtime.model`).
"""

from __future__ import annotations

import copy
from collections import Counter
from typing import Any, Dict, Mapping, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from src.sparse_runtime.layers import MaxPool2d, SparseConv2d, SparseLinear
from src.sparse_runtime.model import SparseModel

_IDENTITIES = (nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout)
_RELU_FUNCTIONS = (torch.relu, torch.relu_, F.relu)


def _fold_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
    """conv <- bn(conv(.)) in eval mode: scale the weights per output channel, shift the bias."""
    with torch.no_grad():
        scale = bn.running_var.add(bn.eps).rsqrt()
        if bn.weight is not None:
            scale = scale * bn.weight
        shift = -bn.running_mean * scale
        if bn.bias is not None:
            shift = shift + bn.bias
        conv.weight.mul_(scale.reshape(-1, 1, 1, 1))
        bias = shift if conv.bias is None else conv.bias * scale + shift
        conv.bias = nn.Parameter(bias.detach().clone())


def _is_relu(node: torch.fx.Node, modules: Mapping[str, nn.Module]) -> bool:
    if node.op == "call_module":
        return type(modules.get(node.target)) is nn.ReLU
    if node.op == "call_function":
        return node.target in _RELU_FUNCTIONS and len(node.args) == 1
    if node.op == "call_method":
        return node.target in ("relu", "relu_") and len(node.args) == 1
    return False


def _rewrite_graph(gm: torch.fx.GraphModule, fold_bn: bool, fuse_relu: bool) -> Tuple[int, Dict[str, bool]]:
    graph = gm.graph
    modules = dict(gm.named_modules())
    for node in list(graph.nodes):  # eval mode: identities and dropouts do nothing
        if node.op == "call_module" and isinstance(modules.get(node.target), _IDENTITIES) and len(node.args) == 1:
            node.replace_all_uses_with(node.args[0])
            graph.erase_node(node)
    uses = Counter(n.target for n in graph.nodes if n.op == "call_module")

    def sole_layer(node: Any, kinds) -> bool:
        return (
            isinstance(node, torch.fx.Node)
            and node.op == "call_module"
            and isinstance(modules.get(node.target), kinds)
            and len(node.users) == 1
            and uses[node.target] == 1
        )

    folded = 0
    if fold_bn:
        for node in list(graph.nodes):
            bn = modules.get(node.target) if node.op == "call_module" else None
            if (
                isinstance(bn, nn.BatchNorm2d)
                and bn.track_running_stats
                and bn.running_mean is not None
                and len(node.args) == 1
                and not node.kwargs
                and sole_layer(node.args[0], nn.Conv2d)
            ):
                _fold_bn(modules[node.args[0].target], bn)
                node.replace_all_uses_with(node.args[0])
                graph.erase_node(node)
                folded += 1
    relu: Dict[str, bool] = {}
    if fuse_relu:
        for node in list(graph.nodes):
            if _is_relu(node, modules) and sole_layer(node.args[0], (nn.Conv2d, nn.Linear)):
                relu[node.args[0].target] = True
                node.replace_all_uses_with(node.args[0])
                graph.erase_node(node)
    graph.lint()
    gm.recompile()
    return folded, relu


def _set_module(root: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, child, new)


def convert(
    model: nn.Module, fold_bn: bool = True, fuse_relu: bool = True, autoplan: bool = True, keep_original: bool = True
) -> SparseModel:
    """A :class:`~src.sparse_runtime.model.SparseModel` running a float32, eval-mode copy of ``model`` (``model``
    itself is untouched).

    ``keep_original``: keep a second, unconverted copy for the input shapes whose plan is not faster (see
    :mod:`src.sparse_runtime.model`).
    """
    model = copy.deepcopy(model).float().eval()
    original = copy.deepcopy(model) if keep_original else None
    info: Dict[str, Any] = {"traced": False, "folded_bn": 0, "fused_relu": 0}
    relu: Dict[str, bool] = {}
    module: nn.Module = model
    try:
        gm = torch.fx.symbolic_trace(model)
    except Exception as e:  # data-dependent control flow and the like: convert module by module
        info["trace_error"] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    else:
        module = gm
        info["traced"] = True
        info["folded_bn"], relu = _rewrite_graph(gm, fold_bn, fuse_relu)
        info["fused_relu"] = len(relu)
    for name, m in list(module.named_modules()):
        if isinstance(m, nn.Conv2d) and type(m) is nn.Conv2d:
            _set_module(module, name, SparseConv2d.from_module(m, relu=relu.get(name, False), name=name))
        elif isinstance(m, nn.Linear) and type(m) is nn.Linear:
            _set_module(module, name, SparseLinear.from_module(m, relu=relu.get(name, False), name=name))
        elif type(m) is nn.MaxPool2d and not m.return_indices:
            _set_module(module, name, MaxPool2d.from_module(m, name=name))
    return SparseModel(module, info, autoplan=autoplan, original=original).eval()

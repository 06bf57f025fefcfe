"""How sparse a model is: exact zeros, counted for plain tensors and for DTensors (FSDP2, tensor parallelism).

A DTensor's zeros are counted on each rank's local shard and summed with one all-reduce of the counts per device
mesh (never a gather of the weights); a replicated placement is counted once. Under ``torch.distributed`` every
rank must call these functions together (they are collectives when DTensors are involved), and every rank gets the
same answer. Plain tensors are counted where they are (replicas, as under DDP, are alike on every rank).

    import grda
    grda.sparsity(model)            # 0.87: the fraction of exact zeros over the trainable parameters
    grda.layer_sparsity(model)      # {"conv1.weight": 0.91, "fc.bias": 0.0, ...}
"""

from __future__ import annotations

from typing import Dict, Iterable, List, Mapping, Tuple, Union

import torch
from torch import Tensor, nn

from grda._dtensor import dtensor_type, local_tensor

__all__ = ["zero_counts", "sparsity", "global_sparsity", "layer_sparsity"]

Tensors = Union[nn.Module, Mapping[str, Tensor], Iterable[Tensor], Iterable[Tuple[str, Tensor]]]


def _named(source: Tensors, trainable_only: bool) -> List[Tuple[str, Tensor]]:
    if isinstance(source, nn.Module):
        return [(n, p) for n, p in source.named_parameters() if p.requires_grad or not trainable_only]
    if isinstance(source, Mapping):
        return list(source.items())
    named = []
    for i, item in enumerate(source):
        if isinstance(item, Tensor):
            named.append((str(i), item))
        else:
            name, t = item
            named.append((str(name), t))
    return named


def zero_counts(source: Tensors, *, trainable_only: bool = True) -> Dict[str, Tuple[int, int]]:
    """``name -> (exact zeros, entries)`` of each tensor, over the whole tensor even when it is a sharded DTensor.

    ``source``: a module (its parameters; only those with ``requires_grad`` unless ``trainable_only=False``), a
    mapping name -> tensor (e.g. a state_dict), or an iterable of tensors or (name, tensor) pairs. ``-0.0`` counts
    as a zero, NaN does not.
    """
    named = _named(source, trainable_only)
    dtensor = dtensor_type()
    counts: Dict[str, Tuple[int, int]] = {}
    pending: Dict[int, tuple] = {}  # id(mesh) -> (mesh, names, local zero counts)
    local_counts: List[Tuple[str, Tensor, int]] = []  # plain tensors: (name, zeros, entries)
    for name, t in named:
        t = t.detach()
        if dtensor is not None and isinstance(t, dtensor):
            local = local_tensor(t)
            mesh = t.device_mesh
            coordinate = mesh.get_coordinate()
            # a rank counts its shard only if it is the first holder of it along every dimension not sharded
            owner = coordinate is not None and all(
                coordinate[d] == 0 for d, placement in enumerate(t.placements) if not placement.is_shard()
            )
            zeros = local.numel() - torch.count_nonzero(local) if owner else local.new_zeros((), dtype=torch.int64)
            entry = pending.setdefault(id(mesh), (mesh, [], []))
            entry[1].append((name, t.numel()))
            entry[2].append(zeros)
        else:
            local_counts.append((name, t.numel() - torch.count_nonzero(t), t.numel()))
    for mesh, names, zeros in pending.values():
        total = torch.stack(zeros)  # one all-reduce of the counts per mesh
        _all_reduce_over_mesh(total, mesh)
        for (name, numel), z in zip(names, total.tolist()):
            counts[name] = (int(z), numel)
    if local_counts:  # one device-to-host copy, not one per tensor
        device = local_counts[0][1].device
        values = torch.stack([z.to(device) for _, z, _ in local_counts]).tolist()
        for (name, _, numel), z in zip(local_counts, values):
            counts[name] = (int(z), numel)
    return {name: counts[name] for name, _ in named}


def _all_reduce_over_mesh(t: Tensor, mesh) -> None:
    """Sum ``t`` over all ranks of ``mesh``: one all-reduce per mesh dimension."""
    import torch.distributed as dist

    for d in range(mesh.ndim):
        dist.all_reduce(t, op=dist.ReduceOp.SUM, group=mesh.get_group(d))


def sparsity(source: Tensors, *, trainable_only: bool = True) -> float:
    """The fraction of exact zeros (0 to 1) over all entries of ``source`` (see :func:`zero_counts`); 0.0 if empty."""
    counts = zero_counts(source, trainable_only=trainable_only).values()
    zeros, total = sum(z for z, _ in counts), sum(n for _, n in counts)
    return zeros / total if total else 0.0


global_sparsity = sparsity


def layer_sparsity(source: Tensors, *, trainable_only: bool = True) -> Dict[str, float]:
    """``name -> fraction of exact zeros`` for each tensor (parameter) of ``source``; empty tensors give 0.0."""
    return {name: z / n if n else 0.0 for name, (z, n) in zero_counts(source, trainable_only=trainable_only).items()}

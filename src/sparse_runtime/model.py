"""The runtime model: :class:`SparseModel` runs a converted model and plans each input shape it sees.

:meth:`SparseModel.plan` times every candidate of every layer on the layer's real input (interleaved; the fastest
of several runs, since interference from other processes only adds time),
keeps the fastest (dense unless a sparse one is 3 % faster), then times the whole model planned against the
original model (an untouched eval-mode copy, plain PyTorch) and keeps the plan only if it is faster end to end
(folded BatchNorms and the C pooling can win with no zeros at all); an input shape whose plan is slower runs the
original model, so the runtime is never slower than PyTorch by more than the timing noise (the copy costs the memory
of the weights once more; ``convert(keep_original=False)`` saves it, runs such shapes through the converted layers,
dense, and times the plan against those only when some operation went sparse). Choices are cached per machine,
thread count,
layer, sparsity pattern and input shape (:mod:`src.sparse_runtime.plan`, ``$GRDA_SPARSE_PLAN``); a layer without
zeros is dense without timing.

Threads: planned shapes may run from several Python threads at once (the layers keep one work buffer per calling
thread); planning (a new shape's first call, :meth:`SparseModel.plan`) must not overlap other calls.

A :class:`SparseModel` comes from :func:`src.sparse_runtime.conversion.convert` (or
:func:`src.sparse_runtime.loading.load_runtime`).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from src.sparse_runtime.layers import PlannedOp, SparseLayer, total_macs
from src.sparse_runtime.plan import MARGIN, PlanCache, choose, layer_key, machine_key, measure, model_key


class SparseModel(nn.Module):
    """A converted model; see the module docstring. ``forward`` plans a new input shape first (``autoplan``)."""

    def __init__(
        self, module: nn.Module, info: Dict[str, Any], autoplan: bool = True, original: Optional[nn.Module] = None
    ) -> None:
        super().__init__()
        self.module = module
        self.original = original  # the model before conversion: what an input shape planned "dense" runs
        self.info = info  # what convert did: traced, folded, fused
        self.autoplan = autoplan
        self.cache_enabled = True
        self.cache_file: Optional[Path] = None
        self.planned: Dict[Tuple, Dict[str, Any]] = {}  # (input shape, threads) -> the plan's summary
        self._routes: Dict[Tuple, nn.Module] = {}  # (input shape, threads) -> the model that runs it

    def sparse_layers(self) -> List[Tuple[str, SparseLayer]]:
        return [(name, m) for name, m in self.module.named_modules() if isinstance(m, SparseLayer)]

    def planned_ops(self) -> List[Tuple[str, PlannedOp]]:
        """The sparse layers and the other operations with a choice of implementation (max pooling)."""
        return [(name, m) for name, m in self.module.named_modules() if isinstance(m, PlannedOp)]

    def forward(self, x: Tensor) -> Tensor:
        # The per-call cost matters for models that take ~0.05 ms: one dict lookup (torch.Size hashes as a tuple).
        route = self._routes.get((x.shape, torch.get_num_threads()))
        if route is None:
            if self.autoplan:
                self.plan(x)
                return self._routes[(x.shape, torch.get_num_threads())](x)
            return self.module(x)
        return route(x)

    def run_dense(self, x: Tensor) -> Tensor:
        """The model all dense: the original when kept, else the converted layers forced dense."""
        return self.original(x) if self.original is not None else self.run_all(x, "dense")

    def run_all(self, x: Tensor, candidate: Optional[str]) -> Tensor:
        """One forward with every sparse layer forced to ``candidate`` (where it can run it; None: the plan)."""
        layers = [m for _, m in self.sparse_layers()]
        saved = [m.force for m in layers]
        try:
            for m in layers:
                m.force = candidate if candidate is None or m.supports(candidate) else "dense"
            return self.module(x)
        finally:
            for m, f in zip(layers, saved):
                m.force = f

    @torch.no_grad()
    def capture_inputs(self, x: Tensor) -> List[Tuple[str, PlannedOp, Tensor]]:
        """Every planned operation's input in one forward of ``x`` with dense layers (a copy of each)."""
        seen: List[Tuple[str, PlannedOp, Tensor]] = []
        hooks = []
        for name, m in self.planned_ops():

            def hook(mod, args, name=name):
                seen.append((name, mod, args[0].detach().clone()))

            hooks.append(m.register_forward_pre_hook(hook))
        try:
            self.run_all(x, "dense")
        finally:
            for h in hooks:
                h.remove()
        return seen

    @torch.no_grad()
    def plan(
        self,
        x: Tensor,
        rounds: int = 7,
        budget_s: float = 0.2,
        e2e_rounds: int = 7,
        e2e_budget_s: float = 3.0,
        cache: Optional[PlanCache] = None,
    ) -> Dict[str, Any]:
        """Choose each operation's implementation for inputs shaped like ``x`` (see the module docstring).

        Returns ``{"choice": "sparse"|"dense", "sparse_ms", "dense_ms", "layers": [...]}``: the end-to-end
        times of the planned model and of the model all dense (:meth:`run_dense`; None when not timed), and a row
        per call of a planned operation. "dense": inputs of this shape run :meth:`run_dense`.
        """
        threads = torch.get_num_threads()
        cache = cache if cache is not None else PlanCache(self.cache_file, enabled=self.cache_enabled)
        machine = machine_key(threads)
        rows, keys = [], []
        for name, op, inp in self.capture_inputs(x):
            key = layer_key(machine, op.signature(), op.relu, op.pattern, inp.shape)
            keys.append(key)
            entry = _cached_or_timed_choice(op, inp, threads, cache, key, rounds, budget_s)
            op.set_choice(inp.shape, threads, entry["choice"])
            rows.append({**_layer_row(name, op, inp), **entry})
        summary: Dict[str, Any] = {"choice": "dense", "sparse_ms": None, "dense_ms": None, "layers": rows}
        # Against the original model even the all-dense plan can win (folded BatchNorms, fused ReLUs, pooling):
        # timed whenever the two differ; against the converted layers forced dense, only when some op changed.
        if self.original is not None or any(r["choice"] != "dense" for r in rows):
            entry = self._end_to_end(x, keys, machine, cache, e2e_rounds, e2e_budget_s)
            summary.update(entry)
            if entry["choice"] == "dense":  # the plan is slower end to end: every op dense for this shape
                self._set_all_dense(rows, threads)
        cache.save()
        for _, m in self.planned_ops():
            m.drop_unused()
        self._record(tuple(x.shape), threads, summary)
        return summary

    def _end_to_end(
        self, x: Tensor, keys: Sequence[str], machine: str, cache: PlanCache, rounds: int, budget_s: float
    ) -> Dict[str, Any]:
        """The planned model against the model all dense, on ``x``: cached, else timed (and cached)."""
        reference = "original" if self.original is not None else "converted"  # what "dense" runs
        mkey = (
            model_key(keys, x.shape) + f" | {machine} | dense = {reference} | folded "
            f"{self.info.get('folded_bn', 0)} fused {self.info.get('fused_relu', 0)}"
        )
        entry = cache.get(mkey)
        if entry is None:
            fns = {"sparse": lambda: self.run_all(x, None), "dense": lambda: self.run_dense(x)}
            ms = {
                c: 1e3 * t
                for c, t in measure(
                    fns, rounds, budget_s, drop_factor=None, warmup=False, stat="min", min_sample_s=0.01
                ).items()
            }
            choice = "sparse" if ms["sparse"] < ms["dense"] * MARGIN else "dense"
            entry = {"choice": choice, "sparse_ms": round(ms["sparse"], 4), "dense_ms": round(ms["dense"], 4)}
            cache.put(mkey, entry)
        return entry

    def _set_all_dense(self, rows: Sequence[Dict[str, Any]], threads: int) -> None:
        """Every planned call in ``rows`` runs dense (the plan lost end to end)."""
        modules = dict(self.module.named_modules())
        for r in rows:
            modules[r["name"]].set_choice(r["input"], threads, "dense")

    def _record(self, shape: Tuple[int, ...], threads: int, summary: Dict[str, Any]) -> None:
        """Remember the plan of inputs shaped ``shape`` and route them: the original model when it lost."""
        shape_key = (shape, threads)
        self.planned[shape_key] = summary
        dense = summary["choice"] == "dense" and self.original is not None
        self._routes[shape_key] = self.original if dense else self.module


# ------------------------------------------------------------------------------ planning one operation


def _cached_or_timed_choice(
    op: PlannedOp, inp: Tensor, threads: int, cache: PlanCache, key: str, rounds: int, budget_s: float
) -> Dict[str, Any]:
    """The cached choice of ``op`` on ``inp`` when it is still a candidate, else a new one (cached)."""
    entry = cache.get(key)
    cands = op.candidates(inp)
    if entry is None or entry.get("choice") not in cands:
        entry = _choose_op(op, inp, cands, threads, rounds, budget_s)
        cache.put(key, entry)
    return entry


def _choose_op(
    op: PlannedOp, inp: Tensor, cands: List[str], threads: int, rounds: int, budget_s: float
) -> Dict[str, Any]:
    """``{"choice", "ms"[, "why"]}``: dense without timing when nothing else can win, else the fastest candidate."""
    if isinstance(op, SparseLayer) and op.nnz == op.weight.numel():
        return {"choice": "dense", "ms": {}, "why": "no zeros"}
    if len(cands) == 1:
        return {"choice": "dense", "ms": {}, "why": "no other implementation for this input"}
    if inp.dim() > 1 and inp.shape[0] > 1 and len(cands) > 2:
        cands = _screen_on_one_sample(op, inp, cands, budget_s)
    # Timed as they will run: through the runners that set_choice binds.
    fns = {c: functools.partial(op.runner(tuple(inp.shape), threads, c), inp) for c in cands}
    ms = {c: 1e3 * t for c, t in measure(fns, rounds, budget_s, stat="min").items()}
    return {"choice": choose(ms), "ms": {c: round(t, 4) for c, t in ms.items()}}


def _screen_on_one_sample(op: PlannedOp, inp: Tensor, cands: List[str], budget_s: float) -> List[str]:
    """The candidates worth a full-batch run: dense, and those at most 3x slower than the best on one sample."""
    one = inp[:1]
    probe = measure(
        {c: (lambda c=c, op=op, one=one: op.run(one, c)) for c in cands},
        3,
        budget_s / 4,
        drop_factor=None,
        stat="min",
    )
    return [c for c in cands if c == "dense" or probe[c] <= 3 * min(probe.values())]


def _layer_row(name: str, op: PlannedOp, inp: Tensor) -> Dict[str, Any]:
    """The plan summary's description of one call of ``op`` (its choice and times are added to it)."""
    row = {
        "name": name,
        "kind": op.kind,
        "layer": op.signature(),
        "relu": op.relu,
        "input": list(inp.shape),
        "density": None,
        "macs": 0,
        "nonzero_macs": 0,
    }
    if isinstance(op, SparseLayer):
        dense_macs, sparse_macs = total_macs(op, tuple(inp.shape))
        row.update(density=op.density, macs=dense_macs, nonzero_macs=sparse_macs)
    return row

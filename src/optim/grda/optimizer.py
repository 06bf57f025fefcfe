r"""gRDA: generalized regularized dual averaging (Chao, Wang, Xing & Cheng, NeurIPS 2020).

Trains a dense network and ends with a sparse one ("directional pruning").
"""

from __future__ import annotations

import math
import warnings
from collections import defaultdict
from typing import Callable, Dict, Iterable, List, Optional, Tuple

import torch
from torch import Tensor
from torch.optim import Optimizer

from grda import cpu_kernel, cuda_kernel, defaults
from grda._dtensor import dtensor_type, local_tensor
from grda._validation import check_accumulator_start, check_c_mu, check_lr

__all__ = [
    "GRDA",
    "threshold_increment",
    "closed_form_threshold",
    "soft_threshold",
    "uniform_accumulator",
    "accumulator_dtype_of",
]

IMPLEMENTATIONS = ("auto", "fused", "compiled", "foreach", "reference")
# "fp32": bf16/fp16 parameters keep a float32 accumulator (wider dtypes keep their own); "param": the parameter's dtype.
ACCUMULATOR_DTYPES = ("fp32", "param")
# Where no fused kernel runs, "auto" compiles the update for parameter sets at least this large (a one-off
# compile of ~40 s on 2 CPU cores, a few seconds with a warm inductor cache, against days of training).
COMPILE_MIN_NUMEL = 5_000_000
# Fused-kernel plans an optimizer keeps per parameter group (one per set of tensors updated together: normally one
# per group; a parameter that missed steps makes a second). The oldest goes when a group needs another.
MAX_PLANS_PER_GROUP = 4


def threshold_increment(step: int, lr: float, c: float, mu: float) -> float:
    r"""Growth of the soft threshold at the ``step``-th update (``step`` counts from 1).

    :math:`\Delta\tau_n = c\,\gamma^{\mu+1/2}\,(n^\mu - (n-1)^\mu)`, written as the authors wrote it.
    """
    scale = c * lr ** (mu + 0.5)
    return scale * step**mu - scale * (step - 1) ** mu


def closed_form_threshold(step: int, lr: float, c: float, mu: float) -> float:
    r""":math:`\tau_n = c\sqrt{\gamma}\,(n\gamma)^\mu`: the threshold after ``step`` updates at constant lr."""
    return c * math.sqrt(lr) * (step * lr) ** mu


def accumulator_dtype_of(param_dtype: torch.dtype, option: str = "fp32") -> torch.dtype:
    """The dtype of a parameter's accumulator: float32 for a parameter narrower than 32 bits (bf16, fp16) under
    ``option="fp32"``; otherwise the parameter's own (fp32 and fp64 parameters always keep theirs)."""
    if option == "fp32" and param_dtype.is_floating_point and param_dtype.itemsize < 4:
        return torch.float32
    return param_dtype


def soft_threshold(x: Tensor, tau: float) -> Tensor:
    r""":math:`S_\tau(x) = \mathrm{sign}(x)\max(|x| - \tau, 0)`, literally (the reference formula), zeros +0.0.

    ``sign(x) * 0`` is ``-0.0`` for negative ``x``; adding ``+0.0`` turns it into ``+0.0`` (IEEE 754: -0 + +0 = +0
    when rounding to nearest) and leaves every other value, NaN included, as it is. Every implementation of GRDA
    writes pruned weights as ``+0.0``.
    """
    return torch.sign(x) * torch.clamp(x.abs() - tau, min=0) + 0.0


class _StateDict(defaultdict):
    """``Optimizer.state`` that counts the changes to which dict is whose, so that GRDA may cache the lookups."""

    def __init__(self, items=()) -> None:
        super().__init__(dict, items)
        self.version = 0

    def __reduce__(self):  # pickles as the plain defaultdict that torch.optim expects
        return defaultdict, (dict, dict(self))

    def _changed(method):
        def changing(self, *args, **kwargs):
            self.version += 1
            return method(self, *args, **kwargs)

        return changing

    __setitem__ = _changed(defaultdict.__setitem__)  # also how a missing key is filled in
    __delitem__ = _changed(defaultdict.__delitem__)
    __ior__ = _changed(defaultdict.__ior__)
    pop = _changed(defaultdict.pop)
    popitem = _changed(defaultdict.popitem)
    clear = _changed(defaultdict.clear)
    update = _changed(defaultdict.update)
    setdefault = _changed(defaultdict.setdefault)
    del _changed


class _Held:
    """A saved accumulator passed through ``Optimizer.load_state_dict`` as it is: torch casts every floating-point
    state tensor to its parameter's dtype, which would round the float32 accumulator of a bf16 parameter."""

    __slots__ = ("tensor",)

    def __init__(self, tensor: Tensor) -> None:
        self.tensor = tensor


class _FastPaths:
    """What one optimizer caches to make its steps cheap; never pickled, copied or shared with another optimizer.

    ``groups``: per parameter group (by id), the group's parameter list, the state dicts of its parameters and which
    parameters are DTensors, looked up once. ``plans``: per group, the fused kernels' plans keyed by the tensors'
    addresses. ``compiled``, ``compile_failed``, ``scalars``: the ``torch.compile``d update and its 0-d lr/tau inputs.
    """

    def __init__(self) -> None:
        self.groups: Dict[int, tuple] = {}
        self.plans: Dict[int, Dict[tuple, "_Plan"]] = {}
        self.compiled: Optional[Callable] = None
        self.compile_failed = False
        self.scalars: Dict[Tuple[torch.device, torch.dtype], Tuple[Tensor, Tensor]] = {}


class GRDA(Optimizer):
    r"""Generalized regularized dual averaging, the optimizer behind directional pruning.

    For every parameter :math:`w` it keeps an accumulator :math:`a` that starts as a copy of
    the parameter's value at its first step, :math:`a_0 = w_0` (or, with
    ``accumulator_init="uniform"``, as a random draw; see below). At the parameter's :math:`n`-th
    step, with learning rate :math:`\gamma` and gradient :math:`g_n`:

    .. math::
        a_n    &= a_{n-1} - \gamma\, g_n \\
        \tau_n &= \tau_{n-1} + c\,\gamma^{\mu + 1/2}\,\bigl(n^\mu - (n-1)^\mu\bigr), \qquad \tau_0 = 0 \\
        w_n    &= S_{\tau_n}(a_n) = \mathrm{sign}(a_n)\,\max(|a_n| - \tau_n,\ 0)

    With a constant learning rate the threshold is the paper's closed form
    :math:`\tau_n = c\sqrt{\gamma}\,(n\gamma)^\mu`, so :math:`w_n = S_{\tau_n}(w_0 - \gamma\sum_k g_k)`.
    When a scheduler changes ``param_group['lr']``, :math:`\tau` keeps what it has accumulated
    and grows at the new rate from then on; it is never recomputed. Entries whose accumulator
    lies within :math:`[-\tau, \tau]` are exactly zero, and always ``+0.0`` (never ``-0.0``), in every
    implementation. With ``c = 0`` the update is plain SGD (no momentum, no weight decay). The rule
    is the authors' PyTorch implementation.

    Args:
        params: iterable of parameters or dicts defining parameter groups; each group may set
            its own ``lr``, ``c`` and ``mu`` (``c = 0`` for a group trains it as plain SGD: it is never pruned).
        lr: learning rate :math:`\gamma` (> 0; default 0.01). Use what works for SGD *without* momentum on
            the same model, scaled linearly with the batch size.
        c: threshold scale (>= 0; default 0.005). Small: :math:`0 < c \le 0.005` in the paper's experiments.
            Larger ``c`` gives a sparser network, with most of its effect early in training.
        mu: threshold growth exponent (> 0; default 0.51). The theory covers :math:`0.5 < \mu < 1`; the
            authors recommend :math:`\mu \in \{0.501, 0.51, 0.55\}`. Larger ``mu`` gives a
            sparser network. Values outside (0.5, 1) are allowed with a warning (the authors'
            own figures use 0.3 and 1.0).
        weight_decay: accepted so that training stacks which pass it (timm, Hugging Face) can build GRDA, but only
            ``0`` (the default), in every group: GRDA recomputes the weights from the accumulator at every step, so
            a decay of the weights would be overwritten. Its regularizer is the soft threshold: raise ``c``. Any
            other value raises ``ValueError``.
        impl: ``"auto"`` (default: ``"fused"`` where a fused kernel runs, i.e. fp32 on the CPU and
            fp32/bf16/fp16 on CUDA; else ``"compiled"`` for fp32/bf16 parameter sets of 5M+ entries;
            else ``"foreach"``), ``"fused"`` (hand-written kernels, one pass over memory: on the CPU
            ``grda_cpu.c``, built on first use with the system C compiler, streaming stores for the
            weights, PyTorch's OpenMP threads, bit-identical to ``"reference"`` on x86-64 with
            AVX2/FMA; on CUDA one Triton launch for all tensors; tensors a kernel cannot take, and
            machines without a compiler or Triton, go through ``"foreach"``), ``"compiled"`` (the
            update fused by ``torch.compile`` into one pass per tensor; falls back to ``"foreach"``
            with a warning where it cannot compile), ``"foreach"`` (one multi-tensor accumulate,
            then one soft threshold per tensor; equal to ``"reference"``) or ``"reference"`` (the
            literal per-parameter formula, for checking).
        accumulator_init: where the accumulator starts. ``"weights"`` (default): :math:`a_0 = w_0`,
            the paper's rule and the authors' later code. ``"uniform"``: :math:`a_0 \sim
            U(-r, r)` for every parameter, biases included, whatever the model's initial weights
            (they only shape the first gradient): the rule of the authors' Keras optimizer at
            the time of their CIFAR-10 CNN figure (``random_uniform(-0.1, 0.1, seed=123)``, changed
            in their commit "Change initialization of accumulator (Keras)"). Starting larger than
            a Glorot initialisation, weights then fall below the threshold later.
        accumulator_range: :math:`r` (> 0) for ``"uniform"``; the authors used 0.1.
        accumulator_seed: seed of the ``"uniform"`` draw. The parameter at position :math:`i` of
            the optimizer (counting through all groups) draws
            ``(2 * torch.rand(shape, generator=torch.Generator().manual_seed(seed + i)) - 1) * r``
            in float32 on the CPU, then takes its accumulator's dtype and its parameter's device and
            layout, so the start is the same on every device, implementation and thread count (and,
            for a DTensor parameter, each rank keeps its shard of the same draw).
        accumulator_dtype: the dtype of the accumulators of bf16 and fp16 parameters. ``"fp32"``
            (default): float32. :math:`a` is accumulated in float32 and :math:`w = S_\tau(a)` is
            rounded to the parameter's dtype at every step, so a low-precision model trains like its
            float32 twin. fp32 and fp64 parameters always keep an accumulator of their own dtype.
            ``"param"``: the parameter's dtype, for half the state memory (2 bytes per bf16/fp16
            parameter instead of 4). Its risk: an update :math:`\gamma g` smaller than half a unit in
            the last place of the accumulator is rounded away. bf16 keeps 8 significant bits: next
            to 0.05 one ulp is 2.4e-4, so at lr 2e-3 every gradient below 0.06 leaves the weight
            where it is, and training stalls above the float32 loss.

    Tuning, as the authors advise: fix ``mu`` (e.g. 0.51), then search for the largest ``c``
    that keeps the test accuracy of a c = 0 run after 1–5 epochs.

    State per parameter: ``accumulator`` (a tensor shaped and laid out like the parameter: the only
    extra buffer; float32 for a bf16/fp16 parameter unless ``accumulator_dtype="param"``; a DTensor
    with the parameter's placements when the parameter is one, e.g. under FSDP2's ``fully_shard``),
    ``step`` (int) and ``tau`` (float). Both scalars live on the host, so a step makes no
    host-device synchronisation. ``state_dict()`` / ``load_state_dict()`` resume bit-identically;
    loading keeps each accumulator in the dtype its group's ``accumulator_dtype`` names (torch
    would cast it to the parameter's), and refuses, before changing anything, a state dict whose
    accumulators do not have their parameters' shapes. ``self.state`` exists from construction
    (``step()`` never replaces it, so a step compiled by ``torch.compile`` keeps its state). What the
    fast paths cache (kernel plans, the compiled update) belongs to the optimizer instance and is
    neither pickled nor copied.

    Example:
        >>> opt = GRDA(model.parameters(), lr=0.005, c=0.005, mu=0.51)
        >>> loss_fn(model(x), y).backward()
        >>> opt.step()
    """

    def __init__(
        self,
        params: Iterable,
        lr: float = defaults.LR,
        c: float = defaults.C,
        mu: float = defaults.MU,
        *,
        weight_decay: float = 0.0,
        impl: str = "auto",
        accumulator_init: str = "weights",
        accumulator_range: float = 0.1,
        accumulator_seed: int = 123,
        accumulator_dtype: str = "fp32",
    ) -> None:
        if impl not in IMPLEMENTATIONS:
            raise ValueError(f"GRDA impl must be one of {IMPLEMENTATIONS}, got {impl!r}")
        self._fast = _FastPaths()
        group_defaults = dict(
            lr=lr,
            c=c,
            mu=mu,
            weight_decay=weight_decay,
            impl=impl,
            accumulator_init=accumulator_init,
            accumulator_range=accumulator_range,
            accumulator_seed=accumulator_seed,
            accumulator_dtype=accumulator_dtype,
        )
        super().__init__(params, group_defaults)  # sets self.state: a _StateDict (see __setattr__)

    def __setattr__(self, name: str, value) -> None:
        """``self.state`` is always a ``_StateDict``, from construction on, whoever assigns it: ``step()`` never
        replaces it (an attribute replaced inside a step that ``torch.compile`` traces would be lost)."""
        if name == "state" and not isinstance(value, _StateDict):
            value = _StateDict(value)
        super().__setattr__(name, value)

    def add_param_group(self, param_group: dict) -> None:
        """``Optimizer.add_param_group``, after checking the group's hyperparameters: a group that fails is not
        added."""
        if isinstance(param_group, dict):  # torch raises the TypeError for anything else
            _validate_hyperparameters({**self.defaults, **param_group})
        super().add_param_group(param_group)

    def load_state_dict(self, state_dict: dict) -> None:
        """``Optimizer.load_state_dict``, with two differences. Before it changes anything it checks that every saved
        accumulator has its parameter's shape (``ValueError`` if not: the state dict of another model, or of groups in
        another order). And each accumulator takes the dtype its group's ``accumulator_dtype`` names, not the
        parameter's: a float32 accumulator of a bf16 parameter stays float32, bit for bit, and the bf16 accumulator of
        an older state dict becomes float32 (exactly). A saved group without ``accumulator_dtype`` takes this
        optimizer's."""
        handle = self.register_load_state_dict_pre_hook(_hold_accumulators)  # after the user's pre-hooks
        try:
            super().load_state_dict(state_dict)
        finally:
            handle.remove()

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        if "_fast" not in self.__dict__:  # unpickled or deep-copied: caches of its own
            self._fast = _FastPaths()
        self.state = self.__dict__["state"]  # through __setattr__: a _StateDict
        for group in self.param_groups:
            group.setdefault("weight_decay", 0.0)
            group.setdefault("impl", "auto")
            group.setdefault("accumulator_init", "weights")
            group.setdefault("accumulator_range", 0.1)
            group.setdefault("accumulator_seed", 123)
            group.setdefault("accumulator_dtype", "fp32")
            for p in group["params"]:  # accumulators passed through load_state_dict by _hold_accumulators
                entry = self.state.get(p)
                if entry and isinstance(entry.get("accumulator"), _Held):
                    target = accumulator_dtype_of(p.dtype, group["accumulator_dtype"])
                    entry["accumulator"] = entry["accumulator"].tensor.to(device=p.device, dtype=target)

    @torch.no_grad()
    def step(self, closure: Optional[Callable[[], float]] = None):
        """Perform one gRDA update on every parameter that has a gradient."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, c, mu = group["lr"], group["c"], group["mu"]
            for tau, (params, grads, accumulators) in self._advance_group(group, lr, c, mu).items():
                impl = _resolve_impl(group["impl"], params)
                if impl == "fused":
                    self._fused_update(group, params, grads, accumulators, lr=lr, tau=tau)
                elif impl == "compiled":
                    self._compiled_update(params, grads, accumulators, lr=lr, tau=tau)
                else:
                    _UPDATES[impl](params, grads, accumulators, lr=lr, tau=tau)
        return loss

    def _advance_group(
        self, group: dict, lr: float, c: float, mu: float
    ) -> Dict[float, Tuple[List[Tensor], List[Tensor], List[Tensor]]]:
        """Advance step and threshold of each parameter with a gradient; bucket them by threshold.

        Parameters normally share one step count, hence one bucket; a parameter that missed
        steps (its grad was None) gets a bucket of its own. DTensor parameters (FSDP2, tensor
        parallelism) enter as their local shards: the update is elementwise.
        """
        buckets: Dict[float, Tuple[List[Tensor], List[Tensor], List[Tensor]]] = {}
        increments: Dict[int, float] = {}  # one threshold increment per distinct step count, not per parameter
        states, is_dtensor = self._group_states(group)
        for i, (p, state) in enumerate(zip(group["params"], states)):
            grad = p.grad
            if grad is None:
                continue
            if not state:
                if grad.is_sparse:  # a parameter's gradients are sparse from its first step on (sparse embeddings)
                    raise ValueError("GRDA does not support sparse gradients; use dense gradients")
                state["accumulator"] = self._initial_accumulator(group, i, p)
                state["step"] = 0
                state["tau"] = 0.0
            step = state["step"] = state["step"] + 1
            if step not in increments:
                increments[step] = threshold_increment(step, lr, c, mu)
            tau = state["tau"] = state["tau"] + increments[step]
            bucket = buckets.get(tau)
            if bucket is None:
                bucket = buckets[tau] = ([], [], [])
            accumulator = state["accumulator"]
            if is_dtensor[i]:
                p, grad, accumulator = _local_shards(p, grad, accumulator)
            bucket[0].append(p)
            bucket[1].append(grad)
            bucket[2].append(accumulator)
        return buckets

    def _initial_accumulator(self, group: dict, index_in_group: int, p: Tensor) -> Tensor:
        dtype = accumulator_dtype_of(p.dtype, group["accumulator_dtype"])
        if group["accumulator_init"] == "weights":
            return p.detach().to(dtype=dtype, memory_format=torch.preserve_format, copy=True)
        index = index_in_group
        for other in self.param_groups:
            if other is group:
                break
            index += len(other["params"])
        return uniform_accumulator(p, group["accumulator_range"], group["accumulator_seed"] + index, dtype=dtype)

    def _group_states(self, group: dict) -> Tuple[List[dict], List[bool]]:
        """The state dicts of a group's parameters, in order, and which parameters are DTensors: looked up once, not
        every step (hashing a tensor runs Python code: ~16 us a step for ResNet-50's 161 tensors, and on a GPU the
        step is mostly such host work).

        Looked up again whenever ``self.state`` is replaced (``load_state_dict``), gains, loses or replaces an entry,
        or the group's parameter list changes. ``self.state`` is a ``_StateDict`` (see ``__setattr__``)."""
        state = self.state
        cache = self._fast.groups
        params = group["params"]
        entry = cache.get(id(group))
        if entry is None or entry[0] is not params or entry[1] is not state or entry[2] != (len(params), state.version):
            states = [state[p] for p in params]  # creates the (empty) state of new parameters
            dtensor = dtensor_type()
            is_dtensor = [dtensor is not None and isinstance(p, dtensor) for p in params]
            entry = cache[id(group)] = (params, state, (len(params), state.version), states, is_dtensor)
        return entry[3], entry[4]

    def _fused_update(
        self,
        group: dict,
        params: List[Tensor],
        grads: List[Tensor],
        accumulators: List[Tensor],
        *,
        lr: float,
        tau: float,
    ) -> None:
        """The hand-written kernels for every tensor they take, ``foreach`` for the rest.

        CPU: dense fp32 through grda_cpu.c (bf16/fp16 through foreach). CUDA: fp32/bf16/fp16, with an accumulator of
        the parameter's dtype or float32, through one Triton launch per (device, dtypes).
        Which tensor goes where, and the kernels' address tables, are worked out once per set of tensors and reused
        while the parameters and accumulators keep their addresses and the gradients their sizes and layouts: checking
        each tensor on every step would cost more host time than a GPU spends on the whole update. The plans are the
        group's own (at most ``MAX_PLANS_PER_GROUP``), so optimizers and groups never evict each other's.
        """
        plans = self._fast.plans.get(id(group))
        if plans is None:
            live = {id(g) for g in self.param_groups}  # forget the plans of groups replaced by load_state_dict
            for gone in [k for k in self._fast.plans if k not in live]:
                del self._fast.plans[gone]
            plans = self._fast.plans[id(group)] = {}
        key = _plan_key(params, grads, accumulators)
        plan = plans.get(key)
        if plan is None or not plan.bind_grads(grads):
            if plan is None and len(plans) >= MAX_PLANS_PER_GROUP:
                del plans[next(iter(plans))]  # the oldest
            plan = plans[key] = _Plan(params, grads, accumulators)
        plan.run(params, grads, accumulators, lr, tau)

    def _compiled_update(
        self, params: List[Tensor], grads: List[Tensor], accumulators: List[Tensor], *, lr: float, tau: float
    ) -> None:
        """One fused pass per tensor (read a and g, write a and w), compiled once per parameter set.

        lr and tau enter as 0-d tensors refilled in place each step, so their changing values never
        trigger a recompilation.
        """
        fast = self._fast
        if fast.compile_failed:
            return _foreach_update(params, grads, accumulators, lr=lr, tau=tau)
        key = (params[0].device, torch.float64 if params[0].dtype == torch.float64 else torch.float32)
        scalars = fast.scalars.get(key)
        if scalars is None:
            scalars = fast.scalars[key] = tuple(torch.zeros((), dtype=key[1], device=key[0]) for _ in range(2))
        lr_t, tau_t = scalars
        lr_t.fill_(lr)
        tau_t.fill_(tau)
        try:
            if fast.compiled is None:
                fast.compiled = torch.compile(_fused_update_eager, fullgraph=True, dynamic=False)
            fast.compiled(params, grads, accumulators, lr_t, tau_t)
        except Exception as e:  # no C++ compiler / Triton, an unsupported dtype...: the eager path does the same
            fast.compile_failed = True
            warnings.warn(f"GRDA: torch.compile of the fused update failed ({type(e).__name__}); using impl='foreach'")
            _foreach_update(params, grads, accumulators, lr=lr, tau=tau)

    def thresholds(self) -> List[float]:
        """Current soft threshold tau of each parameter group (largest over its parameters)."""
        out = []
        for group in self.param_groups:
            taus = [self.state[p]["tau"] for p in group["params"] if self.state.get(p)]
            out.append(max(taus, default=0.0))
        return out


def _local_shards(p: Tensor, grad: Tensor, accumulator: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    """The local shards of a DTensor parameter, its gradient and its accumulator, laid out alike.

    A gradient with other placements than its parameter (e.g. Partial or Replicate) is redistributed to the
    parameter's first (one collective); the accumulator was made with the parameter's placements.
    """
    if grad.placements != p.placements or (grad.device_mesh is not p.device_mesh and grad.device_mesh != p.device_mesh):
        grad = grad.redistribute(p.device_mesh, p.placements)
    return local_tensor(p), local_tensor(grad), local_tensor(accumulator)


def uniform_accumulator(p: Tensor, bound: float, seed: int, dtype: Optional[torch.dtype] = None) -> Tensor:
    """U(-bound, bound) draw shaped like ``p`` (its device and layout; ``dtype``, default ``p``'s), the same on every
    device: drawn in float32 on the CPU, then converted.

    For a DTensor ``p`` every rank draws the whole tensor (no communication) and keeps its own shard."""
    generator = torch.Generator().manual_seed(seed)
    draw = (2 * torch.rand(p.shape, generator=generator, dtype=torch.float32) - 1) * bound
    dtype = p.dtype if dtype is None else dtype
    dtensor = dtensor_type()
    if dtensor is not None and isinstance(p, dtensor):
        from torch.distributed.tensor import distribute_tensor

        full = draw.to(device=local_tensor(p).device, dtype=dtype)
        return distribute_tensor(full, p.device_mesh, p.placements, src_data_rank=None)
    return torch.empty_like(p, dtype=dtype, memory_format=torch.preserve_format).copy_(draw)


def _hold_accumulators(optimizer: GRDA, state_dict: dict) -> Optional[dict]:
    """GRDA.load_state_dict's pre-hook (run after the user's): check that every saved accumulator has its parameter's
    shape, and pass the accumulators through torch's cast to the parameter's dtype untouched (``_Held``; __setstate__
    converts them to their accumulator dtype). Mismatched group counts or sizes are left to torch's ValueError."""
    groups, saved_groups = optimizer.param_groups, state_dict["param_groups"]
    if len(groups) != len(saved_groups):
        return None
    if any(len(group["params"]) != len(saved["params"]) for group, saved in zip(groups, saved_groups)):
        return None
    saved_state = state_dict["state"]
    held, new_groups = {}, []
    for number, (group, saved) in enumerate(zip(groups, saved_groups)):
        new_groups.append({"accumulator_dtype": group["accumulator_dtype"], **saved})  # an older dict has no such key
        for index, (p, key) in enumerate(zip(group["params"], saved["params"])):
            entry = saved_state.get(key)
            accumulator = entry.get("accumulator") if isinstance(entry, dict) else None
            if not isinstance(accumulator, Tensor):
                continue
            if accumulator.shape != p.shape:
                raise ValueError(
                    f"GRDA.load_state_dict: the saved accumulator of parameter {index} of group {number} has shape "
                    f"{tuple(accumulator.shape)}, the parameter {tuple(p.shape)}: the state dict belongs to another "
                    "model, or its parameter groups or parameters are in another order"
                )
            held[key] = {**entry, "accumulator": _Held(accumulator)}
    return {**state_dict, "state": {**saved_state, **held}, "param_groups": new_groups}


def _validate_hyperparameters(group: dict) -> None:
    check_accumulator_start(group["accumulator_init"], group["accumulator_range"], group["accumulator_seed"])
    if group["accumulator_dtype"] not in ACCUMULATOR_DTYPES:
        raise ValueError(
            f"GRDA accumulator_dtype must be one of {ACCUMULATOR_DTYPES}, got {group['accumulator_dtype']!r}"
        )
    if group["impl"] not in IMPLEMENTATIONS:
        raise ValueError(f"GRDA impl must be one of {IMPLEMENTATIONS}, got {group['impl']!r}")
    weight_decay = group["weight_decay"]
    if isinstance(weight_decay, bool) or not isinstance(weight_decay, (int, float)) or weight_decay != 0:
        raise ValueError(
            f"GRDA has no weight decay, got weight_decay={weight_decay!r} in a parameter group: it recomputes the "
            "weights from the accumulator at every step, so decayed weights would be overwritten. Its regularizer is "
            "the soft threshold (raise c for a sparser model). Pass weight_decay=0 (timm: create_optimizer_v2(..., "
            "weight_decay=0); Hugging Face: TrainingArguments(weight_decay=0.0))."
        )
    check_lr(group["lr"])
    check_c_mu(group["c"], group["mu"], stacklevel=5)  # points at the caller of GRDA(...)


def _reference_update(
    params: List[Tensor], grads: List[Tensor], accumulators: List[Tensor], *, lr: float, tau: float
) -> None:
    """The authors' per-parameter formula, kept literal for checking the fast paths (with canonical zeros)."""
    for p, g, a in zip(params, grads, accumulators):
        a.add_(g, alpha=-lr)
        p.copy_(soft_threshold(a, tau))


def _foreach_update(
    params: List[Tensor], grads: List[Tensor], accumulators: List[Tensor], *, lr: float, tau: float
) -> None:
    """One multi-tensor accumulate, then a soft threshold written straight into each parameter.

    softshrink(a, tau) = a - tau if a > tau, a + tau if a < -tau, else a * 0: the same values as
    sign(a) * max(|a| - tau, 0) (round-to-nearest is symmetric in sign), in one pass and
    without temporaries. ``a * 0`` is -0.0 for negative a: one multi-tensor ``+ 0.0`` makes every zero +0.0.
    A float32 accumulator of a bf16/fp16 parameter takes the gradient exactly (widened), and its soft threshold is
    computed in float32 and rounded once into the parameter, as in the reference.
    """
    torch._foreach_add_(accumulators, grads, alpha=-lr)
    for p, a in zip(params, accumulators):
        if p.dtype is a.dtype:
            torch._C._nn.softshrink(a, tau, out=p)
        else:  # softshrink's out= must have the input's dtype
            p.copy_(torch._C._nn.softshrink(a, tau))
    torch._foreach_add_(params, 0.0)


def _fused_update_eager(
    params: List[Tensor], grads: List[Tensor], accumulators: List[Tensor], lr: Tensor, tau: Tensor
) -> None:
    """What ``torch.compile`` fuses: zeros are selected as a literal +0.0 (a compiler may drop an ``x + 0.0``), and
    NaN accumulators give NaN weights, as in the other paths. The gradient is widened to a float32 accumulator's dtype
    first; the weight is the soft threshold in the accumulator's dtype, rounded into the parameter."""
    for p, g, a in zip(params, grads, accumulators):
        a_new = a - lr * g.to(a.dtype)
        a.copy_(a_new)
        inside = torch.where(a_new != a_new, a_new, torch.zeros_like(a_new))
        p.copy_(torch.where(a_new > tau, a_new - tau, torch.where(a_new < -tau, a_new + tau, inside)))


class _Plan:
    """Which kernel updates which tensors of one parameter set, with the kernels' address tables, made once and reused
    while the parameters and accumulators stay where they are. Gradients are bound anew at every step."""

    def __init__(self, params: List[Tensor], grads: List[Tensor], accumulators: List[Tensor]) -> None:
        routes: Dict[object, List[int]] = {}
        for i, (p, g, a) in enumerate(zip(params, grads, accumulators)):
            if cpu_kernel.supports(p, g, a) and cpu_kernel.available():
                route = (cpu_kernel.Launch,)
            elif cuda_kernel.supports(p, g, a) and cuda_kernel.available():
                route = (cuda_kernel.Launch, p.device, p.dtype, a.dtype)  # one launch per device and dtypes
            else:
                route = "foreach"
            routes.setdefault(route, []).append(i)
        self.foreach = routes.pop("foreach", [])
        self.kernels = []  # (launch, indices of its tensors, or None for all)
        for (make, *_), indices in routes.items():
            launch = make(*([lst[i] for i in indices] for lst in (params, grads, accumulators)))
            self.kernels.append((launch, None if len(indices) == len(params) else indices))
        # gradients that are not contiguous were checked against their parameter's strides: check new ones alike
        self.grad_strides = {i: g.stride() for i, g in enumerate(grads) if not g.is_contiguous()}

    def bind_grads(self, grads: List[Tensor]) -> bool:
        """Point the kernels at this step's gradients; False if a kernel cannot take them (the plan is then remade)."""
        if any(grads[i].stride() != strides for i, strides in self.grad_strides.items()):
            return False
        return all(
            launch.bind_grads(grads if indices is None else [grads[i] for i in indices])
            for launch, indices in self.kernels
        )

    def run(self, params: List[Tensor], grads: List[Tensor], accumulators: List[Tensor], lr: float, tau: float) -> None:
        for launch, _ in self.kernels:
            launch(lr, tau)
        if self.foreach:
            _foreach_update(*([lst[i] for i in self.foreach] for lst in (params, grads, accumulators)), lr=lr, tau=tau)


def _plan_key(params: List[Tensor], grads: List[Tensor], accumulators: List[Tensor]) -> tuple:
    # A gradient always has its parameter's size, dtype and device (autograd enforces it), so the gradients' sizes
    # and contiguity stand for the parameters' too; the gradients' addresses are bound per step (Plan.bind_grads).
    address = Tensor.data_ptr
    return (
        tuple(map(address, params)),
        tuple(map(address, accumulators)),
        tuple(map(Tensor.numel, grads)),
        tuple(map(Tensor.is_contiguous, grads)),
        torch.get_num_threads(),
    )


_UPDATES = {
    "foreach": _foreach_update,
    "reference": _reference_update,
}


def _resolve_impl(impl: str, params: List[Tensor]) -> str:
    if impl != "auto":
        return impl
    first = params[0]  # is_cpu / is_cuda rather than device.type: this runs every step, and host time counts on GPUs
    if first.is_cpu and first.dtype == torch.float32 and cpu_kernel.available():
        return "fused"
    if first.is_cuda and first.dtype in cuda_kernel.DTYPES and cuda_kernel.available():
        return "fused"
    if sum(p.numel() for p in params) >= COMPILE_MIN_NUMEL and first.dtype in (torch.float32, torch.bfloat16):
        return "compiled"
    return "foreach"

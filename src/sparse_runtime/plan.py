"""Choosing each layer's implementation by timing the candidates, and the cache that remembers the choices.

The cache is one JSON file, ``$GRDA_SPARSE_PLAN`` (default ``~/.cache/grda/sparse_plan.json``, under
``$XDG_CACHE_HOME`` when set). An entry's key names everything the timing depends on: the CPU model, the torch
version, the thread count, whether the direct kernel runs its AVX2 code, the layer (kind, shape, stride, padding,
bias, fused ReLU), the hash of its sparsity pattern and the input shape. Entries hold the choice and the times
measured (ms: the fastest run of each candidate, which is what planning compares; see ``measure``). A file that
cannot be read is ignored (with a warning) and rewritten; writes are atomic and merge with what other processes wrote
meanwhile.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import statistics
import time
import warnings
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import torch

from src.checkpoint import write_text_atomic
from src.sparse_runtime import kernel

CACHE_VERSION = 3  # 2: max pooling gained the C candidate; 3: end to end against the original model
# (plans of an older version are re-measured)
# A sparse candidate must beat dense by this factor to be chosen (timing noise should not flip a layer to sparse).
MARGIN = 0.97
# After the first timed run, candidates slower than this multiple of the best so far are not timed again.
DROP_FACTOR = 2.0


def cache_path() -> Path:
    env = os.environ.get("GRDA_SPARSE_PLAN")
    if env:
        return Path(env).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "grda" / "sparse_plan.json"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_key(threads: Optional[int] = None) -> str:
    """What the timings of this process depend on besides the layer and its input."""
    threads = torch.get_num_threads() if threads is None else threads
    kern = "avx2" if kernel.uses_avx2() else ("generic" if kernel.available() else "none")
    return f"{cpu_model()} | {os.cpu_count()} cpus | torch {torch.__version__} | {threads} threads | kernel {kern}"


def layer_key(machine: str, signature: str, relu: bool, pattern: str, input_shape: Sequence[int]) -> str:
    return f"{machine} | {signature} relu={relu} | pattern {pattern} | input {list(input_shape)}"


def model_key(layer_keys: Sequence[str], input_shape: Sequence[int]) -> str:
    digest = hashlib.sha256("\n".join(layer_keys).encode()).hexdigest()[:16]
    return f"model {digest} | input {list(input_shape)}"


class PlanCache:
    """The JSON file of choices: ``{"version": CACHE_VERSION, "entries": {key: {"choice": ..., "ms": {...}}}}``."""

    def __init__(self, path: Optional[os.PathLike] = None, enabled: bool = True) -> None:
        self.path = Path(path) if path is not None else cache_path()
        self.enabled = enabled
        self.entries: Dict[str, dict] = self._read() if enabled else {}
        self.dirty: Dict[str, dict] = {}

    def _read(self) -> Dict[str, dict]:
        if not self.path.exists():
            return {}
        try:
            data = json.loads(self.path.read_text())
            if isinstance(data, dict) and data.get("version") != CACHE_VERSION:
                return {}  # made by another version of the runtime (other candidates): planned again, rewritten
            if not isinstance(data.get("entries"), dict):
                raise ValueError("no entries")
            return data["entries"]
        except (OSError, ValueError, AttributeError) as e:
            warnings.warn(f"sparse runtime: ignoring the unreadable plan cache {self.path} ({e}); it will be rewritten")
            return {}

    def get(self, key: str) -> Optional[dict]:
        return self.entries.get(key) if self.enabled else None

    def put(self, key: str, entry: dict) -> None:
        self.entries[key] = entry
        self.dirty[key] = entry

    def save(self) -> None:
        if not self.enabled or not self.dirty:
            return
        merged = {**self._read(), **self.dirty}
        text = json.dumps({"version": CACHE_VERSION, "entries": merged}, indent=1, sort_keys=True)
        try:
            write_text_atomic(text, self.path)
        except OSError as e:
            warnings.warn(f"sparse runtime: cannot write the plan cache {self.path} ({e}); set GRDA_SPARSE_PLAN")
            return
        self.entries, self.dirty = merged, {}


def _timed(fn: Callable[[], object], reps: int = 1) -> float:
    """Seconds per call of ``reps`` calls in a row."""
    t = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t) / reps


def measure(
    fns: Dict[str, Callable[[], object]],
    rounds: int,
    budget_s: float = 0.5,
    drop_factor: Optional[float] = DROP_FACTOR,
    keep: Sequence[str] = ("dense",),
    warmup: bool = True,
    info: Optional[dict] = None,
    stat: str = "median",
    min_sample_s: float = 0.0,
) -> Dict[str, float]:
    """Median seconds of each function, run interleaved (rotating order), after one warm-up call each (``warmup``).

    ``rounds`` is the most rounds; fewer are run when one round takes more than ``budget_s / rounds`` (at least 3).
    With ``drop_factor``, a function slower than that multiple of the fastest after two timed runs (the better of
    each) is not run again (its median is of those two); those in ``keep`` are always timed. ``info["rounds"]`` gets the
    number of rounds run. ``stat="min"`` returns the fastest run instead of the median (what the plan compares:
    interference from other processes only ever adds time). With ``min_sample_s``, a function faster than that is
    called that many times in a row per sample (the mean per call): a sub-millisecond call is otherwise at the mercy
    of one timer interrupt or page fault, which a median of a few samples does not fully remove.
    """
    names = list(fns)
    times: Dict[str, List[float]] = {name: [] for name in names}
    reps = {name: 1 for name in names}
    for name in names if warmup or min_sample_s > 0 else ():
        first = _timed(fns[name])  # warm up: caches, lazily prepared operands, oneDNN primitives
        if min_sample_s > 0:
            reps[name] = max(1, min(10_000, int(min_sample_s / max(first, 1e-7))))
    alive = list(names)
    r = 0
    while r < rounds:
        order = alive[r % len(alive) :] + alive[: r % len(alive)]
        for name in order:
            times[name].append(_timed(fns[name], reps[name]))
        if r == 0:
            per_round = sum(times[n][0] * reps[n] for n in alive)
            rounds = max(3, min(rounds, int(budget_s / max(per_round, 1e-9))))
        elif r == 1 and drop_factor is not None:  # the better of two runs, so that one hiccup drops nothing
            best = {n: min(times[n]) for n in alive}
            fastest = min(best.values())
            alive = [n for n in alive if n in keep or best[n] <= drop_factor * fastest]
        r += 1
    if info is not None:
        info["rounds"] = r
        info["calls_per_sample"] = dict(reps)
    reduce = min if stat == "min" else statistics.median
    return {name: reduce(ts) for name, ts in times.items()}


def choose(ms: Dict[str, float]) -> str:
    """The fastest candidate, dense unless a sparse one is clearly (MARGIN) faster."""
    best = min(ms, key=ms.get)
    if best != "dense" and "dense" in ms and ms[best] > MARGIN * ms["dense"]:
        return "dense"
    return best

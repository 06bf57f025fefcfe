"""Linear and Conv2d layers that run one of several implementations, chosen per input shape.

Candidates (each gives the dense layer's output within fp32 rounding):

``dense``   PyTorch's own ``F.linear`` / ``F.conv2d`` (MKL / oneDNN) on the dense weight.
``direct``  the hand-written kernel of ``spconv_cpu.c``: the nonzero weights times the activations, no im2col
            (a convolution reads the zero-padded input in place; a strided one reads its polyphase split).
``csr``     ``W_csr @ X`` with torch's CSR tensor (MKL): X the input (Linear, transposed) or its im2col.
``csr_t``   ``X^T @ W^T_csr``: the other orientation, the sparse operand on the right.
``bsr``     ``W_bsr @ X`` with 4x4 blocks (MKL takes only square blocks); offered only when the zeros are clustered
            enough that the blocks hold at most twice the nonzeros.

A layer runs ``choices[(input shape, threads)]``, ``dense`` for a shape it has not been planned for
(:class:`src.sparse_runtime.SparseModel` fills ``choices`` by timing the candidates, through ``set_choice``, which
also binds the choice's operands, sizes and kernel pointers into a runner for that shape: a call then does little
more than the kernel's work and the output's allocation, which matters at batch 1). :class:`MaxPool2d` is planned
the same way between PyTorch's kernel, a separable max of strided views and the C kernel's max pooling.
"""

from __future__ import annotations

import functools
import hashlib
import math
import threading
import warnings
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from src.sparse_runtime import kernel

BSR_BLOCK = 4
CANDIDATES = ("dense", "direct", "csr", "csr_t", "bsr")


def pattern_hash(weight: Tensor) -> str:
    """A short hash of the shape and the positions of the nonzeros (not their values)."""
    mask = (weight.detach().reshape(-1) != 0).numpy()
    h = hashlib.sha256(str(tuple(weight.shape)).encode())
    h.update(np.packbits(mask).tobytes())
    return h.hexdigest()[:16]


def _csr_silently(t: Tensor, layout: str) -> Tensor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "sparse CSR support is in beta"
        if layout == "bsr":
            return t.to_sparse_bsr((BSR_BLOCK, BSR_BLOCK))
        return t.to_sparse_csr()


INT32_MAX = 2**31 - 1


def to_int32(t: Tensor, what: str) -> Tensor:
    """``t`` as a contiguous int32 tensor (the C kernels' offsets), or a ValueError naming ``what`` when a value does
    not fit (a cast would wrap around and the kernel read outside its buffers)."""
    if t.numel() and int(t.max()) > INT32_MAX:
        raise ValueError(
            f"sparse runtime: {what} reaches {int(t.max()):,}, beyond the int32 offsets of its kernels "
            f"({INT32_MAX:,}); run this layer dense (smaller batch or input, or leave it unconverted)"
        )
    return t.to(torch.int32).contiguous()


def _rows(weight2d: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    """(rowptr int32 [O+1], column index int64 [nnz], values float32 [nnz]) of a 2-D weight, row-major order."""
    nz = weight2d != 0
    rows, cols = nz.nonzero(as_tuple=True)
    rowptr = torch.zeros(weight2d.shape[0] + 1, dtype=torch.int32)
    rowptr[1:] = to_int32(torch.bincount(rows, minlength=weight2d.shape[0]).cumsum(0), "the nonzero count")
    return rowptr, cols, weight2d[rows, cols].contiguous()


class _PerThreadBuffer(threading.local):
    """The direct kernel's padded-input buffer, one per calling thread and freed with it; copies and pickles start
    empty (each thread of the copy zeroes its own on first use)."""

    tensor: Optional[Tensor] = None

    def __reduce__(self):
        return (_PerThreadBuffer, ())


class PlannedOp(nn.Module):
    """An operation with several implementations; runs ``choices[(input shape, threads)]`` (default ``dense``)."""

    kind = "op"
    relu = False
    pattern = "-"

    def __init__(self, name: str = "") -> None:
        super().__init__()
        self.name = name
        self.choices: Dict[Tuple, str] = {}
        self.force: Optional[str] = None  # run this candidate whatever the plan says (tests, the dense fallback)
        self._prepared: Dict[Tuple, object] = {}
        # (input shape, threads) -> a function running the planned choice with its operands bound (set_choice)
        self._runners: Dict[Tuple, Callable[[Tensor], Tensor]] = {}

    def signature(self) -> str:
        raise NotImplementedError

    def candidates(self, x: Tensor) -> List[str]:
        raise NotImplementedError

    def supports(self, candidate: str) -> bool:
        raise NotImplementedError

    def choice_for(self, x: Tensor) -> str:
        if self.force is not None:
            return self.force
        return self.choices.get((tuple(x.shape), torch.get_num_threads()), "dense")

    def set_choice(self, shape: Sequence[int], threads: int, choice: str) -> None:
        """Run ``choice`` for inputs of ``shape`` at ``threads`` threads (what the planner decided)."""
        key = (tuple(shape), int(threads))
        self.choices[key] = choice
        self._runners[key] = self.runner(tuple(shape), int(threads), choice)

    def forward(self, x: Tensor) -> Tensor:
        if x.dtype != torch.float32 or x.device.type != "cpu":
            # The C kernels and the sparse tensors are float32 CPU: anything else runs (or fails) as in PyTorch.
            return self.run(x, "dense")
        if self.force is None:
            key = (x.shape, torch.get_num_threads())
            run = self._runners.get(key)
            if run is None and key in self.choices:  # a copy (deepcopy, pickle) binds its own operands again
                run = self._runners[key] = self.runner(tuple(x.shape), key[1], self.choices[key])
            if run is not None:
                return run(x)
        return self.run(x, self.choice_for(x))

    def __getstate__(self) -> Dict[str, Any]:
        # The runners are closures over this object's operands: a copy must not share (or pickle) them.
        return {**self.__dict__, "_runners": {}}

    def run(self, x: Tensor, candidate: str) -> Tensor:
        raise NotImplementedError

    def runner(self, shape: Tuple[int, ...], threads: int, candidate: str) -> Callable[[Tensor], Tensor]:
        """``candidate`` for inputs of ``shape``, as a function of the input alone. The kernel's candidates override
        this to bind their operands once: at batch 1 the per-call Python work is a good part of a small layer's
        time."""
        return functools.partial(self.run, candidate=candidate)

    def drop_unused(self) -> None:
        """Forget the prepared operands of candidates no planned shape runs."""
        used = set(self.choices.values())
        for key in list(self._prepared):
            if key[0] not in used:
                del self._prepared[key]


class MaxPool2d(PlannedOp):
    """nn.MaxPool2d with a second implementation: ``separable``, the max of strided views, first along the
    width, then along the height (bit-identical; PyTorch's CPU kernel for NCHW tensors is slow at small batch)."""

    kind = "maxpool"

    def __init__(
        self, kernel_size, stride=None, padding=0, dilation=1, ceil_mode: bool = False, name: str = ""
    ) -> None:
        super().__init__(name)
        pair = lambda v: tuple(int(a) for a in v) if isinstance(v, (tuple, list)) else (int(v), int(v))  # noqa: E731
        self.kernel_size = pair(kernel_size)
        self.stride = pair(stride if stride is not None and stride != [] else kernel_size)
        self.padding = pair(padding)
        self.dilation = pair(dilation)
        self.ceil_mode = bool(ceil_mode)

    @classmethod
    def from_module(cls, m: nn.MaxPool2d, name: str = "") -> "MaxPool2d":
        return cls(m.kernel_size, m.stride, m.padding, m.dilation, m.ceil_mode, name)

    def signature(self) -> str:
        return (
            f"maxpool(k={self.kernel_size}, s={self.stride}, p={self.padding}, "
            f"d={self.dilation}, ceil={self.ceil_mode})"
        )

    def supports(self, candidate: str) -> bool:
        if candidate == "dense":
            return True
        if candidate == "direct" and not kernel.available():
            return False
        return candidate in ("separable", "direct") and self.dilation == (1, 1) and not self.ceil_mode

    def candidates(self, x: Tensor) -> List[str]:
        if not (x.dim() == 4 and x.is_floating_point() and self.supports("separable")):
            return ["dense"]
        direct = (
            kernel.available()
            and x.dtype == torch.float32
            and x.device.type == "cpu"
            and x.shape[3] <= kernel.MAXPOOL_MAX_WIDTH
        )
        return ["dense", "separable"] + (["direct"] if direct else [])

    def runner(self, shape: Tuple[int, ...], threads: int, candidate: str) -> Callable[[Tensor], Tensor]:
        if candidate != "direct" or len(shape) != 4:
            return super().runner(shape, threads, candidate)
        return kernel.maxpool_runner(shape, self.kernel_size, self.stride, self.padding, threads)

    def run(self, x: Tensor, candidate: str) -> Tensor:
        if candidate == "direct" and x.dim() == 4:
            return kernel.maxpool(x.contiguous(), self.kernel_size, self.stride, self.padding)
        if candidate != "separable" or x.dim() != 4:
            return F.max_pool2d(x, self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode)
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        if ph or pw:
            x = F.pad(x, (pw, pw, ph, ph), value=float("-inf"))
        h, w = x.shape[2], x.shape[3]
        ho, wo = (h - kh) // sh + 1, (w - kw) // sw + 1
        t = x[:, :, :, 0 : sw * (wo - 1) + 1 : sw]
        t = t.clone() if kw == 1 else torch.maximum(t, x[:, :, :, 1 : 1 + sw * (wo - 1) + 1 : sw])
        for j in range(2, kw):
            torch.maximum(t, x[:, :, :, j : j + sw * (wo - 1) + 1 : sw], out=t)
        y = t[:, :, 0 : sh * (ho - 1) + 1 : sh]
        y = y.contiguous() if kh == 1 else torch.maximum(y, t[:, :, 1 : 1 + sh * (ho - 1) + 1 : sh])
        for i in range(2, kh):
            torch.maximum(y, t[:, :, i : i + sh * (ho - 1) + 1 : sh], out=y)
        return y

    def extra_repr(self) -> str:
        return self.signature()


class SparseLayer(PlannedOp):
    """What Linear and Conv2d replacements share: the weight, the choices, the prepared operands."""

    kind = "layer"

    def __init__(self, weight: Tensor, bias: Optional[Tensor], relu: bool = False, name: str = "") -> None:
        super().__init__(name)
        weight = weight.detach().to(torch.float32).contiguous()
        self.register_buffer("weight", weight)
        self.register_buffer("bias", None if bias is None else bias.detach().to(torch.float32).contiguous())
        self.relu = bool(relu)
        self.nnz = int(torch.count_nonzero(weight))
        self.pattern = pattern_hash(weight)
        self._bsr_ok: Optional[bool] = None

    @property
    def density(self) -> float:
        return self.nnz / max(1, self.weight.numel())

    def weight2d(self) -> Tensor:
        return self.weight.reshape(self.weight.shape[0], -1)

    def candidates(self, x: Tensor) -> List[str]:
        """The candidates that can run this input (``dense`` first)."""
        out = ["dense"]
        if x.dtype != torch.float32 or x.device.type != "cpu" or not self._sparse_ok():
            return out
        if kernel.available():
            out.append("direct")
        out += ["csr", "csr_t"]
        if self._bsr_pays():
            out.append("bsr")
        return out

    def _sparse_ok(self) -> bool:
        return True

    def supports(self, candidate: str) -> bool:
        """Whether ``candidate`` can run this layer (on float32 CPU inputs)."""
        if candidate == "dense":
            return True
        if candidate not in CANDIDATES or not self._sparse_ok():
            return False
        if candidate == "direct":
            return kernel.available()
        if candidate == "bsr":
            o, k = self.weight2d().shape
            return o % BSR_BLOCK == 0 and k % BSR_BLOCK == 0
        return True

    def _bsr_pays(self) -> bool:
        """BSR computes whole 4x4 blocks: worth measuring only where they are mostly nonzeros."""
        if self._bsr_ok is None:
            w = self.weight2d()
            o, k = w.shape
            if o % BSR_BLOCK or k % BSR_BLOCK or self.nnz == 0:
                self._bsr_ok = False
            else:
                blocks = (w != 0).reshape(o // BSR_BLOCK, BSR_BLOCK, k // BSR_BLOCK, BSR_BLOCK).any(3).any(1)
                self._bsr_ok = int(blocks.sum()) * BSR_BLOCK * BSR_BLOCK <= 2 * self.nnz
        return self._bsr_ok

    def _matrix(self, layout: str, transposed: bool = False) -> Tensor:
        key = (layout + ("_t" if transposed else ""), None)
        m = self._prepared.get(key)
        if m is None:
            w = self.weight2d()
            m = _csr_silently(w.t().contiguous() if transposed else w, layout)
            self._prepared[key] = m
        return m

    def _finish(self, y: Tensor) -> Tensor:
        return torch.relu_(y) if self.relu else y

    def extra_repr(self) -> str:
        shapes = ", ".join(f"{list(s)}x{t}t: {c}" for (s, t), c in self.choices.items())
        return f"{self.signature()}, density={self.density:.3f}, relu={self.relu}" + (
            f", plan={{{shapes}}}" if shapes else ""
        )


class SparseLinear(SparseLayer):
    kind = "linear"

    def __init__(self, weight: Tensor, bias: Optional[Tensor], relu: bool = False, name: str = "") -> None:
        super().__init__(weight, bias, relu, name)
        self.in_features = weight.shape[1]
        self.out_features = weight.shape[0]

    @classmethod
    def from_module(cls, m: nn.Linear, relu: bool = False, name: str = "") -> "SparseLinear":
        return cls(m.weight, m.bias, relu, name)

    def signature(self) -> str:
        return f"linear({self.in_features}->{self.out_features}, bias={self.bias is not None})"

    def run(self, x: Tensor, candidate: str) -> Tensor:
        if candidate == "dense":
            return self._finish(F.linear(x, self.weight, self.bias))
        lead = x.shape[:-1]
        x2 = x.reshape(-1, self.in_features)
        m = x2.shape[0]
        if candidate == "direct":
            y = self.runner((m, self.in_features), torch.get_num_threads(), "direct")(x2)
            return y.reshape(*lead, self.out_features)
        if candidate in ("csr", "bsr"):
            w = self._matrix(candidate)
            if self.bias is None:
                y = torch.mm(w, x2.t())
            else:
                y = torch.addmm(self.bias.unsqueeze(1), w, x2.t())
            y = y.t()
        elif candidate == "csr_t":
            wt = self._matrix("csr", transposed=True)
            y = torch.mm(x2, wt)
            if self.bias is not None:
                y += self.bias
        else:
            raise ValueError(f"unknown candidate {candidate!r}")
        return self._finish(y).reshape(*lead, self.out_features)

    def runner(self, shape: Tuple[int, ...], threads: int, candidate: str) -> Callable[[Tensor], Tensor]:
        if candidate != "direct" or len(shape) != 2:
            return super().runner(shape, threads, candidate)
        m = shape[0]
        rowptr, off, val = self._direct(m)
        call = kernel.bound_spconv(
            1, self.out_features, m, rowptr, off, val, self.bias, 0, 0, 1, self.out_features, m, m, self.relu, threads
        )
        out_shape = (m, self.out_features)

        def run(x: Tensor) -> Tensor:
            xt = x.contiguous() if m == 1 else x.t().contiguous()  # (K, M): column l of the grid is sample l
            y = torch.empty(out_shape, dtype=torch.float32)
            call(xt, y)
            return y

        return run

    def _direct(self, m: int):
        key = ("direct", m)
        prep = self._prepared.get(key)
        if prep is None:
            rowptr, cols, val = _rows(self.weight)
            off = to_int32(cols * (1 if m == 1 else m), "an input offset")
            prep = self._prepared[key] = (rowptr, off, val)
        return prep


class SparseConv2d(SparseLayer):
    kind = "conv"

    def __init__(
        self,
        weight: Tensor,
        bias: Optional[Tensor],
        stride=1,
        padding=0,
        dilation=1,
        groups: int = 1,
        padding_mode: str = "zeros",
        relu: bool = False,
        name: str = "",
    ) -> None:
        super().__init__(weight, bias, relu, name)
        pair = lambda v: tuple(int(a) for a in v) if isinstance(v, (tuple, list)) else (int(v), int(v))  # noqa: E731
        self.stride = pair(stride)
        self.padding = padding if isinstance(padding, str) else pair(padding)
        self.dilation = pair(dilation)
        self.groups = int(groups)
        self.padding_mode = padding_mode
        self.out_channels, self.in_channels = weight.shape[0], weight.shape[1] * self.groups
        self.kernel_size = tuple(weight.shape[2:])

    @classmethod
    def from_module(cls, m: nn.Conv2d, relu: bool = False, name: str = "") -> "SparseConv2d":
        return cls(m.weight, m.bias, m.stride, m.padding, m.dilation, m.groups, m.padding_mode, relu, name)

    def signature(self) -> str:
        return (
            f"conv({self.in_channels}->{self.out_channels}, k={self.kernel_size}, s={self.stride}, "
            f"p={self.padding}, d={self.dilation}, g={self.groups}, bias={self.bias is not None})"
        )

    def _sparse_ok(self) -> bool:
        return self.groups == 1 and self.padding_mode == "zeros" and not isinstance(self.padding, str)

    def _dense(self, x: Tensor) -> Tensor:
        if self.padding_mode != "zeros":
            pad = (self.padding[1], self.padding[1], self.padding[0], self.padding[0])
            x = F.pad(x, pad, mode=self.padding_mode)
            return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)

    def out_size(self, h: int, w: int) -> Tuple[int, int]:
        (kh, kw), (sh, sw), (ph, pw), (dh, dw) = self.kernel_size, self.stride, self.padding, self.dilation
        return (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1, (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1

    def run(self, x: Tensor, candidate: str) -> Tensor:
        if candidate == "dense":
            return self._finish(self._dense(x))
        squeeze = x.dim() == 3
        if squeeze:
            x = x.unsqueeze(0)
        if candidate == "direct":
            y = self._run_direct(x)
        elif candidate in ("csr", "csr_t", "bsr"):
            y = self._finish(self._run_mkl(x, candidate))
        else:
            raise ValueError(f"unknown candidate {candidate!r}")
        return y.squeeze(0) if squeeze else y

    # -- im2col + torch sparse (MKL)
    def _cols(self, x: Tensor) -> Tensor:
        """(N, K, L): the im2col of x (a view for a 1x1, stride-1, unpadded conv)."""
        n, c, h, w = x.shape
        if self.kernel_size == (1, 1) and self.stride == (1, 1) and self.padding == (0, 0):
            return x.reshape(n, c, h * w)
        return F.unfold(x, self.kernel_size, self.dilation, self.padding, self.stride)

    def _run_mkl(self, x: Tensor, candidate: str) -> Tensor:
        n = x.shape[0]
        ho, wo = self.out_size(x.shape[2], x.shape[3])
        cols = self._cols(x)  # (N, K, L)
        k, l_ = cols.shape[1], cols.shape[2]
        if candidate == "csr_t":
            rows = cols.transpose(1, 2).reshape(n * l_, k)  # (N*L, K)
            y = torch.mm(rows, self._matrix("csr", transposed=True))  # (N*L, O)
            if self.bias is not None:
                y += self.bias
            return y.reshape(n, l_, self.out_channels).permute(0, 2, 1).reshape(n, self.out_channels, ho, wo)
        w = self._matrix(candidate)
        dense = cols[0] if n == 1 else cols.permute(1, 0, 2).reshape(k, n * l_)
        if self.bias is None:
            y = torch.mm(w, dense)
        else:
            y = torch.addmm(self.bias.unsqueeze(1), w, dense)
        if n == 1:
            return y.reshape(1, self.out_channels, ho, wo)
        return y.reshape(self.out_channels, n, ho, wo).permute(1, 0, 2, 3).contiguous()

    # -- the direct kernel
    def _geometry(self, n: int, h: int, w: int) -> dict:
        key = ("direct", (n, h, w))
        geo = self._prepared.get(key)
        if geo is not None:
            return geo
        (kh, kw), (sh, sw), (ph, pw), (dh, dw) = self.kernel_size, self.stride, self.padding, self.dilation
        c = self.in_channels
        ho, wo = self.out_size(h, w)
        hq, wq = ho + dh * (kh - 1) // sh, wo + dw * (kw - 1) // sw  # a phase's rows and columns
        nph, npw = min(sh, dh * (kh - 1) + 1), min(sw, dw * (kw - 1) + 1)  # phases any tap reads
        in_place = (sh, sw) == (1, 1) and (ph, pw) == (0, 0)  # the input itself is the buffer
        if in_place:
            hq, wq = h, w
        plane = hq * wq
        rowptr, cols, val = _rows(self.weight2d())
        ci, rest = cols // (kh * kw), cols % (kh * kw)
        i, j = (rest // kw) * dh, (rest % kw) * dw
        phase = (i % sh) * npw + (j % sw)
        off = phase * (c * plane) + ci * plane + (i // sh) * wq + (j // sw)
        # Where each phase's rows/columns come from in x: phase (a, b) at (r, q) is padded x at (sh*r + a, sw*q + b).
        copies = []
        if not in_place:
            for a in range(nph):
                r0 = max(0, -((a - ph) // sh))  # first r with sh*r + a - ph >= 0
                r1 = min(hq - 1, (h - 1 + ph - a) // sh)
                for b in range(npw):
                    q0 = max(0, -((b - pw) // sw))
                    q1 = min(wq - 1, (w - 1 + pw - b) // sw)
                    if r1 < r0 or q1 < q0:
                        continue
                    copies.append((a, b, r0, r1 + 1, q0, q1 + 1, sh * r0 + a - ph, sw * q0 + b - pw))
        geo = {
            "ho": ho,
            "wo": wo,
            "hq": hq,
            "wq": wq,
            "nph": nph,
            "npw": npw,
            "in_place": in_place,
            "rowptr": rowptr,
            "off": to_int32(off, "an input offset"),
            "val": val,
            "copies": copies,
            "per_sample": nph * npw * c * plane,
            "buffer": _PerThreadBuffer(),
        }
        if off.numel() and int(off.max()) + (ho - 1) * wq + wo > geo["per_sample"]:
            raise AssertionError("sparse conv geometry reads outside its buffer")  # a bug, never the user's input
        self._prepared[key] = geo
        return geo

    def _fill_buffer(self, x: Tensor, geo: dict) -> Tensor:
        """The kernel's input: x itself (stride 1, no padding) or its zero-padded polyphase split."""
        if geo["in_place"]:
            return x.contiguous()
        (sh, sw) = self.stride
        buf = geo["buffer"].tensor  # this thread's: calls from several threads never share one
        if buf is None:  # zero borders once; each call rewrites only the interior
            n, c = x.shape[0], self.in_channels
            buf = geo["buffer"].tensor = x.new_zeros(n, geo["nph"], geo["npw"], c, geo["hq"], geo["wq"])
        for a, b, r0, r1, q0, q1, x0, y0 in geo["copies"]:
            buf[:, a, b, :, r0:r1, q0:q1] = x[
                :, :, x0 : x0 + sh * (r1 - r0 - 1) + 1 : sh, y0 : y0 + sw * (q1 - q0 - 1) + 1 : sw
            ]
        return buf

    def _bound_direct(self, n: int, h: int, w: int, threads: int):
        """(kernel call taking (input buffer, output), output shape, geometry) for inputs (n, C, h, w)."""
        geo = self._geometry(n, h, w)
        ho, wo, wq = geo["ho"], geo["wo"], geo["wq"]
        call = kernel.bound_spconv(
            n,
            self.out_channels,
            (ho - 1) * wq + wo,
            geo["rowptr"],
            geo["off"],
            geo["val"],
            self.bias,
            geo["per_sample"],
            self.out_channels * ho * wo,
            ho * wo,
            1,
            wq,
            wo,
            self.relu,
            threads,
        )
        return call, (n, self.out_channels, ho, wo), geo

    def runner(self, shape: Tuple[int, ...], threads: int, candidate: str) -> Callable[[Tensor], Tensor]:
        if candidate != "direct" or len(shape) != 4:
            return super().runner(shape, threads, candidate)
        call, out_shape, geo = self._bound_direct(shape[0], shape[2], shape[3], threads)

        def run(x: Tensor) -> Tensor:
            buf = self._fill_buffer(x, geo)
            y = torch.empty(out_shape, dtype=torch.float32)
            call(buf, y)
            return y

        return run

    def _run_direct(self, x: Tensor) -> Tensor:
        n, c, h, w = x.shape
        return self.runner((n, c, h, w), torch.get_num_threads(), "direct")(x)


def total_macs(layer: SparseLayer, x_shape: Tuple[int, ...]) -> Tuple[int, int]:
    """(dense, nonzero) multiply-adds of one call of ``layer`` on an input of ``x_shape``."""
    if isinstance(layer, SparseConv2d):
        ho, wo = layer.out_size(x_shape[-2], x_shape[-1])
        per = ho * wo * (x_shape[0] if len(x_shape) == 4 else 1)
    else:
        per = math.prod(x_shape[:-1])
    return layer.weight.numel() * per, layer.nnz * per

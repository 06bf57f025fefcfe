"""Pieces shared by the dataset builders: the bundle, an in-memory image dataset,
cheap tensor transforms, deterministic subsets and config access."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, List, Optional, Sequence, Tuple

import torch
from torch.utils.data import Dataset, Subset

from src.errors import UserError

# Fixed seed for subset selection: identical in every process, so DDP ranks agree.
SUBSET_SEED = 20200907


@dataclass
class DatasetBundle:
    """What ``build_datasets`` returns."""

    train: Dataset
    test: Dataset
    num_classes: int
    input_shape: Tuple[int, int, int]
    classes: List[str] = field(default_factory=list)
    name: str = ""


def one_line(err: Any) -> str:
    """An exception (or text) as one line: ``Type: message`` with whitespace collapsed."""
    if isinstance(err, BaseException):
        text = " ".join(str(err).split())
        return f"{type(err).__name__}: {text}" if text else type(err).__name__
    return " ".join(str(err).split())


def cfg_get(cfg: Any, key: str, default: Any = None) -> Any:
    """Read ``cfg.key`` from a dataclass, namespace, dict or OmegaConf DictConfig."""
    try:
        if isinstance(cfg, dict):
            value = cfg.get(key, default)
        else:
            value = getattr(cfg, key, default)
    except Exception:  # e.g. a struct DictConfig raising on a missing key
        return default
    return default if value is None else value


def resolve_root(cfg: Any, default: str) -> str:
    root = cfg_get(cfg, "root", None)
    root = default if root in (None, "") else str(root)
    return os.path.abspath(os.path.expanduser(root))


def check_augment(cfg: Any, dataset: str, allowed: Sequence[str]) -> str:
    augment = str(cfg_get(cfg, "augment", "none")).lower()
    known = ("none", "crop_flip", "imagenet")
    if augment not in known:
        raise UserError(f"unknown data.augment '{augment}'; choose one of: {', '.join(known)}")
    if augment not in allowed:
        raise UserError(
            f"data.augment={augment} does not apply to dataset '{dataset}'; choose one of: {', '.join(allowed)}"
        )
    return augment


# ---------------------------------------------------------------------------- transforms


class RandomCropFlip:
    """RandomCrop(size, padding) with zero padding + RandomHorizontalFlip(0.5) on a CHW tensor.

    Uses torch's global RNG, so DataLoader worker seeding applies. Cheap (a few µs).
    """

    def __init__(self, padding: int = 4) -> None:
        self.padding = int(padding)

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        c, h, w = img.shape
        p = self.padding
        span = 2 * p + 1
        r = int(torch.randint(0, span * span * 2, ()))  # one draw: top, left, flip
        r, flip = divmod(r, 2)
        i, j = divmod(r, span)
        out = img.new_zeros((c, h, w))
        # Source window [i-p, i-p+h) clipped to the image, destination offset accordingly.
        di, dj = i - p, j - p
        src_r0, src_r1 = max(di, 0), min(di + h, h)
        src_c0, src_c1 = max(dj, 0), min(dj + w, w)
        out[:, src_r0 - di : src_r1 - di, src_c0 - dj : src_c1 - dj] = img[:, src_r0:src_r1, src_c0:src_c1]
        if flip:
            out = out.flip(-1)
        return out

    def __repr__(self) -> str:
        return f"RandomCropFlip(padding={self.padding})"


class InMemoryImageDataset(Dataset):
    """Images held in one tensor (N, C, H, W) with integer labels.

    uint8 images are converted to float32 / 255 per item and optionally normalised with
    per-channel ``mean``/``std``; float images are returned as stored (already prepared).
    ``augment`` (a callable on the CHW tensor, before conversion) is applied per item.
    """

    def __init__(
        self,
        images: torch.Tensor,
        targets: torch.Tensor,
        mean: Optional[Sequence[float]] = None,
        std: Optional[Sequence[float]] = None,
        augment: Optional[Any] = None,
        classes: Optional[List[str]] = None,
    ) -> None:
        if images.ndim != 4:
            raise ValueError(f"images must be (N, C, H, W), got {tuple(images.shape)}")
        if len(images) != len(targets):
            raise ValueError("images and targets differ in length")
        self.images = images.contiguous()
        self.targets = torch.as_tensor(targets, dtype=torch.long)
        self._labels = self.targets.tolist()
        self.classes = list(classes) if classes is not None else []
        self.augment = augment
        self._mean_std = None
        if mean is not None:
            c = images.shape[1]
            m = torch.as_tensor(mean, dtype=torch.float32).reshape(-1, 1, 1).expand(c, 1, 1).clone()
            s = torch.as_tensor(std, dtype=torch.float32).reshape(-1, 1, 1).expand(c, 1, 1).clone()
            self._mean_std = (m, s)

    def __len__(self) -> int:
        return len(self._labels)

    def __getitem__(self, index: int):
        img = self.images[index]
        if self.augment is not None:
            img = self.augment(img)
        if img.dtype == torch.uint8:
            x = img.to(torch.float32).div_(255.0)
            if self._mean_std is not None:
                m, s = self._mean_std
                x.sub_(m).div_(s)
        else:
            x = img.to(torch.float32, copy=True)
        return x, self._labels[index]

    def select(self, indices: torch.Tensor) -> "InMemoryImageDataset":
        """A new dataset holding only ``indices`` (copies; keeps transforms)."""
        out = InMemoryImageDataset.__new__(InMemoryImageDataset)
        out.images = self.images[indices].contiguous()
        out.targets = self.targets[indices].clone()
        out._labels = out.targets.tolist()
        out.classes = list(self.classes)
        out.augment = self.augment
        out._mean_std = self._mean_std
        return out


# ---------------------------------------------------------------------------- subsets


def check_subset_size(n: Any, key: str) -> Optional[int]:
    if n is None:
        return None
    bad = UserError(f"data.{key} must be a positive integer or null, got {n!r}")
    if isinstance(n, bool):
        raise bad
    try:
        as_int = int(n)
    except (TypeError, ValueError):
        raise bad from None
    if as_int != n or as_int <= 0:
        raise bad
    return as_int


def stratified_order(targets: Sequence[int], seed: int = SUBSET_SEED) -> torch.Tensor:
    """A deterministic ordering of indices such that every prefix is ~class-proportional.

    A seeded permutation breaks ties; each item's key is its (rank + 0.5) / class_count
    within its class, so the first N items hold each class in proportion to its size.
    """
    t = torch.as_tensor(list(targets) if not torch.is_tensor(targets) else targets, dtype=torch.long)
    n = len(t)
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n, generator=g)
    if n == 0:
        return perm
    labels = t[perm]
    # rank of each permuted item within its class
    order = torch.argsort(labels, stable=True)
    sorted_labels = labels[order]
    counts = torch.bincount(sorted_labels)
    starts = torch.cumsum(counts, 0) - counts
    rank_sorted = torch.arange(n) - starts[sorted_labels]
    rank = torch.empty(n, dtype=torch.long)
    rank[order] = rank_sorted
    key = (rank.double() + 0.5) / counts[labels].double()
    return perm[torch.argsort(key, stable=True)]


def take_subset(dataset: Dataset, n: Any, key: str, seed: int = SUBSET_SEED) -> Dataset:
    """The first ``n`` items of :func:`stratified_order`, in ascending index order.

    ``n`` None or >= len(dataset): the dataset itself. ``n`` <= 0: UserError.
    """
    n = check_subset_size(n, key)
    if n is None or n >= len(dataset):
        return dataset
    targets = getattr(dataset, "targets", None)
    if targets is None:
        g = torch.Generator().manual_seed(seed)
        idx = torch.randperm(len(dataset), generator=g)[:n]
    else:
        idx = stratified_order(targets, seed)[:n]
    idx, _ = torch.sort(idx)
    if isinstance(dataset, InMemoryImageDataset):
        return dataset.select(idx)
    sub = Subset(dataset, idx.tolist())
    # keep the handy attributes
    sub.targets = [int(targets[i]) for i in sub.indices] if targets is not None else None  # type: ignore[attr-defined]
    sub.classes = list(getattr(dataset, "classes", []))  # type: ignore[attr-defined]
    return sub

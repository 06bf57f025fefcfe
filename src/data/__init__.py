"""Datasets: ``build_datasets(cfg)`` -> :class:`DatasetBundle`.

``cfg`` is any object with :class:`src.config.DataConfig` attributes (a dataclass or an
OmegaConf DictConfig). Every dataset yields ``(float32 CHW tensor, int label)``.

=========  =============================================================================
digits     scikit-learn's bundled 8x8 digits; fixed stratified 80/20 split (1437/360)
mnist      torchvision MNIST idx files under ``root/MNIST/raw`` (default root data/mnist)
cifar10    ``root/cifar-10-batches-py`` or ``root/{train,test}/<class>/*.jpg``; in memory
cifar100   ``root/cifar-100-python`` or ``root/{train,test}/<class>/*.jpg``; in memory
imagenet   ``root/{train,val}/<wnid>/*`` decoded lazily
=========  =============================================================================

``train_subset`` / ``test_subset`` keep a deterministic, class-proportional subset chosen
with a fixed seed (identical in every process).
"""

from __future__ import annotations

from typing import Any, Callable, Dict

from src.data.cifar import RestrictedUnpickler, build_cifar10, build_cifar100, restricted_load
from src.data.common import DatasetBundle, InMemoryImageDataset, cfg_get, check_subset_size, take_subset
from src.data.digits import build_digits
from src.data.imagenet import build_imagenet
from src.data.mnist import build_mnist
from src.errors import UserError

DATASETS: Dict[str, Callable[[Any], DatasetBundle]] = {
    "digits": build_digits,
    "mnist": build_mnist,
    "cifar10": build_cifar10,
    "cifar100": build_cifar100,
    "imagenet": build_imagenet,
}


def build_datasets(cfg: Any) -> DatasetBundle:
    """Build the train/test datasets named by ``cfg.name`` (see the module docstring)."""
    name = str(cfg_get(cfg, "name", "")).lower()
    builder = DATASETS.get(name)
    if builder is None:
        raise UserError(f"unknown dataset '{cfg_get(cfg, 'name', '')}'; choose one of: {', '.join(DATASETS)}")
    # Validate subset sizes before any (possibly slow) loading.
    for key in ("train_subset", "test_subset"):
        check_subset_size(cfg_get(cfg, key, None), key)
    bundle = builder(cfg)
    bundle.train = take_subset(bundle.train, cfg_get(cfg, "train_subset", None), "train_subset")
    bundle.test = take_subset(bundle.test, cfg_get(cfg, "test_subset", None), "test_subset")
    return bundle


__all__ = [
    "DATASETS",
    "DatasetBundle",
    "InMemoryImageDataset",
    "RestrictedUnpickler",
    "build_datasets",
    "restricted_load",
]

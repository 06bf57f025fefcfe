"""MNIST read from the raw idx files by torchvision (no pickle)."""

from __future__ import annotations

import os
from typing import Any

import torch

from src.data.common import DatasetBundle, InMemoryImageDataset, cfg_get, check_augment, one_line, resolve_root
from src.errors import DataError

MNIST_MEAN = (0.1307,)
MNIST_STD = (0.3081,)
FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


def _load(root: str, train: bool, download: bool):
    from torchvision.datasets import MNIST

    raw = os.path.join(root, "MNIST", "raw")
    try:
        ds = MNIST(root, train=train, download=download)
    except RuntimeError as e:
        if download:
            raise DataError(
                f"could not download MNIST into '{raw}' ({one_line(e)}); "
                f"copy {', '.join(FILES)} into '{raw}' or retry on a connected machine"
            ) from None
        raise DataError(
            f"MNIST not found at '{raw}': expected {', '.join(FILES)} there; "
            f"pass data.root=PATH (the folder holding MNIST/raw) or data.download=true on a connected machine"
        ) from None
    except (AssertionError, ValueError, TypeError, KeyError, IndexError, OSError) as e:
        raise DataError(
            f"MNIST idx files under '{raw}' are corrupt or truncated ({one_line(e)}); delete them and download again"
        ) from None
    data, targets = ds.data, ds.targets
    if data.dtype != torch.uint8 or data.ndim != 3 or len(data) != len(targets):
        raise DataError(
            f"MNIST idx files under '{raw}' do not hold uint8 images with one label each; "
            f"delete them and download again"
        )
    if len(targets) and (int(targets.min()) < 0 or int(targets.max()) > 9):
        raise DataError(f"MNIST label file under '{raw}' holds labels outside 0..9; delete it and download again")
    return data.unsqueeze(1).contiguous(), targets.long()


def build_mnist(cfg: Any) -> DatasetBundle:
    check_augment(cfg, "mnist", ("none",))
    root = resolve_root(cfg, "data/mnist")
    download = bool(cfg_get(cfg, "download", False))
    x_train, y_train = _load(root, True, download)
    x_test, y_test = _load(root, False, False)
    if x_train.shape[1:] != x_test.shape[1:]:
        raise DataError(
            f"MNIST train and test images under '{root}' differ in size "
            f"({tuple(x_train.shape[2:])} vs {tuple(x_test.shape[2:])}); replace the idx files"
        )
    normalize = bool(cfg_get(cfg, "normalize", False))
    mean, std = (MNIST_MEAN, MNIST_STD) if normalize else (None, None)
    classes = [str(i) for i in range(10)]
    train = InMemoryImageDataset(x_train, y_train, mean=mean, std=std, classes=classes)
    test = InMemoryImageDataset(x_test, y_test, mean=mean, std=std, classes=classes)
    shape = tuple(int(s) for s in x_train.shape[1:])
    return DatasetBundle(train, test, num_classes=10, input_shape=shape, classes=classes, name="mnist")

"""scikit-learn's bundled 8x8 digits (1,797 images, no download)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from src.data.common import DatasetBundle, InMemoryImageDataset, cfg_get, check_augment

TEST_SIZE = 0.2
SPLIT_SEED = 0


def build_digits(cfg: Any) -> DatasetBundle:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    check_augment(cfg, "digits", ("none",))
    digits = load_digits()
    images = digits.images.astype(np.float32) / 16.0  # (1797, 8, 8) in [0, 1]
    labels = digits.target.astype(np.int64)
    idx = np.arange(len(labels))
    train_idx, test_idx = train_test_split(idx, test_size=TEST_SIZE, random_state=SPLIT_SEED, stratify=labels)
    x = torch.from_numpy(images).unsqueeze(1)  # (N, 1, 8, 8)
    y = torch.from_numpy(labels)
    x_train, x_test = x[torch.from_numpy(train_idx)], x[torch.from_numpy(test_idx)]
    if bool(cfg_get(cfg, "normalize", False)):
        # Scalar mean/std of the training pixels (no standard constants exist for this set).
        mean, std = x_train.mean(), x_train.std()
        x_train = (x_train - mean) / std
        x_test = (x_test - mean) / std
    classes = [str(c) for c in digits.target_names]
    train = InMemoryImageDataset(x_train, y[torch.from_numpy(train_idx)], classes=classes)
    test = InMemoryImageDataset(x_test, y[torch.from_numpy(test_idx)], classes=classes)
    return DatasetBundle(train, test, num_classes=10, input_shape=(1, 8, 8), classes=classes, name="digits")

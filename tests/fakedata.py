"""Tiny datasets written to disk in the on-disk formats the loaders read (no downloads)."""

from __future__ import annotations

import pickle
import struct

import numpy as np
import torch
from PIL import Image


def make_cifar_folder(root, classes=("cat", "dog", "frog"), n_train=3, n_test=2, fmt="png", seed=0):
    """root/{train,test}/<class>/NNNN.<fmt>; returns {split: [(uint8 CHW, label)]} in load order."""
    rng = np.random.default_rng(seed)
    expected = {"train": [], "test": []}
    for split, n in (("train", n_train), ("test", n_test)):
        for label, cls in enumerate(sorted(classes)):
            d = root / split / cls
            d.mkdir(parents=True)
            for i in range(n):
                arr = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
                Image.fromarray(arr).save(d / f"{i:04d}.{fmt}")
                expected[split].append((torch.from_numpy(arr).permute(2, 0, 1), label))
    return expected


def make_cifar10_batches(root, n_per_batch=4, protocol=2, bytes_keys=False, seed=0):
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)

    def key(k):
        return k.encode() if bytes_keys else k

    written = {"train": [], "test": []}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (n_per_batch, 3072), dtype=np.uint8)
        labels = [int(x) for x in rng.integers(0, 10, n_per_batch)]
        entry = {
            key("batch_label"): f"batch {name}",
            key("labels"): labels,
            key("data"): data,
            key("filenames"): [f"img_{i}.png" for i in range(n_per_batch)],
        }
        (folder / name).write_bytes(pickle.dumps(entry, protocol=protocol))
        written["test" if name == "test_batch" else "train"].append((data, labels))
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    meta = {key("num_cases_per_batch"): n_per_batch, key("label_names"): names, key("num_vis"): 3072}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=protocol))
    return folder, written, names


def write_idx(path, array):
    array = np.asarray(array, dtype=np.uint8)
    magic = 0x0800 | array.ndim  # type 0x08 = ubyte
    header = struct.pack(">I", magic) + b"".join(struct.pack(">I", s) for s in array.shape)
    path.write_bytes(header + array.tobytes())


def make_mnist(root, n_train=6, n_test=4, seed=0):
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    out = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n).astype(np.uint8)
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
        out[prefix] = (images, labels)
    return raw, out


def make_imagenet(root, classes=("n01440764", "n01443537"), n=2, size=(50, 40)):
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for cls in classes:
            d = root / split / cls
            d.mkdir(parents=True)
            for i in range(n):
                arr = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
                Image.fromarray(arr).save(d / f"img_{i}.JPEG")

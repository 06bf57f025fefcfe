#!/usr/bin/env python
"""The Keras cifar10_cnn example trained with gRDA for Keras 3 (grda.keras, src/optim/grda/keras.py).

    python scripts/analysis/keras_cifar10_cnn.py --data-root ../shared/data/cifar10 --epochs 2 \
        --train-subset 10000 --test-subset 2000 --mu 0.51 --out keras_grda.csv
    python scripts/analysis/keras_cifar10_cnn.py --optimizer adam --lr 0.005 --output softmax ...   # a Keras baseline

--optimizer sgd|adam runs Keras' own SGD / Adam (default arguments but the learning rate) instead of gRDA, to
check a baseline of the authors' figure in Keras itself. --output softmax ends the model as the authors' script
did (a softmax layer and categorical cross-entropy on probabilities, which Keras clips to [1e-7, 1 - 1e-7]);
the default, logits, uses cross-entropy from logits as the PyTorch harness does.

Data: an image folder, root/train/<class>/*.jpg and root/test/<class>/*.jpg, read with
keras.utils.image_dataset_from_directory (format "grain" when the grain package is installed,
else "tf", which needs TensorFlow), decoded once into memory, pixels / 255, no augmentation.
--train-subset / --test-subset N keep a seeded random N images of the split (the last N of
Keras' seeded file shuffle, via its validation_split machinery, so only those N are decoded).
Training: model.fit with batch 10 (the authors' setting), reshuffled every epoch.

Model (the Keras example): Conv32 same-ReLU-Conv32 valid-ReLU-MaxPool2-Dropout .25 ->
Conv64 same-ReLU-Conv64 valid-ReLU-MaxPool2-Dropout .25 -> Flatten -> Dense512-ReLU-Dropout .5
-> Dense(classes) logits, sparse categorical cross-entropy from logits (or softmax, see --output).

After every epoch one CSV row (and one stdout line): epoch, test_acc, nonzero_ratio (nonzero
entries over all trainable weights; gRDA's zeros are exact), test_loss, train_loss, train_acc,
threshold (gRDA's tau; empty for the baselines), lr, steps, seconds. Backend: $KERAS_BACKEND, default torch.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import math
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "torch")

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

IMAGE_SUFFIXES = (".bmp", ".gif", ".jpeg", ".jpg", ".png")  # keras' image_dataset_from_directory allowlist
COLUMNS = [
    "epoch",
    "test_acc",
    "nonzero_ratio",
    "test_loss",
    "train_loss",
    "train_acc",
    "threshold",
    "lr",
    "steps",
    "seconds",
]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--data-root", default="../shared/data/cifar10", help="folder with train/<class>/ and test/<class>/")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=10)
    p.add_argument("--lr", type=float, default=0.005)
    p.add_argument("--c", type=float, default=0.005)
    p.add_argument("--mu", type=float, default=0.51)
    p.add_argument(
        "--optimizer",
        choices=["grda", "sgd", "adam"],
        default="grda",
        help="gRDA (--lr, --c, --mu) or Keras' own SGD / Adam at --lr",
    )
    p.add_argument(
        "--output",
        choices=["logits", "softmax"],
        default="logits",
        help="logits + cross-entropy from logits, or the authors' softmax layer + clipped cross-entropy",
    )
    p.add_argument("--train-subset", type=int, default=None, metavar="N", help="a seeded random N training images")
    p.add_argument("--test-subset", type=int, default=None, metavar="N", help="a seeded random N test images")
    p.add_argument("--out", default="keras_cifar10_cnn_grda.csv", help="CSV written one row per epoch")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--loader-format",
        choices=["auto", "grain", "tf"],
        default="auto",
        help="image_dataset_from_directory format (auto: grain if installed, else tf)",
    )
    p.add_argument("--eval-batch-size", type=int, default=500)
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="intra-op threads (torch backend); 1 is fastest on a CPU shared with other jobs",
    )
    args = p.parse_args(argv)
    for name in ("epochs", "batch_size", "eval_batch_size", "threads"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    for name in ("train_subset", "test_subset"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    return args


def count_images(directory: Path) -> int:
    return sum(1 for f in directory.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file())


def loader_format(choice: str) -> str:
    if choice != "auto":
        return choice
    if importlib.util.find_spec("grain") is not None:
        return "grain"
    if importlib.util.find_spec("tensorflow") is not None:
        return "tf"
    raise RuntimeError("keras.utils.image_dataset_from_directory needs grain or tensorflow: pip install grain")


def load_split(directory: Path, subset, seed: int, fmt: str, class_names=None):
    """(x float32 NHWC in [0, 1], y int64, class names) of one split; decoded once."""
    import keras
    import numpy as np

    kwargs = {
        "labels": "inferred",
        "label_mode": "int",
        "class_names": class_names,
        "image_size": (32, 32),
        "batch_size": 500,
        "format": fmt,
        "verbose": False,
    }
    total = count_images(directory)
    if subset is not None and subset < total:
        # The seeded file shuffle, then the last `subset` files: only those get decoded.
        kwargs.update(shuffle=True, seed=seed, validation_split=(subset + 0.5) / total, subset="validation")
    else:
        kwargs.update(shuffle=False)
    ds = keras.utils.image_dataset_from_directory(str(directory), **kwargs)
    xs, ys = [], []
    for x, y in ds:
        xs.append(keras.ops.convert_to_numpy(x))
        ys.append(keras.ops.convert_to_numpy(y))
    x = np.concatenate(xs).astype(np.float32) / np.float32(255.0)
    y = np.concatenate(ys).astype(np.int64)
    return x, y, list(ds.class_names)


def build_model(num_classes: int, output: str = "logits"):
    import keras
    from keras import layers

    head = [layers.Activation("softmax")] if output == "softmax" else []

    return keras.Sequential(
        [
            keras.Input((32, 32, 3)),
            layers.Conv2D(32, 3, padding="same"),
            layers.Activation("relu"),
            layers.Conv2D(32, 3),
            layers.Activation("relu"),
            layers.MaxPooling2D(2),
            layers.Dropout(0.25),
            layers.Conv2D(64, 3, padding="same"),
            layers.Activation("relu"),
            layers.Conv2D(64, 3),
            layers.Activation("relu"),
            layers.MaxPooling2D(2),
            layers.Dropout(0.25),
            layers.Flatten(),
            layers.Dense(512),
            layers.Activation("relu"),
            layers.Dropout(0.5),
            layers.Dense(num_classes),
            *head,
        ],
        name="keras_cifar10_cnn",
    )


def nonzero_ratio(model) -> float:
    import numpy as np
    from keras import ops

    weights = [ops.convert_to_numpy(w) for w in model.trainable_weights]
    return sum(int(np.count_nonzero(w)) for w in weights) / sum(w.size for w in weights)


def build_optimizer(args):
    import keras

    if args.optimizer == "sgd":
        return keras.optimizers.SGD(learning_rate=args.lr)
    if args.optimizer == "adam":
        return keras.optimizers.Adam(learning_rate=args.lr)
    from grda.keras import GRDA

    return GRDA(learning_rate=args.lr, c=args.c, mu=args.mu)


def tau_text(threshold) -> str:
    return "" if threshold is None else f"tau {threshold:.3e}  "


def set_threads(keras, threads) -> None:
    """torch's intra-op threads; other backends ignore --threads (said once)."""
    if threads is None:
        return
    if keras.backend.backend() == "torch":
        import torch

        torch.set_num_threads(threads)
    else:
        print(f"warning: --threads only applies to the torch backend, not {keras.backend.backend()}", file=sys.stderr)


def epoch_logger(keras, optimizer, writer, handle):
    """A callback that writes one CSV row per epoch (accuracy, nonzero ratio, losses, threshold) and prints it."""

    class EpochLog(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            row = {
                "epoch": epoch + 1,
                "test_acc": logs.get("val_accuracy"),
                "nonzero_ratio": nonzero_ratio(self.model),
                "test_loss": logs.get("val_loss"),
                "train_loss": logs.get("loss"),
                "train_acc": logs.get("accuracy"),
                "threshold": getattr(optimizer, "threshold", None),
                "lr": float(keras.ops.convert_to_numpy(optimizer.learning_rate)),
                "steps": int(keras.ops.convert_to_numpy(optimizer.iterations)),
                "seconds": round(time.perf_counter() - self.start, 1),
            }
            writer.writerow(row)
            handle.flush()
            print(
                f"epoch {row['epoch']}: test_acc {row['test_acc']:.4f}  nonzero_ratio {row['nonzero_ratio']:.4f}  "
                f"train_loss {row['train_loss']:.4f}  train_acc {row['train_acc']:.4f}  "
                f"{tau_text(row['threshold'])}{row['seconds']}s",
                flush=True,
            )

    return EpochLog()


def main(argv=None) -> int:
    args = parse_args(argv)
    root = Path(args.data_root)
    missing = [str(root / s) for s in ("train", "test") if not (root / s).is_dir()]
    if missing:
        print(
            f"error: CIFAR-10 image folder not found: {', '.join(missing)} "
            "(expected root/train/<class>/*.jpg and root/test/<class>/*.jpg)",
            file=sys.stderr,
        )
        return 2
    try:
        fmt = loader_format(args.loader_format)
    except RuntimeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    import keras

    set_threads(keras, args.threads)
    keras.utils.set_random_seed(args.seed)
    t0 = time.perf_counter()
    x_train, y_train, class_names = load_split(root / "train", args.train_subset, args.seed, fmt)
    x_test, y_test, _ = load_split(root / "test", args.test_subset, args.seed, fmt, class_names=class_names)
    print(
        f"keras {keras.__version__} backend={keras.backend.backend()} loader={fmt}: "
        f"{len(x_train)} train / {len(x_test)} test images, {len(class_names)} classes, "
        f"loaded in {time.perf_counter() - t0:.1f}s",
        flush=True,
    )

    model = build_model(len(class_names), args.output)
    optimizer = build_optimizer(args)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=args.output == "logits")
    model.compile(optimizer=optimizer, loss=loss, metrics=["accuracy"])
    steps_per_epoch = math.ceil(len(x_train) / args.batch_size)
    described = (
        f"gRDA lr={args.lr} c={args.c} mu={args.mu}"
        if args.optimizer == "grda"
        else f"keras {type(optimizer).__name__} lr={args.lr}"
    )
    print(
        f"{described}, {args.output} output, batch {args.batch_size} ({steps_per_epoch} steps/epoch), "
        f"{model.count_params()} parameters -> {args.out}",
        flush=True,
    )

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        handle.flush()
        model.fit(
            x_train,
            y_train,
            batch_size=args.batch_size,
            epochs=args.epochs,
            shuffle=True,
            validation_data=(x_test, y_test),
            validation_batch_size=args.eval_batch_size,
            verbose=0,
            callbacks=[epoch_logger(keras, optimizer, writer, handle)],
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""ImageNet (ILSVRC-2012) from class folders ``root/train/<wnid>/*`` and ``root/val/<wnid>/*``.

Images are decoded lazily per item (the set is far too large to hold in memory).
"""

from __future__ import annotations

import os
from typing import Any

from src.data.common import DatasetBundle, check_augment, one_line, resolve_root
from src.errors import DataError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def safe_pil_loader(path: str):
    """torchvision's PIL loader, turning an undecodable file into a DataError naming it."""
    from PIL import Image, UnidentifiedImageError

    try:
        with open(path, "rb") as f:
            img = Image.open(f)
            return img.convert("RGB")
    except (OSError, SyntaxError, ValueError, UnidentifiedImageError, Image.DecompressionBombError) as e:
        raise DataError(f"cannot decode image '{path}' ({one_line(e)}); replace or delete the file") from None


def imagenet_transforms(train_augment: bool):
    from torchvision import transforms as T

    normalize = T.Normalize(IMAGENET_MEAN, IMAGENET_STD)
    eval_tf = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(), normalize])
    if not train_augment:
        return eval_tf, eval_tf
    train_tf = T.Compose([T.RandomResizedCrop(224), T.RandomHorizontalFlip(), T.ToTensor(), normalize])
    return train_tf, eval_tf


def _image_folder(split_dir: str, transform, root: str):
    from torchvision.datasets import ImageFolder

    hint = f"expected '{root}/train/<wnid>/*.JPEG' and '{root}/val/<wnid>/*.JPEG' (val sorted into class folders)"
    if not os.path.isdir(split_dir):
        raise DataError(f"ImageNet folder '{split_dir}' is missing; {hint}; pass data.root=PATH")
    try:
        return ImageFolder(split_dir, transform=transform, loader=safe_pil_loader)
    except FileNotFoundError as e:
        raise DataError(f"no usable class folders in '{split_dir}' ({one_line(str(e))}); {hint}") from None


def build_imagenet(cfg: Any) -> DatasetBundle:
    augment = check_augment(cfg, "imagenet", ("none", "imagenet"))
    root = resolve_root(cfg, "data/imagenet")
    train_tf, eval_tf = imagenet_transforms(augment == "imagenet")
    train = _image_folder(os.path.join(root, "train"), train_tf, root)
    val = _image_folder(os.path.join(root, "val"), eval_tf, root)
    if train.classes != val.classes:
        only_train = sorted(set(train.classes) - set(val.classes))[:5]
        only_val = sorted(set(val.classes) - set(train.classes))[:5]
        raise DataError(
            f"class folders differ between '{root}/train' and '{root}/val' "
            f"(only in train: {only_train or 'none'}; only in val: {only_val or 'none'}); "
            f"both must hold the same <wnid> folders"
        )
    return DatasetBundle(
        train,
        val,
        num_classes=len(train.classes),
        input_shape=(3, 224, 224),
        classes=list(train.classes),
        name="imagenet",
    )

"""CIFAR-10 / CIFAR-100 held in memory as one uint8 tensor (N, 3, 32, 32).

Two on-disk layouts are read, detected automatically under ``root``:

* torchvision's python batches (``root/cifar-10-batches-py`` or ``root/cifar-100-python``),
  read with a restricted unpickler that only rebuilds numpy arrays, lists, dicts and strings;
* an image folder ``root/train/<class>/*.{jpg,jpeg,png}`` and ``root/test/<class>/*``,
  decoded once with PIL; classes sorted by name.

With neither present and ``download=true``, torchvision fetches and extracts the python
batches (nothing is unpickled by torchvision).
"""

from __future__ import annotations

import io
import os
import pickle
from dataclasses import dataclass
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np
import torch

from src.data.common import (
    DatasetBundle,
    InMemoryImageDataset,
    RandomCropFlip,
    cfg_get,
    check_augment,
    one_line,
    resolve_root,
)
from src.errors import DataError, UserError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")


@dataclass(frozen=True)
class CifarSpec:
    name: str  # cifar10 | cifar100
    title: str  # CIFAR-10
    default_root: str
    batch_folder: str
    train_files: Tuple[str, ...]
    test_files: Tuple[str, ...]
    meta_file: str
    meta_key: str
    label_key: str
    mean: Tuple[float, float, float]
    std: Tuple[float, float, float]
    tv_class: str  # torchvision.datasets class used to download


CIFAR10 = CifarSpec(
    name="cifar10",
    title="CIFAR-10",
    default_root="data/cifar10",
    batch_folder="cifar-10-batches-py",
    train_files=tuple(f"data_batch_{i}" for i in range(1, 6)),
    test_files=("test_batch",),
    meta_file="batches.meta",
    meta_key="label_names",
    label_key="labels",
    mean=(0.4914, 0.4822, 0.4465),
    std=(0.2470, 0.2435, 0.2616),
    tv_class="CIFAR10",
)

CIFAR100 = CifarSpec(
    name="cifar100",
    title="CIFAR-100",
    default_root="data/cifar100",
    batch_folder="cifar-100-python",
    train_files=("train",),
    test_files=("test",),
    meta_file="meta",
    meta_key="fine_label_names",
    label_key="fine_labels",
    mean=(0.5071, 0.4865, 0.4409),
    std=(0.2673, 0.2564, 0.2762),
    tv_class="CIFAR100",
)


# Other mean/std pairs that `data.normalization` selects instead of a dataset's own statistics (`own`).
NORMALIZATIONS: Dict[str, Tuple[Tuple[float, float, float], Tuple[float, float, float]]] = {
    # The widely copied CIFAR-10 constants (the std is not CIFAR-10's per-pixel std above): the authors' data.py
    # (Transforms.CIFAR10.ResNet, and CIFAR100 = CIFAR10) normalises CIFAR-10 and CIFAR-100 with them for the WRN.
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),
    # ImageNet's: the authors' data.py normalises CIFAR-10 with them for the VGG (Transforms.CIFAR10.VGG).
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}


def normalization_stats(cfg: Any, spec: CifarSpec) -> Tuple[Tuple[float, float, float], Tuple[float, float, float]]:
    """(mean, std) that ``data.normalize`` applies: the dataset's own or the pair ``data.normalization`` names."""
    choice = str(cfg_get(cfg, "normalization", "own")).lower()
    if choice == "own":
        return spec.mean, spec.std
    if choice not in NORMALIZATIONS:
        raise UserError(f"unknown data.normalization '{choice}'; choose one of: own, {', '.join(NORMALIZATIONS)}")
    return NORMALIZATIONS[choice]


# ---------------------------------------------------------------------------- restricted unpickling


def _numpy_globals() -> Dict[Tuple[str, str], Any]:
    """The only globals a CIFAR batch needs: numpy array/dtype/scalar reconstruction."""
    try:  # numpy >= 2
        from numpy._core import multiarray as _ma
        from numpy._core import numeric as _num
    except ImportError:  # numpy 1.x
        from numpy.core import multiarray as _ma  # type: ignore[no-redef]
        from numpy.core import numeric as _num  # type: ignore[no-redef]
    import _codecs

    allowed: Dict[Tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        # python-3 pickles of bytes at protocol < 3
        ("_codecs", "encode"): _codecs.encode,
    }
    for mod in ("numpy.core", "numpy._core"):
        allowed[(f"{mod}.multiarray", "_reconstruct")] = _ma._reconstruct
        allowed[(f"{mod}.multiarray", "scalar")] = _ma.scalar
        if hasattr(_num, "_frombuffer"):
            allowed[(f"{mod}.numeric", "_frombuffer")] = _num._frombuffer
    return allowed


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only numpy array-reconstruction globals.

    Anything else (``os.system``, ``builtins.eval``, arbitrary classes...) raises
    ``pickle.UnpicklingError`` before it is looked up, so nothing foreign is executed.
    """

    _allowed: Dict[Tuple[str, str], Any] = {}

    def find_class(self, module: str, name: str) -> Any:
        if not RestrictedUnpickler._allowed:
            RestrictedUnpickler._allowed = _numpy_globals()
        try:
            return RestrictedUnpickler._allowed[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refusing to load global '{module}.{name}': only numpy arrays are allowed"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("refusing persistent ids")


def restricted_load(data: bytes | io.BufferedIOBase, encoding: str = "latin1") -> Any:
    """Unpickle ``data`` (bytes or a binary file) allowing only numpy array globals."""
    f = io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else data
    return RestrictedUnpickler(f, encoding=encoding).load()


def _str_keys(d: Dict[Any, Any]) -> Dict[str, Any]:
    return {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in d.items()}


def _read_batch_file(path: str) -> Dict[str, Any]:
    try:
        with open(path, "rb") as f:
            obj = restricted_load(f)
    except FileNotFoundError:
        raise DataError(
            f"missing CIFAR batch file '{path}'; re-extract the archive or delete the folder and download again"
        ) from None
    except pickle.UnpicklingError as e:
        raise DataError(
            f"refusing to read '{path}': {one_line(str(e))}; replace it with the original CIFAR batch file"
        ) from None
    except Exception as e:  # truncated / not a pickle
        raise DataError(
            f"cannot read CIFAR batch file '{path}' ({one_line(e)}); "
            f"it is corrupt: delete the folder and download again"
        ) from None
    if not isinstance(obj, dict):
        raise DataError(f"CIFAR batch file '{path}' does not hold a dict; replace it with the original file")
    return _str_keys(obj)


def _read_python_batches(folder: str, spec: CifarSpec, files: Sequence[str]) -> Tuple[torch.Tensor, torch.Tensor]:
    datas, labels = [], []
    for name in files:
        path = os.path.join(folder, name)
        entry = _read_batch_file(path)
        data = entry.get("data")
        lab = entry.get(spec.label_key)
        if not isinstance(data, np.ndarray) or lab is None:
            raise DataError(
                f"CIFAR batch file '{path}' lacks 'data' or '{spec.label_key}'; "
                f"is it a {spec.title} batch? replace it with the original file"
            )
        lab = np.asarray(lab)
        if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(lab) != len(data):
            raise DataError(
                f"CIFAR batch file '{path}' holds data of shape {data.shape} and dtype {data.dtype} "
                f"with {len(lab)} labels; expected uint8 (N, 3072) with N labels; replace it with the original file"
            )
        if lab.dtype.kind not in "iu":
            raise DataError(f"CIFAR batch file '{path}' holds non-integer labels; replace it with the original file")
        datas.append(data)
        labels.append(lab.astype(np.int64))
    x = torch.from_numpy(np.concatenate(datas).reshape(-1, 3, 32, 32).copy())
    y = torch.from_numpy(np.concatenate(labels))
    return x, y


def _load_python_layout(folder: str, spec: CifarSpec):
    meta_path = os.path.join(folder, spec.meta_file)
    meta = _read_batch_file(meta_path)
    names = meta.get(spec.meta_key)
    if not isinstance(names, (list, tuple)) or not names:
        raise DataError(f"CIFAR meta file '{meta_path}' lacks '{spec.meta_key}'; replace it with the original file")
    classes = [n.decode("latin1") if isinstance(n, bytes) else str(n) for n in names]
    x_train, y_train = _read_python_batches(folder, spec, spec.train_files)
    x_test, y_test = _read_python_batches(folder, spec, spec.test_files)
    for y in (y_train, y_test):
        if len(y) and (int(y.min()) < 0 or int(y.max()) >= len(classes)):
            raise DataError(
                f"CIFAR batches in '{folder}' hold labels outside 0..{len(classes) - 1}; "
                f"replace them with the original files"
            )
    return x_train, y_train, x_test, y_test, classes


# ---------------------------------------------------------------------------- image folder


def _layout_hint(spec: CifarSpec, root: str) -> str:
    return (
        f"expected '{root}/train/<class>/*.jpg' and '{root}/test/<class>/*.jpg' "
        f"(same class folders in both), or '{root}/{spec.batch_folder}'"
    )


def _scan_split(split_dir: str, spec: CifarSpec, root: str) -> Dict[str, List[str]]:
    """class name -> sorted image paths; DataError on a wrong or empty layout."""
    if not os.path.isdir(split_dir):
        raise DataError(f"{spec.title} folder '{split_dir}' is missing; {_layout_hint(spec, root)}")
    class_dirs, loose_images = [], []
    with os.scandir(split_dir) as it:
        for e in it:
            if e.name.startswith("."):
                continue
            if e.is_dir():
                class_dirs.append(e.name)
            elif e.name.lower().endswith(IMAGE_EXTENSIONS):
                loose_images.append(e.name)
    if loose_images:
        raise DataError(
            f"found images directly in '{split_dir}' (e.g. '{sorted(loose_images)[0]}'); "
            f"put each image in a folder named after its class: {_layout_hint(spec, root)}"
        )
    if not class_dirs:
        raise DataError(f"no class folders in '{split_dir}'; {_layout_hint(spec, root)}")
    out: Dict[str, List[str]] = {}
    for cls in sorted(class_dirs):
        d = os.path.join(split_dir, cls)
        with os.scandir(d) as it:
            files = sorted(
                e.name for e in it if not e.name.startswith(".") and e.name.lower().endswith(IMAGE_EXTENSIONS)
            )
        if not files:
            raise DataError(f"class folder '{d}' holds no .jpg/.jpeg/.png images; add its images or remove the folder")
        out[cls] = [os.path.join(d, f) for f in files]
    return out


def _decode_images(paths: Sequence[str]) -> torch.Tensor:
    """Decode 32x32 images into one uint8 tensor (N, 3, 32, 32); DataError names a bad file.

    Sequential on purpose: per-image cost is mostly Python header parsing (~80 us), so
    threads only add GIL contention.
    """
    from PIL import Image, UnidentifiedImageError

    n = len(paths)
    flat = np.empty((n, 32 * 32 * 3), dtype=np.uint8)
    for k, path in enumerate(paths):
        try:
            with Image.open(path) as im:
                if im.size != (32, 32):
                    raise DataError(f"image '{path}' is {im.size[0]}x{im.size[1]}, expected 32x32; resize or remove it")
                if im.mode != "RGB":
                    im = im.convert("RGB")
                flat[k] = np.frombuffer(im.tobytes(), dtype=np.uint8)
        except DataError:
            raise
        except (OSError, SyntaxError, ValueError, UnidentifiedImageError, Image.DecompressionBombError) as e:
            raise DataError(f"cannot decode image '{path}' ({one_line(e)}); replace or delete the file") from None
    return torch.from_numpy(flat).view(n, 32, 32, 3).permute(0, 3, 1, 2).contiguous()


def _load_folder_layout(root: str, spec: CifarSpec):
    train = _scan_split(os.path.join(root, "train"), spec, root)
    test = _scan_split(os.path.join(root, "test"), spec, root)
    if list(train) != list(test):
        only_train = sorted(set(train) - set(test))
        only_test = sorted(set(test) - set(train))
        raise DataError(
            f"class folders differ between '{root}/train' and '{root}/test' "
            f"(only in train: {only_train or 'none'}; only in test: {only_test or 'none'}); "
            f"both must hold the same <class> folders"
        )
    classes = list(train)

    def flatten(split: Dict[str, List[str]]):
        paths, labels = [], []
        for i, cls in enumerate(classes):
            paths.extend(split[cls])
            labels.extend([i] * len(split[cls]))
        return paths, torch.tensor(labels, dtype=torch.long)

    p_train, y_train = flatten(train)
    p_test, y_test = flatten(test)
    return _decode_images(p_train), y_train, _decode_images(p_test), y_test, classes


# ---------------------------------------------------------------------------- entry point


def _find_batch_folder(root: str, spec: CifarSpec) -> str | None:
    candidate = os.path.join(root, spec.batch_folder)
    if os.path.isdir(candidate):
        return candidate
    # root may be the batch folder itself
    if os.path.isfile(os.path.join(root, spec.meta_file)) and os.path.isfile(os.path.join(root, spec.test_files[0])):
        return root
    return None


def _download(root: str, spec: CifarSpec) -> str:
    """Fetch + extract the python batches with torchvision (no unpickling); return the folder."""
    import torchvision.datasets as tvd
    from torchvision.datasets.utils import download_and_extract_archive

    cls = getattr(tvd, spec.tv_class)
    try:
        os.makedirs(root, exist_ok=True)
        download_and_extract_archive(cls.url, root, filename=cls.filename, md5=cls.tgz_md5)
    except Exception as e:
        raise DataError(
            f"could not download {spec.title} into '{root}' ({one_line(e)}); "
            f"retry on a connected machine or put the data there by hand"
        ) from None
    folder = _find_batch_folder(root, spec)
    if folder is None:
        raise DataError(
            f"downloaded {spec.title} but '{root}/{spec.batch_folder}' is missing; delete '{root}' and retry"
        )
    return folder


def load_cifar_arrays(root: str, spec: CifarSpec, download: bool = False):
    """(x_train uint8 (N,3,32,32), y_train, x_test, y_test, classes) from whichever layout is there."""
    batch_folder = _find_batch_folder(root, spec)
    if batch_folder is not None:
        return _load_python_layout(batch_folder, spec)
    if os.path.isdir(os.path.join(root, "train")) or os.path.isdir(os.path.join(root, "test")):
        return _load_folder_layout(root, spec)
    if download:
        return _load_python_layout(_download(root, spec), spec)
    raise DataError(
        f"{spec.title} not found at '{root}': expected root/train/<class>/*.jpg and root/test/<class>/*.jpg, "
        f"or root/{spec.batch_folder}; pass data.root=PATH or data.download=true on a connected machine"
    )


def build_cifar(cfg: Any, spec: CifarSpec) -> DatasetBundle:
    augment = check_augment(cfg, spec.name, ("none", "crop_flip"))
    stats = normalization_stats(cfg, spec)  # checked before the (slow) loading
    root = resolve_root(cfg, spec.default_root)
    x_train, y_train, x_test, y_test, classes = load_cifar_arrays(root, spec, bool(cfg_get(cfg, "download", False)))
    normalize = bool(cfg_get(cfg, "normalize", False))
    mean, std = stats if normalize else (None, None)
    train = InMemoryImageDataset(
        x_train,
        y_train,
        mean=mean,
        std=std,
        classes=classes,
        augment=RandomCropFlip(4) if augment == "crop_flip" else None,
    )
    test = InMemoryImageDataset(x_test, y_test, mean=mean, std=std, classes=classes)
    return DatasetBundle(
        train, test, num_classes=len(classes), input_shape=(3, 32, 32), classes=classes, name=spec.name
    )


def build_cifar10(cfg: Any) -> DatasetBundle:
    return build_cifar(cfg, CIFAR10)


def build_cifar100(cfg: Any) -> DatasetBundle:
    return build_cifar(cfg, CIFAR100)

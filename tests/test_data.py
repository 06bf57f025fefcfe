"""Dataset builders: every dataset is generated in tmp_path (no downloads, no real data)."""

from __future__ import annotations

import io
import os
import pickle
import struct
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from src.data import DATASETS, RestrictedUnpickler, build_datasets, restricted_load
from src.data.cifar import CIFAR10
from src.data.common import RandomCropFlip, stratified_order
from src.errors import DataError, UserError
from tests.fakedata import make_cifar10_batches, make_cifar_folder, make_imagenet, make_mnist

CIFAR10_MEAN = torch.tensor(CIFAR10.mean).view(3, 1, 1)
CIFAR10_STD = torch.tensor(CIFAR10.std).view(3, 1, 1)


def cfg(name, **kw):
    base = dict(
        name=name,
        root=None,
        download=False,
        train_subset=None,
        test_subset=None,
        augment="none",
        normalize=False,
        eval_batch_size=64,
    )
    base.update(kw)
    return SimpleNamespace(**base)


# ---------------------------------------------------------------------------- helpers


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


# ---------------------------------------------------------------------------- registry / config


def test_registry_and_unknown_name():
    assert set(DATASETS) == {"digits", "mnist", "cifar10", "cifar100", "imagenet"}
    with pytest.raises(UserError, match=r"unknown dataset 'svhn'; choose one of: .*cifar10"):
        build_datasets(cfg("svhn"))


def test_accepts_dictconfig():
    from omegaconf import OmegaConf

    from src.config import DataConfig

    c = OmegaConf.structured(DataConfig(name="digits", train_subset=100))
    b = build_datasets(c)
    assert len(b.train) == 100 and len(b.test) == 360


def test_unknown_or_wrong_augment_is_user_error():
    with pytest.raises(UserError, match="augment"):
        build_datasets(cfg("digits", augment="mixup"))
    with pytest.raises(UserError, match="augment"):
        build_datasets(cfg("digits", augment="crop_flip"))


# ---------------------------------------------------------------------------- digits


def test_digits_sizes_shapes_and_determinism():
    a = build_datasets(cfg("digits"))
    b = build_datasets(cfg("digits"))
    assert (len(a.train), len(a.test)) == (1437, 360)
    assert a.num_classes == 10 and a.input_shape == (1, 8, 8) and a.classes == [str(i) for i in range(10)]
    x, y = a.train[0]
    assert x.shape == (1, 8, 8) and x.dtype == torch.float32 and isinstance(y, int)
    assert 0.0 <= float(a.train.images.min()) and float(a.train.images.max()) <= 1.0
    assert torch.equal(a.train.images, b.train.images) and torch.equal(a.test.targets, b.test.targets)
    # stratified: every class in both splits
    assert set(a.test.targets.tolist()) == set(range(10))
    n = build_datasets(cfg("digits", normalize=True))
    assert abs(float(n.train.images.mean())) < 1e-4
    assert abs(float(n.train.images.std()) - 1.0) < 1e-3


def test_digits_dataloader_batches():
    b = build_datasets(cfg("digits"))
    x, y = next(iter(torch.utils.data.DataLoader(b.train, batch_size=16)))
    assert x.shape == (16, 1, 8, 8) and y.dtype == torch.int64


# ---------------------------------------------------------------------------- cifar image folder


def test_cifar_folder_shapes_labels_classes(tmp_path):
    expected = make_cifar_folder(tmp_path)
    b = build_datasets(cfg("cifar10", root=str(tmp_path)))
    assert b.classes == ["cat", "dog", "frog"] and b.num_classes == 3 and b.input_shape == (3, 32, 32)
    assert (len(b.train), len(b.test)) == (9, 6)
    for split, ds in (("train", b.train), ("test", b.test)):
        for i, (img, label) in enumerate(expected[split]):
            x, y = ds[i]
            assert x.dtype == torch.float32 and x.shape == (3, 32, 32)
            assert y == label
            torch.testing.assert_close(x, img.float() / 255)


def test_cifar_folder_jpg_and_grayscale(tmp_path):
    make_cifar_folder(tmp_path, fmt="jpg")
    Image.fromarray(np.full((32, 32), 200, np.uint8), mode="L").save(tmp_path / "train" / "cat" / "gray.png")
    b = build_datasets(cfg("cifar10", root=str(tmp_path)))
    assert len(b.train) == 10
    x, y = b.train[3]  # cat/: 0000.jpg 0001.jpg 0002.jpg gray.png
    assert y == 0 and x.shape == (3, 32, 32)
    torch.testing.assert_close(x, torch.full((3, 32, 32), 200 / 255))


def test_cifar_normalize(tmp_path):
    expected = make_cifar_folder(tmp_path)
    b = build_datasets(cfg("cifar10", root=str(tmp_path), normalize=True))
    x, _ = b.test[0]
    img = expected["test"][0][0].float() / 255
    torch.testing.assert_close(x, (img - CIFAR10_MEAN) / CIFAR10_STD)


def test_cifar_augment_changes_train_only(tmp_path):
    make_cifar_folder(tmp_path)
    b = build_datasets(cfg("cifar10", root=str(tmp_path), augment="crop_flip"))
    torch.manual_seed(0)
    train_views = [b.train[0][0] for _ in range(20)]
    assert any(not torch.equal(train_views[0], v) for v in train_views[1:])
    test_views = [b.test[0][0] for _ in range(20)]
    assert all(torch.equal(test_views[0], v) for v in test_views[1:])
    # without augmentation the training set is fixed too
    plain = build_datasets(cfg("cifar10", root=str(tmp_path)))
    assert torch.equal(plain.train[0][0], plain.train[0][0])


def test_random_crop_flip_is_a_padded_window():
    img = torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8)
    padded = torch.zeros(3, 40, 40, dtype=torch.uint8)
    padded[:, 4:36, 4:36] = img
    windows = []
    for i in range(9):
        for j in range(9):
            w = padded[:, i : i + 32, j : j + 32]
            windows += [w, w.flip(-1)]
    aug = RandomCropFlip(4)
    torch.manual_seed(1)
    seen = set()
    for _ in range(200):
        out = aug(img)
        assert out.shape == img.shape and out.dtype == torch.uint8
        matches = [k for k, w in enumerate(windows) if torch.equal(out, w)]
        assert matches, "output is not a crop of the zero-padded image (or its mirror)"
        seen.add(matches[0])
    assert len(seen) > 50  # offsets and flips actually vary


@pytest.mark.parametrize("case", ["loose_images", "no_class_folders", "empty_class", "class_mismatch", "no_test"])
def test_cifar_wrong_layout(tmp_path, case):
    root = tmp_path / "cifar"
    if case == "loose_images":
        (root / "train").mkdir(parents=True)
        (root / "test" / "cat").mkdir(parents=True)
        Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(root / "train" / "a.png")
        Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(root / "test" / "cat" / "a.png")
        where = str(root / "train")
    elif case == "no_class_folders":
        (root / "train").mkdir(parents=True)
        (root / "test").mkdir(parents=True)
        where = str(root / "train")
    elif case == "empty_class":
        make_cifar_folder(root)
        (root / "train" / "zebra").mkdir()
        where = str(root / "train" / "zebra")
    elif case == "class_mismatch":
        make_cifar_folder(root)
        d = root / "test" / "zebra"
        d.mkdir()
        Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(d / "a.png")
        where = "zebra"
    else:
        make_cifar_folder(root)
        import shutil

        shutil.rmtree(root / "test")
        where = str(root / "test")
    with pytest.raises(DataError) as info:
        build_datasets(cfg("cifar10", root=str(root)))
    msg = str(info.value)
    assert where in msg and "\n" not in msg


def test_cifar_missing_root(tmp_path):
    root = tmp_path / "nowhere"
    with pytest.raises(DataError) as info:
        build_datasets(cfg("cifar10", root=str(root)))
    msg = str(info.value)
    assert str(root.resolve()) in msg and "cifar-10-batches-py" in msg and "data.download=true" in msg
    with pytest.raises(DataError, match="cifar-100-python"):
        build_datasets(cfg("cifar100", root=str(root)))


def test_cifar_relative_root_is_reported_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError) as info:
        build_datasets(cfg("cifar10"))  # default root data/cifar10
    assert str(tmp_path / "data" / "cifar10") in str(info.value)


def test_cifar_corrupt_image(tmp_path):
    make_cifar_folder(tmp_path)
    (tmp_path / "train" / "dog" / "x.jpg").write_bytes(b"this is not a jpeg at all" * 10)
    with pytest.raises(DataError) as info:
        build_datasets(cfg("cifar10", root=str(tmp_path)))
    assert str(tmp_path / "train" / "dog" / "x.jpg") in str(info.value)


def test_cifar_wrong_image_size(tmp_path):
    make_cifar_folder(tmp_path)
    Image.fromarray(np.zeros((30, 31, 3), np.uint8)).save(tmp_path / "test" / "cat" / "big.png")
    with pytest.raises(DataError, match="big.png.*31x30"):
        build_datasets(cfg("cifar10", root=str(tmp_path)))


# ---------------------------------------------------------------------------- cifar python batches


@pytest.mark.parametrize("protocol,bytes_keys", [(2, False), (2, True), (4, False), (5, False)])
def test_cifar10_python_batches(tmp_path, protocol, bytes_keys):
    _, written, names = make_cifar10_batches(tmp_path, protocol=protocol, bytes_keys=bytes_keys)
    b = build_datasets(cfg("cifar10", root=str(tmp_path)))
    assert b.classes == names and b.num_classes == 10
    assert (len(b.train), len(b.test)) == (20, 4)
    data, labels = written["train"][1]  # data_batch_2
    x, y = b.train[4 + 2]
    assert y == labels[2]
    torch.testing.assert_close(x, torch.from_numpy(data[2].reshape(3, 32, 32)).float() / 255)
    data, labels = written["test"][0]
    assert [b.test[i][1] for i in range(4)] == labels


class _Py2StylePickler(pickle._Pickler):
    """Writes bytes as Python 2 ``str`` (BINSTRING), like the real CIFAR files from cPickle."""

    dispatch = pickle._Pickler.dispatch.copy()

    def _save_py2_str(self, obj):
        self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)

    dispatch[bytes] = _save_py2_str


def _py2_dumps(obj):
    buf = io.BytesIO()
    _Py2StylePickler(buf, protocol=2).dump(obj)
    # Python 2's numpy lives at numpy.core, not numpy._core
    return buf.getvalue().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")


def test_cifar10_python2_style_batches(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(1)
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (3, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, 3)]
        blob = _py2_dumps({b"data": data, b"labels": labels, b"batch_label": b"x", b"filenames": [b"a", b"b", b"c"]})
        assert b"numpy.core.multiarray" in blob and b"_codecs" not in blob
        (folder / name).write_bytes(blob)
        batches[name] = (data, labels)
    names = [f"c{i}".encode() for i in range(10)]
    (folder / "batches.meta").write_bytes(_py2_dumps({b"label_names": names, b"num_vis": 3072}))
    b = build_datasets(cfg("cifar10", root=str(tmp_path)))
    assert b.classes == [f"c{i}" for i in range(10)]
    data, labels = batches["test_batch"]
    for i in range(3):
        x, y = b.test[i]
        assert y == labels[i]
        torch.testing.assert_close(x, torch.from_numpy(data[i].reshape(3, 32, 32)).float() / 255)


def test_cifar_download_path(tmp_path, monkeypatch):
    import torchvision.datasets.utils as tvu

    calls = []

    def fake_download(url, download_root, filename=None, md5=None, **kw):
        calls.append((url, filename))
        make_cifar10_batches(tmp_path / "dl")

    monkeypatch.setattr(tvu, "download_and_extract_archive", fake_download)
    b = build_datasets(cfg("cifar10", root=str(tmp_path / "dl"), download=True))
    assert len(b.train) == 20 and calls and calls[0][1] == "cifar-10-python.tar.gz"

    def offline(*a, **kw):
        raise OSError("network unreachable")

    monkeypatch.setattr(tvu, "download_and_extract_archive", offline)
    with pytest.raises(DataError, match="could not download CIFAR-100 into .*network unreachable"):
        build_datasets(cfg("cifar100", root=str(tmp_path / "dl100"), download=True))


def test_cifar_batch_folder_as_root(tmp_path):
    folder, _, _ = make_cifar10_batches(tmp_path)
    b = build_datasets(cfg("cifar10", root=str(folder)))
    assert len(b.train) == 20


def test_cifar100_python_batches(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    rng = np.random.default_rng(0)
    fine = [f"class_{i:02d}" for i in range(100)]
    for name, n in (("train", 7), ("test", 3)):
        entry = {
            "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            "fine_labels": [int(v) for v in rng.integers(0, 100, n)],
            "coarse_labels": [int(v) for v in rng.integers(0, 20, n)],
            "filenames": [f"f{i}" for i in range(n)],
        }
        (folder / name).write_bytes(pickle.dumps(entry, protocol=2))
    meta = {"fine_label_names": fine, "coarse_label_names": [f"c{i}" for i in range(20)]}
    (folder / "meta").write_bytes(pickle.dumps(meta, protocol=2))
    b = build_datasets(cfg("cifar100", root=str(tmp_path), normalize=True))
    assert b.num_classes == 100 and b.classes == fine and (len(b.train), len(b.test)) == (7, 3)
    assert b.train[0][0].shape == (3, 32, 32)


def test_cifar_missing_batch_file(tmp_path):
    folder, _, _ = make_cifar10_batches(tmp_path)
    (folder / "data_batch_3").unlink()
    with pytest.raises(DataError, match="data_batch_3"):
        build_datasets(cfg("cifar10", root=str(tmp_path)))


def test_cifar_truncated_batch_file(tmp_path):
    folder, _, _ = make_cifar10_batches(tmp_path)
    blob = (folder / "test_batch").read_bytes()
    (folder / "test_batch").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DataError, match="test_batch"):
        build_datasets(cfg("cifar10", root=str(tmp_path)))


def test_restricted_unpickler_refuses_code(tmp_path):
    marker = tmp_path / "pwned"
    evil = pickle.dumps({"data": _Evil(marker)}, protocol=2)
    with pytest.raises(pickle.UnpicklingError, match="os|posix|system"):
        restricted_load(evil)
    with pytest.raises(pickle.UnpicklingError):
        RestrictedUnpickler(io.BytesIO(pickle.dumps(_Evil(marker)))).load()
    # builtins such as eval/exec/getattr are refused too
    eval_pickle = b"cbuiltins\neval\n(V__import__('os').system('touch " + str(marker).encode() + b"')\ntR."
    with pytest.raises(pickle.UnpicklingError, match="builtins.eval"):
        restricted_load(eval_pickle)
    assert not marker.exists()
    # plain numpy data still loads
    arr = np.arange(6, dtype=np.uint8).reshape(2, 3)
    out = restricted_load(pickle.dumps({"a": arr, "l": [1, "x", b"y"]}, protocol=2))
    assert np.array_equal(out["a"], arr) and out["l"] == [1, "x", b"y"]


def test_malicious_cifar_batch_is_data_error_and_not_executed(tmp_path):
    folder, _, _ = make_cifar10_batches(tmp_path)
    marker = tmp_path / "pwned"
    (folder / "test_batch").write_bytes(pickle.dumps({"data": _Evil(marker), "labels": [0]}, protocol=2))
    with pytest.raises(DataError) as info:
        build_datasets(cfg("cifar10", root=str(tmp_path)))
    assert "test_batch" in str(info.value)
    assert not marker.exists()


def test_object_array_pickle_is_refused_or_rejected(tmp_path):
    # An object-dtype array nests arbitrary objects; they go through the same find_class.
    marker = tmp_path / "pwned"
    arr = np.empty(1, dtype=object)
    arr[0] = _Evil(marker)
    with pytest.raises(pickle.UnpicklingError):
        restricted_load(pickle.dumps(arr, protocol=2))
    assert not marker.exists()


# ---------------------------------------------------------------------------- mnist


def test_mnist_idx_files(tmp_path):
    raw, written = make_mnist(tmp_path)
    b = build_datasets(cfg("mnist", root=str(tmp_path)))
    assert (len(b.train), len(b.test)) == (6, 4)
    assert b.input_shape == (1, 28, 28) and b.num_classes == 10
    x, y = b.train[1]
    assert x.shape == (1, 28, 28) and x.dtype == torch.float32 and isinstance(y, int)
    assert y == int(written["train"][1][1])
    torch.testing.assert_close(x[0], torch.from_numpy(written["train"][0][1]).float() / 255)
    n = build_datasets(cfg("mnist", root=str(tmp_path), normalize=True))
    torch.testing.assert_close(n.test[0][0], (b.test[0][0] - 0.1307) / 0.3081)


def test_mnist_missing_and_corrupt(tmp_path):
    with pytest.raises(DataError) as info:
        build_datasets(cfg("mnist", root=str(tmp_path)))
    msg = str(info.value)
    assert str(tmp_path / "MNIST" / "raw") in msg and "data.download=true" in msg
    raw, _ = make_mnist(tmp_path / "m")
    (raw / "t10k-images-idx3-ubyte").write_bytes(b"\x00\x00\x00\x00garbage")
    with pytest.raises(DataError, match="MNIST"):
        build_datasets(cfg("mnist", root=str(tmp_path / "m")))


# ---------------------------------------------------------------------------- imagenet


def test_imagenet_folder(tmp_path):
    make_imagenet(tmp_path)
    b = build_datasets(cfg("imagenet", root=str(tmp_path), augment="imagenet"))
    assert b.classes == ["n01440764", "n01443537"] and b.num_classes == 2 and b.input_shape == (3, 224, 224)
    assert (len(b.train), len(b.test)) == (4, 4)
    x, y = b.train[3]
    assert x.shape == (3, 224, 224) and x.dtype == torch.float32 and y == 1
    v1, v2 = b.test[0][0], b.test[0][0]
    assert v1.shape == (3, 224, 224) and torch.equal(v1, v2)
    plain = build_datasets(cfg("imagenet", root=str(tmp_path), augment="none"))
    assert torch.equal(plain.train[0][0], plain.train[0][0])


def test_imagenet_missing_and_corrupt(tmp_path):
    with pytest.raises(DataError) as info:
        build_datasets(cfg("imagenet", root=str(tmp_path)))
    assert str(tmp_path / "train") in str(info.value)
    make_imagenet(tmp_path)
    bad = tmp_path / "val" / "n01440764" / "broken.JPEG"
    bad.write_bytes(b"\xff\xd8 garbage")
    b = build_datasets(cfg("imagenet", root=str(tmp_path)))
    idx = [i for i, (p, _) in enumerate(b.test.samples) if p.endswith("broken.JPEG")][0]
    with pytest.raises(DataError, match="broken.JPEG"):
        b.test[idx]


def test_imagenet_flat_val_is_data_error(tmp_path):
    make_imagenet(tmp_path)
    import shutil

    shutil.rmtree(tmp_path / "val")
    (tmp_path / "val").mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "val" / "ILSVRC2012_val_00000001.JPEG")
    with pytest.raises(DataError, match="val"):
        build_datasets(cfg("imagenet", root=str(tmp_path)))


# ---------------------------------------------------------------------------- subsets


def test_subset_deterministic_and_stratified(tmp_path):
    make_cifar_folder(tmp_path, n_train=5, n_test=4)
    c = cfg("cifar10", root=str(tmp_path), train_subset=6, test_subset=3)
    a, b = build_datasets(c), build_datasets(c)
    assert (len(a.train), len(a.test)) == (6, 3)
    assert torch.equal(a.train.images, b.train.images) and torch.equal(a.test.images, b.test.images)
    assert torch.bincount(a.train.targets).tolist() == [2, 2, 2]
    assert sorted(a.test.targets.tolist()) == [0, 1, 2]
    big = build_datasets(cfg("cifar10", root=str(tmp_path), train_subset=10_000))
    assert len(big.train) == 15


def test_subset_digits_and_imagenet(tmp_path):
    d = build_datasets(cfg("digits", train_subset=100, test_subset=50))
    assert (len(d.train), len(d.test)) == (100, 50)
    counts = torch.bincount(d.train.targets, minlength=10)
    assert int(counts.min()) >= 9 and int(counts.max()) <= 11
    make_imagenet(tmp_path, n=3)
    im = build_datasets(cfg("imagenet", root=str(tmp_path), train_subset=2))
    assert len(im.train) == 2 and sorted(im.train.targets) == [0, 1]
    assert im.train[0][0].shape == (3, 224, 224)


@pytest.mark.parametrize("bad", [0, -3, 2.5, "ten", True])
def test_subset_bad_size(bad):
    with pytest.raises(UserError, match="train_subset"):
        build_datasets(cfg("digits", train_subset=bad))


def test_stratified_order_prefixes_are_proportional():
    targets = [0] * 60 + [1] * 30 + [2] * 10
    order = stratified_order(targets)
    assert sorted(order.tolist()) == list(range(100))
    first = torch.tensor(targets)[order[:10]]
    assert torch.bincount(first).tolist() == [6, 3, 1]
    assert torch.equal(order, stratified_order(targets))

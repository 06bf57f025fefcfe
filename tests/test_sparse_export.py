"""src/sparse_export.py: round trips bit for bit (zeros as +0.0), the ResNet-50 size target, a real gRDA checkpoint,
errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from omegaconf import OmegaConf
from torch import nn

from src.checkpoint import extract_state_dict, load_checkpoint, load_model_weights
from src.data import build_datasets
from src.errors import CheckpointError, UserError
from src.models import build_model
from src.sparse_export import describe_export, export_checkpoint, export_sparse, load_sparse, read_metadata
from tests.helpers import train


def bits(t: torch.Tensor) -> torch.Tensor:
    """The raw bytes of a tensor: equal bits means equal values, NaN payloads and signs of zeros."""
    return t.contiguous().reshape(-1).view(torch.uint8)


def canonical(t: torch.Tensor) -> torch.Tensor:
    """t with every -0.0 made +0.0: what the export stores (every other bit is kept)."""
    if not t.is_floating_point():
        return t
    return torch.where(t == 0, torch.zeros((), dtype=t.dtype), t)


def assert_identical(got, want):
    """got restores want bit for bit, except that its zeros are +0.0."""
    assert list(got) == list(want), "key order changed"
    for name, t in want.items():
        assert got[name].dtype == t.dtype, name
        assert got[name].shape == t.shape, name
        assert torch.equal(bits(got[name]), bits(canonical(t))), name
        if got[name].is_floating_point():
            assert not (torch.signbit(got[name]) & (got[name] == 0)).any(), f"{name}: a zero restored as -0.0"


def sparsify(t: torch.Tensor, fraction: float, gen: torch.Generator) -> torch.Tensor:
    t = t.clone()
    t[torch.rand(t.shape, generator=gen) < fraction] = 0
    return t


def layouts(path):
    return json.loads(read_metadata(path)["tensors"])


def _stored_names(path):
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return list(f.keys())


def test_round_trip_mixed_dtypes_is_bit_identical(tmp_path):
    g = torch.Generator().manual_seed(0)
    sd = {
        "conv.weight": sparsify(torch.randn(16, 8, 3, 3, generator=g), 0.9, g),
        "fc.weight": sparsify(torch.randn(64, 100, generator=g), 0.7, g).bfloat16(),
        "fc.bias": sparsify(torch.randn(1000, generator=g), 0.95, g).half(),
        "fc64.weight": sparsify(torch.randn(50, 50, generator=g, dtype=torch.float64), 0.8, g),
        "dense.weight": torch.randn(32, 32, generator=g),  # no zeros at all
        "all_zero.weight": torch.zeros(256, 128),
        "bn.running_mean": torch.randn(16, generator=g),
        "bn.num_batches_tracked": torch.tensor(123, dtype=torch.int64),
        "ids": torch.arange(1000, dtype=torch.int64).reshape(10, 100),
        "flags": torch.rand(40, generator=g) < 0.5,
        "scalar": torch.tensor(-2.5),
        "scalar_zero": torch.tensor(0.0, dtype=torch.bfloat16),
        "empty": torch.zeros(0, 7),
        "transposed": sparsify(torch.randn(40, 30, generator=g), 0.9, g).t(),  # not contiguous
        "dense_negzero": torch.randn(64, generator=g),  # stored dense, with a -0.0 among its values
        "scalar_negzero": torch.tensor(-0.0),
    }
    # Special values: NaN (with its payload) and +-inf are kept as values; -0.0 is stored as +0.0.
    sd["conv.weight"].view(-1)[:4] = torch.tensor([float("nan"), float("inf"), -float("inf"), -0.0])
    sd["conv.weight"].view(-1)[4:5].view(torch.int32).fill_(0x7FC00123)  # a NaN with a payload
    sd["fc.bias"][:3] = torch.tensor([-0.0, 0.0, -0.0])
    sd["dense_negzero"][5] = -0.0
    path = tmp_path / "m.safetensors"
    report = export_sparse(sd, path)
    assert_identical(load_sparse(path), sd)

    enc = {k: v["encoding"] for k, v in layouts(path).items()}
    for name in ("conv.weight", "fc.weight", "fc.bias", "fc64.weight", "all_zero.weight", "transposed"):
        assert enc[name] == "sparse", name
    for name in (
        "dense.weight",
        "bn.running_mean",
        "bn.num_batches_tracked",
        "ids",
        "flags",
        "scalar",
        "scalar_zero",
        "empty",
        "dense_negzero",
        "scalar_negzero",
    ):
        assert enc[name] == "dense", name
    info = layouts(path)
    assert not any("negzero" in v for v in info.values())
    assert not any(k.endswith("::negzero") for k in _stored_names(path)), "no sign bits spent on zeros"
    restored = load_sparse(path)
    for name in ("fc.bias", "dense_negzero"):
        assert torch.equal(restored[name], sd[name])  # numerically equal
    assert restored["conv.weight"].view(-1)[4:5].view(torch.int32).item() == 0x7FC00123
    assert info["all_zero.weight"]["nnz"] == 0
    assert report["num_tensors"] == len(sd) and report["sparse_tensors"] == 6
    assert report["export_bytes"] == path.stat().st_size
    assert report["dense_bytes"] == sum(t.numel() * t.element_size() for t in sd.values())
    # An all-zero 256x128 fp32 tensor (128 KiB dense) costs its 4 KiB bitmask.
    assert path.stat().st_size < report["dense_bytes"]


def test_sparse_form_is_only_used_when_smaller(tmp_path):
    g = torch.Generator().manual_seed(1)
    sd = {
        "half_zero": sparsify(torch.randn(1000, generator=g), 0.5, g),  # 125 + 2000 B < 4000 B: sparse
        "few_zeros": sparsify(torch.randn(1000, generator=g), 0.02, g),  # 125 + 3920 B > 4000 B: dense
        "tiny_zero": torch.zeros(4),  # header overhead outweighs 16 bytes: dense
        "neg_zeros": -sparsify(torch.rand(1000, generator=g) + 1, 0.9, g),  # zeros of a negated tensor are -0.0
    }
    path = tmp_path / "m.safetensors"
    export_sparse(sd, path)
    info = layouts(path)
    assert [info[k]["encoding"] for k in sd] == ["sparse", "dense", "dense", "sparse"]
    assert int(torch.signbit(sd["neg_zeros"][sd["neg_zeros"] == 0]).sum()) > 800
    assert_identical(load_sparse(path), sd)  # the -0.0 come back as +0.0


def test_resnet50_at_90_percent_zeros_exports_under_15_mb(tmp_path):
    """Zeros made by multiplying by a 0/1 mask, so that about half of them are -0.0 (a magnitude-pruning mask
    applied to the weights does this): they cost nothing, and the model restores numerically equal."""
    torch.manual_seed(0)
    model = torchvision.models.resnet50(weights=None)
    assert sum(p.numel() for p in model.parameters()) == 25_557_032
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.weight.mul_((torch.rand_like(m.weight) >= 0.9).float())
    weights = [m.weight for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    zeros = sum(int((w == 0).sum()) for w in weights)
    negative_zeros = sum(int((torch.signbit(w) & (w == 0)).sum()) for w in weights)
    assert zeros > 0.89 * sum(w.numel() for w in weights) and negative_zeros > 0.4 * zeros
    model.eval()
    path = tmp_path / "resnet50.safetensors"
    report = export_sparse(model.state_dict(), path)
    assert report["dense_fp32_bytes"] > 100e6
    assert path.stat().st_size <= 15e6, f"{path.stat().st_size / 1e6:.1f} MB"
    print(f"ResNet-50 at 90% zeros: export {path.stat().st_size:,} bytes, dense fp32 {report['dense_fp32_bytes']:,}")

    sd = load_sparse(path)
    assert_identical(sd, model.state_dict())
    assert all(torch.equal(sd[k], v) for k, v in model.state_dict().items()), "numerically equal"
    restored = torchvision.models.resnet50(weights=None)
    restored.load_state_dict(sd)
    restored.eval()
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(restored(x), model(x))


def test_exports_with_a_negzero_mask_still_load(tmp_path):
    """Exports written before zeros were stored as +0.0 carry NAME::negzero (the zeros' sign bits): they still load,
    with their -0.0 restored."""
    from safetensors.torch import save_file

    t = torch.tensor([0.0, 1.5, -0.0, 0.0, -2.0, -0.0, 0.0, 0.0, 0.0, 3.0])
    nonzero = (t != 0).numpy()
    signs = torch.signbit(t[t == 0]).numpy()
    stored = {
        "w::mask": torch.from_numpy(np.packbits(nonzero)),
        "w::values": t[t != 0].clone(),
        "w::negzero": torch.from_numpy(np.packbits(signs)),
    }
    layout = {"w": {"encoding": "sparse", "dtype": "float32", "shape": [10], "nnz": 3, "negzero": True}}
    path = tmp_path / "old.safetensors"
    save_file(stored, path, metadata={"format": "grda-sparse", "format_version": "1", "tensors": json.dumps(layout)})
    assert torch.equal(bits(load_sparse(path)["w"]), bits(t))


@pytest.fixture(scope="module")
def grda_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("grda") / "run"
    train(run_dir, "optim=grda", "trainer.epochs=10", "trainer.threads=1")
    return run_dir


def eval_logits(model, dataset):
    model.eval()
    x = torch.stack([dataset[i][0] for i in range(len(dataset))])
    with torch.no_grad():
        return model(x)


def test_real_grda_checkpoint_exports_small_and_evaluates_identically(grda_run, tmp_path):
    ckpt_path = grda_run / "checkpoint.pth"
    out = tmp_path / "export" / "model.safetensors"
    report = export_checkpoint(ckpt_path, out)
    ckpt = load_checkpoint(ckpt_path)
    sd = extract_state_dict(ckpt, ckpt_path)
    zeros = sum(int((t == 0).sum()) for t in sd.values())
    assert zeros / sum(t.numel() for t in sd.values()) > 0.3  # gRDA did prune
    # The checkpoint holds weights + gRDA accumulators (+ history); the export only sparse weights.
    assert report["export_bytes"] < report["checkpoint_bytes"] / 3
    assert report["export_bytes"] < report["dense_bytes"]
    assert report["checkpoint_bytes"] == ckpt_path.stat().st_size
    text = describe_export(report)
    assert str(out) in text and f"{report['export_bytes']:,} bytes" in text and "\n" not in text
    meta = read_metadata(out)
    assert json.loads(meta["config"]) == ckpt["config"] and meta["source"] == "checkpoint.pth"

    restored = load_sparse(out)
    assert_identical(restored, sd)
    cfg = OmegaConf.create(ckpt["config"])
    bundle = build_datasets(cfg.data)
    a = build_model(cfg.model, bundle.num_classes, bundle.input_shape)
    b = build_model(cfg.model, bundle.num_classes, bundle.input_shape)
    load_model_weights(a, sd, ckpt_path)
    load_model_weights(b, restored, out)
    assert torch.equal(eval_logits(a, bundle.test), eval_logits(b, bundle.test))


def test_errors_are_one_line(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_sparse(tmp_path / "missing.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00\x01not a safetensors file")
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        load_sparse(junk)
    from safetensors.torch import save_file

    plain = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(3)}, plain)
    with pytest.raises(CheckpointError, match="not a sparse export"):
        load_sparse(plain)
    with pytest.raises(CheckpointError, match="not found"):
        export_checkpoint(tmp_path / "missing.pth", tmp_path / "out.safetensors")
    (tmp_path / "bad.pth").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        export_checkpoint(tmp_path / "bad.pth", tmp_path / "out.safetensors")
    torch.save({"epoch": 3}, tmp_path / "noweights.pth")
    with pytest.raises(CheckpointError, match="holds no model weights"):
        export_checkpoint(tmp_path / "noweights.pth", tmp_path / "out.safetensors")
    with pytest.raises(UserError, match="reserved"):
        export_sparse({"a::mask": torch.zeros(3)}, tmp_path / "x.safetensors")
    with pytest.raises(UserError, match="non-empty"):
        export_sparse({}, tmp_path / "x.safetensors")
    torch.save({"w": torch.zeros(10)}, tmp_path / "same.pth")
    with pytest.raises(UserError, match="overwrite its input"):
        export_checkpoint(tmp_path / "same.pth", tmp_path / "same.pth")
    for err in (CheckpointError, UserError):
        assert issubclass(err, UserError)


def test_damaged_export_names_the_tensor(tmp_path):
    from safetensors import safe_open
    from safetensors.torch import save_file

    path = tmp_path / "m.safetensors"
    export_sparse({"w": sparsify(torch.randn(1000), 0.9, torch.Generator().manual_seed(0))}, path)
    with safe_open(str(path), framework="pt") as f:
        meta, stored = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    stored["w::values"] = stored["w::values"][:-1]  # one value lost
    save_file(stored, path, metadata=meta)
    with pytest.raises(CheckpointError, match="damaged sparse export: tensor 'w'"):
        load_sparse(path)


def test_failed_export_leaves_old_file_and_no_temp(tmp_path, monkeypatch):
    import safetensors.torch

    path = tmp_path / "m.safetensors"
    export_sparse({"w": torch.zeros(100)}, path)
    before = path.read_bytes()

    def half_written(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(safetensors.torch, "save_file", half_written)
    with pytest.raises(UserError, match="cannot write .*No space left on device"):
        export_sparse({"w": torch.ones(100)}, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]

"""grda.lightning.SparsityCallback and the package's example LightningModule (src/optim/examples/lightning_example.py):
what the callback logs, and that resuming a Lightning checkpoint continues bit-identically on the CPU."""

from __future__ import annotations

import csv
import importlib.util
import warnings
from pathlib import Path

import pytest
import torch

L = pytest.importorskip("lightning")

from lightning.pytorch.callbacks import ModelCheckpoint  # noqa: E402
from lightning.pytorch.loggers import CSVLogger  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

import grda  # noqa: E402
from grda import GRDA  # noqa: E402
from grda.lightning import SparsityCallback  # noqa: E402

EXAMPLE = Path(__file__).resolve().parents[1] / "src" / "optim" / "examples" / "lightning_example.py"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::UserWarning"),  # Lightning's advice on workers and logging intervals
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]


def example():
    spec = importlib.util.spec_from_file_location("grda_lightning_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def trainer(root: Path, epochs: int, callbacks=(), logger=False) -> "L.Trainer":
    return L.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        devices=1,
        logger=logger,
        callbacks=list(callbacks),
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=any(isinstance(c, ModelCheckpoint) for c in callbacks),
        default_root_dir=root,
        deterministic=True,
    )


def loader(ex):
    # no shuffling: the data order must not depend on RNG state that a Lightning checkpoint does not hold
    return DataLoader(ex.synthetic_data(n=256), batch_size=32, shuffle=False)


def test_callback_logs_sparsity_per_layer_and_threshold(tmp_path):
    ex = example()
    torch.manual_seed(0)
    model = ex.GRDAClassifier()
    callback = SparsityCallback(every_n_steps=4)
    logger = CSVLogger(tmp_path, name="logs")
    t = trainer(tmp_path, 3, callbacks=[callback], logger=logger)
    t.fit(model, loader(ex))

    rows = list(csv.DictReader(open(Path(logger.log_dir) / "metrics.csv")))
    names = [n for n, _ in model.named_parameters()]
    keys = {"grda/sparsity", "grda/threshold", *(f"grda/sparsity/{n}" for n in names)}
    assert keys <= set(rows[0]), sorted(rows[0])
    logged_steps = sorted({int(r["step"]) for r in rows if r.get("grda/sparsity")})
    assert {4, 8, 12, 16, 20} <= set(logged_steps), logged_steps  # every 4 optimizer steps, plus each epoch's end
    last = [r for r in rows if r.get("grda/sparsity") and r.get("epoch") == "2"][-1]
    opt = t.optimizers[0]
    assert isinstance(opt, GRDA)
    assert float(last["grda/sparsity"]) == pytest.approx(grda.sparsity(model), abs=1e-7)
    assert float(last["grda/threshold"]) == pytest.approx(max(opt.thresholds()), rel=1e-6)
    for name, value in grda.layer_sparsity(model).items():
        assert float(last[f"grda/sparsity/{name}"]) == pytest.approx(value, abs=1e-7)
    assert 0.05 < grda.sparsity(model) < 1, "the example prunes"
    # monitorable: the epoch-level values reach callback_metrics
    assert float(t.callback_metrics["grda/sparsity"]) == pytest.approx(grda.sparsity(model), abs=1e-7)


def test_resuming_a_checkpoint_continues_bit_identically(tmp_path):
    ex = example()
    torch.manual_seed(0)
    straight = ex.GRDAClassifier()
    checkpoints = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_top_k=-1, every_n_epochs=1)
    t = trainer(tmp_path / "a", 4, callbacks=[checkpoints, SparsityCallback()])
    t.fit(straight, loader(ex))
    middle = sorted((tmp_path / "ckpt").glob("epoch=1-*.ckpt"))
    assert len(middle) == 1, list((tmp_path / "ckpt").iterdir())

    torch.manual_seed(123)  # other initial weights: everything must come from the checkpoint
    resumed = ex.GRDAClassifier()
    t2 = trainer(tmp_path / "b", 4, callbacks=[SparsityCallback()])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t2.fit(resumed, loader(ex), ckpt_path=middle[0])

    for (name, p), q in zip(straight.named_parameters(), resumed.parameters()):
        assert torch.equal(p, q), name
    a, b = t.optimizers[0], t2.optimizers[0]
    for p, q in zip(straight.parameters(), resumed.parameters()):
        assert torch.equal(a.state[p]["accumulator"], b.state[q]["accumulator"])
        assert a.state[p]["tau"] == b.state[q]["tau"] and a.state[p]["step"] == b.state[q]["step"] == 32
    assert grda.sparsity(straight) > 0.05

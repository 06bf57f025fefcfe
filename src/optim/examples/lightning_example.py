"""gRDA in a LightningModule, with the sparsity callback: a small classifier on synthetic data (runs on a CPU in
seconds; no download).

    pip install "grda[lightning]"
    python lightning_example.py            # logs to ./lightning_logs (CSV): grda/sparsity, grda/threshold, ...

Resuming (``trainer.fit(model, ckpt_path=...)``) restores GRDA's state (accumulators, step counts, thresholds) from
the checkpoint and continues bit-identically.
"""

from __future__ import annotations

import lightning as L
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from grda import GRDA
from grda.lightning import SparsityCallback


class GRDAClassifier(L.LightningModule):
    def __init__(self, lr: float = 0.05, c: float = 0.2, mu: float = 0.51, features: int = 20, classes: int = 3):
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(nn.Linear(features, 64), nn.ReLU(), nn.Linear(64, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.cross_entropy(self(x), y)
        self.log("train_loss", loss)
        return loss

    def configure_optimizers(self):
        hp = self.hparams
        return GRDA(self.parameters(), lr=hp.lr, c=hp.c, mu=hp.mu)


def synthetic_data(n: int = 512, features: int = 20, classes: int = 3, seed: int = 0) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, features, generator=g)
    y = (x[:, :classes] * torch.arange(1, classes + 1)).argmax(dim=1)  # depends on a few features only
    return TensorDataset(x, y)


def main() -> None:
    L.seed_everything(0)
    loader = DataLoader(synthetic_data(), batch_size=32, shuffle=True)
    trainer = L.Trainer(
        max_epochs=5,
        callbacks=[SparsityCallback()],
        logger=L.pytorch.loggers.CSVLogger("."),
        accelerator="cpu",
        enable_progress_bar=False,
    )
    model = GRDAClassifier()
    trainer.fit(model, loader)
    print(
        f"sparsity {trainer.callback_metrics['grda/sparsity']:.3f}, "
        f"threshold {trainer.callback_metrics['grda/threshold']:.4f}"
    )


if __name__ == "__main__":
    main()

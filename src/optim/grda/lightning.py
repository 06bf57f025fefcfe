"""A Lightning callback that logs what gRDA does: global and per-layer sparsity, and the soft threshold.

    import lightning as L
    from grda.lightning import SparsityCallback
    trainer = L.Trainer(callbacks=[SparsityCallback()], logger=...)   # any logger: TensorBoard, CSV, W&B...

Logged (names under ``prefix``, default ``"grda/"``): ``sparsity`` (fraction of exact zeros over the trainable
parameters), ``threshold`` (the largest tau of the GRDA optimizers), and ``sparsity/<parameter name>`` per
parameter (``per_layer=True``). At the end of every training epoch through ``LightningModule.log`` (so the values
reach every logger the Trainer has, and ``ModelCheckpoint``/``EarlyStopping`` may monitor them), and with
``every_n_steps=N`` also every N optimizer steps, straight to the Trainer's loggers. Sharded models (FSDP2's
DTensors) are counted with one all-reduce of zero counts (:func:`grda.zero_counts`), on every rank.

Uses ``lightning`` (``lightning.pytorch``) if installed, else ``pytorch_lightning``.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

from grda.optimizer import GRDA
from grda.stats import zero_counts

try:
    from lightning.pytorch import Callback
except ImportError:  # the standalone package
    from pytorch_lightning import Callback

__all__ = ["SparsityCallback"]


class SparsityCallback(Callback):
    """Log gRDA's global and per-layer sparsity and its threshold to the Trainer's loggers.

    Args:
        per_layer: also log ``sparsity/<parameter name>`` for every trainable parameter.
        every_n_steps: also log every this many optimizer steps (None: only at the end of each training epoch).
        prefix: prefix of the logged names.
    """

    def __init__(self, per_layer: bool = True, every_n_steps: Optional[int] = None, prefix: str = "grda/") -> None:
        if every_n_steps is not None and every_n_steps < 1:
            raise ValueError(f"every_n_steps must be >= 1 or None, got {every_n_steps}")
        self.per_layer = per_layer
        self.every_n_steps = every_n_steps
        self.prefix = prefix
        self.last: Dict[str, float] = {}  # what was logged last
        self._logged_step: Optional[int] = None  # with gradient accumulation several batches end at one step

    def metrics(self, trainer: Any, pl_module: Any) -> Dict[str, float]:
        """The values to log now (a collective under distributed training: every rank calls it)."""
        counts = zero_counts(pl_module)
        zeros, total = sum(z for z, _ in counts.values()), sum(n for _, n in counts.values())
        taus = [tau for opt in trainer.optimizers if isinstance(opt, GRDA) for tau in opt.thresholds()]
        out = {
            f"{self.prefix}sparsity": zeros / total if total else 0.0,
            f"{self.prefix}threshold": max(taus, default=0.0),
        }
        if self.per_layer:
            out.update({f"{self.prefix}sparsity/{name}": z / n if n else 0.0 for name, (z, n) in counts.items()})
        self.last = out
        return out

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        step = trainer.global_step
        if self.every_n_steps is None or step == 0 or step % self.every_n_steps or step == self._logged_step:
            return
        self._logged_step = step
        metrics = self.metrics(trainer, pl_module)
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=step)

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        pl_module.log_dict(self.metrics(trainer, pl_module), on_step=False, on_epoch=True, sync_dist=False)

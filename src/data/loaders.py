"""DataLoaders of a run: the train loader's order and augmentation are seeded per epoch, so a resumed run draws
exactly what an uninterrupted one would have; under DDP each rank takes its share."""

from __future__ import annotations

import os

import torch
from omegaconf import DictConfig
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler, Subset

from src.config import data_seed
from src.data.common import InMemoryImageDataset
from src.distributed import Dist


def auto_workers(cfg: DictConfig, dataset, world: Dist) -> int:
    if cfg.trainer.workers >= 0:
        return cfg.trainer.workers
    base = dataset.dataset if isinstance(dataset, Subset) else dataset
    if isinstance(base, InMemoryImageDataset) and base.augment is None:
        return 0  # in-memory tensors: worker processes would only add IPC
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(8, cpus // max(1, world.local_world_size) - 1))


def build_loaders(cfg: DictConfig, bundle, world: Dist, device):
    per_rank_batch = cfg.trainer.batch_size // world.world_size
    workers = auto_workers(cfg, bundle.train, world)
    common = dict(
        num_workers=workers,
        pin_memory=cfg.trainer.pin_memory and device.type == "cuda",
        persistent_workers=cfg.trainer.persistent_workers and workers > 0,
    )
    if world.enabled:
        sampler = DistributedSampler(bundle.train, world.world_size, world.rank, shuffle=True, seed=data_seed(cfg))
    else:
        sampler = RandomSampler(bundle.train, generator=torch.Generator())
    train_loader = DataLoader(
        bundle.train,
        batch_size=per_rank_batch,
        sampler=sampler,
        drop_last=False,
        generator=torch.Generator(),
        **common,
    )
    # Each rank evaluates its own slice of the test set (no padding, so every image counts once).
    test = Subset(bundle.test, range(world.rank, len(bundle.test), world.world_size)) if world.enabled else bundle.test
    test_loader = DataLoader(test, batch_size=cfg.data.eval_batch_size, shuffle=False, **common)
    return train_loader, test_loader


def set_loader_epoch(loader: DataLoader, seed: int, epoch: int) -> None:
    if isinstance(loader.sampler, DistributedSampler):
        loader.sampler.set_epoch(epoch)
    else:
        loader.sampler.generator.manual_seed(seed)
    loader.generator.manual_seed(seed + 1)  # worker seeds (augmentation in workers)

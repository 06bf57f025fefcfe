"""Structured config schema, registered in Hydra's ConfigStore.

The YAML files under ``configs/`` are merged onto these dataclasses, so a misspelt key
or a value of the wrong type fails at composition time with a message naming the key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf


@dataclass
class ModelConfig:
    name: str = "mlp"
    # WideResNet
    depth: int = 28
    widen_factor: int = 10
    dropout: float = 0.0
    conv_bias: bool = True
    # MLP
    hidden: List[int] = field(default_factory=lambda: [128, 128])
    # Start from these weights (a harness checkpoint, a bare state_dict, or {'state_dict': ...}).
    init_from: Optional[str] = None
    # Performance switches (off by default where they can change numerics).
    channels_last: bool = False
    compile: bool = False


@dataclass
class DataConfig:
    name: str = "digits"
    root: Optional[str] = None
    download: bool = False
    train_subset: Optional[int] = None
    test_subset: Optional[int] = None
    # none | crop_flip (RandomCrop(32, padding=4) + flip) | imagenet (RandomResizedCrop(224) + flip)
    augment: str = "none"
    # Subtract the dataset mean and divide by its std; False keeps pixels / 255 (the Keras example).
    normalize: bool = False
    # Test-set images per evaluation batch.
    eval_batch_size: int = 512


@dataclass
class OptimConfig:
    name: str = "grda"
    lr: float = 0.01
    # gRDA
    c: float = 0.0
    mu: float = 0.7
    # SGD
    momentum: float = 0.0
    nesterov: bool = False
    weight_decay: float = 0.0
    # Adam / Adagrad
    betas: List[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-7
    # Batch size that `lr` was tuned for; when the global batch differs, lr is scaled linearly.
    # None: use lr as given.
    reference_batch_size: Optional[int] = None
    # Implementation choice for GRDA: auto | fused | compiled | foreach | reference (see src/optim/grda.py)
    impl: str = "auto"


@dataclass
class ScheduleConfig:
    # constant | step | wrn
    name: str = "constant"
    # step: multiply lr by gamma at each epoch in milestones (epochs counted from 0).
    milestones: List[int] = field(default_factory=list)
    gamma: float = 0.1
    # wrn: constant until flat_fraction of training, linear to final_fraction*lr at decay_end_fraction.
    flat_fraction: float = 0.5
    decay_end_fraction: float = 0.9
    final_fraction: float = 0.01


@dataclass
class PruneConfig:
    # none | gmp (gradual magnitude pruning, Zhu & Gupta 2017, the paper's comparison)
    name: str = "none"
    final_sparsity: float = 0.9
    initial_sparsity: float = 0.0
    # pruning runs from start_fraction to end_fraction of all optimizer steps, every `frequency` steps
    start_fraction: float = 0.0
    end_fraction: float = 0.75
    frequency: int = 100


@dataclass
class TrainerConfig:
    epochs: int = 20
    batch_size: int = 32
    # auto | cpu | cuda | cuda:N
    device: str = "auto"
    # AMP autocast dtype on CUDA: bf16 (off by default because it changes numerics).
    amp: bool = False
    workers: int = -1  # -1: choose from the CPU count
    threads: int = -1  # torch intra-op threads per process; -1: PyTorch's default
    pin_memory: bool = True
    persistent_workers: bool = True
    log_interval: int = 50  # optimizer steps between TensorBoard scalar writes
    sparsity_interval: int = 50  # optimizer steps between sparsity measurements
    progress: bool = True  # tqdm bar when stdout is a terminal
    deterministic: bool = False
    checkpoint_every: int = 1  # epochs between checkpoints
    # Resume even when the saved config differs from this one (keys listed in a warning).
    allow_config_change: bool = False
    # Stop after this many optimizer steps per epoch (quick checks); None: whole epoch.
    max_steps_per_epoch: Optional[int] = None
    # Seconds the DDP process group waits before declaring a peer dead.
    ddp_timeout_s: int = 60


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    prune: PruneConfig = field(default_factory=PruneConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    experiment: str = "default"
    seed: int = 0


def run_name(override_dirname: str) -> str:
    """Run-directory name from the command line's overrides ('base' when there are none)."""
    return override_dirname.replace("/", "_") or "base"


def register_configs() -> None:
    cs = ConfigStore.instance()
    cs.store(name="train_schema", node=Config)
    OmegaConf.register_new_resolver("run_name", run_name, replace=True)


register_configs()

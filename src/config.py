"""Structured config schema, registered in Hydra's ConfigStore.

The YAML files under ``configs/`` are merged onto these dataclasses, so a misspelt key
or a value of the wrong type fails at composition time with a message naming the key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from grda import defaults as grda_defaults

# Keys that may differ between a run and its resumption without changing what it computes. They are also left out
# of the run directory's name (configs/train.yaml reads this list through the ${runtime_keys:} resolver).
RUNTIME_KEYS = (
    "data.root",
    "data.download",
    "trainer.device",
    "trainer.workers",
    "trainer.threads",
    "trainer.pin_memory",
    "trainer.persistent_workers",
    "trainer.progress",
    "trainer.log_interval",
    "trainer.sparsity_interval",
    "trainer.allow_config_change",
    "trainer.ddp_timeout_s",
    "trainer.stop_after_epoch",
)


@dataclass
class ModelConfig:
    name: str = "mlp"
    # WideResNet
    depth: int = 28
    widen_factor: int = 10
    # Dropout probability: wrn, between a block's two convs; vgg16, before each of the first two classifier
    # layers (configs/model/vgg16.yaml: 0.5, as in the authors' VGG).
    dropout: float = 0.0
    conv_bias: bool = True
    # wrn block layout: zagoruyko (the WRN paper: stride on the block's first conv, a projection shortcut reads
    # the pre-activated input) | authors (the authors' wide_resnet.py, from meliketoy/wide-resnet.pytorch: stride on
    # the second conv, the shortcut reads the block's raw input). Same parameters and count either way.
    variant: str = "zagoruyko"
    # Initialisation (wrn, vgg16): auto (the model's own: wrn kaiming_normal_fan_out, vgg16 the authors' init) |
    # kaiming_normal_fan_out (conv weights N(0, 2/fan_out), conv biases 0, BN 1/0; wrn: PyTorch-default linear
    # weight, zero linear bias; vgg16: PyTorch-default linear layers, the authors' VGG) | torch_default (PyTorch's
    # module defaults, nothing re-drawn: conv/linear weights and biases U(+-1/sqrt(fan_in)), BN 1/0; the authors'
    # WRN, which has no init code). Other models keep their own init and accept only auto.
    init: str = "auto"
    # Momentum of the BatchNorm before the classifier (wrn), in PyTorch's meaning (weight of the NEW batch
    # statistic). None: PyTorch's 0.1. The authors' WRN sets 0.9 (Keras-style number passed to PyTorch).
    final_bn_momentum: Optional[float] = None
    # vgg16: BatchNorm after every conv (the authors' VGG16BN); the paper's VGG16 has none.
    batch_norm: bool = False
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
    # Which mean/std `normalize` uses (CIFAR-10/100 only; MNIST and ImageNet always use their own):
    # own (each dataset's per-channel training-set statistics) | cifar10 (mean (0.4914, 0.4822, 0.4465),
    # std (0.2023, 0.1994, 0.2010): the widely copied CIFAR-10 constants that the authors' data.py uses for
    # CIFAR-10 AND CIFAR-100 with their WRN) | imagenet (mean (0.485, 0.456, 0.406), std (0.229, 0.224, 0.225):
    # the authors' VGG transform).
    normalization: str = "own"
    # Test-set images per evaluation batch.
    eval_batch_size: int = 512


@dataclass
class OptimConfig:
    name: str = "grda"
    lr: float = grda_defaults.LR
    # gRDA (defaults: grda.defaults, src/optim/grda/defaults.py, shared with the optimizer classes)
    c: float = grda_defaults.C
    mu: float = grda_defaults.MU
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
    # Implementation choice for GRDA: auto | fused | compiled | foreach | reference (see src/optim/grda/optimizer.py)
    impl: str = "auto"
    # Where gRDA's accumulator starts: weights (a_0 = w_0, the paper) | uniform (a_0 ~ U(-range, range) for every
    # parameter, the authors' Keras optimizer at the time of their CIFAR-10 CNN figure: range 0.1, seed 123)
    accumulator_init: str = "weights"
    accumulator_range: float = 0.1
    accumulator_seed: int = 123
    # dtype of gRDA's accumulator for bf16/fp16 parameters: fp32 (default: updates below half a bf16 ulp still count)
    # | param (the parameter's dtype: half the state memory, small updates rounded away; see grda.GRDA)
    accumulator_dtype: str = "fp32"


@dataclass
class ScheduleConfig:
    # constant | step | wrn
    name: str = "constant"
    # How the schedule numbers epochs: 0 (the first epoch is epoch 0) | 1 (the first epoch is epoch 1, as the
    # authors' CIFAR train.py and MNIST example do). Milestones and the wrn fractions use this numbering.
    epoch_base: int = 0
    # step: multiply lr by gamma from each epoch in milestones on (numbered from epoch_base).
    milestones: List[int] = field(default_factory=list)
    gamma: float = 0.1
    # wrn: with t = epoch / epochs (epoch numbered from epoch_base): factor 1 while t <= flat_fraction, linear
    # down to final_fraction at t = decay_end_fraction, final_fraction after.
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
    # End this process after this epoch (checkpoint written), the run left resumable: the same command with a larger
    # value, or without it, continues. Schedules keep spanning trainer.epochs (schedule=wrn over 600 epochs with
    # stop_after_epoch=20 trains the first 20 epochs of the 600-epoch run). None: train to trainer.epochs.
    stop_after_epoch: Optional[int] = None
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
    seed: int = 0  # the initial weights, and by default everything drawn after them
    # The data order, augmentation and dropout alone, from the same initial weights (None: from `seed`); the
    # authors' repeats shared one initialisation and differed in these draws.
    data_seed: Optional[int] = None


def data_seed(cfg) -> int:
    """The seed of the data order, augmentation and dropout: ``data_seed``, else ``seed``."""
    return cfg.seed if cfg.get("data_seed") is None else cfg.data_seed


def run_name(override_dirname: str) -> str:
    """Run-directory name from the command line's overrides ('base' when there are none)."""
    return override_dirname.replace("/", "_") or "base"


def runtime_keys() -> List[str]:
    """Resolver ${runtime_keys:}: the keys left out of run-directory names (the experiment is in the path already)."""
    return ["experiment", *RUNTIME_KEYS]


def register_configs() -> None:
    cs = ConfigStore.instance()
    cs.store(name="train_schema", node=Config)
    OmegaConf.register_new_resolver("run_name", run_name, replace=True)
    OmegaConf.register_new_resolver("runtime_keys", runtime_keys, replace=True)


register_configs()

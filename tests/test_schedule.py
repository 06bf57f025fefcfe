"""Learning-rate schedules (epoch numbering included) and the presets' match with the authors' settings."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from src import config as _config  # noqa: F401  (registers schema and resolvers)
from src.config import ScheduleConfig
from src.data.cifar import CIFAR10, CIFAR100, normalization_stats
from src.errors import UserError
from src.schedule import lr_factor

try:  # the ${runtime_keys:} resolver of configs/train.yaml, where this checkout has it
    from src import run_dir as _run_dir  # noqa: F401
except ImportError:
    pass

CONFIGS = str(Path(__file__).resolve().parents[1] / "configs")


def compose_cfg(*overrides):
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        return compose(config_name="train", overrides=list(overrides))


def schedule(**kwargs):
    return OmegaConf.structured(ScheduleConfig(**kwargs))


def authors_wrn_factor(epoch: int, total: int) -> float:
    """The authors' train.py schedule, written out here, for their 1-based epoch."""
    alpha = epoch / total
    if alpha <= 0.5:
        return 1.0
    if alpha <= 0.9:
        return 1.0 - (alpha - 0.5) / 0.4 * 0.99
    return 0.01


def test_wrn_epoch_base_1_is_the_authors_schedule():
    f = lr_factor(schedule(name="wrn", epoch_base=1), 200)
    for epoch in range(200):  # the trainer's 0-based epoch is their epoch + 1
        assert f(epoch) == pytest.approx(authors_wrn_factor(epoch + 1, 200), abs=1e-15)
    assert (f(99), f(100)) == (1.0, pytest.approx(1 - 0.005 / 0.4 * 0.99))  # decay from their epoch 101


def test_wrn_epoch_base_0_starts_one_epoch_later():
    f = lr_factor(schedule(name="wrn"), 200)
    assert (f(100), f(101)) == (1.0, pytest.approx(1 - 0.005 / 0.4 * 0.99))
    assert f(181) == pytest.approx(0.01) and f(179) > 0.01


def test_step_epoch_base():
    one = lr_factor(schedule(name="step", epoch_base=1, milestones=[3, 6, 9]), 10)
    zero = lr_factor(schedule(name="step", milestones=[2, 5, 8]), 10)
    assert [one(e) for e in range(10)] == [zero(e) for e in range(10)]
    assert [one(e) for e in range(10)] == pytest.approx([0.1 ** ((e + 1) // 3) for e in range(10)])  # their epoch // 3


@pytest.mark.parametrize("base", [2, -1, True])
def test_bad_epoch_base(base):
    with pytest.raises(UserError, match="epoch_base"):
        lr_factor(OmegaConf.create({"name": "constant", "epoch_base": base}), 10)


def test_wrn_presets_are_the_authors():
    for name, dataset in (("cifar100_wrn28x10", "cifar100"), ("cifar10_wrn28x10", "cifar10")):
        cfg = compose_cfg(f"experiment={name}")
        m = cfg.model
        assert (m.name, m.depth, m.widen_factor, m.dropout, m.conv_bias) == ("wrn", 28, 10, 0.0, True)
        assert (m.variant, m.init, m.final_bn_momentum) == ("authors", "torch_default", 0.9)
        assert (cfg.data.name, cfg.data.normalize, cfg.data.normalization, cfg.data.augment) == (
            dataset,
            True,
            "cifar10",
            "crop_flip",
        )
        assert (cfg.schedule.name, cfg.schedule.epoch_base, cfg.seed) == ("wrn", 1, 1)
        assert (cfg.optim.name, cfg.optim.lr, cfg.optim.c, cfg.optim.mu) == ("grda", 0.1, 0.001, 0.501)
        assert (cfg.trainer.batch_size, cfg.trainer.epochs) == (128, 200)
    paper = compose_cfg(
        "experiment=cifar100_wrn28x10",
        "model.variant=zagoruyko",
        "model.init=kaiming_normal_fan_out",
        "model.final_bn_momentum=null",
        "data.normalization=own",
        "schedule.epoch_base=0",
    )
    assert paper.model.final_bn_momentum is None and paper.data.normalization == "own"


def test_vgg_mnist_imagenet_presets():
    vgg = compose_cfg("experiment=cifar10_vgg16")
    assert (vgg.model.name, vgg.model.batch_norm, vgg.model.dropout) == ("vgg16", False, 0.5)
    assert vgg.data.normalization == "imagenet"
    assert (vgg.optim.lr, vgg.optim.c, vgg.trainer.batch_size, vgg.trainer.epochs) == (0.1, 0.0005, 128, 600)
    assert (vgg.schedule.name, vgg.schedule.epoch_base, vgg.seed) == ("wrn", 1, 1)
    mnist = compose_cfg("experiment=mnist_lenet5")
    f = lr_factor(mnist.schedule, mnist.trainer.epochs)
    assert [round(f(e), 12) for e in range(10)] == [1, 1, 0.1, 0.1, 0.1, 0.01, 0.01, 0.01, 0.001, 0.001]
    assert mnist.seed == 1
    imagenet = compose_cfg("experiment=imagenet_resnet50")
    f = lr_factor(imagenet.schedule, imagenet.trainer.epochs)
    assert imagenet.schedule.epoch_base == 0 and (f(139), f(140)) == (1.0, pytest.approx(0.1))  # 0.1 ** (epoch // 140)
    default = compose_cfg()
    assert (default.schedule.epoch_base, default.model.variant, default.model.init, default.data.normalization) == (
        0,
        "zagoruyko",
        "auto",
        "own",
    )


def test_cifar_normalization_choices():
    own10 = normalization_stats(OmegaConf.create({}), CIFAR10)
    own100 = normalization_stats({"normalization": "own"}, CIFAR100)
    assert own10 == (CIFAR10.mean, CIFAR10.std) and own100 == (CIFAR100.mean, CIFAR100.std)
    authors = ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010))  # their data.py, for CIFAR-10 and CIFAR-100
    assert normalization_stats({"normalization": "cifar10"}, CIFAR100) == authors
    assert normalization_stats({"normalization": "imagenet"}, CIFAR10) == ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    with pytest.raises(UserError, match="data.normalization"):
        normalization_stats({"normalization": "cifar100"}, CIFAR100)

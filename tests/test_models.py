"""Model registry, parameter counts and forward shapes."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn
from omegaconf import OmegaConf

from src.config import ModelConfig
from src.errors import UserError
from src.models import MODELS, build_model, register_model


def cfg(**kwargs):
    return OmegaConf.structured(ModelConfig(**kwargs))


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_registry_lists_builtin_models():
    assert {"keras_cnn", "wrn", "resnet50", "lenet5", "mlp"} <= set(MODELS)


@pytest.mark.parametrize(
    "model_cfg, num_classes, input_shape, expected",
    [
        (cfg(name="keras_cnn"), 10, (3, 32, 32), 1_250_858),
        (cfg(name="lenet5"), 10, (1, 28, 28), 431_080),
        (cfg(name="mlp", hidden=[128, 128]), 10, (1, 8, 8), 26_122),
        (cfg(name="mlp", hidden=[]), 10, (1, 8, 8), 650),
        (cfg(name="wrn", conv_bias=True), 100, (3, 32, 32), 36_546_980),  # WRN-28-10
        (cfg(name="wrn", conv_bias=False), 100, (3, 32, 32), 36_536_884),
        (cfg(name="resnet50"), 1000, (3, 224, 224), 25_557_032),
    ],
    ids=["keras_cnn", "lenet5", "mlp", "mlp-linear", "wrn-28-10", "wrn-28-10-nobias", "resnet50"],
)
def test_parameter_counts(model_cfg, num_classes, input_shape, expected):
    assert n_params(build_model(model_cfg, num_classes, input_shape)) == expected


@pytest.mark.parametrize(
    "model_cfg, input_shape",
    [
        (cfg(name="keras_cnn"), (3, 32, 32)),
        (cfg(name="keras_cnn"), (1, 28, 28)),
        (cfg(name="lenet5"), (1, 28, 28)),
        (cfg(name="lenet5"), (3, 32, 32)),
        (cfg(name="mlp", hidden=[16]), (1, 8, 8)),
        (cfg(name="wrn", depth=10, widen_factor=1), (3, 32, 32)),
        (cfg(name="resnet50"), (3, 64, 64)),
    ],
    ids=["keras_cnn", "keras_cnn-mnist", "lenet5", "lenet5-cifar", "mlp", "wrn-10-1", "resnet50"],
)
def test_forward_shape(model_cfg, input_shape):
    torch.manual_seed(0)
    model = build_model(model_cfg, 7, input_shape).eval()
    batch = 1 if model_cfg.name == "resnet50" else 2
    with torch.no_grad():
        out = model(torch.randn(batch, *input_shape))
    assert out.shape == (batch, 7)
    assert torch.isfinite(out).all()


def test_keras_cnn_layer_names_and_init():
    model = build_model(cfg(name="keras_cnn"), 10, (3, 32, 32))
    names = {name for name, _ in model.named_parameters()}
    expected = {"features.conv1.weight", "features.conv4.bias", "classifier.fc1.weight"}
    assert expected <= names
    assert model.classifier.fc1.in_features == 64 * 6 * 6
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            assert torch.count_nonzero(m.bias) == 0  # Keras: zero biases
            fan_in = m.weight[0].numel()
            fan_out = m.weight.shape[0] * m.weight[0, 0].numel()
            assert m.weight.abs().max() <= (6.0 / (fan_in + fan_out)) ** 0.5  # Glorot uniform bound


def test_wrn_structure():
    model = build_model(cfg(name="wrn", depth=16, widen_factor=2, conv_bias=False), 10, (3, 32, 32))
    names = {name for name, _ in model.named_parameters()}
    assert "block1.layer.0.conv1.weight" in names
    assert "block3.layer.1.conv2.weight" in names
    assert "block2.layer.0.shortcut.weight" in names
    assert "block2.layer.1.shortcut.weight" not in names
    assert all(m.bias is None for m in model.modules() if isinstance(m, nn.Conv2d))
    assert not any(isinstance(m, nn.Dropout) for m in model.modules())
    assert torch.count_nonzero(model.fc.bias) == 0


def test_wrn_dropout_when_requested():
    model = build_model(cfg(name="wrn", depth=10, widen_factor=1, dropout=0.3), 10, (3, 32, 32))
    dropouts = [m for m in model.modules() if isinstance(m, nn.Dropout)]
    assert len(dropouts) == 3  # one per block, between the two convs
    assert all(m.p == pytest.approx(0.3) for m in dropouts)


@pytest.mark.parametrize("depth", [27, 4, 0])
def test_wrn_depth_error(depth):
    with pytest.raises(UserError, match="6n\\+4"):
        build_model(cfg(name="wrn", depth=depth, widen_factor=1), 10, (3, 32, 32))


def test_unknown_model():
    with pytest.raises(UserError) as info:
        build_model(cfg(name="vgg99"), 10, (3, 32, 32))
    msg = str(info.value)
    assert msg.startswith("unknown model 'vgg99'; choose one of: ")
    assert ", ".join(sorted(MODELS)) in msg


def test_plain_namespace_config():
    model = build_model(SimpleNamespace(name="mlp", hidden=[4, 5]), 3, [1, 2, 2])
    assert [m.out_features for m in model.modules() if isinstance(m, nn.Linear)] == [4, 5, 3]


def test_register_model():
    name = "_test_tiny"

    @register_model(name)
    def build_tiny(model_cfg, num_classes, input_shape):
        return nn.Linear(input_shape[-1], num_classes)

    try:
        model = build_model(SimpleNamespace(name=name), 4, (1, 1, 6))
        assert isinstance(model, nn.Linear) and model.out_features == 4
        with pytest.raises(ValueError):
            register_model(name)(build_tiny)
    finally:
        del MODELS[name]

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
    assert {"keras_cnn", "wrn", "vgg16", "resnet50", "lenet5", "mlp"} <= set(MODELS)


@pytest.mark.parametrize(
    "model_cfg, num_classes, input_shape, expected",
    [
        (cfg(name="keras_cnn"), 10, (3, 32, 32), 1_250_858),
        (cfg(name="lenet5"), 10, (1, 28, 28), 431_080),
        (cfg(name="mlp", hidden=[128, 128]), 10, (1, 8, 8), 26_122),
        (cfg(name="mlp", hidden=[]), 10, (1, 8, 8), 650),
        (cfg(name="wrn", conv_bias=True), 100, (3, 32, 32), 36_546_980),  # WRN-28-10
        (cfg(name="wrn", conv_bias=False), 100, (3, 32, 32), 36_536_884),
        (cfg(name="wrn", variant="authors", init="torch_default", final_bn_momentum=0.9), 10, (3, 32, 32), 36_489_290),
        (cfg(name="resnet50"), 1000, (3, 224, 224), 25_557_032),
        # VGG16 by hand: convs 3*64*9+64 + 64*64*9+64 + 64*128*9+128 + 128*128*9+128 + 256*(128+2*256)*9+3*256
        # + 512*(256+2*512)*9+3*512 + 3*(512*512*9+512) = 14,714,688; classifier 2*(512*512+512) + 512*10+10.
        (cfg(name="vgg16"), 10, (3, 32, 32), 14_714_688 + 525_312 + 5_130),  # 15,245,130
        (cfg(name="vgg16", batch_norm=True), 10, (3, 32, 32), 15_245_130 + 2 * 4_224),  # BN: 2 per conv channel
        (cfg(name="vgg16"), 100, (3, 32, 32), 14_714_688 + 525_312 + 51_300),
    ],
    ids=[
        "keras_cnn",
        "lenet5",
        "mlp",
        "mlp-linear",
        "wrn-28-10",
        "wrn-28-10-nobias",
        "wrn-28-10-authors",
        "resnet50",
        "vgg16",
        "vgg16-bn",
        "vgg16-100",
    ],
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
        (cfg(name="wrn", depth=10, widen_factor=1, variant="authors", init="torch_default"), (3, 32, 32)),
        (cfg(name="resnet50"), (3, 64, 64)),
        (cfg(name="vgg16"), (3, 32, 32)),
        (cfg(name="vgg16", batch_norm=True), (3, 64, 48)),
        (cfg(name="vgg16"), (1, 32, 32)),
    ],
    ids=[
        "keras_cnn",
        "keras_cnn-mnist",
        "lenet5",
        "lenet5-cifar",
        "mlp",
        "wrn-10-1",
        "wrn-10-1-authors",
        "resnet50",
        "vgg16",
        "vgg16-bn-64x48",
        "vgg16-gray",
    ],
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


def _wrn(**kwargs):
    base = dict(name="wrn", depth=10, widen_factor=2)
    return build_model(cfg(**{**base, **kwargs}), 10, (3, 32, 32))


def test_wrn_variants_place_stride_and_shortcut():
    """authors: stride on conv2, shortcut on the raw block input (their wide_resnet.py); zagoruyko: the paper's."""
    for variant, strides in (("authors", ((1, 1), (2, 2))), ("zagoruyko", ((2, 2), (1, 1)))):
        model = _wrn(variant=variant)
        block = model.block2.layer[0]
        assert (block.conv1.stride, block.conv2.stride, block.shortcut.stride) == (*strides, (2, 2))
        seen = {}

        def keep(key, store):
            def hook(module, inputs, output):
                store.setdefault(key, inputs[0].clone())  # returns None: the output is left alone

            return hook

        block.shortcut.register_forward_hook(keep("x", seen))
        block.register_forward_hook(keep("block_in", seen))
        model.eval()
        with torch.no_grad():
            model(torch.randn(2, 3, 32, 32))
        raw = torch.equal(seen["x"], seen["block_in"])
        assert raw == (variant == "authors")
        if variant == "zagoruyko":  # the paper: BN-ReLU of the input
            assert torch.equal(seen["x"], torch.relu(block.bn1(seen["block_in"])))


def test_wrn_variants_share_parameters_but_not_outputs():
    torch.manual_seed(3)
    a = _wrn(variant="authors", init="torch_default")
    torch.manual_seed(3)
    z = _wrn(variant="zagoruyko", init="torch_default")
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), z.parameters()))
    a.eval(), z.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert not torch.allclose(a(x), z(x))


def test_wrn_inits():
    torch.manual_seed(0)
    default = _wrn(init="torch_default")
    for m in default.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            bound = 1.0 / m.weight[0].numel() ** 0.5  # kaiming_uniform(a=sqrt(5)): U(+-1/sqrt(fan_in))
            assert m.weight.abs().max() <= bound and m.weight.abs().max() > 0.9 * bound
            assert m.bias.abs().max() <= bound and torch.count_nonzero(m.bias) == m.bias.numel()
        elif isinstance(m, nn.BatchNorm2d):
            assert torch.all(m.weight == 1) and torch.all(m.bias == 0)
    torch.manual_seed(0)
    kaiming = _wrn(init="kaiming_normal_fan_out")
    torch.manual_seed(0)
    auto = _wrn()
    assert all(torch.equal(p, q) for p, q in zip(kaiming.parameters(), auto.parameters()))
    conv = kaiming.block3.layer[0].conv2
    assert torch.count_nonzero(conv.bias) == 0 and torch.count_nonzero(kaiming.fc.bias) == 0
    fan_out = conv.weight.shape[0] * 9
    assert conv.weight.std().item() == pytest.approx((2.0 / fan_out) ** 0.5, rel=0.05)


def test_wrn_final_bn_momentum():
    assert _wrn().bn1.momentum == pytest.approx(0.1)
    model = _wrn(final_bn_momentum=0.9)
    assert model.bn1.momentum == pytest.approx(0.9)
    others = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d) and m is not model.bn1]
    assert others and all(m.momentum == pytest.approx(0.1) for m in others)


@pytest.mark.parametrize(
    "override, match",
    [
        (dict(variant="meliketoy"), "model.variant"),
        (dict(init="xavier"), "model.init"),
        (dict(final_bn_momentum=1.5), "final_bn_momentum"),
    ],
)
def test_wrn_bad_options(override, match):
    with pytest.raises(UserError, match=match):
        _wrn(**override)


def test_vgg16_structure_and_init():
    torch.manual_seed(0)
    model = build_model(cfg(name="vgg16", dropout=0.5), 10, (3, 32, 32))  # dropout as configs/model/vgg16.yaml sets it
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [c.out_channels for c in convs] == [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
    assert [(m.in_features, m.out_features) for m in linears] == [(512, 512), (512, 512), (512, 10)]
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.modules()) == 5
    dropouts = [m for m in model.modules() if isinstance(m, nn.Dropout)]
    assert len(dropouts) == 2 and all(m.p == 0.5 for m in dropouts)  # nn.Dropout()'s default, as theirs
    for conv in convs:  # the authors' init: N(0, 2 / (9 * out_channels)), zero bias
        assert torch.count_nonzero(conv.bias) == 0
        assert conv.weight.std().item() == pytest.approx((2.0 / (9 * conv.out_channels)) ** 0.5, rel=0.1)
    for lin in linears:  # PyTorch defaults: U(+-1/sqrt(fan_in)), bias included
        bound = 1.0 / lin.in_features**0.5
        assert lin.weight.abs().max() <= bound and 0 < lin.bias.abs().max() <= bound
    bn = build_model(cfg(name="vgg16", batch_norm=True, dropout=0.0), 10, (3, 32, 32))
    assert sum(isinstance(m, nn.BatchNorm2d) for m in bn.modules()) == 13
    assert not any(isinstance(m, nn.Dropout) and m.p > 0 for m in bn.modules())


def test_vgg16_torch_default_init_and_errors():
    torch.manual_seed(0)
    model = build_model(cfg(name="vgg16", init="torch_default"), 10, (3, 32, 32))
    conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    assert torch.count_nonzero(conv.bias) == conv.bias.numel()
    with pytest.raises(UserError, match="at least 32x32"):
        build_model(cfg(name="vgg16"), 10, (3, 16, 16))
    with pytest.raises(UserError, match="model.init"):
        build_model(cfg(name="vgg16", init="xavier"), 10, (3, 32, 32))


@pytest.mark.parametrize(
    "name, override",
    [
        ("mlp", dict(init="torch_default")),
        ("resnet50", dict(variant="authors")),
        ("keras_cnn", dict(final_bn_momentum=0.9)),
        ("vgg16", dict(variant="authors")),
    ],
)
def test_model_specific_options_refused_elsewhere(name, override):
    with pytest.raises(UserError, match=f"model.{next(iter(override))}="):
        build_model(cfg(name=name, **override), 10, (3, 32, 32))


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

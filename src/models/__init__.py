"""Model registry.

    model = build_model(cfg.model, num_classes=10, input_shape=(3, 32, 32))

``cfg`` is anything with the :class:`src.config.ModelConfig` attributes (a dataclass, an
OmegaConf ``DictConfig`` or a ``SimpleNamespace``). Builders are registered by name with
:func:`register_model` and take ``(cfg, num_classes, input_shape)``.

Built-in models:

=============  ==========================================  ===================================
name           source                                      parameters
=============  ==========================================  ===================================
keras_cnn      Keras examples ``cifar10_cnn.py``           1,250,858 (3x32x32, 10 classes)
wrn            WideResNet (Zagoruyko & Komodakis, 2016;    36,546,980 (WRN-28-10, conv biases,
               ``variant=authors``: the authors' layout)   100 classes)
vgg16          the authors' CIFAR VGG16 (no BatchNorm;     15,245,130 (3x32x32, 10 classes)
               ``batch_norm=true``: VGG16BN)
resnet50       ``torchvision.models.resnet50``             25,557,032 (1000 classes)
lenet5         the authors' MNIST LeNet-5                  431,080 (1x28x28, 10 classes)
mlp            fully connected net for ``digits``          26,122 (1x8x8, hidden [128, 128])
=============  ==========================================  ===================================
"""

from __future__ import annotations

from typing import Callable, Dict, Sequence

import torch.nn as nn

from src.errors import UserError
from src.models import keras_cnn, lenet, mlp, vgg, wrn

Builder = Callable[..., nn.Module]

# Model options that only some built-in models honour: option -> (its neutral value, the models that read it).
# A built-in model that ignores an option refuses any other value; models registered later get the config as is.
_MODEL_SPECIFIC = {
    "variant": ("zagoruyko", ("wrn",)),
    "init": ("auto", ("wrn", "vgg16")),
    "final_bn_momentum": (None, ("wrn",)),
}

MODELS: Dict[str, Builder] = {}


def register_model(name: str) -> Callable[[Builder], Builder]:
    """Decorator registering ``builder(cfg, num_classes, input_shape) -> nn.Module`` as ``name``."""

    def decorator(builder: Builder) -> Builder:
        if name in MODELS:
            raise ValueError(f"model '{name}' is already registered")
        MODELS[name] = builder
        return builder

    return decorator


def build_model(cfg, num_classes: int, input_shape: Sequence[int]) -> nn.Module:
    """Build the model named ``cfg.name`` for ``num_classes`` outputs and ``(C, H, W)`` inputs."""
    name = cfg.name
    if name not in MODELS:
        raise UserError(f"unknown model '{name}'; choose one of: {', '.join(sorted(MODELS))}")
    for option, (neutral, models) in _MODEL_SPECIFIC.items():
        value = getattr(cfg, option, neutral)
        if value != neutral and name in BUILTIN_MODELS and name not in models:
            raise UserError(
                f"model.{option}={value} applies to {' and '.join(models)} only, not to model '{name}'; "
                f"drop the override (or set it to {neutral if neutral is not None else 'null'})"
            )
    return MODELS[name](cfg, int(num_classes), tuple(int(s) for s in input_shape))


def _build_resnet50(cfg, num_classes: int, input_shape: Sequence[int]) -> nn.Module:
    """torchvision ResNet-50 (v1.5), randomly initialised: 25,557,032 parameters at 1000 classes."""
    if input_shape[0] != 3:
        raise UserError(f"resnet50 expects 3-channel images, got input shape {tuple(input_shape)}")
    import torchvision  # here, not at the top: importing it costs seconds every other model does not need

    return torchvision.models.resnet50(weights=None, num_classes=num_classes)


register_model("keras_cnn")(keras_cnn.build_keras_cnn)
register_model("wrn")(wrn.build_wrn)
register_model("vgg16")(vgg.build_vgg16)
register_model("resnet50")(_build_resnet50)
register_model("lenet5")(lenet.build_lenet5)
register_model("mlp")(mlp.build_mlp)
BUILTIN_MODELS = frozenset(MODELS)

__all__ = ["MODELS", "build_model", "register_model"]

"""Loading files into the sparse runtime: a checkpoint or sparse export -> its dense model -> a SparseModel.

:func:`load_weights` reads the weights (and the training config, when saved) of a harness checkpoint, a bare
state_dict or a sparse export (:mod:`src.sparse_export`); :func:`build_dense_model` rebuilds the model they belong to
(:mod:`src.models`) with its input shape; :func:`load_runtime` converts it
(:func:`src.sparse_runtime.conversion.convert`).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

from torch import Tensor, nn

from src.errors import UserError
from src.sparse_runtime.conversion import convert
from src.sparse_runtime.model import SparseModel

# Input shape per dataset of the harness (src/data): used when a file's config names the dataset.
DATA_INPUT_SHAPES = {
    "digits": (1, 8, 8),
    "mnist": (1, 28, 28),
    "cifar10": (3, 32, 32),
    "cifar100": (3, 32, 32),
    "imagenet": (3, 224, 224),
}
# The dataset each built-in model is trained on in the presets (configs/experiment): the input shape of a file
# without a training config, or of --model naming another model than the file's.
MODEL_DATA = {
    "mlp": "digits",
    "lenet5": "mnist",
    "keras_cnn": "cifar10",
    "wrn": "cifar10",
    "vgg16": "cifar10",
    "resnet50": "imagenet",
}


def _is_safetensors(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(9)
    except OSError:
        return False
    return len(head) == 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < 2**30


def load_weights(path: str | Path) -> Tuple[Dict[str, Tensor], Optional[Dict[str, Any]]]:
    """(state_dict, training config or None) of a harness checkpoint, a bare state_dict or a sparse export."""
    from src.checkpoint import extract_state_dict, load_checkpoint
    from src.sparse_export import load_sparse, read_metadata

    path = Path(path)
    if path.is_file() and (path.suffix == ".safetensors" or _is_safetensors(path)):
        config = None
        raw = read_metadata(path).get("config")
        if raw:
            try:
                config = json.loads(raw)
            except ValueError:
                config = None
        return load_sparse(path), config
    obj = load_checkpoint(path)
    config = obj.get("config") if isinstance(obj, Mapping) and isinstance(obj.get("config"), Mapping) else None
    return extract_state_dict(obj, path), (dict(config) if config is not None else None)


def _num_classes(state_dict: Mapping[str, Tensor]) -> Optional[int]:
    """Outputs of the last 2-D weight (the classifier in every model of src/models)."""
    last = None
    for name, t in state_dict.items():
        if name.endswith("weight") and t.dim() == 2 and t.is_floating_point():
            last = int(t.shape[0])
    return last


def build_dense_model(
    path: str | Path,
    model: Optional[str] = None,
    num_classes: Optional[int] = None,
    input_shape: Optional[Sequence[int]] = None,
) -> Tuple[nn.Module, Tuple[int, ...], Dict[str, Any]]:
    """The model a file's weights belong to, built from its saved config (or the arguments), weights loaded.

    Returns (model in eval mode, input shape (C, H, W), {"model": name, "num_classes": k, "config": bool}).
    UserError when the file cannot be read, names no model and none is given, or the weights do not fit.
    """
    from src.checkpoint import load_model_weights
    from src.config import ModelConfig
    from src.models import MODELS, build_model

    if model is not None and model not in MODELS:
        raise UserError(f"unknown model '{model}' (--model); choose one of: {', '.join(sorted(MODELS))}")
    state_dict, config = load_weights(path)
    model_cfg = dict((config or {}).get("model") or {})
    data_name = str(((config or {}).get("data") or {}).get("name", "")).lower()
    if model is not None and model != model_cfg.get("name"):
        model_cfg = {"name": model}  # another model than the file's config: its defaults, its own dataset's input
        data_name = MODEL_DATA.get(model, "")
    if "name" not in model_cfg:
        raise UserError(
            f"'{path}' holds no training config naming its model: pass --model NAME "
            f"(one of: {', '.join(sorted(MODELS))})"
        )
    fields = {
        f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()
        for f in dataclasses.fields(ModelConfig)
    }
    fields.update({k: v for k, v in model_cfg.items()})
    fields["init_from"] = None
    cfg = SimpleNamespace(**fields)
    if input_shape is None:
        if data_name not in DATA_INPUT_SHAPES:
            data_name = MODEL_DATA.get(str(cfg.name), data_name)
        if data_name not in DATA_INPUT_SHAPES:
            raise UserError(
                f"cannot tell the input shape of '{path}' (dataset {data_name or 'unknown'}): pass --input-shape C,H,W"
            )
        input_shape = DATA_INPUT_SHAPES[data_name]
    classes = num_classes or _num_classes(state_dict)
    if classes is None:
        raise UserError(f"cannot tell the number of classes of '{path}': pass --num-classes K")
    net = build_model(cfg, num_classes=classes, input_shape=tuple(int(s) for s in input_shape))
    load_model_weights(net, state_dict, path)
    return (
        net.float().eval(),
        tuple(int(s) for s in input_shape),
        {"model": cfg.name, "num_classes": classes, "config": config is not None},
    )


def load_runtime(
    path: str | Path,
    model: Optional[str] = None,
    num_classes: Optional[int] = None,
    input_shape: Optional[Sequence[int]] = None,
) -> SparseModel:
    """:func:`convert` of the model in ``path`` (see :func:`build_dense_model`)."""
    net, shape, meta = build_dense_model(path, model, num_classes, input_shape)
    rt = convert(net)
    rt.info.update(meta, input_shape=list(shape))
    return rt

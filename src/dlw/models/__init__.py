"""Step 5, the architecture: one builder per ``model.kind``, in one table.

Each kind says which input it reads (``table`` or ``images``), whether it is
convolutional (which decides the Keras backend on a CPU), how to build it from the
prepared data, and how to describe it in one console line. A new model kind is a new
row of ``MODEL_KINDS``, not a new ``if``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from dlw.models.mlp import build_mlp


@dataclass(frozen=True)
class ModelKind:
    inputs: str  # "table" or "images"
    convolutional: bool
    build: Callable  # (config, prepared, objective, backbone) -> (model, backbone inside it or None)
    describe: Callable  # (model, config, backbone, base) -> one line


def _build_mlp(config, prepared, objective, backbone):
    m = config.model
    return build_mlp(prepared.schema, objective, prepared.inputs["train"], m.hidden_layers, m.dropout_rate, m.activation), None


def _build_cnn(config, prepared, objective, backbone):
    from dlw.models.cnn import build_cnn

    m = config.model
    return build_cnn(prepared.schema.shape, objective, m.conv_filters, m.dense_layers, m.dropout_rate, m.batch_norm, config.data.augment), None


def _build_pretrained(config, prepared, objective, backbone):
    from dlw.models.cnn import augmentation_layers
    from dlw.models.pretrained import build_pretrained

    m = config.model
    return build_pretrained(
        backbone, prepared.schema.shape, objective, m.dense_layers, m.dropout_rate, m.freeze, augmentation_layers(config.data.augment)
    )


def _dense_units(model) -> str:
    return " -> ".join(str(layer.units) for layer in model.layers if layer.__class__.__name__ == "Dense")


def _describe_mlp(model, config, backbone, base) -> str:
    return f"MLP Dense {_dense_units(model)}; {model.count_params():,} parameters"


def _describe_cnn(model, config, backbone, base) -> str:
    convs = [str(layer.filters) for layer in model.layers if layer.__class__.__name__ == "Conv2D"]
    return f"CNN conv {'-'.join(convs)}, Dense {_dense_units(model)}; {model.count_params():,} parameters"


def _describe_pretrained(model, config, backbone, base) -> str:
    from dlw.models.pretrained import describe

    return describe(model, base, backbone, config.model.dense_layers, config.model.freeze)


MODEL_KINDS = {
    "mlp": ModelKind("table", False, _build_mlp, _describe_mlp),
    "cnn": ModelKind("images", True, _build_cnn, _describe_cnn),
    "pretrained": ModelKind("images", True, _build_pretrained, _describe_pretrained),
}


def input_kind(config) -> str:
    """``table`` or ``images``: what a config with a resolved ``model.kind`` trains on."""
    return MODEL_KINDS[config.model.kind].inputs


def build_model(config, prepared, objective, backbone=None):
    """Step 5: the model for ``model.kind``; and the pretrained backbone inside it (else None)."""
    return MODEL_KINDS[config.model.kind].build(config, prepared, objective, backbone)


def describe_model(model, config, backbone=None, base=None) -> str:
    """One line for the console: the architecture and its parameter count."""
    return MODEL_KINDS[config.model.kind].describe(model, config, backbone, base)


__all__ = ["MODEL_KINDS", "ModelKind", "build_mlp", "build_model", "describe_model", "input_kind"]

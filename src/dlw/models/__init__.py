"""Step 5, the architecture: one builder per ``model.kind``, in one table.

Each kind says which input it reads (``table`` or ``images``), whether it is
convolutional (which decides the Keras backend on a CPU), how to build it from the
prepared data, and how to describe it in one console line. A new model kind is a new
row of ``MODEL_KINDS``, not a new ``if``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from dlw.errors import DlwError
from dlw.models.mlp import build_mlp


# Training settings a kind takes when the config leaves them at ``auto`` (batch size and
# epochs of tabm are planned from the number of train rows: ``dlw.train.plan_training``).
CLASSIC_TRAINING = {"optimizer": "adam", "learning_rate": 1e-3, "schedule": "constant", "batch_size": 32, "epochs": 200}
TABM_TRAINING = {"optimizer": "adamw", "learning_rate": 2e-3, "schedule": "cosine"}


@dataclass(frozen=True)
class ModelKind:
    inputs: str  # "table" or "images"
    convolutional: bool
    build: Callable  # (config, prepared, objective, backbone) -> (model, backbone inside it or None)
    describe: Callable  # (model, config, backbone, base, prepared) -> one line
    training: dict  # defaults for train.* keys left at auto
    ensemble: bool = False  # trained as members (dlw.models.tabm.training_view), predicts their mean


# Below this many train rows tabm's numbers enter without embeddings (bench/RESULTS.md).
EMBEDDING_MIN_ROWS = 500


def along_a_date(prepared) -> bool:
    """Whether ``prepared`` is a regression table with a date input: its target can bend along the date (a trend,
    seasons, a business cycle), and ``tabm_embeddings`` and ``tabm_bins`` are sized for that (bench/RESULTS.md, stop 41).
    Not measured on classification."""
    return prepared.problem.task == "regression" and prepared.schema.has_date


def tabm_embeddings(config, n_train: int, task: str, *, dated: bool = False) -> str:
    """``model.embeddings``, with ``auto`` decided from the number of train rows, the task and ``along_a_date`` (``dated``).

    Periodic embeddings beside the piecewise-linear ones lowered rmse on regression tables
    (a target that is a smooth function of a number: Wage 24-39%) and cost AUC on
    classification ones (bench/RESULTS.md, stop 24). Below ``EMBEDDING_MIN_ROWS`` they were
    worse where the target is near linear in its numbers (stop 25), but a target that follows a
    date bends along it: on small regression tables with a date input they lowered rmse in 21
    of 24 runs, by 14% on average (stop 41).
    """
    chosen = config.model.embeddings
    if chosen != "auto":
        return chosen
    if n_train < EMBEDDING_MIN_ROWS and not dated:
        return "none"
    return "piecewise_linear_and_periodic" if task == "regression" else "piecewise_linear"


def tabm_number_copies(config, task: str) -> tuple[str, ...]:
    """The copies of tabm's numbers beside the clipped ones (``model.numbers``, ``dlw.models.tabm.NUMBER_COPIES``), with ``auto`` decided from the task.

    On a regression target that rises with a long-tailed number, the clipped number flattens the tail
    the error is made of (College's applications: rmse 20-31% lower with the unclipped copy, bench/RESULTS.md, stop 26).
    """
    from dlw.models.tabm import NUMBER_COPIES

    chosen = config.model.numbers
    if chosen == "auto":
        chosen = "clipped_and_linear" if task == "regression" else "clipped"
    return NUMBER_COPIES[chosen]


# tabm's automatic bin count: one bin per this many train rows, within BINS_RANGE (bench/RESULTS.md).
ROWS_PER_BIN = 250
BINS_RANGE = (16, 96)


def tabm_bins(config, n_train: int, *, dated: bool = False) -> int:
    """``model.bins`` for one number, with ``auto`` decided from the number of train rows, or the most bins for one of the
    numbers a date becomes ``along_a_date`` (``dated``).

    A date is nearly a different number on every row, and its target's bends are narrow (a season,
    a recession): 96 bins lowered rmse on regression tables with a date input in 17 of 24 runs
    below 500 train rows and 14 of 14 from 500 to 1,600; given to the date's numbers only, the other
    numbers keeping the rule of rows, in 31 of 38 runs better or the same (bench/RESULTS.md, stops 41-42).
    """
    chosen = config.model.bins
    if chosen != "auto":
        return chosen
    low, high = BINS_RANGE
    if dated:
        return high
    return int(min(high, max(low, n_train // ROWS_PER_BIN)))


def tabm_bin_counts(config, prepared) -> list[int]:
    """``tabm_bins`` for each number of ``prepared``'s numeric input, in ``Schema.numeric_input_names``' order."""
    n_train, dated = prepared.count("train"), along_a_date(prepared)
    return [tabm_bins(config, n_train, dated=dated and part) for part in prepared.schema.numeric_inputs_from_dates]


def tabm_output_range(config, prepared) -> tuple[float, float] | None:
    """The standardized bounds tabm's predictions are held within (``model.output_range``; ``dlw.models.tabm.target_range``
    of the train and validation targets), or None: for classification, and with ``none``."""
    if prepared.problem.task != "regression" or config.model.output_range == "none":
        return None
    from dlw.models.tabm import target_range

    seen = target_range(np.concatenate([prepared.targets[split] for split in ("train", "validation") if split in prepared.targets]))
    low, high = prepared.standardized(np.asarray(seen))
    return float(low), float(high)


def train_and_validation_numbers(prepared):
    """The numeric inputs of the train and validation rows, one array (None for a table without numbers)."""
    rows = [prepared.inputs[split]["numeric"] for split in ("train", "validation") if "numeric" in prepared.inputs.get(split, {})]
    return np.concatenate(rows) if rows else None


def held_value_notes(model, prepared) -> list[str]:
    """Warnings for values tabm's unclipped copy holds as likely typing errors (``dlw.models.tabm.tail_bounds``),
    decided with that copy's own scaling, on the rows it was bounded on."""
    unclipped = {layer.name: layer for layer in model.layers}.get("robust_scale_unclipped")
    if unclipped is None:
        return []
    from dlw.models.tabm import held_value_warnings

    return held_value_warnings(train_and_validation_numbers(prepared), unclipped.centre, unclipped.inv_scale, prepared.schema.numeric_input_names)


def _build_tabm(config, prepared, objective, backbone):
    from dlw.models.tabm import build_tabm

    m, n_train, dated = config.model, prepared.count("train"), along_a_date(prepared)
    model = build_tabm(
        prepared.schema, objective, prepared.inputs["train"], hidden_layers=m.hidden_units, dropout=m.dropout_rate,
        ensemble=m.ensemble, embeddings=tabm_embeddings(config, n_train, prepared.problem.task, dated=dated), embedding_dim=m.embedding_dim,
        bins=tabm_bin_counts(config, prepared), number_copies=tabm_number_copies(config, prepared.problem.task),
        seed=config.train.seed, text_dim=m.text_dim, text_dropout=m.text_dropout,
        bound_numeric=train_and_validation_numbers(prepared), output_range=tabm_output_range(config, prepared),
    )
    return model, None


def _build_mlp(config, prepared, objective, backbone):
    m = config.model
    return build_mlp(prepared.schema, objective, prepared.inputs["train"], m.hidden_units, m.dropout_rate, m.activation, text_dim=m.text_dim, text_dropout=m.text_dropout), None


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


def _describe_tabm(model, config, backbone, base, prepared) -> str:
    m = config.model
    units = "-".join(str(u) for u in m.hidden_units)
    names = {l.name for l in model.layers}
    kinds = {"PiecewiseLinearEmbedding": "piecewise-linear", "PeriodicEmbedding": "periodic"}
    layers = [layer for layer in model.layers if type(layer).__name__ in kinds]  # in the order numeric_branch built them
    numbers = " and ".join(kinds[type(layer).__name__] for layer in layers) or "no"
    notes = [bins_note(len(layer.edges[0]) - 1, tabm_bin_counts(config, prepared)) for layer in layers if hasattr(layer, "edges")]
    # the copies as numeric_branch built them
    copies = ["clipped"] + [copy for layer, copy in (("robust_scale_unclipped", "unclipped"), ("log_numbers", "logged")) if layer in names]
    scaled = " and ".join(copies) if len(copies) < 3 else f"{', '.join(copies[:-1])} and {copies[-1]}"
    if "numbers_and_embedding" in names:
        notes.append("beside the scaled numbers" + (f", {scaled}" if len(copies) > 1 else ""))
    elif len(copies) > 1:
        notes.append(f"the scaled numbers {scaled}")
    detail = f" ({', '.join(notes)})" if notes else ""
    held = "; predictions held within the targets' range" if "output_range" in names else ""
    return f"TabM: {m.ensemble} members sharing Dense {units}, {numbers} number embeddings{detail}{held}; {model.count_params():,} parameters"


def bins_note(widest: int, counts: list[int]) -> str:
    """What ``bins: auto`` became: the ``widest`` a layer's edges hold, and where ``tabm_bin_counts`` gave a date's numbers
    more than the rest, the rest's count too."""
    return f"{widest} bins" if min(counts) == max(counts) else f"{min(counts)} bins, {widest} for the date's numbers"


def _describe_mlp(model, config, backbone, base, prepared) -> str:
    return f"MLP Dense {_dense_units(model)}; {model.count_params():,} parameters"


def _describe_cnn(model, config, backbone, base, prepared) -> str:
    convs = [str(layer.filters) for layer in model.layers if layer.__class__.__name__ == "Conv2D"]
    return f"CNN conv {'-'.join(convs)}, Dense {_dense_units(model)}; {model.count_params():,} parameters"


def _describe_pretrained(model, config, backbone, base, prepared) -> str:
    from dlw.models.pretrained import describe

    return describe(model, base, backbone, config.model.dense_layers, config.model.freeze)


MODEL_KINDS = {
    "tabm": ModelKind("table", False, _build_tabm, _describe_tabm, TABM_TRAINING, ensemble=True),
    "mlp": ModelKind("table", False, _build_mlp, _describe_mlp, CLASSIC_TRAINING),
    "cnn": ModelKind("images", True, _build_cnn, _describe_cnn, CLASSIC_TRAINING),
    "pretrained": ModelKind("images", True, _build_pretrained, _describe_pretrained, CLASSIC_TRAINING),
}
# What ``model.kind: auto`` becomes for each input kind (images: pretrained when a backbone is set).
DEFAULT_KIND = {"table": "tabm", "images": "cnn"}


def input_kind(config) -> str:
    """``table`` or ``images``: what a config with a resolved ``model.kind`` trains on."""
    return MODEL_KINDS[config.model.kind].inputs


def fill_training_defaults(config) -> None:
    """Replace the ``train.*`` keys left at ``auto`` by the model kind's defaults (those that need no data)."""
    for key, value in MODEL_KINDS[config.model.kind].training.items():
        if getattr(config.train, key) == "auto":
            setattr(config.train, key, value)


def load_network(path):
    """A saved ``model.keras``, loaded in Keras's safe mode once dlw's own layers are registered."""
    import keras

    import dlw.layers  # noqa: F401  (registers the dlw layers the file may name)

    try:
        # Not compiled: dlw predicts with it, and an optimizer built again would not hold the saved
        # one's variables (an MLP's held schedule rates: a warning for nothing).
        return keras.models.load_model(path, safe_mode=True, compile=False)
    except ValueError as exc:
        if "safe_mode" not in str(exc):
            raise
        # A Lambda layer's bytecode (or another code object) in the file: running it would run the file's code.
        raise DlwError(f"{path}: the model holds Python code (e.g. a Lambda layer); dlw loads models in Keras's safe mode and will not run it") from None


def build_model(config, prepared, objective, backbone=None):
    """Step 5: the model for ``model.kind``; and the pretrained backbone inside it (else None)."""
    return MODEL_KINDS[config.model.kind].build(config, prepared, objective, backbone)


def describe_model(model, config, prepared, *, backbone=None, base=None) -> str:
    """One line for the console: the architecture (as built for ``prepared``) and its parameter count."""
    return MODEL_KINDS[config.model.kind].describe(model, config, backbone, base, prepared)


__all__ = ["DEFAULT_KIND", "MODEL_KINDS", "ModelKind", "build_mlp", "build_model", "describe_model", "fill_training_defaults", "held_value_notes", "input_kind",
           "load_network", "train_and_validation_numbers"]

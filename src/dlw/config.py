"""The run specification's pydantic models: every key, its default, its description and its checks.

Every key has a default except ``data.source`` (and ``data.target`` for a file),
so the smallest config is two lines::

    data:
      source: my.csv
      target: label

``dlw.spec.load_spec`` resolves a YAML file, a built-in name or a data file into one of
these, with ``--set key.path=value`` overrides.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt, field_validator, model_serializer, model_validator

from dlw.crossfit import AUTO_FOLDS, AUTO_MAX_ROWS


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class SplitConfig(_Strict):
    """How rows are divided into train, validation and test sets (step 3)."""

    validation: float = Field(0.2, gt=0, lt=1, description="Fraction of rows for validation (early stopping, tuning).")
    test: float = Field(0.2, gt=0, lt=1, description="Fraction of rows held out for the final measurement only.")
    seed: int = Field(42, description="Seed of the split; same seed, same rows.")
    stratify: bool = Field(True, description="Keep class proportions equal across splits (classification only).")
    order: str = Field(
        "random",
        description="'random'; 'time:<column>' for a chronological split (the latest rows are the test set); or 'group:<column>' "
        "for a split by group (each value of the column, a patient or a school, in one split: the test rows are groups never seen).",
    )

    @field_validator("order")
    @classmethod
    def _order_is_known(cls, value: str) -> str:
        if value == "random" or re.fullmatch(r"(time|group):.+", value):
            return value
        raise ValueError("must be 'random', 'time:<column>' or 'group:<column>'")

    @property
    def time_column(self) -> str | None:
        return self.order.split(":", 1)[1] if self.order.startswith("time:") else None

    @property
    def group_column(self) -> str | None:
        return self.order.split(":", 1)[1] if self.order.startswith("group:") else None


class AugmentConfig(_Strict):
    """Random changes to training images (Keras ``Random*`` layers; inactive when predicting)."""

    flip: Literal["horizontal", "vertical", "horizontal_and_vertical"] | Literal[False] = Field(
        False, description="Mirror images: horizontal, vertical, horizontal_and_vertical, or false."
    )
    rotation: float = Field(0.0, ge=0, le=0.5, description="Largest rotation, as a fraction of a full turn (0.05 = 18 degrees).")
    zoom: float = Field(0.0, ge=0, lt=1, description="Largest zoom in or out, as a fraction of the size.")
    translation: float = Field(0.0, ge=0, lt=1, description="Largest shift, as a fraction of height and width.")
    contrast: float = Field(0.0, ge=0, lt=1, description="Largest contrast change, as a fraction.")


def _ngram_range(value: list[int] | None) -> list[int] | None:
    if value is not None and (len(value) != 2 or value[0] < 1 or value[1] < value[0]):
        raise ValueError("must be [shortest, longest], e.g. [1, 2], with 1 <= shortest <= longest; or null for none")
    return value


class TextConfig(_Strict):
    """How free-text columns become hashed n-grams (``dlw.text``); the settings are kept in schema.json."""

    word_ngrams: list[int] | None = Field([1, 2], description="Word n-grams [shortest, longest]; null for none.")
    char_ngrams: list[int] | None = Field([3, 5], description="Character n-grams within words [shortest, longest]; null for none.")
    buckets: int = Field(32768, ge=16, le=2**22, description="Hash buckets for word n-grams, and as many for character n-grams.")
    lowercase: bool = Field(True, description="Lowercase text before taking n-grams.")
    max_ngrams: int = Field(1024, ge=8, le=65536, description="Most n-gram ids a row keeps (word n-grams first, then the most frequent character n-grams).")

    _check_ranges = field_validator("word_ngrams", "char_ngrams")(classmethod(lambda cls, v: _ngram_range(v)))

    @model_validator(mode="after")
    def _some_ngrams(self):
        if not self.word_ngrams and not self.char_ngrams:
            raise ValueError("word_ngrams and char_ngrams are both null; keep at least one")
        return self


class DataConfig(_Strict):
    """Where the data is and which columns are inputs and output (steps 2-3)."""

    source: str = Field(
        description="A built-in name (penguins, iris, wine, breast_cancer, diabetes, digits), a table file (CSV, also .gz/.bz2/.zst; .xlsx; .jsonl; Parquet), "
        "a folder of images with one subfolder per class, or a CSV of image paths."
    )
    target: str | None = Field(None, description="The column to predict (for an image folder: its subfolder names, 'label').")
    features: list[str] | None = Field(None, description="Input columns; default: all other usable columns.")
    target_transform: Literal["none", "log"] = Field(
        "none",
        description="Regression: log trains the network on log(1 + target), for a target of 0 or more that varies by factors "
        "(a price, a count, a salary), and turns its predictions back into the target's units, where every metric is measured; "
        "the baselines keep the target as it is. none: the target standardized as it is.",
    )
    types: dict[str, Literal["numeric", "categorical", "boolean", "date", "text", "ignore"]] = Field(
        default_factory=dict, description="Override the inferred type of a column, e.g. {zip_code: categorical, year: date, review: text}."
    )
    group_numbers: Literal["auto", "number", "category"] = Field(
        "auto",
        description="Tables: the integer columns step 3 notes as likely a group's number (10 values or more, each on one block of consecutive "
        "rows: a patient, a school), unless data.types names them. number: read as written; category: one level per group; auto: where "
        "the run cross-fits tabm on a regression target, the first fold's network is trained both ways and the category kept where "
        "its validation loss is 10% lower, else read as written. The network's reading binds only the network: each baseline fits "
        "both and keeps the one of lower out-of-fold loss.",
    )
    sheet: str | None = Field(None, description="Excel (.xlsx): the sheet to read; default: the first.")
    text: TextConfig = Field(default_factory=TextConfig, description="Free-text columns: hashed word and character n-grams.")
    split: SplitConfig = Field(default_factory=SplitConfig)
    image_column: str | None = Field(None, description="Images listed in a CSV: the column of paths (relative to the CSV); default: detected.")
    image_size: int | list[int] | None = Field(
        None, description="Images: resize to SIZE or [HEIGHT, WIDTH]; default: the median size of the images, at most 128 (a pretrained backbone: its own size)."
    )
    channels: Literal[1, 3] | None = Field(None, description="Images: 1 (grey) or 3 (colour); default: 1 if every image is grey.")
    augment: AugmentConfig | None = Field(None, description="Images: random changes in training, e.g. {flip: horizontal, rotation: 0.05}.")
    cache_mb: int = Field(
        1024, ge=0, description="Images: decode once and keep in memory when the decoded set fits in this many MiB; else stream from disk."
    )
    workers: int | None = Field(None, ge=1, description="Images: processes decoding images; default: the number of cores.")
    max_memory_mb: PositiveInt | Literal["auto"] = Field(
        "auto",
        description="Memory budget for reading a table, in MiB: a file whose reading would need more (about 15x a CSV's size, "
        "measured) is refused before it is read. auto: half of this machine's memory.",
    )

    @field_validator("image_size")
    @classmethod
    def _size_pair(cls, value):
        if value is None:
            return None
        pair = [value, value] if isinstance(value, int) else value
        if len(pair) != 2 or any(v < 4 or v > 1024 for v in pair):
            raise ValueError("must be one size or [height, width], each between 4 and 1024 pixels")
        return pair


class FineTuneConfig(_Strict):
    """Phase two of transfer learning: unfreeze the backbone's top layers at a small learning rate."""

    layers: int = Field(20, ge=1, description="How many of the backbone's top layers to unfreeze (batch normalization stays frozen).")
    learning_rate: float = Field(1e-5, gt=0, description="Learning rate of phase two; usually 10-100x below the first.")
    epochs: int = Field(10, ge=1, description="Most epochs of phase two (early stopping applies).")


def _positive(value: list[int]) -> list[int]:
    if any(units < 1 for units in value):
        raise ValueError("every layer needs at least 1 unit")
    return value


class ModelConfig(_Strict):
    """The network (step 5)."""

    kind: Literal["auto", "tabm", "mlp", "cnn", "pretrained"] = Field(
        "auto",
        description="'auto': tabm for tables, cnn for images (pretrained when a backbone is set); or name one. "
        "tabm is dlw's default for tables (an efficient ensemble with number and category embeddings); mlp is the lesson's plain MLP.",
    )
    hidden_layers: list[int] | None = Field(
        None, description="tabm and mlp: units of each hidden Dense layer; default [128, 128] (tabm), [64, 32] (mlp)."
    )
    dropout: float | None = Field(None, ge=0, lt=1, description="Dropout after each hidden/dense layer; default 0 (tabm), 0.1 (MLP), 0.3 (CNN and heads).")
    ensemble: int = Field(8, ge=1, le=64, description="tabm: members of the efficient ensemble (they share the hidden layers; the prediction is their mean).")
    embeddings: Literal["auto", "piecewise_linear", "periodic", "piecewise_linear_and_periodic", "none"] = Field(
        "auto",
        description="tabm: how numbers enter, each embedding beside the scaled number: piecewise_linear (bins from train quantiles), "
        "periodic (learned frequencies), piecewise_linear_and_periodic (both), or none (scaled only). "
        "auto: from 500 train rows piecewise_linear_and_periodic for regression and piecewise_linear for classification; "
        "none below (the bins overfit a few hundred rows), except on regression with a date input, which keeps "
        "piecewise_linear_and_periodic (a target follows its date in bends), and on a cross-fitted regression table whose "
        "linear baseline's out-of-fold rmse is 1.2 or more times boosting's (the target bends), where the network is the mean "
        "of both designs: the networks with none and as many with piecewise_linear_and_periodic; from 1.5 times (a strong bend), "
        "the networks with piecewise_linear_and_periodic alone.",
    )
    numbers: Literal["auto", "clipped", "clipped_and_linear", "clipped_and_log", "clipped_linear_and_log"] = Field(
        "auto",
        description="tabm: how a number is scaled before its embeddings: clipped (robust scaling, then smooth clipping to (-3, 3), "
        "as RealMLP); clipped_and_linear (also the robust-scaled number unclipped, so a target that rises with a long-tailed "
        "number can follow it); clipped_and_log (also the log of each column whose values are >= 0, scaled and clipped, so a "
        "first layer can form a ratio of two); clipped_linear_and_log (all three). auto: clipped_and_linear for regression, "
        "clipped for classification.",
    )
    output_range: Literal["auto", "seen", "none"] = Field(
        "auto",
        description="tabm, regression: seen holds each prediction within the train and validation targets' range widened by half "
        "of itself on each side, and not below 0 where every target is >= 0 (nor above 0 where every one is <= 0), so a number "
        "far past its train range cannot carry a prediction to an absurd value; none leaves it unbounded. auto: seen.",
    )
    embedding_dim: int = Field(8, ge=1, le=64, description="tabm: width of each number's embedding.")
    text_dim: int = Field(32, ge=1, le=512, description="tabm and mlp: width of a text column's learned embedding (the mean of its n-grams' vectors).")
    text_dropout: float = Field(0.8, ge=0, lt=1, description="tabm and mlp: in training, the share of a row's n-grams left out of its text embedding.")
    bins: Annotated[int, Field(ge=2, le=256)] | Literal["auto"] = Field(
        "auto",
        description="tabm: piecewise-linear bins per number (from the train split's quantiles), 2 to 256. "
        "auto: one per 250 train rows, at least 16 and at most 96 (finer bins need more rows to place); "
        "on regression with a date input, 96 for the numbers the date becomes (a date's bends are narrow).",
    )
    activation: str = Field("relu", description="MLP: activation of hidden layers (a Keras name).")
    conv_filters: list[int] = Field([32, 64, 128], description="CNN: filters of each convolution block (3x3 conv, ReLU, 2x2 pooling).")
    dense_layers: list[int] = Field([128], description="CNN and pretrained head: units of the Dense layers after pooling.")
    batch_norm: bool = Field(True, description="CNN: batch normalization after each convolution.")
    backbone: str | None = Field(
        None, description="Pretrained: a keras.applications name (e.g. MobileNetV3Small), a .keras file or a dlw run folder."
    )
    backbone_layer: str | None = Field(None, description="Pretrained: cut the backbone at this layer; default: the last before its classifier.")
    backbone_weights: str | None = Field(
        None, description="Pretrained keras.applications: a weights file to load instead of the ImageNet weights from the Keras cache."
    )
    freeze: bool = Field(True, description="Pretrained: train the new head only, backbone frozen.")
    fine_tune: FineTuneConfig | None = Field(None, description="Pretrained: {layers, learning_rate, epochs} for a second phase.")

    _check_units = field_validator("hidden_layers", "conv_filters", "dense_layers")(classmethod(lambda cls, v: v if v is None else _positive(v)))

    @property
    def dropout_rate(self) -> float:
        if self.dropout is not None:
            return self.dropout
        # tabm: none. Its ensemble and weight decay regularize; dropout cost 0.56 rmse (4.33 against 3.77) and a third
        # of the fit's time on the 336,776-row table, and was within noise on the development tables (bench/RESULTS.md).
        return {"tabm": 0.0, "mlp": 0.1}.get(self.kind, 0.3)

    @property
    def hidden_units(self) -> list[int]:
        if self.hidden_layers is not None:
            return self.hidden_layers
        return [128, 128] if self.kind == "tabm" else [64, 32]


class EarlyStoppingConfig(_Strict):
    patience: int = Field(20, ge=1, description="Epochs without improvement before stopping.")
    monitor: str = Field("val_loss", description="Logged quantity to watch, e.g. val_loss or val_accuracy.")


class TrainConfig(_Strict):
    """Fitting the network (step 6)."""

    epochs: PositiveInt | Literal["auto"] = Field(
        "auto", description="Most epochs to train; early stopping usually ends sooner. auto: about 3,000 steps (tabm, fewer on large tables), 200 otherwise."
    )
    batch_size: PositiveInt | Literal["auto"] = Field(
        "auto", description="Rows per gradient step. auto: from the number of train rows for tabm (32 to 512), 32 otherwise."
    )
    optimizer: Literal["auto", "adam", "adamw", "sgd", "rmsprop", "nadam", "adagrad"] = Field(
        "auto", description="Keras optimizer. auto: adamw for tabm, adam otherwise."
    )
    learning_rate: PositiveFloat | Literal["auto"] = Field("auto", description="Optimizer step size (the peak, with a schedule). auto: 0.002 (tabm), 0.001 otherwise.")
    weight_decay: float = Field(0.01, ge=0, description="adamw: decoupled weight decay.")
    schedule: Literal["auto", "constant", "cosine"] = Field(
        "auto", description="Learning rate over training: constant, or cosine (5% linear warm-up, then cosine decay to 0 over the epoch budget). auto: cosine for tabm."
    )
    cycles: PositiveInt | Literal["auto"] = Field(
        "auto",
        description="Most learning-rate cycles. Each after the first restarts from the best weights at half the last peak rate, "
        "for the same epochs; it runs only when the cycle before lowered the validation loss by at least 0.5%, and is undone "
        "when it does not lower it. auto: 3 for tabm on a regression target of up to 100,000 train rows, 1 otherwise.",
    )
    early_stopping: EarlyStoppingConfig | Literal[False] = Field(
        default_factory=EarlyStoppingConfig,
        description="false, or {patience, monitor}; the best epoch's weights are restored.",
    )
    seed: int = Field(42, description="Seed of weight initialisation, dropout and shuffling.")
    folds: PositiveInt | Literal["auto"] = Field(
        "auto",
        description="Tables: cross-fit this many networks, each early-stopped on one fold of the train and validation rows and "
        "trained on the others; they predict as their mean, and the baselines are cross-fitted alike (1: one network). "
        f"auto: {AUTO_FOLDS} for tabm on a regression target with a random split of up to {AUTO_MAX_ROWS:,} train and validation rows, 1 otherwise.",
    )
    checkpoint_seconds: float = Field(
        2.0, ge=0, description="Save the training's state for --resume after an epoch when this many seconds passed since the last save (0: every epoch)."
    )
    class_weight: Literal["auto", "balanced", "none"] = Field(
        "auto",
        description="Classification: weigh each class's rows by n / (k * rows of the class) in the loss (balanced), or not (none). "
        "auto: when the smallest class is under 20% of the train rows (and under half of 1/k for k classes), balanced for a multiclass "
        "target; a binary one keeps an unweighted loss and decides as a balanced model would (each class's probability divided by its share of the train rows).",
    )
    distribute: Literal["auto", "none", "data_parallel"] = Field(
        "auto",
        description="Training across devices (JAX): data_parallel splits each batch over every device (and host, "
        "with JAX_COORDINATOR_ADDRESS set); auto does so when there is more than one device; none uses one.",
    )

    @field_validator("early_stopping", mode="before")
    @classmethod
    def _true_means_defaults(cls, value: Any) -> Any:
        return {} if value is True else value


class ChecksConfig(_Strict):
    """The honesty checks of every run: the verdict, unfamiliar inputs."""

    ood_rate: float = Field(
        0.05, gt=0, lt=0.5, description="Share of familiar inputs the unfamiliar-input detector is calibrated to flag (on the validation split; cross-fitted, on every non-test row)."
    )
    bootstrap: int = Field(2000, ge=100, description="Bootstrap resamples of the test rows for the verdict's 95% interval.")
    main_metric: Literal["auto", "accuracy", "balanced_accuracy", "macro_f1", "log_loss", "roc_auc", "rmse", "mae"] = Field(
        "auto",
        description="The metric the verdict is judged on. auto: rmse (regression), accuracy (classification); "
        "balanced_accuracy (multiclass) or roc_auc (binary) when the classes are imbalanced (as for train.class_weight: auto).",
    )
    threshold: Annotated[float, Field(gt=0, lt=1)] | Literal["auto"] = Field(
        0.5, description="Binary: the probability of the second class from which it is predicted; auto: chosen on the validation split."
    )
    calibration: Literal["temperature", "none"] = Field(
        "temperature",
        description="Classification: temperature scaling fitted on the validation split and saved inside model.keras, so probabilities are calibrated; or none.",
    )
    persistence: str | None = Field(
        None,
        description="Regression: the numeric column holding the target's value one step earlier (today's value when the target is tomorrow's); "
        "adds the baseline 'persistence' (tomorrow = today).",
    )


class Distribution(_Strict):
    """One hyperparameter's range: exactly one of ``choice``, ``float`` or ``int``."""

    choice: list[Any] | None = Field(None, min_length=1, description="Try one of these values.")
    float_: list[float] | None = Field(None, alias="float", min_length=2, max_length=2, description="[low, high], a real number.")
    int_: list[int] | None = Field(None, alias="int", min_length=2, max_length=2, description="[low, high], a whole number.")
    log: bool = Field(False, description="float/int: sample on a log scale (low must be above 0).")
    step: float | None = Field(None, gt=0, description="float/int: only multiples of this step above low.")

    model_config = ConfigDict(extra="forbid", validate_assignment=True, validate_by_name=True, serialize_by_alias=True)

    @model_validator(mode="after")
    def _one_kind(self):  # noqa: C901
        kinds = [k for k, v in (("choice", self.choice), ("float", self.float_), ("int", self.int_)) if v is not None]
        if len(kinds) != 1:
            found = " and ".join(kinds) if kinds else "none of them"
            raise ValueError(f"expected exactly one of choice: [...], float: [low, high] or int: [low, high], found {found}")
        if kinds[0] == "choice":
            if self.log or self.step is not None:
                raise ValueError("log and step apply to float and int ranges, not to choice")
            return self
        low, high = self.float_ or self.int_
        if not low < high:
            raise ValueError(f"{kinds[0]}: [low, high] needs low < high, found [{low}, {high}]")
        if self.log and low <= 0:
            raise ValueError(f"log: true needs low > 0, found {low}")
        if self.log and self.step is not None:
            raise ValueError("log and step cannot be combined")
        return self

    @model_serializer(mode="wrap")
    def _only_what_is_set(self, handler):
        return {k: v for k, v in handler(self).items() if v is not None and not (k == "log" and v is False)}


class TuneConfig(_Strict):
    """Hyperparameter search with Optuna (``dlw tune``, step 7): trials see the train and validation splits only."""

    trials: int = Field(20, ge=1, description="Finished trials (complete or pruned) the study should hold, all workers together.")
    timeout: float | None = Field(None, gt=0, description="Seconds after which this worker starts no new trial; default: no limit.")
    metric: str = Field("val_loss", description="Logged validation quantity to optimise, e.g. val_loss, val_accuracy, val_auc.")
    direction: Literal["minimize", "maximize"] | None = Field(
        None, description="minimize or maximize the metric; default: minimize for losses and errors, maximize otherwise."
    )
    sampler: Literal["tpe", "random"] = Field("tpe", description="Optuna sampler: tpe (TPESampler) or random (RandomSampler).")
    pruner: Literal["median", "none"] = Field("median", description="Stop poor trials early (MedianPruner on the per-epoch metric), or none.")
    seed: int = Field(42, description="Seed of the sampler; trial N samples with seed + N, so workers never repeat each other.")
    search_space: dict[str, Distribution] | None = Field(
        None,
        description="Ranges keyed by config path, e.g. {model.dropout: {float: [0, 0.5]}, train.learning_rate: {float: [1e-4, 1e-2], log: true}, "
        "model.hidden_layers: {choice: [[32], [64, 32]]}}; default: a space for the model kind.",
    )

    @field_validator("metric")
    @classmethod
    def _validation_metric(cls, value: str) -> str:
        if not value.startswith("val_"):
            raise ValueError(f"trials are measured on the validation split only: use a logged val_* quantity, e.g. val_{value}")
        return value


class TrackConfig(_Strict):
    """Experiment tracking (``pip install 'dlw[track]'``); ``--track mlflow`` / ``--track tensorboard`` switch these on."""

    mlflow: bool = Field(
        False, description="Log the config, each epoch's metrics, the test metrics with the baselines and the verdict, and the run folder to MLflow."
    )
    tensorboard: bool = Field(False, description="Write Keras TensorBoard logs into the run folder's tensorboard/ (tuning: the tuning folder's).")
    mlflow_uri: str | None = Field(
        None, description="MLflow tracking URI; default: MLFLOW_TRACKING_URI, else sqlite:///mlflow.db in the working directory."
    )
    experiment: str | None = Field(None, description="MLflow experiment; default: the run's name.")


class Config(_Strict):
    """A whole run: data, task, model, training, loss and metrics."""

    name: str | None = Field(None, description="Run name; default: the config, data file or built-in name.")
    data: DataConfig
    task: Literal["auto", "binary", "multiclass", "regression"] = Field(
        "auto", description="What kind of prediction; 'auto' infers it from the target column."
    )
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    loss: str = Field("auto", description="'auto' (from the task) or a Keras loss name; for regression one that reads only the "
                      "difference from the standardized target: mean_squared_error, mean_absolute_error, huber or log_cosh.")
    metrics: list[str] | Literal["auto"] = Field("auto", description="'auto' or a list of Keras metric names.")
    checks: ChecksConfig = Field(default_factory=ChecksConfig)
    tune: TuneConfig = Field(default_factory=TuneConfig)
    track: TrackConfig = Field(default_factory=TrackConfig)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


# --- reading ---------------------------------------------------------------



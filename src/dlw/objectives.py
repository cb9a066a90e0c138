"""Step 4, the cost function and metrics, chosen from the task.

| task       | output layer    | loss                             | metrics          |
| ---------- | --------------- | -------------------------------- | ---------------- |
| binary     | 1 unit, sigmoid | binary cross-entropy             | accuracy, AUC    |
| multiclass | k units, softmax| sparse categorical cross-entropy | accuracy         |
| regression | 1 unit, linear  | mean squared error (standardized target) | RMSE, MAE |

A config may name any Keras loss or metric instead of ``auto``.
"""

from __future__ import annotations

from dataclasses import dataclass

from dlw.errors import ConfigError

_AUTO = {
    "binary": ("binary_crossentropy", ["accuracy", "auc"], "sigmoid"),
    "multiclass": ("sparse_categorical_crossentropy", ["accuracy"], "softmax"),
    "regression": ("mean_squared_error", ["root_mean_squared_error", "mean_absolute_error"], "linear"),
}

_LOGGED = {"root_mean_squared_error": "rmse", "mean_absolute_error": "mae"}

_WHY = {
    "binary": "binary cross-entropy: the negative log-likelihood of a yes/no outcome under a sigmoid probability",
    "multiclass": "sparse categorical cross-entropy: the negative log-likelihood of the true class under a softmax",
    "regression": "mean squared error on the standardized {target}: penalises large errors most; RMSE and MAE are reported in the target's units",
}


# Which way each metric improves: the one table dlw reads it from (verdict, tuning, report,
# sufficiency, importance). Names as dlw's metrics.json and Keras's logs write them.
HIGHER_IS_BETTER = {
    "accuracy": True, "balanced_accuracy": True, "macro_f1": True, "roc_auc": True, "auc": True, "r2": True,
    "log_loss": False, "rmse": False, "mae": False, "loss": False, "brier": False, "ece": False,
}
# Other names (a Keras loss or metric a config names) are errors when they contain one of these.
LOWER_IS_BETTER_PARTS = ("loss", "error", "mae", "mse", "rmse", "brier", "mape", "crossentropy", "hinge")
# The metric the verdict is judged on, per task.
MAIN_METRIC = {"binary": "accuracy", "multiclass": "accuracy", "regression": "rmse"}


def higher_is_better(metric: str) -> bool:
    """Whether a larger ``metric`` is better; a ``val_`` prefix is ignored.

    >>> higher_is_better("val_accuracy"), higher_is_better("rmse"), higher_is_better("val_sparse_categorical_crossentropy")
    (True, False, False)
    """
    name = str(metric).lower().removeprefix("val_")
    if name in HIGHER_IS_BETTER:
        return HIGHER_IS_BETTER[name]
    return not any(part in name for part in LOWER_IS_BETTER_PARTS)


@dataclass
class Objective:
    loss: str
    metrics: list[str]
    output_activation: str
    output_units: int
    why: str

    def logged_names(self) -> list[str]:
        """What ``fit`` logs each epoch: ``loss``, the metrics, and each with ``val_``."""
        names = ["loss"] + [_LOGGED.get(m, m) for m in self.metrics]
        return names + [f"val_{n}" for n in names]

    def keras_metrics(self):
        """Metric objects for ``compile`` (names kept short so logs read ``val_auc``, ``val_rmse``)."""
        import keras

        named = {
            "auc": lambda: keras.metrics.AUC(name="auc"),
            "root_mean_squared_error": lambda: keras.metrics.RootMeanSquaredError(name="rmse"),
            "mean_absolute_error": lambda: keras.metrics.MeanAbsoluteError(name="mae"),
        }
        return [named[m]() if m in named else m for m in self.metrics]


def learned_target(logged: bool) -> str:
    """What a regression network learns, in words: ``"log(1 + target)"`` under ``data.target_transform: log``, else ``"target"``."""
    return "log(1 + target)" if logged else "target"


def choose_objective(task: str, n_classes: int | None, loss: str = "auto", metrics: list[str] | str = "auto", *, logged_target: bool = False) -> Objective:
    """The loss, metrics and output layer for ``task``, honouring config overrides; ``logged_target``: the network learns log(1 + target).

    Override names are checked once, at the boundary, by ``check_names``; a regression loss also by ``check_regression_loss``.
    """
    if task == "regression":
        check_regression_loss(loss)
    auto_loss, auto_metrics, activation = _AUTO[task]
    units = n_classes if task == "multiclass" else 1
    learned = learned_target(logged_target)
    why = _WHY[task].format(target=learned) if loss == "auto" else f"{loss}: chosen in the config" + (f", on the standardized {learned}" if logged_target else "")
    return Objective(
        loss=auto_loss if loss == "auto" else loss,
        metrics=list(auto_metrics if metrics == "auto" else metrics),
        output_activation=activation,
        output_units=units,
        why=why,
    )


# A regression network is fitted to the standardized target (mean 0, sd 1), so its loss must read only how far each
# prediction is from its target. A loss of the target's own scale or sign would be computed on numbers it was not
# made for: mean_squared_logarithmic_error clips every target below the mean to 0 (found on Ecdat's HHS breaches).
DIFFERENCE_LOSSES = ("mean_squared_error", "mean_absolute_error", "huber", "log_cosh")


def check_regression_loss(loss: str) -> None:
    """A ConfigError naming ``loss`` when it is not one of ``DIFFERENCE_LOSSES`` (under any name Keras gives them)."""
    if loss == "auto":
        return
    from dlw._backend import import_keras

    found = import_keras().losses.get(loss)
    function = getattr(found, "fn", found)  # a loss class wraps its function; a few are classes of their own
    if getattr(function, "__name__", type(found).__name__) not in DIFFERENCE_LOSSES:
        raise ConfigError(
            f"key 'loss': {loss!r} reads more than the difference between prediction and target, and dlw fits a regression network "
            f"to the standardized target (mean 0, sd 1), where it would mean something else; choose one of {', '.join(DIFFERENCE_LOSSES)}"
        )


def check_names(loss: str, metrics: list[str] | str) -> None:
    """Fail early, before any work, on a loss or metric name Keras does not know."""
    if loss != "auto":
        check_keras_name("loss", loss)
    for name in [] if metrics == "auto" else metrics:
        check_keras_name("metrics", name)


def check_monitor(objective: Objective, monitor: str) -> None:
    """Early stopping must watch something ``fit`` logs."""
    known = objective.logged_names()
    if monitor not in known:
        raise ConfigError(f"key 'train.early_stopping.monitor': {monitor!r} is not logged; choose one of {', '.join(known)}")


def check_keras_name(key: str, name: str) -> None:
    """Raise a ConfigError naming ``key`` when Keras has no loss/metric called ``name``."""
    from dlw._backend import import_keras

    keras = import_keras()
    getter = keras.losses.get if key == "loss" else keras.metrics.get
    if name in ("accuracy", "auc"):
        return
    try:
        getter(name)
    except (ValueError, TypeError):
        what = "loss" if key == "loss" else "metric"
        raise ConfigError(f"key {key!r}: Keras has no {what} named {name!r} (e.g. mean_absolute_error, huber)") from None

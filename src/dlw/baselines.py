"""The simple models the network is judged against, each at full strength.

A verdict against a handicapped baseline misleads, so every baseline gets the same
chance to choose its capacity that the network gets, on the same validation split, and
none ever sees the test split:

- ``majority`` / ``mean``: the most frequent class, or the train mean.
- ``linear``: logistic or ridge regression on standardized numbers and one-hot
  categories; its regularization (C or alpha) is chosen on the validation split from a
  log grid, then the model fitted on the train rows with it is kept.
- ``hist_gradient_boosting``: scikit-learn's HistGradientBoosting on the numbers and the
  category codes (native categorical splits), with early stopping on dlw's own validation
  split and a budget of 3,000 iterations. At scikit-learn's default of 100 iterations it
  underfits large tables badly (rmse 11.55 against 3.32 for AutoGluon on a 337,000-row
  table, MEASURED.md).
- ``logistic_pixels``: logistic (or ridge) regression on raw pixels scaled down to at
  most 16x16 (images).

Each fitter takes the prepared data and returns a ``Fitted``: a function from inputs to
outputs (probabilities, or predictions in target units) and what it chose, with the
seconds its fit took.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

BOOSTING_ITERATIONS = 3000
BOOSTING_PATIENCE = 50
LINEAR_C_GRID = tuple(10.0**e for e in range(-4, 3))
RIDGE_ALPHA_GRID = tuple(10.0**e for e in range(-2, 5))
GRID_ROWS = 20_000


@dataclass
class Fitted:
    predict: Callable  # inputs -> probabilities (n, k) or predictions (n,)
    chosen: dict = field(default_factory=dict)
    fit_seconds: float = 0.0


def sklearn_threads():
    """Cap scikit-learn's OpenMP threads at half the cores.

    After JAX has started its own thread pool, OpenMP's spinning workers fight it
    for the cores: HistGradientBoosting on 12,000 rows took 21 s instead of 1 s on
    2 cores with the default thread count (measured; see bench/RESULTS.md).
    """
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=max(1, (os.cpu_count() or 2) // 2))


def class_probabilities(model, x, n_classes: int) -> np.ndarray:
    """``predict_proba`` spread over every class index, also those absent from the train rows."""
    proba = np.zeros((x.shape[0], n_classes))
    proba[:, model.classes_.astype(int)] = model.predict_proba(x)
    return proba


def output_of(model, problem, features: Callable) -> Callable:
    """A predict function: probabilities over every class, or predictions, for raw inputs."""
    n_classes = len(problem.classes) if problem.is_classification else 0

    def predict(inputs):
        x = features(inputs)
        with sklearn_threads():  # predicting too: boosting's per-tree OpenMP calls fight JAX's threads
            return class_probabilities(model, x, n_classes) if n_classes else model.predict(x)

    return predict


def fit_trivial(prepared, seed: int) -> Fitted:
    from sklearn.dummy import DummyClassifier, DummyRegressor

    problem = prepared.problem
    model = DummyClassifier(strategy="most_frequent") if problem.is_classification else DummyRegressor(strategy="mean")
    x, y = prepared.baseline_features(prepared.inputs["train"]), prepared.targets["train"]
    started = time.perf_counter()
    model.fit(x, y)
    return Fitted(output_of(model, problem, prepared.baseline_features), {}, time.perf_counter() - started)


def fit_regularized(prepared, seed: int, *, features: Callable) -> Fitted:
    """Logistic or ridge regression on standardized features, its regularization chosen on the validation split.

    The grid is searched on at most ``GRID_ROWS`` train rows (a seeded sample), then the
    chosen value is fitted on every train row: on 200,000 rows a full grid would cost
    more than the network's whole training.
    """
    from scipy import sparse
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.metrics import log_loss, mean_squared_error
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    problem = prepared.problem
    x, y = prepared.baseline_training_set(features)
    xv, yv = features(prepared.inputs["validation"]), prepared.targets["validation"]
    dense = not sparse.issparse(x)  # centring a sparse matrix would make it dense
    sample = np.sort(np.random.default_rng(seed).choice(len(y), GRID_ROWS, replace=False)) if len(y) > GRID_ROWS else slice(None)
    n_classes = len(problem.classes) if problem.is_classification else 0
    if n_classes:
        key, grid = "C", LINEAR_C_GRID
        make = lambda c: make_pipeline(StandardScaler(with_mean=dense), LogisticRegression(C=c, max_iter=2000))  # noqa: E731
        loss = lambda m: log_loss(yv, class_probabilities(m, xv, n_classes), labels=list(range(n_classes)))  # noqa: E731
    else:
        key, grid = "alpha", RIDGE_ALPHA_GRID
        make = lambda a: make_pipeline(StandardScaler(with_mean=dense), Ridge(alpha=a))  # noqa: E731
        loss = lambda m: mean_squared_error(yv, m.predict(xv))  # noqa: E731
    started = time.perf_counter()
    with sklearn_threads():
        scores = {value: loss(make(value).fit(x[sample], y[sample])) for value in grid}
        best = min(scores, key=scores.get)
        model = make(best).fit(x, y)
    return Fitted(output_of(model, problem, features), {key: best}, time.perf_counter() - started)


def fit_linear(prepared, seed: int) -> Fitted:
    return fit_regularized(prepared, seed, features=prepared.linear_features)


def fit_pixels(prepared, seed: int) -> Fitted:
    return fit_regularized(prepared, seed, features=prepared.baseline_features)


def fit_boosting(prepared, seed: int) -> Fitted:
    """HistGradientBoosting with early stopping on the validation split, native categorical splits."""
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    problem = prepared.problem
    x, categorical = prepared.tree_features(prepared.inputs["train"])
    xv, _ = prepared.tree_features(prepared.inputs["validation"])
    settings = dict(
        max_iter=BOOSTING_ITERATIONS, learning_rate=0.1, early_stopping=True, n_iter_no_change=BOOSTING_PATIENCE,
        validation_fraction=None, categorical_features=categorical if categorical.any() else None, random_state=seed,
    )
    cls = HistGradientBoostingClassifier if problem.is_classification else HistGradientBoostingRegressor
    model = cls(**settings)
    started = time.perf_counter()
    with sklearn_threads():
        model.fit(x, prepared.targets["train"], X_val=xv, y_val=prepared.targets["validation"])
    seconds = time.perf_counter() - started
    return Fitted(output_of(model, problem, lambda inputs: prepared.tree_features(inputs)[0]), {"iterations": int(model.n_iter_)}, seconds)


FITTERS = {
    "trivial": fit_trivial,
    "linear": fit_linear,
    "hist_gradient_boosting": fit_boosting,
    "logistic_pixels": fit_pixels,
}


def baseline_name(name: str, problem) -> str:
    """How a baseline is named in metrics.json for this task."""
    if name == "trivial":
        return "majority" if problem.is_classification else "mean"
    if name == "logistic_pixels" and not problem.is_classification:
        return "ridge_pixels"
    return name


def fit_baselines(prepared, seed: int) -> dict[str, Fitted]:
    """Every baseline of the prepared data's kind, fitted on its train rows (validation chooses, test never)."""
    return {baseline_name(name, prepared.problem): FITTERS[name](prepared, seed) for name in prepared.baseline_names}

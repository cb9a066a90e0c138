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
  table, MEASURED.md). On up to 3,000 train rows its smallest leaf (2, 5, 10 or 20 rows)
  is chosen on the validation split: scikit-learn's 20 left a 20-row table no split.
- ``logistic_pixels``: logistic (or ridge) regression on raw pixels scaled down to at
  most 16x16 (images).
- ``persistence`` (with ``checks.persistence: <column>``, regression): "tomorrow = today",
  the named column's value (the target one step earlier) as the prediction; nothing fitted.

Each fitter takes the prepared data and returns a ``Fitted``: a function from inputs to
outputs (probabilities, or predictions in target units) and what it chose, with the
seconds its fit took.
"""

from __future__ import annotations

import contextvars
import os
import sys
import threading
import time
import warnings
from concurrent.futures import Future
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field, replace
from typing import Any, Callable

import numpy as np

from dlw.data.prepared import sample_positions

BOOSTING_ITERATIONS = 3000
BOOSTING_PATIENCE = 50
BOOSTING_LEAF = 20  # scikit-learn's min_samples_leaf, kept above BOOSTING_GRID_ROWS
BOOSTING_LEAF_GRID = (2, 5, 10, 20)
BOOSTING_GRID_ROWS = 3_000  # above it the choice bought nothing measurable and slowed the network beside it
# While the baselines fit beside the network, the training loop's Python (each step's dispatch) waits
# for the GIL behind boosting's Python, up to the interpreter's switch interval (5 ms) each time: on
# the 336,776-row table an epoch took 17-20 s beside boosting against 8-12 s alone, and 14-16 s at
# 0.1-0.5 ms (bench/RESULTS.md, stop 33).
BACKGROUND_SWITCH_INTERVAL = 0.0005
LINEAR_C_GRID = tuple(10.0**e for e in range(-4, 3))
RIDGE_ALPHA_GRID = tuple(10.0**e for e in range(-2, 5))
GRID_ROWS = 20_000
BOOSTING_PRELOAD = ("dlw.baselines", "sklearn.ensemble")  # what a boosting worker imports first (``dlw.workers``)


@dataclass
class Fitted:
    predict: Callable  # inputs -> probabilities (n, k) or predictions (n,)
    chosen: dict = field(default_factory=dict)
    fit_seconds: float = 0.0
    known: dict = field(default_factory=dict)  # split -> (its inputs, the outputs on them), computed with the fit
    out_of_fold_loss: float | None = None  # cross-fitted: each fit's loss on its own fold, over every non-test row
    reading: Any = None  # the Prepared whose encoding ``predict`` reads, where it is the run's other reading (``dlw.groups``)
    network_reading_loss: float | None = None  # with ``reading``: the out-of-fold loss of its fits reading as the network does

    def predict_split(self, split: str, inputs):
        """The outputs on ``inputs``: those computed with the fit when ``inputs`` are that split's own array(s).

        A baseline of the other reading predicts the same rows in its own encoding (``reading.inputs[split]``).
        """
        seen, outputs = self.known.get(split, (None, None))
        if seen is inputs:
            return outputs
        if self.reading is None:
            return self.predict(inputs)
        if split not in self.reading.inputs:
            raise ValueError(f"the {split!r} rows are not encoded in this baseline's reading of the group numbers; encode them with dlw.groups.with_other_reading")
        return self.predict(self.reading.inputs[split])


# Set (in one thread's context) while nothing else computes: the network's run waits for the baselines.
_cores_free = contextvars.ContextVar("cores_free", default=False)
# Rows a background baseline predicts at a time: between two, it may take every core (``BaselinesFuture``).
PREDICT_CHUNK = 8192


def sklearn_threads():
    """Cap scikit-learn's OpenMP threads at half the cores (no cap where ``_cores_free`` is set).

    After JAX has started its own thread pool, OpenMP's spinning workers fight it
    for the cores: HistGradientBoosting on 12,000 rows took 21 s instead of 1 s on
    2 cores with the default thread count (measured; see bench/RESULTS.md).
    """
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=sklearn_thread_limit())


def sklearn_thread_limit() -> int | None:
    """``sklearn_threads``' cap: half the cores, or None (no cap) where ``_cores_free`` is set."""
    return None if _cores_free.get() else half_the_cores()


def half_the_cores() -> int:
    """Half this machine's cores, at least one: the baselines' share beside the network's training."""
    return max(1, (os.cpu_count() or 2) // 2)


class BaselinesFuture(Future):
    """The background baselines' future; once someone waits for it, nothing else computes, and their
    remaining predictions take every core (on the 336,776-row table the run waited 13.6 s for
    boosting's predictions on one core, the other idle: bench/RESULTS.md, stop 34)."""

    def __init__(self):
        super().__init__()
        self.awaited = threading.Event()
        self._bend: Future = Future()

    def result(self, timeout=None):
        self.awaited.set()
        return super().result(timeout)

    def bend(self) -> float | None:
        """``linear_over_boosting`` of the baselines in the network's reading, as soon as those are fitted.

        Where each baseline also fits the other reading of a group's number, the network's design need not
        wait for it: on ChickWeight boosting on the number is 15 of the baselines' 17 s (stop 49). Waiting
        here leaves the rest fitting beside the network, as before it was awaited.
        """
        return self._bend.result()

    def set_bend(self, fitted: dict[str, Fitted]) -> None:
        """Set ``bend`` from ``fitted`` (the network's reading's baselines) unless it is set already."""
        if not self._bend.done():
            self._bend.set_result(linear_over_boosting(fitted))

    def set_exception(self, exception) -> None:
        if not self._bend.done():
            self._bend.set_exception(exception)
        super().set_exception(exception)


def outputs_in_chunks(fitted: Fitted, prepared, split: str, awaited: threading.Event):
    """``fitted``'s outputs on ``split``, ``PREDICT_CHUNK`` rows at a time where they are in memory, each on every core once ``awaited`` is set."""
    inputs, n = prepared.inputs[split], prepared.count(split)
    if prepared.streamed or n <= PREDICT_CHUNK:
        return fitted.predict(inputs)
    parts = []
    for start in range(0, n, PREDICT_CHUNK):
        token = _cores_free.set(awaited.is_set())
        try:
            parts.append(np.asarray(fitted.predict(prepared.take(inputs, np.arange(start, min(n, start + PREDICT_CHUNK))))))
        finally:
            _cores_free.reset(token)
    return np.concatenate(parts)


_switching = {"lock": threading.Lock(), "fits": 0, "before": None}  # background fits under way, the interval before the first


@contextmanager
def quick_gil_handover():
    """The interpreter's switch interval at ``BACKGROUND_SWITCH_INTERVAL`` while any background fit runs; as it was after the last."""
    with _switching["lock"]:
        if _switching["fits"] == 0:
            _switching["before"] = sys.getswitchinterval()
            sys.setswitchinterval(min(_switching["before"], BACKGROUND_SWITCH_INTERVAL))
        _switching["fits"] += 1
    try:
        yield
    finally:
        with _switching["lock"]:
            _switching["fits"] -= 1
            if _switching["fits"] == 0:
                sys.setswitchinterval(_switching["before"])


@contextmanager
def ignoring(category: type[Warning]):
    """Ignore ``category`` while the block runs, then remove that one filter: other filters stay as they are.

    ``warnings.catch_warnings`` is not thread-safe: it swaps in a copy of the filter list and puts the
    old list back on exit, dropping any filter another thread added meanwhile. Used in the baselines'
    thread, it dropped the one that requests adds while Keras imports it in the main thread, and
    urllib3's "SOCKS support requires PySocks" reached the user as a warning (stop 36).
    """
    entry = ("ignore", None, category, None, 0)
    warnings.filterwarnings("ignore", category=category)
    try:
        yield
    finally:
        with suppress(ValueError):  # a catch_warnings block elsewhere already dropped it with its copy
            warnings.filters.remove(entry)


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


def scaler_for(dense: bool, scaled_columns: int | None):
    """Standardize every column, or only the first ``scaled_columns`` (the rest, TF-IDF, pass as they are).

    Standardizing a TF-IDF block would undo its weighting: on a text table the linear
    model read the text worse than it read the table without it (4.37 against 4.13 rmse).
    """
    from sklearn.compose import ColumnTransformer
    from sklearn.preprocessing import FunctionTransformer, StandardScaler

    if scaled_columns is None:
        return StandardScaler(with_mean=dense)
    if scaled_columns == 0:  # text alone: nothing to standardize, and StandardScaler refuses zero columns
        return FunctionTransformer()
    # Both blocks named by slices: a "passthrough" remainder is a list of every TF-IDF column's index, which
    # scikit-learn checks one by one at every fit and transform (3 s of a 120-row text table's evaluate).
    return ColumnTransformer([("scaled", StandardScaler(with_mean=dense), slice(0, scaled_columns)), ("tf_idf", "passthrough", slice(scaled_columns, None))])


def fit_regularized(prepared, seed: int, *, features: Callable, scaled_columns: int | None = None) -> Fitted:
    """Logistic or ridge regression on standardized features, its regularization chosen on the validation split.

    The grid is searched on at most ``GRID_ROWS`` train rows (a seeded sample), then the
    chosen value is fitted on every train row: on 200,000 rows a full grid would cost
    more than the network's whole training. ``scaled_columns``: see ``scaler_for``.
    """
    from scipy import sparse
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import make_pipeline

    problem = prepared.problem
    x, y = prepared.baseline_training_set(features)
    xv, yv = features(prepared.inputs["validation"]), prepared.targets["validation"]
    dense = not sparse.issparse(x)  # centring a sparse matrix would make it dense
    sample = sample_positions(len(y), GRID_ROWS, np.random.default_rng(seed)) if len(y) > GRID_ROWS else slice(None)
    n_classes = len(problem.classes) if problem.is_classification else 0
    if n_classes:
        key, grid = "C", LINEAR_C_GRID
        make = lambda c: make_pipeline(scaler_for(dense, scaled_columns), LogisticRegression(C=c, max_iter=2000))  # noqa: E731
    else:
        key, grid = "alpha", RIDGE_ALPHA_GRID
        make = lambda a: make_pipeline(scaler_for(dense, scaled_columns), Ridge(alpha=a))  # noqa: E731
    started = time.perf_counter()
    # A weakly regularized candidate on nearly separable rows stops at max_iter (scikit-learn
    # then prints a ten-line warning per fit); the validation loss judges it all the same,
    # and whether the kept one converged is recorded below.
    with sklearn_threads(), ignoring(ConvergenceWarning):
        scores = {value: validation_loss(validation_outputs(make(value).fit(x[sample], y[sample]), xv, n_classes), yv, n_classes) for value in grid}
        best = min(scores, key=scores.get)
        model = make(best).fit(x, y)
    chosen = {key: best}
    if n_classes and np.max(model[-1].n_iter_) >= model[-1].max_iter:
        chosen["converged"] = False
    return Fitted(output_of(model, problem, features), chosen, time.perf_counter() - started)


def fit_linear(prepared, seed: int) -> Fitted:
    return fit_regularized(prepared, seed, features=prepared.linear_features, scaled_columns=prepared.linear_scaled_columns())


def fit_pixels(prepared, seed: int) -> Fitted:
    return fit_regularized(prepared, seed, features=prepared.baseline_features)


def fit_boosting(prepared, seed: int) -> Fitted:
    """HistGradientBoosting with early stopping on the validation split, native categorical splits.

    On up to ``BOOSTING_GRID_ROWS`` train rows its smallest leaf is chosen on the validation
    split from ``BOOSTING_LEAF_GRID``: scikit-learn's 20 rows a leaf leaves a 20-row table
    no split at all (the baseline was the mean), and a 150-row one a few.
    """
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    problem = prepared.problem
    x, categorical = prepared.tree_features(prepared.inputs["train"])
    xv, _ = prepared.tree_features(prepared.inputs["validation"])
    y, yv = prepared.targets["train"], prepared.targets["validation"]
    settings = dict(
        max_iter=BOOSTING_ITERATIONS, learning_rate=0.1, early_stopping=True, n_iter_no_change=BOOSTING_PATIENCE,
        validation_fraction=None, categorical_features=categorical if categorical.any() else None, random_state=seed,
    )
    cls = HistGradientBoostingClassifier if problem.is_classification else HistGradientBoostingRegressor
    leaves = BOOSTING_LEAF_GRID if len(y) <= BOOSTING_GRID_ROWS else (BOOSTING_LEAF,)
    n_classes = len(problem.classes) if problem.is_classification else 0
    started = time.perf_counter()
    if len(leaves) > 1:
        fits, outputs = boosting_candidates(cls, settings, leaves, (x, y, xv, yv), n_classes)
    else:
        with sklearn_threads():
            # One candidate needs no choosing: its validation outputs, 11 s on the 336,776-row table, are
            # left to be computed once, in chunks, with the test split's (bench/RESULTS.md, stop 36).
            fits, outputs = {leaves[0]: cls(**settings, min_samples_leaf=leaves[0]).fit(x, y, X_val=xv, y_val=yv)}, {}
    best = min(outputs, key=lambda leaf: validation_loss(outputs[leaf], yv, n_classes)) if outputs else leaves[0]
    seconds = time.perf_counter() - started
    chosen = {"iterations": int(fits[best].n_iter_), "min_samples_leaf": best}
    known = {"validation": (prepared.inputs["validation"], outputs[best])} if outputs else {}
    return Fitted(output_of(fits[best], problem, lambda inputs: prepared.tree_features(inputs)[0]), chosen, seconds, known)


def boosting_candidates(cls, settings: dict, leaves: tuple, data: tuple, n_classes: int) -> tuple[dict, dict]:
    """Each leaf's fitted boosting and its validation outputs, fitted in ``dlw.workers``' pool where it can start.

    A small table's candidates are Python-bound (scikit-learn grows each tree in Python: 0.3-0.9 ms a tree on 400
    rows), so in this process they hold the interpreter lock against the training loop beside them; there the
    networks and the fits share the cores instead (bench/RESULTS.md, stop 49). The same fits, to the digit: the worker
    caps its threads as ``sklearn_threads`` does here.
    """
    from concurrent.futures.process import BrokenProcessPool

    from dlw.workers import drop_pool, worker_pool

    workers, threads = half_the_cores(), sklearn_thread_limit()
    try:
        pool = worker_pool(workers, BOOSTING_PRELOAD)
        futures = {leaf: pool.submit(fitted_candidate, cls, settings, leaf, data, n_classes, threads) for leaf in leaves}
        done = {leaf: future.result() for leaf, future in futures.items()}
    except (BrokenProcessPool, OSError):  # no worker here (a sandbox, a crashed worker): the same fits, in this process
        drop_pool(workers, BOOSTING_PRELOAD)
        done = {leaf: fitted_candidate(cls, settings, leaf, data, n_classes, threads) for leaf in leaves}
    return {leaf: model for leaf, (model, _) in done.items()}, {leaf: outputs for leaf, (_, outputs) in done.items()}


def fitted_candidate(cls, settings: dict, leaf: int, data: tuple, n_classes: int, threads: int | None) -> tuple[Any, np.ndarray]:
    """One boosting candidate (``min_samples_leaf=leaf``) fitted on ``data`` = (x, y, x_val, y_val), and its validation outputs."""
    from threadpoolctl import threadpool_limits

    x, y, xv, yv = data
    with threadpool_limits(limits=threads):
        model = cls(**settings, min_samples_leaf=leaf).fit(x, y, X_val=xv, y_val=yv)
        return model, validation_outputs(model, xv, n_classes)


def validation_outputs(model, xv, n_classes: int) -> np.ndarray:
    """A fitted scikit-learn model's probabilities over every class (``n_classes`` > 0) or predictions on the validation rows."""
    return class_probabilities(model, xv, n_classes) if n_classes else model.predict(xv)


def validation_loss(outputs: np.ndarray, yv, n_classes: int) -> float:
    """The log loss (``n_classes`` > 0) or mean squared error of ``outputs`` on the validation rows."""
    from sklearn.metrics import log_loss, mean_squared_error

    if n_classes:
        return log_loss(yv, outputs, labels=list(range(n_classes)))
    return mean_squared_error(yv, outputs)


def fit_persistence(prepared, seed: int) -> Fitted:
    """The persistence forecast: the ``checks.persistence`` column's value (its train median where missing)."""
    position = prepared.schema.numeric_input_names.index(prepared.config.checks.persistence)
    return Fitted(lambda inputs: inputs["numeric"][:, position].astype("float64"), {"column": prepared.config.checks.persistence})


FITTERS = {
    "trivial": fit_trivial,
    "linear": fit_linear,
    "hist_gradient_boosting": fit_boosting,
    "logistic_pixels": fit_pixels,
    "persistence": fit_persistence,
}
# A numeric column is suggested for checks.persistence when its name shares a word with the
# target's and it follows the target closely (correlation on the train rows, also one step shifted).
PERSISTENCE_CORRELATION = 0.8


def persistence_notes(prepared) -> list[str]:
    """Check ``checks.persistence`` against the prepared data (a ConfigError naming the key), or suggest it.

    The suggestion comes with a chronological split (``data.split.order: time:<col>``), for
    a regression target, when a numeric input is named like the target and follows it.
    """
    config = prepared.config
    column = config.checks.persistence
    if column is not None:
        check_persistence_column(prepared, column)
        return [f"baseline persistence: the target predicted by {column!r} (its value one step earlier)"]
    if prepared.problem.task != "regression" or not config.data.split.time_column or prepared.kind != "table":
        return []
    found = persistence_candidate(prepared)
    if found is None:
        return []
    name, r = found
    return [
        f"column {name!r} looks like the target one step earlier (correlation {r:.2f} on the train rows): "
        f"set checks.persistence: {name} to measure the network against 'the next value = this one'"
    ]


def check_persistence_column(prepared, column: str) -> None:
    """A ConfigError naming ``checks.persistence`` unless ``column`` is a numeric input of a regression table."""
    from dlw.errors import ConfigError

    key = "key 'checks.persistence'"
    if prepared.kind != "table" or prepared.problem.task != "regression":
        raise ConfigError(f"{key}: a persistence baseline needs a regression target in a table; received a {prepared.problem.task} task on {prepared.kind}s")
    if column not in prepared.frame.columns:
        raise ConfigError(f"{key}: column {column!r} is not in the data; name the column holding the target's previous value")
    kinds = {f.name: f.kind for f in prepared.schema.features}
    if column not in kinds:
        why = prepared.schema.excluded.get(column, "not among data.features")
        raise ConfigError(f"{key}: column {column!r} is not an input ({why}); make it a numeric input or name another column")
    if kinds[column] != "numeric":
        raise ConfigError(f"{key}: column {column!r} is {kinds[column]}, expected numeric (the target's value one step earlier)")


def persistence_candidate(prepared) -> tuple[str, float] | None:
    """The numeric input named like the target that follows it most closely on the train rows, with its correlation; or None."""
    import re

    target = prepared.problem.target
    words = set(re.split(r"[^a-z0-9]+", target.lower())) - {""}
    rows = prepared.frame.loc[prepared.splits.train]
    rows = rows.sort_values(prepared.config.data.split.time_column, kind="stable")
    y = rows[target].astype("float64").reset_index(drop=True)
    best = None
    for f in prepared.schema.features:
        if f.kind != "numeric" or not words & (set(re.split(r"[^a-z0-9]+", f.name.lower())) - {""}):
            continue
        x = rows[f.name].astype("float64").reset_index(drop=True)
        # Today's value is tomorrow's previous value: x follows y, or x one row later equals y now.
        r = max(x.corr(y), x.shift(-1).corr(y))
        if r >= PERSISTENCE_CORRELATION and (best is None or r > best[1]):
            best = (f.name, float(r))
    return best


def baseline_name(name: str, problem) -> str:
    """How a baseline is named in metrics.json for this task."""
    if name == "trivial":
        return "majority" if problem.is_classification else "mean"
    if name == "logistic_pixels" and not problem.is_classification:
        return "ridge_pixels"
    return name


def fit_baselines_in_background(prepared) -> Future:
    """A future of ``fit_baselines(prepared, seed)``, computed in a daemon thread from now on.

    Started before the network trains, so the two overlap: scikit-learn works on half the
    cores (``sklearn_threads``) and the network's training on a CPU keeps about one busy, so
    on 336,776 rows boosting's 74 s no longer follow the network's 100 s. The network's JAX
    threads run nicer than this one (``dlw._backend.start_jax_devices_yielding``), so where
    the two compete for a core, the baselines get it. Their outputs on the
    validation and test splits are computed there too (``Fitted.predict_split``), on every core
    once the run waits for them (``BaselinesFuture``). The seed is the
    split's, so the baselines are the same whenever they are fitted. A daemon thread: a
    training stopped with Ctrl-C does not wait for the baselines. Meanwhile the interpreter's
    switch interval is ``BACKGROUND_SWITCH_INTERVAL``, so the training loop gets the GIL back sooner.
    """
    future = BaselinesFuture()

    def fitted_with_outputs() -> dict[str, Fitted]:
        fitted = fit_baselines(prepared, prepared.splits.seed or 0, on_network_reading=future.set_bend)
        future.set_bend(fitted)  # no other reading: these are the network's
        for f in fitted.values():  # 3,000 trees on 130,000 rows take seconds: also while the network trains
            for split in ("validation", "test"):
                if split in prepared.inputs and split not in f.known:  # a cross-fitted baseline knows its validation outputs
                    f.known[split] = (prepared.inputs[split], outputs_in_chunks(f, prepared, split, future.awaited))
        return fitted

    def work() -> None:
        try:
            with quick_gil_handover():  # left before the result: whoever waits for it gets the process as it was
                fitted = fitted_with_outputs()
        except BaseException as exc:  # handed to whoever asks for the result
            future.set_exception(exc)
        else:
            future.set_result(fitted)

    threading.Thread(target=work, name="dlw-baselines", daemon=True).start()
    return future


def fit_baselines(prepared, seed: int, *, on_network_reading: Callable[[dict], None] | None = None) -> dict[str, Fitted]:
    """Every baseline of the prepared data's kind (and persistence when configured), fitted on its train rows (validation chooses, test never).

    Cross-fitted when the network is (``dlw.crossfit``), so the verdict compares like with like. Where the
    data carry another reading of their group numbers, each baseline keeps its better (``better_reading_baselines``).
    """
    if prepared.other_reading is not None:
        return better_reading_baselines(prepared, seed, on_network_reading=on_network_reading)
    if prepared.splits is not None and prepared.splits.folds:
        return crossfit_baselines(prepared, seed)
    names = prepared.baseline_names
    if prepared.config is not None and prepared.config.checks.persistence:
        names = (*names, "persistence")
    return {baseline_name(name, prepared.problem): FITTERS[name](prepared, seed) for name in names}


def better_reading_baselines(prepared, seed: int, *, on_network_reading: Callable[[dict], None] | None = None) -> dict[str, Fitted]:
    """Each baseline fitted on both readings of the group numbers (``prepared`` and its ``other_reading``), keeping the one of
    lower out-of-fold loss (validation loss where not cross-fitted); a tie keeps the network's reading.

    The network's reading was chosen for the network (``dlw.groups``); a baseline held to it may be held below its
    strength (ChickWeight's boosting: rmse 19.1 reading the chick's number, 36.9 reading it as a category).
    ``on_network_reading`` is handed the network's reading's fits as soon as they are done (``BaselinesFuture.bend``).
    """
    from dlw.groups import reading_name

    other = prepared.other_reading
    own_fits = fit_baselines(replace(prepared, other_reading=None), seed)
    if on_network_reading is not None:  # the network's design reads these alone
        on_network_reading(own_fits)
    other_fits = fit_baselines(other, seed)
    kept = {}
    for name, own in own_fits.items():
        alternative = other_fits[name]
        seconds = own.fit_seconds + alternative.fit_seconds
        if reading_loss(alternative, other) < reading_loss(own, prepared):
            # Its outputs on the run's splits now, keyed by the run's own arrays: the run asks for them by those.
            splits = [split for split in ("validation", "test") if split in prepared.inputs]
            known = {split: (prepared.inputs[split], alternative.predict_split(split, other.inputs[split])) for split in splits}
            chosen = {**alternative.chosen, "group_numbers": reading_name(other)}
            kept[name] = replace(alternative, chosen=chosen, fit_seconds=seconds, known=known, reading=other, network_reading_loss=own.out_of_fold_loss)
        else:
            kept[name] = replace(own, chosen={**own.chosen, "group_numbers": reading_name(prepared)}, fit_seconds=seconds)
    return kept


def reading_loss(fitted: Fitted, prepared) -> float:
    """``fitted``'s out-of-fold loss, or, fitted once, its loss on ``prepared``'s validation rows (whose outputs it then knows)."""
    if fitted.out_of_fold_loss is not None:
        return fitted.out_of_fold_loss
    n_classes = len(prepared.problem.classes) if prepared.problem.is_classification else 0
    return fold_loss_sums({"fitted": fitted}, prepared, n_classes)["fitted"] / prepared.count("validation")


def crossfit_baselines(prepared, seed: int) -> dict[str, Fitted]:
    """Each baseline fitted once per fold (``Prepared.fold_views``), predicting as the mean of its fits.

    On the validation split (the first fold) a baseline answers with its first fit, the one that
    never saw those rows, as the cross-fitted network does; what it chose there is that fit's.
    """
    n_classes = len(prepared.problem.classes) if prepared.problem.is_classification else 0
    per_fold, summed = [], []  # each fold's fits, and each fit's loss summed over its own fold's rows
    for part in prepared.fold_views():
        per_fold.append(fit_baselines(part, seed))
        summed.append(fold_loss_sums(per_fold[-1], part, n_classes))
    validation = prepared.inputs["validation"]
    n_rest = sum(len(fold) for fold in prepared.splits.folds)
    combined = {}
    for name, first in per_fold[0].items():
        fits = [fitted[name] for fitted in per_fold]
        combined[name] = Fitted(
            predict=mean_prediction([f.predict for f in fits]),
            chosen={**first.chosen, "folds": len(fits)},
            fit_seconds=sum(f.fit_seconds for f in fits),
            known={"validation": (validation, first.predict_split("validation", validation))},
            out_of_fold_loss=sum(losses[name] for losses in summed) / n_rest,
        )
    return combined


def fold_loss_sums(fitted: dict[str, Fitted], part, n_classes: int) -> dict[str, float]:
    """Each baseline's loss on ``part``'s validation rows (its own fold), summed over them; the outputs are kept as known."""
    xv, yv = part.inputs["validation"], part.targets["validation"]
    sums = {}
    for name, f in fitted.items():
        outputs = f.predict_split("validation", xv)
        f.known.setdefault("validation", (xv, outputs))
        sums[name] = validation_loss(outputs, yv, n_classes) * len(yv)
    return sums


def linear_over_boosting(fitted: dict[str, Fitted]) -> float | None:
    """The cross-fitted linear baseline's out-of-fold rmse over boosting's, both reading the inputs as the network does; None unless both were cross-fitted.

    Far above 1, trees follow what a linear model cannot: the target bends with its inputs. It decides the network's
    design (``dlw.models.designs``), so it is read in the network's own reading of the group numbers, as its rules were measured.
    """
    losses = [network_reading_loss(fitted.get(name)) for name in ("linear", "hist_gradient_boosting")]
    if None in losses:
        return None
    return float(np.sqrt(losses[0] / max(losses[1], 1e-300)))


def network_reading_loss(fitted: Fitted | None) -> float | None:
    """``fitted``'s out-of-fold loss reading the group numbers as the network does (``better_reading_baselines``); None if not cross-fitted."""
    if fitted is None:
        return None
    return fitted.network_reading_loss if fitted.reading is not None else fitted.out_of_fold_loss


def mean_prediction(predicts: list[Callable]) -> Callable:
    """A predict function returning the mean of ``predicts``' outputs."""

    def predict(inputs):
        return np.mean([np.asarray(p(inputs), dtype="float64") for p in predicts], axis=0)

    return predict

"""Step 7, tuning: an Optuna study over the config's search space, on the validation split only.

Each trial trains the config with the trial's values on the train split and is scored on the
validation split (``tune.metric``, default ``val_loss``); the test split is removed from what
trials see. A pruning callback reports the metric after every epoch, so the median pruner can
stop a poor trial early. When the study holds ``tune.trials`` finished trials, the best config is
trained once more as a normal run folder (``<out>/best``) and measured, once, on the test split.

The study lives in Optuna's database storage (``<out>/study.db`` by default), so running the
same command again continues it, and several processes (or machines, with PostgreSQL) given
the same ``--storage`` and ``--study`` share it: each trial samples with its own seed
(``tune.seed`` + trial number), so workers never repeat each other.

>>> from dlw.tune import tune                                              # doctest: +SKIP
>>> result = tune(load_spec("penguins", overrides=["tune.trials=20"]))     # doctest: +SKIP
>>> result.best_value, result.run.metrics["test"]["accuracy"]             # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import gc
import json
import random
import signal
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from dlw.data.kinds import prepare
from dlw.plots import pyplot, save_figure
from dlw.runs import OutLock, is_temporary_of, write_atomic
from dlw.config import Config, Distribution
from dlw.spec import set_path, validate
from dlw.console import QUIET, Console
from dlw.errors import ConfigError, DlwError, FolderBusy
from dlw.objectives import higher_is_better
from dlw.tracking import Tracker

MARKER = "tune.json"

# A space per model kind for configs without tune.search_space.
DEFAULT_SPACES: dict[str, dict[str, dict]] = {
    # Around tabm's defaults, as TabM's own tuning space: depth and width, dropout, rate, decay; and how
    # numbers enter, as RealMLP's space has it: under 500 train rows that alone moved rmse 2.5-10%,
    # down on some tables and up on others, where a weight decay of 3e-4 against 0.01 moved it 0.14% (bench/RESULTS.md, stop 25);
    # and whether they also enter unclipped, which moved rmse 12-40% on long-tailed tables (stop 26), or
    # logged too, which moved it -6% to +9% a run (stop 38).
    "tabm": {
        "model.embeddings": {"choice": ["none", "piecewise_linear", "piecewise_linear_and_periodic"]},
        "model.numbers": {"choice": ["clipped", "clipped_and_linear", "clipped_linear_and_log"]},
        "model.hidden_layers": {"choice": [[128, 128], [256, 256], [256, 256, 256]]},
        "model.dropout": {"float": [0.0, 0.5]},
        "train.learning_rate": {"float": [3e-4, 5e-3], "log": True},
        "train.weight_decay": {"choice": [0.0, 0.001, 0.01, 0.1]},
    },
    "mlp": {
        "model.hidden_layers": {"choice": [[32], [64, 32], [128, 64]]},
        "model.dropout": {"float": [0.0, 0.5]},
        "train.learning_rate": {"float": [1e-4, 1e-2], "log": True},
        "train.batch_size": {"choice": [16, 32, 64]},
    },
    "cnn": {
        "model.conv_filters": {"choice": [[16, 32], [32, 64], [32, 64, 128]]},
        "model.dense_layers": {"choice": [[64], [128], [256]]},
        "model.dropout": {"float": [0.0, 0.5]},
        "train.learning_rate": {"float": [1e-4, 1e-2], "log": True},
    },
    "pretrained": {
        "model.dense_layers": {"choice": [[], [64], [128]]},
        "model.dropout": {"float": [0.0, 0.5]},
        "train.learning_rate": {"float": [1e-4, 1e-2], "log": True},
    },
}


@dataclass
class TuneResult:
    """What ``tune`` leaves: the study, the best trial's config and value, and its run folder."""

    out: Path
    storage: str
    study_name: str
    finished: int
    best_number: int | None
    best_value: float | None
    best_config: Config | None
    run: Any = None  # the best config's workflow.Run, once retrained


def study_direction(tc) -> str:
    """``maximize`` or ``minimize``: the config's ``tune.direction``, else the metric's own direction."""
    if tc.direction is not None:
        return tc.direction
    return "maximize" if higher_is_better(tc.metric) else "minimize"


def search_space(config: Config) -> dict[str, Distribution]:
    """``tune.search_space``, or the default space for the model kind."""
    if config.tune.search_space:
        return dict(config.tune.search_space)
    return {path: Distribution.model_validate(spec) for path, spec in DEFAULT_SPACES[config.model.kind].items()}


def suggest(trial, space: dict[str, Distribution]) -> dict[str, Any]:
    """The trial's value for each path (Optuna's ``suggest_*``); lists and mappings travel as JSON text."""
    values = {}
    for path, dist in space.items():
        if dist.choice is not None:
            if all(v is None or isinstance(v, (bool, int, float, str)) for v in dist.choice):
                values[path] = trial.suggest_categorical(path, dist.choice)
            else:
                picked = trial.suggest_categorical(path, [json.dumps(v) for v in dist.choice])
                values[path] = json.loads(picked)
        elif dist.float_ is not None:
            low, high = dist.float_
            values[path] = trial.suggest_float(path, low, high, log=dist.log, step=dist.step)
        else:
            low, high = dist.int_
            values[path] = trial.suggest_int(path, low, high, log=dist.log, step=int(dist.step or 1))
    return values


def decode_params(params: dict[str, Any], space: dict[str, Distribution]) -> dict[str, Any]:
    """A finished trial's stored params back as config values (JSON text decoded)."""
    out = {}
    for path, value in params.items():
        dist = space.get(path)
        if dist is not None and dist.choice is not None and isinstance(value, str) and value not in dist.choice:
            value = json.loads(value)
        out[path] = value
    return out


def config_with(config: Config, values: dict[str, Any], origin: str = "trial") -> Config:
    """``config`` with each dotted path set to its value, validated again."""
    raw = config.model_dump(mode="json")
    for path, value in values.items():
        raw = set_path(raw, path, value)
    return validate(raw, origin)


# --- storage and study ------------------------------------------------------------


def make_storage(url: str):
    """An Optuna ``RDBStorage`` for ``url`` (sqlite:///..., postgresql://...), with a heartbeat.

    The heartbeat lets any worker mark a trial FAIL when the process running it died; SQLite
    gets a long lock timeout so that several local workers wait for each other instead of failing.
    """
    import optuna

    kwargs: dict = {}
    if url.startswith("sqlite"):
        kwargs["engine_kwargs"] = _sqlite_engine(url)
    elif url.startswith("postgresql"):
        kwargs["engine_kwargs"] = {"pool_pre_ping": True}
    try:
        for attempt in range(5):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeat_interval
                    return optuna.storages.RDBStorage(url, heartbeat_interval=10, grace_period=60, **kwargs)
            except Exception as exc:
                # Two workers starting on a new database both create its tables; the later one waits and loads them.
                if not any(word in str(exc) for word in _CREATION_RACE) or attempt == 4:
                    raise
                time.sleep(0.2 + 0.3 * attempt + random.random() * 0.3)
    except ImportError:  # optuna's message for a missing sqlalchemy driver
        raise DlwError(f"--storage {url}: the database driver for this URL is not installed (for PostgreSQL: pip install 'psycopg[binary]')") from None
    except Exception as exc:  # sqlalchemy's errors: a bad URL, a server that does not answer, wrong credentials
        raise DlwError(f"--storage {url}: cannot open the study storage ({' '.join(str(exc).split())[:200]})") from None


_CREATION_RACE = ("already exists", "UNIQUE constraint failed", "duplicate key", "database is locked")


def _sqlite_engine(url: str) -> dict:
    """SQLite in WAL mode: a trial reports every epoch, and WAL makes those commits cheap (and readers never block).

    The long timeout makes several local workers wait for the write lock instead of failing.
    """
    import sqlite3

    from sqlalchemy.engine import make_url

    path = make_url(url).database
    if not path or path == ":memory:":
        return {"connect_args": {"timeout": 60}}

    def connect():
        connection = sqlite3.connect(path, timeout=60, check_same_thread=False)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
        return connection

    return {"creator": connect}


def make_sampler(config: Config):
    """The configured sampler, re-seeded per trial (``tune.seed`` + trial number)."""
    import optuna

    tc = config.tune
    startup = max(5, min(10, tc.trials // 3))

    def factory(seed: int):
        if tc.sampler == "random":
            return optuna.samplers.RandomSampler(seed=seed)
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup)

    return _PerTrialSeed(factory, tc.seed)


def make_pruner(config: Config):
    import optuna

    if config.tune.pruner == "none":
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=5)


def _per_trial_seed_class():
    import optuna

    class PerTrialSeed(optuna.samplers.BaseSampler):
        """Delegates to a sampler made afresh for each trial with seed + trial number.

        Trial numbers are unique across every worker of a study, so workers sharing a storage
        never draw the same random values, and one worker alone is reproducible.
        """

        def __init__(self, factory, seed: int):
            self._factory, self._seed = factory, seed
            self._inner = factory(seed)

        def before_trial(self, study, trial):
            self._inner = self._factory(self._seed + trial.number)
            self._inner.before_trial(study, trial)

        def infer_relative_search_space(self, study, trial):
            return self._inner.infer_relative_search_space(study, trial)

        def sample_relative(self, study, trial, search_space):
            return self._inner.sample_relative(study, trial, search_space)

        def sample_independent(self, study, trial, param_name, param_distribution):
            return self._inner.sample_independent(study, trial, param_name, param_distribution)

        def after_trial(self, study, trial, state, values):
            self._inner.after_trial(study, trial, state, values)

    return PerTrialSeed


def _PerTrialSeed(factory, seed):  # noqa: N802 - a class made on first use, so optuna loads lazily
    return _per_trial_seed_class()(factory, seed)


def open_study(config: Config, storage_url: str, study_name: str, overwrite: bool, console: Console):
    """Create the study, or load it to continue; refuse one made for another metric or space."""
    import optuna

    storage = make_storage(storage_url)
    signature = {"metric": config.tune.metric, "search_space": {k: v.model_dump(mode="json") for k, v in search_space(config).items()}}
    exists = study_name in [s.study_name for s in optuna.study.get_all_study_summaries(storage, include_best_trial=False)]
    if exists and overwrite:
        optuna.delete_study(study_name=study_name, storage=storage)
        console.say(f"    deleted the earlier study {study_name!r} (--overwrite)")
        exists = False
    direction = study_direction(config.tune)
    study = optuna.create_study(
        storage=storage,
        sampler=make_sampler(config),
        pruner=make_pruner(config),
        study_name=study_name,
        direction=direction,
        load_if_exists=True,
    )
    if study.direction.name.lower() != direction:
        raise DlwError(f"study {study_name!r} in {storage_url} was made to {study.direction.name.lower()}; pass another --study, or --overwrite to start afresh")
    stored = study.user_attrs.get("dlw")
    if stored is None:
        study.set_user_attr("dlw", signature)
    elif stored != signature:
        raise DlwError(
            f"study {study_name!r} in {storage_url} was made for another metric or search space "
            f"({stored['metric']}, {', '.join(stored['search_space'])}); pass another --study, or --overwrite to start afresh"
        )
    return study


# --- Ctrl-C ------------------------------------------------------------------------


class _StopRequest:
    """Ctrl-C during tuning, acted on at safe points only.

    A KeyboardInterrupt raised wherever the signal lands can cut a storage write in
    half and leave the database locked by this very process (seen once in CI: the
    process then hung for over a minute). So the first Ctrl-C only sets a flag; the
    running trial raises at its next batch end (inside ``fit``, never inside the
    storage), Optuna marks it FAIL, and between trials the study stops. A second
    Ctrl-C interrupts at once.
    """

    def __init__(self, console: Console):
        self.console = console
        self.requested = False

    def __call__(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        self.console.warn("stopping: the running trial will be marked failed (Ctrl-C again to stop at once)")

    @contextlib.contextmanager
    def installed(self):
        if threading.current_thread() is not threading.main_thread():
            yield self  # signals go to the main thread only; nothing to install
            return
        previous = signal.signal(signal.SIGINT, self)
        try:
            yield self
        finally:
            signal.signal(signal.SIGINT, previous)


# --- trials -----------------------------------------------------------------------


def _pruning_callback(trial, metric: str, stop: _StopRequest | None = None):
    """A Keras callback: report ``metric`` to the trial after every epoch; stop fitting when Optuna prunes.

    It is also where a Ctrl-C (``stop``) takes effect: at the next batch end.
    """
    import keras

    class PruneOnPlateau(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.step = 0
            self.pruned_at: int | None = None

        def on_train_batch_end(self, batch, logs=None):
            if stop is not None and stop.requested:
                raise KeyboardInterrupt

        def on_epoch_end(self, epoch, logs=None):
            value = (logs or {}).get(metric)
            if value is None:
                return
            self.step += 1  # across fine-tuning phases, so steps never repeat
            trial.report(float(value), self.step)
            if trial.should_prune():
                self.pruned_at = self.step
                self.model.stop_training = True

    return PruneOnPlateau()


class Objective:
    """Optuna's objective: train one trial's config on train rows, score it on validation rows."""

    def __init__(self, config: Config, space: dict[str, Distribution], console: Console, stop: _StopRequest | None = None):
        self.config, self.space, self.console, self.stop = config, space, console, stop
        self._prepared: dict[str, Any] = {}
        self._said = False
        self.running: set[int] = set()  # trial numbers this process has started and not finished
        self.started: list[int] = []  # every trial number this process started
        self.tracker = Tracker(config, name="trials")  # tune() puts the study's here; each trial is its child

    def data_for(self, config: Config):
        """The trials' data (test split removed, one network's splits), prepared once per distinct ``data`` section."""
        key = config.data.model_dump_json()
        if key not in self._prepared:
            self._prepared.clear()  # one data set in memory at a time
            console = QUIET if self._said else self.console
            self._said = True
            # A trial trains one network, on the first fold when the run cross-fits (train.folds).
            self._prepared[key] = prepare(config, console).without_test().without_folds()
        return self._prepared[key]

    def __call__(self, trial) -> float:
        self.running.add(trial.number)
        self.started.append(trial.number)
        try:
            return self._run(trial)
        finally:
            self.running.discard(trial.number)
            free_memory()

    def _run(self, trial) -> float:
        import optuna

        from dlw.objectives import choose_objective
        from dlw.train import train_network

        values = suggest(trial, self.space)
        config = config_with(self.config, values, f"tune.search_space (trial {trial.number})")
        prepared = self.data_for(config)
        problem = prepared.problem
        objective = choose_objective(problem.task, len(problem.classes or []), config.loss, config.metrics)
        pruning = _pruning_callback(trial, config.tune.metric, self.stop)

        def unless_stopped(model, base, train) -> None:
            if self.stop is not None and self.stop.requested:
                raise KeyboardInterrupt  # Ctrl-C came between trials: this one is marked failed at once

        with self.tracker.child(config, name=f"trial {trial.number}", folder=f"trial_{trial.number}") as tracked:  # nested in the study's
            result = train_network(config, prepared, objective, callbacks=[pruning, *tracked.callbacks()], before_fit=unless_stopped).result
            history = result.history
            trial.set_user_attr("epochs", int(len(history)))
            trial.set_user_attr("fit_seconds", round(result.seconds, 3))
            if pruning.pruned_at is not None:
                raise optuna.TrialPruned(f"pruned after epoch {pruning.pruned_at}")
            if config.tune.metric not in history.columns:
                known = ", ".join(c for c in history.columns if c.startswith("val_"))
                raise ConfigError(f"key 'tune.metric': {config.tune.metric!r} is not logged; choose one of {known}")
            trial.set_user_attr("best_epoch", int(result.best_epoch))
            value = float(history[config.tune.metric].iloc[result.best_epoch - 1])
            tracked.log_metrics({"trial_value": value, "trial_best_epoch": result.best_epoch})
            tracked.set_tags({"dlw.trial": trial.number})
        return value


def free_memory() -> None:
    """Drop the last trial's model, compiled functions and Keras state, so memory stays flat."""
    import keras

    keras.backend.clear_session(free_memory=True)
    if keras.backend.backend() == "jax":
        import jax

        jax.clear_caches()  # jitted train/predict steps of models that are gone
    gc.collect()


def _progress(total: int, console: Console, metric: str):
    from optuna.trial import TrialState

    def report(study, trial) -> None:
        finished = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))
        try:
            best = f"best {study.best_value:.4g} (trial {study.best_trial.number})"
        except ValueError:
            best = "no best yet"
        if trial.state == TrialState.COMPLETE:
            what = f"{metric} {trial.value:.4g}"
        elif trial.state == TrialState.PRUNED:
            what = f"pruned after {trial.user_attrs.get('epochs', '?')} epochs"
        else:
            what = "failed (the metric was not a number: a learning rate too high?)"
        console.say(f"    trial {finished}/{total} (#{trial.number}, {trial.duration.total_seconds():.1f} s): {what}; {best}")

    return report


def _stop_when_asked(stop: _StopRequest):
    def check(study, trial) -> None:
        if stop.requested:
            study.stop()

    return check


def _stop_after_failures(limit: int):
    from optuna.trial import TrialState

    seen = {"failed": 0}

    def check(study, trial) -> None:
        if trial.state == TrialState.FAIL:
            seen["failed"] += 1
            if seen["failed"] >= limit:
                study.stop()

    return check


# --- the whole study ----------------------------------------------------------------


def default_out(config: Config) -> Path:
    return Path("runs") / f"{config.name or 'run'}-tune"


def check_out(out: Path) -> None:
    """``out`` must be new, empty, or a tuning folder: dlw never writes into another folder."""
    if out.is_file():
        raise DlwError(f"{out}: exists and is a file; choose another --out")
    # A worker that shares the study may be writing the marker this instant: its temporary file
    # does not make the folder someone else's.
    others = [p for p in out.iterdir() if not is_temporary_of(p, out / MARKER)] if out.is_dir() else []
    if others and not (out / MARKER).is_file():
        raise DlwError(f"{out}: exists and is not a dlw tuning folder (no {MARKER}); choose another --out")


def check_before_trials(objective: "Objective", config: Config) -> None:
    """Prepare (and check) the data before the first trial, so a data error is one line, not a failed trial."""
    from dlw.objectives import check_monitor, choose_objective

    prepared = objective.data_for(config)
    problem = prepared.problem
    obj = choose_objective(problem.task, len(problem.classes or []), config.loss, config.metrics)
    if config.train.early_stopping:
        check_monitor(obj, config.train.early_stopping.monitor)
    if config.tune.metric not in obj.logged_names():
        known = ", ".join(n for n in obj.logged_names() if n.startswith("val_"))
        raise ConfigError(f"key 'tune.metric': {config.tune.metric!r} is not logged for this task; choose one of {known}")


def optimize(study, objective: "Objective", config: Config, space, *, out: Path, storage: str, study_name: str, console: Console) -> None:
    """Run trials until the study holds ``tune.trials`` finished ones; on Ctrl-C, mark the running one failed."""
    import optuna

    total = config.tune.trials
    finished_states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    stop = objective.stop
    callbacks = [
        optuna.study.MaxTrialsCallback(total, states=finished_states),
        _progress(total, console, config.tune.metric),
        _stop_after_failures(max(3, total)),
        _stop_when_asked(stop),
    ]
    try:
        with stop.installed():
            study.optimize(objective, n_trials=None, timeout=config.tune.timeout, callbacks=callbacks, gc_after_trial=False)
            if stop.requested:  # stopped between trials
                raise KeyboardInterrupt
    except KeyboardInterrupt:
        failed = _fail_running(study, objective.running)
        if not failed and objective.started:  # Optuna marked the interrupted trial failed itself
            last = next((t for t in study.get_trials(deepcopy=False) if t.number == objective.started[-1]), None)
            failed = [last.number] if last is not None and last.state == optuna.trial.TrialState.FAIL else []
        _write_table(study, space, out)
        kept = len(study.get_trials(deepcopy=False, states=finished_states))
        note = f"trial {', '.join(map(str, failed))} marked failed; " if failed else ""
        raise TuneInterrupted(
            f"interrupted: {note}{kept} finished trial(s) kept in {_redact(storage)} (study {study_name!r}); run the same command again to continue"
        ) from None


def tune(
    config: Config,
    out: str | Path | None = None,
    storage: str | None = None,
    study_name: str | None = None,
    overwrite: bool = False,
    console: Console | None = None,
) -> TuneResult:
    """Run (or continue) the study until it holds ``tune.trials`` finished trials; retrain the best.

    Writes into ``out`` (default ``runs/<name>-tune``): ``study.db`` (unless ``storage`` is
    given), ``tuning.csv``, ``best.yaml``, ``history.png``, ``importances.png`` and ``best/``, a
    run folder of the best config. A ``KeyboardInterrupt`` marks this process's running trial
    FAIL before it propagates; every finished trial stays in the storage.
    """
    import optuna

    console = console or Console()
    out = Path(out) if out is not None else default_out(config)
    check_out(out)
    out.mkdir(parents=True, exist_ok=True)
    storage = storage or f"sqlite:///{(out / 'study.db').resolve()}"
    study_name = study_name or config.name or "dlw"
    write_atomic(out / MARKER, json.dumps({"storage": storage, "study": study_name}, indent=2) + "\n")

    from dlw.distribute import choose_backend_for
    from dlw.objectives import check_names

    check_names(config.loss, config.metrics)
    if config.model.kind == "pretrained":
        raise ConfigError("key 'model.kind': tuning a pretrained backbone is not supported yet; tune an mlp or cnn")
    choose_backend_for(config)
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # dlw says what happens, one line per trial
    study = open_study(config, storage, study_name, overwrite, console)
    space = search_space(config)
    total = config.tune.trials
    finished_states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    done = len(study.get_trials(deepcopy=False, states=finished_states))
    stop = _StopRequest(console)
    objective = Objective(config, space, console, stop)
    if done < total:
        check_before_trials(objective, config)
    what = "continuing" if study.trials else "new"
    console.step(7, f"tuning: {what} study {study_name!r} in {_redact(storage)}: {done} of {total} trials finished; "
                 f"{config.tune.metric} ({study.direction.name.lower()}), {config.tune.sampler} sampler, {config.tune.pruner} pruner")
    console.say(f"    search space: {', '.join(f'{k} {_describe(v)}' for k, v in space.items())}")
    # One MLflow run for the study, its trials and the best config's run nested in it; TensorBoard logs per trial.
    with Tracker(config, name=f"{study_name} (study)", console=console, logs_in=out / "tensorboard") as objective.tracker:
        if done < total:
            optimize(study, objective, config, space, out=out, storage=storage, study_name=study_name, console=console)
        result = finish(study, config, space, out, storage, study_name, console)
        objective.tracker.log_study(out, result.best_number, result.best_value)
    return result


class TuneInterrupted(KeyboardInterrupt):
    """Ctrl-C during tuning, after the running trial was marked failed; the message says what was kept."""


def _fail_running(study, numbers: set[int]) -> list[int]:
    """Mark this process's still-running trials FAIL (other workers' trials are left alone)."""
    from optuna.trial import TrialState

    failed = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if trial.number in numbers:
            study.tell(trial.number, state=TrialState.FAIL)
            failed.append(trial.number)
    return failed


def finish(study, config: Config, space, out: Path, storage: str, study_name: str, console: Console) -> TuneResult:
    """The table, the plots, ``best.yaml`` and the best config's run folder (trained once, measured on test)."""
    from optuna.trial import TrialState

    _write_table(study, space, out)
    finished = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    result = TuneResult(out, storage, study_name, finished, None, None, None)
    if not complete:
        raise DlwError(f"study {study_name!r}: no trial completed ({finished} pruned or failed); widen tune.search_space or raise tune.trials")
    _write_plots(study, out, console)
    best = study.best_trial
    values = decode_params(best.params, space)
    best_config = config_with(config, values, "best trial")
    result.best_number, result.best_value, result.best_config = best.number, float(best.value), best_config
    header = (
        f"# dlw tune: the best of {finished} finished trial(s) in study {study_name!r}: trial {best.number}, "
        f"{config.tune.metric} {best.value:.6g} on the validation split\n"
        f"# {', '.join(f'{k}: {json.dumps(v)}' for k, v in values.items())}\n"
    )
    write_atomic(out / "best.yaml", header + best_config.to_yaml())
    console.say(f"    best: trial {best.number}, {config.tune.metric} {best.value:.4g} ({', '.join(f'{k}={_short(v)}' for k, v in values.items())})")
    still = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    if still:
        console.say(f"    {len(still)} trial(s) still running in other workers: the last worker to finish trains {out / 'best'}")
        return result
    best_dir = out / "best"
    result.run = best_run(best_config, best_dir, console)
    _attach_tuning(best_dir, out, config, values, study_name, finished)
    metrics = result.run.metrics
    main = metrics.get("main_metric")
    if main and main in metrics.get("test", {}):
        console.say(f"    best config on the test split: {main} {metrics['test'][main]:.4f}")
    console.say(f"tuning folder: {out}")
    return result


def best_run(config: Config, best_dir: Path, console: Console):
    """The best config's run folder: the one already there, else trained here once more.

    Two workers whose last trials end together both see no trial running and both set out to
    train it; the second waits for the first's folder (then takes it) instead of failing on its lock.
    """
    from dlw.workflow import Run, Workflow

    if _same_config(best_dir, config):
        console.say(f"    the best config's run folder is already there: {best_dir}")
        return Run(best_dir)
    console.say(f"    training the best config once more, measured on the untouched test split: {best_dir}")
    try:
        return Workflow(config, console).train(out=best_dir, overwrite=True)
    except FolderBusy:
        console.say("    another worker is training it now; waiting for its run folder")
        OutLock(best_dir, wait=True).release()
        return best_run(config, best_dir, console)


def _attach_tuning(best_dir: Path, out: Path, config: Config, values: dict, study_name: str, finished: int) -> None:
    """Give the best run folder its tuning story (table, plots, settings), then write its report.html.

    The report's "Tuning" section reads ``tuning.csv``, ``tuning.json`` and ``tuning_*.png`` from
    the run folder itself, so the best run stays self-describing when copied elsewhere.
    """
    import shutil

    from dlw.report import write_report

    tc = config.tune
    shutil.copyfile(out / "tuning.csv", best_dir / "tuning.csv")
    for name in ("history", "importances"):
        if (out / f"{name}.png").is_file():
            shutil.copyfile(out / f"{name}.png", best_dir / f"tuning_{name}.png")
    info = {
        "method": f"Optuna, {tc.sampler} sampler, {tc.pruner} pruner; study {study_name!r}, {finished} finished trial(s)",
        "metric": tc.metric,
        "objective": "value",
        "direction": study_direction(tc),
        "best_params": {k: json.dumps(v) if isinstance(v, (list, dict)) else v for k, v in values.items()},
    }
    write_atomic(best_dir / "tuning.json", json.dumps(info, indent=2) + "\n")
    write_report(best_dir)


def _same_config(folder: Path, config: Config) -> bool:
    path = folder / "config.yaml"
    if not (folder / "run.json").is_file() or not path.is_file():
        return False
    try:
        saved = validate(yaml.safe_load(path.read_text(encoding="utf-8")), str(path))
    except DlwError:
        return False
    return saved.model_dump(mode="json") == config.model_dump(mode="json")


def tuning_table(study, space):
    """One row per trial: number, state, value, duration in seconds, epochs, then each parameter."""
    import pandas as pd

    frame = study.trials_dataframe(attrs=("number", "state", "value", "duration", "params", "user_attrs"))
    if frame.empty:
        return pd.DataFrame(columns=["number", "state", "value", "duration_s", *space])
    frame = frame.rename(columns=lambda c: c.removeprefix("params_").removeprefix("user_attrs_"))
    if "duration" in frame:
        frame["duration"] = frame["duration"].dt.total_seconds().round(3)
        frame = frame.rename(columns={"duration": "duration_s"})
    for path in space:
        if path in frame and space[path].choice is not None and not pd.api.types.is_numeric_dtype(frame[path]):
            frame[path] = frame[path].map(lambda v: v if not isinstance(v, str) or not v.startswith(("[", "{")) else json.dumps(json.loads(v)))
    first = [c for c in ("number", "state", "value", "duration_s", "epochs", "best_epoch") if c in frame]
    return frame[first + [c for c in frame.columns if c not in first]]


def _write_table(study, space, out: Path) -> None:
    write_atomic(out / "tuning.csv", tuning_table(study, space).to_csv(index=False))


def _write_plots(study, out: Path, console: Console) -> None:
    """Optuna's own plots: the optimization history and the parameter importances."""
    from optuna.visualization import matplotlib as oplt

    pyplot()  # the Agg backend, before Optuna draws

    for name, plot in (("history.png", oplt.plot_optimization_history), ("importances.png", oplt.plot_param_importances)):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # ExperimentalWarning
                ax = plot(study)
            figure = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
            figure.set_size_inches(8, 5)
            figure.tight_layout()
            save_figure(figure, out / name, dpi=100)
        except (ValueError, RuntimeError, ZeroDivisionError) as exc:  # e.g. importances need 2+ completed trials with varied values
            console.say(f"    no {name}: {' '.join(str(exc).split())[:160]}")


def _describe(dist: Distribution) -> str:
    if dist.choice is not None:
        return "in " + json.dumps(dist.choice)
    low, high = dist.float_ or dist.int_
    return f"{low:g}..{high:g}{' (log)' if dist.log else ''}"


def _short(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else json.dumps(value)


def _redact(url: str) -> str:
    """The storage URL without a password, for messages."""
    import re

    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)

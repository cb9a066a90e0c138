"""Experiment tracking: a run (or a tuning study and its trials) in MLflow, and Keras's TensorBoard logs.

Both are optional (``pip install 'dlw[track]'``) and switched on in the config's ``track``
section, or by ``--track mlflow`` / ``--track tensorboard``. A ``Tracker`` is a context
manager around one run, study or trial:

- MLflow (``track.mlflow``): one MLflow run with the resolved config as parameters (dotted
  keys), each epoch's metrics (a Keras callback on the one fit path), then the test metrics
  next to the baselines, the verdict (its outcome code as a tag) and the run folder as
  artifacts. A tracker entered inside another (a tuning trial in its study, the best config
  retrained) becomes a nested MLflow run. An error marks the MLflow run FAILED, Ctrl-C KILLED.
- TensorBoard (``track.tensorboard``): Keras's own ``TensorBoard`` callback. On every backend
  Keras writes the event files through TensorFlow's summary API, which needs the
  ``tensorflow`` and ``tensorboard`` packages. A run's logs go to ``<run>/tensorboard/``, a
  study's trials' to ``<tuning folder>/tensorboard/trial_<n>/``.

>>> with track_run(config, folder=tmp, out=out) as tracker:                  # doctest: +SKIP
...     trained = train_network(config, prepared, objective, callbacks=tracker.callbacks())
...     write_json(tmp / "metrics.json", metrics)   # logged to MLflow, with the folder, on leaving
"""

from __future__ import annotations

import contextvars
import importlib.util
import json
import logging
import os
import re
import sys
import time
from pathlib import Path

from dlw.console import QUIET, Console
from dlw.errors import ConfigError, DlwError
from dlw.runs import CHECKPOINT

INSTALL = "pip install 'dlw[track]'"
DEFAULT_STORE = "mlflow.db"  # in the working directory; mlflow-skinny 3.17's file:./mlruns store raises
LOGS = "tensorboard"
_ACTIVE: contextvars.ContextVar = contextvars.ContextVar("dlw_tracker", default=None)
_PER_REQUEST = 100  # MLflow takes at most 100 parameters in one request
STUDY_FILES = ("tuning.csv", "best.yaml", "history.png", "importances.png")


class Tracker:
    """One tracked run, study or trial; a no-op when ``config.track`` switches nothing on.

    Args:
        config: the resolved ``Config``; its ``track`` section says what to track.
        name: the MLflow run's name (the run folder's name, the study, ``trial 3``).
        console: where to say where the logs go.
        logs_in: the folder for TensorBoard logs (none are written without one).
        outcome_of: a run folder being written: when the block ends without an error, its
            ``metrics.json`` and files are logged (``log_outcome``).
        shown_as: the run folder's final path, for the ``dlw.run_folder`` tag.

    Checks at construction, before any training, that the extras are installed.
    """

    def __init__(self, config, *, name: str, console: Console = QUIET, logs_in=None, outcome_of=None, shown_as=None):
        self.config, self.track, self.name, self.console = config, config.track, name, console
        self.logs = Path(logs_in) if logs_in is not None and config.track.tensorboard else None
        self.outcome_of, self.shown_as = outcome_of, shown_as
        self.client = self.run_id = self._token = None
        check_installed(self.track)

    def __enter__(self) -> "Tracker":
        parent = _ACTIVE.get()
        if self.track.mlflow:
            self.client, experiment = open_store(self.track, self.config.name or "dlw")
            tags = {"mlflow.parentRunId": parent.run_id} if parent is not None and parent.run_id is not None else {}
            self.run_id = self.client.create_run(experiment, run_name=self.name, tags=tags).info.run_id
            self.log_params(flat_params(self.config.model_dump(mode="json")))
            self.console.log_only(f"    tracking: MLflow run {self.run_id} in {tracking_uri(self.track)}")
        if self.logs is not None:
            self.logs.mkdir(parents=True, exist_ok=True)
            self.console.log_only(f"    tracking: TensorBoard logs in {self.logs}")
        self._token = _ACTIVE.set(self)
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        _ACTIVE.reset(self._token)
        if self.run_id is None:
            return
        status, state = end_state(exc_type)
        try:
            if exc_type is None and self.outcome_of is not None:
                metrics = json.loads((Path(self.outcome_of) / "metrics.json").read_text(encoding="utf-8"))
                self.log_outcome(self.outcome_of, metrics)
        except BaseException as error:  # the run is not left RUNNING when logging its outcome fails
            status, state = end_state(type(error))
            raise
        finally:
            if state:
                self.client.set_tag(self.run_id, "dlw.state", state)
            self.client.set_terminated(self.run_id, status)

    def child(self, config, *, name: str, folder: str) -> "Tracker":
        """A tracker for one part of this one (a tuning trial): nested in MLflow, its logs in ``logs/folder``."""
        return Tracker(config, name=name, console=self.console, logs_in=self.logs / folder if self.logs is not None else None)

    def callbacks(self) -> list:
        """The Keras callbacks for ``train_network``: each epoch's metrics to MLflow, TensorBoard logs."""
        made = []
        if self.run_id is not None:
            made.append(epoch_logger(self.client, self.run_id))
        if self.logs is not None:
            made.append(tensorboard_callback(self.logs))
        return made

    def log_params(self, params: dict[str, str]) -> None:
        if self.run_id is None:
            return
        from mlflow.entities import Param

        items = [Param(key, value) for key, value in params.items()]
        for start in range(0, len(items), _PER_REQUEST):
            self.client.log_batch(self.run_id, params=items[start:start + _PER_REQUEST])

    def log_metrics(self, values: dict[str, float], step: int = 0) -> None:
        if self.run_id is None or not values:
            return
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(metric_key(k), float(v), now, step) for k, v in values.items()]
        for start in range(0, len(items), _PER_REQUEST * 10):
            self.client.log_batch(self.run_id, metrics=items[start:start + _PER_REQUEST * 10])

    def set_tags(self, tags: dict[str, str]) -> None:
        if self.run_id is None:
            return
        from mlflow.entities import RunTag

        self.client.log_batch(self.run_id, tags=[RunTag(key, str(value)) for key, value in tags.items()])

    def log_outcome(self, folder: str | Path, metrics: dict) -> None:
        """The test metrics, the baselines, the verdict and the training's figures; the run folder as artifacts."""
        if self.run_id is None:
            return
        self.log_params({f"planned.train.{k}": param_value(v) for k, v in metrics.get("training", {}).get("plan", {}).items()})
        self.log_metrics(outcome_metrics(metrics))
        advice = metrics.get("advice") or {}
        self.set_tags({
            "dlw.run_folder": str(Path(self.shown_as or folder).resolve()), "dlw.task": metrics.get("task", ""), "dlw.main_metric": metrics.get("main_metric", ""),
            **{f"dlw.{key}": advice[key] for key in ("outcome", "verdict", "baseline") if advice.get(key) is not None},
        })
        for path in sorted(Path(folder).iterdir()):
            if path.is_dir() and path.name != CHECKPOINT:  # the per-epoch state for --resume is not part of the run
                self.client.log_artifacts(self.run_id, str(path), artifact_path=path.name)
            elif path.is_file():
                self.client.log_artifact(self.run_id, str(path))

    def log_study(self, folder: str | Path, best_trial: int | None, best_value: float | None) -> None:
        """A tuning study's best trial and value, and its folder's table, plots and ``best.yaml`` as artifacts."""
        if self.run_id is None:
            return
        if best_trial is not None:
            self.set_tags({"dlw.best_trial": best_trial})
            self.log_metrics({"best_trial_value": best_value})
        for name in STUDY_FILES:
            if (Path(folder) / name).is_file():
                self.client.log_artifact(self.run_id, str(Path(folder) / name))


def track_run(config, *, folder: Path, out: Path, console: Console = QUIET) -> Tracker:
    """The tracker of one ``dlw train``: TensorBoard logs in ``folder/tensorboard``, the outcome logged from ``folder``."""
    return Tracker(config, name=Path(out).name, console=console, logs_in=Path(folder) / LOGS, outcome_of=folder, shown_as=out)


def check_installed(track) -> None:
    """Refuse, in one line, a tracking tool whose packages are missing."""
    if track.mlflow and not _importable("mlflow"):
        raise ConfigError(f"key 'track.mlflow': MLflow is not installed; {INSTALL} (or leave out --track mlflow)")
    if track.tensorboard:
        missing = [name for name in ("tensorflow", "tensorboard") if not _importable(name)]
        if missing:
            raise ConfigError(
                f"key 'track.tensorboard': Keras writes TensorBoard logs through TensorFlow's summary API, which needs "
                f"{' and '.join(missing)}; {INSTALL} (or leave out --track tensorboard)"
            )


def _importable(name: str) -> bool:
    """Whether ``name`` can be imported; MLflow and TensorBoard are imported (their first use follows), TensorFlow only found."""
    if name == "tensorflow":  # a 1.5 s import, done by the callback when training starts
        try:
            return importlib.util.find_spec(name) is not None
        except ValueError:  # in sys.modules without a spec (None when blocked)
            return sys.modules.get(name) is not None
    try:
        importlib.import_module(name)
    except ImportError:
        return False
    return True


def tracking_uri(track) -> str:
    """``track.mlflow_uri``, else ``MLFLOW_TRACKING_URI``, else ``sqlite:///mlflow.db`` in the working directory."""
    return track.mlflow_uri or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path(DEFAULT_STORE).resolve()}"


def open_store(track, default_experiment: str):
    """An ``MlflowClient`` on the tracking store and the id of the experiment (created when new)."""
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)  # "Creating initial MLflow database tables..."
    from mlflow.tracking import MlflowClient

    uri = tracking_uri(track)
    try:
        client = MlflowClient(tracking_uri=uri)
        return client, experiment_id(client, track.experiment or default_experiment, artifacts=artifacts_beside(uri))
    except Exception as exc:
        raise DlwError(
            f"track.mlflow: cannot use the MLflow store {uri} ({' '.join(str(exc).split())[:300]}); "
            "set track.mlflow_uri or MLFLOW_TRACKING_URI, e.g. sqlite:///mlflow.db"
        ) from None


def artifacts_beside(uri: str) -> str | None:
    """For a SQLite store, an ``mlruns`` folder next to the database file; else the store's own default."""
    if not uri.startswith("sqlite:///") or uri.endswith(":memory:"):
        return None
    return (Path(uri.removeprefix("sqlite:///")).resolve().parent / "mlruns").as_uri()


def experiment_id(client, name: str, artifacts: str | None = None) -> str:
    """The id of the experiment ``name``, created when new with its artifacts in ``artifacts`` (two workers may race)."""
    for attempt in range(3):
        found = client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        try:
            return client.create_experiment(name, artifact_location=artifacts)
        except Exception:
            if attempt == 2:
                raise
            time.sleep(0.2)
    return client.get_experiment_by_name(name).experiment_id


def end_state(exc_type) -> tuple[str, str | None]:
    """The MLflow status for how the block ended, and dlw's own state tag when it says more (PRUNED)."""
    if exc_type is None:
        return "FINISHED", None
    if exc_type.__name__ == "TrialPruned":  # optuna's: a normal end for a trial
        return "FINISHED", "PRUNED"
    if issubclass(exc_type, KeyboardInterrupt):
        return "KILLED", "INTERRUPTED"
    return "FAILED", "FAILED"


def param_value(value) -> str:
    """A config value as MLflow parameter text: strings as they are, anything else as JSON (null, true, [64, 32])."""
    return value if isinstance(value, str) else json.dumps(value)


def flat_params(tree: dict, prefix: str = "") -> dict[str, str]:
    """A nested config as ``{"train.epochs": "30", "model.hidden_layers": "[32, 16]", ...}``."""
    flat: dict[str, str] = {}
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flat_params(value, f"{path}."))
        else:
            flat[path] = param_value(value)[:6000]
    return flat


def metric_key(name: str) -> str:
    """``name`` with the characters MLflow refuses in a key replaced by ``_``."""
    return re.sub(r"[^\w\-. /]", "_", name)


def outcome_metrics(metrics: dict) -> dict[str, float]:
    """The figures of ``metrics.json`` worth a chart: test and validation metrics, baselines, verdict, training."""
    values: dict[str, float] = {}
    for split in ("test", "validation"):
        values.update({f"{split}_{k}": v for k, v in (metrics.get(split) or {}).items() if k != "n"})
    for baseline, scores in (metrics.get("baselines") or {}).items():
        values.update({f"baseline_{baseline}_{k}": v for k, v in scores.items() if k != "n"})
    advice = metrics.get("advice") or {}
    if advice.get("difference") is not None:
        low, high = advice.get("ci95") or (None, None)
        values.update({"verdict_difference": advice["difference"], "verdict_ci95_low": low, "verdict_ci95_high": high})
    training = metrics.get("training") or {}
    values.update({f"training_{k}": training.get(k) for k in ("best_epoch", "epochs_run", "fit_seconds")})
    if (metrics.get("ood") or {}).get("flag_rate") is not None:
        values["test_ood_flag_rate"] = metrics["ood"]["flag_rate"]
    return {k: float(v) for k, v in values.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def epoch_logger(client, run_id: str, every: float = 1.0):
    """A Keras callback: every logged quantity to MLflow after each epoch (step = epoch, 1-based).

    Epochs count on across a fine-tuning phase (as ``history.csv`` numbers them), and a
    resumed fit starts at the epoch Keras restored. Epochs are sent at most once every
    ``every`` seconds and at the end of training: a SQLite commit costs about 10-40 ms, more
    than a whole epoch of a small table.
    """
    import keras
    from mlflow.entities import Metric

    class LogEpochs(keras.callbacks.Callback):
        first = last = 0
        sent = 0.0

        def on_train_begin(self, logs=None):
            self.first, self.pending = self.last, []

        def on_epoch_end(self, epoch, logs=None):
            self.last = self.first + epoch + 1
            now = int(time.time() * 1000)
            self.pending += [Metric(metric_key(k), float(v), now, self.last) for k, v in (logs or {}).items() if _is_number(v)]
            if time.monotonic() - self.sent >= every:
                self.send()

        def on_train_end(self, logs=None):
            self.send()

        def send(self):
            for start in range(0, len(self.pending), 1000):  # MLflow takes at most 1,000 metrics in one request
                client.log_batch(run_id, metrics=self.pending[start:start + 1000])
            self.pending, self.sent = [], time.monotonic()

    return LogEpochs()


def tensorboard_callback(folder: Path):
    """Keras's ``TensorBoard`` callback writing into ``folder``, its epochs counted on across a fine-tuning phase."""
    import keras

    from dlw._backend import tensorflow_for_summaries

    tensorflow_for_summaries()

    class PhasedTensorBoard(keras.callbacks.TensorBoard):
        first = last = 0

        def on_train_begin(self, logs=None):
            self.first = self.last
            super().on_train_begin(logs)

        def on_epoch_end(self, epoch, logs=None):
            self.last = self.first + epoch + 1
            super().on_epoch_end(self.first + epoch, logs)

    return PhasedTensorBoard(log_dir=str(folder), write_graph=False)


def _is_number(value) -> bool:
    try:
        return value == value and abs(float(value)) != float("inf")
    except (TypeError, ValueError):
        return False

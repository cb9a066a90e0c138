"""The nine steps in order, as one object: ``Workflow`` trains, ``Run`` is what a run left behind.

>>> from dlw import Workflow
>>> wf = Workflow.from_config("penguins", overrides=["train.epochs=3"], quiet=True)   # doctest: +SKIP
>>> run = wf.train(out="runs/penguins")                                                # doctest: +SKIP
>>> run.metrics["test"]["accuracy"]                                                    # doctest: +SKIP
0.97...
>>> dlw.load("runs/penguins").predict(frame)                                           # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from dlw import __version__
from dlw._backend import import_keras, set_seed
from dlw.config import Config, load_spec, validate
from dlw.console import QUIET, Console
from dlw.data.builtin import BUILTINS
from dlw.data.loaders import read_table
from dlw.data.splits import Splits, make_splits, make_time_splits
from dlw.errors import DataError, DlwError
from dlw.problem import Problem, check_target_column, drop_missing_target, encode_target, formulate
from dlw.runs import RunWriter, is_run_folder, read_json, write_json
from dlw.schema import Schema, load_schema

SPLITS = ("train", "validation", "test")


@dataclass
class Prepared:
    """Steps 1-3 done: the problem, the schema fitted on train rows, and encoded splits."""

    frame: pd.DataFrame
    problem: Problem
    schema: Schema
    splits: Splits
    inputs: dict[str, dict[str, np.ndarray]]
    targets: dict[str, np.ndarray]  # class indices, or the target in its own units
    target_scaling: dict | None
    dropped_rows: int
    notes: list[str] = field(default_factory=list)

    def training_targets(self, split: str) -> np.ndarray:
        """What the network is fitted on: class indices, or the standardized target."""
        y = self.targets[split]
        if self.target_scaling is None:
            return y
        return ((y - self.target_scaling["mean"]) / self.target_scaling["std"]).astype("float32")


def data_origin(config: Config) -> str:
    """How errors name the data: its path, or the built-in's name."""
    source = config.data.source
    return f"built-in {source!r}" if source in BUILTINS else source


def load_labelled(config: Config) -> tuple[pd.DataFrame, pd.DataFrame, int, Problem]:
    """Step 1 on the table: the rows as loaded, those with a target, how many lacked one, and the problem."""
    origin = data_origin(config)
    frame = read_table(config.data.source).reset_index(drop=True)
    target = config.data.target
    check_target_column(frame, target, origin)
    labelled, dropped = drop_missing_target(frame, target, origin)
    return frame, labelled, dropped, formulate(labelled, target, config.task, origin)


def prepare(config: Config, console: Console = QUIET, schema: Schema | None = None) -> Prepared:
    """Steps 1-3: load the table, formulate the problem, infer the schema, split, encode.

    A fitted ``schema`` (a finished run's) is used as it is instead of being inferred again.
    """
    origin = data_origin(config)
    target = config.data.target
    frame, labelled, dropped, problem = load_labelled(config)
    notes = []
    if dropped:
        notes.append(f"dropped {dropped} row(s) whose target {target!r} is missing")
    console.step(1, f"problem: {problem.question}  [{problem.task}: {problem.reason}]")

    split_cfg = config.data.split
    rows = labelled.index.to_numpy()
    skip: dict[str, str] = {}
    if split_cfg.time_column:
        column = split_cfg.time_column
        if column not in frame.columns:
            raise DataError(f"{origin}: column {column!r} in data.split.order is not in the data")
        splits = make_time_splits(rows, labelled[column], split_cfg.validation, split_cfg.test, column, origin)
        skip[column] = "orders the chronological split (data.split.order)"
    else:
        labels = encode_target(labelled[target], problem) if problem.is_classification and split_cfg.stratify else None
        splits = make_splits(rows, labels, split_cfg.validation, split_cfg.test, split_cfg.seed, origin, problem.classes)

    if schema is None:
        schema = Schema.infer(labelled, target, config.data.features, config.data.types, skip, origin)
        schema.fit(frame.loc[splits.train])
    inputs, targets = {}, {}
    for name in SPLITS:
        part = frame.loc[getattr(splits, name)]
        inputs[name], _ = schema.encode(part, origin)
        targets[name] = encode_target(part[target], problem)
    scaling = None
    if not problem.is_classification:
        y = targets["train"]
        scaling = {"mean": float(y.mean()), "std": float(y.std()) or 1.0}
    kinds = pd.Series([f.kind for f in schema.features]).value_counts().to_dict()
    console.step(
        2,
        f"inputs: {len(schema.features)} column(s) ({', '.join(f'{n} {k}' for k, n in kinds.items())}); output: {target!r}",
    )
    for name, reason in schema.excluded.items():
        notes.append(f"column {name!r} not used: {reason}")
    for f in schema.features:
        if f.note:
            notes.append(f"column {f.name!r}: {f.note}")
    sizes = ", ".join(f"{name} {len(getattr(splits, name))}" for name in SPLITS)
    console.step(3, f"data: {len(frame)} rows; {splits.method} split: {sizes}")
    for note in notes:
        console.say(f"    {note}")
    return Prepared(frame, problem, schema, splits, inputs, targets, scaling, dropped, notes)


class Workflow:
    """A config taken through the workflow: ``train`` (steps 1-6 and 8), ``evaluate``, ``predict``."""

    def __init__(self, config: Config, console: Console | None = None):
        self.config = config
        self.console = console or Console()
        self.run: Run | None = None

    @classmethod
    def from_config(cls, source, target: str | None = None, overrides: list[str] | None = None, quiet: bool = False) -> "Workflow":
        """From a YAML path, a built-in name, a data path (with ``target``) or a dict."""
        return cls(load_spec(source, target, overrides), Console(quiet=quiet))

    def default_out(self) -> Path:
        return Path("runs") / (self.config.name or "run")

    def train(self, out: str | Path | None = None, overwrite: bool = False) -> "Run":
        """Prepare, build, train and measure; write the run folder; return the loaded ``Run``."""
        out = Path(out) if out is not None else self.default_out()
        writer = RunWriter(out, overwrite)  # refuses before any work is done
        started = time.perf_counter()
        console = self.console
        from dlw.objectives import check_monitor, check_names, choose_objective

        check_names(self.config.loss, self.config.metrics)
        prepared = prepare(self.config, console)
        problem = prepared.problem
        objective = choose_objective(problem.task, len(problem.classes or []), self.config.loss, self.config.metrics)
        if self.config.train.early_stopping:
            check_monitor(objective, self.config.train.early_stopping.monitor)
        console.step(4, f"loss: {objective.loss}; metrics: {', '.join(objective.metrics)}")
        keras = import_keras()
        set_seed(self.config.train.seed)
        model = build_model(self.config, prepared, objective)
        console.step(5, f"model: {describe_model(model)}")
        from dlw.train import compile_model, fit

        compile_model(model, objective, self.config.train)
        tc = self.config.train
        console.step(6, f"training: up to {tc.epochs} epochs, batch {tc.batch_size}, {tc.optimizer} lr {tc.learning_rate:g}")
        result = fit(
            model,
            prepared.inputs["train"],
            prepared.training_targets("train"),
            prepared.inputs["validation"],
            prepared.training_targets("validation"),
            tc,
            console,
        )
        how = "early stopping" if result.stopped_early else "the epoch limit"
        console.say(
            f"    stopped after {len(result.history)} epochs ({how}); weights of epoch {result.best_epoch} kept; {result.seconds:.1f} s"
        )
        with writer as tmp:
            console.attach_log(tmp / "run.log")
            try:
                self._write_run(tmp, prepared, objective, model, result, time.perf_counter() - started)
            finally:
                console.detach_log()
        console.say(f"run folder: {out}")
        self.run = Run(out, model=model)
        return self.run

    def _write_run(self, folder: Path, prepared: Prepared, objective, model, result, seconds: float) -> None:
        from dlw.evaluate import plot_learning_curves

        (folder / "config.yaml").write_text(self.config.to_yaml(), encoding="utf-8")
        prepared.schema.save(
            folder / "schema.json",
            extra={
                "problem": prepared.problem.to_dict(),
                "target_scaling": prepared.target_scaling,
                "objective": {"loss": objective.loss, "metrics": objective.metrics, "why": objective.why},
                "preparation": {"rows": len(prepared.frame), "dropped_missing_target": prepared.dropped_rows, "notes": prepared.notes},
            },
        )
        prepared.splits.save(folder / "splits.json")
        model.save(folder / "model.keras")
        result.history.to_csv(folder / "history.csv", index=False)
        note = "(standardized target)" if prepared.target_scaling else ""
        plot_learning_curves(result.history, result.best_epoch, folder / "learning_curves.png", note)
        metrics = measure(model, prepared, self.console, plots_to=folder)
        metrics["training"] = {
            "epochs_run": int(len(result.history)),
            "best_epoch": result.best_epoch,
            "stopped_early": result.stopped_early,
            "fit_seconds": round(result.seconds, 3),
            "parameters": int(model.count_params()),
        }
        write_json(folder / "metrics.json", metrics)
        write_json(folder / "run.json", run_manifest(self.config, prepared, seconds))

    def evaluate(self, data=None) -> dict:
        """Step 8 again for the last trained run (see ``Run.evaluate``)."""
        return self._require_run().evaluate(data)

    def predict(self, rows: pd.DataFrame) -> pd.DataFrame:
        """Step 9 with the last trained run (see ``Run.predict``)."""
        return self._require_run().predict(rows)

    def _require_run(self) -> "Run":
        if self.run is None:
            raise DlwError("this Workflow has not been trained yet; call .train() first, or use dlw.load(run_folder)")
        return self.run


def build_model(config: Config, prepared: Prepared, objective):
    from dlw.models import build_mlp

    m = config.model
    return build_mlp(prepared.schema, objective, prepared.inputs["train"], m.hidden_layers, m.dropout, m.activation)


def describe_model(model) -> str:
    layers = [layer for layer in model.layers if layer.__class__.__name__ == "Dense"]
    shape = " -> ".join(str(layer.units) for layer in layers)
    return f"MLP Dense {shape}; {model.count_params():,} parameters"


def measure(model, prepared: Prepared, console: Console, plots_to: Path | None = None, evaluated: dict | None = None) -> dict:
    """Step 8: the network and the baselines on the validation and test splits (or ``evaluated``)."""
    from dlw.evaluate import MAIN_METRIC, baseline_matrix, baselines, plot_confusion_matrix, plot_residuals, score
    from dlw.predict import model_output

    problem = prepared.problem
    if evaluated is None:
        evaluated = {name: (prepared.inputs[name], prepared.targets[name]) for name in ("validation", "test")}
    result: dict = {"task": problem.task}
    outputs = {}
    for name, (inputs, y) in evaluated.items():
        outputs[name] = model_output(model, inputs, problem, prepared.target_scaling)
        result[name] = score(problem, y, outputs[name])
    n_tokens = prepared.schema.n_category_tokens
    base = baselines(
        problem,
        baseline_matrix(prepared.inputs["train"], n_tokens),
        prepared.targets["train"],
        {name: (baseline_matrix(inputs, n_tokens), y) for name, (inputs, y) in evaluated.items()},
        seed=prepared.splits.seed or 0,
    )
    main = "test" if "test" in evaluated else next(iter(evaluated))
    result["baselines"] = {name: per_split[main] for name, per_split in base.items()}
    for other in evaluated:
        if other != main:
            result[f"baselines_{other}"] = {name: per_split[other] for name, per_split in base.items()}
    result["main_metric"] = MAIN_METRIC[problem.task]
    if plots_to is not None:
        y = evaluated[main][1]
        if problem.is_classification:
            plot_confusion_matrix(y, outputs[main].argmax(axis=1), problem.classes, plots_to / "confusion_matrix.png")
        else:
            plot_residuals(y, outputs[main], problem.target, plots_to / "residuals.png")
    _say_metrics(result, main, console)
    return result


def _say_metrics(result: dict, split: str, console: Console) -> None:
    main = result["main_metric"]
    keys = [main] + [k for k in ("balanced_accuracy", "macro_f1", "log_loss", "roc_auc", "mae", "r2") if k in result[split] and k != main]

    def fmt(metrics: dict) -> str:
        return "  ".join(f"{k} {metrics[k]:.4f}" if metrics.get(k) is not None else f"{k} -" for k in keys)

    where = f"the {split} split" if split in SPLITS else "the given data"
    console.step(8, f"measured on {where} ({result[split]['n']} rows):")
    console.say(f"    {'network':24s}{fmt(result[split])}")
    for name, metrics in result["baselines"].items():
        console.say(f"    {name:24s}{fmt(metrics)}")


def run_manifest(config: Config, prepared: Prepared, seconds: float) -> dict:
    keras = import_keras()
    source = config.data.source
    fingerprint = None
    if source not in BUILTINS:
        fingerprint = hashlib.sha256(Path(source).read_bytes()).hexdigest()
    return {
        "dlw_version": __version__,
        "keras_version": keras.__version__,
        "backend": keras.backend.backend(),
        "python": platform.python_version(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "data": {"source": source, "sha256": fingerprint, "rows": len(prepared.frame)},
        "seconds": round(seconds, 2),
    }


class Run:
    """A finished run folder: its config, schema, metrics and model; predicts and re-evaluates.

    Loading reads only JSON, YAML and ``model.keras`` with Keras's ``safe_mode``.
    """

    def __init__(self, path: str | Path, model=None):
        self.path = Path(path)
        if not self.path.is_dir():
            raise DlwError(f"{self.path}: run folder not found; train one with `dlw train ... --out {self.path}`")
        if not is_run_folder(self.path):
            raise DlwError(f"{self.path}: not a dlw run folder (no run.json); pass the folder `dlw train` wrote")
        raw = yaml.safe_load((self.path / "config.yaml").read_text(encoding="utf-8"))
        self.config = validate(raw, str(self.path / "config.yaml"))
        data = read_json(self.path / "schema.json")
        self.schema = Schema.from_dict(data)
        self.problem = Problem.from_dict(data["problem"])
        self.target_scaling = data.get("target_scaling")
        self.metrics = read_json(self.path / "metrics.json")
        self.manifest = read_json(self.path / "run.json")
        self._model = model

    @property
    def model(self):
        if self._model is None:
            keras = import_keras()
            self._model = keras.models.load_model(self.path / "model.keras", safe_mode=True)
        return self._model

    def predict(self, rows: pd.DataFrame, console: Console = QUIET, origin: str = "data") -> pd.DataFrame:
        """Predictions for raw rows: their columns, then ``prediction`` and ``prob_<class>``."""
        from dlw.predict import predict_rows

        frame, warnings = predict_rows(self.model, self.schema, self.problem, self.target_scaling, rows, origin)
        for warning in warnings:
            console.warn(warning)
        return frame

    def evaluate(self, data: str | Path | pd.DataFrame | None = None, console: Console = QUIET) -> dict:
        """Step 8 again: on the run's own test split, or on new labelled ``data``.

        The baselines are refitted on the run's train split, so the comparison is
        the same one the run made.
        """
        source = self.config.data.source
        if source not in BUILTINS and not Path(source).exists():
            raise DataError(f"{source}: the run's training data is gone; it is needed to refit the baselines")
        prepared = prepare(self.config, QUIET, schema=self.schema)
        self._check_same_data(prepared)
        evaluated = None
        if data is not None:
            origin = str(data) if not isinstance(data, pd.DataFrame) else "data"
            frame = data if isinstance(data, pd.DataFrame) else read_table(str(data))
            check_target_column(frame, self.problem.target, origin)
            frame, dropped = drop_missing_target(frame, self.problem.target, origin)
            if dropped:
                console.warn(f"{origin}: dropped {dropped} row(s) whose target is missing")
            inputs, warnings = self.schema.encode(frame, origin)
            for warning in warnings:
                console.warn(warning)
            evaluated = {"data": (inputs, encode_target(frame[self.problem.target], self.problem, origin))}
        prepared.problem, prepared.target_scaling = self.problem, self.target_scaling
        result = measure(self.model, prepared, console, evaluated=evaluated)
        if data is not None:  # result["data"] holds the network's metrics on it
            result["source"] = str(data) if not isinstance(data, pd.DataFrame) else "DataFrame"
        return result

    def _check_same_data(self, prepared: Prepared) -> None:
        expected = self.manifest.get("data", {})
        if expected.get("rows") is not None and expected["rows"] != len(prepared.frame):
            raise DataError(
                f"{self.config.data.source}: has {len(prepared.frame)} rows but the run was trained on {expected['rows']}; "
                "the file changed since training, so its test split is not the run's"
            )
        saved = Splits.load(self.path / "splits.json")
        if not np.array_equal(saved.test, prepared.splits.test):
            raise DataError(f"{self.config.data.source}: the test split differs from the run's splits.json; the data changed since training")


def load(path: str | Path) -> Run:
    """Load a run folder written by ``dlw train``: ``dlw.load("runs/my").predict(rows)``."""
    return Run(path)

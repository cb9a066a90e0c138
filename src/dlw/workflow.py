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
from typing import Any

import numpy as np
import pandas as pd
import yaml

from dlw import __version__
from dlw._backend import choose_backend, import_keras, set_seed, tensorflow_unseen
from dlw.config import Config, load_spec, validate
from dlw.console import QUIET, Console
from dlw.data.builtin import BUILTINS, IMAGE_BUILTINS
from dlw.data.loaders import read_table
from dlw.data.splits import Splits, make_splits, make_time_splits
from dlw.errors import DataError, DlwError
from dlw.problem import Problem, check_target_column, drop_missing_target, encode_target, formulate
from dlw.runs import RunWriter, is_run_folder, read_json, write_json
from dlw.schema import Schema, load_schema

SPLITS = ("train", "validation", "test")
BASELINE_MAX_TRAIN = 5000


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
    images: Any = None  # the ImageSet, for image runs

    @property
    def is_images(self) -> bool:
        return self.images is not None

    def with_train_rows(self, keep: np.ndarray, config: Config) -> "Prepared":
        """A copy whose train split is only the train positions ``keep`` (validation and test unchanged)."""
        import dataclasses

        x = self.inputs["train"]
        if isinstance(x, dict):
            sub = {k: v[keep] for k, v in x.items()}
        elif isinstance(x, np.ndarray):
            sub = x[keep]
        else:
            from dlw.imaging import stream

            sub = stream([x.paths[i] for i in keep], None, self.schema, config, config.train.batch_size, False, config.train.seed)
        return dataclasses.replace(self, inputs={**self.inputs, "train": sub}, targets={**self.targets, "train": self.targets["train"][keep]})

    def baseline_features(self, inputs) -> np.ndarray:
        """Inputs as one flat matrix for scikit-learn: encoded columns, or scaled-down pixels."""
        if self.is_images:
            from dlw.imaging import pixel_features

            return pixel_features(inputs, self.schema.channels)
        from dlw.evaluate import baseline_matrix

        return baseline_matrix(inputs, self.schema.n_category_tokens)

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


def prepare(config: Config, console: Console = QUIET, schema=None, backbone_shape=None) -> Prepared:
    """Steps 1-3: load the table, formulate the problem, infer the schema, split, encode.

    A fitted ``schema`` (a finished run's) is used as it is instead of being inferred again.
    Image data goes to ``dlw.imaging.prepare_images``.
    """
    if config.images:
        from dlw.imaging import prepare_images

        return prepare_images(config, console, schema, backbone_shape)
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

    def train(self, out: str | Path | None = None, overwrite: bool = False, sufficiency: bool = False, report: bool = False) -> "Run":
        """Prepare, build, train and measure; write the run folder; return the loaded ``Run``.

        ``sufficiency`` also trains on 25% and 50% of the train split (``dlw run``
        does); ``report`` writes ``report.html``.
        """
        out = Path(out) if out is not None else self.default_out()
        writer = RunWriter(out, overwrite)  # refuses before any work is done
        started = time.perf_counter()
        console = self.console
        from dlw.objectives import check_monitor, check_names, choose_objective

        check_names(self.config.loss, self.config.metrics)
        from dlw.distribute import apply_distribution, choose_backend_for

        choose_backend_for(self.config)  # data_parallel needs JAX
        backbone = None
        if self.config.model.kind == "pretrained":
            from dlw.models.pretrained import resolve_backbone

            m = self.config.model
            backbone = resolve_backbone(m.backbone, None, weights=m.backbone_weights, layer=m.backbone_layer)
        prepared = prepare(self.config, console, backbone_shape=getattr(backbone, "input_shape", None))
        problem = prepared.problem
        objective = choose_objective(problem.task, len(problem.classes or []), self.config.loss, self.config.metrics)
        if self.config.train.early_stopping:
            check_monitor(objective, self.config.train.early_stopping.monitor)
        console.step(4, f"loss: {objective.loss}; metrics: {', '.join(objective.metrics)}")
        from dlw.honesty import small_data_warnings, trainable_parameters

        import_keras()
        distribution = apply_distribution(self.config, console)  # before any variable is created
        set_seed(self.config.train.seed)
        model, base = build_model(self.config, prepared, objective, backbone)
        console.step(5, f"model: {describe_model(model, self.config, backbone, base)}")
        warnings = small_data_warnings(prepared, trainable_parameters(model))
        for warning in warnings:
            console.warn(warning)
        tc = self.config.train
        console.step(6, f"training: up to {tc.epochs} epochs, batch {tc.batch_size}, {tc.optimizer} lr {tc.learning_rate:g}")
        from dlw.distribute import for_devices, release

        fit_prepared, fit_config = for_devices(prepared, self.config, distribution)  # batches split evenly over devices
        result = train_model(model, base, fit_prepared, objective, fit_config, console)
        release(distribution)
        with writer as tmp:
            console.attach_log(tmp / "run.log")
            try:
                metrics = self._write_run(tmp, prepared, objective, model, result, warnings)
                if sufficiency:
                    self._sufficiency(tmp, prepared, objective, backbone, metrics)
                write_json(tmp / "metrics.json", metrics)
                manifest = run_manifest(self.config, prepared, time.perf_counter() - started)
                write_json(tmp / "run.json", {**manifest, "distribution": distribution})
                if report:
                    from dlw.report import write_report

                    write_report(tmp)
            finally:
                console.detach_log()
        console.say(f"run folder: {out}")
        self.run = Run(out, model=model)
        return self.run

    def _write_run(self, folder: Path, prepared: Prepared, objective, model, result, warnings: list[str]) -> dict:
        """Everything a run leaves behind but ``metrics.json`` and ``run.json``; returns the metrics."""
        from dlw.evaluate import plot_learning_curves
        from dlw.honesty import fit_detector, image_occlusion, table_importance, trainable_parameters

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
        with tensorflow_unseen():
            model.save(folder / "model.keras")
        result.history.to_csv(folder / "history.csv", index=False)
        note = "(standardized target)" if prepared.target_scaling else ""
        plot_learning_curves(result.history, result.best_epoch, folder / "learning_curves.png", note)
        checks = self.config.checks
        from dlw.ood import METHOD as OOD_METHOD

        detector = fit_detector(model, prepared, checks.ood_rate)
        detector[0].save(folder)
        outputs: dict = {}
        metrics = measure(model, prepared, self.console, plots_to=folder, detector=detector, outputs=outputs, bootstrap=checks.bootstrap)
        metrics["ood"]["method"] = OOD_METHOD
        metrics["training"] = {
            "epochs_run": int(len(result.history)),
            "best_epoch": result.best_epoch,
            "stopped_early": result.stopped_early,
            "fit_seconds": round(result.seconds, 3),
            "parameters": int(model.count_params()),
            "trainable_parameters": trainable_parameters(model),  # after fine-tuning, when it ran
        }
        metrics["warnings"] = warnings
        self._test_predictions(folder, prepared, outputs)
        if prepared.is_images:
            metrics["explanations"] = {"occlusion": image_occlusion(model, prepared, folder), "limits": EXPLANATION_LIMITS}
        else:
            table = table_importance(model, prepared, folder, self.config.train.seed)
            metrics["explanations"] = {"importance": table.head(10).to_dict(orient="records"), "limits": EXPLANATION_LIMITS}
        return metrics

    def _test_predictions(self, folder: Path, prepared: Prepared, outputs: dict) -> None:
        """``test_predictions.csv``: each test row (or image path), its target, the prediction and the ood flag."""
        from dlw.predict import prediction_frame

        rows = prepared.frame.loc[prepared.splits.test]
        predicted = prediction_frame(outputs["test"], prepared.problem, index=rows.index)
        frame = pd.concat([rows, predicted], axis=1)
        flags, scores = outputs["test_ood"]
        frame["ood"], frame["ood_score"] = flags, np.round(scores, 4)
        frame.to_csv(folder / "test_predictions.csv", index=False)

    def _sufficiency(self, folder: Path, prepared: Prepared, objective, backbone, metrics: dict) -> None:
        """Train again on 25% and 50% of the train split (same validation and test rows); the curve and its trend."""
        from dlw.evaluate import MAIN_METRIC, score
        from dlw.honesty import FRACTIONS, plot_sufficiency, sufficiency_trend, train_subset
        from dlw.predict import model_output

        main = MAIN_METRIC[prepared.problem.task]
        seed = self.config.train.seed
        rows, val, test = [], [], []
        self.console.say(f"    data sufficiency: training again on {', '.join(f'{f:.0%}' for f in FRACTIONS[:-1])} of the train split")
        for fraction in FRACTIONS[:-1]:
            keep = train_subset(prepared, fraction, seed)
            part = prepared.with_train_rows(keep, self.config)
            set_seed(seed)
            model, base = build_model(self.config, part, objective, backbone)
            train_model(model, base, part, objective, self.config, QUIET)
            rows.append(len(keep))
            for split, store in (("validation", val), ("test", test)):
                output = model_output(model, part.inputs[split], part.problem, part.target_scaling)
                store.append(score(part.problem, part.targets[split], output)[main])
        rows.append(len(prepared.targets["train"]))
        val.append(metrics["validation"][main])
        test.append(metrics["test"][main])
        trend, message = sufficiency_trend(main, main != "rmse", rows, val, len(prepared.targets["validation"]))
        curve = {"metric": main, "fractions": list(FRACTIONS), "train_rows": rows, "validation": val, "test": test, "trend": trend, "message": message}
        write_json(folder / "sufficiency.json", curve)
        plot_sufficiency(curve, folder / "sufficiency.png")
        metrics["sufficiency"] = {"trend": trend, "message": message}
        self.console.say(f"    data sufficiency: {message}")

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


def build_model(config: Config, prepared: Prepared, objective, backbone=None):
    """Step 5: the model for ``model.kind``; and the pretrained backbone inside it (else None)."""
    m = config.model
    if m.kind == "mlp":
        from dlw.models import build_mlp

        return build_mlp(prepared.schema, objective, prepared.inputs["train"], m.hidden_layers, m.dropout_rate, m.activation), None
    if m.kind == "cnn":
        from dlw.models.cnn import build_cnn

        model = build_cnn(prepared.schema.shape, objective, m.conv_filters, m.dense_layers, m.dropout_rate, m.batch_norm, config.data.augment)
        return model, None
    from dlw.models.cnn import augmentation_layers
    from dlw.models.pretrained import build_pretrained

    return build_pretrained(
        backbone, prepared.schema.shape, objective, m.dense_layers, m.dropout_rate, m.freeze, augmentation_layers(config.data.augment)
    )


EXPLANATION_LIMITS = (
    "these describe what this model relies on, not causes in the world: a column or region can matter to the "
    "model because it goes with the real cause, and changing it need not change the outcome"
)


def train_model(model, base, prepared: Prepared, objective, config: Config, console: Console, callbacks=()):
    """Step 6: compile and fit; for a pretrained backbone with ``fine_tune``, a second phase at a lower rate.

    ``callbacks`` (Keras callbacks, e.g. tuning's pruning) are added to both phases.
    """
    from dlw.train import compile_model, fit

    tc = config.train
    compile_model(model, objective, tc)
    x, y = _train_xy(prepared, config)
    vx, vy = _validation_xy(prepared, config)
    result = fit(model, x, y, vx, vy, tc, console, extra_callbacks=callbacks)
    how = "early stopping" if result.stopped_early else "the epoch limit"
    console.say(f"    stopped after {len(result.history)} epochs ({how}); weights of epoch {result.best_epoch} kept; {result.seconds:.1f} s")
    ft = config.model.fine_tune
    if base is None or ft is None:
        return result
    from dlw.models.pretrained import unfreeze_top

    trainable = unfreeze_top(base, ft.layers)
    phase2 = tc.model_copy(update={"learning_rate": ft.learning_rate, "epochs": ft.epochs})
    compile_model(model, objective, phase2)
    console.say(f"    fine-tuning: {trainable} top layer(s) of the backbone unfrozen, lr {ft.learning_rate:g}, up to {ft.epochs} epochs")
    second = fit(model, x, y, vx, vy, phase2, console, extra_callbacks=callbacks)
    console.say(f"    fine-tuning stopped after {len(second.history)} epochs; weights of its epoch {second.best_epoch} kept; {second.seconds:.1f} s")
    return result.then(second)


def _train_xy(prepared: Prepared, config: Config):
    if prepared.is_images:
        from dlw.imaging import training_input

        return training_input(prepared, config, config.train.seed)
    return prepared.inputs["train"], prepared.training_targets("train")


def _validation_xy(prepared: Prepared, config: Config):
    if prepared.is_images:
        from dlw.imaging import validation_input

        return validation_input(prepared, config)
    return prepared.inputs["validation"], prepared.training_targets("validation")


def describe_model(model, config: Config | None = None, backbone=None, base=None) -> str:
    kind = config.model.kind if config is not None else "mlp"
    params = f"{model.count_params():,} parameters"
    if kind == "pretrained":
        from dlw.models.pretrained import describe

        return describe(model, base, backbone, config.model.dense_layers, config.model.freeze)
    dense = [layer for layer in model.layers if layer.__class__.__name__ == "Dense"]
    units = " -> ".join(str(layer.units) for layer in dense)
    if kind == "cnn":
        convs = [str(layer.filters) for layer in model.layers if layer.__class__.__name__ == "Conv2D"]
        return f"CNN conv {'-'.join(convs)}, Dense {units}; {params}"
    return f"MLP Dense {units}; {params}"


def measure(
    model,
    prepared: Prepared,
    console: Console,
    plots_to: Path | None = None,
    evaluated: dict | None = None,
    detector=None,
    outputs: dict | None = None,
    bootstrap: int = 2000,
) -> dict:
    """Step 8: the network and the baselines on the validation and test splits (or ``evaluated``).

    Adds the verdict (``advice``: the network against the best baseline, with a
    bootstrap interval) and, given an unfamiliar-input ``detector`` (with its
    features model), the share of the measured inputs it flags. The network's
    outputs are left in ``outputs`` when a dict is passed.
    """
    from dlw.evaluate import MAIN_METRIC, baselines, plot_confusion_matrix, plot_residuals, score
    from dlw.predict import model_output

    problem = prepared.problem
    if evaluated is None:
        evaluated = {name: (prepared.inputs[name], prepared.targets[name]) for name in ("validation", "test")}
    result: dict = {"task": problem.task}
    outputs = {} if outputs is None else outputs
    for name, (inputs, y) in evaluated.items():
        outputs[name] = model_output(model, inputs, problem, prepared.target_scaling)
        result[name] = score(problem, y, outputs[name])
    from dlw.evaluate import IMAGE_BASELINES, TABLE_BASELINES

    x_train, y_train = prepared.baseline_features(prepared.inputs["train"]), prepared.targets["train"]
    if prepared.is_images and len(x_train) > BASELINE_MAX_TRAIN:  # logistic regression on pixels: a sample is enough
        keep = np.random.default_rng(0).choice(len(x_train), BASELINE_MAX_TRAIN, replace=False)
        x_train, y_train = x_train[keep], y_train[keep]
    base, base_outputs = baselines(
        problem,
        x_train,
        y_train,
        {name: (prepared.baseline_features(inputs), y) for name, (inputs, y) in evaluated.items()},
        seed=prepared.splits.seed or 0,
        which=IMAGE_BASELINES if prepared.is_images else TABLE_BASELINES,
    )
    main = "test" if "test" in evaluated else next(iter(evaluated))
    result["baselines"] = {name: per_split[main] for name, per_split in base.items()}
    for other in evaluated:
        if other != main:
            result[f"baselines_{other}"] = {name: per_split[other] for name, per_split in base.items()}
    result["main_metric"] = MAIN_METRIC[problem.task]
    from dlw.advice import advise

    result["advice"] = advise(
        problem.task, result["main_metric"], evaluated[main][1], outputs[main], {k: v[main] for k, v in base_outputs.items()},
        n_boot=bootstrap, seed=prepared.splits.seed or 0,
    )
    if detector is not None:
        from dlw.honesty import score_inputs

        flags, scores = score_inputs(detector[0], detector[1], prepared, evaluated[main][0])
        outputs[f"{main}_ood"] = (flags, scores)
        result["ood"] = {
            "rate": detector[0].rate,
            "split": main,
            "flag_rate": float(np.mean(flags)),
            "flagged": int(np.sum(flags)),
            "n": int(len(flags)),
        }
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
    if "ood" in result:
        ood = result["ood"]
        console.say(f"    unfamiliar inputs: {ood['flagged']} of {ood['n']} flagged ({ood['flag_rate']:.1%}; calibrated to flag {ood['rate']:.0%} of familiar ones)")
    from dlw.advice import say

    for line in say(result["advice"]).splitlines():
        console.say(f"    {line}")


def run_manifest(config: Config, prepared: Prepared, seconds: float) -> dict:
    keras = import_keras()
    source = config.data.source
    fingerprint = None
    if Path(source).is_dir():  # an image folder: its listing, sizes and times
        digest = hashlib.sha256()
        for path in sorted(Path(source).rglob("*")):
            if path.is_file():
                stat = path.stat()
                digest.update(f"{path.relative_to(source)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        fingerprint = digest.hexdigest()
    elif Path(source).is_file():
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
        from dlw.imaging import ImageSchema, is_image_schema

        self.schema = ImageSchema.from_dict(data) if is_image_schema(data) else Schema.from_dict(data)
        self.problem = Problem.from_dict(data["problem"])
        self.target_scaling = data.get("target_scaling")
        self.metrics = read_json(self.path / "metrics.json")
        self.manifest = read_json(self.path / "run.json")
        self._model = model

    @property
    def is_images(self) -> bool:
        return getattr(self.schema, "inputs", "table") == "images"

    @property
    def model(self):
        if self._model is None:
            choose_backend(self.is_images)
            keras = import_keras()
            self._model = keras.models.load_model(self.path / "model.keras", safe_mode=True)
        return self._model

    def predict(self, rows, console: Console = QUIET, origin: str = "data") -> pd.DataFrame:
        """Predictions for raw rows: their columns, then ``prediction`` and ``prob_<class>``.

        For an image run, ``rows`` is a folder (nested or flat), a CSV of image
        paths, one image file or a list of paths; the result has ``path`` first.
        """
        from dlw.predict import predict_rows

        if self.is_images:
            return self.predict_images(rows, console)
        frame, warnings, inputs = predict_rows(self.model, self.schema, self.problem, self.target_scaling, rows, origin)
        for warning in warnings:
            console.warn(warning)
        return self._flag_unfamiliar(frame, inputs, console, origin)

    def _flag_unfamiliar(self, frame: pd.DataFrame, inputs, console: Console, origin: str) -> pd.DataFrame:
        """Add ``ood`` and ``ood_score`` from the run's detector, and say how many inputs were flagged."""
        detector = self.detector
        if detector is None:
            return frame
        from dlw.honesty import score_inputs

        flags, scores = score_inputs(detector, self.features_model, self._prepared_stub(), inputs)
        frame["ood"], frame["ood_score"] = flags, np.round(scores, 4)
        what = "image(s)" if self.is_images else "row(s)"
        if flags.any():
            console.warn(
                f"{origin}: {int(flags.sum())} of {len(flags)} {what} look unlike the training data (column ood); "
                "their predictions are guesses, whatever their probabilities"
            )
        else:
            console.say(f"{origin}: no {what} flagged as unfamiliar (column ood)")
        return frame

    @property
    def detector(self):
        if not hasattr(self, "_detector"):
            from dlw.ood import OODDetector

            self._detector = OODDetector.load(self.path) if (self.path / "ood.json").exists() else None
        return self._detector

    @property
    def features_model(self):
        if not hasattr(self, "_features"):
            from dlw.honesty import penultimate_model

            self._features = penultimate_model(self.model)
        return self._features

    def _prepared_stub(self) -> Prepared:
        """Enough of a ``Prepared`` to turn inputs into the detector's features."""
        images = True if self.is_images else None
        return Prepared(pd.DataFrame(), self.problem, self.schema, None, {}, {}, self.target_scaling, 0, images=images)

    def predict_images(self, source, console: Console = QUIET) -> pd.DataFrame:
        from dlw.imaging import decode_for_model, images_for_prediction
        from dlw.predict import model_output, prediction_frame

        found = images_for_prediction(source, self.schema, self.config.data.workers, console)
        arrays, failed = decode_for_model(found, self.schema, self.config.data.workers)
        output = model_output(self.model, arrays, self.problem, self.target_scaling)
        frame = pd.concat([pd.DataFrame({"path": found.paths}), prediction_frame(output, self.problem)], axis=1)
        frame = self._flag_unfamiliar(frame, arrays, console, found.origin)
        if failed:
            console.warn(f"{found.origin}: {len(failed)} image(s) could not be decoded; their predictions are blank")
            frame.loc[failed, frame.columns[1:]] = None
        return frame

    def evaluate(self, data: str | Path | pd.DataFrame | None = None, console: Console = QUIET) -> dict:
        """Step 8 again: on the run's own test split, or on new labelled ``data``.

        The baselines are refitted on the run's train split, so the comparison is
        the same one the run made.
        """
        source = self.config.data.source
        if source not in (*BUILTINS, *IMAGE_BUILTINS) and not Path(source).exists():
            raise DataError(f"{source}: the run's training data is gone; it is needed to refit the baselines")
        choose_backend(self.is_images)
        prepared = prepare(self.config, QUIET, schema=self.schema)
        self._check_same_data(prepared)
        evaluated = None
        if data is not None and self.is_images:
            evaluated = {"data": self._labelled_images(data, console)}
        elif data is not None:
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
        detector = (self.detector, self.features_model) if self.detector is not None else None
        result = measure(self.model, prepared, console, evaluated=evaluated, detector=detector, bootstrap=self.config.checks.bootstrap)
        if data is not None:  # result["data"] holds the network's metrics on it
            result["source"] = str(data) if not isinstance(data, pd.DataFrame) else "DataFrame"
        return result

    def _labelled_images(self, data, console: Console):
        """New labelled images (a class-folder tree or a CSV of paths and labels), decoded for the model."""
        from dlw.imaging import decode_for_model, find_images, say_skipped

        config = self.config.model_copy(deep=True)
        config.data.source = str(Path(data).resolve())
        found = find_images(config)
        say_skipped(found, console)
        arrays, failed = decode_for_model(found, self.schema, self.config.data.workers)
        keep = np.setdiff1d(np.arange(len(found)), failed)
        labels = pd.Series([found.labels[i] for i in keep], name=self.problem.target)
        return arrays[keep], encode_target(labels, self.problem, found.origin)

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

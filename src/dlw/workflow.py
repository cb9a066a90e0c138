"""The steps in order, as one object: ``Workflow`` trains, ``Run`` is what a run left behind.

This module only orchestrates: each step is a call into the module that owns it (see the
README's Architecture section), and the input kind is the ``Prepared`` object's business.

>>> from dlw import Workflow
>>> wf = Workflow.from_config("penguins", overrides=["train.epochs=3"], quiet=True)   # doctest: +SKIP
>>> run = wf.train(out="runs/penguins")                                                # doctest: +SKIP
>>> run.metrics["test"]["accuracy"]                                                    # doctest: +SKIP
0.97...
>>> dlw.load("runs/penguins").predict(frame)                                           # doctest: +SKIP
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from dlw._backend import choose_backend, import_keras, tensorflow_unseen
from dlw.baselines import fit_baselines_in_background
from dlw.card import write_card
from dlw.config import Config
from dlw.console import QUIET, Console
from dlw.crossfit import networks_note
from dlw.data.builtin import BUILTINS, IMAGE_BUILTINS
from dlw.data.kinds import prepare, prepared_for_predictions, schema_from_dict
from dlw.data.prepared import Prepared, logs_target
from dlw.data.splits import Splits
from dlw.errors import DataError, DlwError
from dlw.groups import group_reading, with_other_reading
from dlw.models import MODEL_KINDS, describe_model, held_value_notes, load_network
from dlw.models.designs import design_configs_and_why
from dlw.problem import Problem
from dlw.runs import RunFiles, RunWriter, is_run_folder, missing_run_message, run_manifest, write_atomic, write_json
from dlw.spec import load_spec, validate
from dlw.tracking import track_run

EXPLANATION_LIMITS = (
    "these describe what this model relies on, not causes in the world: a column or region can matter to the "
    "model because it goes with the real cause, and changing it need not change the outcome"
)


class Workflow:
    """A config taken through the workflow: ``train`` (steps 1-6 and 8), ``evaluate``, ``predict``."""

    def __init__(self, config: Config, console: Console | None = None):
        self.config, self.console = config, console or Console()
        self.run: Run | None = None

    @classmethod
    def from_config(cls, source, target: str | None = None, overrides: list[str] | None = None, quiet: bool = False) -> "Workflow":
        """From a YAML path, a built-in name, a data path (with ``target``) or a dict."""
        return cls(load_spec(source, target, overrides), Console(quiet=quiet))

    def default_out(self) -> Path:
        return Path("runs") / (self.config.name or "run")

    def train(self, out: str | Path | None = None, overwrite: bool = False, sufficiency: bool = False, report: bool = False, resume: bool = False) -> "Run":
        """Prepare, build, train and measure; write the run folder; return the loaded ``Run``.

        ``sufficiency`` also trains on 25% and 50% of the train split (``dlw run``
        does); ``report`` writes ``report.html``; ``resume`` carries on a killed run's training.
        """
        out = Path(out) if out is not None else self.default_out()
        writer = RunWriter(out, overwrite, resume=resume)  # refuses before any work is done
        started = time.perf_counter()
        with writer as tmp, track_run(self.config, folder=tmp, out=out, console=self.console) as self.tracker:  # MLflow, TensorBoard
            self.console.attach_log(tmp / "run.log")
            try:
                prepared, objective, backbone = self._steps_1_to_4()
                baselines = fit_baselines_in_background(prepared)  # while the network trains
                trained, warnings = self._steps_5_and_6(prepared, objective, backbone, baselines, checkpoint_in=tmp)  # per-epoch state, for --resume
                metrics = self._write_run(tmp, prepared, objective, trained, warnings, baselines)
                if sufficiency:
                    from dlw.sufficiency import sufficiency_curve

                    metrics["sufficiency"] = sufficiency_curve(
                        self.config, prepared, objective, backbone=backbone, metrics=metrics, folder=tmp, console=self.console, designs=trained.designs
                    )
                write_json(tmp / "metrics.json", metrics)
                manifest = run_manifest(self.config, rows=len(prepared.frame), seconds=time.perf_counter() - started)
                write_json(tmp / "run.json", {**manifest, "distribution": trained.distribution})
                write_card(tmp)  # last: the card reads every file above
                if report:
                    from dlw.report import write_report

                    write_report(tmp)
            finally:
                self.console.detach_log()
        self.console.say(f"run folder: {out}")
        self.run = Run(out, model=trained.model)
        return self.run

    def _steps_1_to_4(self):
        """Checks that need no data, then the prepared data, the objective and the backbone (or None)."""
        from dlw.baselines import persistence_notes
        from dlw.classes import check_main_metric
        from dlw.distribute import choose_backend_for
        from dlw.objectives import check_monitor, check_names, choose_objective

        config = self.config
        check_names(config.loss, config.metrics)
        choose_backend_for(config)  # data_parallel needs JAX
        backbone = None
        if config.model.kind == "pretrained":
            from dlw.models.pretrained import resolve_backbone

            backbone = resolve_backbone(config.model.backbone, None, weights=config.model.backbone_weights, layer=config.model.backbone_layer)
        prepared = prepare(config, self.console, backbone_shape=getattr(backbone, "input_shape", None))
        problem = prepared.problem
        check_main_metric(problem.task, config.checks.main_metric)
        for note in persistence_notes(prepared):
            self.console.say(f"    {note}")
        objective = choose_objective(problem.task, len(problem.classes or []), config.loss, config.metrics, logged_target=logs_target(prepared.target_scaling))
        if config.train.early_stopping:
            check_monitor(objective, config.train.early_stopping.monitor)
        self.console.step(4, f"loss: {objective.loss}; metrics: {', '.join(objective.metrics)}")
        return group_reading(config, prepared, objective, self.console), objective, backbone  # step 3's group numbers, read as the data say

    def _steps_5_and_6(self, prepared: Prepared, objective, backbone, baselines, checkpoint_in: Path | None = None):
        """Build and train through the one fit path (the ``baselines`` awaited where they decide the designs); the trained network and the small-data warnings."""
        from dlw.sufficiency import small_data_warnings, trainable_parameters
        from dlw.train import train_network

        console, warnings = self.console, []
        designs, why = design_configs_and_why(self.config, prepared, baselines.bend, console)

        def announce(model, base, tc) -> None:
            console.step(5, f"model: {describe_model(model, designs[0], prepared, backbone=backbone, base=base)}{networks_note(prepared.splits, why)}")
            warnings.extend(small_data_warnings(prepared, trainable_parameters(model)) + held_value_notes(model, prepared))
            for warning in warnings:
                console.warn(warning)
            schedule = ", cosine schedule" if tc.schedule == "cosine" else ""
            cycles = f", up to {tc.cycles} cycles while the validation loss falls" if tc.cycles > 1 else ""
            console.step(6, f"training: up to {tc.epochs} epochs, batch {tc.batch_size}, {tc.optimizer} lr {tc.learning_rate:g}{schedule}{cycles}")

        trained = train_network(
            self.config, prepared, objective, backbone=backbone, console=console, before_fit=announce, checkpoint_in=checkpoint_in, callbacks=self.tracker.callbacks(), designs=designs
        )
        if prepared.problem.is_classification:  # calibrated on the validation split, then the threshold chosen and checked there
            from dlw.calibration import calibrate
            from dlw.classes import validation_decisions

            trained.model, trained.calibration = calibrate(trained.model, prepared, self.config)
            prepared.problem.threshold, prepared.problem.class_offsets, found = validation_decisions(prepared, trained.model, self.config, trained.calibration)
            warnings += [console.warn(w) or w for w in found]
        return trained, warnings

    def _write_run(self, folder: Path, prepared: Prepared, objective, trained, warnings: list[str], baselines) -> dict:
        """Everything a run leaves behind but ``metrics.json`` and ``run.json``; returns the metrics."""
        from dlw.calibration import calibration_summary, uncalibrated_outputs
        from dlw.evaluate import measure
        from dlw.ood import fit_detector
        from dlw.objectives import learned_target
        from dlw.plots import plot_learning_curves
        from dlw.predict import write_test_predictions
        from dlw.sufficiency import trainable_parameters

        model, result = trained.model, trained.result
        write_atomic(folder / "config.yaml", self.config.to_yaml())
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
        write_atomic(folder / "history.csv", result.history.to_csv(index=False))
        plot_learning_curves(result.history, result.best_epoch, folder / "learning_curves.png", f"(standardized {learned_target(logs_target(prepared.target_scaling))})" if prepared.target_scaling else "")
        detector = fit_detector(model, prepared, self.config.checks.ood_rate)
        detector[0].save(folder)
        explanations = {**prepared.explain(model, folder, self.config.train.seed), "limits": EXPLANATION_LIMITS}  # while the baselines may still predict
        outputs: dict = {}
        metrics = measure(model, prepared, self.console, plots_to=folder, detector=detector, outputs=outputs, bootstrap=self.config.checks.bootstrap, baselines=baselines)
        metrics["ood"]["method"] = detector[0].method
        metrics["training"] = {
            "epochs_run": int(len(result.history)),
            "best_epoch": result.best_epoch,
            "stopped_early": result.stopped_early,
            "fit_seconds": round(result.seconds, 3),
            "parameters": int(model.count_params()),
            "trainable_parameters": trainable_parameters(model),  # after fine-tuning, when it ran
            "plan": trained.train.model_dump(mode="json", include={"epochs", "batch_size", "optimizer", "learning_rate", "weight_decay", "schedule", "cycles"}),
            **({"folds": trained.folds} if trained.folds else {}),  # cross-fitted: the figures above are the first network's
        }
        metrics["warnings"] = warnings + metrics.pop("class_warnings", [])
        if trained.calibration is not None:
            metrics["calibration"] = calibration_summary(trained.calibration, prepared.targets["test"], outputs["test"], folder, before=uncalibrated_outputs(model, prepared))
        write_test_predictions(folder, prepared, outputs)
        metrics["explanations"] = explanations
        return metrics

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


class Run:
    """A finished run folder: its config, schema, metrics and model; predicts and re-evaluates.

    Loading reads only JSON, YAML and ``model.keras`` with Keras's ``safe_mode``.
    """

    def __init__(self, path: str | Path, model=None):
        self.path = Path(path)
        if not self.path.is_dir():
            raise DlwError(missing_run_message(self.path))
        if not is_run_folder(self.path):
            raise DlwError(f"{self.path}: not a dlw run folder (no run.json); pass the folder `dlw train` wrote")
        raw = yaml.safe_load((self.path / "config.yaml").read_text(encoding="utf-8"))
        self.config = validate(raw, str(self.path / "config.yaml"))
        files = RunFiles(self.path)
        self.input_kind = files.input_kind
        self.schema = schema_from_dict(files.schema)
        self.problem = Problem.from_dict(files.schema["problem"])
        self.target_scaling = files.schema.get("target_scaling")
        self.metrics, self.manifest = files.metrics, files.manifest
        self.prepared = prepared_for_predictions(self.input_kind, self.config, self.schema, self.problem, self.target_scaling)
        self._model = model

    @property
    def is_images(self) -> bool:
        """Kept for the public API: reads the input kind the run recorded, decides nothing."""
        return self.input_kind == "images"

    def _repr_html_(self) -> str:
        """A summary table in Jupyter: data, task, model, main metric vs best baseline, verdict."""
        from dlw.compare import summary_html

        return summary_html(self.path)

    @property
    def model(self):
        if self._model is None:
            choose_backend(MODEL_KINDS[self.config.model.kind].convolutional)
            import_keras()
            self._model = load_network(self.path / "model.keras")
        return self._model

    def predict(self, rows, console: Console = QUIET, origin: str = "data") -> pd.DataFrame:
        """Predictions for new inputs: their columns (or ``path``), then ``prediction``, ``prob_<class>``, ``ood``.

        ``rows`` is a frame or a table file for a table run; for an image run, a folder
        (nested or flat), a CSV of image paths, one image file or a list of paths.
        """
        from dlw.ood import raw_outputs_and_scores
        from dlw.predict import prediction_frame

        shown, inputs, failed, origin = self.prepared.encode_new(rows, console, origin)
        if self.checked is None:
            raw, flagged = self.prepared.predict_raw(self.model, inputs), []
        else:  # the detector's flags from the predictions' own pass through the network
            raw, *flagged = raw_outputs_and_scores(*self.checked, self.prepared, inputs)
        predicted = prediction_frame(self.prepared.outputs_from_raw(raw), self.problem, index=shown.index)
        kept = shown.drop(columns=[c for c in [*predicted.columns, "ood", "ood_score"] if c in shown.columns])
        frame = self._flag_unfamiliar(pd.concat([kept, predicted], axis=1), flagged, console, origin)
        if failed:
            console.warn(f"{origin}: {len(failed)} {self.prepared.noun}(s) could not be decoded; their predictions are blank")
            frame.loc[failed, frame.columns[1:]] = None
        return frame

    def _flag_unfamiliar(self, frame: pd.DataFrame, flagged: list, console: Console, origin: str) -> pd.DataFrame:
        """Add ``ood`` and ``ood_score`` (``flagged``: the detector's flags and scores, or empty), and say how many inputs were flagged."""
        if not flagged:
            return frame
        flags, scores = flagged
        frame["ood"], frame["ood_score"] = flags, np.round(scores, 4)
        what = f"{self.prepared.noun}(s)"
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
    def checked(self):
        """``(detector, outputs_and_features_model(model))`` with the run's unfamiliar-input detector, else None."""
        if not hasattr(self, "_checked"):
            from dlw.ood import outputs_and_features_model

            self._checked = (self.detector, outputs_and_features_model(self.model)) if self.detector is not None else None
        return self._checked

    def evaluate(self, data: str | Path | pd.DataFrame | None = None, console: Console = QUIET) -> dict:
        """Step 8 again: on the run's own test split, or on new labelled ``data``.

        The baselines are refitted on the run's train split, so the comparison is
        the same one the run made.
        """
        from dlw.evaluate import measure

        source = self.config.data.source
        if source not in (*BUILTINS, *IMAGE_BUILTINS) and not Path(source).exists():
            raise DataError(f"{source}: the run's training data is gone; it is needed to refit the baselines")
        choose_backend(MODEL_KINDS[self.config.model.kind].convolutional)
        prepared = self._same_data(prepare(self.config, QUIET, schema=self.schema))
        prepared = with_other_reading(self.config, prepared, data, metrics=self.metrics)  # each baseline keeps its own reading, as it trained
        evaluated = None if data is None else {"data": prepared.encode_labelled(data, console)}
        prepared.problem, prepared.target_scaling = self.problem, self.target_scaling
        result = measure(self.model, prepared, console, evaluated=evaluated, detector=self.checked, bootstrap=self.config.checks.bootstrap)
        if data is not None:  # result["data"] holds the network's metrics on it
            result["source"] = str(data) if not isinstance(data, pd.DataFrame) else "DataFrame"
        return result

    def _same_data(self, prepared: Prepared) -> Prepared:  # a DataError unless its rows and test split are the run's
        expected = self.manifest.get("data", {})
        if expected.get("rows") is not None and expected["rows"] != len(prepared.frame):
            n, source = len(prepared.frame), self.config.data.source
            raise DataError(f"{source}: has {n} rows but the run was trained on {expected['rows']}; the file changed since training, so its test split is not the run's")
        saved = Splits.load(self.path / "splits.json")
        if not np.array_equal(saved.test, prepared.splits.test):
            raise DataError(f"{self.config.data.source}: the test split differs from the run's splits.json; the data changed since training")
        return prepared


def load(path: str | Path) -> Run:
    """Load a run folder written by ``dlw train``, or a bundle from ``dlw share``: ``dlw.load("runs/my").predict(rows)``."""
    from dlw.bundle import is_bundle, open_bundle

    return Run(open_bundle(path)) if is_bundle(path) else Run(path)

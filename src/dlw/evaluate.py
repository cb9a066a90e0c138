"""Step 8, measuring performance: the network and the baselines on the same held-out rows.

Classification: accuracy, balanced accuracy, macro F1, log loss (+ ROC AUC for
binary). Regression: RMSE, MAE, R² in the target's own units. The baselines
(``dlw.baselines``) are fitted on the train split, choose their capacity on the
validation split, and are measured with the network on the test split.
"""

from __future__ import annotations

from concurrent.futures import Future
from pathlib import Path

import numpy as np

from dlw.advice import advise, say
from dlw.classes import balanced_train_rows, baseline_decision, choose_main_metric, choose_threshold, predicted_classes, unpredicted_class_warnings
from dlw.console import Console
from dlw.crossfit import validation_network
from dlw.data.prepared import SPLITS, Prepared
from dlw.ood import calibration_text, raw_outputs_and_scores
from dlw.plots import plot_confusion_matrix, plot_residuals
from dlw.problem import Problem
from dlw.runs import pause_point


def classification_metrics(y_true: np.ndarray, proba: np.ndarray, n_classes: int, threshold=None, names=None) -> dict:
    """Accuracy, balanced accuracy, macro F1, log loss (and binary ROC AUC), or only ``names``; classes decided by the rule ``threshold`` (``Problem.decision``)."""
    from sklearn import metrics as m

    predicted = predicted_classes(proba, threshold)
    labels = list(range(n_classes))

    def log_loss() -> float:
        clipped = np.clip(proba, 1e-7, 1.0)
        return m.log_loss(y_true, clipped / clipped.sum(axis=1, keepdims=True), labels=labels)

    compute = {
        "accuracy": lambda: m.accuracy_score(y_true, predicted),
        "balanced_accuracy": lambda: m.balanced_accuracy_score(y_true, predicted),
        "macro_f1": lambda: m.f1_score(y_true, predicted, average="macro", labels=labels, zero_division=0),
        "log_loss": log_loss,
    }
    if n_classes == 2:
        compute["roc_auc"] = lambda: m.roc_auc_score(y_true, proba[:, 1]) if len(np.unique(y_true)) == 2 else None
    return {**computed(compute, names), "n": int(len(y_true))}


def regression_metrics(y_true: np.ndarray, predicted: np.ndarray, names=None) -> dict:
    """RMSE, MAE and R², or only ``names``."""
    from sklearn import metrics as m

    compute = {
        "rmse": lambda: np.sqrt(m.mean_squared_error(y_true, predicted)),
        "mae": lambda: m.mean_absolute_error(y_true, predicted),
        "r2": lambda: m.r2_score(y_true, predicted) if len(y_true) > 1 else None,
    }
    return {**computed(compute, names), "n": int(len(y_true))}


def computed(compute: dict, names=None) -> dict:
    """Each metric of ``compute`` (name to a function of nothing) named in ``names`` (all when None), as a float or None."""
    values = {name: f() for name, f in compute.items() if names is None or name in names}
    return {name: None if v is None else float(v) for name, v in values.items()}


def score(problem: Problem, y_true: np.ndarray, output: np.ndarray, threshold=None, names=None) -> dict:
    """Metrics for model output: class probabilities (decided by the rule ``threshold``, ``Problem.decision``), or predictions in target units.

    ``names`` limits them to those metrics (permutation importance asks for one, 70 times).
    """
    if problem.is_classification:
        return classification_metrics(y_true, output, len(problem.classes), threshold, names)
    return regression_metrics(y_true, output, names)


def measure(
    model,
    prepared: Prepared,
    console: Console,
    *,
    plots_to: Path | None = None,
    evaluated: dict | None = None,
    detector=None,
    outputs: dict | None = None,
    bootstrap: int = 2000,
    baselines: Future | None = None,
) -> dict:
    """Step 8: the network and the baselines on the validation and test splits (or ``evaluated``).

    Adds the verdict (``advice``: the network against the best baseline, with a
    bootstrap interval) and, given ``detector`` (an unfamiliar-input detector and its ``outputs_and_features_model``),
    the share of the test rows (or ``evaluated``'s) it flags, scored in their predictions' pass. The network's
    outputs are left in ``outputs`` when a dict is passed. ``baselines``: the fitted
    baselines' future (``fit_baselines_in_background``), when fitting began earlier.
    """
    pause_point("measure")  # fault-injection tests kill a run here
    problem = prepared.problem
    if evaluated is None:
        evaluated = {name: (prepared.inputs[name], prepared.targets[name]) for name in ("validation", "test")}
    result: dict = {"task": problem.task}
    outputs = {} if outputs is None else outputs
    main = "test" if "test" in evaluated else next(iter(evaluated))
    for name, (inputs, y) in evaluated.items():
        if name == main and detector is not None:  # the test rows (or new ones): the predictions and the detector's features in one pass
            raw, flags, scores = raw_outputs_and_scores(*detector, prepared, inputs)
            outputs[name], outputs[f"{name}_ood"] = prepared.outputs_from_raw(raw), (flags, scores)
        else:
            # A cross-fitted model's validation rows trained all its networks but the first: it answers for them.
            outputs[name] = prepared.outputs(validation_network(model) if name == "validation" else model, inputs)
        result[name] = score(problem, y, outputs[name], problem.decision)
    result["main_metric"], result["main_metric_reason"] = choose_main_metric(problem, prepared.targets["train"], prepared.config.checks.main_metric)
    # The network's own checks first: the baselines may still be predicting in the background.
    predicted = predicted_classes(outputs[main], problem.decision) if problem.is_classification else outputs[main]
    ood = ood_summary(detector[0], main, outputs) if detector is not None else None
    if plots_to is not None:
        plot_errors(problem, evaluated[main][1], predicted, plots_to)
    thresholds = {"network": problem.decision}
    base_outputs = measure_baselines(prepared, evaluated, main, result, thresholds=thresholds, fitting=baselines)
    result["advice"] = advise(
        problem.task, result["main_metric"], evaluated[main][1], outputs[main], {k: v[main] for k, v in base_outputs.items()},
        n_boot=bootstrap, seed=prepared.splits.seed or 0, thresholds=thresholds, groups=prepared.split_groups(main),
    )
    if "persistence" in base_outputs:  # the weather episode's question: is the network better than "the next value = this one"?
        only = {"persistence": base_outputs["persistence"][main]}
        result["advice_persistence"] = advise(problem.task, result["main_metric"], evaluated[main][1], outputs[main], only, n_boot=bootstrap, seed=prepared.splits.seed or 0)
    if problem.is_classification:
        balanced = balanced_train_rows(problem, prepared.targets["train"], prepared.config.train.class_weight)
        result["class_warnings"] = unpredicted_class_warnings(main, evaluated[main][1], predicted, problem.classes, balanced_train_rows=balanced)
    if ood is not None:
        result["ood"] = ood
    say_metrics(result, main, console)
    return result


def ood_summary(detector, split: str, outputs: dict) -> dict:
    """The summary of the unfamiliar-input ``detector``'s flags on ``split`` (``outputs[f"{split}_ood"]``)."""
    flags = outputs[f"{split}_ood"][0]
    return {"rate": detector.rate, "split": split, "flag_rate": float(np.mean(flags)), "flagged": int(np.sum(flags)), "n": int(len(flags)),
            **({"calibration_rows": detector.calibration_rows} if detector.calibration_rows else {})}


def measure_baselines(prepared: Prepared, evaluated: dict, main: str, result: dict, thresholds: dict | None = None, fitting: Future | None = None) -> dict:
    """Fit the kind's baselines (``dlw.baselines``; or take them from ``fitting``), score them on ``evaluated`` into ``result``; their outputs.

    ``result["baselines"]`` holds each baseline's metrics on the ``main`` split, and
    ``result["baseline_fits"]`` what each chose on the validation split and its fit seconds (and,
    cross-fitted, its out-of-fold loss), and ``result["hints"]`` what they suggest (``dlw.models.designs.bend_hint``).
    With ``checks.threshold: auto`` each baseline chooses its own binary threshold on the
    validation split too (into ``thresholds``), as the network did.
    """
    from dlw.baselines import fit_baselines, linear_over_boosting
    from dlw.models.designs import bend_hint

    problem = prepared.problem
    # Fitted here (dlw evaluate), the baselines predict only the splits asked for, when asked.
    fitted = fitting.result() if fitting is not None else fit_baselines(prepared, prepared.splits.seed or 0)
    thresholds = {} if thresholds is None else thresholds
    rule = baseline_decision(problem, prepared.targets["train"], prepared.config)
    if rule is not None:
        thresholds.update({name: rule for name in fitted})
    if problem.task == "binary" and prepared.config.checks.threshold == "auto":
        for name, f in fitted.items():
            proba = f.predict_split("validation", prepared.inputs["validation"])
            f.chosen["threshold"] = thresholds[name] = choose_threshold(prepared.targets["validation"], proba, result["main_metric"])
    outputs = {name: {split: f.predict_split(split, inputs) for split, (inputs, _) in evaluated.items()} for name, f in fitted.items()}
    scores = {
        name: {split: score(problem, y, outputs[name][split], thresholds.get(name)) for split, (_, y) in evaluated.items()} for name in fitted
    }
    result["baselines"] = {name: per_split[main] for name, per_split in scores.items()}
    for other in evaluated:
        if other != main:
            result[f"baselines_{other}"] = {name: per_split[other] for name, per_split in scores.items()}
    result["baseline_fits"] = {name: {**f.chosen, **out_of_fold(f, problem), "fit_seconds": round(f.fit_seconds, 3)} for name, f in fitted.items()}
    hint = bend_hint(prepared.config, prepared, linear_over_boosting(fitted))
    if hint:
        result["hints"] = [hint]
    return outputs


def out_of_fold(fitted, problem: Problem) -> dict:
    """A cross-fitted baseline's loss on the rows its fits did not train on, for ``baseline_fits``: rmse or log loss; {} for one fit."""
    loss = fitted.out_of_fold_loss
    if loss is None:
        return {}
    return {"out_of_fold_log_loss": round(loss, 6)} if problem.is_classification else {"out_of_fold_rmse": float(f"{np.sqrt(loss):.6g}")}


def plot_errors(problem: Problem, y: np.ndarray, output: np.ndarray, folder: Path) -> None:
    """The confusion matrix (classification: ``output`` the predicted classes) or the residuals (regression) on the measured rows."""
    if problem.is_classification:
        plot_confusion_matrix(y, output, problem.classes, folder / "confusion_matrix.png")
    else:
        plot_residuals(y, output, problem.target, folder / "residuals.png")


def say_metrics(result: dict, split: str, console: Console) -> None:
    """The measured metrics as a small table on the console, then the verdict."""
    main = result["main_metric"]
    keys = [main] + [k for k in ("balanced_accuracy", "macro_f1", "log_loss", "roc_auc", "mae", "r2") if k in result[split] and k != main]

    def fmt(metrics: dict) -> str:
        return "  ".join(f"{k} {metrics[k]:.4f}" if metrics.get(k) is not None else f"{k} -" for k in keys)

    where = f"the {split} split" if split in SPLITS else "the given data"
    console.step(8, f"measured on {where} ({result[split]['n']} rows):")
    console.say(f"    {'network':24s}{fmt(result[split])}")
    for name, metrics in result["baselines"].items():
        console.say(f"    {name:24s}{fmt(metrics)}")
    readings = {name: fit["group_numbers"] for name, fit in result.get("baseline_fits", {}).items() if fit.get("group_numbers") and name in ("linear", "hist_gradient_boosting")}
    if readings:
        console.say("    the group numbers as each baseline read them, by its out-of-fold loss: " + ", ".join(f"{name} as a {reading}" for name, reading in readings.items()))
    if "ood" in result:
        ood = result["ood"]
        console.say(f"    unfamiliar inputs: {ood['flagged']} of {ood['n']} flagged ({ood['flag_rate']:.1%}; {calibration_text(ood['rate'], ood.get('calibration_rows'))})")
    if result["main_metric_reason"].startswith("the smallest class"):
        console.say(f"    main metric {main}: {result['main_metric_reason']}")
    for line in say(result["advice"]).splitlines():
        console.say(f"    {line}")
    if "advice_persistence" in result:
        console.say(f"    against persistence alone: {result['advice_persistence']['verdict']}")
    for hint in result.get("hints", []):
        console.say(f"    {hint}")
    for warning in result.get("class_warnings", []):
        console.warn(warning)

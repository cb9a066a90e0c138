"""Imbalanced classes: their weights in the loss, the verdict's metric, the decision threshold, classes never predicted.

A network trained on 94% "no" and 6% "yes" can reach 94% accuracy by never saying "yes";
plain accuracy then calls it as good as the majority baseline, and nothing looks wrong.
So when the smallest class is under ``IMBALANCE_SHARE`` of the train rows (and, with many
classes, under half an equal share: ten even classes of 10% each are balanced), dlw (with the
config's ``auto`` settings) judges the verdict on ``balanced_accuracy`` (multiclass) or
``roc_auc`` (binary) and says so; it weighs the classes equally in the loss (multiclass), or
decides as a class-balanced model would (binary: ``balanced_offsets``, the probability of each
class divided by its share of the train rows); and after training and on the test split it
warns about any class the network (almost) never predicts.

For two classes the loss stays unweighted under ``auto``: weighing it lowered the network's
ROC AUC in 20 of 21 runs (7 imbalanced binary tables, 3 seeds; by 0.017 on average), while on
the one imbalanced multiclass table measured (hpc_data, 6% in its rarest class) the weighted
loss gave a slightly higher balanced accuracy than the shares alone (0.781 against 0.775 over
3 seeds; bench/RESULTS.md). ``train.class_weight: balanced`` weighs the loss for any task.

>>> import numpy as np
>>> from dlw.problem import Problem
>>> problem = Problem("binary", "y", ["no", "yes"])
>>> y = np.array([0] * 95 + [1] * 5)
>>> choose_main_metric(problem, y, "auto")[0], class_weights(problem, y, "auto"), [round(o, 3) for o in balanced_offsets(problem, y, "auto")]
('roc_auc', None, [-0.642, 2.303])
>>> {k: round(w, 3) for k, w in class_weights(problem, y, "balanced").items()}
{0: 0.526, 1: 10.0}
"""

from __future__ import annotations

import numpy as np

from dlw.errors import ConfigError
from dlw.objectives import MAIN_METRIC

# The smallest class's share of the train rows under which classes count as imbalanced.
IMBALANCE_SHARE = 0.2
# A class the network predicts on under this share of the rows that truly hold it is warned
# about (when at least MIN_SUPPORT rows hold it; on fewer, a miss or two is noise).
FEW_PREDICTED = 0.2
MIN_SUPPORT = 5
# The main metrics each task may be judged on (checks.main_metric).
TASK_METRICS = {
    "binary": ("accuracy", "balanced_accuracy", "macro_f1", "log_loss", "roc_auc"),
    "multiclass": ("accuracy", "balanced_accuracy", "macro_f1", "log_loss"),
    "regression": ("rmse", "mae"),
}
# Metrics that depend on the decision threshold; another main metric chooses it by balanced accuracy.
THRESHOLD_METRICS = ("accuracy", "balanced_accuracy", "macro_f1")


def smallest_class(y_train: np.ndarray, n_classes: int) -> tuple[int, float]:
    """The index of the rarest class in ``y_train`` and its share of the rows."""
    counts = np.bincount(np.asarray(y_train, dtype=int), minlength=n_classes)
    index = int(counts.argmin())
    return index, float(counts[index] / max(len(y_train), 1))


def is_imbalanced(problem, y_train: np.ndarray) -> bool:
    """Whether the smallest class is under ``IMBALANCE_SHARE`` of the train rows and under half of ``1 / k`` (False for regression)."""
    if not problem.is_classification:
        return False
    k = len(problem.classes)
    return smallest_class(y_train, k)[1] < min(IMBALANCE_SHARE, 0.5 / k)


def balanced_weights(problem, y_train: np.ndarray) -> dict[int, float]:
    """``n / (k * rows of the class)`` per class index: every class weighs the same in all."""
    k = len(problem.classes)
    counts = np.bincount(np.asarray(y_train, dtype=int), minlength=k)
    return {i: float(len(y_train) / (k * c)) if c else 0.0 for i, c in enumerate(counts)}


def class_weights(problem, y_train: np.ndarray, setting: str) -> dict[int, float] | None:
    """Keras ``class_weight`` for the loss, or None (every row weighs 1).

    ``setting`` is ``train.class_weight``: balanced weights under ``balanced``, and under
    ``auto`` for an imbalanced multiclass target; a binary one is balanced in its decisions
    instead (``balanced_offsets``).
    """
    if not problem.is_classification or setting == "none":
        return None
    if setting == "auto" and (problem.task != "multiclass" or not is_imbalanced(problem, y_train)):
        return None
    return balanced_weights(problem, y_train)


def balanced_offsets(problem, y_train: np.ndarray, setting: str) -> list[float] | None:
    """Under ``auto`` for an imbalanced binary target, each class's log balanced weight: the decision rule of a balanced model.

    Adding them to an unweighted network's log-probabilities divides each class's
    probability by its share of the train rows, which is what balanced weights in the loss
    would have done to the decisions (``predicted_classes`` takes them as a rule). Else None.
    """
    if setting != "auto" or problem.task != "binary" or not is_imbalanced(problem, y_train):
        return None
    return log_balanced_weights(problem, y_train)


def decides_balanced(problem, y_train: np.ndarray, setting: str) -> bool:
    """Whether the network decides as a balanced model would under ``train.class_weight`` ``setting``: class weights in its
    loss (``class_weights``), or the ``balanced_offsets`` of an imbalanced binary target."""
    return class_weights(problem, y_train, setting) is not None or balanced_offsets(problem, y_train, setting) is not None


def log_balanced_weights(problem, y_train: np.ndarray) -> list[float]:
    """Each class's log balanced weight (0 for a class absent from the train rows): the offsets of a balanced decision."""
    return [float(np.log(w)) if w > 0 else 0.0 for w in balanced_weights(problem, y_train).values()]


def offsets_as_threshold(offsets: list[float]) -> float:
    """The binary threshold that decides as ``offsets`` do: the second class when p > 1 / (1 + e^(o1 - o0))."""
    return float(1.0 / (1.0 + np.exp(offsets[1] - offsets[0])))


def baseline_decision(problem, y_train: np.ndarray, config) -> float | list[float] | None:
    """The decision rule (``predicted_classes``) under which an unweighted baseline decides as the network does.

    Where the network decides as a balanced model would (class weights in its loss, or the
    ``balanced_offsets`` of an imbalanced binary target), a baseline must too, or a verdict on
    balanced accuracy compares a balanced network with baselines that favour the largest class
    (MASS's fgl: linear 0.498 by the most probable class, 0.647 balanced). A binary threshold set
    in ``checks.threshold`` applies to every model; None leaves the most probable class (or,
    under ``threshold: auto``, a threshold each baseline chooses on the validation split).
    """
    if not problem.is_classification:
        return None
    threshold = config.checks.threshold
    if problem.task == "binary" and threshold != 0.5:
        return None if threshold == "auto" else float(threshold)
    if not decides_balanced(problem, y_train, config.train.class_weight):
        return None
    offsets = log_balanced_weights(problem, y_train)
    return offsets_as_threshold(offsets) if problem.task == "binary" else offsets


def check_main_metric(task: str, setting: str) -> None:
    """A ConfigError naming ``checks.main_metric`` when it does not fit the task."""
    if setting != "auto" and setting not in TASK_METRICS[task]:
        raise ConfigError(
            f"key 'checks.main_metric': {setting!r} cannot judge a {task} task; choose auto or one of {', '.join(TASK_METRICS[task])}"
        )


def choose_main_metric(problem, y_train: np.ndarray, setting: str = "auto") -> tuple[str, str]:
    """The metric the verdict is judged on, and why (a sentence for metrics.json and the report)."""
    if setting != "auto":
        return setting, "chosen in the config (checks.main_metric)"
    default = MAIN_METRIC[problem.task]
    if not is_imbalanced(problem, y_train):
        return default, f"the default for a {problem.task} task"
    index, share = smallest_class(y_train, len(problem.classes))
    metric = "roc_auc" if problem.task == "binary" else "balanced_accuracy"
    return metric, (
        f"the smallest class, {problem.classes[index]!r}, is {share:.1%} of the train rows (under {IMBALANCE_SHARE:.0%}): "
        f"{default} would reward a model that rarely predicts it, so the verdict uses {metric} "
        "(set checks.main_metric to choose another)"
    )


def predicted_classes(proba: np.ndarray, rule: float | list[float] | None = None) -> np.ndarray:
    """Class indices under a decision ``rule`` (``Problem.decision``).

    None: the most probable class; a number (two classes): the second class when its
    probability exceeds it; a list: the largest log-probability plus each class's offset.
    """
    proba = np.asarray(proba)
    if rule is None:
        return proba.argmax(axis=1)
    if np.ndim(rule) == 0:
        return (proba[:, 1] > rule).astype(int) if proba.shape[1] == 2 else proba.argmax(axis=1)
    return (np.log(np.clip(proba, 1e-12, 1.0)) + np.asarray(rule)[None, :]).argmax(axis=1)


def choose_threshold(y_val: np.ndarray, proba_val: np.ndarray, metric: str) -> float:
    """The binary decision threshold that scores best on the validation rows.

    Judged by ``metric`` when it depends on the threshold, else by balanced accuracy;
    among equally good thresholds, the one closest to 0.5.
    """
    from sklearn import metrics as m

    judge = metric if metric in THRESHOLD_METRICS else "balanced_accuracy"
    score = {
        "accuracy": m.accuracy_score,
        "balanced_accuracy": m.balanced_accuracy_score,
        "macro_f1": lambda y, p: m.f1_score(y, p, average="macro", labels=[0, 1], zero_division=0),
    }[judge]
    p = np.asarray(proba_val)[:, 1]
    # Midpoints between neighbouring distinct probabilities: every distinct decision, at most 400.
    cuts = np.unique(np.quantile(p, np.linspace(0, 1, 401)))
    candidates = np.unique(np.concatenate([[0.5], (cuts[:-1] + cuts[1:]) / 2]))
    candidates = candidates[(candidates > 0) & (candidates < 1)]
    scores = np.array([score(y_val, (p > t).astype(int)) for t in candidates])
    best = np.flatnonzero(scores >= scores.max() - 1e-12)
    return float(candidates[best[np.argmin(np.abs(candidates[best] - 0.5))]])


def unpredicted_class_warnings(split: str, y_true: np.ndarray, predicted: np.ndarray, classes: list, *, balanced_train_rows=None) -> list[str]:
    """One warning per class the network predicts on none, or too few, of the rows that hold it.

    ``balanced_train_rows``: each class's train rows, where the network decides as a balanced model already
    (``decides_balanced``); then a rare class's hint is its rows, not the class weights it has.
    """
    k = len(classes)
    truth = np.bincount(np.asarray(y_true, dtype=int), minlength=k)
    guessed = np.bincount(np.asarray(predicted, dtype=int), minlength=k)
    warnings = []
    for i, name in enumerate(classes):
        never = guessed[i] == 0 and truth[i] > 0
        few = truth[i] >= MIN_SUPPORT and guessed[i] < FEW_PREDICTED * truth[i]
        if never or few:
            how = "never predicts" if guessed[i] == 0 else "rarely predicts"
            rare = truth[i] < min(IMBALANCE_SHARE, 0.5 / k) * len(y_true)
            if rare and balanced_train_rows is not None:
                hint = (f"it weighs as much as any class already, on {balanced_train_rows[i]} train rows: too few to learn it; "
                        "collect more rows of it, or merge it with a similar class")
            else:
                hint = "consider train.class_weight: balanced" if rare else "the learning curves show whether it trained long enough"
            warnings.append(
                f"{split} split: the network {how} class {name!r} ({guessed[i]} of {len(y_true)} rows predicted {name!r}; "
                f"{truth[i]} rows truly are); look at the confusion matrix; {hint}"
            )
    return warnings


def balanced_train_rows(problem, y_train: np.ndarray, setting: str) -> np.ndarray | None:
    """Each class's train rows where the network ``decides_balanced``, else None (``unpredicted_class_warnings``)."""
    return np.bincount(np.asarray(y_train, dtype=int), minlength=len(problem.classes)) if decides_balanced(problem, y_train, setting) else None


def decision_offsets(calibration: dict | None) -> list[float] | None:
    """Per-class offsets under which calibrated probabilities decide as the class-weighted network did (or None).

    ``calibration`` is what ``dlw.calibration.calibrate`` fitted: the temperature and the
    log class weights divided out (``shift``).
    """
    if not calibration or calibration.get("shift") is None:
        return None
    # log p_weighted = T * log p_calibrated + shift + a constant per row, so the argmax is the same.
    return [s / calibration["temperature"] for s in calibration["shift"]]


def validation_decisions(prepared, model, config, calibration: dict | None = None) -> tuple[float | None, list[float] | None, list[str]]:
    """After training, on the validation split: the decision rule (``Problem.threshold``, ``Problem.class_offsets``) and warnings.

    ``config.checks.threshold`` is a number, or auto to choose it on these rows by the main
    metric. When ``calibration`` divided class weights out, its ``decision_offsets`` keep the
    weighted network's own decisions; under ``train.class_weight: auto`` with an imbalanced
    binary target, ``balanced_offsets`` decide as a balanced model would; either unless a
    threshold is set or chosen. The warnings name each class (almost) never predicted.
    """
    problem, y_val, checks = prepared.problem, prepared.targets["validation"], config.checks
    kept = decision_offsets(calibration) or balanced_offsets(problem, prepared.targets["train"], config.train.class_weight)
    from dlw.crossfit import validation_network

    proba_val = prepared.outputs(validation_network(model), prepared.inputs["validation"])  # out of sample when cross-fitted
    threshold, offsets = None, None
    if problem.task == "binary" and checks.threshold == "auto":
        metric = choose_main_metric(problem, prepared.targets["train"], checks.main_metric)[0]
        threshold = choose_threshold(y_val, proba_val, metric)
    elif problem.task == "binary" and checks.threshold != 0.5:
        threshold = float(checks.threshold)
    elif problem.task == "binary" and kept is not None:
        threshold = offsets_as_threshold(kept)
    elif kept is not None:
        offsets = [float(o) for o in kept]
    predicted = predicted_classes(proba_val, threshold if threshold is not None else offsets)
    balanced = balanced_train_rows(problem, prepared.targets["train"], config.train.class_weight)
    return threshold, offsets, unpredicted_class_warnings("validation", y_val, predicted, problem.classes, balanced_train_rows=balanced)

"""Is the network worth it? The network against the best simple baseline, with a paired bootstrap.

The best baseline is picked on the same rows by the same metric. Then the rows
are resampled with replacement ``n_boot`` times, the *same* rows for both
models (a paired bootstrap), and the metric difference network - baseline is
recomputed on each resample. The network is called better only when the whole
95% interval lies on its side of zero; when the interval contains zero the
simpler baseline is preferred.

Every supported metric is a function of per-row sums, so a resample is a
vector of row counts and all resamples are one matrix product (no Python loop
over resamples). Resample ``b`` uses the row indices
``np.random.default_rng(seed).integers(0, n, size=(n_boot, n))[b]``.

>>> import numpy as np
>>> y = np.array([0, 1, 1, 0, 1, 0, 1, 1])
>>> same = np.eye(2)[y] * 0.8 + 0.1
>>> advice = advise("binary", "accuracy", y, same, {"linear": same}, n_boot=200)
>>> advice["verdict"], advice["ci95"]
('no clear difference: prefer the simpler linear', [0.0, 0.0])
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from dlw.classes import predicted_classes
from dlw.objectives import higher_is_better

# The verdict's outcome codes (metrics.json["advice"]["outcome"]), which the report and
# everything else read; the sentence in "verdict" is made from the code, never the other way.
NETWORK_BETTER, NO_CLEAR_DIFFERENCE, BASELINE_BETTER = "network_better", "no_clear_difference", "baseline_better"
OUTCOMES = (NETWORK_BETTER, NO_CLEAR_DIFFERENCE, BASELINE_BETTER)
VERDICTS = {
    NETWORK_BETTER: "the network is better",
    NO_CLEAR_DIFFERENCE: "no clear difference: prefer the simpler {baseline}",
    BASELINE_BETTER: "the baseline is better",
}

CLASSIFICATION_METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "log_loss", "roc_auc")
REGRESSION_METRICS = ("rmse", "mae")
# Metrics bounded in [0, 1]: shown with three decimals; the others in the target's units.
_BOUNDED = {"accuracy", "balanced_accuracy", "macro_f1", "roc_auc"}
_CHUNK_CELLS = 4_000_000  # resamples x rows held in memory at once


def advise(
    task: str,
    metric: str,
    y_true: np.ndarray,
    network_output: np.ndarray,
    baseline_outputs: dict[str, np.ndarray],
    n_boot: int = 2000,
    seed: int = 0,
    thresholds: dict[str, float] | None = None,
    groups: np.ndarray | None = None,
) -> dict:
    """Compare the network with the best baseline on these rows; see the module docstring.

    ``thresholds`` maps "network" or a baseline's name to its decision rule (``Problem.decision``:
    a binary threshold or per-class offsets); the others predict the more probable class.
    ``groups``: each row's group, where the split is by group; the bootstrap then resamples whole groups
    (a cluster bootstrap), since a group's rows are alike and are not so many separate pieces of evidence.
    """
    y_true = np.asarray(y_true)
    n = len(y_true)
    check_comparison(task, metric, n, network_output, baseline_outputs, n_boot)
    outputs = {"network": network_output, **{f"baseline {k}": v for k, v in baseline_outputs.items()}}
    higher = higher_is_better(metric)
    thresholds = thresholds or {}
    n_classes = None
    if task != "regression":
        n_classes = max(np.asarray(o).shape[1] for o in outputs.values())
    network_stats = _row_statistics(metric, y_true, network_output, n_classes, thresholds.get("network"))
    ones = np.ones((1, n))
    network_value = float(_metric_from_counts(metric, ones, network_stats, n_classes)[0])

    candidates = {}
    for name, output in baseline_outputs.items():
        stats = _row_statistics(metric, y_true, output, n_classes, thresholds.get(name))
        candidates[name] = (float(_metric_from_counts(metric, ones, stats, n_classes)[0]), stats)
    # Best baseline; a non-finite value (a diverged model) is never the best.
    ranked = sorted(candidates, key=lambda k: _rank_key(candidates[k][0], higher))
    best = ranked[0]
    baseline_value, baseline_stats = candidates[best]

    codes = None if groups is None else pd.factorize(np.asarray(groups))[0]
    lo, hi = _interval95(_paired_bootstrap(metric, network_stats, baseline_stats, n_classes, n_boot, seed, codes))
    difference = network_value - baseline_value
    outcome = _outcome(lo, hi, higher, network_value)
    advice = {
        "baseline": best,
        "metric": metric,
        "higher_is_better": higher,
        "network": network_value,
        "baseline_value": baseline_value,
        "difference": difference,
        "ci95": [lo, hi],
        "n_bootstrap": int(n_boot),
        "n": int(n),
        **({"n_groups": int(codes.max()) + 1} if codes is not None else {}),
        "outcome": outcome,
        "verdict": VERDICTS[outcome].format(baseline=best),
    }
    advice["explanation"] = _explain(advice)
    return advice


def check_comparison(task: str, metric: str, n: int, network_output, baseline_outputs: dict, n_boot: int) -> None:
    """Refuse a comparison that cannot be made, naming what is wrong."""
    if task not in ("binary", "multiclass", "regression"):
        raise ValueError(f"task must be binary, multiclass or regression, not {task!r}")
    allowed = REGRESSION_METRICS if task == "regression" else CLASSIFICATION_METRICS
    if metric not in allowed or (metric == "roc_auc" and task != "binary"):
        raise ValueError(f"metric {metric!r} is not available for {task}; choose one of {', '.join(allowed)}")
    if not baseline_outputs:
        raise ValueError("no baseline outputs to compare the network with")
    if n_boot < 1:
        raise ValueError("n_boot must be at least 1")
    if n == 0:
        raise ValueError("no rows to compare on")
    for name, output in {"network": network_output, **{f"baseline {k}": v for k, v in baseline_outputs.items()}}.items():
        if len(output) != n:
            raise ValueError(f"{name} output has {len(output)} rows but y_true has {n}")


def say(advice: dict) -> str:
    """Two lines for the terminal: the numbers, then the verdict."""
    f = _formatter(advice)
    lo, hi = advice["ci95"]
    groups = f" ({advice['n_groups']} groups)" if advice.get("n_groups") else ""
    first = (
        f"network vs best baseline ({advice['baseline']}), {advice['metric']} on {advice['n']} rows{groups}: "
        f"{f(advice['network'])} vs {f(advice['baseline_value'])}, difference {f(advice['difference'])} "
        f"(95% interval {f(lo)} to {f(hi)})"
    )
    return f"{first}\nverdict: {advice['verdict']}"


def _row_statistics(metric: str, y_true: np.ndarray, output: np.ndarray, n_classes: int | None, threshold=None) -> np.ndarray:
    """Per-row columns whose weighted sums determine the metric (shape (n, m)); for roc_auc, (truth, score)."""
    output = np.asarray(output, dtype="float64")
    if n_classes is None:  # regression
        error = output.reshape(len(output), -1)[:, 0] - np.asarray(y_true, dtype="float64")
        return (error**2 if metric == "rmse" else np.abs(error))[:, None]
    y = np.asarray(y_true).astype(int)
    if output.ndim != 2:
        raise ValueError("classification outputs must be class probabilities of shape (rows, classes)")
    if output.shape[1] < n_classes:
        output = np.hstack([output, np.zeros((len(output), n_classes - output.shape[1]))])
    finite = np.all(np.isfinite(output), axis=1)
    if metric == "roc_auc":
        return np.stack([y.astype("float64"), np.where(finite, output[:, 1], np.inf)], axis=1)
    predicted = np.where(finite, predicted_classes(np.nan_to_num(output, nan=0.0, posinf=1.0, neginf=0.0), threshold), -1)
    correct = (predicted == y).astype("float64")
    if metric == "accuracy":
        return correct[:, None]
    if metric == "log_loss":
        clipped = np.clip(output, 1e-7, 1.0)
        clipped = clipped / clipped.sum(axis=1, keepdims=True)
        loss = -np.log(clipped[np.arange(len(y)), y])
        return np.where(finite, loss, np.inf)[:, None]
    classes = np.arange(n_classes)
    is_true = (y[:, None] == classes).astype("float64")  # (n, k)
    if metric == "balanced_accuracy":
        return np.hstack([is_true * correct[:, None], is_true])  # hits per class, support per class
    if metric == "macro_f1":
        is_predicted = (predicted[:, None] == classes).astype("float64")
        true_positive = is_true * is_predicted
        return np.hstack([true_positive, is_predicted, is_true])
    raise ValueError(f"unknown metric {metric!r}")


def _metric_from_sums(metric: str, sums: np.ndarray, n: int, n_classes: int | None) -> np.ndarray:
    """The metric for each resample, from its weighted column sums (shape (b, m)); rows weigh n in all."""
    with np.errstate(invalid="ignore", divide="ignore"):
        if metric in ("accuracy", "log_loss", "mae"):
            return sums[:, 0] / n
        if metric == "rmse":
            return np.sqrt(sums[:, 0] / n)
        k = n_classes
        if metric == "balanced_accuracy":
            hits, support = sums[:, :k], sums[:, k:]
            recall = np.where(support > 0, hits / np.where(support > 0, support, 1), np.nan)
            # As scikit-learn: classes absent from y_true are left out of the mean.
            present = support > 0
            return np.where(present.any(axis=1), np.nansum(recall, axis=1) / np.maximum(present.sum(axis=1), 1), np.nan)
        if metric == "macro_f1":
            tp, predicted, actual = sums[:, :k], sums[:, k : 2 * k], sums[:, 2 * k :]
            denominator = predicted + actual  # 2TP + FP + FN
            f1 = np.where(denominator > 0, 2 * tp / np.where(denominator > 0, denominator, 1), 0.0)
            return f1.mean(axis=1)  # over all classes, zero_division=0 (as evaluate.py)
    raise ValueError(f"unknown metric {metric!r}")


def _metric_from_counts(metric: str, counts: np.ndarray, stats: np.ndarray, n_classes: int | None) -> np.ndarray:
    """The metric for each resample given as row counts ``(b, n)``; ROC AUC is not a sum over rows, the others are."""
    n = counts.shape[1]
    if metric == "roc_auc":
        return _weighted_auc(counts, stats[:, 0].astype(int), stats[:, 1])
    with np.errstate(invalid="ignore"):
        sums = counts @ np.where(np.isfinite(stats), stats, 0.0)
        bad = ~np.isfinite(stats)
        if bad.any():  # a row with an infinite statistic makes any resample holding it infinite
            sums = np.where((counts @ bad.astype("float64")) > 0, np.inf, sums)
    return _metric_from_sums(metric, sums, n, n_classes)


def _weighted_auc(counts: np.ndarray, y: np.ndarray, score: np.ndarray) -> np.ndarray:
    """ROC AUC of ``score`` for each row-count vector: the chance a positive outranks a negative, ties counting half."""
    if not np.all(np.isfinite(score)):
        return np.full(len(counts), np.nan)
    order = np.argsort(score, kind="stable")
    ranked, positive = score[order], y[order] == 1
    weights = counts[:, order]
    negatives, positives = weights * ~positive, weights * positive
    starts = np.flatnonzero(np.r_[True, ranked[1:] != ranked[:-1]])  # first row of each group of equal scores
    below = np.cumsum(negatives, axis=1)[:, starts - 1] if len(starts) > 1 else np.zeros((len(counts), 1))
    below[:, 0] = 0.0
    tied_negatives, group_positives = np.add.reduceat(negatives, starts, axis=1), np.add.reduceat(positives, starts, axis=1)
    pairs = positives.sum(axis=1) * negatives.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(pairs > 0, (group_positives * (below + 0.5 * tied_negatives)).sum(axis=1) / np.where(pairs > 0, pairs, 1), np.nan)


def _paired_bootstrap(metric, network_stats, baseline_stats, n_classes, n_boot, seed, codes=None) -> np.ndarray:
    """``n_boot`` resampled differences network - baseline: of rows, or of whole groups where ``codes`` (each row's group code) are given."""
    rng = np.random.default_rng(seed)
    both = np.hstack([network_stats, baseline_stats])
    split = network_stats.shape[1]
    n = len(both)
    units = n if codes is None else int(codes.max()) + 1
    chunk = max(1, _CHUNK_CELLS // n)
    differences = []
    for start in range(0, n_boot, chunk):
        size = min(chunk, n_boot - start)
        drawn = rng.integers(0, units, size=(size, units))
        flat = (drawn + (np.arange(size) * units)[:, None]).ravel()
        counts = np.bincount(flat, minlength=size * units).reshape(size, units).astype("float64")
        if codes is not None:
            counts = counts[:, codes]  # each row counted as often as its group was drawn
        network = _metric_from_counts(metric, counts, both[:, :split], n_classes)
        baseline = _metric_from_counts(metric, counts, both[:, split:], n_classes)
        with np.errstate(invalid="ignore"):
            differences.append(network - baseline)
    return np.concatenate(differences)


def _interval95(differences: np.ndarray) -> tuple[float, float]:
    """The central 95% of the resampled differences; nan where any is not finite (a diverged model)."""
    if not np.all(np.isfinite(differences)):
        return float("nan"), float("nan")
    lo, hi = np.quantile(differences, [0.025, 0.975])
    return float(lo), float(hi)


def _rank_key(value: float, higher: bool) -> tuple:
    if not math.isfinite(value):
        return (1, 0.0)
    return (0, -value if higher else value)


def _outcome(lo: float, hi: float, higher: bool, network_value: float) -> str:
    if not math.isfinite(network_value):
        return BASELINE_BETTER
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return NO_CLEAR_DIFFERENCE
    if (lo > 0) if higher else (hi < 0):
        return NETWORK_BETTER
    if (hi < 0) if higher else (lo > 0):
        return BASELINE_BETTER
    return NO_CLEAR_DIFFERENCE


def _explain(advice: dict) -> str:
    f = _formatter(advice)
    lo, hi = advice["ci95"]
    name, metric, base = advice["baseline"], advice["metric"], advice["baseline"]
    if not math.isfinite(advice["network"]):
        return (
            f"On {advice['n']} held-out rows the network's {metric} is not a finite number "
            f"(its outputs are broken) while {base}'s is {f(advice['baseline_value'])}, so use {base}."
        )
    direction = "higher" if advice["higher_is_better"] else "lower"
    rows = f"{advice['n']} held-out rows" + (f" ({advice['n_groups']} groups, resampled whole)" if advice.get("n_groups") else "")
    numbers = (
        f"On {rows} the network's {metric} is {f(advice['network'])} and {name}'s is "
        f"{f(advice['baseline_value'])}; the difference is {f(advice['difference'])} "
        f"(95% interval {f(lo)} to {f(hi)}, {direction} is better), so "
    )
    if advice["outcome"] == NETWORK_BETTER:
        return numbers + f"the network is better than {base} beyond the noise of resampling these rows."
    if advice["outcome"] == BASELINE_BETTER:
        return numbers + f"{base} is better than the network: use {base}."
    return numbers + f"these rows cannot tell them apart, and the simpler baseline, {base}, is the one to prefer."


def _formatter(advice: dict):
    """Numbers shown with three decimals for bounded metrics, else four significant digits of the larger value."""
    if advice["metric"] in _BOUNDED:
        decimals = 3
    else:
        scale = max((abs(v) for v in (advice["network"], advice["baseline_value"]) if math.isfinite(v) and v != 0), default=1.0)
        decimals = int(min(10, max(0, 3 - math.floor(math.log10(scale)))))

    def f(value: float) -> str:
        if not math.isfinite(value):
            return str(value)
        text = f"{value:.{decimals}f}"
        return "0" + text[2:] if text.startswith("-0") and float(text) == 0 else text  # no "-0.000"

    return f

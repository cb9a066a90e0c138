"""Step 3's check for a group's number whose order follows the outcome.

A file can number its groups in an order that carries the outcome. geepack's ohio numbers its 537
children in the order of how many of their four years each wheezed: read as a number, the child's
number predicts wheezing at AUC 0.984, against 0.689 read as a category (bench/RESULTS.md, stop 48),
and a new child's number, given before its outcome is known, carries none of that. Neither the
trial of ``dlw.groups`` nor the lone-column check sees it: the number is the better reading on every
split of these rows, and alone it predicts only roughly.

What it measures, on the train rows only: the part of the target the other inputs do not explain
(out-of-fold residuals of a boosting model fitted without the column), averaged over each group.
Each group's average is predicted by the mean of its two neighbours' in the column's order, and the
R^2 of that prediction is set against the same for ``PERMUTATIONS`` random orders of the groups.
Where the groups' numbers are labels given at random, a neighbour says nothing (R^2 near -0.5).
The note is given where the R^2 reaches ``ORDER_R2`` and no random order reaches it. A measurement the
file is sorted by in blocks (a model year, a week) has an effect of its own and can be named too: the
note says both readings.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

ORDER_R2 = 0.5
PERMUTATIONS = 200
RESIDUAL_FOLDS = 5
# Half scikit-learn's 100 trees at twice its step: the same reach, and half the fits' Python time (3.3 s -> 1.6 s on
# mlmRev's ScotsSec, 2,061 train rows); the residuals need the other columns' main effects, not their last digit.
RESIDUAL_BOOSTING = {"max_iter": 50, "learning_rate": 0.2}
# Train rows the residuals are computed on, at most: group averages need no more, and the fits stay cheap.
MAX_ROWS = 20_000


def group_order_notes(prepared, *, seed: int) -> list[str]:
    """A note for each group number step 3 noted (``dlw.schema.group_number_note``) whose order follows the outcome."""
    figures = group_order_figures(prepared, seed=seed)
    return [order_note(name, fit, best) for name, (fit, best) in figures.items() if fit >= ORDER_R2 and fit > best]


def group_order_figures(prepared, *, seed: int) -> dict[str, tuple[float, float]]:
    """For each group number step 3 noted: the R^2 of its groups' mean residuals from their neighbours', and the best of ``PERMUTATIONS`` random orders."""
    names = prepared.schema.group_number_names
    if not names:
        return {}
    rng = np.random.default_rng(seed)
    rows = np.arange(prepared.count("train"))
    if len(rows) > MAX_ROWS:
        rows = np.sort(rng.choice(rows, MAX_ROWS, replace=False))
    x, categorical = prepared.tree_features(prepared.take(prepared.inputs["train"], rows))
    y = np.asarray(prepared.targets["train"])[rows]
    keys = prepared.frame.loc[prepared.splits.train, names]
    figures = {}
    for name in names:
        left_out = prepared.schema.numeric_positions_of(name)  # the numeric block comes first in tree_features
        kept = [j for j in range(x.shape[1]) if j not in left_out]
        residuals = residuals_without(x[:, kept], categorical[kept], y, prepared.problem, seed=seed)
        groups = pd.to_numeric(keys[name], errors="coerce").to_numpy(dtype="float64")[rows]
        fit, random_best = order_r2(groups, residuals, rng)
        if fit is not None:
            figures[name] = (fit, random_best)
    return figures


def residuals_without(x: np.ndarray, categorical: np.ndarray, y: np.ndarray, problem, *, seed: int) -> np.ndarray:
    """What ``x`` does not explain of ``y``: out-of-fold residuals, a column per class (one for a number), of boosting (``RESIDUAL_BOOSTING``)."""
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.model_selection import KFold, cross_val_predict

    from dlw.baselines import sklearn_threads

    if problem.is_classification:
        observed = np.eye(len(problem.classes))[y.astype(int)]
    else:
        observed = y.astype("float64").reshape(-1, 1)
    if x.shape[1] == 0:
        return observed - observed.mean(axis=0)
    settings = dict(categorical_features=categorical if categorical.any() else None, random_state=seed, **RESIDUAL_BOOSTING)
    folds = KFold(RESIDUAL_FOLDS, shuffle=True, random_state=seed)
    with sklearn_threads():
        if problem.is_classification:
            model = HistGradientBoostingClassifier(**settings)
            expected = np.zeros_like(observed)
            expected[:, np.unique(y.astype(int))] = cross_val_predict(model, x, y.astype(int), cv=folds, method="predict_proba")
        else:
            expected = cross_val_predict(HistGradientBoostingRegressor(**settings), x, observed[:, 0], cv=folds).reshape(-1, 1)
    return observed - expected


def order_r2(groups: np.ndarray, residuals: np.ndarray, rng) -> tuple[float | None, float]:
    """The R^2 of each group's mean residual from its neighbours' in ``groups``' order, and the best over ``PERMUTATIONS`` random orders."""
    known = np.isfinite(groups)
    means = pd.DataFrame(residuals[known]).groupby(groups[known]).mean().sort_index().to_numpy()
    if len(means) < 4:
        return None, float("inf")
    random_orders = [neighbour_r2(means[rng.permutation(len(means))]) for _ in range(PERMUTATIONS)]
    return neighbour_r2(means), max(random_orders)


def neighbour_r2(means: np.ndarray) -> float:
    """R^2 of each row of ``means`` predicted as the mean of the rows before and after it (the one beside it at either end)."""
    padded = np.vstack([means[1:2], means, means[-2:-1]])  # an end's one neighbour stands on both its sides
    predicted = (padded[:-2] + padded[2:]) / 2
    total = float(((means - means.mean(axis=0)) ** 2).sum())
    return 1.0 - float(((means - predicted) ** 2).sum()) / total if total > 0 else float("-inf")


def order_note(name: str, fit: float, random_best: float) -> str:
    """Step 3's note on ``name``, a group's number whose order follows the outcome."""
    return (
        f"column {name!r}: groups numbered near each other are alike beyond what the other columns say (R^2 {fit:.2f} "
        f"of each group's mean from its two neighbours' in the column's order, on the train rows; at most {random_best:.2f} "
        f"over {PERMUTATIONS} random orders): if it is a measurement (a year, an age), that is its effect; if it labels "
        f"the groups, the file numbered them in an order that follows the outcome, which a new group's number will not "
        f"carry: read it as a category (--set data.types.{name}=categorical) or leave it out (--set data.types.{name}=ignore)"
    )


__all__ = ["ORDER_R2", "PERMUTATIONS", "group_order_figures", "group_order_notes", "neighbour_r2", "order_r2"]

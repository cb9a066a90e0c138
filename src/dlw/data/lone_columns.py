"""Step 3's check for an input that predicts the target almost exactly by itself.

Such a column is often known only after the target (a loan's installment, computed from its
interest rate) or computed from it (a log of the target): a model trained on it looks
excellent and is useless when the column is not there yet. dlw cannot tell which, so it
says what it measured and how to leave the column out.

The measure is deliberately simple: a lookup fitted on the train rows, scored on the
validation rows; it never looks at the test rows. For a category: the target's mean, or its
most frequent class, for each level. For a number: the same for each of up to 64 quantile
bins, and for a numeric target the line through the bins' centres, so that a smooth function
of the number (a wage from its logarithm) counts as exact.

A coarse cut of a numeric target (a birth weight's "low" below 5.5 lb) predicts it only
roughly, yet gives it away: such a column is read the other way round. A tree of thresholds on
the target, fitted on the train rows, predicts the column's level; where it does so on the
validation rows with a balanced accuracy of at least ``TARGET_CUT_SCORE``, the column's levels
are intervals of the target. A column known before the target rarely is: weight and sex, or a
price and its district, overlap.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import recall_score
from sklearn.tree import DecisionTreeClassifier

# R^2 or accuracy of the lookup on the validation rows at which the column is named.
LONE_COLUMN_SCORE = 0.99
# A classification target whose most frequent class is this common is predicted "almost exactly" by anything.
MAJORITY_TOO_COMMON = 0.95
NUMBER_BINS = 64
# Rows looked at, at most, per split: enough to see a near-exact relation, cheap on a 300,000-row table.
MAX_ROWS = 50_000
MIN_VALIDATION_ROWS = 20
# Balanced accuracy of the target's thresholds at which a column is named as a cut of the target.
TARGET_CUT_SCORE = 0.99
# A column with more levels than this is no coarse cut: its own lookup would already be near exact.
TARGET_CUT_MAX_LEVELS = 32
# Validation rows a level needs to be scored: a level seen once is given back exactly by chance.
TARGET_CUT_MIN_ROWS = 5


def lone_column_notes(frame: pd.DataFrame, splits, schema, problem, target: str, *, seed: int) -> list[str]:
    """A note for each numeric, categorical or boolean input whose lookup alone scores at least ``LONE_COLUMN_SCORE``."""
    rng = np.random.default_rng(seed)
    train, val = (frame.loc[sampled(getattr(splits, s), rng)] for s in ("train", "validation"))
    if len(val) < MIN_VALIDATION_ROWS:
        return []
    score_name = "accuracy" if problem.is_classification else "R^2"
    notes = []
    for feature in schema.features:
        if feature.kind not in ("numeric", "categorical", "boolean"):
            continue
        column = (train[feature.name], val[feature.name])
        if problem.is_classification:
            score = class_lookup_accuracy(*column, train[target], val[target], numeric=feature.kind == "numeric")
        else:
            score = value_lookup_r2(*column, train[target], val[target], numeric=feature.kind == "numeric")
        leave_out = f"leave it out (--set data.types.{feature.name}=ignore)"
        if score is not None and score >= LONE_COLUMN_SCORE:
            notes.append(
                f"column {feature.name!r} alone predicts {target!r} almost exactly ({score_name} {score:.3f} on the validation rows): "
                f"if it is known only after the target, or computed from it, {leave_out}"
            )
        elif not problem.is_classification and (cut := target_cut_score(*column, train[target], val[target]) or 0.0) >= TARGET_CUT_SCORE:
            notes.append(
                f"column {feature.name!r} looks cut from {target!r}: its levels are intervals of the target "
                f"(thresholds on {target!r} give them back with balanced accuracy {cut:.3f} on the validation rows): "
                f"if it is computed from the target, {leave_out}"
            )
    return notes


def sampled(rows, rng) -> np.ndarray:
    """``rows``, or ``MAX_ROWS`` of them drawn without replacement."""
    rows = np.asarray(rows)
    return rows if len(rows) <= MAX_ROWS else rng.choice(rows, MAX_ROWS, replace=False)


def numbers(column: pd.Series) -> np.ndarray:
    """The column as float64; what does not read as a number is nan."""
    return pd.to_numeric(column, errors="coerce").to_numpy(dtype="float64")


def lookup_keys(train: pd.Series, val: pd.Series, *, numeric: bool) -> tuple[np.ndarray, np.ndarray]:
    """Group keys for the two splits: quantile bins of the train split for a number (-1: missing), the value as text otherwise."""
    if not numeric:
        return train.astype(str).to_numpy(), val.astype(str).to_numpy()
    x_train, x_val = numbers(train), numbers(val)
    known = x_train[np.isfinite(x_train)]
    if known.size == 0:
        return np.full(len(x_train), -1), np.full(len(x_val), -1)
    edges = np.unique(np.quantile(known, np.linspace(0, 1, NUMBER_BINS + 1))[1:-1])
    return tuple(np.where(np.isfinite(x), np.searchsorted(edges, x, side="right"), -1) for x in (x_train, x_val))


def class_lookup_accuracy(x_train, x_val, y_train, y_val, *, numeric: bool) -> float | None:
    """Validation accuracy of the most frequent train class per level or bin; None when the majority class alone is near exact."""
    keys_train, keys_val = lookup_keys(x_train, x_val, numeric=numeric)
    y_train, y_val = y_train.astype(str).to_numpy(), y_val.astype(str).to_numpy()
    overall = pd.Series(y_train).mode().iloc[0]
    if (y_val == overall).mean() >= MAJORITY_TOO_COMMON:
        return None
    table = pd.crosstab(keys_train, y_train).idxmax(axis=1)
    predicted = pd.Series(keys_val).map(table).fillna(overall).to_numpy()
    return float((predicted == y_val).mean())


def value_lookup_r2(x_train, x_val, y_train, y_val, *, numeric: bool) -> float | None:
    """Validation R^2 of the train mean per level, or of the line through the bins' centres for a number; None for a constant target."""
    y_train, y_val = numbers(y_train), numbers(y_val)
    total = float(((y_val - y_val.mean()) ** 2).sum())
    if total <= 0:
        return None
    keys_train, keys_val = lookup_keys(x_train, x_val, numeric=numeric)
    means = pd.Series(y_train).groupby(keys_train).mean()
    predicted = pd.Series(keys_val).map(means).fillna(float(np.mean(y_train))).to_numpy(dtype="float64")
    if numeric:
        x_train_num, x_val_num = numbers(x_train), numbers(x_val)
        centres = pd.Series(x_train_num).groupby(keys_train).mean().drop(index=-1, errors="ignore")
        if len(centres) > 1:
            line = np.interp(x_val_num, centres.to_numpy(), means.loc[centres.index].to_numpy())
            predicted = np.where(np.isfinite(x_val_num), line, predicted)
    return 1.0 - float(((y_val - predicted) ** 2).sum()) / total


def target_cut_score(x_train, x_val, y_train, y_val) -> float | None:
    """Validation balanced accuracy of thresholds on a numeric target predicting the column's level; None for no coarse column."""
    if not 2 <= x_train.nunique(dropna=False) <= TARGET_CUT_MAX_LEVELS:
        return None
    codes, _ = pd.factorize(pd.concat([x_train, x_val], ignore_index=True), use_na_sentinel=False)
    levels_train, levels_val = codes[: len(x_train)], codes[len(x_train) :]
    y_train, y_val = numbers(y_train), numbers(y_val)
    # One threshold between each two neighbouring levels: a tree with as many leaves as levels.
    levels = np.unique(levels_train)
    tree = DecisionTreeClassifier(max_leaf_nodes=len(levels), random_state=0).fit(y_train.reshape(-1, 1), levels_train)
    scored, counts = np.unique(levels_val[np.isin(levels_val, levels)], return_counts=True)
    scored = scored[counts >= TARGET_CUT_MIN_ROWS]
    if len(scored) < 2:
        return None
    rows = np.isin(levels_val, scored)
    predicted = tree.predict(y_val[rows].reshape(-1, 1))
    return float(recall_score(levels_val[rows], predicted, labels=scored, average="macro"))

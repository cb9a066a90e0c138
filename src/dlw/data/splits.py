"""Seeded train/validation/test splits, saved as row indices in ``splits.json``.

Indices are positions in the table as loaded (0 = first data row), so a user
can look the rows up. The test rows are used by evaluation only.

>>> import numpy as np
>>> s = make_splits(np.arange(100), None, validation=0.2, test=0.2, seed=0)
>>> len(s.train), len(s.validation), len(s.test)
(60, 20, 20)
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from dlw.errors import DataError
from dlw.runs import json_text, write_atomic


@dataclass
class Splits:
    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray
    method: str = "random"
    seed: int | None = None
    folds: list[np.ndarray] | None = None  # cross-fitting: the train and validation rows in folds, the first = validation

    @property
    def fold_count(self) -> int:
        """How many networks train on these splits: one per fold, or one."""
        return len(self.folds) if self.folds else 1

    def fold(self, k: int) -> "Splits":
        """One network's splits when cross-fitting: fold ``k`` validates, the other folds train, the test rows are these."""
        validation = self.folds[k]
        rest = np.concatenate(self.folds)
        train = np.sort(rest[~np.isin(rest, validation)])
        return Splits(train, validation, self.test, f"{self.method}, fold {k + 1} of {len(self.folds)}", self.seed)

    def single(self) -> "Splits":
        """These splits for one network: fold 1's when cross-fitting."""
        return dataclasses.replace(self, folds=None)

    def to_dict(self) -> dict:
        return {
            "method": self.method,
            "seed": self.seed,
            "sizes": {name: int(len(getattr(self, name))) for name in ("train", "validation", "test")},
            **{name: [int(i) for i in getattr(self, name)] for name in ("train", "validation", "test")},
            **({"folds": [[int(i) for i in fold] for fold in self.folds]} if self.folds else {}),
        }

    def save(self, path: Path) -> None:
        write_atomic(Path(path), json_text(self.to_dict(), indent=None))

    @classmethod
    def load(cls, path: Path) -> "Splits":
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        folds = [np.array(fold, dtype=np.int64) for fold in data["folds"]] if data.get("folds") else None
        return cls(*(np.array(data[k], dtype=np.int64) for k in ("train", "validation", "test")), data.get("method", "random"), data.get("seed"), folds)


def held_out_count(n: int, share: float) -> int:
    """How many of ``n`` rows a split's test or validation ``share`` holds out (at least one)."""
    return max(1, int(round(n * share)))


def make_splits(
    rows: np.ndarray,
    labels: np.ndarray | None,
    validation: float,
    test: float,
    seed: int,
    origin: str = "data",
    class_names: list | None = None,
    folds: int = 1,
) -> Splits:
    """Random split of ``rows``; stratified on ``labels`` (class indices into ``class_names``) when given.

    With ``folds`` > 1 the rows that are not test rows are cut into that many folds for
    cross-fitting (``dlw.crossfit``): the first is the validation split, the others train.
    The test rows are the same either way.
    """
    from sklearn.model_selection import train_test_split

    if validation + test >= 0.9:
        raise DataError(f"{origin}: data.split.validation + data.split.test = {validation + test:.2f}; leave at least 10% for training")
    n = len(rows)
    if labels is not None:
        counts = pd.Series(labels).value_counts()
        rare = counts[counts < 3]
        if len(rare):
            label = class_names[int(rare.index[0])] if class_names is not None else rare.index[0].item()
            raise DataError(
                f"{origin}: class {label!r} has only {int(rare.iloc[0])} row(s); a stratified split needs at least 3 per class "
                "(remove the rare class, or set data.split.stratify: false)"
            )
    n_test, n_val = held_out_count(n, test), held_out_count(n, validation)
    if n - n_test - n_val < 2:
        raise DataError(f"{origin}: only {n} usable rows; too few to split into train, validation and test")
    positions = np.arange(n)
    try:
        rest, test_pos = train_test_split(positions, test_size=n_test, random_state=seed, stratify=labels)
        rest_labels = None if labels is None else labels[rest]
        train_pos, val_pos = train_test_split(rest, test_size=n_val, random_state=seed, stratify=rest_labels)
    except ValueError as exc:
        raise DataError(f"{origin}: cannot split the rows ({exc}); set data.split.stratify: false or use more data") from None
    train_rows, val_rows, test_rows = rows[train_pos], rows[val_pos], rows[test_pos]
    method = "stratified random" if labels is not None else "random"
    splits = Splits(np.sort(train_rows), np.sort(val_rows), np.sort(test_rows), method, seed)
    if folds <= 1:
        return splits
    from dlw.crossfit import fold_rows

    cut = fold_rows(rows[rest], None if labels is None else labels[rest], folds, seed)
    return dataclasses.replace(splits, train=np.sort(np.concatenate(cut[1:])), validation=cut[0], folds=cut)


def make_group_splits(
    rows: np.ndarray, groups: pd.Series, validation: float, test: float, seed: int, column: str, origin: str = "data", folds: int = 1
) -> Splits:
    """Seeded split of whole groups (``column``'s values: a patient, a school): every row of a group in one split, so
    the test rows are groups the model never saw. The shares are of groups (scikit-learn's ``GroupShuffleSplit``);
    with ``folds`` > 1 the non-test groups are cut into folds of whole groups for cross-fitting.
    """
    from sklearn.model_selection import GroupShuffleSplit

    if groups.isna().any():
        raise DataError(
            f"{origin}: column {column!r} (data.split.order) is empty on row {int(rows[np.flatnonzero(groups.isna().to_numpy())[0]])}; "
            "a split by group needs every row's group: fill it in or drop the row"
        )
    if validation + test >= 0.9:
        raise DataError(f"{origin}: data.split.validation + data.split.test = {validation + test:.2f}; leave at least 10% for training")
    codes = pd.factorize(groups)[0]
    n_groups = int(codes.max()) + 1
    n_test, n_val = held_out_count(n_groups, test), held_out_count(n_groups, validation)
    needed = n_test + max(n_val + 2, folds)
    if n_groups < needed:
        raise DataError(
            f"{origin}: column {column!r} (data.split.order) has {n_groups} groups; a split by group with these shares needs at least "
            f"{needed}: use a column with more groups, or data.split.order: random"
        )
    positions = np.arange(len(rows))
    rest, test_pos = next(GroupShuffleSplit(1, test_size=n_test, random_state=seed).split(positions, groups=codes))
    kept, val_at = next(GroupShuffleSplit(1, test_size=n_val, random_state=seed).split(rest, groups=codes[rest]))
    splits = Splits(np.sort(rows[rest[kept]]), np.sort(rows[rest[val_at]]), np.sort(rows[test_pos]), f"by group ({column})", seed)
    if folds <= 1:
        return splits
    from dlw.crossfit import fold_rows

    cut = fold_rows(rows[rest], None, folds, seed, groups=codes[rest])
    return dataclasses.replace(splits, train=np.sort(np.concatenate(cut[1:])), validation=cut[0], folds=cut)


def make_time_splits(rows: np.ndarray, times: pd.Series, validation: float, test: float, column: str, origin: str = "data") -> Splits:
    """Chronological split: the latest rows are the test set, those before them validation."""
    parsed = _as_time(times)
    if parsed.isna().any():
        bad = times[parsed.isna()].iloc[0]
        raise DataError(f"{origin}: column {column!r} (data.split.order) has a value that is not a date or number: {bad!r}")
    order = rows[np.argsort(parsed.to_numpy(), kind="stable")]
    n = len(order)
    n_test, n_val = held_out_count(n, test), held_out_count(n, validation)
    if n - n_test - n_val < 2:
        raise DataError(f"{origin}: only {n} usable rows; too few to split into train, validation and test")
    train, val, tst = order[: n - n_test - n_val], order[n - n_test - n_val : n - n_test], order[n - n_test :]
    return Splits(np.sort(train), np.sort(val), np.sort(tst), f"chronological by {column}", None)


def _as_time(values: pd.Series) -> pd.Series:
    if pd.api.types.is_numeric_dtype(values) or pd.api.types.is_datetime64_any_dtype(values):
        return values
    numeric = pd.to_numeric(values, errors="coerce")
    if numeric.notna().all():
        return numeric
    from dlw.dates import is_dayfirst, parse_dates

    # In UTC, as the date features read them: offsets may differ from row to row.
    return parse_dates(values, dayfirst=is_dayfirst(values))

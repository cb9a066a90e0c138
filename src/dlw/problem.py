"""Step 1, formulating the problem: which column is predicted, and what kind of task.

>>> import pandas as pd
>>> frame = pd.DataFrame({"x": range(8), "y": list("abab" * 2)})
>>> formulate(frame, "y", "auto").task
'binary'
"""

from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from dlw.errors import DataError

# An integer target with at most this many distinct values is read as classes.
MAX_INTEGER_CLASSES = 20


@dataclass
class Problem:
    task: str  # "binary" | "multiclass" | "regression"
    target: str
    classes: list | None = None
    reason: str = ""
    notes: list[str] = field(default_factory=list)
    # How classes are decided from the probabilities, after training (dlw.classes.validation_decisions); recorded in
    # schema.json and used by every prediction. Binary: the second class when its probability exceeds ``threshold``.
    # Multiclass: the largest log-probability plus ``class_offsets`` (a class-weighted network's decisions, kept after
    # its probabilities were calibrated). None: the most probable class.
    threshold: float | None = None
    class_offsets: list[float] | None = None

    @property
    def decision(self) -> float | list[float] | None:
        """The decision rule ``dlw.classes.predicted_classes`` takes: the threshold, the class offsets, or None."""
        return self.threshold if self.threshold is not None else self.class_offsets

    @property
    def is_classification(self) -> bool:
        return self.task != "regression"

    @property
    def question(self) -> str:
        if self.task == "regression":
            return f"Predict the number {self.target!r} from the other columns (regression)."
        shown = ", ".join(map(str, self.classes[:6])) + (", ..." if len(self.classes) > 6 else "")
        return f"Predict {self.target!r}: which of {len(self.classes)} classes ({shown}) a row belongs to ({self.task})."

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Problem":
        return cls(**data)


def check_target_column(frame: pd.DataFrame, target: str, origin: str) -> None:
    if target in frame.columns:
        return
    close = difflib.get_close_matches(target, [str(c) for c in frame.columns], n=1)
    hint = f"did you mean {close[0]!r}?" if close else "columns are: " + ", ".join(map(str, frame.columns[:20]))
    raise DataError(f"{origin}: target column {target!r} not found; {hint}")


def drop_missing_target(frame: pd.DataFrame, target: str, origin: str) -> tuple[pd.DataFrame, int]:
    """Rows whose target is present, and how many were dropped."""
    present = frame[target].notna()
    if not present.any():
        raise DataError(f"{origin}: target column {target!r} has no values (all missing); choose another --target")
    return frame[present], int((~present).sum())


def check_finite_target(numeric: np.ndarray, target: str, origin: str) -> None:
    """Refuse a numeric target with infinite values or values beyond float32 (the network's float type)."""
    values = np.asarray(numeric, dtype="float64")
    bad = ~np.isfinite(values) | (np.abs(np.nan_to_num(values)) > np.finfo("float32").max)
    if bad.any():
        raise DataError(
            f"{origin}: target column {target!r} has {int(bad.sum())} value(s) that are infinite or beyond float32's range "
            f"(e.g. {float(values[bad][0])!r}); remove or fix those rows"
        )


def formulate(frame: pd.DataFrame, target: str, task: str = "auto", origin: str = "data") -> Problem:
    """Decide the task from the target column (``task='auto'``) or check the one asked for."""
    values = frame[target].dropna()
    if values.nunique() < 2:
        only = values.iloc[0].item() if len(values) and hasattr(values.iloc[0], "item") else (values.iloc[0] if len(values) else None)
        raise DataError(f"{origin}: target column {target!r} is constant (every row is {only!r}); there is nothing to predict")
    numeric = _as_numeric(values)
    if task == "regression":
        if numeric is None:
            raise DataError(f"{origin}: task is regression but target {target!r} is not numeric (e.g. {values.iloc[0]!r}); use task: auto")
        check_finite_target(numeric, target, origin)
        return Problem("regression", target, None, "set in the config")
    if task == "auto" and numeric is not None:
        check_finite_target(numeric, target, origin)
        integer = bool(np.all(np.mod(numeric, 1) == 0))
        n_unique = int(pd.Series(numeric).nunique())
        if not (integer and n_unique <= MAX_INTEGER_CLASSES):
            kind = "integer" if integer else "real"
            return Problem("regression", target, None, f"{n_unique} distinct {kind} values")
    classes = _classes(values, numeric)
    if task == "binary" and len(classes) != 2:
        raise DataError(f"{origin}: task is binary but target {target!r} has {len(classes)} classes; use task: multiclass")
    kind = "binary" if len(classes) == 2 else "multiclass"
    if task == "multiclass":
        kind = "multiclass" if len(classes) > 2 else "binary"
    reason = f"{len(classes)} classes" + (
        f" (integer codes; set task: regression if {target!r} is an amount)" if numeric is not None else ""
    )
    return Problem(kind, target, classes, reason if task == "auto" else "set in the config")


def _as_numeric(values: pd.Series) -> np.ndarray | None:
    if pd.api.types.is_bool_dtype(values):
        return None
    if pd.api.types.is_numeric_dtype(values):
        return values.to_numpy(dtype=float)
    converted = pd.to_numeric(values, errors="coerce")
    return converted.to_numpy(dtype=float) if converted.notna().all() else None


def _classes(values: pd.Series, numeric: np.ndarray | None) -> list:
    if numeric is not None:
        uniques = np.unique(numeric)
        return [int(v) if float(v).is_integer() else float(v) for v in uniques]
    return sorted({label_key(v) for v in values})


def encode_target(series: pd.Series, problem: Problem, origin: str = "data") -> np.ndarray:
    """Class indices (int32) for classification, floats for regression; unknown labels are an error."""
    if not problem.is_classification:
        return pd.to_numeric(series, errors="coerce").to_numpy(dtype="float32")
    index = {str(c): i for i, c in enumerate(problem.classes)}
    labels = [label_key(v) for v in series]
    unknown = sorted({lab for lab in labels if lab not in index})
    if unknown:
        raise DataError(
            f"{origin}: target {problem.target!r} has labels the model never saw: {', '.join(unknown[:5])}; "
            f"known classes: {', '.join(index)}"
        )
    return np.array([index[lab] for lab in labels], dtype="int32")


def label_key(value) -> str:
    """The string under which a class label is looked up (``3.0`` and ``'3'`` are the same class)."""
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    return str(value).strip() if isinstance(value, str) else str(value)

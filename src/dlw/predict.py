"""Step 9, predicting: raw rows in, a prediction (and class probabilities) out.

The rows need the training's input columns; the target column, if present, is
ignored; extra columns are kept in the output beside the predictions.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from dlw.problem import Problem
from dlw.schema import Schema


def model_output(model, inputs: dict[str, np.ndarray], problem: Problem, target_scaling: dict | None) -> np.ndarray:
    """Class probabilities ``(n, k)`` for classification, predictions in target units for regression."""
    if isinstance(inputs, dict):  # a table's named inputs
        names = {t.name for t in model.inputs}
        raw = np.asarray(model.predict({k: v for k, v in inputs.items() if k in names}, batch_size=4096, verbose=0))
    elif isinstance(inputs, np.ndarray):  # decoded images
        raw = np.asarray(model.predict(inputs, batch_size=256, verbose=0))
    else:  # a keras.utils.PyDataset streaming images
        raw = np.asarray(model.predict(inputs, verbose=0))
    if problem.task == "binary":
        p = raw.reshape(-1)
        return np.stack([1.0 - p, p], axis=1)
    if problem.task == "multiclass":
        return raw
    scaling = target_scaling or {"mean": 0.0, "std": 1.0}
    return raw.reshape(-1) * scaling["std"] + scaling["mean"]


def prediction_frame(output: np.ndarray, problem: Problem, index=None) -> pd.DataFrame:
    """Columns ``prediction`` and, for classification, ``prob_<class>`` per class."""
    if not problem.is_classification:
        return pd.DataFrame({"prediction": output}, index=index)
    classes = problem.classes
    frame = pd.DataFrame({"prediction": [classes[i] for i in output.argmax(axis=1)]}, index=index)
    for i, name in enumerate(classes):
        frame[f"prob_{name}"] = output[:, i]
    return frame


def predict_rows(model, schema: Schema, problem: Problem, target_scaling: dict | None, rows: pd.DataFrame, origin: str = "data"):
    """Predictions for ``rows`` (original columns kept first), the warnings met on the way, and the encoded inputs."""
    inputs, warnings = schema.encode(rows, origin=origin)
    output = model_output(model, inputs, problem, target_scaling)
    predictions = prediction_frame(output, problem, index=rows.index)
    kept = rows.drop(columns=[c for c in [*predictions.columns, "ood", "ood_score"] if c in rows.columns])
    return pd.concat([kept, predictions], axis=1), warnings, inputs

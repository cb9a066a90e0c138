"""Step 9, predicting: the network's outputs as a table of predictions and class probabilities.

New inputs are read and encoded by the run's ``Prepared`` (``encode_new``): a table's rows
need the training's input columns (the target, if present, is ignored; extra columns are
kept beside the predictions), an image run reads folders, CSVs of paths or files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from dlw.classes import predicted_classes
from dlw.problem import Problem
from dlw.runs import write_atomic


def prediction_frame(output: np.ndarray, problem: Problem, index=None) -> pd.DataFrame:
    """Columns ``prediction`` and, for classification, ``prob_<class>`` per class (decided by the problem's decision rule)."""
    if not problem.is_classification:
        return pd.DataFrame({"prediction": output}, index=index)
    classes = problem.classes
    frame = pd.DataFrame({"prediction": [classes[i] for i in predicted_classes(output, problem.decision)]}, index=index)
    for i, name in enumerate(classes):
        frame[f"prob_{name}"] = output[:, i]
    return frame


def write_test_predictions(folder: Path, prepared, outputs: dict) -> None:
    """``test_predictions.csv``: each test row (or image path), its target, the prediction and the ood flag."""
    rows = prepared.frame.loc[prepared.splits.test]
    predicted = prediction_frame(outputs["test"], prepared.problem, index=rows.index)
    frame = pd.concat([rows, predicted], axis=1)
    flags, scores = outputs["test_ood"]
    frame["ood"], frame["ood_score"] = flags, np.round(scores, 4)
    write_atomic(folder / "test_predictions.csv", frame.to_csv(index=False))

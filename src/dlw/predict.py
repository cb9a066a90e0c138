"""Step 9, predicting: the network's outputs as a table of predictions and class probabilities.

New inputs are read and encoded by the run's ``Prepared`` (``encode_new``): a table's rows
need the training's input columns (the target, if present, is ignored; extra columns are
kept beside the predictions), an image run reads folders, CSVs of paths or files.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from dlw.classes import predicted_classes
from dlw.problem import Problem


def prediction_frame(output: np.ndarray, problem: Problem, index=None) -> pd.DataFrame:
    """Columns ``prediction`` and, for classification, ``prob_<class>`` per class (decided by the problem's decision rule)."""
    if not problem.is_classification:
        return pd.DataFrame({"prediction": output}, index=index)
    classes = problem.classes
    frame = pd.DataFrame({"prediction": [classes[i] for i in predicted_classes(output, problem.decision)]}, index=index)
    for i, name in enumerate(classes):
        frame[f"prob_{name}"] = output[:, i]
    return frame

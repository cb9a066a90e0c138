"""AutoGluon medium_quality on dlw's own train and validation rows, scored on dlw's own test rows.

Run by bench/tables.py in the Python that has ``autogluon.tabular`` (often its own venv:
AutoGluon pins versions dlw does not share), so that the two are compared on the very same
rows. Prints one JSON object: the main metric, ROC AUC for a binary target, and seconds.

    python bench/autogluon_figure.py TABLE.csv TARGET RUN_FOLDER METRIC [FOLDS]

With FOLDS (bench/crossfit.py's comparison), AutoGluon bags instead: medium_quality with
``num_bag_folds=FOLDS`` and no stacking, fitted on the train and validation rows together.
With FOLDS ``whole``, medium_quality is given the train and validation rows together and holds
out its own tuning rows, as a user who hands AutoGluon every non-test row does.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time

import numpy as np
import pandas as pd


def main(path: str, target: str, run: str, metric: str, folds: str = "0") -> dict:
    from autogluon.tabular import TabularPredictor

    frame = pd.read_csv(path, low_memory=False)
    with open(f"{run}/splits.json") as fh:
        splits = json.load(fh)
    train, val, test = (frame.loc[splits[k]] for k in ("train", "validation", "test"))
    problem = "regression" if metric == "rmse" else None
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        predictor = TabularPredictor(label=target, path=tmp, verbosity=0, problem_type=problem)
        if folds == "whole":
            predictor.fit(pd.concat([train, val]), presets="medium_quality", time_limit=600)
        elif int(folds):
            predictor.fit(pd.concat([train, val]), presets="medium_quality", num_bag_folds=int(folds), num_stack_levels=0, time_limit=600)
        else:
            predictor.fit(train, tuning_data=val, presets="medium_quality", time_limit=600)
        seconds = time.perf_counter() - started
        truth = test[target]
        if metric == "rmse":
            value = float(np.sqrt(np.mean((predictor.predict(test).to_numpy(dtype=float) - truth.to_numpy(dtype=float)) ** 2)))
            return {"autogluon": value, "autogluon_auc": None, "autogluon_s": round(seconds, 1)}
        predicted = predictor.predict(test)
        value = float((predicted.astype(str).to_numpy() == truth.astype(str).to_numpy()).mean())
        auc = None
        proba = predictor.predict_proba(test)
        if proba.shape[1] == 2:
            from sklearn.metrics import roc_auc_score

            positive = proba.columns[1]
            auc = float(roc_auc_score((truth.astype(str) == str(positive)).astype(int), proba[positive]))
        if metric == "balanced_accuracy":
            from sklearn.metrics import balanced_accuracy_score

            value = float(balanced_accuracy_score(truth.astype(str), predicted.astype(str)))
        if metric == "roc_auc":
            value = auc
        return {"autogluon": value, "autogluon_auc": auc, "autogluon_s": round(seconds, 1)}


if __name__ == "__main__":
    print(json.dumps(main(*sys.argv[1:6])))

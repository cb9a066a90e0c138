"""How often the unfamiliar-input check flags familiar rows (a table's own test rows), and how often rows it has not seen.

The test rows of a random split are drawn like the training rows, so the check, calibrated to flag
``checks.ood_rate`` (5%) of familiar rows, should flag about 5% of them. Each run is trained once with
the defaults (kept in ``--runs``), then the calibrations below are fitted on the run's own network(s)
and scored on its test rows:

- ``validation``: the detector on the first fold's network, its threshold the 95% quantile of the
  validation scores (dlw's calibration up to stop 45);
- ``conformal``: the same detector and scores, its threshold the ceil((n + 1) * 0.95)-th smallest
  validation score (split conformal: at most 5% of familiar rows flagged, in expectation);
- ``shipped``: what ``dlw.ood.fit_detector`` fits: the conformal rank on the validation split for one
  network; cross-fitted, the conformal rank of every fold's held-out scores pooled (one detector per
  fold's network, fitted on its train rows, each fold's scores in units of that fold's median), so
  every non-test row calibrates. bench/RESULTS.md (stop 46) calls this one ``pooled`` where it was
  measured before dlw shipped it, with the same figures;
- ``cross``: cross-conformal (Vovk, 2015): one detector per fold's network, each fitted on that network's
  train rows and scored on its held-out fold, so every non-test row is a calibration row; a new row's
  p-value counts, over all folds, the held-out rows scoring at least what it scores under that fold's
  detector; flagged at a p-value of 5% or less.

Unfamiliar rows: each test row with one numeric input column moved past the train range, to the train
maximum plus one train standard deviation (a value never seen, one column at a time, chosen at random).

    python bench/ood_rates.py --tables datasets/attenu:accel MASS/Boston:medv --seeds 42 0 --runs /tmp/oodruns
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

os.environ.setdefault("KERAS_BACKEND", "jax")
sys.path.insert(0, str(Path(__file__).parent))

from tables import append_json_line, file_stem, run_dlw, table_csv  # noqa: E402

RATE = 0.05


def shifted_rows(prepared, frame, seed: int):
    """The test rows, each with one numeric input column set past the train range (train max + one train sd)."""
    numeric = [f.name for f in prepared.schema.features if f.kind == "numeric" and not f.group_number]
    import pandas as pd

    rng = np.random.default_rng(seed)
    rows = frame.iloc[prepared.splits.test].copy()
    train = frame.iloc[prepared.splits.train][numeric].apply(pd.to_numeric, errors="coerce")
    numeric = [c for c in numeric if train[c].notna().sum() > 1]
    if not numeric:
        return None
    for i, column in zip(range(len(rows)), rng.choice(numeric, size=len(rows))):
        rows[column] = rows[column].astype(object)
        rows.iloc[i, rows.columns.get_loc(column)] = train[column].max() + train[column].std()
    return rows


def rates_for(run_path: Path) -> dict:
    from dlw.console import QUIET
    from dlw.data.kinds import prepare
    from dlw.ood import OODDetector, conformal_threshold, feature_blocks, fit_detector, fold_penultimate_models, penultimate_model
    from dlw.workflow import load

    run = load(run_path)
    prepared = prepare(run.config, QUIET, schema=run.schema)
    prepared.problem, prepared.target_scaling = run.problem, run.target_scaling
    model = run.model
    classify = prepared.problem.is_classification
    shifted = shifted_rows(prepared, prepared.frame, 0)
    unfamiliar = prepared.encode_labelled(shifted, QUIET)[0] if shifted is not None else None
    views = list(prepared.fold_views())
    result = {"n_validation": len(prepared.splits.validation), "n_test": len(prepared.splits.test), "folds": len(views)}
    shipped, _ = fit_detector(model, prepared, RATE)
    result["shipped_test"] = float(shipped.flag(feature_blocks(penultimate_model(model), prepared, prepared.inputs["test"])).mean())
    if unfamiliar is not None:
        result["shipped_shifted"] = float(shipped.flag(feature_blocks(penultimate_model(model), prepared, unfamiliar)).mean())
    calibration, test_scores, shifted_scores = [], [], []
    for features, view in zip(fold_penultimate_models(model) or [penultimate_model(model)], views):
        train = feature_blocks(features, view, view.inputs["train"])
        val = feature_blocks(features, view, view.inputs["validation"])
        labels = view.targets["train"] if classify else None
        detector = OODDetector().fit(train, labels, val, rate=RATE, shared_units=view.shared_detector_blocks)
        calibration.append(detector.score(val))
        test_scores.append(detector.score(feature_blocks(features, view, view.inputs["test"])))
        if unfamiliar is not None:
            shifted_scores.append(detector.score(feature_blocks(features, view, unfamiliar)))
        if len(calibration) == 1:
            thresholds = {"validation": float(np.quantile(calibration[0], 1 - RATE)), "conformal": conformal_threshold(calibration[0], RATE)}
            for name, threshold in thresholds.items():
                result[f"{name}_test"] = float((test_scores[0] > threshold).mean())
                if unfamiliar is not None:
                    result[f"{name}_shifted"] = float((shifted_scores[0] > threshold).mean())
    if len(views) > 1:
        result["cross_test"] = float((cross_p(calibration, test_scores) <= RATE).mean())
        if unfamiliar is not None:
            result["cross_shifted"] = float((cross_p(calibration, shifted_scores) <= RATE).mean())
    return result


def cross_p(calibration: list[np.ndarray], scores: list[np.ndarray]) -> np.ndarray:
    """Cross-conformal p-values of new rows: (1 + held-out rows scoring at least as high, fold by fold) / (n + 1)."""
    n = sum(len(c) for c in calibration)
    at_least = sum((c[None, :] >= s[:, None]).sum(axis=1) for c, s in zip(calibration, scores))
    return (1 + at_least) / (n + 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", nargs="+", metavar="TABLE", required=True)
    parser.add_argument("--seeds", nargs="*", type=int, default=[42])
    parser.add_argument("--runs", type=Path, required=True, help="where the runs are kept (a run already there is reused)")
    parser.add_argument("--json", type=Path, help="append each row as a JSON line to this file")
    args = parser.parse_args()
    args.runs.mkdir(parents=True, exist_ok=True)
    for name in args.tables:
        path, target = table_csv(name, args.runs)
        for seed in args.seeds:
            run = args.runs / f"{file_stem(name)}-{seed}"
            if not (run / "metrics.json").exists():
                run_dlw(path, target, run, [f"data.split.seed={seed}", f"train.seed={seed}"])
            row = {"table": name, "seed": seed, **rates_for(run)}
            print(json.dumps(row), flush=True)
            append_json_line(args.json, row)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

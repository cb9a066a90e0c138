"""What cross-fitting would buy dlw's default network: K networks, one per fold of the non-test rows.

Today a run trains one network on the train split (60% of the rows) and stops it on the
validation split (20%). Cross-fitting, as AutoGluon's bagging and TabArena's protocol do it,
splits the train and validation rows together into K folds, trains one network per fold
(fold k is its validation split, the rest its train rows) and predicts the test rows with the
mean of the K networks. Every non-test row then trains K - 1 of the networks.

This measures the idea before building it: for each table and seed it runs dlw K times as a
user would (every key at its default), with the test rows exactly those of the default run
(``make_splits`` is patched in this process only: the test split is drawn first, so it does
not move), averages the K networks' test predictions, and scores them. It prints the mean of
the K single networks beside the cross-fitted one, so what bagging adds is visible, and with
``--compare``/``--autogluon-from`` the default's and AutoGluon's figures on the same rows.

    python bench/crossfit.py --seeds 42 0 1 --json crossfit.jsonl --compare default.jsonl --autogluon-from ag.jsonl

With ``--baselines`` it cross-fits the baselines the same way instead (no network is trained:
each fold's data is prepared and ``dlw.baselines.fit_baselines`` fitted on it, boosting stopping
on the fold), beside the baselines as a run fits them today, so the verdict's comparison can be
judged at equal strength.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

os.environ.setdefault("KERAS_BACKEND", "jax")
sys.path.insert(0, str(Path(__file__).parent))

import tables as bench_tables  # noqa: E402  (bench/tables.py: the tables and how dlw is run on them)
from dlw.data import tables as dlw_tables  # noqa: E402
from dlw.data.splits import Splits, make_splits  # noqa: E402
from dlw.objectives import higher_is_better  # noqa: E402


def fold_splits(k: int, fold: int, seed: int):
    """A ``make_splits`` whose test rows are the default's and whose validation rows are fold ``fold`` of K of the rest.

    The folds are ``dlw.crossfit.fold_rows``'s, the very rows ``train.folds`` cuts.
    """
    from dlw.crossfit import fold_rows

    def splits(rows, labels, validation, test, split_seed, origin="data", class_names=None):
        default = make_splits(rows, labels, validation, test, split_seed, origin, class_names)
        rest = np.sort(np.concatenate([default.train, default.validation]))
        position = {int(r): i for i, r in enumerate(rows)}
        rest_labels = None if labels is None else np.asarray(labels)[[position[int(r)] for r in rest]]
        held = fold_rows(rest, rest_labels, k, seed)[fold]
        return Splits(np.setdiff1d(rest, held), held, default.test, f"fold {fold + 1} of {k}", split_seed)

    return splits


def test_prediction_frame(run: Path) -> pd.DataFrame:
    """The run's test predictions: ``prediction`` (regression) or the ``prob_*`` columns (classification)."""
    frame = pd.read_csv(run / "test_predictions.csv", low_memory=False)
    probs = [c for c in frame.columns if c.startswith("prob_")]
    return frame[probs] if probs else frame[["prediction"]]


def score(metric: str, truth: pd.Series, predicted: pd.DataFrame) -> float:
    """The verdict's metric of a mean prediction: rmse of values, or AUC/accuracy of class probabilities."""
    from sklearn.metrics import balanced_accuracy_score, roc_auc_score

    if metric in ("rmse", "mae"):
        error = predicted["prediction"].to_numpy(dtype=float) - truth.to_numpy(dtype=float)
        return float(np.sqrt(np.mean(error ** 2))) if metric == "rmse" else float(np.mean(np.abs(error)))
    classes = [c[len("prob_"):] for c in predicted.columns]
    chosen = np.asarray(classes)[predicted.to_numpy().argmax(axis=1)]
    labels = truth.astype(str).to_numpy()
    if metric == "roc_auc":
        return float(roc_auc_score(labels == classes[1], predicted.iloc[:, 1]))
    if metric == "balanced_accuracy":
        return float(balanced_accuracy_score(labels, chosen))
    return float((chosen == labels).mean())


def crossfit_row(name: str, path: Path, target: str, folder: Path, *, seed: int, k: int, overrides: list[str]) -> dict:
    """K runs of dlw on one table and seed; the cross-fitted network's test figure and the single networks'."""
    singles, predictions, started = [], [], time.perf_counter()
    for fold in range(k):
        dlw_tables.make_splits = fold_splits(k, fold, seed)
        try:
            out = folder / f"{name}-{seed}-{fold}"
            metrics, _ = bench_tables.run_dlw(path, target, out, [*overrides, f"data.split.seed={seed}", f"train.seed={seed + fold}"])
        finally:
            dlw_tables.make_splits = make_splits
        metric = metrics["main_metric"]
        singles.append(metrics["test"][metric])
        predictions.append(test_prediction_frame(out))
    truth = pd.read_csv(out / "test_predictions.csv", low_memory=False)[target]
    mean = sum(p.to_numpy() for p in predictions) / k
    crossfit = score(metric, truth, pd.DataFrame(mean, columns=predictions[0].columns))
    return {"table": name, "seed": seed, "metric": metric, "folds": k, "crossfit": crossfit,
            "single_mean": float(np.mean(singles)), "singles": singles, "wall_s": round(time.perf_counter() - started, 1)}


def baseline_row(name: str, path: Path, target: str, *, seed: int, k: int, overrides: list[str]) -> dict:
    """Each baseline as a run fits it today, and cross-fitted over K folds (the mean of K fits' test outputs)."""
    from dlw.baselines import fit_baselines
    from dlw.classes import choose_main_metric
    from dlw.console import QUIET
    from dlw.data.kinds import prepare
    from dlw.evaluate import score as dlw_score
    from dlw.spec import load_spec

    config = load_spec(str(path), target, [*overrides, f"data.split.seed={seed}", f"train.seed={seed}"])
    prepared = prepare(config, QUIET)
    problem, y_test = prepared.problem, prepared.targets["test"]
    metric = choose_main_metric(problem, prepared.targets["train"], config.checks.main_metric)[0]
    today = {b: dlw_score(problem, y_test, f.predict(prepared.inputs["test"]))[metric] for b, f in fit_baselines(prepared, seed).items()}
    outputs: dict[str, list] = {}
    for fold in range(k):
        dlw_tables.make_splits = fold_splits(k, fold, seed)
        try:
            folded = prepare(config, QUIET)
        finally:
            dlw_tables.make_splits = make_splits
        for b, f in fit_baselines(folded, seed).items():
            outputs.setdefault(b, []).append(f.predict(folded.inputs["test"]))
    crossfit = {b: dlw_score(problem, y_test, np.mean(outs, axis=0))[metric] for b, outs in outputs.items()}
    return {"table": name, "seed": seed, "metric": metric, "folds": k, "baselines": today, "baselines_crossfit": crossfit}


def better_than(metric: str, a: float, b: float) -> bool:
    """Whether figure ``a`` is better than ``b`` on ``metric``."""
    return a > b if higher_is_better(metric) else a < b


def at_autogluon_level(row: dict, value: float) -> bool:
    """bench/tables.py's test (1% rmse, 0.005 AUC/accuracy), for ``value`` in the network's place."""
    return bench_tables.at_autogluon_level({**row, "network": value})


def summary_lines(rows: list[dict]) -> list[str]:
    """The counts bench/RESULTS.md quotes: cross-fitted against one network, and each against AutoGluon."""
    compared = [r for r in rows if "default" in r and "crossfit" in r]
    better = sum(better_than(r["metric"], r["crossfit"], r["default"]) for r in compared)
    worse = sum(better_than(r["metric"], r["default"], r["crossfit"]) for r in compared)
    rmse = [(r["default"] - r["crossfit"]) / r["default"] for r in compared if r["metric"] == "rmse"]
    lines = [f"cross-fitted against one network: better in {better}, worse in {worse} of {len(compared)} runs"
             + (f"; rmse {100 * float(np.mean(rmse)):.1f}% lower on average over {len(rmse)}" if rmse else "")]
    for seed in sorted({r["seed"] for r in compared if "autogluon" in r}):
        at = [r for r in compared if r["seed"] == seed and "autogluon" in r]
        lines.append(f"seed {seed}: at AutoGluon's level {sum(at_autogluon_level(r, r['default']) for r in at)} of {len(at)} "
                     f"with one network, {sum(at_autogluon_level(r, r['crossfit']) for r in at)} cross-fitted")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", nargs="*", choices=[*bench_tables.TABLES, *bench_tables.HELD_OUT])
    parser.add_argument("--held-out", action="store_true", help="the held-out tables instead of the development ones")
    parser.add_argument("--seeds", nargs="*", type=int, default=[42])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--compare", type=Path, metavar="JSONL", help="the default's figures: an earlier bench/tables.py --json file")
    parser.add_argument("--autogluon-from", type=Path, metavar="JSONL", help="AutoGluon's figures: an earlier bench/tables.py --json file")
    parser.add_argument("--json", type=Path, help="append each row as a JSON line to this file")
    parser.add_argument("--baselines", action="store_true", help="cross-fit the baselines instead of the network")
    args = parser.parse_args()
    names = args.tables or list(bench_tables.HELD_OUT if args.held_out else bench_tables.TABLES)
    default = bench_tables.read_rows(args.compare) if args.compare else {}
    autogluon = bench_tables.autogluon_rows(args.autogluon_from) if args.autogluon_from else {}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            path, target = bench_tables.table_csv(name, Path(tmp))
            for seed in args.seeds:
                if args.baselines:
                    row = baseline_row(name, path, target, seed=seed, k=args.folds, overrides=args.overrides)
                else:
                    row = crossfit_row(name, path, target, Path(tmp), seed=seed, k=args.folds, overrides=args.overrides)
                if (name, seed) in default:
                    row["default"] = default[name, seed]["network"]
                row.update(autogluon.get((name, seed), {}))
                rows.append(row)
                print(json.dumps(row), flush=True)
                bench_tables.append_json_line(args.json, row)
    print("\n".join(summary_lines(rows)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

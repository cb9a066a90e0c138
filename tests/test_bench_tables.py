"""bench/tables.py's comparison of a run with an earlier one (what bench/RESULTS.md's better/worse counts come from)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from conftest import bench_module


def test_lower_rmse_and_higher_auc_count_as_better_and_a_later_line_wins(tmp_path, capsys):
    tables = bench_module("tables")
    earlier = tmp_path / "earlier.jsonl"
    lines = [
        {"table": "ames", "seed": 42, "metric": "rmse", "network": 30000.0, "outcome": "no_clear_difference"},
        {"table": "ames", "seed": 42, "metric": "rmse", "network": 20000.0, "outcome": "network_better"},
        {"table": "attrition", "seed": 42, "metric": "roc_auc", "network": 0.80, "outcome": "no_clear_difference"},
        {"table": "Boston", "seed": 0, "metric": "rmse", "network": 3.0, "outcome": "no_clear_difference"},
    ]
    earlier.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    reference = tables.read_rows(earlier)
    rows = [
        {"table": "ames", "seed": 42, "metric": "rmse", "network": 19000.0, "outcome": "network_better"},
        {"table": "attrition", "seed": 42, "metric": "roc_auc", "network": 0.79, "outcome": "no_clear_difference"},
        {"table": "Boston", "seed": 0, "metric": "rmse", "network": 3.0, "outcome": "no_clear_difference"},
        {"table": "Boston", "seed": 1, "metric": "rmse", "network": 2.0, "outcome": "no_clear_difference"},
    ]
    assert abs(tables.relative_change(rows[0], reference["ames", 42]) - 0.05) < 1e-12
    tables.print_changes(rows, reference)
    assert capsys.readouterr().out.strip().endswith("better in 1, worse in 1, unchanged in 1")


def test_crossfit_folds_keep_the_default_test_rows_and_share_out_the_rest():
    crossfit = bench_module("crossfit")
    from dlw.data.splits import make_splits

    rows = np.arange(500)
    labels = (np.arange(500) % 5 == 0).astype(int)  # 20% positives
    default = make_splits(rows, labels, 0.2, 0.2, seed=3)
    folds = [crossfit.fold_splits(5, k, seed=3)(rows, labels, 0.2, 0.2, 3) for k in range(5)]
    rest = np.sort(np.concatenate([default.train, default.validation]))
    for f in folds:
        assert np.array_equal(f.test, default.test)
        assert not set(f.train) & set(f.validation)
        assert np.array_equal(np.sort(np.concatenate([f.train, f.validation])), rest)
        assert abs(labels[f.validation].mean() - 0.2) < 0.03  # stratified
    assert np.array_equal(np.sort(np.concatenate([f.validation for f in folds])), rest)  # each row validates once


def test_crossfit_scores_a_mean_prediction_as_dlw_does():
    crossfit = bench_module("crossfit")
    values = pd.DataFrame({"prediction": [1.0, 2.0, 4.0]})
    assert abs(crossfit.score("rmse", pd.Series([1.0, 2.0, 1.0]), values) - np.sqrt(3.0)) < 1e-12
    proba = pd.DataFrame({"prob_no": [0.9, 0.4, 0.3], "prob_yes": [0.1, 0.6, 0.7]})
    truth = pd.Series(["no", "yes", "no"])
    assert crossfit.score("roc_auc", truth, proba) == 0.5
    assert abs(crossfit.score("accuracy", truth, proba) - 2 / 3) < 1e-12


def test_crossfit_summary_counts_runs_and_autogluon_levels():
    crossfit = bench_module("crossfit")
    rows = [
        {"table": "a", "seed": 42, "metric": "rmse", "default": 10.0, "crossfit": 9.0, "autogluon": 9.05},
        {"table": "b", "seed": 42, "metric": "roc_auc", "default": 0.80, "crossfit": 0.79, "autogluon": 0.81, "autogluon_auc": 0.81},
        {"table": "c", "seed": 0, "metric": "rmse", "default": 4.0, "crossfit": 4.0},
    ]
    lines = crossfit.summary_lines(rows)
    assert lines[0] == "cross-fitted against one network: better in 1, worse in 1 of 3 runs; rmse 5.0% lower on average over 2"
    assert lines[1:] == ["seed 42: at AutoGluon's level 0 of 2 with one network, 1 cross-fitted"]


def test_autogluon_splits_cut_the_same_non_test_rows_two_ways(tmp_path):
    """bench/autogluon_splits.py: dlw's split today and the single one of before keep the test rows and cut the rest differently."""
    from pathlib import Path

    splits = bench_module("autogluon_splits")
    cpus = Path(__file__).parent / "data" / "cpus.csv"
    written = {}
    for way in ("crossfit", "single"):
        overrides, _ = splits.WAYS[way]
        metric = splits.write_splits(cpus, "perf", 42, overrides, tmp_path / way)
        written[way] = json.loads((tmp_path / way / "splits.json").read_text())
        assert metric == "rmse"
    crossfit, single = written["crossfit"], written["single"]
    assert crossfit["test"] == single["test"]
    assert sorted(crossfit["train"] + crossfit["validation"]) == sorted(single["train"] + single["validation"])
    assert len(crossfit["folds"]) == 5 and not single.get("folds")
    assert len(crossfit["validation"]) < len(single["validation"])  # one fold of five against a fifth of all rows

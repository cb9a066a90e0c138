"""Cross-fitting (train.folds): K networks, one per fold of the train and validation rows, averaged.

The end-to-end runs (conftest.py's ``diabetes_run``, every key at its default, and a resumed
run) train on scikit-learn's diabetes table (442 patients, a real regression target), where
``folds: auto`` cross-fits five networks.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from conftest import kill_at, regression_frame, run_dlw, write_csv
from dlw import Workflow, load
from dlw.config import Config
from dlw.crossfit import AUTO_MAX_ROWS, fold_count, fold_members, validation_network
from dlw.console import QUIET
from dlw.data.kinds import prepare
from dlw.data.splits import make_splits
from dlw.errors import ConfigError
from dlw.spec import load_spec

SHORT = ["train.epochs=12", "train.early_stopping.patience=4", "model.hidden_layers=[32,16]", "model.ensemble=4", "train.checkpoint_seconds=0"]


def config_with(**train) -> Config:
    config = Config.model_validate({"data": {"source": "t.csv", "target": "y"}, "train": train})
    config.model.kind = "tabm"
    return config


def test_folds_keep_the_test_rows_and_cut_the_rest_into_disjoint_stratified_folds():
    rows = np.arange(1000, 1600)
    labels = np.r_[np.zeros(480, int), np.ones(120, int)]
    one = make_splits(rows, labels, 0.15, 0.2, seed=7)
    five = make_splits(rows, labels, 0.15, 0.2, seed=7, folds=5)
    np.testing.assert_array_equal(one.test, five.test)
    rest = np.sort(np.concatenate(five.folds))
    np.testing.assert_array_equal(rest, np.sort(np.concatenate([one.train, one.validation])))  # every non-test row, once
    assert len(rest) == len(np.unique(rest)) == 480
    np.testing.assert_array_equal(five.validation, five.folds[0])
    np.testing.assert_array_equal(five.train, np.sort(np.concatenate(five.folds[1:])))
    shares = [np.isin(fold, rows[labels == 1]).mean() for fold in five.folds]
    assert all(abs(s - 0.2) < 0.02 for s in shares)  # stratified: a fifth of each fold is the rare class
    for k in range(5):
        fold = five.fold(k)
        assert not np.intersect1d(fold.train, fold.validation).size and len(fold.train) + len(fold.validation) == 480
    again = make_splits(rows, labels, 0.15, 0.2, seed=7, folds=5)
    assert all(np.array_equal(a, b) for a, b in zip(again.folds, five.folds))  # reproducible


def test_folds_auto_cross_fits_tabm_on_regression_tables_up_to_the_limit():
    config = config_with()
    assert fold_count(config, "regression", 800) == 5
    assert fold_count(config, "regression", AUTO_MAX_ROWS + 1) == 1
    assert fold_count(config, "binary", 800) == 1 and fold_count(config, "multiclass", 800) == 1
    config.model.kind = "mlp"
    assert fold_count(config, "regression", 800) == 1
    assert fold_count(config_with(folds=3), "binary", 800) == 3
    ordered = config_with(folds=3)
    ordered.data.split.order = "time:day"
    with pytest.raises(ConfigError, match=r"^key 'train.folds': .*data.split.order"):
        fold_count(ordered, "regression", 800)
    ordered.train.folds = "auto"
    assert fold_count(ordered, "regression", 800) == 1
    with pytest.raises(ConfigError, match=r"key 'train.folds': 5 folds need at least 10 .* found 6"):
        fold_count(config_with(folds=5), "regression", 6)


def test_bad_folds_are_one_line_errors_naming_the_key(tmp_path):
    csv = write_csv(regression_frame(120), tmp_path / "houses.csv")
    result = run_dlw("train", str(csv), "--target", "price", "--set", "train.folds=0", "--out", str(tmp_path / "r"))
    assert result.returncode != 0 and "train.folds" in result.stderr and "Traceback" not in result.stderr
    result = run_dlw("train", "digits", "--set", "train.folds=3", "--out", str(tmp_path / "d"))
    assert result.returncode != 0 and "key 'train.folds'" in result.stderr and "for tables" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_cross_fitted_run_averages_five_networks_and_checks_out_of_fold(diabetes_run):
    run = diabetes_run
    splits = json.loads((run.path / "splits.json").read_text())
    assert len(splits["folds"]) == 5 and splits["validation"] == splits["folds"][0]
    members = fold_members(run.model)
    assert [m.name for m in members] == [f"fold_{k}" for k in range(5)]
    folds = run.metrics["training"]["folds"]
    assert len(folds) == 5
    # Each network's loss on its own fold at the epoch it kept: the first one's is in history.csv.
    history = pd.read_csv(run.path / "history.csv")
    assert folds[0]["best_val_loss"] == pytest.approx(history["val_loss"].iloc[folds[0]["best_epoch"] - 1])
    assert all(0 < fold["best_val_loss"] < np.inf for fold in folds)
    fits = run.metrics["baseline_fits"]
    assert all(fit["folds"] == 5 for fit in fits.values())  # the baselines are cross-fitted too
    # Each baseline's loss on all the non-test rows, each row predicted by the fit that did not train on it. Their
    # ratio says the target is near linear: no hint to embed the numbers.
    ratio = fits["linear"]["out_of_fold_rmse"] / fits["hist_gradient_boosting"]["out_of_fold_rmse"]
    assert fits["mean"]["out_of_fold_rmse"] > fits["linear"]["out_of_fold_rmse"] and ratio < 1.2, fits
    assert "hints" not in run.metrics and "hint:" not in (run.path / "run.log").read_text()
    card = (run.path / "MODEL_CARD.md").read_text(encoding="utf-8")
    assert "5 such networks, cross-fitted (train.folds)" in card and "- cross-fitted: 5 networks" in card

    reloaded = load(run.path)  # from model.keras, in safe mode
    prepared = prepare(reloaded.config, QUIET, schema=reloaded.schema)
    test_x, val_x = prepared.inputs["test"], prepared.inputs["validation"]
    each = np.stack([prepared.outputs(m, test_x) for m in fold_members(reloaded.model)])
    np.testing.assert_allclose(prepared.outputs(reloaded.model, test_x), each.mean(axis=0), rtol=1e-4)  # the mean of the five

    # The validation split is judged by the one network that never trained on it.
    first = prepared.outputs(fold_members(reloaded.model)[0], val_x)
    np.testing.assert_allclose(prepared.outputs(validation_network(reloaded.model), val_x), first, rtol=1e-5)
    rmse = float(np.sqrt(np.mean((first - prepared.targets["validation"]) ** 2)))
    assert run.metrics["validation"]["rmse"] == pytest.approx(rmse, rel=1e-4)
    mean_rmse = float(np.sqrt(np.mean((prepared.outputs(reloaded.model, val_x) - prepared.targets["validation"]) ** 2)))
    assert mean_rmse < rmse  # what checking on the mean would have reported: rows four of its networks trained on

    test = run.metrics["test"]["rmse"]
    assert test < 0.85 * run.metrics["baselines"]["mean"]["rmse"]  # it learned the real target
    predicted = pd.read_csv(run.path / "test_predictions.csv")["prediction"].to_numpy()
    np.testing.assert_allclose(reloaded.predict(prepared.frame.loc[prepared.splits.test])["prediction"], predicted, rtol=1e-4)


def test_a_cross_fitted_run_flags_unfamiliar_rows_calibrated_on_every_non_test_row(diabetes_run):
    """The threshold is set on every fold's held-out scores (each fold's network, its own detector), not on 71 rows."""
    from dlw.ood import OODDetector, conformal_threshold, feature_blocks, fold_penultimate_models

    run = load(diabetes_run.path)
    info = json.loads((run.path / "ood.json").read_text())
    splits = json.loads((run.path / "splits.json").read_text())
    n = len(splits["train"]) + len(splits["validation"])
    assert info["calibration_rows"] == {"rows": n, "folds": 5} and n == 354
    assert "held-out scores of every fold" in run.metrics["ood"]["method"]
    card = (run.path / "MODEL_CARD.md").read_text(encoding="utf-8")
    assert "calibrated on 354 held-out rows (5 folds) to flag 5% of familiar ones" in card

    # The threshold by hand: fold k's network's penultimate layer and the encoded columns, a detector fitted on
    # its train rows, its held-out fold scored; the run's own detector scores the first fold.
    prepared = prepare(run.config, QUIET, schema=run.schema)
    held_out = []
    for k, (features, view) in enumerate(zip(fold_penultimate_models(run.model), prepared.fold_views())):
        detector = run.detector if k == 0 else OODDetector().fit(
            feature_blocks(features, view, view.inputs["train"]), None, feature_blocks(features, view, view.inputs["validation"]))
        held_out.append(detector.score(feature_blocks(features, view, view.inputs["validation"])))
    assert run.detector.threshold == pytest.approx(conformal_threshold(np.concatenate(held_out), 0.05), rel=1e-6)
    assert run.metrics["ood"]["flag_rate"] <= 0.1  # familiar rows: about 5% by design

    rows = prepared.frame.loc[prepared.splits.test].head(20).copy()
    rows.iloc[:10, rows.columns.get_loc("bmi")] = 10 * prepared.frame["bmi"].max()  # far past any train row
    predicted = run.predict(rows)
    written = pd.read_csv(run.path / "test_predictions.csv").head(20)
    assert predicted["ood"].iloc[:10].all() and predicted["ood"].iloc[10:].tolist() == written["ood"].iloc[10:].tolist()


def test_diabetes_with_every_default_learns_the_target(diabetes_run):
    """Here beside the other test of ``diabetes_run``: the test workers take one file each, and build the fixture once."""
    metrics = diabetes_run.metrics
    assert metrics["test"]["r2"] > 0.3
    assert metrics["test"]["rmse"] < metrics["baselines"]["mean"]["rmse"]
    assert metrics["training"]["plan"]["cycles"] == 3  # a regression table: up to three learning-rate cycles


@pytest.mark.slow
def test_a_killed_cross_fitted_run_resumes_keeping_the_finished_networks(tmp_path, monkeypatch):
    # one cycle each, so that the second "epoch:3" is the second network's (cycles resume: tests/test_resume.py)
    overrides = [*SHORT, "train.folds=3", "train.early_stopping=false", "train.epochs=5", "train.cycles=1"]
    whole = Workflow.from_config("diabetes", overrides=overrides, quiet=True).train(out=tmp_path / "whole")
    kill_at(monkeypatch, "epoch:3", 2)  # in the second network
    out = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        Workflow.from_config("diabetes", overrides=overrides, quiet=True).train(out=out)
    monkeypatch.undo()
    [partial] = out.parent.glob(f".{out.name}.partial-*")
    assert sorted(p.name for p in (partial / "checkpoint").glob("*.npz")) == ["fold1_phase1.npz", "fold2_phase1.npz"]

    resumed = Workflow.from_config("diabetes", overrides=overrides, quiet=True).train(out=out, resume=True)
    log = (out / "run.log").read_text()
    assert "resumed after epoch 3 of 5" in log
    assert resumed.metrics["test"]["rmse"] == pytest.approx(whole.metrics["test"]["rmse"], rel=1e-9)  # JAX on a CPU: the same five epochs


def test_a_cross_fitted_baseline_answers_for_the_validation_rows_with_what_its_first_fit_computed_there(tmp_path, monkeypatch):
    """The first fold is the run's validation split, its own arrays: boosting's first fit chose its leaf on
    them, and those outputs are the cross-fitted baseline's, not predicted a second time."""
    from sklearn.datasets import load_diabetes

    import dlw.baselines

    csv = write_csv(load_diabetes(as_frame=True).frame, tmp_path / "diabetes.csv")
    prepared = prepare(load_spec(str(csv), target="target"), QUIET)
    validation = prepared.inputs["validation"]
    assert prepared.splits.folds and next(prepared.fold_views()).inputs["validation"] is validation
    real, fits, asked = dlw.baselines.FITTERS["hist_gradient_boosting"], [], []

    def observed(part, seed):
        fitted = real(part, seed)
        predict = fitted.predict
        fitted.predict = lambda inputs: asked.append(inputs) or predict(inputs)
        fits.append(fitted)
        return fitted

    monkeypatch.setitem(dlw.baselines.FITTERS, "hist_gradient_boosting", observed)
    combined = dlw.baselines.crossfit_baselines(prepared, 0)["hist_gradient_boosting"]
    assert not any(inputs is validation for inputs in asked), "the first fit predicted its validation rows again"
    np.testing.assert_allclose(combined.predict_split("validation", validation), fits[0].predict(validation))

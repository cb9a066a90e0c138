"""Imbalanced classes, a class never predicted, calibrated probabilities and the persistence baseline (issue 12)."""

from __future__ import annotations

import json
import re

import keras
import numpy as np
import pandas as pd
import pytest
from conftest import run_dlw
from sklearn.metrics import roc_auc_score

import dlw
from dlw.advice import advise
from dlw.calibration import TemperatureScaling, brier_score, expected_calibration_error, fit_temperature, scaled
from dlw.classes import balanced_offsets, choose_main_metric, choose_threshold, class_weights, decision_offsets, predicted_classes, unpredicted_class_warnings
from dlw.problem import Problem

FAST = ["model.kind=mlp", "model.hidden_layers=[16]", "train.epochs=20", "train.batch_size=32", "train.early_stopping=false", "checks.bootstrap=200"]
BINARY = Problem("binary", "y", ["no", "yes"])


def one_error_line(proc) -> str:
    """The one stderr line of a run refused as bad input (exit 2, no traceback)."""
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("dlw: error: "), proc.stderr
    return lines[0]


def rare_positives(n: int = 600, share: float = 0.08, seed: int = 0, signal: float = 2.5) -> pd.DataFrame:
    """A table whose ``outcome`` is 'yes' on about ``share`` of rows, more often when ``risk`` is high."""
    rng = np.random.default_rng(seed)
    risk, noise = rng.normal(0, 1, n), rng.normal(0, 1, n)
    logit = np.log(share / (1 - share)) + signal * risk - signal**2 / 4
    outcome = np.where(rng.random(n) < 1 / (1 + np.exp(-logit)), "yes", "no")
    return pd.DataFrame({"risk": risk.round(3), "noise": noise.round(3), "group": rng.choice(["a", "b"], n), "outcome": outcome})


# --- the decisions, on arrays --------------------------------------------------


def test_auto_switches_metric_and_weights_only_when_the_smallest_class_is_under_20_percent():
    rare, even = np.array([0] * 90 + [1] * 10), np.array([0] * 75 + [1] * 25)
    assert choose_main_metric(BINARY, rare)[0] == "roc_auc"
    assert "'yes', is 10.0% of the train rows" in choose_main_metric(BINARY, rare)[1]
    assert choose_main_metric(BINARY, even) == ("accuracy", "the default for a binary task")
    three = Problem("multiclass", "y", ["a", "b", "c"])
    assert choose_main_metric(three, np.array([0] * 50 + [1] * 40 + [2] * 10))[0] == "balanced_accuracy"
    assert choose_main_metric(three, np.array([0] * 45 + [1] * 37 + [2] * 18))[0] == "accuracy", "18% of three classes is not rare"
    ten = Problem("multiclass", "y", list(range(10)))
    assert choose_main_metric(ten, np.repeat(np.arange(10), 10))[0] == "accuracy", "ten even classes are balanced"
    assert choose_main_metric(BINARY, rare, "log_loss") == ("log_loss", "chosen in the config (checks.main_metric)")
    assert class_weights(BINARY, rare, "balanced") == {0: pytest.approx(100 / 180), 1: pytest.approx(5.0)}
    assert class_weights(BINARY, rare, "auto") is None and class_weights(BINARY, rare, "none") is None, "auto never weighs the loss"
    assert class_weights(BINARY, even, "balanced")[1] == pytest.approx(2.0)
    assert balanced_offsets(BINARY, rare, "auto") == pytest.approx([np.log(100 / 180), np.log(5.0)])
    assert balanced_offsets(BINARY, even, "auto") is None and balanced_offsets(BINARY, rare, "balanced") is None
    assert balanced_offsets(BINARY, rare, "none") is None


def test_auto_weighs_the_loss_of_an_imbalanced_multiclass_target_only():
    three = Problem("multiclass", "y", ["a", "b", "c"])
    rare = np.array([0] * 50 + [1] * 40 + [2] * 10)
    assert class_weights(three, rare, "auto") == pytest.approx({0: 100 / 150, 1: 100 / 120, 2: 100 / 30})
    assert balanced_offsets(three, rare, "auto") is None
    assert class_weights(three, np.array([0] * 45 + [1] * 37 + [2] * 18), "auto") is None


def test_balanced_offsets_decide_as_the_balanced_weights_would():
    """On probabilities drawn honestly, the offsets pick the class with the larger probability over its share: balanced accuracy rises."""
    rng = np.random.default_rng(3)
    logit = rng.normal(-2.5, 1.5, 6000)
    proba = np.stack([1 / (1 + np.exp(logit)), 1 / (1 + np.exp(-logit))], axis=1)
    y = (rng.random(6000) < proba[:, 1]).astype(int)
    offsets = balanced_offsets(BINARY, y, "auto")
    shares = np.bincount(y, minlength=2) / len(y)
    np.testing.assert_array_equal(predicted_classes(proba, offsets), (proba / shares).argmax(axis=1))
    from sklearn.metrics import balanced_accuracy_score

    assert balanced_accuracy_score(y, predicted_classes(proba, offsets)) > balanced_accuracy_score(y, proba.argmax(axis=1)) + 0.05


def test_baselines_decide_as_the_network_does():
    """An unweighted baseline judged on balanced accuracy beside a class-weighted network must decide
    balanced too: on MASS's fgl (6 glass types, 4% the rarest) the linear baseline's balanced accuracy
    was 0.498 by its most probable class and is 0.647 so (the network's 0.640)."""
    from dlw.classes import baseline_decision
    from dlw.spec import load_spec

    three = Problem("multiclass", "y", ["a", "b", "c"])
    rare = np.array([0] * 150 + [1] * 120 + [2] * 30)
    config = load_spec("penguins")
    offsets = baseline_decision(three, rare, config)
    weights = class_weights(three, rare, "auto")
    assert offsets == pytest.approx([np.log(weights[i]) for i in range(3)])
    assert predicted_classes(np.array([[0.5, 0.3, 0.2]]), offsets)[0] == 2, "0.2 of a 10% class outweighs 0.5 of a 50% one"
    assert baseline_decision(three, np.array([0] * 45 + [1] * 37 + [2] * 18), config) is None  # not imbalanced: the most probable class
    assert baseline_decision(three, rare, config.model_copy(update={"train": config.train.model_copy(update={"class_weight": "none"})})) is None

    binary = np.array([0] * 180 + [1] * 20)
    threshold = baseline_decision(BINARY, binary, config)
    assert threshold == pytest.approx(0.1), "a 10% class decided as a balanced model would: p > its share"
    assert threshold == pytest.approx(1 / (1 + np.exp(np.diff(balanced_offsets(BINARY, binary, "auto"))[0])))  # the network's rule
    chosen = lambda value: config.model_copy(update={"checks": config.checks.model_copy(update={"threshold": value})})  # noqa: E731
    assert baseline_decision(BINARY, binary, chosen("auto")) is None, "each baseline chooses its own on the validation split"
    assert baseline_decision(BINARY, binary, chosen(0.3)) == 0.3, "a threshold set by the user is every model's"


def test_threshold_chosen_on_validation_separates_a_rare_class_that_0_5_misses():
    rng = np.random.default_rng(1)
    y = (rng.random(2000) < 0.1).astype(int)
    p = np.clip(0.05 + 0.25 * y + rng.normal(0, 0.05, 2000), 0.001, 0.999)  # positives near 0.3: below 0.5
    proba = np.stack([1 - p, p], axis=1)
    t = choose_threshold(y, proba, "balanced_accuracy")
    assert 0.1 < t < 0.3
    assert ((p > t) == y).mean() > 0.95 and ((p > 0.5) == y).mean() < 0.91


def test_warning_names_the_class_never_predicted_and_the_counts():
    y, predicted = np.array([0] * 40 + [1] * 8 + [2] * 12), np.array([0] * 48 + [2] * 12)
    (only,) = unpredicted_class_warnings("test", y, predicted, ["Adelie", "Chinstrap", "Gentoo"])
    assert "never predicts class 'Chinstrap'" in only and "0 of 60 rows" in only and "8 rows truly are" in only
    rarely = unpredicted_class_warnings("test", y, np.array([0] * 47 + [1] + [2] * 12), ["Adelie", "Chinstrap", "Gentoo"])
    assert len(rarely) == 1 and "rarely predicts class 'Chinstrap' (1 of 60" in rarely[0]
    assert unpredicted_class_warnings("test", y, y, ["Adelie", "Chinstrap", "Gentoo"]) == []
    assert "consider train.class_weight: balanced" in only
    # already weighted (or decided as balanced): the hint is its rows, not the weights it has
    (weighted,) = unpredicted_class_warnings("test", y, predicted, ["Adelie", "Chinstrap", "Gentoo"], balanced_train_rows=np.array([120, 24, 36]))
    assert "on 24 train rows: too few to learn it" in weighted and "class_weight" not in weighted


def test_verdict_on_roc_auc_equals_scikit_learn_and_its_interval_brackets_it():
    rng = np.random.default_rng(2)
    y = (rng.random(300) < 0.1).astype(int)
    good = np.clip(0.1 + 0.3 * y + rng.normal(0, 0.1, 300), 0, 1).round(2)  # ties on purpose
    weak = np.clip(0.1 + 0.05 * y + rng.normal(0, 0.1, 300), 0, 1)
    two = lambda p: np.stack([1 - p, p], axis=1)  # noqa: E731
    advice = advise("binary", "roc_auc", y, two(good), {"linear": two(weak)}, n_boot=300)
    assert advice["network"] == pytest.approx(roc_auc_score(y, good))
    assert advice["baseline_value"] == pytest.approx(roc_auc_score(y, weak))
    assert advice["ci95"][0] < advice["difference"] < advice["ci95"][1] and advice["outcome"] == "network_better"
    with pytest.raises(ValueError, match="not available for multiclass"):
        advise("multiclass", "roc_auc", np.array([0, 1, 2]), np.eye(3), {"m": np.eye(3)})


def test_temperature_scaling_lowers_the_log_loss_of_overconfident_probabilities_and_the_layer_agrees():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 3, 3000)
    logits = rng.normal(0, 1, (3000, 3)) + 1.0 * np.eye(3)[y]
    honest = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    overconfident = scaled(honest, 1 / 3)  # three times too sure
    t = fit_temperature(y, overconfident)
    assert t == pytest.approx(3.0, rel=0.1)
    assert expected_calibration_error(y, scaled(overconfident, t)) < expected_calibration_error(y, overconfident) / 3
    assert brier_score(y, scaled(overconfident, t)) < brier_score(y, overconfident)
    layer = TemperatureScaling(t)
    np.testing.assert_allclose(np.asarray(layer(overconfident[:5].astype("float32"))), scaled(overconfident[:5], t), atol=1e-5)
    p = overconfident[:5, 1:2].astype("float32")  # one sigmoid unit: the same as the two-column softmax
    np.testing.assert_allclose(np.asarray(layer(p))[:, 0], scaled(np.hstack([1 - p, p]), t)[:, 1], atol=1e-5)


def test_class_weights_are_divided_out_and_the_weighted_decisions_kept():
    """Probabilities learned under class weights over-state the rare class; the shift restores them, the offsets keep the decisions."""
    rng = np.random.default_rng(4)
    logit = -3.2 + 1.5 * rng.normal(0, 1, 4000)
    honest = np.stack([1 / (1 + np.exp(logit)), 1 / (1 + np.exp(-logit))], axis=1)
    y = (rng.random(4000) < honest[:, 1]).astype(int)  # drawn from the probabilities: they are calibrated
    weights = np.array([4000 / (2 * (y == 0).sum()), 4000 / (2 * (y == 1).sum())])
    weighted = honest * weights / (honest * weights).sum(axis=1, keepdims=True)  # what a class-weighted fit learns
    shift = list(np.log(weights))
    t = fit_temperature(y, weighted, shift)
    assert t == pytest.approx(1.0, abs=0.1)
    calibrated = scaled(weighted, t, shift)
    assert brier_score(y, calibrated) < 0.8 * brier_score(y, weighted)
    assert abs(calibrated[:, 1].mean() - y.mean()) < 0.01 < abs(weighted[:, 1].mean() - y.mean())
    offsets = decision_offsets({"temperature": t, "shift": shift})
    kept = predicted_classes(calibrated, offsets)
    np.testing.assert_array_equal(kept, weighted.argmax(axis=1))
    threshold = 1 / (1 + np.exp(offsets[1] - offsets[0]))  # the same rule as a binary threshold
    np.testing.assert_array_equal(predicted_classes(calibrated, threshold), kept)
    layer = TemperatureScaling(t, shift)
    np.testing.assert_allclose(np.asarray(layer(weighted[:5, 1:2].astype("float32")))[:, 0], calibrated[:5, 1], atol=1e-5)
    np.testing.assert_allclose(np.asarray(layer(weighted[:5].astype("float32"))), calibrated[:5], atol=1e-5)


def test_expected_calibration_error_by_hand():
    y = np.array([0, 0, 1, 1])
    proba = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.2, 0.8]])
    # bins: 0.9 (2 rows, both right: gap 0.1), 0.6 (1 row, wrong: gap 0.6), 0.8 (1 row, right: gap 0.2)
    assert expected_calibration_error(y, proba) == pytest.approx(0.5 * 0.1 + 0.25 * 0.6 + 0.25 * 0.2)
    assert brier_score(np.array([1]), np.array([[0.2, 0.8]])) == pytest.approx(0.08)


# --- whole runs ------------------------------------------------------------------


@pytest.fixture(scope="module")
def rare_run(tmp_path_factory):
    """An imbalanced binary table (8% 'yes') trained with every setting at auto and the threshold chosen on validation."""
    folder = tmp_path_factory.mktemp("rare")
    rare_positives().to_csv(folder / "rare.csv", index=False)
    wf = dlw.Workflow.from_config(str(folder / "rare.csv"), target="outcome", overrides=[*FAST, "checks.threshold=auto"], quiet=True)
    return wf.train(out=folder / "run", report=True)


def test_imbalanced_binary_is_judged_on_auc_with_balanced_weights_and_a_chosen_threshold(rare_run):
    metrics, log = rare_run.metrics, (rare_run.path / "run.log").read_text()
    assert metrics["main_metric"] == "roc_auc" and "under 20%" in metrics["main_metric_reason"]
    assert metrics["advice"]["metric"] == "roc_auc"
    assert metrics["advice"]["network"] == pytest.approx(metrics["test"]["roc_auc"])
    assert "imbalanced classes (train.class_weight: auto): an unweighted loss" in log
    assert metrics["calibration"]["class_weight_shift"] is None, "nothing to divide out: the loss was not weighted"
    threshold = json.loads((rare_run.path / "schema.json").read_text())["problem"]["threshold"]
    assert 0 < threshold < 1 and rare_run.problem.threshold == threshold
    saved = pd.read_csv(rare_run.path / "test_predictions.csv")
    assert (saved["prediction"] == np.where(saved["prob_yes"] > threshold, "yes", "no")).all()
    assert (saved["prediction"] == "yes").any(), "the rare class is predicted"
    again = rare_run.predict(saved.drop(columns=["prediction", "prob_no", "prob_yes", "ood", "ood_score"]))
    assert again["prediction"].tolist() == saved["prediction"].tolist()
    assert metrics["baseline_fits"]["linear"]["threshold"] > 0, "the baselines choose their threshold on validation too"
    report = (rare_run.path / "report.html").read_text()
    assert "the smallest class, &#x27;yes&#x27;, is" in report or "the smallest class, 'yes', is" in report
    assert "Decision threshold" in report


def test_calibrated_probabilities_are_inside_model_keras_and_measured(rare_run):
    calibration = rare_run.metrics["calibration"]
    assert set(calibration["before"]) == set(calibration["after"]) == {"brier", "ece"}
    assert calibration["temperature"] > 0 and (rare_run.path / "reliability.png").stat().st_size > 1000
    model = keras.models.load_model(rare_run.path / "model.keras", safe_mode=True)
    assert isinstance(model.layers[-1], TemperatureScaling)
    assert model.layers[-1].temperature == pytest.approx(calibration["temperature"], rel=1e-3)
    saved = pd.read_csv(rare_run.path / "test_predictions.csv")
    fresh = dlw.load(rare_run.path).predict(saved.drop(columns=["prediction", "prob_no", "prob_yes", "ood", "ood_score"]))
    np.testing.assert_allclose(fresh["prob_yes"], saved["prob_yes"], atol=1e-5)
    report = (rare_run.path / "report.html").read_text()
    assert "Calibrated probabilities" in report and "Reliability diagram" in report


def test_a_class_never_predicted_is_named_in_console_log_metrics_and_report(tmp_path):
    """Pure-noise inputs and 10% positives without class weights: the network says 'no' to every row."""
    frame = rare_positives(n=400, share=0.1, seed=4, signal=0.0)
    frame.to_csv(tmp_path / "noise.csv", index=False)
    sets = [a for item in [*FAST, "train.class_weight=none", "checks.main_metric=accuracy"] for a in ("--set", item)]
    proc = run_dlw("train", str(tmp_path / "noise.csv"), "--target", "outcome", "--out", str(tmp_path / "run"), *sets, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    shown = proc.stdout + proc.stderr
    assert "validation split: the network never predicts class 'yes'" in shown
    assert "test split: the network never predicts class 'yes' (0 of 80 rows" in shown
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    named = [w for w in metrics["warnings"] if "never predicts class 'yes'" in w]
    assert [w.split(":")[0] for w in named] == ["validation split", "test split"]
    assert metrics["main_metric"] == "accuracy" and metrics["main_metric_reason"] == "chosen in the config (checks.main_metric)"
    assert "test split: the network never predicts class 'yes'" in (tmp_path / "run" / "run.log").read_text()
    assert run_dlw("report", str(tmp_path / "run"), cwd=tmp_path).returncode == 0
    # A fresh process loads the calibrated model.keras (safe mode) and predicts with it.
    predicted = run_dlw("predict", str(tmp_path / "run"), str(tmp_path / "noise.csv"), "--output", str(tmp_path / "p.csv"), cwd=tmp_path)
    assert predicted.returncode == 0, predicted.stderr
    assert len(pd.read_csv(tmp_path / "p.csv")) == len(frame)
    assert "never predicts class &#x27;yes&#x27;" in (tmp_path / "run" / "report.html").read_text()


def test_main_metric_that_does_not_fit_the_task_is_a_one_line_config_error(tmp_path):
    proc = run_dlw("train", "diabetes", "--quiet", "--set", "checks.main_metric=roc_auc", "--out", str(tmp_path / "r"), cwd=tmp_path)
    line = one_error_line(proc)
    assert "key 'checks.main_metric': 'roc_auc' cannot judge a regression task" in line and "rmse" in line


# --- the persistence baseline -----------------------------------------------------------


def weather(n: int = 300, seed: int = 5) -> pd.DataFrame:
    """A daily series: temp_tomorrow is the next day's temp_today; humidity is noise."""
    rng = np.random.default_rng(seed)
    days = pd.date_range("2020-01-01", periods=n + 1, freq="D")
    temp = 15 + 10 * np.sin(2 * np.pi * np.arange(n + 1) / 365) + np.cumsum(rng.normal(0, 0.8, n + 1)) * 0.3 + rng.normal(0, 2, n + 1)
    return pd.DataFrame({
        "date": days[:n].strftime("%Y-%m-%d"), "temp_today": temp[:n].round(2), "humidity": rng.uniform(30, 90, n).round(1),
        "station": "north", "temp_tomorrow": temp[1:].round(2),
    })


def test_persistence_baseline_joins_the_verdict_on_the_same_test_rows(tmp_path):
    frame = weather()
    frame.to_csv(tmp_path / "weather.csv", index=False)
    over = ["model.kind=mlp", "model.hidden_layers=[16]", "train.epochs=10", "checks.bootstrap=200", "data.split.order=time:date", "checks.persistence=temp_today"]
    run = dlw.Workflow.from_config(str(tmp_path / "weather.csv"), target="temp_tomorrow", overrides=over, quiet=True).train(out=tmp_path / "run")
    saved = pd.read_csv(run.path / "test_predictions.csv")
    expected = float(np.sqrt(((saved["temp_today"] - saved["temp_tomorrow"]) ** 2).mean()))
    assert run.metrics["baselines"]["persistence"]["rmse"] == pytest.approx(expected, rel=1e-5)
    assert saved["date"].min() > frame["date"].iloc[int(0.79 * len(frame))], "the test rows are the latest days"
    assert run.metrics["baseline_fits"]["persistence"]["column"] == "temp_today"
    against = run.metrics["advice_persistence"]
    assert against["baseline"] == "persistence" and against["baseline_value"] == pytest.approx(expected, rel=1e-5)
    assert against["network"] == pytest.approx(run.metrics["test"]["rmse"], rel=1e-5)
    if expected < min(b["rmse"] for name, b in run.metrics["baselines"].items() if name != "persistence"):
        assert run.metrics["advice"]["baseline"] == "persistence", "the verdict is judged against the best baseline, persistence included"
    assert "baseline persistence" in (run.path / "run.log").read_text()


def test_persistence_is_suggested_with_a_time_split(tmp_path):
    weather().to_csv(tmp_path / "weather.csv", index=False)
    over = ["model.kind=mlp", "train.epochs=2", "checks.bootstrap=100", "data.split.order=time:date"]
    run = dlw.Workflow.from_config(str(tmp_path / "weather.csv"), target="temp_tomorrow", overrides=over, quiet=True).train(out=tmp_path / "run")
    assert "set checks.persistence: temp_today" in (run.path / "run.log").read_text()
    assert "persistence" not in run.metrics["baselines"]


@pytest.mark.parametrize(
    "column, expected",
    [("temp_yesterday", "column 'temp_yesterday' is not in the data"), ("station", "column 'station' is categorical, expected numeric")],
)
def test_persistence_naming_a_missing_or_unusable_column_is_a_one_line_error(tmp_path, column, expected):
    frame = weather(60)
    frame["station"] = np.where(np.arange(60) % 2, "north", "south")
    frame.to_csv(tmp_path / "weather.csv", index=False)
    proc = run_dlw("train", str(tmp_path / "weather.csv"), "--quiet", "--target", "temp_tomorrow", "--set", f"checks.persistence={column}",
                   "--out", str(tmp_path / "r"), cwd=tmp_path)
    line = one_error_line(proc)
    assert "key 'checks.persistence'" in line and expected in line


def test_class_weighted_binary_run_has_honest_probabilities_and_keeps_its_decisions(tmp_path):
    """Balanced weights on 8% 'yes': weights in training, divided out in model.keras, the weighted decisions kept as a threshold."""
    rare_positives(n=600, seed=6).to_csv(tmp_path / "rare.csv", index=False)
    overrides = [*FAST, "train.class_weight=balanced"]
    run = dlw.Workflow.from_config(str(tmp_path / "rare.csv"), target="outcome", overrides=overrides, quiet=True).train(out=tmp_path / "run")
    calibration = run.metrics["calibration"]
    assert calibration["class_weight_shift"][1] > 0 > calibration["class_weight_shift"][0]
    threshold = json.loads((run.path / "schema.json").read_text())["problem"]["threshold"]
    assert 0 < threshold < 0.5, "the weighted network's decisions, as a threshold on honest probabilities"
    saved = pd.read_csv(run.path / "test_predictions.csv")
    assert (saved["prediction"] == np.where(saved["prob_yes"] > threshold, "yes", "no")).all()
    assert (saved["prediction"] == "yes").sum() >= (saved["outcome"] == "yes").sum() / 2, "the rare class is predicted"
    assert abs(saved["prob_yes"].mean() - (saved["outcome"] == "yes").mean()) < 0.06, "probabilities near the real rate"
    assert calibration["after"]["brier"] < calibration["before"]["brier"]
    layer = keras.models.load_model(run.path / "model.keras", safe_mode=True).layers[-1]
    assert layer.shift == pytest.approx(calibration["class_weight_shift"], abs=1e-3)


def test_default_run_on_a_rare_class_keeps_an_unweighted_loss_and_decides_by_the_class_shares(tmp_path):
    """Defaults (auto) on 8% 'yes': no weights to divide out, and 'yes' is predicted above its share of the train rows."""
    rare_positives(n=600, seed=6).to_csv(tmp_path / "rare.csv", index=False)
    run = dlw.Workflow.from_config(str(tmp_path / "rare.csv"), target="outcome", overrides=FAST, quiet=True).train(out=tmp_path / "run")
    assert run.metrics["calibration"]["class_weight_shift"] is None
    assert run.metrics["main_metric"] == "roc_auc"
    threshold = json.loads((run.path / "schema.json").read_text())["problem"]["threshold"]
    share = float(re.search(r"'yes', is ([0-9.]+)% of the train rows", run.metrics["main_metric_reason"]).group(1)) / 100
    assert threshold == pytest.approx(share, abs=0.0006), "the decision of a balanced model: p(yes) over its share"
    saved = pd.read_csv(run.path / "test_predictions.csv")
    assert (saved["prediction"] == np.where(saved["prob_yes"] > threshold, "yes", "no")).all()
    assert (saved["prediction"] == "yes").sum() >= (saved["outcome"] == "yes").sum() / 2, "the rare class is predicted"

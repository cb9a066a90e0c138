"""Experiment tracking: what a run and a study log to MLflow and TensorBoard, read back from the stores.

One short penguins run (the lesson's MLP, 3 epochs) is tracked with both tools and read back
with ``MlflowClient`` and TensorBoard's ``EventAccumulator``; a 2-trial study checks the
nesting of trials under the study; the CLI checks the one-line errors.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd
import pytest
import yaml

from conftest import run_dlw

mlflow = pytest.importorskip("mlflow", reason="pip install 'dlw[track]'")
pytest.importorskip("tensorboard", reason="pip install 'dlw[track]'")

from mlflow.tracking import MlflowClient  # noqa: E402

SHORT = ["model.kind=mlp", "model.hidden_layers=[16]", "train.epochs=3", "train.batch_size=32", "train.early_stopping=false"]


def _flatten(tree: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _artifacts(client, run_id: str, path: str | None = None) -> set[str]:
    found = set()
    for item in client.list_artifacts(run_id, path):
        found |= _artifacts(client, run_id, item.path) if item.is_dir else {item.path}
    return found


@pytest.fixture(scope="module")
def tracked_run(tmp_path_factory):
    """Penguins trained with ``track.mlflow`` and ``track.tensorboard`` on, in a fresh working directory.

    No tracking URI is given, so the default store (``sqlite:///mlflow.db`` in the working
    directory) is the one under test.
    """
    from dlw import Workflow

    folder = tmp_path_factory.mktemp("tracked")
    cwd, uri = os.getcwd(), os.environ.pop("MLFLOW_TRACKING_URI", None)
    os.chdir(folder)
    try:
        overrides = [*SHORT, "track.mlflow=true", "track.tensorboard=true"]
        run = Workflow.from_config("penguins", overrides=overrides, quiet=True).train(out=folder / "runs" / "penguins")
    finally:
        os.chdir(cwd)
        if uri is not None:
            os.environ["MLFLOW_TRACKING_URI"] = uri
    client = MlflowClient(tracking_uri=f"sqlite:///{folder / 'mlflow.db'}")
    (logged,) = client.search_runs([client.get_experiment_by_name("penguins").experiment_id])
    return run, client, logged


def test_the_default_store_is_sqlite_in_the_working_directory(tracked_run):
    run, client, logged = tracked_run
    assert (run.path.parent.parent / "mlflow.db").is_file()
    assert client.get_run(logged.info.run_id).info.artifact_uri.startswith((run.path.parent.parent / "mlruns").as_uri())
    assert logged.info.status == "FINISHED" and logged.info.run_name == "penguins"
    assert logged.data.tags["dlw.run_folder"] == str(run.path.resolve())


def test_mlflow_has_the_resolved_config_as_dotted_parameters(tracked_run):
    run, client, logged = tracked_run
    config = _flatten(yaml.safe_load((run.path / "config.yaml").read_text()))
    params = logged.data.params
    for key, value in config.items():
        assert params[key] == (value if isinstance(value, str) else json.dumps(value)), key
    assert params["model.hidden_layers"] == "[16]" and params["train.epochs"] == "3" and params["track.mlflow"] == "true"
    # the values dlw planned for the keys left at auto
    assert params["planned.train.batch_size"] == "32"


def test_mlflow_has_one_value_per_epoch_equal_to_history_csv(tracked_run):
    run, client, logged = tracked_run
    history = pd.read_csv(run.path / "history.csv")
    assert len(history) == 3
    for name in ("loss", "val_loss", "accuracy", "val_accuracy"):
        logged_history = client.get_metric_history(logged.info.run_id, name)
        assert [m.step for m in logged_history] == [1, 2, 3], name
        assert [m.value for m in logged_history] == pytest.approx(history[name].tolist(), rel=1e-6), name


def test_mlflow_has_the_test_metrics_baselines_and_verdict(tracked_run):
    run, client, logged = tracked_run
    metrics = json.loads((run.path / "metrics.json").read_text())
    values, tags = logged.data.metrics, logged.data.tags
    for name, value in metrics["test"].items():
        if name != "n":
            assert values[f"test_{name}"] == pytest.approx(value), name
    for baseline, scores in metrics["baselines"].items():
        assert values[f"baseline_{baseline}_{metrics['main_metric']}"] == pytest.approx(scores[metrics["main_metric"]])
    advice = metrics["advice"]
    assert tags["dlw.outcome"] == advice["outcome"] and tags["dlw.verdict"] == advice["verdict"]
    assert tags["dlw.baseline"] == advice["baseline"] and tags["dlw.main_metric"] == metrics["main_metric"]
    assert values["verdict_difference"] == pytest.approx(advice["difference"])
    assert [values["verdict_ci95_low"], values["verdict_ci95_high"]] == pytest.approx(advice["ci95"])


def test_mlflow_has_the_run_folder_as_artifacts(tracked_run):
    run, client, logged = tracked_run
    on_disk = {str(p.relative_to(run.path)) for p in run.path.rglob("*") if p.is_file()}
    assert _artifacts(client, logged.info.run_id) == on_disk
    assert {"model.keras", "metrics.json", "config.yaml"} <= on_disk
    assert any(path.startswith("tensorboard/train/") for path in on_disk)


def test_tensorboard_event_files_hold_each_epoch(tracked_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.util import tensor_util

    run, _, _ = tracked_run
    history = pd.read_csv(run.path / "history.csv")
    for split, prefix in (("train", ""), ("validation", "val_")):
        events = EventAccumulator(str(run.path / "tensorboard" / split), size_guidance={"tensors": 0})
        events.Reload()
        for name in ("loss", "accuracy"):
            written = events.Tensors(f"epoch_{name}")
            assert [e.step for e in written] == [0, 1, 2]
            values = [float(tensor_util.make_ndarray(e.tensor_proto)) for e in written]
            assert values == pytest.approx(history[prefix + name].tolist(), rel=1e-6), (split, name)


@pytest.mark.slow
def test_a_study_logs_one_nested_run_per_trial(tmp_path, monkeypatch):
    from dlw.spec import load_spec
    from dlw.tune import tune

    monkeypatch.chdir(tmp_path / "..")  # artifacts go beside the database, not into the working directory
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    space = "tune.search_space={model.dropout: {float: [0.0, 0.5]}}"
    overrides = [*SHORT, "tune.trials=2", "tune.pruner=none", space, "track.mlflow=true", f"track.mlflow_uri={uri}", "track.experiment=study",
                 "track.tensorboard=true"]
    result = tune(load_spec("penguins", overrides=overrides), out=tmp_path / "tuned", study_name="pen")
    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("study").experiment_id])
    (study,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == study.info.run_id]
    trials = sorted((r for r in children if r.info.run_name.startswith("trial ")), key=lambda r: r.info.run_name)
    best = [r for r in children if r.info.run_name == "best"]
    assert study.info.run_name == "pen (study)" and study.info.status == "FINISHED"
    assert [r.info.run_name for r in trials] == ["trial 0", "trial 1"] and len(best) == 1 and len(runs) == 4
    table = pd.read_csv(tmp_path / "tuned" / "tuning.csv").set_index("number")
    for trial in trials:
        number = int(trial.data.tags["dlw.trial"])
        assert float(trial.data.params["model.dropout"]) == pytest.approx(table.loc[number, "model.dropout"])
        assert trial.data.metrics["trial_value"] == pytest.approx(table.loc[number, "value"])
        assert [m.step for m in client.get_metric_history(trial.info.run_id, "val_loss")] == [1, 2, 3]
    assert study.data.tags["dlw.best_trial"] == str(result.best_number)
    assert {"tuning.csv", "best.yaml"} <= _artifacts(client, study.info.run_id)
    assert (tmp_path / "mlruns").is_dir() and not (tmp_path.parent / "mlruns").exists()
    for trial in ("trial_0", "trial_1"):  # each trial's TensorBoard logs in the tuning folder; the best run's in its own
        assert list((tmp_path / "tuned" / "tensorboard" / trial / "validation").glob("events.out.tfevents.*"))
    assert list((tmp_path / "tuned" / "best" / "tensorboard" / "train").glob("events.out.tfevents.*"))
    assert best[0].data.tags["dlw.outcome"] == result.run.metrics["advice"]["outcome"]


def test_track_names_a_known_tool(tmp_path):
    done = run_dlw("train", "penguins", "--track", "wandb", "--out", tmp_path / "run", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == ["dlw: error: --track wandb: expected one of mlflow, tensorboard; received 'wandb'"]


def test_without_the_extra_the_error_says_what_to_install(tmp_path):
    """A process in which ``import mlflow`` fails, as it does without ``dlw[track]``."""
    code = "import sys; sys.modules['mlflow'] = None; from dlw.cli import main; main()"
    args = ["train", "penguins", "--track", "mlflow", "--out", str(tmp_path / "run"), "--set", "train.epochs=1"]
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert "track.mlflow" in line and "pip install 'dlw[track]'" in line
    assert not (tmp_path / "run").exists() and not (tmp_path / "mlflow.db").exists()


def test_a_run_that_fails_ends_failed_in_mlflow(tmp_path):
    from dlw import Workflow
    from dlw.errors import DlwError

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    overrides = [*SHORT, "data.features=[no_such_column]", "track.mlflow=true", f"track.mlflow_uri={uri}"]
    with pytest.raises(DlwError, match="no_such_column"):
        Workflow.from_config("penguins", overrides=overrides, quiet=True).train(out=tmp_path / "run")
    client = MlflowClient(tracking_uri=uri)
    (logged,) = client.search_runs([client.get_experiment_by_name("penguins").experiment_id])
    assert logged.info.status == "FAILED" and logged.data.tags["dlw.state"] == "FAILED"
    assert not (tmp_path / "run").exists()


def test_a_store_mlflow_cannot_use_is_one_line(tmp_path):
    done = run_dlw("train", "penguins", "--track", "mlflow", "--set", "track.mlflow_uri=file:./mlruns", "--out", tmp_path / "run", cwd=tmp_path)
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("dlw: error: track.mlflow: cannot use the MLflow store file:./mlruns") and "sqlite:///mlflow.db" in line


def test_epochs_count_on_across_a_fine_tuning_phase(tmp_path):
    """Two fits with the same callbacks (as fit_phases does for a backbone): steps 1..5 in MLflow, 0..4 in TensorBoard."""
    import keras
    import numpy as np
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from dlw.spec import load_spec
    from dlw.tracking import Tracker

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    config = load_spec("penguins", overrides=["track.mlflow=true", "track.tensorboard=true", f"track.mlflow_uri={uri}"])
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    x, y = np.random.default_rng(0).normal(size=(32, 2)), np.zeros(32)
    with Tracker(config, name="phases", logs_in=tmp_path / "tb") as tracker:
        callbacks = tracker.callbacks()
        model.fit(x, y, epochs=3, verbose=0, callbacks=callbacks)
        model.fit(x, y, epochs=2, verbose=0, callbacks=callbacks)
    client = MlflowClient(tracking_uri=uri)
    assert [m.step for m in client.get_metric_history(tracker.run_id, "loss")] == [1, 2, 3, 4, 5]
    events = EventAccumulator(str(tmp_path / "tb" / "train"), size_guidance={"tensors": 0})
    events.Reload()
    assert sorted(e.step for e in events.Tensors("epoch_loss")) == [0, 1, 2, 3, 4]

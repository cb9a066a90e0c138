"""The shipped example configs are valid, and the own-data example (a latin-1 CSV) trains well."""

from pathlib import Path

import pytest

from dlw import Workflow
from dlw.spec import load_spec

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


# Their image folders are made by examples/make_digit_folders.py (tested below on a copy).
FOLDER_EPISODES = ("cnn", "transfer")


@pytest.mark.parametrize("config", sorted(p for p in EXAMPLES.glob("*.yaml") if p.stem not in FOLDER_EPISODES), ids=lambda p: p.name)
def test_example_config_is_valid(config):
    spec = load_spec(config)
    assert spec.data.target
    if spec.data.source.endswith(".csv"):
        assert Path(spec.data.source).is_file(), "relative data paths resolve against the config's folder"


def test_houses_example_beats_the_mean_by_far(tmp_path):
    run = Workflow.from_config(EXAMPLES / "houses.yaml", quiet=True).train(out=tmp_path / "houses")
    metrics = run.metrics
    assert metrics["task"] == "regression"
    assert metrics["test"]["r2"] > 0.8
    assert metrics["test"]["rmse"] < 0.5 * metrics["baselines"]["mean"]["rmse"]
    assert "listing_id" in run.schema.excluded, "the sequential listing number is recognised as an ID"
    assert {f.name: f.kind for f in run.schema.features}["garden"] == "boolean"


# --- the lesson's episodes (issue 12) ---------------------------------------------

EPISODE_FAST = ["train.epochs=4", "checks.bootstrap=200"]


@pytest.fixture(scope="module")
def examples_copy(tmp_path_factory):
    """The examples folder copied aside, with the digit image folders made by its one command."""
    import shutil
    import subprocess
    import sys

    root = tmp_path_factory.mktemp("examples") / "examples"
    shutil.copytree(EXAMPLES, root, ignore=shutil.ignore_patterns("digit_folders", "__pycache__"))
    made = subprocess.run([sys.executable, str(root / "make_digit_folders.py")], capture_output=True, text=True, check=True)
    assert "images of digits 0-4" in made.stdout
    return root


def test_episode_configs_are_valid(examples_copy, tmp_path):
    import shutil

    from dlw.errors import ConfigError

    shutil.copy(examples_copy / "cnn.yaml", tmp_path / "cnn.yaml")  # beside no digit_folders/
    with pytest.raises(ConfigError, match="key 'data.source': .*digit_folders/zero-to-four does not exist"):
        load_spec(tmp_path / "cnn.yaml")
    for name in ("weather", "cnn", "transfer"):
        spec = load_spec(examples_copy / f"{name}.yaml")
        assert Path(spec.data.source).exists(), name
    assert len(list((examples_copy / "digit_folders" / "five-to-nine").rglob("*.png"))) == 100


@pytest.mark.slow
def test_weather_episode_measures_the_network_against_tomorrow_equals_today(examples_copy, tmp_path):
    import pandas as pd

    run = Workflow.from_config(examples_copy / "weather.yaml", overrides=EPISODE_FAST, quiet=True).train(out=tmp_path / "weather")
    saved = pd.read_csv(run.path / "test_predictions.csv")
    persistence = float(((saved["temp_today"] - saved["temp_tomorrow"]) ** 2).mean() ** 0.5)
    assert run.metrics["baselines"]["persistence"]["rmse"] == pytest.approx(persistence, rel=1e-5)
    assert run.metrics["advice_persistence"]["baseline"] == "persistence"
    days = sorted(pd.read_csv(examples_copy / "weather.csv")["date"])
    assert saved["date"].min() > days[int(0.79 * len(days))], "the test rows are the latest days"


@pytest.mark.slow
def test_cnn_then_transfer_episodes(examples_copy, tmp_path):
    """cnn.yaml trains on digits 0-4; transfer.yaml fine-tunes that run on 20 images of each digit 5-9."""
    cnn = Workflow.from_config(examples_copy / "cnn.yaml", overrides=EPISODE_FAST, quiet=True).train(out=examples_copy.parent / "runs" / "cnn")
    assert cnn.metrics["test"]["accuracy"] > 0.5
    transfer = Workflow.from_config(examples_copy / "transfer.yaml", overrides=EPISODE_FAST, quiet=True).train(out=tmp_path / "transfer")
    assert transfer.config.model.backbone == str(cnn.path.resolve())
    assert "pretrained" in (transfer.path / "run.log").read_text()
    assert set(transfer.problem.classes) == {"d5", "d6", "d7", "d8", "d9"}

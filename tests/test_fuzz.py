"""Inputs fuzzed (issue 14): malformed tables, configs and prediction rows end in exit 0 or 2, never a crash.

Hypothesis generates the inputs; each goes through the Python API inside the CLI's own
error boundary (``dlw.errors.exit_status_and_line``), so status 1 here is exactly what a CLI
user would see as "internal error". A few real CLI processes check that boundary itself,
and ``-m slow`` sends every generated table through ``dlw train`` as a process.
"""

from __future__ import annotations

import codecs
import os
import resource
import signal
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings, strategies as st

from conftest import binary_frame, write_csv
from dlw import Workflow
from dlw.console import QUIET
from dlw.data.kinds import prepare
from dlw.errors import exit_status_and_line
from dlw.spec import load_spec

HANG_SECONDS = 60
def fuzz(examples: int) -> settings:
    """Hypothesis settings: ``examples`` inputs, derandomized (the same inputs every run), no deadline (hangs are caught below)."""
    return settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), database=None, derandomize=True)
OUTCOMES: list[int] = []  # every fuzzed input's exit status, counted at the end


@contextmanager
def no_hang(seconds: int = HANG_SECONDS):
    def alarm(*_):
        raise TimeoutError(f"hung: over {seconds} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def outcome(call) -> tuple[int, str]:
    """``(exit status, stderr line)`` as the CLI would report ``call()``; a hang fails the test."""
    with no_hang():
        try:
            call()
        except TimeoutError:
            raise
        except Exception as exc:
            status, line = exit_status_and_line(exc)
            OUTCOMES.append(status)
            return status, line
    OUTCOMES.append(0)
    return 0, ""


def assert_clean(status: int, line: str) -> None:
    assert status in (0, 2), line  # 1 is dlw's "internal error": a crash
    assert "\n" not in line and "Traceback" not in line


def prepared_outcome(path: Path, target: str = "y", overrides=()) -> tuple[int, str]:
    """Steps 1-3 (load, formulate, schema, split, encode) on ``path``: where malformed tables are caught."""
    return outcome(lambda: prepare(load_spec(str(path), target, list(overrides)), QUIET))


# --- tables ---------------------------------------------------------------------------

FIELDS = st.one_of(
    st.integers(-10**12, 10**12).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["", " ", "NaN", "nan", "inf", "-inf", "Infinity", "NA", "null", "None", "?", "1e309", "-0", "1,5", "TRUE", "no"]),
    st.sampled_from(['"quoted, with comma"', '"unbalanced', 'say ""hi""', "a\"b", "x" * 200_000, "é ü ñ 中文 🙂", "\u00a0", "\\", "\r"]),
    st.text(max_size=20),
)
DELIMITERS = st.sampled_from([",", ";", "\t", "|", " ", ":"])
ENCODINGS = st.sampled_from(["utf-8", "latin-1", "cp1252", "utf-16", "utf-8-sig", "shift_jis"])


@st.composite
def csv_bytes(draw) -> bytes:
    """A CSV-ish file: a header (maybe with the target ``y``), rows of random fields, mixed delimiters and encodings."""
    n_cols = draw(st.integers(1, 6))
    names = draw(st.lists(st.sampled_from(["y", "a", "b", "c", "", "y ", "a"]), min_size=n_cols, max_size=n_cols))
    delimiter = draw(DELIMITERS)
    rows = draw(st.lists(st.lists(FIELDS, min_size=0, max_size=n_cols + 1), min_size=0, max_size=30))
    lines = [delimiter.join(names)] + [draw(DELIMITERS) if draw(st.booleans()) and i % 7 == 3 else delimiter.join(r) for i, r in enumerate(rows)]
    parts = []
    for line in lines:
        encoding = draw(ENCODINGS)
        parts.append(line.encode(encoding, errors="replace") + b"\n")
    return b"".join(parts)


@fuzz(120)
@given(raw=st.binary(max_size=4096))
@example(raw=b"")
@example(raw=b"\x00" * 100)
@example(raw=codecs.BOM_UTF16_LE + "y,a\n1,2\n".encode("utf-16-le"))
def test_random_bytes(tmp_path_factory, raw):
    path = tmp_path_factory.mktemp("bytes") / "data.csv"
    path.write_bytes(raw)
    assert_clean(*prepared_outcome(path))


@fuzz(100)
@given(raw=csv_bytes())
def test_random_csv_text(tmp_path_factory, raw):
    path = tmp_path_factory.mktemp("csv") / "data.csv"
    path.write_bytes(raw)
    assert_clean(*prepared_outcome(path))


COLUMN_VALUES = {
    "number": st.one_of(st.floats(allow_nan=True, allow_infinity=True).map(repr), st.integers(-10**6, 10**6).map(str), st.sampled_from(["", "NaN", "inf", "-inf", "1e309", "NA"])),
    "category": st.sampled_from(["red", "green", "blue", "", "RED", " red", "n/a", "é", "中文", "None"]),
    "text": st.text(max_size=60).map(lambda t: '"' + t.replace('"', '""') + '"'),
    "flag": st.sampled_from(["yes", "no", "true", "false", "1", "0", "", "maybe"]),
}


@st.composite
def table_bytes(draw, header: list[str] | None = None) -> bytes:
    """A table that is mostly well formed (one delimiter, one encoding, one field count), so it gets deep into the schema
    and the split, with odd values in its columns and now and then one damaged row."""
    kinds = draw(st.lists(st.sampled_from(sorted(COLUMN_VALUES)), min_size=1, max_size=5))
    names = header or [f"c{i}" for i in range(len(kinds))] + ["y"]
    kinds = (kinds * len(names))[: len(names) - 1] + [draw(st.sampled_from(["number", "category", "flag"]))]
    delimiter = draw(st.sampled_from([",", ";", "\t", "|"]))
    n_rows = draw(st.integers(0, 80))
    rows = [[draw(COLUMN_VALUES[k]).replace(delimiter, " ") for k in kinds] for _ in range(n_rows)]
    if rows and draw(st.integers(0, 9)) == 0:
        rows[draw(st.integers(0, len(rows) - 1))].append("stray")
    text = "\n".join(delimiter.join(r) for r in [names, *rows]) + "\n"
    return text.encode(draw(st.sampled_from(["utf-8", "utf-8-sig", "cp1252", "utf-16"])), errors="replace")


@fuzz(140)
@given(raw=table_bytes())
def test_mostly_well_formed_tables(tmp_path_factory, raw):
    path = tmp_path_factory.mktemp("table") / "data.csv"
    path.write_bytes(raw)
    assert_clean(*prepared_outcome(path))


def edge_tables() -> dict[str, str]:
    rng = np.random.default_rng(0)
    numbers = lambda n: "\n".join(f"{x:.3f},{y}" for x, y in zip(rng.normal(size=n), rng.integers(0, 2, n)))  # noqa: E731
    return {
        "one_class": "x,y\n" + "\n".join(f"{i},same" for i in range(50)),
        "all_missing_target": "x,y\n" + "\n".join(f"{i}," for i in range(50)),
        "ten_thousand_classes": "x,y\n" + "\n".join(f"{i},class{i}" for i in range(10_000)),
        "one_row": "x,y\n1,0\n",
        "two_rows": "x,y\n1,0\n2,1\n",
        "header_only": "x,y\n",
        "wide_one_row": ",".join(f"c{i}" for i in range(100_000)) + ",y\n" + ",".join("1" for _ in range(100_000)) + ",0\n",
        "nan_inf_strings": "x,y\n" + "\n".join(f"{v},{i % 2}" for i, v in enumerate(["nan", "inf", "-inf", "NaN", "1e309"] * 20)),
        "all_inf_numbers": "x,y\n" + "\n".join(f"inf,{i % 2}" for i in range(60)),
        "huge_field": "x,y\n" + "\n".join(f"{'z' * 100_000},{i % 2}" for i in range(40)),
        "target_is_float_noise": "x,y\n" + numbers(80).replace(",0", ",1e300").replace(",1", ",-1e300"),
        "empty_fields": "x,y,z\n" + "\n".join(f",{i % 2}," for i in range(60)),
        "inf_in_number_target": "x,y\n" + "\n".join(f"{i},{v}" for i, v in enumerate([1.5, 2.25, 3.75, "inf", 5.5] * 12)),
        "float32_overflow_target": "x,y\n" + "\n".join(f"{i},{v}" for i, v in enumerate([1.5, 2.25, 1e300, -1e300] * 15)),
        "bom_and_crlf": "\ufeffx,y\r\n" + "\r\n".join(f"{i},{i % 3}" for i in range(60)),
    }


@pytest.mark.parametrize("name", sorted(edge_tables()))
def test_edge_tables(tmp_path, name):
    path = tmp_path / f"{name}.csv"
    path.write_text(edge_tables()[name], encoding="utf-8")
    assert_clean(*prepared_outcome(path))


# --- configs --------------------------------------------------------------------------

KEYS = [
    "name", "task", "loss", "metrics", "data.target", "data.features", "data.types", "data.split.validation", "data.split.test",
    "data.split.order", "data.image_size", "data.max_memory_mb", "model.kind", "model.hidden_layers", "model.dropout",
    "model.ensemble", "model.embeddings", "train.epochs", "train.batch_size", "train.optimizer", "train.learning_rate",
    "train.early_stopping", "train.early_stopping.patience", "train.schedule", "checks.bootstrap", "tune.trials", "nonsense.key", "",
]
VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-10**20, 10**20), st.floats(allow_nan=True), st.text(max_size=12), st.sampled_from(["auto", "y", "0", "-1", "[1", "{", "time:x"])),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=6,
)


@fuzz(120)
@given(pairs=st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=4), overrides=st.lists(st.text(max_size=30), max_size=3))
def test_malformed_configs(tmp_path_factory, pairs, overrides):
    table = tmp_path_factory.getbasetemp() / "config_table.csv"
    if not table.exists():
        write_csv(binary_frame(120), table)
    raw: dict = {"data": {"source": str(table), "target": "label"}}
    for key, value in pairs.items():
        node, *path = [raw, *key.split(".")]
        for part in path[:-1]:
            node = node.setdefault(part, {}) if isinstance(node.get(part, {}), dict) else {}
        node[path[-1] if path else ""] = value
    status, line = outcome(lambda: load_spec(raw, overrides=overrides))
    assert_clean(status, line)


# --- predictions on malformed rows ----------------------------------------------------


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzz-run")
    table = write_csv(binary_frame(160), folder / "customers.csv")
    wf = Workflow.from_config(str(table), target="label", overrides=["train.epochs=1", "model.ensemble=2"], quiet=True)
    return wf.train(out=folder / "run")


PREDICT_HEADER = ["customer_id", "tenure", "monthly_fee", "usage", "plan", "member", "region", "comment"]


@fuzz(100)
@given(raw=st.one_of(table_bytes(header=PREDICT_HEADER), table_bytes(header=PREDICT_HEADER[1:3] + ["extra"]), csv_bytes(), st.binary(max_size=512)))
def test_predict_on_malformed_rows(trained_run, tmp_path_factory, raw):
    path = tmp_path_factory.mktemp("rows") / "rows.csv"
    path.write_bytes(raw)
    assert_clean(*outcome(lambda: trained_run.predict(path)))


# --- the boundary itself, and the totals ----------------------------------------------


def test_a_tiny_training_on_odd_but_valid_tables(tmp_path):
    """Tables that pass the loader go on through training (1 epoch) and measurement cleanly."""
    for name in ("nan_inf_strings", "bom_and_crlf"):
        path = tmp_path / f"{name}.csv"
        path.write_text(edge_tables()[name], encoding="utf-8")
        wf = lambda: Workflow.from_config(str(path), target="y", overrides=["train.epochs=1", "model.ensemble=2"], quiet=True).train(out=tmp_path / name)  # noqa: E731
        assert_clean(*outcome(wf))


@pytest.mark.parametrize(
    "content, args",
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00garbage", ["--target", "y"]),
        (b"x,y\n" + b"\n".join(b"%d,same" % i for i in range(30)), ["--target", "y"]),
        (b"x,y\n1,0\n2,1\n", ["--target", "y", "--set", "train.epochs=-3"]),
    ],
)
def test_cli_spot_checks(tmp_path, content, args):
    path = tmp_path / "data.csv"
    path.write_bytes(content)
    proc = subprocess.run([sys.executable, "-m", "dlw", "train", str(path), *args, "--out", str(tmp_path / "run")], capture_output=True, text=True, timeout=300)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("dlw: error: "), proc.stderr


def test_zz_the_totals(request):
    """After the generated tests in this module: how many inputs, no crash, memory under 4 GB."""
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"\nfuzzed inputs: {len(OUTCOMES)}; exit 0: {OUTCOMES.count(0)}, exit 2: {OUTCOMES.count(2)}, other: {len([s for s in OUTCOMES if s not in (0, 2)])}; peak memory {peak_gb:.2f} GB")
    assert peak_gb < 4
    assert all(s in (0, 2) for s in OUTCOMES)


CLI_EXAMPLES = int(os.environ.get("DLW_FUZZ_CLI_EXAMPLES", "300"))
CLI_OUTCOMES: list[int] = []


@pytest.mark.slow
@fuzz(CLI_EXAMPLES)
@given(raw=st.one_of(table_bytes(), csv_bytes(), st.binary(max_size=2048)))
def test_fuzzed_tables_through_real_cli_processes(tmp_path_factory, raw):
    """Every generated table through ``dlw train`` as a process (1 epoch): exit 0 or 2, one line, no hang, under 4 GB."""
    folder = tmp_path_factory.mktemp("cli-fuzz")
    (folder / "data.csv").write_bytes(raw)
    args = ["train", "data.csv", "--target", "y", "--out", "run", "--quiet", "--set", "train.epochs=1", "--set", "model.ensemble=2"]
    proc = subprocess.run([sys.executable, "-m", "dlw", *args], cwd=folder, capture_output=True, text=True, timeout=HANG_SECONDS * 5)
    CLI_OUTCOMES.append(proc.returncode)
    assert proc.returncode in (0, 2) and "Traceback" not in proc.stderr, proc.stderr
    if proc.returncode == 2:
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("dlw: error: "), proc.stderr
    peak_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20  # the largest child so far
    assert peak_gb < 4, f"a dlw process used {peak_gb:.1f} GB"


@pytest.mark.slow
def test_zz_cli_totals():
    """After the CLI fuzz test: how its processes ended (printed with -s)."""
    print(f"\nCLI fuzz: {len(CLI_OUTCOMES)} processes; exit 0: {CLI_OUTCOMES.count(0)}, exit 2: {CLI_OUTCOMES.count(2)}, other: {len([c for c in CLI_OUTCOMES if c not in (0, 2)])}")
    assert all(c in (0, 2) for c in CLI_OUTCOMES)

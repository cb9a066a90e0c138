"""Shared fixtures: real CSV files on disk, and small trained runs reused across tests.

KERAS_HOME and KERAS_BACKEND are set here, at import time, before any test module
(or dlw itself) imports keras, so that tests never write to the user's ~/.keras.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile

_KERAS_HOME = tempfile.mkdtemp(prefix="dlw-tests-keras-home-")
atexit.register(shutil.rmtree, _KERAS_HOME, ignore_errors=True)
os.environ["KERAS_HOME"] = _KERAS_HOME
os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# Compiling is about half of a small table's run on a CPU, and the tests' networks are small and train
# for seconds: XLA's CPU code generated without LLVM's optimizations compiles faster (test_golden.py:
# 58 s -> 38 s) and still reproduces the recorded outputs. Stop 29 in bench/RESULTS.md has the suite's times.
if "--xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0").strip()
# Compiled programs are kept for this session only (never in the user's ~/.cache), shared by every test process:
# pytest-xdist's workers inherit the folder the controlling process made, and the CLI's subprocesses a worker's.
if "DLW_TESTS_JAX_CACHE" not in os.environ:
    os.environ["DLW_TESTS_JAX_CACHE"] = tempfile.mkdtemp(prefix="dlw-tests-jax-cache-")
    atexit.register(shutil.rmtree, os.environ["DLW_TESTS_JAX_CACHE"], ignore_errors=True)  # by the process that made it, which exits last
os.environ["JAX_COMPILATION_CACHE_DIR"] = os.environ["DLW_TESTS_JAX_CACHE"]
from dlw._backend import keep_compiled_programs  # noqa: E402

keep_compiled_programs()

import subprocess  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

# Short training for tests: a few epochs are enough on the synthetic tables below (one learning-rate
# cycle: a regression table's further cycles are tested in tests/test_tabm.py and tests/test_resume.py).
# TEXT_BUCKETS: the customers' comments are noise, and AdamW updates every row of the default 65,536-row
# n-gram table at every step (a warm 400-row run fitted in 3.4 s with 1,024 buckets, 11.4 s without).
TEXT_BUCKETS = "data.text.buckets=1024"
FAST = ["train.epochs=30", "train.early_stopping.patience=10", "model.hidden_layers=[32,16]", "train.cycles=1", TEXT_BUCKETS]
FAST_CLI = [arg for item in FAST for arg in ("--set", item)]

PLANS = ["basic", "plus", "pro"]
WORDS = ["great", "service", "slow", "support", "price", "too", "high", "love", "the", "app", "would", "recommend"]


# --- synthetic tables ---------------------------------------------------------


def _comments(rng: np.random.Generator, n: int) -> list[str]:
    return [" ".join(rng.choice(WORDS, size=rng.integers(5, 10))) for _ in range(n)]


def binary_frame(n: int = 400, seed: int = 0) -> pd.DataFrame:
    """Customers: mixed column types, missing values, an ID, free text; ``label`` from a noisy rule.

    ``label`` is 'churn' when ``tenure`` is low and ``monthly_fee`` high (plus noise),
    so a model that reads those two columns does far better than the majority class.
    """
    rng = np.random.default_rng(seed)
    tenure = rng.normal(24, 10, n).round(1)
    fee = rng.normal(50, 15, n).round(2)
    plan = rng.choice(PLANS, size=n)
    member = rng.choice(["yes", "no"], size=n)
    score = -(tenure - 24) / 10 + (fee - 50) / 15 + rng.normal(0, 0.35, n)
    label = np.where(score > 0, "churn", "stay")
    frame = pd.DataFrame(
        {
            "customer_id": [f"C{100000 + i}" for i in range(n)],
            "tenure": tenure,
            "monthly_fee": fee,
            "plan": plan,
            "member": member,
            "region": "north",  # constant: never an input
            "comment": _comments(rng, n),
            "label": label,
        }
    )
    # Missing values in numeric, categorical and boolean inputs (not in the two columns that decide the label).
    frame.loc[rng.choice(n, n // 16, replace=False), "plan"] = np.nan
    frame.loc[rng.choice(n, n // 25, replace=False), "member"] = np.nan
    extra = rng.normal(0, 1, n).round(3)
    extra[rng.choice(n, n // 13, replace=False)] = np.nan
    frame.insert(3, "usage", extra)
    return frame


def regression_frame(n: int = 400, seed: int = 1) -> pd.DataFrame:
    """Houses: ``price`` = a linear rule on area, rooms and a category, plus noise."""
    rng = np.random.default_rng(seed)
    area = rng.uniform(40, 200, n).round(1)
    rooms = rng.integers(1, 7, n)
    district = rng.choice(["centre", "suburb", "rural"], size=n)
    garden = rng.choice([True, False], size=n)
    bonus = pd.Series(district).map({"centre": 60.0, "suburb": 20.0, "rural": 0.0}).to_numpy()
    price = 2.0 * area + 8.0 * rooms + bonus + 10.0 * garden + rng.normal(0, 10, n)
    frame = pd.DataFrame(
        {
            "house_id": np.arange(1, n + 1),
            "area": area,
            "rooms": rooms,
            "district": district,
            "garden": garden,
            "price": price.round(2),
        }
    )
    frame.loc[rng.choice(n, n // 20, replace=False), "area"] = np.nan
    return frame


def multiclass_frame(n: int = 360, seed: int = 2) -> pd.DataFrame:
    """Three well separated clusters in (x1, x2) plus a categorical column that helps a little."""
    rng = np.random.default_rng(seed)
    species = rng.choice(["alpha", "beta", "gamma"], size=n)
    centres = {"alpha": (0.0, 0.0), "beta": (3.0, 0.0), "gamma": (1.5, 3.0)}
    x1 = np.array([centres[s][0] for s in species]) + rng.normal(0, 0.6, n)
    x2 = np.array([centres[s][1] for s in species]) + rng.normal(0, 0.6, n)
    colour = np.where(rng.random(n) < 0.7, pd.Series(species).map({"alpha": "red", "beta": "green", "gamma": "blue"}), "grey")
    return pd.DataFrame({"x1": x1.round(3), "x2": x2.round(3), "colour": colour, "species": species})


def write_csv(frame: pd.DataFrame, path: Path, **kwargs) -> Path:
    path = Path(path)
    frame.to_csv(path, index=False, **kwargs)
    return path


# --- file fixtures -------------------------------------------------------------


@pytest.fixture
def binary_csv(tmp_path) -> Path:
    return write_csv(binary_frame(), tmp_path / "customers.csv")


@pytest.fixture
def regression_csv(tmp_path) -> Path:
    return write_csv(regression_frame(), tmp_path / "houses.csv")


@pytest.fixture
def multiclass_csv(tmp_path) -> Path:
    return write_csv(multiclass_frame(), tmp_path / "clusters.csv")


# --- trained runs shared by several tests (each trained once per session) ------


@pytest.fixture(scope="session")
def binary_run(tmp_path_factory):
    """A binary run trained on ``customers.csv``; returns ``(run, csv_path)``. Read-only for tests."""
    from dlw import Workflow

    folder = tmp_path_factory.mktemp("binary_run")
    csv = write_csv(binary_frame(), folder / "customers.csv")
    run = Workflow.from_config(str(csv), target="label", overrides=FAST, quiet=True).train(out=folder / "run")
    return run, csv


@pytest.fixture(scope="session")
def regression_run(tmp_path_factory):
    """A regression run trained on ``houses.csv``; returns ``(run, csv_path)``. Read-only for tests."""
    from dlw import Workflow

    folder = tmp_path_factory.mktemp("regression_run")
    csv = write_csv(regression_frame(), folder / "houses.csv")
    overrides = ["train.epochs=60", "train.early_stopping.patience=15", "train.learning_rate=0.01", "train.cycles=1"]
    run = Workflow.from_config(str(csv), target="price", overrides=overrides, quiet=True).train(out=folder / "run")
    return run, csv


@pytest.fixture(scope="session")
def diabetes_run(tmp_path_factory):
    """scikit-learn's diabetes table (a real regression target) with every default: five cross-fitted networks. Read-only."""
    from dlw import Workflow

    return Workflow.from_config("diabetes", quiet=True).train(out=tmp_path_factory.mktemp("diabetes") / "run")


@pytest.fixture(scope="session")
def penguins_run(tmp_path_factory):
    """The built-in penguins trained for 3 epochs (the default tabm model); returns the ``Run``. Read-only for tests."""
    from dlw import Workflow

    folder = tmp_path_factory.mktemp("penguins_run")
    return Workflow.from_config("penguins", overrides=["train.epochs=3"], quiet=True).train(out=folder / "run")


@pytest.fixture(scope="session")
def digits_cnn_run(tmp_path_factory):
    """A tiny CNN (8 and 16 filters) on the built-in 8x8 digits, 2 epochs; returns the ``Run``. Read-only for tests."""
    from dlw import Workflow

    folder = tmp_path_factory.mktemp("digits_cnn_run")
    overrides = ["train.epochs=2", "model.conv_filters=[8,16]", "model.dense_layers=[32]"]
    return Workflow.from_config("digits", overrides=overrides, quiet=True).train(out=folder / "run")


# --- running the CLI -----------------------------------------------------------


def kill_at(monkeypatch, point: str, nth: int) -> None:
    """Make the ``nth`` pass through ``point`` of dlw.resume's fault injection (``dlw.runs.pause_point``) raise
    KeyboardInterrupt, as Ctrl-C there would; ``monkeypatch.undo()`` ends it."""
    import dlw.resume

    seen = []

    def pause(name: str) -> None:
        seen.append(name)
        if name == point and seen.count(point) == nth:
            raise KeyboardInterrupt

    monkeypatch.setattr(dlw.resume, "pause_point", pause)


def run_dlw(*args, cwd=None, timeout=300, env=None) -> subprocess.CompletedProcess:
    """Run ``python -m dlw ARGS`` in a subprocess; text output captured. ``env`` values of None unset a variable."""
    full_env = dict(os.environ)
    for key, value in (env or {}).items():
        if value is None:
            full_env.pop(key, None)
        else:
            full_env[key] = value
    return subprocess.run(
        [sys.executable, "-m", "dlw", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
    )


BENCH = Path(__file__).resolve().parents[1] / "bench"


def bench_module(name: str):
    """A script of bench/ imported as a module (bench/ is not a package), for tests of what it computes."""
    import importlib

    sys.path.insert(0, str(BENCH))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(BENCH))


# --- the order the two test workers take files in -------------------------------------------
# With --dist loadfile a worker takes a whole file, and the other sits idle while the last one
# finishes, so the longest files go first and the many short ones fill in at the end: the files
# over 50 s of the default suite, longest first (stop 29, `pytest --durations=0` on 2 cores, two
# workers: 351 s for test_workflow.py down to 56 s). A file not named here goes after these.
LONGEST_FILES_FIRST = (
    "test_workflow.py", "test_cli.py", "test_images.py", "test_tune.py", "test_tabm.py", "test_columns.py", "test_crossfit.py",
    "test_classes.py", "test_honest_tables.py", "test_resume.py", "test_share.py", "test_fuzz.py", "test_pretrained.py",
)


def pytest_collection_modifyitems(config, items):
    rank = {name: k for k, name in enumerate(LONGEST_FILES_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: a file's own order is kept

"""Resume (issue 14): a killed or interrupted training carries on from its last completed epoch.

The default table model (tabm) trains with a warm-up + cosine schedule, so these runs check
that the optimizer's iteration count comes back too: a resumed run whose schedule restarted
would end with different weights.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import dlw.resume
from conftest import TEXT_BUCKETS, binary_frame, kill_at, regression_frame, write_csv
from dlw import Workflow
from dlw.errors import ConfigError, DataError, DlwError

EPOCHS = ["train.epochs=6", "model.ensemble=4", "train.checkpoint_seconds=0", TEXT_BUCKETS]  # a save after every epoch, so the kill points are exact


@pytest.fixture
def table(tmp_path) -> Path:
    return write_csv(binary_frame(240), tmp_path / "customers.csv")


def train(table: Path, out: Path, overrides=(), **kwargs):
    return Workflow.from_config(str(table), target="label", overrides=[*EPOCHS, *overrides], quiet=True).train(out=out, **kwargs)


def interrupt_at(monkeypatch, epoch: int) -> None:
    """Ctrl-C right after ``epoch`` was saved (the hook the SIGKILL tests pause at)."""

    def fake_pause(name: str) -> None:
        if name == f"epoch:{epoch}":
            raise KeyboardInterrupt

    monkeypatch.setattr(dlw.resume, "pause_point", fake_pause)


def partials(out: Path) -> list[Path]:
    return sorted(out.parent.glob(f".{out.name}.partial-*"))


def test_interrupted_training_resumes_to_the_same_weights(table, tmp_path, monkeypatch):
    whole = train(table, tmp_path / "whole")
    out = tmp_path / "resumed"
    interrupt_at(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt):
        train(table, out)
    monkeypatch.undo()
    assert not out.exists()
    [partial] = partials(out)
    assert json.loads((partial / "checkpoint" / "progress.json").read_text())["epoch"] == 3

    with pytest.raises(DlwError, match=r"killed after epoch 3 of 6 .*resume=True.*--overwrite"):
        train(table, out)  # without --resume: reported, and kept
    assert partials(out) == [partial]

    resumed = train(table, out, resume=True)
    history = pd.read_csv(out / "history.csv")
    assert history["epoch"].tolist() == [1, 2, 3, 4, 5, 6]  # each epoch once
    assert "resumed after epoch 3 of 6" in (out / "run.log").read_text()
    assert not (out / "checkpoint").exists() and partials(out) == []
    expected = pd.read_csv(whole.path / "history.csv")
    pd.testing.assert_frame_equal(history, expected)  # JAX on a CPU: exactly the same training
    assert resumed.metrics["test"]["log_loss"] == pytest.approx(whole.metrics["test"]["log_loss"], abs=1e-9)


@pytest.mark.slow
def test_a_run_interrupted_in_its_second_cycle_resumes_to_the_same_weights(tmp_path, monkeypatch):
    """A regression table trains a second learning-rate cycle (train.cycles): killed there, it carries on there."""
    houses = write_csv(regression_frame(300), tmp_path / "houses.csv")
    overrides = ["train.cycles=2", "train.folds=1"]

    def run(out, **kwargs):
        return Workflow.from_config(str(houses), target="price", overrides=[*EPOCHS, *overrides], quiet=True).train(out=out, **kwargs)

    whole = run(tmp_path / "whole")
    expected = pd.read_csv(whole.path / "history.csv")
    assert expected["cycle"].tolist() == [1] * 6 + [2] * 6  # six epochs of a 6-epoch budget short enough for cycle 2 to help
    kill_at(monkeypatch, "epoch:2", 2)  # the second cycle's second epoch
    out = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        run(out)
    monkeypatch.undo()
    resumed = run(out, resume=True)
    assert "resumed after epoch 2 of 6" in (out / "run.log").read_text()
    pd.testing.assert_frame_equal(pd.read_csv(out / "history.csv"), expected)
    assert resumed.metrics["test"]["rmse"] == pytest.approx(whole.metrics["test"]["rmse"], abs=1e-9)


def test_resume_with_another_config_is_refused_naming_the_key(table, tmp_path, monkeypatch):
    out = tmp_path / "run"
    interrupt_at(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        train(table, out)
    monkeypatch.undo()
    with pytest.raises(ConfigError, match=r"train\.learning_rate: 0\.002 -> 0\.01"):
        train(table, out, ["train.learning_rate=0.01"], resume=True)
    assert len(partials(out)) == 1  # the progress is still there for the right command


def test_resume_with_a_changed_data_file_is_refused(table, tmp_path, monkeypatch):
    out = tmp_path / "run"
    interrupt_at(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        train(table, out)
    monkeypatch.undo()
    table.write_text(table.read_text().replace("basic", "plus", 1))
    with pytest.raises(DataError, match="changed since the killed run"):
        train(table, out, resume=True)


@pytest.mark.slow
def test_resume_with_nothing_to_resume_starts_afresh(table, tmp_path):
    run = train(table, tmp_path / "run", resume=True)
    assert len(pd.read_csv(run.path / "history.csv")) == 6


@pytest.mark.slow
def test_overwrite_discards_a_killed_runs_progress(table, tmp_path, monkeypatch):
    out = tmp_path / "run"
    interrupt_at(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        train(table, out)
    monkeypatch.undo()
    train(table, out, overwrite=True)
    assert (out / "run.json").is_file() and partials(out) == []


def wait_for_line(proc: subprocess.Popen, text: str, timeout: float = 240) -> str:
    """Read the process's stderr until a line containing ``text``; everything read so far."""
    seen, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line and proc.poll() is not None:
            break
        seen.append(line)
        if text in line:
            return "".join(seen)
    raise AssertionError(f"never saw {text!r}; stderr: {''.join(seen)}")


def start_dlw(*args, pause_at: str, cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "DLW_TEST_PAUSE_AT": pause_at}
    return subprocess.Popen([sys.executable, "-m", "dlw", *map(str, args)], cwd=cwd, env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)


@pytest.mark.slow
def test_sigkill_halfway_then_resume_through_the_cli(table, tmp_path):
    args = ["train", table, "--target", "label", "--out", tmp_path / "run", "--quiet"] + [a for s in EPOCHS for a in ("--set", s)]
    proc = start_dlw(*args, pause_at="epoch:3", cwd=tmp_path)
    wait_for_line(proc, "paused at epoch:3")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    refused = subprocess.run([sys.executable, "-m", "dlw", *map(str, args)], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert "killed after epoch 3 of 6" in refused.stderr and "--resume`" in refused.stderr
    resumed = subprocess.run([sys.executable, "-m", "dlw", *map(str, args), "--resume"], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    history = pd.read_csv(tmp_path / "run" / "history.csv")
    assert history["epoch"].tolist() == [1, 2, 3, 4, 5, 6]
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_a_state_saved_by_another_dlw_version_is_refused_in_one_line_naming_the_file():
    """Stop 29 made tabm's train statistics weights: a state saved before holds fewer variables than the model."""
    import keras

    from dlw.resume import check_saved_variables_fit

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    fits = {"variables": [np.asarray(v) for v in model.variables], "file": "run/.partial/checkpoint/phase1.npz"}
    check_saved_variables_fit(model, fits)
    with pytest.raises(ConfigError, match=r"phase1\.npz holds 1 variables that do not fit this model's 2 .*--overwrite instead of --resume"):
        check_saved_variables_fit(model, {**fits, "variables": fits["variables"][:1]})
    # A cycled run's optimizer holds its two rates since stop 30: a state saved before has two fewer.
    from test_schedules import held_adamw

    model.compile(optimizer=held_adamw(start=1e-5, peak=1e-3, warmup_steps=2, decay_steps=8), loss="mse")
    model.optimizer.build(model.trainable_variables)
    saved = {**fits, "optimizer": [np.asarray(v) for v in model.optimizer.variables]}
    check_saved_variables_fit(model, saved)
    older = {**saved, "optimizer": [v for v, o in zip(saved["optimizer"], model.optimizer.variables) if "learning_rate" not in o.name]}
    with pytest.raises(ConfigError, match=r"phase1\.npz holds 5 optimizer variables that do not fit this model's 7 .*--overwrite"):
        check_saved_variables_fit(model, older)

"""Durability (issue 14): faults injected into real runs leave the user's data and any earlier run untouched.

Each test checks the same three things after the fault: the data file's bytes, the earlier
complete run folder's files (byte for byte), and that no hidden partial folder or lock file
is left that should not be. Kills happen at pause points that only ``DLW_TEST_PAUSE_AT``
turns on (``dlw.runs.pause_point``).
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

import dlw.data.loaders
from conftest import TEXT_BUCKETS, binary_frame, write_csv
from dlw import Workflow
from dlw.errors import exit_status_and_line
from dlw.runs import RunWriter

EPOCHS = ["train.epochs=4", "model.ensemble=4", TEXT_BUCKETS]


def tree_digest(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` and the SHA-256 of its bytes."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def earlier_run(folder: Path) -> Path:
    """A complete run folder as an earlier dlw run left it (its marker and files)."""
    folder.mkdir(parents=True)
    (folder / "run.json").write_text('{"dlw_version": "earlier"}\n')
    (folder / "metrics.json").write_text('{"test": {"accuracy": 0.9}}\n')
    (folder / "history.csv").write_text("epoch,loss\n1,0.5\n")
    return folder


def hidden_left(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


@pytest.fixture
def table(tmp_path) -> Path:
    return write_csv(binary_frame(240), tmp_path / "customers.csv")


def cli_args(table: Path, out: Path, *extra) -> list[str]:
    return ["train", str(table), "--target", "label", "--out", str(out), "--quiet", *[a for s in EPOCHS for a in ("--set", s)], *extra]


def start(args, *, pause_at: str | None = None, cwd: Path) -> subprocess.Popen:
    env = dict(os.environ)
    if pause_at:
        env["DLW_TEST_PAUSE_AT"] = pause_at
    return subprocess.Popen([sys.executable, "-m", "dlw", *args], cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def kill_when_paused(proc: subprocess.Popen, point: str, timeout: float = 300) -> None:
    deadline, seen = time.monotonic() + timeout, []
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        seen.append(line)
        if f"paused at {point}" in line:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
            return
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise AssertionError(f"never paused at {point}: {''.join(seen)}")


def one_line(proc) -> str:
    err = proc.stderr if isinstance(proc.stderr, str) else proc.stderr.read()
    lines = err.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_two_concurrent_trains_on_one_out_leave_one_run_and_one_error(table, tmp_path):
    out = tmp_path / "runs" / "same"
    first, second = start(cli_args(table, out), cwd=tmp_path), start(cli_args(table, out), cwd=tmp_path)
    codes = [first.wait(timeout=600), second.wait(timeout=600)]
    assert sorted(codes) == [0, 2], codes
    loser = first if codes[0] == 2 else second
    assert "another dlw process" in one_line(loser)
    assert (out / "run.json").is_file() and len(pd.read_csv(out / "history.csv")) == 4
    assert hidden_left(out.parent) == []  # no partial folder, no lock file


def test_a_writer_that_loses_the_rename_removes_its_partial_folder(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(Exception) as caught:
        with RunWriter(out) as partial:
            (partial / "run.json").write_text("{}")
            earlier_run(out)  # another writer finished first (one that took no lock)
    status, line = exit_status_and_line(caught.value)
    assert status == 2 and "already exists" in line
    assert hidden_left(tmp_path) == [] and tree_digest(out)["run.json"]


def test_the_run_folder_is_swapped_in_whole(tmp_path):
    out = earlier_run(tmp_path / "run")
    with RunWriter(out, overwrite=True) as partial:
        (partial / "run.json").write_text('{"new": 1}')
    assert tree_digest(out).keys() == {"run.json"} and hidden_left(tmp_path) == []


@pytest.mark.slow
@pytest.mark.parametrize("point", ["measure", "rename"])
def test_sigkill_during_measurement_or_rename_keeps_the_earlier_run(table, tmp_path, point):
    out = earlier_run(tmp_path / "run")
    before, data = tree_digest(out), table.read_bytes()
    kill_when_paused(start(cli_args(table, out, "--overwrite"), pause_at=point, cwd=tmp_path), point)
    assert tree_digest(out) == before and table.read_bytes() == data
    [partial] = [p for p in tmp_path.iterdir() if ".partial-" in p.name]
    assert (partial / "checkpoint" / "phase1.npz").is_file()  # the training is not lost
    resumed = subprocess.run([sys.executable, "-m", "dlw", *cli_args(table, out, "--overwrite", "--resume")], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert pd.read_csv(out / "history.csv")["epoch"].tolist() == [1, 2, 3, 4]
    assert hidden_left(tmp_path) == []


@pytest.fixture
def mounted(tmp_path):
    """A fresh tmpfs of 512 KiB at ``tmp_path/disk`` (we are root in CI); skipped where mounting is not allowed."""
    disk = tmp_path / "disk"
    disk.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(disk)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or 'mount failed'}); needs root or CAP_SYS_ADMIN")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def train_in_process(table: Path, out: Path):
    """The Python API through the CLI's error boundary: ``(exit status, stderr line)``."""
    try:
        Workflow.from_config(str(table), target="label", overrides=EPOCHS, quiet=True).train(out=out, overwrite=True)
    except Exception as exc:  # the boundary the CLI uses
        return exit_status_and_line(exc)
    return 0, ""


def test_a_read_only_output_folder_is_one_line_and_touches_nothing(table, mounted):
    out = earlier_run(mounted / "run")
    before, data = tree_digest(out), table.read_bytes()
    subprocess.run(["mount", "-o", "remount,ro", str(mounted)], check=True)
    status, line = train_in_process(table, out)
    assert status == 2 and "Read-only" in line, line
    assert tree_digest(out) == before and table.read_bytes() == data


def test_a_full_disk_is_one_line_and_leaves_the_earlier_run(table, mounted):
    out = earlier_run(mounted / "run")
    before, data = tree_digest(out), table.read_bytes()
    status, line = train_in_process(table, out)
    assert status == 2 and "no space left" in line, line
    assert tree_digest(out) == before and table.read_bytes() == data
    assert hidden_left(mounted) == []  # the partial folder is gone, its space given back


def test_a_data_file_that_changes_while_read_is_refused(table, tmp_path, monkeypatch):
    def someone_appends(name: str) -> None:
        if name == "read":
            with table.open("a") as fh:
                fh.write("C999999,10.0,50.0,basic,yes,great service,stay\n")

    monkeypatch.setattr(dlw.data.loaders, "pause_point", someone_appends)
    status, line = train_in_process(table, tmp_path / "run")
    assert status == 2 and "changed while it was being read" in line, line
    assert not (tmp_path / "run").exists() and hidden_left(tmp_path) == []


def test_a_csv_over_the_memory_budget_is_refused_before_reading(table, tmp_path):
    wf = Workflow.from_config(str(table), target="label", overrides=[*EPOCHS, "data.max_memory_mb=1"], quiet=True)
    big = write_csv(binary_frame(2000), tmp_path / "big.csv")  # ~150 KB: over 1 MiB once read
    wf.config.data.source = str(big)
    with pytest.raises(Exception) as caught:
        wf.train(out=tmp_path / "run")
    status, line = exit_status_and_line(caught.value)
    assert status == 2 and "data.max_memory_mb" in line and "budget of 1 MiB" in line, line

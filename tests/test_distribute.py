"""train.distribute: keras.distribution.DataParallel over JAX devices; jax.distributed across hosts."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from conftest import run_dlw

TWO_DEVICES = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2", "KERAS_BACKEND": "jax"}
SHORT = ["--set", "train.epochs=60", "--set", "train.early_stopping.patience=15"]


# --- multi-host detection (no real initialisation) -----------------------------------------


def test_multihost_settings_from_the_jax_variables():
    from dlw.distribute import multihost_settings

    assert multihost_settings({}) is None
    full = {"JAX_COORDINATOR_ADDRESS": "10.0.0.1:1234", "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "1"}
    assert multihost_settings(full) == {"coordinator_address": "10.0.0.1:1234", "num_processes": 2, "process_id": 1}
    # Only the address: JAX takes the count and id from the cluster manager (SLURM, Open MPI, ...).
    assert multihost_settings({"JAX_COORDINATOR_ADDRESS": "head:1234"}) == {"coordinator_address": "head:1234"}


@pytest.mark.parametrize(
    "env, message",
    [
        ({"JAX_NUM_PROCESSES": "2"}, "JAX_NUM_PROCESSES is set but JAX_COORDINATOR_ADDRESS is not"),
        ({"JAX_COORDINATOR_ADDRESS": "10.0.0.1"}, "expected HOST:PORT"),
        ({"JAX_COORDINATOR_ADDRESS": "h:1", "JAX_NUM_PROCESSES": "two"}, "JAX_NUM_PROCESSES='two': expected a whole number"),
        ({"JAX_COORDINATOR_ADDRESS": "h:1", "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "2"}, "JAX_PROCESS_ID=2 must be between 0 and"),
    ],
)
def test_multihost_settings_errors(env, message):
    from dlw.distribute import multihost_settings
    from dlw.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        multihost_settings(env)


def test_initialize_multihost_calls_jax_distributed_initialize_once(monkeypatch):
    import jax

    from dlw import distribute
    from dlw.console import QUIET

    calls = []
    monkeypatch.setattr(jax.distributed, "initialize", lambda **kw: calls.append(kw))
    monkeypatch.setitem(distribute._STATE, "initialized", False)
    env = {"JAX_COORDINATOR_ADDRESS": "127.0.0.1:1234", "JAX_NUM_PROCESSES": "1", "JAX_PROCESS_ID": "0"}
    assert distribute.initialize_multihost(QUIET, env) is not None
    distribute.initialize_multihost(QUIET, env)
    assert calls == [{"coordinator_address": "127.0.0.1:1234", "num_processes": 1, "process_id": 0}]
    assert distribute.initialize_multihost(QUIET, {}) is None


# --- data parallel on two CPU devices ---------------------------------------------------------


def _train(tmp_path, name, env, *extra):
    result = run_dlw("train", "penguins", *SHORT, *extra, "--out", tmp_path / name, "--quiet", env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    folder = tmp_path / name
    return json.loads((folder / "run.json").read_text()), json.loads((folder / "metrics.json").read_text()), (folder / "run.log").read_text()


@pytest.mark.slow  # CI time (stop 28): over 45 s in the default suite on 2 cores
def test_data_parallel_on_two_devices_matches_one(tmp_path):
    manifest, metrics, log = _train(tmp_path, "two", TWO_DEVICES, "--set", "train.distribute=data_parallel")
    assert manifest["distribution"]["strategy"] == "data_parallel"
    assert manifest["distribution"]["devices"] == 2 and manifest["distribution"]["device_names"] == ["cpu:0", "cpu:1"]
    assert "data parallel over 2 device(s)" in log
    one_manifest, one_metrics, _ = _train(tmp_path, "one", {"XLA_FLAGS": None, "KERAS_BACKEND": "jax"})
    assert one_manifest["distribution"] == {"strategy": "none", "devices": 1, "processes": 1}
    two, one = metrics["test"]["accuracy"], one_metrics["test"]["accuracy"]
    assert abs(two - one) <= 0.03, (two, one)  # 2 of 69 test rows
    assert two >= 0.9


def test_data_parallel_refuses_a_batch_that_does_not_split(tmp_path):
    result = run_dlw("train", "penguins", "--set", "train.distribute=data_parallel", "--set", "train.batch_size=33",
                     "--out", tmp_path / "r", env=TWO_DEVICES, timeout=300)
    assert result.returncode == 2
    assert "dlw: error: key 'train.batch_size': 33 rows cannot be split evenly over 2 devices" in result.stderr


def test_data_parallel_needs_jax(tmp_path):
    pytest.importorskip("tensorflow")
    result = run_dlw("train", "penguins", "--set", "train.distribute=data_parallel", "--out", tmp_path / "r",
                     env={"KERAS_BACKEND": "tensorflow"}, timeout=300)
    assert result.returncode == 2
    assert "key 'train.distribute': data_parallel needs the JAX backend" in result.stderr


@pytest.mark.slow
def test_two_processes_on_loopback_train_as_one(tmp_path):
    """A real two-host launch on one machine: JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = []
    for pid in range(2):
        env = dict(os.environ, JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}", JAX_NUM_PROCESSES="2", JAX_PROCESS_ID=str(pid), KERAS_BACKEND="jax")
        env.pop("XLA_FLAGS", None)
        cmd = [sys.executable, "-m", "dlw", "train", "penguins", *SHORT, "--set", "train.distribute=data_parallel", "--out", str(tmp_path / f"host{pid}"), "--quiet"]
        procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    for proc in procs:
        _, err = proc.communicate(timeout=400)
        assert proc.returncode == 0, err[-3000:]
    runs = [json.loads((tmp_path / f"host{i}" / "metrics.json").read_text()) for i in range(2)]
    manifest = json.loads((tmp_path / "host0" / "run.json").read_text())
    assert manifest["distribution"]["processes"] == 2 and manifest["distribution"]["devices"] == 2
    # Both hosts hold the same weights: the same test predictions.
    assert runs[0]["test"]["log_loss"] == pytest.approx(runs[1]["test"]["log_loss"], rel=1e-5)
    assert runs[0]["test"]["accuracy"] >= 0.9

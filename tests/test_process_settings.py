"""What dlw sets up in a process before JAX starts: compiled programs kept between processes (a second run of
the same table compiles almost nothing, and predicts the same), freed memory kept by glibc, and JAX's threads nicer
than the rest of the process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from dlw._backend import compilation_cache_folder, keep_freed_memory

# Counts the persistent-cache hits of one `dlw train` in this process (jax.monitoring's public listener).
COUNTING = """
import sys
from dlw._backend import ensure_backend
ensure_backend()
from jax import monitoring
hits, misses = [], []
monitoring.register_event_listener(lambda event, **_: (hits if event.endswith("cache_hits") else misses).append(1) if "compilation_cache/cache_" in event else None)
from dlw.cli import app
try:
    app(sys.argv[1:])
except SystemExit as exit:
    assert not exit.code, exit.code
print("HITS", len(hits), "MISSES", len(misses))
"""


def counted_train(out: Path, cache: Path) -> tuple[int, int]:
    env = {**os.environ, "JAX_COMPILATION_CACHE_DIR": str(cache)}
    args = ["train", "penguins", "--out", str(out), "--set", "train.epochs=3", "-q"]
    done = subprocess.run([sys.executable, "-c", COUNTING, *args], env=env, cwd=out.parent, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    words = done.stdout.split()
    return int(words[words.index("HITS") + 1]), int(words[words.index("MISSES") + 1])


@pytest.mark.slow  # CI time (stop 28): over 45 s in the default suite on 2 cores
def test_a_second_process_reuses_the_first_ones_programs_and_predicts_the_same(tmp_path):
    cache = tmp_path / "jax-cache"
    first_hits, first_misses = counted_train(tmp_path / "first", cache)
    hits, misses = counted_train(tmp_path / "second", cache)
    assert first_misses > 10 and first_hits < first_misses, (first_hits, first_misses)
    assert misses <= first_misses // 10 and hits >= first_misses * 9 // 10, (hits, misses, first_misses)
    first, second = (pd.read_csv(tmp_path / name / "test_predictions.csv") for name in ("first", "second"))
    pd.testing.assert_frame_equal(first, second)


def test_the_cache_folder_is_per_jaxlib_and_cpu_and_none_where_it_cannot_be_written(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    folder = Path(compilation_cache_folder())
    assert folder.parent == tmp_path / "cache" / "dlw" / "jax" and folder.is_dir()
    from importlib import metadata

    assert folder.name.startswith(metadata.version("jaxlib") + "-")
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocked))
    assert compilation_cache_folder() is None


def test_freed_memory_is_kept_on_linux_unless_the_user_tuned_malloc(monkeypatch):
    import sys

    if not sys.platform.startswith("linux"):
        assert keep_freed_memory() is False
        return
    assert keep_freed_memory() is True  # glibc accepted every setting
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert keep_freed_memory() is False, "a user's own malloc settings win"


# Starts JAX's devices as dlw's training does, computes on them, and prints each thread's name and niceness.
NICENESS = """
import glob, os, threading
from dlw._backend import ensure_backend, start_jax_devices_yielding
ensure_backend()
start_jax_devices_yielding()
start_jax_devices_yielding()  # a second training in the same process: the devices are started already
import jax, jax.numpy as jnp
jax.jit(lambda a: jax.nn.relu(a @ a).sum())(jnp.ones((512, 512))).block_until_ready()
print("MAIN", threading.get_native_id())
for task in glob.glob(f"/proc/{os.getpid()}/task/*"):
    stat = open(task + "/stat").read().rsplit(")", 1)[1].split()
    print("THREAD", os.path.basename(task), open(task + "/comm").read().strip(), stat[16])
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="niceness is per thread on Linux only")
def test_jax_computes_on_threads_nicer_than_the_rest_of_the_process():
    done = subprocess.run([sys.executable, "-c", NICENESS], env={**os.environ, "KERAS_BACKEND": "jax"}, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [line.split() for line in done.stdout.splitlines()]
    main = next(words[1] for words in lines if words[0] == "MAIN")
    niceness = {tid: (name, int(nice)) for _, tid, name, nice in (words for words in lines if words[0] == "THREAD")}
    own = os.getpriority(os.PRIO_PROCESS, 0)
    assert niceness[main][1] == own, "the thread that trains keeps its priority, and so do the baselines' threads it starts"
    xla = [nice for name, nice in niceness.values() if name.startswith("tf_XLA")]
    assert xla and set(xla) == {min(own + 5, 19)}, niceness

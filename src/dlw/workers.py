"""Shared pools of worker processes, started once and kept for the process's life.

Work that holds the interpreter lock for long, and would slow the training loop beside it, runs
here instead: decoding images (``dlw.data.images``) and a small table's boosting fits
(``dlw.baselines``). Workers start by "forkserver" where the platform has it (else "spawn"),
never by a plain fork of a process whose JAX or TensorFlow threads are running. Each pool is
named by what its workers import first (``preload``), which the fork server imports once.
"""

from __future__ import annotations

import atexit
import multiprocessing
import os
import sys
import threading
import time
import types
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager

START_METHOD = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"

_POOLS: dict[tuple[int, tuple[str, ...]], ProcessPoolExecutor] = {}
_PARENT_ALIVE: dict[tuple[int, tuple[str, ...]], object] = {}  # each pool's pipe end that its workers watch (``exit_with_parent``)
_POOLS_LOCK = threading.Lock()


def exit_with_parent(parent_alive) -> None:
    """A worker's initializer: end this worker once the process that started its pool is gone.

    A worker waits on its task queue, whose write end it also holds, so a parent killed outright (SIGKILL, the
    OOM killer) gives it no end of file: it would live on, holding the run's stdout and stderr, and whoever
    reads those would wait for ever (and a fork server waits for its workers). ``parent_alive`` is the read end
    of a pipe whose only write end the parent holds: it ends when the parent does, however it dies.
    """

    def watch() -> None:
        try:
            parent_alive.recv()
        except (EOFError, OSError):
            pass
        os._exit(1)

    threading.Thread(target=watch, name="dlw-worker-parent", daemon=True).start()


def _ready() -> int:
    time.sleep(0.05)  # keep each worker busy so that every submit starts a new one
    return os.getpid()


@contextmanager
def main_hidden():
    """Start workers without re-running the caller's ``__main__`` in them.

    Spawned and forkserver children import the parent's main script, which runs
    an unguarded script (no ``if __name__ == "__main__"``) a second time and costs
    a pytest or CLI import per worker; the workers need none of it.
    """
    main = sys.modules.get("__main__")
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        if main is not None:
            sys.modules["__main__"] = main


def worker_pool(workers: int, preload: tuple[str, ...]) -> ProcessPoolExecutor:
    """The shared pool of ``workers`` processes that import ``preload`` first, started on first use and kept for reuse."""
    key = (workers, tuple(preload))
    with _POOLS_LOCK:
        pool = _POOLS.get(key)
        if pool is None:
            context = multiprocessing.get_context(START_METHOD)
            if START_METHOD == "forkserver":
                context.set_forkserver_preload(list(preload))
            parent_alive, _PARENT_ALIVE[key] = context.Pipe(duplex=False)  # the write end lives here, and only here
            pool = ProcessPoolExecutor(workers, mp_context=context, initializer=exit_with_parent, initargs=(parent_alive,))
            with main_hidden():
                started = [pool.submit(_ready) for _ in range(workers)]
            for future in started:
                future.result()
            _POOLS[key] = pool
        return pool


def drop_pool(workers: int, preload: tuple[str, ...]) -> None:
    """Forget the pool (a worker died: ``BrokenProcessPool``); the next ``worker_pool`` call starts a new one."""
    with _POOLS_LOCK:
        pool = _POOLS.pop((workers, tuple(preload)), None)
        _PARENT_ALIVE.pop((workers, tuple(preload)), None)  # closed: whatever is left of its workers ends
    if pool is not None:
        pool.shutdown(wait=False, cancel_futures=True)


def shutdown_pools() -> None:
    """Stop every worker (they also stop when this process exits)."""
    with _POOLS_LOCK:
        pools = list(_POOLS.values())
        _POOLS.clear()
    for pool in pools:
        pool.shutdown(wait=True, cancel_futures=True)
    with _POOLS_LOCK:
        _PARENT_ALIVE.clear()


atexit.register(shutdown_pools)

__all__ = ["START_METHOD", "drop_pool", "exit_with_parent", "main_hidden", "shutdown_pools", "worker_pool"]

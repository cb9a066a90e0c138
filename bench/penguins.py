"""`dlw run penguins` with the default network against the same command with the lesson's MLP.

Issue 11's bar: the demo stays at or above 0.95 test accuracy and within its time while
the default for tables changes from the lesson's MLP to tabm. Both commands run as fresh
processes (imports, sufficiency and the report included), alternating, and the script
prints the median wall times, their ratio and each one's test accuracy.

Twice: each run with an empty compilation cache of its own (``cold``: a first run on a new
machine; programs compiled twice within the run are still reused), and with one cache warmed
by an untimed run of each (``warm``: every later run's time). Both in a temporary folder, never
the user's ``~/.cache``.

    python bench/penguins.py [--repeats 3] [--cache cold warm]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def timed_run(out: Path, extra: list[str], env: dict, *, cold: bool = False) -> tuple[float, float]:
    """Wall seconds of `dlw run penguins` in a fresh process, and its test accuracy; ``cold``: its compilation cache emptied first."""
    if cold:
        shutil.rmtree(env["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)
    command = [sys.executable, "-m", "dlw", "run", "penguins", "--quiet", "--overwrite", "--out", str(out), *extra]
    started = time.perf_counter()
    subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - started
    return seconds, json.loads((out / "metrics.json").read_text())["test"]["accuracy"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cache", nargs="+", choices=["cold", "warm"], default=["cold", "warm"])
    args = parser.parse_args()
    for mode in args.cache:
        print(f"compiled programs: {mode}", flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            env = {**os.environ, "KERAS_HOME": str(Path(tmp) / "keras"), "JAX_COMPILATION_CACHE_DIR": str(Path(tmp) / "jax-cache")}
            compare(Path(tmp), env, args.repeats, warm_up=mode == "warm")
    return 0


def compare(tmp: Path, env: dict, repeats: int, *, warm_up: bool) -> None:
    """Alternating timed runs of both variants; prints each, the medians and their ratio."""
    variants = {"tabm (default)": [], "mlp (the lesson's)": ["--set", "model.kind=mlp"]}
    times: dict[str, list[float]] = {name: [] for name in variants}
    accuracy: dict[str, float] = {}
    if warm_up:
        for name, extra in variants.items():
            timed_run(tmp / name.split()[0], extra, env)
    for repeat in range(repeats):
        for name, extra in variants.items():
            seconds, accuracy[name] = timed_run(tmp / name.split()[0], extra, env, cold=not warm_up)
            times[name].append(seconds)
            print(f"repeat {repeat + 1}: {name}: {seconds:.1f} s, test accuracy {accuracy[name]:.4f}", flush=True)
    medians = {name: statistics.median(values) for name, values in times.items()}
    for name, value in medians.items():
        print(f"{name}: median {value:.1f} s, test accuracy {accuracy[name]:.4f}")
    print(f"ratio tabm / mlp: {medians['tabm (default)'] / medians['mlp (the lesson' + chr(39) + 's)']:.2f}")


if __name__ == "__main__":
    sys.exit(main())

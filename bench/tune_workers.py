"""Wall time of `dlw tune` with 20 trials: 1 worker, then 2 workers sharing one SQLite storage.

    python bench/tune_workers.py [--trials 20] [--data penguins]

Each worker is a separate `python -m dlw tune ... --storage sqlite:///... --study s` process, the way a
user runs it in two terminals; the times include start-up, every trial and the final training of the
best config (by the last worker to finish). On a 2-core machine two workers share the cores, so the
gain is bounded by what one worker leaves idle (start-up, storage round trips, Python between steps).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run_workers(n: int, trials: int, data: str, folder: Path) -> tuple[float, int]:
    url = f"sqlite:///{folder / f'workers{n}.db'}"
    cmd = [sys.executable, "-m", "dlw", "tune", data, "--trials", str(trials), "--storage", url, "--study", "bench",
           "--out", str(folder / f"out{n}"), "--quiet"]
    start = time.perf_counter()
    procs = [subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True) for _ in range(n)]
    for proc in procs:
        _, err = proc.communicate()
        if proc.returncode != 0:
            raise SystemExit(f"worker failed: {err[-2000:]}")
    seconds = time.perf_counter() - start
    import optuna

    study = optuna.load_study(study_name="bench", storage=url)
    finished = sum(t.state.name in ("COMPLETE", "PRUNED") for t in study.trials)
    return seconds, finished


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--data", default="penguins")
    args = parser.parse_args()
    os.environ.setdefault("KERAS_HOME", tempfile.mkdtemp(prefix="dlw-bench-keras-"))
    os.environ.setdefault("MPLBACKEND", "Agg")
    folder = Path(tempfile.mkdtemp(prefix="dlw-bench-tune-"))
    print(f"cores: {os.cpu_count()}; {args.trials} trials of {args.data}; SQLite storage")
    results = {}
    for n in (1, 2):
        seconds, finished = run_workers(n, args.trials, args.data, folder)
        results[n] = seconds
        print(f"{n} worker(s): {seconds:6.1f} s wall, {finished} finished trials in the study")
    print(f"ratio 1 worker / 2 workers: {results[1] / results[2]:.2f}x")


if __name__ == "__main__":
    main()

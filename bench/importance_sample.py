"""How many test rows and shuffles permutation importance needs for a stable ranking, and what it costs.

For each table, dlw trains with the defaults (the run's own importance is skipped), then
ranks the columns with a reference setting (every test row, 20 shuffles a column, a seed
of its own) and with each candidate setting under three seeds. It prints, per setting:
the rows sent to the model, the seconds, and its agreement with the reference (``agreement``).
The candidates' seeds differ from the reference's, and the reference has noise of its own,
so even a perfect setting scores below 1: the first line, the default before this bench
(5,000 rows, 5 shuffles), is what the others are compared with.

    python bench/importance_sample.py [--tables synthetic lending_club ames deliveries hotel_rates]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")
sys.path.insert(0, str(Path(__file__).resolve().parent))

SETTINGS = [(5000, 5), (3000, 3), (2000, 5), (2000, 3), (1000, 5), (1000, 3)]  # (rows at most, shuffles)
REFERENCE = (10**9, 20)
SEEDS = (1, 2, 3)


def table_path(name: str, folder: Path) -> tuple[Path, str]:
    if name == "synthetic":
        from overhead import make_table

        path = folder / "synthetic.csv"
        make_table(path, 20000)
        return path, "label"
    from tables import table_csv

    return table_csv(name, folder)


def trained(path: Path, target: str, out: Path):
    """The trained model and the prepared data, caught where dlw would compute importance."""
    import dlw.explain as explain
    from dlw import Workflow

    caught = {}

    def catch(run_model, prepared, folder, seed):
        caught.update(model=run_model, prepared=prepared)
        return explain.importance_table(run_model, prepared, seed=seed, rows=200, repeats=1)

    original, explain.table_importance = explain.table_importance, catch
    try:
        Workflow.from_config(str(path), target=target, quiet=True).train(out=out, overwrite=True)
    finally:
        explain.table_importance = original
    return caught["model"], caught["prepared"]


def columns_that_matter(reference):
    """Whether each of the reference's columns matters: importance at least 5% of the largest."""
    importance = reference["importance_mean"]
    return importance >= 0.05 * importance.max()


def agreement(table, reference) -> tuple[float, float, int]:
    """How close ``table`` is to ``reference``: the Spearman correlation over the columns that
    matter (reference importance at least 5% of the largest), the summed absolute difference
    of the importances over the reference's summed positive importance, and the size of the
    overlap of the two top fives."""
    from scipy.stats import spearmanr

    theirs = reference.set_index("feature")["importance_mean"]
    mine = table.set_index("feature")["importance_mean"].reindex(theirs.index)
    matter = columns_that_matter(reference).to_numpy()
    rho = float(spearmanr(mine[matter], theirs[matter]).statistic) if matter.sum() > 2 else float("nan")
    error = float((mine - theirs).abs().sum() / theirs.clip(lower=0).sum())
    top = set(table["feature"][:5]) & set(reference["feature"][:5])
    return rho, error, len(top)


def measure(name: str, folder: Path) -> None:
    from dlw.explain import importance_table

    path, target = table_path(name, folder)
    model, prepared = trained(path, target, folder / name)
    n_test, n_cols = len(prepared.splits.test), len(prepared.schema.features)
    reference = importance_table(model, prepared, seed=1000, rows=REFERENCE[0], repeats=REFERENCE[1])
    print(f"\n{name}: {n_test} test rows, {n_cols} columns", flush=True)
    print(f"{name}: {int(columns_that_matter(reference).sum())} columns matter")
    print(f"{'rows':>6} {'shuffles':>8} {'predicted':>10} {'seconds':>8} {'spearman':>9} {'error':>6} {'top5':>5}")
    for rows, repeats in SETTINGS:
        rhos, errors, tops, seconds = [], [], [], []
        for seed in SEEDS:
            began = time.perf_counter()
            table = importance_table(model, prepared, seed=seed, rows=rows, repeats=repeats)
            seconds.append(time.perf_counter() - began)
            rho, error, top = agreement(table, reference)
            rhos.append(rho)
            errors.append(error)
            tops.append(top)
        predicted = min(rows, n_test) * (n_cols * repeats + 1)
        print(
            f"{min(rows, n_test):>6} {repeats:>8} {predicted:>10,} {statistics.median(seconds):>8.2f} "
            f"{statistics.mean(rhos):>9.3f} {statistics.mean(errors):>6.3f} {statistics.mean(tops):>5.1f}",
            flush=True,
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", nargs="+", default=["synthetic", "lending_club", "ames", "deliveries", "hotel_rates"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.tables:
            measure(name, Path(tmp))
    return 0


if __name__ == "__main__":
    sys.exit(main())

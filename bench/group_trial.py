"""How noisy is the group-number trial? Every fold's network trained reading a noted group number both ways.

``data.group_numbers: auto`` (``dlw.groups``) judges on the first fold's network alone: about a fifth of the
non-test rows, 26 of them on datasets' Theoph. This trains the network of every fold both ways, as the run
would train it (``train.seed + k`` for fold k), and prints each fold's validation loss (the standardized
target's mean squared error at the best epoch), so that the first fold's decision can be set beside the
decision of all folds pooled. No test row is read.

    python bench/group_trial.py --tables datasets/Theoph:conc nlme/Fatigue:relLength --seeds 42 0 --json out.jsonl

Results, with the command that produced them, are kept in bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")
sys.path.insert(0, str(Path(__file__).parent))

from tables import append_json_line, table_csv  # noqa: E402


def fold_losses(config, prepared, objective, folds: int | None = None) -> list[tuple[float, int]]:
    """Each fold's network's validation loss at its best epoch, and its fold's rows (the first ``folds`` folds; default all)."""
    from itertools import islice

    from dlw.console import QUIET
    from dlw.distribute import apply_distribution, release
    from dlw.train import fit_network, plan_training, seeded

    losses = []
    for k, part in enumerate(islice(prepared.fold_views(), folds)):
        planned = plan_training(seeded(config, config.train.seed + k), part.count("train"), task=part.problem.task)
        distribution = apply_distribution(planned, QUIET)
        try:
            _, _, result = fit_network(planned, part, objective, None, QUIET, distribution)
        finally:
            release(distribution)
        losses.append((float(result.kept_validation_loss()), part.count("validation")))
    return losses


def trial_row(path: Path, target: str, seed: int, folds: int | None = None) -> dict | None:
    """Both readings' fold losses on one table and seed; None where the trial does not apply."""
    from dlw.console import QUIET
    from dlw.data.kinds import prepare
    from dlw.groups import as_categories, category_reading, trial_columns
    from dlw.objectives import choose_objective
    from dlw.spec import load_spec

    config = load_spec(str(path), target=target, overrides=[f"data.split.seed={seed}", f"train.seed={seed}"])
    prepared = prepare(config, QUIET)
    names = trial_columns(config, prepared)
    if not names:
        return None
    objective = choose_objective(prepared.problem.task, 0, config.loss, config.metrics)
    other_config = as_categories(config, names)
    other = category_reading(prepared, other_config, names)
    started = time.perf_counter()
    number, category = fold_losses(config, prepared, objective, folds), fold_losses(other_config, other, objective, folds)
    return {"columns": names, "number": number, "category": category, "seconds": round(time.perf_counter() - started, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", nargs="+", metavar="PACKAGE/ITEM:TARGET")
    parser.add_argument("--seeds", nargs="*", type=int, default=[42])
    parser.add_argument("--folds", type=int, help="train only the first FOLDS folds' networks (default: every fold)")
    parser.add_argument("--json", type=Path, help="append each row as a JSON line to this file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.tables:
            path, target = table_csv(name, Path(tmp))
            for seed in args.seeds:
                row = trial_row(path, target, seed, args.folds)
                if row is None:
                    print(f"{name} seed {seed}: no trial", flush=True)
                    continue
                row = {"table": name, "seed": seed, **row}
                first = row["category"][0][0] / row["number"][0][0]
                pooled = sum(loss * n for loss, n in row["category"]) / sum(loss * n for loss, n in row["number"])
                print(f"{name} seed {seed}: category/number first fold {first:.3f}, {len(row['number'])} folds pooled {pooled:.3f} ({row['seconds']} s)", flush=True)
                append_json_line(args.json, row)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

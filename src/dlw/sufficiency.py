"""Is there enough data for deep learning here? Checked before training and after it.

- before training: is the train split small for a network, or for this model's size?
  (``small_data_warnings``)
- after training (``dlw run``, ``dlw sufficiency``): train again on 25% and 50% of the train
  split, same validation and test rows; does the validation metric still rise with more
  data? (``sufficiency_curve``)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from dlw.console import Console
from dlw.objectives import MAIN_METRIC, higher_is_better
from dlw.plots import plot_sufficiency
from dlw.runs import write_json


MIN_PER_CLASS = 50


PARAMS_PER_ROW = 10


FRACTIONS = (0.25, 0.5, 1.0)


def small_data_warnings(prepared, n_params: int) -> list[str]:
    """Warnings, with the numbers, when the train split is small for deep learning or for this model."""
    warnings = []
    n_train = len(prepared.targets["train"])
    what = f"{prepared.noun}s"
    if prepared.problem.is_classification:
        counts = pd.Series(prepared.targets["train"]).value_counts()
        small = counts[counts < MIN_PER_CLASS]
        if len(small):
            classes = prepared.problem.classes
            shown = ", ".join(f"{classes[int(i)]!s} {int(n)}" for i, n in list(small.sort_values().items())[:5])
            warnings.append(
                f"small data: {len(small)} of {len(counts)} classes have fewer than {MIN_PER_CLASS} training {what} ({shown}); "
                "a network is likely to overfit: trust the comparison with the baselines"
            )
    elif n_train < MIN_PER_CLASS * 4:
        warnings.append(f"small data: only {n_train} training {what} for a regression; trust the comparison with the baselines")
    if n_params > PARAMS_PER_ROW * n_train:
        warnings.append(
            f"the model has {n_params:,} trainable parameters, more than {PARAMS_PER_ROW}x the {n_train:,} training {what}; "
            # Not "prefer a smaller model": tabm's size was chosen over smaller networks on real tables (bench/RESULTS.md).
            "it can memorise them: early stopping on the validation split guards against that, and the comparison "
            "with the baselines says whether it was enough"
        )
    return warnings


def trainable_parameters(model) -> int:
    return int(sum(int(np.prod(w.shape)) for w in model.trainable_weights))


def train_subset(prepared, fraction: float, seed: int) -> np.ndarray:
    """Positions within the train split: a stratified sample of ``fraction`` of it (all when 1.0)."""
    n = len(prepared.targets["train"])
    if fraction >= 1.0:
        return np.arange(n)
    from sklearn.model_selection import train_test_split

    y = prepared.targets["train"]
    strat = y if prepared.problem.is_classification and pd.Series(y).value_counts().min() >= 2 else None
    try:
        keep, _ = train_test_split(np.arange(n), train_size=fraction, random_state=seed, stratify=strat)
    except ValueError:  # too few rows of a class to stratify this small a sample
        keep, _ = train_test_split(np.arange(n), train_size=fraction, random_state=seed)
    return np.sort(keep)


def sufficiency_trend(metric: str, higher: bool, rows: list[int], values: list[float], n_val: int) -> tuple[str, str]:
    """'rising' when the last doubling of the data improved the validation metric by more than its noise."""
    last, before = values[-1], values[-2]
    gain = (last - before) if higher else (before - last)
    if metric in ("accuracy", "balanced_accuracy", "macro_f1"):
        p = min(max(last, 1e-3), 1 - 1e-3)
        noise = float(np.sqrt(p * (1 - p) / max(n_val, 1)))
    else:  # an error in the target's units: its relative standard error is about 1/sqrt(2n)
        noise = abs(last) / np.sqrt(2 * max(n_val, 1))
    if gain > noise:
        return "rising", (
            f"still rising: {metric} went from {before:.4g} to {last:.4g} on the validation split when the training {rows[-2]} -> {rows[-1]} "
            f"doubled (more than the noise, {noise:.2g}): more data is likely to help"
        )
    return "flat", (
        f"flat: {metric} went from {before:.4g} to {last:.4g} on the validation split when the training data doubled "
        f"({rows[-2]} -> {rows[-1]}), within the noise ({noise:.2g}): more data of the same kind is unlikely to help much"
    )


def sufficiency_curve(config, prepared, objective, *, backbone, metrics: dict, folder: Path, console: Console, designs=None) -> dict:
    """Train again on 25% and 50% of the train split (same validation and test rows); the curve and its trend.

    Writes ``sufficiency.json`` and ``sufficiency.png`` into ``folder``; returns the
    summary for metrics.json. ``metrics`` are the full run's, the curve's last point. Each point
    trains one network of each of the run's ``designs`` (``dlw.models.designs``), as the
    validation split of the full run is answered by one of each.
    """
    from dlw.evaluate import score
    from dlw.train import train_network

    main = metrics.get("main_metric", MAIN_METRIC[prepared.problem.task])  # the verdict's, chosen from the class balance
    seed = config.train.seed
    rows, val, test = [], [], []
    console.say(f"    data sufficiency: training again on {', '.join(f'{f:.0%}' for f in FRACTIONS[:-1])} of the train split")
    for fraction in FRACTIONS[:-1]:
        keep = train_subset(prepared, fraction, seed)
        part = prepared.without_folds().with_train_rows(keep)
        model = train_network(config, part, objective, backbone=backbone, designs=designs).model
        rows.append(len(keep))
        for split, store in (("validation", val), ("test", test)):
            store.append(score(part.problem, part.targets[split], part.outputs(model, part.inputs[split]), part.problem.decision, names=(main,))[main])
    rows.append(prepared.count("train"))
    val.append(metrics["validation"][main])
    test.append(metrics["test"][main])
    trend, message = sufficiency_trend(main, higher_is_better(main), rows, val, prepared.count("validation"))
    curve = {"metric": main, "fractions": list(FRACTIONS), "train_rows": rows, "validation": val, "test": test, "trend": trend, "message": message}
    write_json(folder / "sufficiency.json", curve)
    plot_sufficiency(curve, folder / "sufficiency.png")
    console.say(f"    data sufficiency: {message}")
    return {"trend": trend, "message": message}

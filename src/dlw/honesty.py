"""Is deep learning the right tool here? The checks every run makes, in one place.

- before training: is the data small for the model? (``small_data_warnings``)
- step 8: is the network better than the best simple baseline? (``dlw.advice``)
- data sufficiency: does the metric still rise from 25% to 50% to 100% of the train rows?
- step 9: is a new input unlike the training data? (``dlw.ood`` on the network's features)
- explanations: what the model relies on (permutation importance; occlusion maps).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from dlw.console import Console

MIN_PER_CLASS = 50
PARAMS_PER_ROW = 10
FRACTIONS = (0.25, 0.5, 1.0)


# --- before training -----------------------------------------------------------


def small_data_warnings(prepared, n_params: int) -> list[str]:
    """Warnings, with the numbers, when the train split is small for deep learning or for this model."""
    warnings = []
    n_train = len(prepared.targets["train"])
    what = "images" if prepared.is_images else "rows"
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
            "it can memorise them: prefer a smaller model or more data"
        )
    return warnings


def trainable_parameters(model) -> int:
    return int(sum(int(np.prod(w.shape)) for w in model.trainable_weights))


# --- unfamiliar inputs -----------------------------------------------------------


def penultimate_model(model):
    """The model up to the input of its ``output`` layer: the features the classifier sees."""
    import keras

    layer = model.get_layer("output")
    return keras.Model(model.inputs, layer.input, name="penultimate")


def feature_blocks(features_model, prepared, inputs) -> dict[str, np.ndarray]:
    """The detector's blocks for some inputs: the penultimate layer, and the inputs as the baselines see them.

    Tables: the encoded columns. Images: the pixels scaled down to at most 16x16. The
    pixel block keeps the false alarms on new images of familiar classes down: a model
    trained on digits 0-4 (tests/test_images.py) flags 16% of unseen 0-4 images from the
    penultimate layer alone and 14% with the pixels added, at about 89% of digits 5-9 both ways.
    """
    if isinstance(inputs, dict):
        names = {t.name for t in features_model.inputs}
        penultimate = features_model.predict({k: v for k, v in inputs.items() if k in names}, batch_size=4096, verbose=0)
    elif isinstance(inputs, np.ndarray):
        penultimate = features_model.predict(inputs, batch_size=256, verbose=0)
    else:
        penultimate = features_model.predict(inputs, verbose=0)
    blocks = {"penultimate": np.asarray(penultimate, dtype="float64").reshape(len(penultimate), -1)}
    blocks["inputs"] = np.asarray(prepared.baseline_features(inputs), dtype="float64")
    return blocks


def fit_detector(model, prepared, rate: float):
    """Fit on the train split, calibrate on validation so that about ``rate`` of familiar inputs are flagged."""
    from dlw.ood import OODDetector

    features = penultimate_model(model)
    train = feature_blocks(features, prepared, prepared.inputs["train"])
    val = feature_blocks(features, prepared, prepared.inputs["validation"])
    labels = prepared.targets["train"] if prepared.problem.is_classification else None
    shared = ("penultimate", "inputs") if prepared.is_images else ("penultimate",)  # pixels share one unit
    return OODDetector().fit(train, labels, val, rate=rate, shared_units=shared), features


def score_inputs(detector, features_model, prepared, inputs) -> tuple[np.ndarray, np.ndarray]:
    """``(flags, scores)`` for some inputs."""
    blocks = feature_blocks(features_model, prepared, inputs)
    return detector.flag(blocks), detector.score(blocks)


# --- data sufficiency ------------------------------------------------------------


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


def sufficiency_trend(metric: str, higher_is_better: bool, rows: list[int], values: list[float], n_val: int) -> tuple[str, str]:
    """'rising' when the last doubling of the data improved the validation metric by more than its noise."""
    last, before = values[-1], values[-2]
    gain = (last - before) if higher_is_better else (before - last)
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


def plot_sufficiency(result: dict, path: Path) -> None:
    from dlw.evaluate import _pyplot

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    ax.plot(result["train_rows"], result["validation"], marker="o", label="validation")
    ax.plot(result["train_rows"], result["test"], marker="s", label="test")
    ax.set_xlabel("training rows")
    ax.set_ylabel(result["metric"])
    ax.set_title(f"Data sufficiency: {result['trend']}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --- explanations ------------------------------------------------------------------


def table_importance(run_model, prepared, folder: Path, seed: int) -> pd.DataFrame:
    """Permutation importance of each input column on the test split; ``importance.csv`` and ``.png``."""
    from dlw.evaluate import MAIN_METRIC, score
    from dlw.explain import permutation_importance, plot_importance
    from dlw.predict import model_output

    problem, schema = prepared.problem, prepared.schema
    frame = prepared.frame.loc[prepared.splits.test]
    columns = [f.name for f in schema.features]
    metric = MAIN_METRIC[problem.task]

    def predict(rows: pd.DataFrame) -> np.ndarray:
        inputs, _ = schema.encode(rows)
        return model_output(run_model, inputs, problem, prepared.target_scaling)

    def metric_fn(y, output) -> float:
        return float(score(problem, y, output)[metric])

    table = permutation_importance(
        predict, frame, prepared.targets["test"], columns, metric_fn, higher_is_better=metric != "rmse", n_repeats=5, seed=seed
    )
    table.to_csv(folder / "importance.csv", index=False)
    plot_importance(table, metric, folder / "importance.png")
    return table


def image_occlusion(model, prepared, folder: Path, n: int = 6) -> list[str]:
    """Occlusion maps for the first ``n`` test images, into ``explain/``; returns the files written."""
    from dlw.explain import occlusion_maps, plot_occlusion

    x = prepared.inputs["test"]
    if not isinstance(x, np.ndarray):  # streamed: decode just these few
        from dlw.data.images import decode_many

        x, _ = decode_many(list(x.paths[:n]), tuple(prepared.schema.size), prepared.schema.channels)
    images = x[:n]
    if not len(images) or not prepared.problem.is_classification:
        return []

    def predict(batch: np.ndarray) -> np.ndarray:
        return np.asarray(model.predict(batch, batch_size=256, verbose=0)).reshape(len(batch), -1)

    proba = predict(images)
    if proba.shape[1] == 1:  # binary: a single sigmoid
        proba = np.hstack([1 - proba, proba])

        def predict(batch: np.ndarray, _inner=predict) -> np.ndarray:  # noqa: F811
            p = _inner(batch)
            return np.hstack([1 - p, p])

    predicted = proba.argmax(axis=1)
    maps = occlusion_maps(predict, images, predicted)
    classes = prepared.problem.classes
    truth = prepared.targets["test"][:n]
    titles = [f"predicted {classes[p]} ({proba[i, p]:.2f}); true {classes[t]}" for i, (p, t) in enumerate(zip(predicted, truth))]
    (folder / "explain").mkdir(exist_ok=True)
    written = []
    for i in range(len(images)):
        path = folder / "explain" / f"occlusion_{i + 1}.png"
        plot_occlusion(images[i : i + 1], maps[i : i + 1], titles[i : i + 1], path)
        written.append(str(path.relative_to(folder)))
    return written


def say_warnings(warnings: list[str], console: Console) -> None:
    for warning in warnings:
        console.warn(warning)

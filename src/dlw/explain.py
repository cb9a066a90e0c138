"""What the model relies on: permutation importance for tables, occlusion maps for images.

The two answer the same question differently because what a user can read differs: a
table's columns have names, an image's pixels do not.

Both describe the fitted model, not the world: a column the model ignores may
still cause the target, and a column it relies on may only be correlated with
the cause.

Permutation importance (Breiman, 2001): shuffle one column's raw values among
the rows, breaking its link with the target while keeping its distribution, and
measure how much the metric worsens. Occlusion (Zeiler and Fergus, 2014): cover
a patch of the image with grey and measure how much the probability of the
class drops.
"""

from __future__ import annotations

from typing import Callable

from pathlib import Path

import numpy as np
import pandas as pd

from dlw.classes import choose_main_metric
from dlw.data.prepared import sample_positions
from dlw.objectives import higher_is_better
from dlw.plots import plot_importance, plot_occlusion

# A table's importance: at most 2,000 test rows, each column shuffled 3 times. Against 5,000 and 5,
# the columns that matter keep their order and importances within 2-18% (bench/importance_sample.py,
# five tables), at 40-70% less time.
IMPORTANCE_ROWS = 2_000
IMPORTANCE_REPEATS = 3
MAX_ROWS_PER_CALL = 200_000  # permuted rows sent to ``predict`` at once (their frame and encoding bound the memory); above, a few columns a call
MAX_IMAGES_PER_CALL = 4096  # occluded images sent to ``predict`` at once
GREY = 128


# --- tables -------------------------------------------------------------------


def permutation_importance(
    predict: Callable[[pd.DataFrame], np.ndarray],
    frame: pd.DataFrame,
    y: np.ndarray,
    columns: list[str],
    metric: Callable[[np.ndarray, np.ndarray], float],
    higher_is_better: bool,
    n_repeats: int = 5,
    seed: int = 0,
) -> pd.DataFrame:
    """How much ``metric`` worsens when each column's raw values are shuffled among the rows.

    Positive importance: the model relies on the column. The untouched frame and
    every (column, repeat) shuffled copy are stacked into one frame and passed to
    ``predict`` in a single call (split by column only above ``MAX_ROWS_PER_CALL``
    rows). Returns columns ``feature, importance_mean, importance_std``, sorted by
    importance, largest first.
    """
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"column(s) not in the frame: {', '.join(map(str, missing))}")
    if n_repeats < 1:
        raise ValueError("n_repeats must be at least 1")
    n = len(frame)
    if n < 2:
        raise ValueError("permutation importance needs at least two rows")
    y = np.asarray(y)
    if len(y) != n:
        raise ValueError(f"{len(y)} targets for {n} rows")
    frame = frame.reset_index(drop=True)
    rng = np.random.default_rng(seed)
    orders = {c: [rng.permutation(n) for _ in range(n_repeats)] for c in columns}

    per_call = max(1, MAX_ROWS_PER_CALL // (n * n_repeats))
    groups = [columns[i : i + per_call] for i in range(0, len(columns), per_call)] if n * n_repeats * len(columns) > MAX_ROWS_PER_CALL else [columns]
    base_score = None
    scores: dict[str, list[float]] = {}
    for index, group in enumerate(groups):
        include_original = index == 0
        stacked = _stack_permuted(frame, group, orders, include_original)
        output = np.asarray(predict(stacked))
        if len(output) != len(stacked):
            raise ValueError(f"predict returned {len(output)} rows for {len(stacked)}")
        offset = 0
        if include_original:
            base_score = float(metric(y, output[:n]))
            offset = n
        for c in group:
            scores[c] = []
            for _ in range(n_repeats):
                scores[c].append(float(metric(y, output[offset : offset + n])))
                offset += n
    sign = 1.0 if higher_is_better else -1.0
    rows = []
    for c in columns:
        drops = sign * (base_score - np.asarray(scores[c]))
        rows.append({"feature": str(c), "importance_mean": float(drops.mean()), "importance_std": float(drops.std())})
    table = pd.DataFrame(rows, columns=["feature", "importance_mean", "importance_std"])
    return table.sort_values("importance_mean", ascending=False, kind="stable").reset_index(drop=True)


def _stack_permuted(frame: pd.DataFrame, columns: list[str], orders: dict, include_original: bool) -> pd.DataFrame:
    """The frame repeated once per (column, repeat), that column shuffled in its copy; the original first if asked."""
    n = len(frame)
    n_repeats = len(next(iter(orders.values())))
    copies = len(columns) * n_repeats + int(include_original)
    identity = np.arange(n)
    stacked = frame.iloc[np.tile(identity, copies)].reset_index(drop=True)
    for j, c in enumerate(columns):
        positions = np.tile(identity, copies)
        for r, order in enumerate(orders[c]):
            start = (int(include_original) + j * n_repeats + r) * n
            positions[start : start + n] = order
        stacked[c] = frame[c].take(positions).reset_index(drop=True)
    return stacked


# --- images -------------------------------------------------------------------


def occlusion_maps(
    predict: Callable[[np.ndarray], np.ndarray],
    images: np.ndarray,
    class_indices: np.ndarray,
    patch: int | None = None,
    stride: int | None = None,
) -> np.ndarray:
    """Per-pixel drop in the probability of ``class_indices[i]`` when a grey patch covers that pixel.

    ``images``: (n, h, w, c) uint8. A ``patch`` x ``patch`` square of grey (128)
    slides with ``stride`` (defaults: a quarter of the shorter side, half the
    patch); the last position touches the edge, so every pixel is covered. A
    pixel's heat is the mean drop over the patches covering it (negative: hiding
    it raised the probability). Occluded copies go to ``predict`` in batches of up
    to ``MAX_IMAGES_PER_CALL`` (all images in one call when they fit). Returns
    (n, h, w) float32.
    """
    images = np.asarray(images)
    if images.ndim != 4:
        raise ValueError(f"images must have shape (n, height, width, channels), not {images.shape}")
    n, h, w, _ = images.shape
    class_indices = np.asarray(class_indices, dtype=int).reshape(-1)
    if len(class_indices) != n:
        raise ValueError(f"{len(class_indices)} class indices for {n} images")
    patch = int(patch or max(1, round(min(h, w) / 4)))
    patch = min(patch, h, w)
    stride = int(stride or max(1, patch // 2))
    tops, lefts = _positions(h, patch, stride), _positions(w, patch, stride)
    corners = [(t, l) for t in tops for l in lefts]
    per_image = len(corners) + 1  # the original first
    heat = np.zeros((n, h, w), dtype="float64")
    cover = np.zeros((h, w), dtype="float64")
    for t, l in corners:
        cover[t : t + patch, l : l + patch] += 1
    images_per_call = max(1, MAX_IMAGES_PER_CALL // per_image)
    for start in range(0, n, images_per_call):
        chunk = images[start : start + images_per_call]
        batch = np.repeat(chunk, per_image, axis=0)  # (m * per_image, h, w, c)
        for k, (t, l) in enumerate(corners, start=1):
            batch[k::per_image, t : t + patch, l : l + patch, :] = GREY
        proba = np.asarray(predict(batch)).reshape(len(chunk), per_image, -1)
        wanted = class_indices[start : start + len(chunk)]
        p = proba[np.arange(len(chunk)), :, wanted]  # (m, per_image)
        drops = p[:, :1] - p[:, 1:]
        for k, (t, l) in enumerate(corners):
            heat[start : start + len(chunk), t : t + patch, l : l + patch] += drops[:, k, None, None]
    return (heat / np.maximum(cover, 1)).astype("float32")


def _positions(size: int, patch: int, stride: int) -> list[int]:
    positions = list(range(0, size - patch + 1, stride))
    if positions[-1] != size - patch:
        positions.append(size - patch)
    return positions


def table_importance(run_model, prepared, folder: Path, seed: int) -> pd.DataFrame:
    """Permutation importance of each input column on the test split; ``importance.csv`` and ``.png``."""
    table = importance_table(run_model, prepared, seed=seed)
    table.to_csv(folder / "importance.csv", index=False)
    plot_importance(table, ranking_metric(prepared), folder / "importance.png")
    return table


def ranking_metric(prepared) -> str:
    """The metric importance is measured in: the run's main metric."""
    return choose_main_metric(prepared.problem, prepared.targets["train"], prepared.config.checks.main_metric)[0]


def importance_table(run_model, prepared, *, seed: int, rows: int = IMPORTANCE_ROWS, repeats: int = IMPORTANCE_REPEATS) -> pd.DataFrame:
    """``permutation_importance`` of the input columns on a seeded sample of at most ``rows`` test rows."""
    from dlw.evaluate import score

    problem, schema = prepared.problem, prepared.schema
    frame, y = prepared.frame.loc[prepared.splits.test], prepared.targets["test"]
    if len(frame) > rows:
        keep = sample_positions(len(frame), rows, np.random.default_rng(seed))
        frame, y = frame.iloc[keep], y[keep]
    columns = [f.name for f in schema.features]
    metric = ranking_metric(prepared)

    def predict(batch: pd.DataFrame) -> np.ndarray:
        inputs, _ = schema.encode(batch)
        return prepared.outputs(run_model, inputs)

    def metric_fn(y, output) -> float:
        return float(score(problem, y, output, problem.decision, names=(metric,))[metric])

    return permutation_importance(
        predict, frame, y, columns, metric_fn, higher_is_better=higher_is_better(metric), n_repeats=repeats, seed=seed
    )


def image_occlusion(model, prepared, folder: Path, n: int = 6) -> list[str]:
    """Occlusion maps for the first ``n`` test images, into ``explain/``; returns the files written."""
    images = prepared.first_images("test", n)
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

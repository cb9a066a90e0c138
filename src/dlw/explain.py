"""What the model relies on: permutation importance for tables, occlusion maps for images.

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

import numpy as np
import pandas as pd

MAX_ROWS_PER_CALL = 2_000_000  # permuted rows sent to ``predict`` at once; above this, one call per column
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


def plot_importance(table: pd.DataFrame, metric_name: str, path, top: int = 30) -> None:
    """Horizontal bars (mean worsening of the metric) with error bars (spread over repeats)."""
    from dlw.evaluate import _pyplot

    plt = _pyplot()
    shown = table.head(top).iloc[::-1]  # largest at the top
    fig, ax = plt.subplots(figsize=(7, 1.2 + 0.32 * len(shown)))
    colours = ["tab:blue" if v > 0 else "tab:grey" for v in shown["importance_mean"]]
    ax.barh(shown["feature"].astype(str), shown["importance_mean"], xerr=shown["importance_std"], color=colours, capsize=3)
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_xlabel(f"worsening of {metric_name} when the column is shuffled")
    more = f" (top {top} of {len(table)})" if len(table) > top else ""
    ax.set_title(f"What the model relies on{more}\n(describes this model, not what causes the target)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


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


def plot_occlusion(images: np.ndarray, maps: np.ndarray, titles: list[str], path) -> None:
    """One row of panels: each image with its occlusion map overlaid (red: hiding it lowers the probability)."""
    from dlw.evaluate import _pyplot

    plt = _pyplot()
    images = np.asarray(images)
    n = len(images)
    limit = float(np.max(np.abs(maps))) if np.size(maps) else 1.0
    limit = limit if limit > 0 else 1.0
    fig, axes = plt.subplots(1, n, figsize=(2.4 * n + 0.8, 2.9), squeeze=False)
    shown = None
    for ax, image, heat, title in zip(axes[0], images, maps, titles):
        if image.shape[-1] == 1:
            ax.imshow(image[..., 0], cmap="gray", vmin=0, vmax=255)
        else:
            ax.imshow(image[..., :3].astype("uint8"))
        shown = ax.imshow(heat, cmap="bwr", vmin=-limit, vmax=limit, alpha=0.5)
        ax.set_title(str(title), fontsize=9)
        ax.axis("off")
    if shown is not None:
        bar = fig.colorbar(shown, ax=list(axes[0]), fraction=0.03, pad=0.02)
        bar.set_label("drop in class probability", fontsize=8)
    fig.suptitle("Occlusion: where a grey patch lowers the predicted class's probability (describes the model)", fontsize=9)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)

"""Every figure a run draws, with matplotlib's Agg backend: one place for the plotting code.

Each function draws one figure and writes it with ``save_figure`` (atomically), so a
figure in a run folder is complete or absent.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from dlw.runs import write_atomic


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path, **savefig_args) -> None:
    """Write ``fig`` to ``path`` (PNG) atomically, then close it."""
    args = {"dpi": 110, **savefig_args}
    try:
        write_atomic(Path(path), lambda tmp: fig.savefig(tmp, format="png", **args))
    finally:
        pyplot().close(fig)


def plot_confusion_matrix(y_true: np.ndarray, predicted: np.ndarray, classes: list, path) -> None:
    from sklearn.metrics import ConfusionMatrixDisplay

    plt = pyplot()
    size = min(12, 3 + 0.5 * len(classes))
    fig, ax = plt.subplots(figsize=(size, size))
    ConfusionMatrixDisplay.from_predictions(
        y_true, predicted, labels=list(range(len(classes))), display_labels=[str(c) for c in classes], ax=ax, colorbar=False, cmap="Blues"
    )
    ax.set_title(f"Confusion matrix, test split ({len(y_true)} rows)")
    plt.setp(ax.get_xticklabels(), rotation=45, ha="right")
    fig.tight_layout()
    save_figure(fig, path)


def plot_reliability(y_true: np.ndarray, probabilities: dict[str, np.ndarray], path, bins: int = 15) -> None:
    """Reliability diagram: per bin of the top probability, the share of rows predicted right, for each named set of probabilities."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 4.5))
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="perfectly calibrated")
    for label, proba in probabilities.items():
        confidence, correct = proba.max(axis=1), (proba.argmax(axis=1) == np.asarray(y_true)).astype(float)
        which = np.minimum((confidence * bins).astype(int), bins - 1)
        used = np.unique(which)
        ax.plot([confidence[which == b].mean() for b in used], [correct[which == b].mean() for b in used], marker="o", label=label)
    ax.set(xlabel="confidence (top probability)", ylabel="share predicted right", xlim=(0, 1), ylim=(0, 1.02))
    ax.set_title("Reliability on the test split")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)


def plot_residuals(y_true: np.ndarray, predicted: np.ndarray, target: str, path) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    axes[0].scatter(y_true, predicted, s=12, alpha=0.7)
    low, high = float(min(y_true.min(), predicted.min())), float(max(y_true.max(), predicted.max()))
    axes[0].plot([low, high], [low, high], color="grey", linestyle="--", linewidth=1)
    axes[0].set_xlabel(f"true {target}")
    axes[0].set_ylabel(f"predicted {target}")
    axes[0].set_title("Predicted vs true, test split")
    axes[1].scatter(predicted, y_true - predicted, s=12, alpha=0.7)
    axes[1].axhline(0, color="grey", linestyle="--", linewidth=1)
    axes[1].set_xlabel(f"predicted {target}")
    axes[1].set_ylabel("residual (true - predicted)")
    axes[1].set_title("Residuals, test split")
    fig.tight_layout()
    save_figure(fig, path)


def plot_learning_curves(history: pd.DataFrame, best_epoch: int, path, note: str = "") -> None:
    """Loss and each metric per epoch, train vs validation, with the restored epoch marked."""
    plt = pyplot()
    names = [c for c in history.columns if c not in ("epoch", "phase", "cycle") and not c.startswith("val_")]
    tuned_from = int(history.loc[history["phase"] == 2, "epoch"].min()) if "phase" in history and (history["phase"] == 2).any() else None
    restarts = history.loc[history["cycle"] > 1].groupby("cycle")["epoch"].min().tolist() if "cycle" in history else []
    fig, axes = plt.subplots(1, len(names), figsize=(4.5 * len(names), 3.6), squeeze=False)
    for ax, name in zip(axes[0], names):
        ax.plot(history["epoch"], history[name], label="train")
        if f"val_{name}" in history:
            ax.plot(history["epoch"], history[f"val_{name}"], label="validation")
        ax.axvline(best_epoch, color="grey", linestyle=":", linewidth=1, label=f"best epoch ({best_epoch})")
        if tuned_from is not None:
            ax.axvline(tuned_from - 0.5, color="tab:red", linestyle="--", linewidth=1, label="fine-tuning starts")
        for k, start in enumerate(restarts):
            ax.axvline(start - 0.5, color="tab:green", linestyle="--", linewidth=1, label="a cycle restarts" if k == 0 else None)
        ax.set_xlabel("epoch")
        ax.set_title(name + (f" {note}" if note and name != "accuracy" else ""))
        ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)


def plot_sufficiency(result: dict, path: Path) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    ax.plot(result["train_rows"], result["validation"], marker="o", label="validation")
    ax.plot(result["train_rows"], result["test"], marker="s", label="test")
    ax.set_xlabel("training rows")
    ax.set_ylabel(result["metric"])
    ax.set_title(f"Data sufficiency: {result['trend']}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)


def plot_importance(table: pd.DataFrame, metric_name: str, path, top: int = 30) -> None:
    """Horizontal bars (mean worsening of the metric) with error bars (spread over repeats)."""
    plt = pyplot()
    shown = table.head(top).iloc[::-1]  # largest at the top
    fig, ax = plt.subplots(figsize=(7, 1.2 + 0.32 * len(shown)))
    colours = ["tab:blue" if v > 0 else "tab:grey" for v in shown["importance_mean"]]
    ax.barh(shown["feature"].astype(str), shown["importance_mean"], xerr=shown["importance_std"], color=colours, capsize=3)
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_xlabel(f"worsening of {metric_name} when the column is shuffled")
    more = f" (top {top} of {len(table)})" if len(table) > top else ""
    ax.set_title(f"What the model relies on{more}\n(describes this model, not what causes the target)", fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)


def plot_occlusion(images: np.ndarray, maps: np.ndarray, titles: list[str], path) -> None:
    """One row of panels: each image with its occlusion map overlaid (red: hiding it lowers the probability)."""
    plt = pyplot()
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
    save_figure(fig, path, bbox_inches="tight")

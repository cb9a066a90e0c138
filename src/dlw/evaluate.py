"""Step 8, measuring performance: the network and simple baselines on the same held-out rows.

Classification: accuracy, balanced accuracy, macro F1, log loss (+ ROC AUC for
binary). Regression: RMSE, MAE, R² in the target's own units. Baselines: the
majority class or the mean, a linear model, and scikit-learn's
HistGradientBoosting, all fitted on the train split only.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from dlw.problem import Problem


def classification_metrics(y_true: np.ndarray, proba: np.ndarray, n_classes: int) -> dict:
    from sklearn import metrics as m

    predicted = proba.argmax(axis=1)
    labels = list(range(n_classes))
    clipped = np.clip(proba, 1e-7, 1.0)
    clipped = clipped / clipped.sum(axis=1, keepdims=True)
    result = {
        "accuracy": float(m.accuracy_score(y_true, predicted)),
        "balanced_accuracy": float(m.balanced_accuracy_score(y_true, predicted)),
        "macro_f1": float(m.f1_score(y_true, predicted, average="macro", labels=labels, zero_division=0)),
        "log_loss": float(m.log_loss(y_true, clipped, labels=labels)),
    }
    if n_classes == 2:
        both = len(np.unique(y_true)) == 2
        result["roc_auc"] = float(m.roc_auc_score(y_true, proba[:, 1])) if both else None
    result["n"] = int(len(y_true))
    return result


def regression_metrics(y_true: np.ndarray, predicted: np.ndarray) -> dict:
    from sklearn import metrics as m

    return {
        "rmse": float(np.sqrt(m.mean_squared_error(y_true, predicted))),
        "mae": float(m.mean_absolute_error(y_true, predicted)),
        "r2": float(m.r2_score(y_true, predicted)) if len(y_true) > 1 else None,
        "n": int(len(y_true)),
    }


def score(problem: Problem, y_true: np.ndarray, output: np.ndarray) -> dict:
    """Metrics for model output: class probabilities, or predictions in target units."""
    if problem.is_classification:
        return classification_metrics(y_true, output, len(problem.classes))
    return regression_metrics(y_true, output)


def baseline_matrix(inputs: dict[str, np.ndarray], n_tokens: int) -> np.ndarray:
    """The model's inputs as one flat matrix (numbers, then one-hot categories) for scikit-learn."""
    blocks = []
    if "numeric" in inputs:
        blocks.append(inputs["numeric"].astype("float64"))
    if "categorical" in inputs:
        one_hot = np.zeros((len(inputs["categorical"]), n_tokens))
        rows = np.arange(len(one_hot))[:, None]
        one_hot[rows, inputs["categorical"]] = 1.0
        blocks.append(one_hot)
    return np.hstack(blocks)


TABLE_BASELINES = ("trivial", "linear", "hist_gradient_boosting")
IMAGE_BASELINES = ("trivial", "logistic_pixels")


def baselines(
    problem: Problem,
    x_train,
    y_train,
    evaluated: dict[str, tuple[np.ndarray, np.ndarray]],
    seed: int,
    which: tuple[str, ...] = TABLE_BASELINES,
) -> tuple[dict[str, dict], dict[str, dict]]:
    """Fit each baseline on the train rows; score it on every named split in ``evaluated``.

    Returns ``(metrics, outputs)``: ``metrics[name][split]`` and the baseline's
    output per row, ``outputs[name][split]`` (probabilities or predictions), which
    the verdict compares with the network's row by row. ``trivial`` is the
    majority class or the mean; ``logistic_pixels`` is logistic regression on
    raw, scaled-down pixels (images).
    """
    from sklearn.dummy import DummyClassifier, DummyRegressor
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if problem.is_classification:
        models = {
            "majority": DummyClassifier(strategy="most_frequent"),
            "linear": make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)),
            "logistic_pixels": make_pipeline(StandardScaler(), LogisticRegression(max_iter=500, C=0.1)),
            "hist_gradient_boosting": HistGradientBoostingClassifier(random_state=seed),
        }
    else:
        models = {
            "mean": DummyRegressor(strategy="mean"),
            "linear": make_pipeline(StandardScaler(), Ridge(alpha=1.0)),
            "logistic_pixels": make_pipeline(StandardScaler(), Ridge(alpha=10.0)),
            "hist_gradient_boosting": HistGradientBoostingRegressor(random_state=seed),
        }
    trivial = "majority" if problem.is_classification else "mean"
    wanted = [trivial if name == "trivial" else name for name in which]
    results: dict[str, dict] = {}
    outputs: dict[str, dict] = {}
    n_classes = len(problem.classes) if problem.is_classification else 0
    for name in wanted:
        model = models[name]
        if not problem.is_classification and name == "logistic_pixels":
            name = "ridge_pixels"
        results[name], outputs[name] = {}, {}
        with _sklearn_threads():  # predicting too: boosting's per-tree OpenMP calls fight JAX's threads (3 s -> 0.1 s on penguins)
            model.fit(x_train, y_train)
            for split, (x, y) in evaluated.items():
                if problem.is_classification:
                    proba = np.zeros((len(x), n_classes))
                    proba[:, model.classes_.astype(int)] = model.predict_proba(x)
                    outputs[name][split] = proba
                    results[name][split] = classification_metrics(y, proba, n_classes)
                else:
                    outputs[name][split] = model.predict(x)
                    results[name][split] = regression_metrics(y, outputs[name][split])
    return results, outputs


def _sklearn_threads():
    """Cap scikit-learn's OpenMP threads at half the cores.

    After JAX has started its own thread pool, OpenMP's spinning workers fight it
    for the cores: HistGradientBoosting on 12,000 rows took 21 s instead of 1 s on
    2 cores with the default thread count (measured; see bench/RESULTS.md).
    """
    import os

    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=max(1, (os.cpu_count() or 2) // 2))


MAIN_METRIC = {"binary": "accuracy", "multiclass": "accuracy", "regression": "rmse"}


# --- plots -----------------------------------------------------------------


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_confusion_matrix(y_true: np.ndarray, predicted: np.ndarray, classes: list, path) -> None:
    from sklearn.metrics import ConfusionMatrixDisplay

    plt = _pyplot()
    size = min(12, 3 + 0.5 * len(classes))
    fig, ax = plt.subplots(figsize=(size, size))
    ConfusionMatrixDisplay.from_predictions(
        y_true, predicted, labels=list(range(len(classes))), display_labels=[str(c) for c in classes], ax=ax, colorbar=False, cmap="Blues"
    )
    ax.set_title(f"Confusion matrix, test split ({len(y_true)} rows)")
    plt.setp(ax.get_xticklabels(), rotation=45, ha="right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_residuals(y_true: np.ndarray, predicted: np.ndarray, target: str, path) -> None:
    plt = _pyplot()
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
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_learning_curves(history: pd.DataFrame, best_epoch: int, path, note: str = "") -> None:
    """Loss and each metric per epoch, train vs validation, with the restored epoch marked."""
    plt = _pyplot()
    names = [c for c in history.columns if c not in ("epoch", "phase") and not c.startswith("val_")]
    tuned_from = int(history.loc[history["phase"] == 2, "epoch"].min()) if "phase" in history and (history["phase"] == 2).any() else None
    fig, axes = plt.subplots(1, len(names), figsize=(4.5 * len(names), 3.6), squeeze=False)
    for ax, name in zip(axes[0], names):
        ax.plot(history["epoch"], history[name], label="train")
        if f"val_{name}" in history:
            ax.plot(history["epoch"], history[f"val_{name}"], label="validation")
        ax.axvline(best_epoch, color="grey", linestyle=":", linewidth=1, label=f"best epoch ({best_epoch})")
        if tuned_from is not None:
            ax.axvline(tuned_from - 0.5, color="tab:red", linestyle="--", linewidth=1, label="fine-tuning starts")
        ax.set_xlabel("epoch")
        ax.set_title(name + (f" {note}" if note and name != "accuracy" else ""))
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

"""The seam between input kinds: ``Prepared`` is steps 1-3 done, and knows its own kind.

Whether a run is on a table or on images is decided once (``dlw.spec.resolve_kind``)
and from then on carried by the ``Prepared`` object built for it: ``TablePrepared``
(``dlw.data.tables``) or ``ImagePrepared`` (``dlw.data.image_sets``). Code downstream
asks it to select rows, predict in batches, give the baselines their feature matrix,
leave out the test split, scale the target, and explain the model; it never asks which
kind it holds. A new input kind is a new subclass, not a new ``if``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Iterator

import numpy as np
import pandas as pd

from dlw.problem import Problem

SPLITS = ("train", "validation", "test")
LOG_TRANSFORM = "log1p"  # target_scaling["transform"] where the network learns log(1 + target) (data.target_transform: log)


def logs_target(target_scaling: dict | None) -> bool:
    """Whether a run's ``target_scaling`` has the network learn log(1 + target) (its outputs then go through expm1)."""
    return (target_scaling or {}).get("transform") == LOG_TRANSFORM


def sample_positions(n: int, at_most: int, rng: np.random.Generator) -> np.ndarray:
    """``at_most`` of the positions ``0..n-1`` drawn by ``rng`` without replacement, in order (all of them when ``n <= at_most``)."""
    if n <= at_most:
        return np.arange(n)
    return np.sort(rng.choice(n, at_most, replace=False))


@dataclass
class Prepared:
    """Steps 1-3 done: the problem, the schema fitted on train rows, and the encoded splits.

    ``inputs[split]`` is in the kind's own container (named arrays, an image array or an
    image stream); only the subclass looks inside it.
    """

    frame: pd.DataFrame
    problem: Problem
    schema: Any
    splits: Any  # dlw.data.splits.Splits; None for a finished run's predictions
    inputs: dict[str, Any]
    targets: dict[str, np.ndarray]  # class indices, or the target in its own units
    target_scaling: dict | None
    dropped_rows: int
    notes: list[str] = field(default_factory=list)
    config: Any = None  # the Config it was prepared for
    # The same rows with step 3's group numbers read the other way (``dlw.groups``), or None: each baseline
    # fits both readings and keeps the one its own loss prefers.
    other_reading: Any = None

    kind: ClassVar[str] = ""
    noun: ClassVar[str] = "row"  # what one example is called in messages
    baseline_names: ClassVar[tuple[str, ...]] = ()
    # Blocks of the unfamiliar-input detector whose dimensions share one scale.
    shared_detector_blocks: ClassVar[tuple[str, ...]] = ("penultimate",)

    # --- what each kind implements ------------------------------------------------------

    def take(self, inputs, rows: np.ndarray):
        """The inputs at positions ``rows`` of one split's container."""
        raise NotImplementedError

    def predict_raw(self, model, inputs) -> np.ndarray:
        """``model.predict`` over ``inputs``, in batches sized for the kind."""
        raise NotImplementedError

    def baseline_features(self, inputs) -> np.ndarray:
        """Inputs as one flat matrix for scikit-learn."""
        raise NotImplementedError

    def fit_data(self, split: str, config, *, shuffle: bool, seed: int, rows: np.ndarray | None = None):
        """What ``fit`` reads for ``split``: ``(x, y)`` arrays, or ``(stream, None)`` for a stream of batches."""
        raise NotImplementedError

    def join(self, first, second):
        """The inputs of ``first`` followed by those of ``second`` (two splits' containers), for cross-fitting."""
        raise NotImplementedError(f"{self.kind}: cross-fitting (train.folds) is for tables")

    def explain(self, model, folder: Path, seed: int) -> dict:
        """What the model relies on, written into ``folder``; the summary for metrics.json."""
        raise NotImplementedError

    # --- shared by every kind -----------------------------------------------------------

    def with_train_rows(self, keep: np.ndarray) -> "Prepared":
        """A copy whose train split is only the train positions ``keep`` (validation and test unchanged)."""
        inputs = {**self.inputs, "train": self.take(self.inputs["train"], keep)}
        return dataclasses.replace(self, inputs=inputs, targets={**self.targets, "train": self.targets["train"][keep]})

    def fold_views(self) -> Iterator["Prepared"]:
        """The data of each network a run trains, made as it is needed: one per fold when cross-fitting, else this.

        Fold ``k`` validates, the other folds train, the test split is as it is. The encoding
        is the run's (fitted on the first fold's train rows); each network fits what it learns
        from data (its embeddings' bins, a baseline's scaling) on its own rows.
        """
        if self.splits is None or not self.splits.folds:
            yield self
            return
        pooled_rows = np.concatenate([self.splits.train, self.splits.validation])  # pooled once for all folds
        order = np.argsort(pooled_rows)
        sorted_rows = pooled_rows[order]
        pooled = self.join(self.inputs["train"], self.inputs["validation"])
        y = np.concatenate([self.targets["train"], self.targets["validation"]])
        for k in range(self.splits.fold_count):
            splits = self.splits.fold(k)
            train_at, val_at = (order[np.searchsorted(sorted_rows, rows)] for rows in (splits.train, splits.validation))
            # The first fold is the run's validation split: its own arrays, so that what is computed on them
            # while fitting (a baseline's validation outputs, ``Fitted.known``) is known to be theirs.
            validation = self.inputs["validation"] if np.array_equal(splits.validation, self.splits.validation) else self.take(pooled, val_at)
            inputs = {**self.inputs, "train": self.take(pooled, train_at), "validation": validation}
            yield dataclasses.replace(self, splits=splits, inputs=inputs, targets={**self.targets, "train": y[train_at], "validation": y[val_at]})

    def without_folds(self) -> "Prepared":
        """These data for one network (the first fold's when cross-fitting): what tuning and the sufficiency curve train on."""
        if self.splits is None or not self.splits.folds:
            return self
        return dataclasses.replace(self, splits=self.splits.single())

    def with_rows(self, rows: dict[str, np.ndarray]) -> "Prepared":
        """A copy keeping, for each split named in ``rows``, only those positions."""
        inputs, targets = dict(self.inputs), dict(self.targets)
        for split, keep in rows.items():
            inputs[split], targets[split] = self.take(inputs[split], keep), targets[split][keep]
        return dataclasses.replace(self, inputs=inputs, targets=targets)

    def with_at_most(self, rows: int, splits: tuple[str, ...], seed: int) -> "Prepared":
        """A copy holding at most ``rows`` of each of ``splits`` (a seeded sample, in order); the rest unchanged.

        What fits a statistic, not a model, needs no more: a detector's covariance or a
        permutation score on 200,000 rows costs minutes and says what 20,000 say.
        """
        rng = np.random.default_rng(seed)
        keep = {s: sample_positions(self.count(s), rows, rng) for s in splits if self.count(s) > rows}
        return self.with_rows(keep) if keep else self

    def without_test(self) -> "Prepared":
        """The data a tuning trial may see: the train and validation splits; the test split is gone."""
        keep = ("train", "validation")
        return dataclasses.replace(
            self,
            inputs={k: v for k, v in self.inputs.items() if k in keep},
            targets={k: v for k, v in self.targets.items() if k in keep},
        )

    def training_targets(self, split: str) -> np.ndarray:
        """What the network is fitted on: class indices, or the standardized target."""
        return self.standardized(self.targets[split])

    def standardized(self, y: np.ndarray) -> np.ndarray:
        """Targets ``y`` in the units the network predicts: standardized for regression (after ``log1p`` with
        ``data.target_transform: log``), as they are otherwise."""
        if self.target_scaling is None:
            return y
        scaling = self.target_scaling
        y = np.log1p(y) if logs_target(scaling) else y
        return ((y - scaling["mean"]) / scaling["std"]).astype("float32")

    def outputs(self, model, inputs) -> np.ndarray:
        """Class probabilities ``(n, k)`` for classification, predictions in target units for regression."""
        return self.outputs_from_raw(self.predict_raw(model, inputs))

    def outputs_from_raw(self, raw) -> np.ndarray:
        """The network's raw output as ``outputs`` returns it (serving computes ``raw`` its own way)."""
        raw = np.asarray(raw)
        task = self.problem.task
        if task == "binary":
            p = raw.reshape(-1)
            return np.stack([1.0 - p, p], axis=1)
        if task == "multiclass":
            return raw
        scaling = self.target_scaling or {"mean": 0.0, "std": 1.0}
        value = raw.reshape(-1) * scaling["std"] + scaling["mean"]
        return np.expm1(value) if logs_target(scaling) else value

    def baseline_training_set(self, features=None) -> tuple[Any, np.ndarray]:
        """The rows a baseline is fitted on: the train split through ``features`` (default ``baseline_features``)."""
        features = features or self.baseline_features
        return features(self.inputs["train"]), self.targets["train"]

    @property
    def streamed(self) -> bool:
        """Whether the splits are read from disk batch by batch rather than held in memory."""
        return False

    def count(self, split: str) -> int:
        return len(self.targets[split])

    def split_groups(self, split: str) -> np.ndarray | None:
        """Each of ``split``'s rows' group where the split is by group (``data.split.order: group:<column>``, tables only), else None."""
        return None

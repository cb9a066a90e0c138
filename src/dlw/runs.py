"""The run folder: everything a run decided and produced, written atomically.

A run is built in a hidden sibling folder (``.NAME.partial-PID``) and renamed
into place only when complete, so a run killed half way never leaves a folder
that looks finished. An existing run is replaced only with ``overwrite=True``,
and only when it is a dlw run folder (or empty): a user's other folders are
never deleted.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

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


def write_json(path: Path, payload: dict) -> None:
    from dlw.schema import _json_default

    Path(path).write_text(json.dumps(payload, indent=2, default=_json_default) + "\n", encoding="utf-8")


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))

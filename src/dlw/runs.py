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

from dlw.errors import DlwError, FolderBusy

RUN_MARKER = "run.json"


PARTIAL = ".{name}.partial-{pid}"
CHECKPOINT = "checkpoint"  # the training's per-epoch state inside a partial folder (dlw.resume)
RENAME_EXCHANGE = 2  # renameat2 flag: swap two paths atomically


def phase_file_name(number: int | str, *, prefix: str = "") -> str:
    """The file of one training phase's state in CHECKPOINT: ``phase1.npz``, a cross-fitted network's ``fold2_phase1.npz``."""
    return f"{prefix}phase{number}.npz"


def holds_training_progress(folder: Path) -> bool:
    """Whether a (partial) run folder holds a training phase's saved state, which ``--resume`` continues."""
    return any((folder / CHECKPOINT).glob(phase_file_name("*", prefix="*")))


class RunWriter:
    """Context manager that yields a hidden partial folder and renames it to ``out`` on success.

    One writer per ``out`` at a time: a lock file (released by the kernel however the
    process ends) makes a second ``dlw train`` on the same ``--out`` fail at once. A partial
    folder left by a killed run that holds training progress (``checkpoint/``) is kept: it is
    adopted with ``resume=True``, discarded with ``overwrite=True``, and otherwise reported
    with the command that resumes it. Before the rename every file and folder in the partial
    folder is fsynced; the rename swaps the new run with an old one atomically, so a crash
    leaves the old complete run or the new one, never neither.

    >>> import tempfile, pathlib
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "demo"
    >>> with RunWriter(out) as tmp:
    ...     _ = (tmp / "run.json").write_text("{}")
    >>> sorted(p.name for p in out.iterdir())
    ['run.json']
    """

    def __init__(self, out: str | Path, overwrite: bool = False, *, resume: bool = False):
        self.out = Path(out)
        self.overwrite, self.resume = overwrite, resume
        check_writable(self.out, overwrite)
        # The folders made for this run: a run that fails with nothing to keep leaves none of them.
        self.made = [p for p in (self.out.parent, *self.out.parent.parents) if not p.exists()]
        try:
            self.out.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DlwError(f"{self.out.parent}: cannot create the output folder ({exc.strerror}); choose another --out") from None
        self.lock = OutLock(self.out)
        self.tmp = self.out.parent / PARTIAL.format(name=self.out.name, pid=os.getpid())
        self.committed = False
        try:
            restore_replaced(self.out)
            self.progress = self._left_progress()
        except BaseException:
            self.lock.release()
            raise

    def _left_progress(self) -> Path | None:
        """The partial folder a killed run left with training progress in it (kept), others deleted."""
        kept = None
        for partial in sorted(stale_partials(self.out), key=lambda p: p.stat().st_mtime):
            if not holds_training_progress(partial) or (self.overwrite and not self.resume):
                shutil.rmtree(partial, ignore_errors=True)
                continue
            if kept is not None:
                shutil.rmtree(kept, ignore_errors=True)
            kept = partial
        if kept is not None and not self.resume:
            self.lock.release()
            raise DlwError(f"{self.out}: {progress_summary(kept)}; continue it with `{resume_command(kept)}`, or pass --overwrite to discard it and start afresh")
        return kept

    def __enter__(self) -> Path:
        try:
            if self.progress is not None:
                if self.progress != self.tmp:
                    os.rename(self.progress, self.tmp)  # adopted: this process now owns it
            else:
                if self.tmp.exists():
                    shutil.rmtree(self.tmp)
                self.tmp.mkdir()
        except OSError as exc:
            self.lock.release()
            raise DlwError(f"{self.out.parent}: cannot write the run folder there ({exc.strerror}); choose another --out") from None
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                self._commit()
            elif holds_training_progress(self.tmp) and not disk_full(exc):
                return  # Ctrl-C, a refused resume, a failure after training: the epochs trained stay for --resume
        except BaseException:
            shutil.rmtree(self.tmp, ignore_errors=True)  # the loser leaves nothing behind
            raise
        finally:
            self.lock.release()
        if not self.committed:
            shutil.rmtree(self.tmp, ignore_errors=True)
            for folder in self.made:  # deepest first; one that holds anything else stays
                try:
                    folder.rmdir()
                except OSError:
                    break

    def _commit(self) -> None:
        pause_point("rename")
        check_writable(self.out, self.overwrite)  # someone may have made it meanwhile
        shutil.rmtree(self.tmp / CHECKPOINT, ignore_errors=True)
        fsync_tree(self.tmp)
        if self.out.is_dir() and not any(self.out.iterdir()):
            self.out.rmdir()
        old = None
        try:
            if not self.out.exists():
                os.rename(self.tmp, self.out)
            elif exchange_paths(self.tmp, self.out):
                old = self.tmp  # now holds the replaced run
            else:  # no atomic swap here: move aside, move in; restore_replaced repairs a crash between
                old = self.out.parent / f".{self.out.name}.replaced-{os.getpid()}"
                os.replace(self.out, old)
                os.replace(self.tmp, self.out)
        except OSError as exc:
            raise DlwError(f"{self.out}: cannot move the finished run into place ({exc.strerror}); another process wrote it meanwhile?") from None
        fsync_path(self.out.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        self.committed = True


class OutLock:
    """An exclusive ``flock`` on ``.NAME.lock`` beside ``out``: one writer per run folder.

    The kernel drops the lock when the process ends, even by SIGKILL, so a killed run
    never blocks the next one.
    """

    def __init__(self, out: Path, *, wait: bool = False):
        """Take the lock; ``wait``: until the process holding it lets go, else ``FolderBusy`` at once."""
        import fcntl

        self.path = out.parent / f".{out.name}.lock"
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                raise DlwError(f"{out.parent}: cannot write there ({exc.strerror}); choose another --out") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
                os.close(fd)
                raise FolderBusy(f"{out}: another dlw process (pid {holder}) is writing this run folder now; wait for it to finish, or choose another --out") from None
            if self._same_file(fd):  # not unlinked by the previous holder meanwhile
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self.fd = fd

    def _same_file(self, fd: int) -> bool:
        try:
            return os.stat(self.path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            return False

    def release(self) -> None:
        if self.fd is None:
            return
        self.path.unlink(missing_ok=True)  # while still held, so no one can hold a lock on it
        os.close(self.fd)
        self.fd = None


def disk_full(exc: BaseException | None) -> bool:
    """Whether ``exc`` is the disk running out of space (a partial folder kept would keep it full)."""
    import errno

    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


def stale_partials(out: Path) -> list[Path]:
    """Partial folders of ``out``: all left by writers that are gone, since the caller holds ``out``'s lock.

    One named with this process's id is stale too: a training interrupted in this
    process (Ctrl-C in a notebook) left it.
    """
    return [p for p in out.parent.glob(PARTIAL.format(name=out.name, pid="*")) if p.is_dir()]


def restore_replaced(out: Path) -> None:
    """Put back a run that a crash left moved aside mid-replace (where the folder has no atomic swap)."""
    for old in out.parent.glob(f".{out.name}.replaced-*"):
        if not out.exists() and is_run_folder(old):
            os.rename(old, out)
        else:
            shutil.rmtree(old, ignore_errors=True)


def progress_summary(partial: Path) -> str:
    """One line on what a killed run's partial folder holds, e.g. 'a training killed after epoch 7 of 20 left ...'."""
    state = read_json_or_none(partial / CHECKPOINT / "progress.json") or {}
    done, planned = state.get("epoch"), state.get("epochs")
    if state.get("done"):
        return f"a run killed after its training ({done} epochs) had finished left it in {partial}"
    when = f"after epoch {done} of {planned}" if done is not None else "before its first epoch ended"
    return f"a training killed {when} left its progress in {partial}"


def missing_run_message(out: Path) -> str:
    """Why there is no run folder at ``out``: a killed run's kept progress and the command that finishes it, or none at all."""
    kept = sorted((p for p in stale_partials(out) if holds_training_progress(p)), key=lambda p: p.stat().st_mtime)
    if kept:
        return f"{out}: run folder not found, but {progress_summary(kept[-1])}; finish it with: {resume_command(kept[-1])}"
    return f"{out}: run folder not found; train one with `dlw train ... --out {out}`"


def resume_command(partial: Path) -> str:
    """The command that continues the run in ``partial``, as recorded when it started."""
    identity = read_json_or_none(partial / CHECKPOINT / "identity.json") or {}
    return identity.get("command") or "the same command with --resume"


def exchange_paths(a: Path, b: Path) -> bool:
    """Swap two paths in one atomic step (Linux renameat2); False where the system cannot."""
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        swap = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_cwd = -100
    return swap(at_cwd, os.fsencode(a), at_cwd, os.fsencode(b), RENAME_EXCHANGE) == 0


def fsync_tree(folder: Path) -> None:
    """Fsync every file and folder under ``folder``, deepest first, and ``folder`` itself."""
    for root, _, files in os.walk(folder, topdown=False):
        for name in files:
            fsync_path(Path(root) / name)
        fsync_path(Path(root))


def pause_point(name: str) -> None:
    """Fault injection for tests: with ``DLW_TEST_PAUSE_AT=name``, say so on stderr and sleep.

    The sleep lasts ``DLW_TEST_PAUSE_SECONDS`` (default 600): long enough for a test to
    SIGKILL the process there, or to change the data file under it. Inactive otherwise.
    """
    if os.environ.get("DLW_TEST_PAUSE_AT") != name:
        return
    import sys

    print(f"dlw-test: paused at {name}", file=sys.stderr, flush=True)
    time.sleep(float(os.environ.get("DLW_TEST_PAUSE_SECONDS", "600")))


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


def temporary_sibling(path: Path) -> Path:
    """The hidden file ``write_atomic`` writes ``path``'s content to before the rename."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def is_temporary_of(entry: Path, path: Path) -> bool:
    """Whether ``entry`` is some process's ``temporary_sibling`` of ``path`` (a write in progress)."""
    return entry.parent == path.parent and entry.name.startswith(f".{path.name}.") and entry.name.endswith(".tmp")


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
    tmp = temporary_sibling(path)
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
        digest = hashlib.sha256()
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        return digest.hexdigest()
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

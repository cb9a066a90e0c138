"""The one exception type that reaches a user: a bad input, said in one line."""

from __future__ import annotations

import errno


class DlwError(Exception):
    """A problem with the user's input, config or data.

    The message is one line that names the file, column or key involved and says
    what to do. The CLI prints it and exits with status 2; it never shows a
    traceback for it (``--debug`` does).
    """


class ConfigError(DlwError):
    """The config (YAML or ``--set``) is malformed or has a wrong key or value."""


class DataError(DlwError):
    """The data file or table cannot be used as it is."""


class FolderBusy(DlwError):
    """Another dlw process holds the run folder's writer lock (``dlw.runs.OutLock``) now."""


SYSTEM_REFUSALS = {  # what the system refused, as advice to the user
    errno.ENOSPC: "no space left on the disk; nothing was half-written: free some space, or choose another --out on another disk",
    errno.EROFS: "the folder is read-only; nothing was written: choose another --out",
    errno.EACCES: "permission denied; nothing was written: choose another --out, or fix the folder's permissions",
    errno.EDQUOT: "over the disk quota; nothing was half-written: free some space, or choose another --out",
}


def exit_status_and_line(exc: Exception) -> tuple[int, str]:
    """How the CLI reports ``exc``: ``(exit status, the one line for stderr)``.

    2 for a bad input (a ``DlwError``, or the system refusing: a full disk, a read-only
    folder, no memory), 1 for a bug in dlw. The fuzz tests call this on the Python API,
    so what they check is what a CLI user would see.
    """
    if isinstance(exc, DlwError):
        return 2, f"dlw: error: {exc}"
    if isinstance(exc, OSError) and exc.errno in SYSTEM_REFUSALS:
        where = f"{exc.filename}: " if exc.filename else ""
        return 2, f"dlw: error: {where}{SYSTEM_REFUSALS[exc.errno]}"
    if isinstance(exc, (OSError, MemoryError)):
        return 2, f"dlw: error: {type(exc).__name__}: {' '.join(str(exc).split())}"
    return 1, (
        f"dlw: internal error: {type(exc).__name__}: {' '.join(str(exc).split())[:300]} "
        "(run again with --debug for the traceback, and please report it)"
    )

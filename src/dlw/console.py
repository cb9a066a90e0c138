"""What dlw tells its user while it works: stderr messages, and ``run.log`` in the run folder.

Messages go to stderr so that stdout stays clean for results (``dlw init > my.yaml``).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path


class Console:
    """Prints notes to stderr (unless quiet) and keeps every note for ``run.log``."""

    def __init__(self, quiet: bool = False):
        self.quiet = quiet
        self.lines: list[str] = []
        self._log_path: Path | None = None
        self._start = time.perf_counter()

    @property
    def interactive(self) -> bool:
        return not self.quiet and sys.stderr.isatty()

    @property
    def notebook(self) -> bool:
        """Whether this process is a Jupyter kernel (rich's own test), where a terminal bar cannot redraw."""
        if self.quiet or "IPython" not in sys.modules:
            return False
        from rich.console import Console as RichConsole

        return RichConsole().is_jupyter

    def live_line(self):
        """In a notebook, a function that shows its text as one output updated in place; elsewhere None.

        It goes through IPython's display updates, so it needs no ipywidgets (rich's live
        display in Jupyter does).
        """
        if not self.notebook:
            return None
        from IPython.display import Pretty, display

        handle = display(Pretty(""), display_id=True)
        return lambda text: handle.update(Pretty(text))

    def say(self, message: str) -> None:
        self._record(message)
        if not self.quiet:
            print(message, file=sys.stderr, flush=True)

    def warn(self, message: str) -> None:
        self._record(f"warning: {message}")
        if not self.quiet:
            print(f"warning: {message}", file=sys.stderr, flush=True)

    def log_only(self, message: str) -> None:
        self._record(message)

    def step(self, number: int, title: str) -> None:
        self.say(f"[{number}] {title}")

    def attach_log(self, path: Path) -> None:
        """Write the notes so far, and every later one, to ``path``."""
        self._log_path = Path(path)
        self._log_path.write_text("".join(line + "\n" for line in self.lines), encoding="utf-8")

    def detach_log(self) -> None:
        self._log_path = None

    def _record(self, message: str) -> None:
        stamped = f"{time.perf_counter() - self._start:7.2f}s  {message}"
        self.lines.append(stamped)
        if self._log_path is not None:
            with self._log_path.open("a", encoding="utf-8") as fh:
                fh.write(stamped + "\n")


QUIET = Console(quiet=True)

"""The one exception type that reaches a user: a bad input, said in one line."""

from __future__ import annotations


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

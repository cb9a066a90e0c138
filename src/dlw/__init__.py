"""dlw: the deep-learning workflow, step by step, on your own tables.

>>> import dlw
>>> wf = dlw.Workflow.from_config("penguins")   # doctest: +SKIP
>>> run = wf.train()                             # doctest: +SKIP
>>> dlw.load("runs/penguins").predict(rows)      # doctest: +SKIP

Heavy modules (keras, jax, pandas) load on first use, so ``import dlw`` is quick.
"""

from __future__ import annotations

from dlw.version import __version__

__all__ = ["Workflow", "Run", "load", "Config", "DlwError", "__version__"]


def __getattr__(name: str):
    if name in ("Workflow", "Run", "load"):
        from dlw import workflow

        return getattr(workflow, name)
    if name == "Config":
        from dlw.config import Config

        return Config
    if name == "DlwError":
        from dlw.errors import DlwError

        return DlwError
    raise AttributeError(f"module 'dlw' has no attribute {name!r}")

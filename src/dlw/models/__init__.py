"""Step 5, the architecture: build a ``keras.Model`` for the task and the data."""

from dlw.models.mlp import build_mlp

__all__ = ["build_mlp"]

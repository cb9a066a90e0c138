"""Choosing the Keras backend; the only module that knows backends exist.

Keras fixes its backend when it is first imported, so the choice is made here,
before any ``import keras`` in dlw. A user's own ``KERAS_BACKEND`` always wins.
"""

from __future__ import annotations

import os

DEFAULT_BACKEND = "jax"


def ensure_backend(default: str = DEFAULT_BACKEND) -> str:
    """Set ``KERAS_BACKEND`` to ``default`` unless the user chose one; return it."""
    os.environ.setdefault("KERAS_BACKEND", default)
    # JAX grabs most of a GPU's memory by default, which starves other processes.
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    return os.environ["KERAS_BACKEND"]


def import_keras():
    """Import keras with dlw's backend choice applied and return the module."""
    ensure_backend()
    import keras

    return keras


def device_summary() -> list[str]:
    """Describe the devices the active backend computes on, e.g. ``['cpu:0']``."""
    keras = import_keras()
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return [f"{d.platform}:{d.id}" for d in jax.devices()]
    if backend == "tensorflow":
        import tensorflow as tf

        return [d.name for d in tf.config.list_logical_devices()]
    if backend == "torch":
        import torch

        return ["cuda:0"] if torch.cuda.is_available() else ["cpu"]
    return ["unknown"]

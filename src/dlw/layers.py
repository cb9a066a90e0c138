"""Every Keras object dlw saves in ``model.keras``, registered by importing this one module.

dlw's own commands import what they need. A user who wants the network without dlw's
workflow imports this first, then loads the file with Keras alone (``safe_mode`` holds:
nothing in it is pickled)::

    import keras
    import dlw.layers
    model = keras.saving.load_model("runs/houses/model.keras")
"""

from __future__ import annotations

from dlw.calibration import TemperatureScaling
from dlw.models.tabm import (
    CategoricalEmbedding,
    EnsembleAdapter,
    EnsembleDense,
    EnsembleHead,
    EnsembleMean,
    LogScaleClip,
    OutputRange,
    PeriodicEmbedding,
    PiecewiseLinearEmbedding,
    RobustScale,
    RobustScaleClip,
)
from dlw.models.text_bag import HashedBagEmbedding
from dlw.schedules import HeldPeakCosineDecay

__all__ = [
    "CategoricalEmbedding",
    "EnsembleAdapter",
    "EnsembleDense",
    "EnsembleHead",
    "EnsembleMean",
    "HashedBagEmbedding",
    "HeldPeakCosineDecay",
    "LogScaleClip",
    "OutputRange",
    "PeriodicEmbedding",
    "PiecewiseLinearEmbedding",
    "RobustScale",
    "RobustScaleClip",
    "TemperatureScaling",
]

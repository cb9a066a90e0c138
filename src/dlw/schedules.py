"""The warm-up and cosine learning-rate schedule whose peak is an optimizer variable, so cycles share compiled steps.

A run's cycles (``train.cycles``) differ only in their peak rate. Keras's ``CosineDecay``
holds its rates as Python floats, which XLA compiles into the train step as constants, so
each cycle compiled its own step (stop 29 in bench/RESULTS.md). Here the start and peak
rates are variables of the optimizer, inputs of the step: every cycle of a run, and every
cross-fitted network's cycle, runs the same program, and the arithmetic is Keras's own.
"""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="dlw")
class HeldPeakCosineDecay(keras.optimizers.schedules.CosineDecay):
    """``CosineDecay`` with warm-up whose start and target rates ``hold_in`` moves into an optimizer's variables.

    Its config holds their values, so a saved optimizer loads as a plain schedule of the same rates.
    """

    def hold_in(self, optimizer):
        """``optimizer``, whose schedule this is, with the start and target rates held in two of its variables."""
        constant = keras.initializers.Constant
        self.initial_learning_rate = optimizer.add_variable((), initializer=constant(self.initial_learning_rate), name="start_learning_rate")
        self.warmup_target = optimizer.add_variable((), initializer=constant(self.warmup_target), name="peak_learning_rate")
        return optimizer

    def get_config(self):
        config = super().get_config()
        for key in ("initial_learning_rate", "warmup_target"):
            config[key] = float(ops.convert_to_numpy(config[key]))
        return config

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
    """``CosineDecay`` with warm-up whose start and target rates can be variables (``held_peak_cosine``).

    Its config holds their values, so a saved optimizer loads as a plain schedule of the same rates.
    """

    def get_config(self):
        config = super().get_config()
        for key in ("initial_learning_rate", "warmup_target"):
            config[key] = float(ops.convert_to_numpy(config[key]))
        return config


def held_peak_cosine(optimizer_class: str, settings: dict, *, start: float, peak: float, warmup_steps: int, decay_steps: int):
    """A Keras optimizer (``optimizer_class`` with ``settings``) on a warm-up + cosine schedule whose rates are its own variables."""
    schedule = HeldPeakCosineDecay(
        initial_learning_rate=start, decay_steps=decay_steps, alpha=0.0, warmup_target=peak, warmup_steps=warmup_steps
    )
    optimizer = keras.optimizers.get({"class_name": optimizer_class, "config": {**settings, "learning_rate": schedule}})
    constant = keras.initializers.Constant
    schedule.initial_learning_rate = optimizer.add_variable((), initializer=constant(start), name="start_learning_rate")
    schedule.warmup_target = optimizer.add_variable((), initializer=constant(peak), name="peak_learning_rate")
    return optimizer

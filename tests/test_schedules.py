"""The cycles' schedule (dlw.schedules): Keras's warm-up + cosine rates, with the rates held in optimizer variables."""

from __future__ import annotations

import numpy as np

import keras
from dlw.schedules import HeldPeakCosineDecay


def held_adamw(*, start: float, peak: float, warmup_steps: int, decay_steps: int, **settings):
    """AdamW on the held schedule, as dlw.train.make_optimizer builds it for a run with cycles."""
    schedule = HeldPeakCosineDecay(initial_learning_rate=start, decay_steps=decay_steps, alpha=0.0, warmup_target=peak, warmup_steps=warmup_steps)
    return schedule.hold_in(keras.optimizers.AdamW(learning_rate=schedule, **settings))


def rates(optimizer, steps) -> np.ndarray:
    """The optimizer's learning rate at each of ``steps`` (its iteration count set there)."""
    out = []
    for step in steps:
        optimizer.iterations.assign(step)
        out.append(float(optimizer.learning_rate))
    return np.array(out)


def test_held_rates_follow_keras_cosine_decay_and_save_as_numbers():
    optimizer = held_adamw(start=2e-5, peak=2e-3, warmup_steps=15, decay_steps=285, weight_decay=0.01)
    stock = keras.optimizers.schedules.CosineDecay(2e-5, 285, alpha=0.0, warmup_target=2e-3, warmup_steps=15)
    held = {v.name: v for v in optimizer.variables if v.name in ("start_learning_rate", "peak_learning_rate")}
    assert len(held) == 2  # inputs of the compiled step, not constants in it
    steps = [0, 1, 7, 14, 15, 16, 100, 284, 299, 300, 400]
    got = rates(optimizer, steps)
    np.testing.assert_allclose(got, [float(stock(s)) for s in steps], rtol=1e-6, atol=1e-12)
    assert got[0] == np.float32(2e-5) and got[-1] == 0.0

    # A later cycle's rates are the same program's with other values in the variables.
    for variable in held.values():
        variable.assign(variable.numpy() / 2)
    assert rates(optimizer, [15])[0] == np.float32(1e-3)

    # Saved with the optimizer, the schedule holds numbers and loads as the same rates.
    saved = optimizer.get_config()["learning_rate"]
    assert saved["config"]["initial_learning_rate"] == np.float32(1e-5) and saved["config"]["warmup_target"] == np.float32(1e-3)
    again = keras.optimizers.schedules.deserialize(saved)
    assert isinstance(again, HeldPeakCosineDecay) and float(again(15)) == np.float32(1e-3)

"""Calibrated probabilities: temperature scaling fitted on the validation split, saved inside the model.

A network's probabilities are often over-confident: of the rows it gives 0.9, fewer than
90% turn out right. Temperature scaling (Guo et al., 2017) divides the log-probabilities
by one number ``T`` chosen to minimise the validation log loss; the predicted class does
not change, only how sure the network says it is. The layer ``TemperatureScaling`` is
appended to the network, so ``model.keras`` (loaded in safe mode, no pickle) and anything
exported from it predict calibrated probabilities.

``calibration_summary`` measures the Brier score and the expected calibration error (ECE,
15 equal-width bins of the top probability) on the test split, before and after.
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np

ECE_BINS = 15
TEMPERATURE_RANGE = (0.05, 20.0)


@keras.saving.register_keras_serializable(package="dlw")
class TemperatureScaling(keras.layers.Layer):
    """Probabilities in, probabilities out: ``softmax(log p / T)``; one sigmoid unit as ``sigmoid(logit(p) / T)``."""

    def __init__(self, temperature: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.temperature = float(temperature)

    def call(self, probabilities):
        p = keras.ops.clip(probabilities, 1e-7, 1.0 - 1e-7)
        if probabilities.shape[-1] == 1:
            return keras.ops.sigmoid((keras.ops.log(p) - keras.ops.log(1.0 - p)) / self.temperature)
        return keras.ops.softmax(keras.ops.log(p) / self.temperature, axis=-1)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "temperature": self.temperature}


def scaled(proba: np.ndarray, temperature: float) -> np.ndarray:
    """Class probabilities ``(n, k)`` at ``temperature``, as the layer computes them."""
    logp = np.log(np.clip(np.asarray(proba, dtype="float64"), 1e-7, 1.0)) / temperature
    logp -= logp.max(axis=1, keepdims=True)
    e = np.exp(logp)
    return e / e.sum(axis=1, keepdims=True)


def fit_temperature(y: np.ndarray, proba: np.ndarray) -> float:
    """The temperature that minimises the log loss of ``proba`` on the rows ``y``."""
    from scipy.optimize import minimize_scalar

    rows = np.arange(len(y))

    def loss(log_t: float) -> float:
        return float(-np.log(np.clip(scaled(proba, np.exp(log_t))[rows, y], 1e-12, 1.0)).mean())

    low, high = np.log(TEMPERATURE_RANGE)
    return float(np.exp(minimize_scalar(loss, bounds=(low, high), method="bounded").x))


def brier_score(y: np.ndarray, proba: np.ndarray) -> float:
    """Mean over rows of the squared distance between the probabilities and the one-hot truth (0 is perfect)."""
    truth = np.eye(proba.shape[1])[np.asarray(y, dtype=int)]
    return float(((proba - truth) ** 2).sum(axis=1).mean())


def expected_calibration_error(y: np.ndarray, proba: np.ndarray, bins: int = ECE_BINS) -> float:
    """The rows' share-weighted gap between confidence (top probability) and accuracy, over equal-width bins."""
    confidence, correct = proba.max(axis=1), (proba.argmax(axis=1) == np.asarray(y)).astype(float)
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    gap = 0.0
    for b in np.unique(which):
        inside = which == b
        gap += inside.mean() * abs(confidence[inside].mean() - correct[inside].mean())
    return float(gap)


def calibrate(model, prepared, setting: str):
    """``model`` with a ``TemperatureScaling`` layer fitted on the validation split, and the temperature.

    Regression, or ``setting`` none: the model unchanged and None.
    """
    if setting == "none" or not prepared.problem.is_classification:
        return model, None
    proba = prepared.outputs(model, prepared.inputs["validation"])
    temperature = fit_temperature(prepared.targets["validation"], proba)
    output = TemperatureScaling(temperature, name="calibration")(model.outputs[0])
    return keras.Model(model.input, output, name=model.name), temperature


def calibration_summary(temperature: float, y: np.ndarray, calibrated: np.ndarray, folder: Path | None = None) -> dict:
    """Brier score and ECE of the test probabilities before and after scaling; the reliability diagram into ``folder``.

    The probabilities before are recovered from the calibrated ones (scaling by ``1 / T``
    undoes it), so the network is not run twice.
    """
    from dlw.plots import plot_reliability

    before = scaled(calibrated, 1.0 / temperature)
    summary = {
        "method": "temperature scaling, fitted on the validation split",
        "temperature": round(temperature, 4),
        "split": "test",
        "before": {"brier": brier_score(y, before), "ece": expected_calibration_error(y, before)},
        "after": {"brier": brier_score(y, calibrated), "ece": expected_calibration_error(y, calibrated)},
        "bins": ECE_BINS,
    }
    if folder is not None:
        plot_reliability(y, {"before": before, "after": calibrated}, folder / "reliability.png", bins=ECE_BINS)
    return summary

"""Calibrated probabilities: temperature scaling fitted on the validation split, saved inside the model.

A network's probabilities are often over-confident: of the rows it gives 0.9, fewer than
90% turn out right. Temperature scaling (Guo et al., 2017) divides the log-probabilities
by one number ``T`` chosen to minimise the validation log loss; the predicted class does
not change, only how sure the network says it is. The layer ``TemperatureScaling`` is
appended to the network, so ``model.keras`` (loaded in safe mode, no pickle) and anything
exported from it predict calibrated probabilities.

A network trained with class weights (``train.class_weight``) learned the probabilities of
re-weighted classes, which over-state the rare ones; no temperature undoes that. So the
weights are first divided out (``shift``: each class's log weight subtracted from its
log-probability, the prior correction), then the temperature is fitted. The network's own
decisions are kept as a decision rule (``decision_offsets``), so the rare classes are still
predicted as the weighted training intended while their probabilities are honest.

``calibration_summary`` measures the Brier score and the expected calibration error (ECE,
15 equal-width bins of the top probability) on the test split, before and after.
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np

ECE_BINS = 15
# Sharpening is bounded at 4x: on a validation split the network gets entirely right (penguins),
# the log loss falls without end as T falls, and a T of 0.05 made every test error a certainty.
TEMPERATURE_RANGE = (0.25, 20.0)
# Validation rows the network must get wrong before a temperature is fitted.
MIN_ERRORS = 5


@keras.saving.register_keras_serializable(package="dlw")
class TemperatureScaling(keras.layers.Layer):
    """Probabilities in, probabilities out: ``softmax(log p / T)``; one sigmoid unit as ``sigmoid(logit(p) / T)``."""

    def __init__(self, temperature: float = 1.0, shift: list[float] | None = None, **kwargs):
        super().__init__(**kwargs)
        self.temperature = float(temperature)
        self.shift = None if shift is None else [float(s) for s in shift]

    def call(self, probabilities):
        p = keras.ops.clip(probabilities, 1e-7, 1.0 - 1e-7)
        shift = self.shift or [0.0] * max(2, probabilities.shape[-1])
        if probabilities.shape[-1] == 1:
            logit = keras.ops.log(p) - keras.ops.log(1.0 - p) - (shift[1] - shift[0])
            return keras.ops.sigmoid(logit / self.temperature)
        logp = keras.ops.log(p) - keras.ops.convert_to_tensor(shift, dtype=p.dtype)
        return keras.ops.softmax(logp / self.temperature, axis=-1)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "temperature": self.temperature, "shift": self.shift}


def scaled(proba: np.ndarray, temperature: float, shift=None) -> np.ndarray:
    """Class probabilities ``(n, k)`` with ``shift`` subtracted from the log-probabilities, at ``temperature``, as the layer computes them."""
    logp = np.log(np.clip(np.asarray(proba, dtype="float64"), 1e-7, 1.0))
    logp = (logp - (0.0 if shift is None else np.asarray(shift)[None, :])) / temperature
    logp -= logp.max(axis=1, keepdims=True)
    e = np.exp(logp)
    return e / e.sum(axis=1, keepdims=True)


def fit_temperature(y: np.ndarray, proba: np.ndarray, shift=None) -> float:
    """The temperature that minimises the log loss of ``proba`` (its log-probabilities less ``shift``) on the rows ``y``."""
    from scipy.optimize import minimize_scalar

    rows = np.arange(len(y))

    def loss(log_t: float) -> float:
        return float(-np.log(np.clip(scaled(proba, np.exp(log_t), shift)[rows, y], 1e-12, 1.0)).mean())

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


def calibrate(model, prepared, config):
    """``model`` with a ``TemperatureScaling`` layer fitted on the validation split, and what was fitted.

    The dict has ``temperature`` and ``shift`` (the log class weights divided out, or None).
    Regression, or ``checks.calibration: none``: the model unchanged and None.
    """
    from dlw.classes import class_weights

    problem = prepared.problem
    if config.checks.calibration == "none" or not problem.is_classification:
        return model, None
    weights = class_weights(problem, prepared.targets["train"], config.train.class_weight)
    shift = None if weights is None else [float(np.log(weights[i])) if weights[i] > 0 else 0.0 for i in range(len(problem.classes))]
    from dlw.crossfit import validation_network

    proba = prepared.outputs(validation_network(model), prepared.inputs["validation"])  # out of sample when cross-fitted
    y = prepared.targets["validation"]
    # With (almost) no validation errors the log loss only says "sharper": T would sink to its
    # bound and make every test error a certainty (penguins: test Brier 0.010 -> 0.018). Keep T = 1.
    errors = int((scaled(proba, 1.0, shift).argmax(axis=1) != y).sum())
    temperature = fit_temperature(y, proba, shift) if errors >= MIN_ERRORS else 1.0
    output = TemperatureScaling(temperature, shift, name="calibration")(model.outputs[0])
    return keras.Model(model.input, output, name=model.name), {"temperature": temperature, "shift": shift, "validation_errors": errors}


def uncalibrated_outputs(model, prepared, split: str = "test") -> np.ndarray:
    """The class probabilities of ``model`` without its ``calibration`` layer, on ``split``."""
    network = keras.Model(model.input, model.get_layer("calibration").input)
    return prepared.outputs(network, prepared.inputs[split])


def calibration_summary(fitted: dict, y: np.ndarray, calibrated: np.ndarray, folder: Path | None = None, *, before: np.ndarray) -> dict:
    """Brier score and ECE of the test probabilities before and after calibration; the reliability diagram into ``folder``.

    ``before`` are the network's own test probabilities (``uncalibrated_outputs``): undoing
    the scaling from the calibrated ones cannot recover what float32 rounded to 0 or 1.
    """
    from dlw.plots import plot_reliability

    temperature, shift = fitted["temperature"], fitted.get("shift")
    summary = {
        "method": "temperature scaling, fitted on the validation split" + ("; class weights divided out first" if shift else "")
        + (f"; T kept at 1: {fitted['validation_errors']} validation error(s), too few to fit it" if fitted.get("validation_errors", MIN_ERRORS) < MIN_ERRORS else ""),
        "temperature": round(temperature, 4),
        "class_weight_shift": None if shift is None else [round(s, 4) for s in shift],
        "split": "test",
        "before": {"brier": brier_score(y, before), "ece": expected_calibration_error(y, before)},
        "after": {"brier": brier_score(y, calibrated), "ece": expected_calibration_error(y, calibrated)},
        "bins": ECE_BINS,
    }
    if folder is not None:
        plot_reliability(y, {"before": before, "after": calibrated}, folder / "reliability.png", bins=ECE_BINS)
    return summary

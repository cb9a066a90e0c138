"""Unfamiliar inputs: rows unlike anything the model was trained on.

A prediction on such a row is a guess, however confident the network looks.
For each block of features (e.g. ``"inputs"``, the preprocessed table, and
``"penultimate"``, the network's last hidden layer) the detector measures the
Mahalanobis distance to the nearest class mean, with one covariance shared by
all classes (Lee et al., 2018), estimated with Ledoit-Wolf shrinkage so that
constant dimensions and more dimensions than rows do no harm.

Before that, a block is put on one scale. A table's columns come in different
units, so each is divided by its own train standard deviation (floored at 1% of
the block's typical one, so a constant column still counts when it changes).
A block whose dimensions share one unit (``"penultimate"`` activations, image
pixels: any block passed with more than two axes, or named in ``shared_units``)
is divided by one number, its typical standard deviation, because standardising
nearly constant pixels or units amplifies their noise: on scikit-learn's digits
(train on 0-4, 5% of validation rows flagged) shared scaling flagged 69-84% of
the unseen digits 5-9 from raw pixels, per-dimension scaling only 29-51%
(5 splits).

Each block's distance is divided by its median on the validation split, so
that 1.0 means "as typical as a typical validation row" in every block, and a
row's score is its largest block score. The threshold is the ``1 - rate`` quantile of the
validation scores in its finite-sample (split conformal) form, ``conformal_threshold``: at most
``rate`` of familiar rows are flagged by design.

A cross-fitted run (``dlw.crossfit``) has a network per fold, each never trained on its own fold,
and a small table's validation split is 8-42 rows, too few for a 95% quantile. There the threshold
is the same quantile of every fold's held-out scores, pooled: each fold's network gets such a
detector for the purpose, fitted on its train rows, and scores its held-out fold in units of that
fold's median (bench/RESULTS.md, stop 46). The first fold's detector is the one kept.

Saved as plain JSON (``ood.json``) and numbers (``ood.npz``, read with
``allow_pickle=False``); loading never runs code from a file.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np

from dlw.errors import DataError
from dlw.runs import write_atomic, write_json

SCORE_METHOD = (
    "class-conditional Mahalanobis distance with a shared Ledoit-Wolf covariance, per block of features "
    "(table blocks: each dimension divided by its train standard deviation, floored at 1% of the typical one; "
    "blocks in shared units: divided by the typical standard deviation); "
    "each block's distance divided by its validation median; score = the largest block score"
)
METHOD = SCORE_METHOD + "; threshold = the ceil((n + 1)(1 - rate))-th smallest of the n validation scores; non-finite inputs score infinity"
POOLED_METHOD = (
    SCORE_METHOD + "; threshold = the ceil((n + 1)(1 - rate))-th smallest of the n held-out scores of every fold's network "
    "(each scored by a detector fitted on that network's train rows, in units of its fold's median), pooled; non-finite "
    "inputs score infinity"
)
_FLOOR = 0.01  # a dimension's scale is at least this fraction of the block's typical (RMS) scale


class OODDetector:
    """Flags inputs unlike the training rows; see the module docstring.

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> train, val = {"inputs": rng.normal(size=(300, 4))}, {"inputs": rng.normal(size=(200, 4))}
    >>> detector = OODDetector().fit(train, None, val, rate=0.05)
    >>> detector.flag({"inputs": np.array([[0.0, 0.0, 0.0, 0.0], [9.0, -9.0, 9.0, 9.0]])}).tolist()
    [False, True]
    """

    def __init__(self) -> None:
        self.rate: float | None = None
        self.threshold: float | None = None
        self.blocks: list[str] = []
        self.dims: dict[str, int] = {}
        self.scale: dict[str, float] = {}  # per block: the validation median distance
        self.scaling: dict[str, str] = {}  # per block: "per_dimension" or "shared"
        self.n_classes: int = 0
        self.calibration_rows: dict | None = None  # {"rows", "folds"}: what set the threshold (None: saved before stop 46)
        self._arrays: dict[str, dict[str, np.ndarray]] = {}

    # --- fitting -------------------------------------------------------------

    def fit(
        self,
        blocks_train: dict[str, np.ndarray],
        labels_train: np.ndarray | None,
        blocks_val: dict[str, np.ndarray],
        rate: float = 0.05,
        shared_units: tuple[str, ...] | list[str] = ("penultimate",),
    ) -> "OODDetector":
        """Learn each block's class means and covariance on train; calibrate scales and threshold on validation.

        Blocks named in ``shared_units``, and blocks with more than two axes (images),
        are scaled as a whole; the others (tables) one dimension at a time.
        """
        if not 0.0 < rate < 1.0:
            raise ValueError(f"rate must be between 0 and 1, not {rate}")
        if not blocks_train:
            raise ValueError("no feature blocks to fit on")
        missing = sorted(set(blocks_train) - set(blocks_val))
        if missing:
            raise ValueError(f"validation blocks lack {', '.join(missing)}")
        n = _rows(blocks_train)
        labels = np.zeros(n, dtype=int) if labels_train is None else np.asarray(labels_train)
        if len(labels) != n:
            raise ValueError(f"{len(labels)} labels for {n} train rows")
        usable = _finite_rows(blocks_train)
        if usable.sum() < 2:
            raise ValueError("fewer than two train rows with finite values")
        classes, codes = np.unique(labels[usable], return_inverse=True)
        self.n_classes = len(classes)
        self.blocks = list(blocks_train)
        self.rate = float(rate)
        self._arrays = {}
        for name in self.blocks:
            shared = name in set(shared_units) or np.ndim(blocks_train[name]) > 2
            self._fit_block(name, _matrix(blocks_train[name], name)[usable], codes, len(classes), shared)
        # Calibrate on validation rows: per-block medians, then the threshold on the combined score.
        finite_val = _finite_rows({name: blocks_val[name] for name in self.blocks})
        if finite_val.sum() < 2:
            raise ValueError("fewer than two validation rows with finite values")
        val = {name: _matrix(blocks_val[name], name)[finite_val] for name in self.blocks}
        self.scale = {}
        for name in self.blocks:
            median = float(np.median(self._distance(name, val[name])))
            self.scale[name] = median if median > 0 else 1.0
        self.threshold = conformal_threshold(self.score(val), rate)
        self.calibration_rows = {"rows": int(finite_val.sum()), "folds": 1}
        return self

    def _fit_block(self, name: str, x: np.ndarray, codes: np.ndarray, n_classes: int, shared: bool) -> None:
        """One block's scaling, class means and whitening (Ledoit-Wolf shrunk covariance of the residuals)."""
        from sklearn.covariance import LedoitWolf

        self.dims[name] = x.shape[1]
        mean = x.mean(axis=0)
        std = x.std(axis=0)
        typical = float(np.sqrt(np.mean(std**2))) or 1.0
        self.scaling[name] = "shared" if shared else "per_dimension"
        scale = np.full_like(std, typical) if shared else np.maximum(std, _FLOOR * typical)
        z = (x - mean) / scale
        means = np.stack([z[codes == c].mean(axis=0) for c in range(n_classes)])
        residuals = z - means[codes]
        covariance = LedoitWolf(assume_centered=True).fit(residuals).covariance_
        values, vectors = np.linalg.eigh(covariance)
        values = np.maximum(values, 1e-12 * max(float(values.max()), 1e-12))
        whiten = vectors / np.sqrt(values)  # z @ whiten has identity covariance
        self._arrays[name] = {"mean": mean, "scale": scale, "whiten": whiten, "class_means": means @ whiten}

    # --- scoring -------------------------------------------------------------

    def block_scores(self, blocks: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Each block's distance divided by its validation median (1.0 = typical); inf for non-finite rows."""
        if not self._arrays:
            raise ValueError("the detector is not fitted; call fit() or OODDetector.load()")
        missing = [name for name in self.blocks if name not in blocks]
        if missing:
            raise ValueError(f"missing feature block(s): {', '.join(missing)}; the detector was fitted on {', '.join(self.blocks)}")
        result = {}
        for name in self.blocks:
            x = _matrix(blocks[name], name)
            if x.shape[1] != self.dims[name]:
                raise ValueError(f"block {name!r} has {x.shape[1]} dimensions; the detector was fitted on {self.dims[name]}")
            finite = np.all(np.isfinite(x), axis=1)
            scores = np.full(len(x), np.inf)
            if finite.any():
                scores[finite] = self._distance(name, x[finite]) / self.scale.get(name, 1.0)
            result[name] = scores
        return result

    def score(self, blocks: dict[str, np.ndarray]) -> np.ndarray:
        """How unfamiliar each row is: the largest block score (higher = less familiar)."""
        per_block = self.block_scores(blocks)
        return np.max(np.stack([per_block[name] for name in self.blocks]), axis=0)

    def flag(self, blocks: dict[str, np.ndarray]) -> np.ndarray:
        """True for rows scoring above the threshold (unfamiliar inputs)."""
        return self.flags_and_scores(blocks)[0]

    def flags_and_scores(self, blocks: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """``flag`` and ``score`` from one computation of the distances."""
        self._check_fitted()
        scores = self.score(blocks)
        return scores > self.threshold, scores

    def _distance(self, name: str, x: np.ndarray) -> np.ndarray:
        a = self._arrays[name]
        w = ((x - a["mean"]) / a["scale"]) @ a["whiten"]
        means = a["class_means"]
        squared = (w**2).sum(axis=1)[:, None] - 2.0 * w @ means.T + (means**2).sum(axis=1)[None, :]
        return np.sqrt(np.maximum(squared.min(axis=1), 0.0))

    def _check_fitted(self) -> None:
        if self.threshold is None:
            raise ValueError("the detector is not fitted; call fit() or OODDetector.load()")

    # --- persistence ---------------------------------------------------------

    @property
    def method(self) -> str:
        return POOLED_METHOD if self.calibration_rows and self.calibration_rows.get("folds", 1) > 1 else METHOD

    def calibrate_on(self, scores: np.ndarray, folds: int) -> "OODDetector":
        """The threshold set again from ``scores`` (``conformal_threshold``): held-out scores of ``folds`` folds' networks."""
        scores = np.asarray(scores, dtype="float64")
        self.threshold = conformal_threshold(scores, self.rate)
        self.calibration_rows = {"rows": int(len(scores)), "folds": int(folds)}
        return self

    def save(self, folder) -> None:
        """Write ``ood.json`` (settings, readable) and ``ood.npz`` (the arrays) into ``folder``."""
        self._check_fitted()
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        info = {
            "method": self.method,
            "rate": self.rate,
            "threshold": self.threshold,
            "blocks": self.blocks,
            "dims": self.dims,
            "scale": self.scale,
            "scaling": self.scaling,
            "n_classes": self.n_classes,
            **({"calibration_rows": self.calibration_rows} if self.calibration_rows else {}),
        }
        write_json(folder / "ood.json", info)
        arrays = {f"b{i}_{key}": value for i, name in enumerate(self.blocks) for key, value in self._arrays[name].items()}

        def savez(tmp: Path) -> None:
            with open(tmp, "wb") as fh:
                np.savez(fh, **arrays)

        write_atomic(folder / "ood.npz", savez)

    @classmethod
    def load(cls, folder) -> "OODDetector":
        folder = Path(folder)
        info = json.loads((folder / "ood.json").read_text(encoding="utf-8"))
        detector = cls()
        detector.rate, detector.threshold = float(info["rate"]), float(info["threshold"])
        detector.blocks = list(info["blocks"])
        detector.dims = {k: int(v) for k, v in info["dims"].items()}
        detector.scale = {k: float(v) for k, v in info["scale"].items()}
        detector.scaling = {k: str(v) for k, v in info.get("scaling", {}).items()}
        detector.n_classes = int(info.get("n_classes", 0))
        detector.calibration_rows = info.get("calibration_rows")
        with np.load(folder / "ood.npz", allow_pickle=False) as data:
            detector._arrays = {
                name: {key: data[f"b{i}_{key}"] for key in ("mean", "scale", "whiten", "class_means")}
                for i, name in enumerate(detector.blocks)
            }
        return detector


def conformal_threshold(scores: np.ndarray, rate: float) -> float:
    """The ceil((n + 1)(1 - rate))-th smallest of n held-out scores (the largest where n is too small for ``rate``).

    A familiar row scores above it with probability at most ``rate`` (split conformal): the plain
    ``1 - rate`` quantile of few rows sits lower, and flagged 5.6% of familiar rows on 10 one-network
    runs where this flags 5.0% (bench/RESULTS.md, stop 46).
    """
    ordered = np.sort(np.asarray(scores, dtype="float64"))
    return float(ordered[min(int(np.ceil((len(ordered) + 1) * (1.0 - rate))), len(ordered)) - 1])


def calibration_text(rate: float, calibration_rows: dict | None) -> str:
    """How the threshold was set, for a person: "calibrated on 800 held-out rows (5 folds) to flag 5% of familiar ones"."""
    return f"calibrated {threshold_text(rate, calibration_rows)}"


def threshold_text(rate: float, calibration_rows: dict | None) -> str:
    """"on 800 held-out rows (5 folds) to flag 5% of familiar ones", or "on 40 validation rows ...", or, for a run saved
    before stop 46 (or a ``calibration_rows`` edited by hand), "to flag 5% of familiar ones"."""
    rows, folds = (calibration_rows.get("rows"), calibration_rows.get("folds", 1)) if isinstance(calibration_rows, dict) else (None, None)
    if not isinstance(rows, int) or not isinstance(folds, int):
        return f"to flag {rate:.0%} of familiar ones"
    where = f"{rows:,} held-out rows ({folds} folds)" if folds > 1 else f"{rows:,} validation rows"
    return f"on {where} to flag {rate:.0%} of familiar ones"


def flag_rate(flags: np.ndarray) -> float:
    """The fraction of rows flagged (0.0 for no rows)."""
    flags = np.asarray(flags, dtype=bool)
    return float(flags.mean()) if flags.size else 0.0


def _matrix(block: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(block, dtype="float64")
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim > 2:
        x = x.reshape(len(x), -1)
    if x.shape[1] == 0:
        raise ValueError(f"block {name!r} has no dimensions")
    return x


def _rows(blocks: dict[str, np.ndarray]) -> int:
    counts = {name: len(block) for name, block in blocks.items()}
    if len(set(counts.values())) != 1:
        raise ValueError(f"blocks have different numbers of rows: {counts}")
    return next(iter(counts.values()))


def _finite_rows(blocks: dict[str, np.ndarray]) -> np.ndarray:
    _rows(blocks)
    return np.all(np.stack([np.all(np.isfinite(_matrix(b, n)), axis=1) for n, b in blocks.items()]), axis=0)


def penultimate_model(model):
    """The model up to the input of its ``output`` layer: the features the classifier sees.

    A cross-fitted model's are its first fold's network's (``dlw.crossfit.features_network``),
    the one network that never trained on the validation rows the detector is calibrated on.
    """
    import keras

    from dlw.crossfit import features_network

    network = features_network(model)
    if network is model:
        return keras.Model(model.inputs, mean_of_members(model.get_layer("output").input), name="penultimate")
    return keras.Model(model.inputs, penultimate_of(network, model.input), name="penultimate")


def fold_penultimate_models(model) -> list:
    """Each fold's network's penultimate layer, as a model of ``model``'s inputs; ``[]`` for one network."""
    import keras

    from dlw.crossfit import fold_networks

    return [keras.Model(model.inputs, penultimate_of(network, model.input), name=f"penultimate_{k}")
            for k, network in enumerate(fold_networks(model))]


def penultimate_of(network, inputs):
    """``network``'s penultimate layer applied to ``inputs`` (a fold's network inside a cross-fitted model)."""
    import keras

    return mean_of_members(keras.Model(network.input, network.get_layer("output").input)(inputs))


def mean_of_members(features):
    """An ensemble's members (rows, members, units): their mean representation, taken in the network.

    Taken after predicting, the members' copy held 4 KiB a row, and 0.2 GiB at the top of the
    336,776-row table's peak memory (bench/RESULTS.md, stop 36).
    """
    import keras

    return keras.ops.mean(features, axis=1) if len(features.shape) == 3 else features


def feature_blocks(features_model, prepared, inputs) -> dict[str, np.ndarray]:
    """The detector's blocks for some inputs: the penultimate layer, and the inputs as the baselines see them.

    Tables: the encoded columns. Images: the pixels scaled down to at most 16x16. The
    pixel block keeps the false alarms on new images of familiar classes down: a model
    trained on digits 0-4 (tests/test_images.py) flags 16% of unseen 0-4 images from the
    penultimate layer alone and 14% with the pixels added, at about 89% of digits 5-9 both ways.
    """
    return blocks_from_penultimate(prepared.predict_raw(features_model, inputs), prepared, inputs)


def blocks_from_penultimate(penultimate, prepared, inputs) -> dict[str, np.ndarray]:
    """``feature_blocks`` from an already computed penultimate layer (serving computes it with the output)."""
    penultimate = np.asarray(penultimate, dtype="float64")
    blocks = {"penultimate": penultimate.reshape(len(penultimate), -1)}
    columns = np.asarray(prepared.baseline_features(inputs), dtype="float64")
    if columns.shape[1]:  # a table of text columns only has none here (its text is in the penultimate layer)
        blocks["inputs"] = columns
    return blocks


# Rows of each split the detector is fitted and calibrated on (a seeded sample above it).
DETECTOR_ROWS = 20_000


def fit_detector(model, prepared, rate: float):
    """``(detector, outputs_and_features_model(model))``: fitted on the train split, calibrated so that about ``rate``
    of familiar inputs are flagged: on the validation split, or, cross-fitted, on every fold's held-out rows."""
    features = penultimate_model(model)
    detector, held_out = fitted_detector(features, prepared, rate)
    folds = fold_penultimate_models(model) if prepared.splits is not None and prepared.splits.folds else []
    if len(folds) > 1:
        # The first fold's view is the run's own split and the first fold's network the one ``features`` reads:
        # its held-out scores are the kept detector's validation scores.
        others = itertools.islice(zip(folds, prepared.fold_views()), 1, None)
        scores = [held_out, *(fitted_detector(fold_features, view, rate)[1] for fold_features, view in others)]
        detector.calibrate_on(np.concatenate(scores), folds=len(folds))
    return detector, outputs_and_features_model(model, features)


def fitted_detector(features, prepared, rate: float) -> tuple[OODDetector, np.ndarray]:
    """An ``OODDetector`` on ``features`` (a penultimate model), fitted on ``prepared``'s train split and calibrated on
    its validation split, and its scores there."""
    prepared = prepared.with_at_most(DETECTOR_ROWS, ("train", "validation"), seed=0)
    train = feature_blocks(features, prepared, prepared.inputs["train"])
    val = feature_blocks(features, prepared, prepared.inputs["validation"])
    labels = prepared.targets["train"] if prepared.problem.is_classification else None
    if not np.isfinite(train["penultimate"]).all():
        raise DataError(
            f"{prepared.config.data.source}: the training diverged (the network's outputs are not finite numbers); the inputs "
            "hold extreme values (beyond about 1e30) or the learning rate is too high: rescale or drop those columns, or lower train.learning_rate"
        )
    detector = OODDetector().fit(train, labels, val, rate=rate, shared_units=prepared.shared_detector_blocks)
    return detector, detector.score(val)


# Table rows scored at once: each row's blocks are float64 copies (the penultimate layer and the
# encoded columns), so the detector's memory stays flat however many rows are scored. A multiple of
# the prediction batch (1,024), so every batch the network sees is the one it saw unchunked: the same scores.
SCORE_ROWS = 16_384


def outputs_and_features_model(model, features_model=None):
    """``model``'s output and the detector's features (``penultimate_model``, or ``features_model``) as one two-output model.

    One pass over the inputs instead of two: the 336,776-row table's test rows went through the network
    once for the predictions and again for the detector (bench/RESULTS.md, stop 37). Serving calls it per request.
    """
    import keras

    features_model = penultimate_model(model) if features_model is None else features_model
    return keras.Model(model.inputs, [model.output, features_model.output], name="outputs_and_features")


def raw_outputs_and_scores(detector, joint, prepared, inputs) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(raw outputs, flags, scores)`` for some inputs from one pass of ``joint`` (``outputs_and_features_model``),
    table rows in chunks of ``SCORE_ROWS``."""
    n = len(next(iter(inputs.values()))) if isinstance(inputs, dict) else 0
    if n <= SCORE_ROWS:
        raw, penultimate = prepared.predict_raw(joint, inputs)
        return (np.asarray(raw), *detector.flags_and_scores(blocks_from_penultimate(penultimate, prepared, inputs)))
    parts = [raw_outputs_and_scores(detector, joint, prepared, prepared.take(inputs, np.arange(start, min(start + SCORE_ROWS, n))))
             for start in range(0, n, SCORE_ROWS)]
    return tuple(np.concatenate(part) for part in zip(*parts))

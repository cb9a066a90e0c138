"""dlw's default network for tables: a TabM-style efficient ensemble on RealMLP-style inputs.

The design, and what each part bought on real tables, is in bench/RESULTS.md
(``bench/tables.py``). In short:

- numbers: robust scaling (median, inter-quartile range) and smooth clipping to (-3, 3)
  (RealMLP, Holzmüller et al. 2024), on a regression target also unclipped beside it (a long
  tail followed linearly), then a piecewise-linear embedding per column with
  bins from the train split's quantiles, a periodic one (learned frequencies; both
  Gorishniy et al. 2022), or both, beside the scaled number;
- categories: one learned embedding table per column, its width from its cardinality,
  instead of a one-hot block;
- an efficient ensemble (TabM-mini, Gorishniy et al. 2025): ``k`` members share every
  hidden layer; member ``i`` sees the features times its own trainable vector ``r_i``
  (initialised to random signs) and has its own linear head. Each member is trained on
  its own loss; the model predicts the mean of the members' probabilities (or values).

Every layer is a registered Keras serializable (package ``dlw``), so ``model.keras``
loads with ``safe_mode=True`` once this module is imported (``dlw.models.load_network``).
Code is backend-agnostic: ``keras.ops`` only.
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops

PACKAGE = "dlw"


# Numeric preprocessing
# ---------------------------------------------------------------------------------
def robust_scale_stats(train_numeric: np.ndarray):
    """Per-column centre/scale for RealMLP's robust scaling.

    centre = median; scale = 1 / IQR, falling back to 2 / (max - min) when the IQR is 0
    (e.g. 0/1 indicator or mostly-constant columns) and to 0 for constant columns.
    """
    x = np.asarray(train_numeric, dtype=np.float64)
    centre = np.median(x, axis=0)
    q25, q75 = np.quantile(x, [0.25, 0.75], axis=0)
    iqr = q75 - q25
    rng = x.max(axis=0) - x.min(axis=0)
    inv = np.where(iqr > 0, 1.0 / np.where(iqr > 0, iqr, 1.0),
                   np.where(rng > 0, 2.0 / np.where(rng > 0, rng, 1.0), 0.0))
    return centre.astype(np.float32), inv.astype(np.float32)


# A train value further from the median than TAIL_FACTOR times the TAIL_RANK-th furthest on its side has
# no neighbours in the tail: more likely a typing error than a tail (diamonds' y of 31.8 and 58.9 mm where
# the rest reach 10.5; nycflights13's wind of 1,048 mph where the rest reach 43). Followed linearly, three
# such values in Boston's train rows raised rmse from 3.12 to 4.68 (bench/RESULTS.md, stop 27).
TAIL_RANK = 4
TAIL_FACTOR = 3.0
UNBOUNDED = float(np.finfo(np.float32).max)


def isolated_values(numeric: np.ndarray, centre, inv_scale) -> tuple[np.ndarray, np.ndarray]:
    """(z, isolated): the robust-scaled values, and which have no neighbours in their tail: further from the
    median than ``TAIL_FACTOR`` times the ``TAIL_RANK``-th furthest value on their side, and than 3."""
    z = (np.asarray(numeric, dtype=np.float64) - centre) * inv_scale
    rank = min(TAIL_RANK, len(z))
    ends = np.partition(z, sorted({rank - 1, len(z) - rank}), axis=0)  # the two order statistics, not a sort
    high = np.maximum(3.0, TAIL_FACTOR * np.maximum(ends[len(z) - rank], 0.0))
    low = np.minimum(-3.0, TAIL_FACTOR * np.minimum(ends[rank - 1], 0.0))
    return z, (z > high) | (z < low)


def tail_bounds(train_numeric: np.ndarray, centre, inv_scale) -> tuple[np.ndarray, np.ndarray]:
    """Per-column (low, high) for the unclipped scaled numbers: on a side with ``isolated_values``, the furthest
    value that is not; elsewhere unbounded.

    So an isolated value reads as the end of its tail. A clean tail keeps extrapolating: bounding every side
    cost MASS cpus 8% (rmse 51.5 -> 55.6), whose test rows hold its fastest machines.
    """
    z, isolated = isolated_values(train_numeric, centre, inv_scale)
    above, below = isolated & (z > 0), isolated & (z < 0)
    high = np.where(above.any(axis=0), np.where(above, -np.inf, z).max(axis=0), UNBOUNDED)
    low = np.where(below.any(axis=0), np.where(below, np.inf, z).min(axis=0), -UNBOUNDED)
    return low.astype(np.float32), high.astype(np.float32)


def held_value_warnings(numeric: np.ndarray, centre, inv_scale, names: list[str]) -> list[str]:
    """One line per column side with ``isolated_values`` among ``numeric`` (the rows ``tail_bounds`` read, scaled
    by the same ``centre`` and ``inv_scale``), which the unclipped copy holds."""
    z, isolated = isolated_values(numeric, np.asarray(centre), np.asarray(inv_scale))
    lines = []
    for j, name in enumerate(names):
        for past, furthest in ((isolated[:, j] & (z[:, j] > 0), np.max), (isolated[:, j] & (z[:, j] < 0), np.min)):
            if past.any():
                typed, kept = furthest(numeric[past, j]), furthest(numeric[~past, j])
                lines.append(f"column '{name}': {int(past.sum())} value(s) far past the rest of its tail ({typed:g}, where the "
                             f"furthest other is {kept:g}): typing errors? The network holds them at {kept:g}; correct or remove them if so")
    return lines


def held_weight(layer, name: str, values):
    """A non-trainable weight of ``layer`` holding ``values`` (train statistics, bin edges), which its config also keeps.

    As weights rather than constants they are inputs of the compiled programs, not part of them:
    the cross-fitted networks, whose statistics differ, then share one set of programs, and a
    first run on a table compiles about half as long (bench/RESULTS.md, stop 29).
    """
    values = np.asarray(values, dtype="float32")
    return layer.add_weight(name=name, shape=values.shape, initializer=keras.initializers.Constant(values), trainable=False)


def load_own_or_held(layer, store) -> None:
    """Load ``layer``'s weights; from a ``model.keras`` saved before stop 29 those it held as constants are absent and keep their config values."""
    held = {id(v) for v in layer.held}
    saved = [v for v in layer.trainable_weights + layer.non_trainable_weights if id(v) not in held]
    if len(store.keys()) == len(layer.weights) or len(store.keys()) != len(saved):
        return keras.layers.Layer.load_own_variables(layer, store)
    for i, variable in enumerate(saved):
        variable.assign(store[f"{i}"])


def smooth_clip(z, bound: float = 3.0):
    """RealMLP's smooth clipping z / sqrt(1 + (z / bound)^2): identity near 0, |z| < bound."""
    return z / ops.sqrt(1.0 + ops.square(z / bound))


@keras.saving.register_keras_serializable(package=PACKAGE)
class RobustScale(keras.layers.Layer):
    """(x - median) * (1 / IQR), unclipped: beside the clipped copy, a long tail the network can follow linearly.

    Smooth clipping maps a college with 14 IQRs of acceptances and one with 7 to 2.97 and 2.76,
    so a target that rises with them (its applications) cannot be told apart where its error
    is largest. Beyond the train range this copy extrapolates as a linear model would (holding
    it at the range's ends was worse on the tables measured, bench/RESULTS.md stop 26); such a
    row is one the unfamiliar-input detector flags.

    ``low`` and ``high`` (``tail_bounds``), when given, hold a value with no neighbours in its tail
    (a likely typing error) at the tail's end, so it is not followed linearly.
    """

    def __init__(self, centre, inv_scale, low=None, high=None, **kwargs):
        super().__init__(**kwargs)
        self.centre = [float(v) for v in np.asarray(centre).reshape(-1)]
        self.inv_scale = [float(v) for v in np.asarray(inv_scale).reshape(-1)]
        self.low = None if low is None else [float(v) for v in np.asarray(low).reshape(-1)]
        self.high = None if high is None else [float(v) for v in np.asarray(high).reshape(-1)]

    def build(self, input_shape):
        self.held = [held_weight(self, name, getattr(self, name)) for name in ("centre", "inv_scale", "low", "high") if getattr(self, name) is not None]

    def call(self, x):
        z = (ops.cast(x, "float32") - self.held[0]) * self.held[1]
        if self.low is None:
            return z
        return ops.minimum(ops.maximum(z, self.held[2]), self.held[3])

    def load_own_variables(self, store):
        load_own_or_held(self, store)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = {**super().get_config(), "centre": self.centre, "inv_scale": self.inv_scale}
        return config if self.low is None else {**config, "low": self.low, "high": self.high}


@keras.saving.register_keras_serializable(package=PACKAGE)
class RobustScaleClip(RobustScale):
    """(x - median) * (1 / IQR), then smooth clipping to (-3, 3) (RealMLP).

    Robust to heavy tails / outliers (ames prices, lending_club incomes) where the
    z-score of a plain Normalization puts most rows in a tiny interval.
    """

    def __init__(self, centre, inv_scale, bound: float = 3.0, **kwargs):
        super().__init__(centre, inv_scale, **kwargs)
        self.bound = float(bound)

    def call(self, x):
        return smooth_clip(super().call(x), self.bound)

    def get_config(self):
        return {**super().get_config(), "bound": self.bound}


# Where a column holds zeros, log(x + shift) with shift this quantile of its positive values: the zeros sit
# below the positives as far as the smallest positives sit below the typical one, not at minus infinity.
LOG_SHIFT_QUANTILE = 0.05


def log_copy_stats(train_numeric: np.ndarray) -> tuple[list[int], np.ndarray, np.ndarray]:
    """(columns, floor, shift) of the log copy: the columns whose train values are all >= 0 and take at least
    three values (a 0/1 column's log is the column again), and for each the floor and shift of ``log(max(x, floor) + shift)``.

    All positive: floor half the smallest value (a new smaller one is held there), no shift. With zeros:
    floor 0 and the shift ``LOG_SHIFT_QUANTILE`` of the positive values.
    """
    x = np.asarray(train_numeric, dtype=np.float64)
    columns, floors, shifts = [], [], []
    for j in range(x.shape[1]):
        col = x[:, j]
        low, high = col.min(), col.max()
        if low < 0 or not ((col > low) & (col < high)).any():
            continue
        columns.append(j)
        floors.append(low / 2 if low > 0 else 0.0)
        shifts.append(0.0 if low > 0 else float(np.quantile(col[col > 0], LOG_SHIFT_QUANTILE)))
    return columns, np.asarray(floors, dtype=np.float32), np.asarray(shifts, dtype=np.float32)


def logged_columns(numeric: np.ndarray, columns: list[int], floor, shift) -> np.ndarray:
    """``log(max(x, floor) + shift)`` of ``numeric``'s ``columns``, as ``LogScaleClip`` computes it."""
    x = np.asarray(numeric, dtype=np.float32)[:, columns]
    return np.log(np.maximum(x, floor) + shift)


@keras.saving.register_keras_serializable(package=PACKAGE)
class LogScaleClip(RobustScaleClip):
    """log(max(x, floor) + shift) of the non-negative columns (``log_copy_stats``), then ``RobustScaleClip`` with
    the logs' own ``centre`` and ``inv_scale``.

    Concrete's strength follows the water-cement ratio, and a ratio is a difference of logarithms: a first
    layer that reads the logs forms it in one unit, where the scaled numbers and their bins need many
    (bench/RESULTS.md, stops 37-38).
    """

    def __init__(self, columns, floor, shift, centre, inv_scale, bound: float = 3.0, **kwargs):
        super().__init__(centre, inv_scale, bound, **kwargs)
        self.columns = [int(c) for c in columns]
        self.floor, self.shift = [float(v) for v in np.asarray(floor).reshape(-1)], [float(v) for v in np.asarray(shift).reshape(-1)]

    def build(self, input_shape):
        super().build(input_shape)
        self.held += [held_weight(self, name, getattr(self, name)) for name in ("floor", "shift")]

    def call(self, x):
        floor, shift = self.held[-2:]
        return super().call(ops.log(ops.maximum(ops.take(ops.cast(x, "float32"), self.columns, axis=1), floor) + shift))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], len(self.columns))

    def get_config(self):
        return {**super().get_config(), "columns": self.columns, "floor": self.floor, "shift": self.shift}


def quantile_bin_edges(values: np.ndarray, n_bins) -> np.ndarray:
    """(d, max(n_bins) + 1) edges from train quantiles, ``n_bins`` of them for every column or one count per column;
    duplicate edges (ties, binary columns) are removed and each row padded with its last edge (zero-width bins are masked)."""
    values = np.asarray(values, dtype=np.float64)
    counts = np.broadcast_to(np.asarray(n_bins, dtype=int), (values.shape[1],))
    out = np.empty((values.shape[1], int(counts.max(initial=1)) + 1), dtype=np.float32)
    for j in range(values.shape[1]):
        e = np.unique(np.quantile(values[:, j], np.linspace(0.0, 1.0, counts[j] + 1)))
        if len(e) == 1:
            e = np.array([e[0], e[0] + 1.0])
        out[j, : len(e)] = e
        out[j, len(e):] = e[-1]
    return out


@keras.saving.register_keras_serializable(package=PACKAGE)
class PiecewiseLinearEmbedding(keras.layers.Layer):
    """Piecewise-linear encoding (Gorishniy et al. 2022) + per-feature Linear + ReLU.

    Each feature value becomes n_bins numbers in [0, 1] (1 for bins left of it, the
    fractional position in its own bin, 0 to the right), bins from train quantiles; a
    separate (n_bins -> d_embedding) linear map per feature then ReLU. Output is
    flattened to (batch, d * d_embedding).
    """

    def __init__(self, edges, d_embedding: int = 8, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.edges = np.asarray(edges, dtype=np.float32).tolist()
        self.d_embedding = int(d_embedding)
        self.seed = seed
        e = np.asarray(self.edges, dtype=np.float32)
        self._n_features, self._n_bins = e.shape[0], e.shape[1] - 1
        width = e[:, 1:] - e[:, :-1]
        self._left = e[:, :-1]
        self._inv_width = np.where(width > 0, 1.0 / np.where(width > 0, width, 1.0), 0.0).astype(np.float32)

    def build(self, input_shape):
        f, nb, d = self._n_features, self._n_bins, self.d_embedding
        lim = 1.0 / math.sqrt(nb)
        init = keras.initializers.RandomUniform(-lim, lim, seed=self.seed)
        self.kernel = self.add_weight(name="kernel", shape=(f, nb, d), initializer=init)
        self.bias = self.add_weight(name="bias", shape=(f, d), initializer=init)
        self.held = [held_weight(self, "left", self._left), held_weight(self, "inv_width", self._inv_width)]

    def call(self, x):
        left, inv_w = self.held
        f, nb, d = self._n_features, self._n_bins, self.d_embedding
        # A value in bin b encodes as 1 in the bins before b, its fraction of b, and 0 after, so its
        # embedding is the sum of the kernel rows before b plus that fraction of row b: two rows
        # gathered instead of a (batch, features, bins) product, which took this layer's forward and
        # backward twice as long (bench/RESULTS.md, stop 35). Zero-width bins (the padding) count for nothing.
        kernel = self.kernel * ops.expand_dims(ops.cast(inv_w > 0, self.kernel.dtype), -1)
        before = ops.reshape(ops.cumsum(kernel, axis=1) - kernel, (f * nb, d))
        at_or_past = ops.sum(ops.cast(ops.expand_dims(x, -1) >= left, "int32"), axis=-1)
        rows = ops.clip(at_or_past - 1, 0, nb - 1) + ops.arange(f, dtype="int32") * nb  # (batch, f) into (f * nb)
        fraction = ops.clip((x - ops.take(ops.reshape(left, (-1,)), rows)) * ops.take(ops.reshape(inv_w, (-1,)), rows), 0.0, 1.0)
        h = ops.take(before, rows, axis=0) + ops.expand_dims(fraction, -1) * ops.take(ops.reshape(kernel, (f * nb, d)), rows, axis=0)
        h = ops.relu(h + self.bias)
        return ops.reshape(h, (-1, f * d))

    def load_own_variables(self, store):
        load_own_or_held(self, store)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self._n_features * self.d_embedding)

    def get_config(self):
        return {**super().get_config(), "edges": self.edges, "d_embedding": self.d_embedding, "seed": self.seed}


@keras.saving.register_keras_serializable(package=PACKAGE)
class PeriodicEmbedding(keras.layers.Layer):
    """PLR (Gorishniy et al. 2022): [cos, sin](2 pi f x) with learned per-feature
    frequencies f ~ N(0, sigma), then per-feature Linear + ReLU. Flattened output."""

    def __init__(self, n_features: int, n_frequencies: int = 16, d_embedding: int = 8, sigma: float = 0.1,
                 seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.n_features, self.n_frequencies = int(n_features), int(n_frequencies)
        self.d_embedding, self.sigma, self.seed = int(d_embedding), float(sigma), seed

    def build(self, input_shape):
        f, m, d = self.n_features, self.n_frequencies, self.d_embedding
        self.freq = self.add_weight(name="frequencies", shape=(f, m),
                                    initializer=keras.initializers.RandomNormal(0.0, self.sigma, seed=self.seed))
        lim = 1.0 / math.sqrt(2 * m)
        init = keras.initializers.RandomUniform(-lim, lim, seed=None if self.seed is None else self.seed + 1)
        self.kernel = self.add_weight(name="kernel", shape=(f, 2 * m, d), initializer=init)
        self.bias = self.add_weight(name="bias", shape=(f, d), initializer=init)

    def call(self, x):
        z = 2.0 * math.pi * ops.expand_dims(ops.transpose(x), -1) * ops.expand_dims(self.freq, 1)  # feature-major, as above
        z = ops.concatenate([ops.cos(z), ops.sin(z)], axis=-1)
        h = ops.relu(ops.transpose(ops.matmul(z, self.kernel), (1, 0, 2)) + self.bias)
        return ops.reshape(h, (-1, self.n_features * self.d_embedding))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.n_features * self.d_embedding)

    def get_config(self):
        return {**super().get_config(), "n_features": self.n_features, "n_frequencies": self.n_frequencies,
                "d_embedding": self.d_embedding, "sigma": self.sigma, "seed": self.seed}


# ---------------------------------------------------------------------------------
# Categorical embeddings
# ---------------------------------------------------------------------------------
def embedding_dim(size: int, max_dim: int = 16) -> int:
    """Embedding width from the feature's id-range size (fast.ai rule 1.6 * n^0.56, capped)."""
    return int(min(max_dim, max(2, round(1.6 * size ** 0.56))))


@keras.saving.register_keras_serializable(package=PACKAGE)
class CategoricalEmbedding(keras.layers.Layer):
    """One embedding table per categorical feature, width sized by its cardinality.

    ``category_ranges`` is a list of (offset, size): feature j's ids live in
    [offset, offset + size). Output: the per-feature vectors concatenated.
    """

    def __init__(self, category_ranges, dims=None, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.category_ranges = [[int(o), int(s)] for o, s in category_ranges]
        self.dims = [int(d) for d in (dims or [embedding_dim(s) for _, s in self.category_ranges])]
        self.seed = seed

    def build(self, input_shape):
        self.tables = []
        for j, ((_, size), d) in enumerate(zip(self.category_ranges, self.dims)):
            lim = 1.0 / math.sqrt(d)
            init = keras.initializers.RandomUniform(-lim, lim, seed=None if self.seed is None else self.seed + j)
            self.tables.append(self.add_weight(name=f"table_{j}", shape=(size, d), initializer=init))

    def call(self, ids):
        ids = ops.cast(ids, "int32")
        out = []
        for j, ((offset, size), table) in enumerate(zip(self.category_ranges, self.tables)):
            local = ops.clip(ids[:, j] - offset, 0, size - 1)  # out-of-range ids -> clipped, never crash
            out.append(ops.take(table, local, axis=0))
        return out[0] if len(out) == 1 else ops.concatenate(out, axis=-1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], sum(self.dims))

    def get_config(self):
        return {**super().get_config(), "category_ranges": self.category_ranges, "dims": self.dims, "seed": self.seed}


# ---------------------------------------------------------------------------------
# TabM-mini ensemble
# ---------------------------------------------------------------------------------
def member_signs(k: int, d: int, seed: int | None) -> np.ndarray:
    """(k, d) random +-1: each member's initial multipliers (``EnsembleAdapter`` and ``EnsembleDense`` alike)."""
    return np.where(np.random.default_rng(seed).random((k, d)) < 0.5, -1.0, 1.0).astype("float32")


@keras.saving.register_keras_serializable(package=PACKAGE)
class EnsembleAdapter(keras.layers.Layer):
    """TabM-mini: (batch, D) -> (batch, k, D), member i sees x * r_i.

    r_i is trainable and initialised with random +-1 signs (the paper's choice for the
    mini variant): members differ from the first step although all later weights are
    shared.
    """

    def __init__(self, k: int, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.k, self.seed = int(k), seed

    def build(self, input_shape):
        d = int(input_shape[-1])
        self.r = self.add_weight(name="r", shape=(self.k, d), initializer=keras.initializers.Constant(member_signs(self.k, d, self.seed)))

    def call(self, x):
        return ops.expand_dims(x, 1) * self.r

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.k, input_shape[-1])

    def get_config(self):
        return {**super().get_config(), "k": self.k, "seed": self.seed}


@keras.saving.register_keras_serializable(package=PACKAGE)
class EnsembleDense(keras.layers.Layer):
    """TabM-mini's adapter and first shared Dense layer in one: (batch, D) -> (batch, k, units).

    Member i computes ``activation((x * r_i) @ kernel + bias)``, as ``EnsembleAdapter`` then a
    ``Dense`` do, with the same weights; it is computed as ``x @ (r_i * kernel)``, one (batch, D) x
    (D, k * units) product, so no (batch, k, D) copy of the input is made. On flights' shapes
    (8 members, 440 inputs, batch 512) a training step took 1.4-1.8x less time on a CPU (bench/tabm_step.py).
    """

    def __init__(self, k: int, units: int, activation=None, seed: int | None = None, kernel_seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.k, self.units, self.seed, self.kernel_seed = int(k), int(units), seed, kernel_seed
        self.activation = keras.activations.get(activation)

    def build(self, input_shape):
        d = int(input_shape[-1])
        self.r = self.add_weight(name="r", shape=(self.k, d), initializer=keras.initializers.Constant(member_signs(self.k, d, self.seed)))
        self.kernel = self.add_weight(name="kernel", shape=(d, self.units), initializer=keras.initializers.GlorotUniform(seed=self.kernel_seed))
        self.bias = self.add_weight(name="bias", shape=(self.units,), initializer="zeros")

    def call(self, x):
        d = ops.shape(x)[-1]
        # Built as (D, k, units) directly: through a transpose of (k, D, units), the gradient's sum over the
        # members ran 3 ms slower a step on a CPU (bench/RESULTS.md, stop 35).
        kernels = ops.expand_dims(ops.transpose(self.r), -1) * ops.expand_dims(self.kernel, 1)
        h = ops.matmul(x, ops.reshape(kernels, (d, self.k * self.units)))
        return self.activation(ops.reshape(h, (-1, self.k, self.units)) + self.bias)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.k, self.units)

    def get_config(self):
        return {**super().get_config(), "k": self.k, "units": self.units, "activation": keras.activations.serialize(self.activation),
                "seed": self.seed, "kernel_seed": self.kernel_seed}


@keras.saving.register_keras_serializable(package=PACKAGE)
class EnsembleHead(keras.layers.Layer):
    """k separate linear heads: (batch, k, width) -> (batch, k, units), then the activation.

    Its input, the members' last hidden vectors, is what the unfamiliar-input detector
    reads (averaged over the members).
    """

    def __init__(self, k: int, units: int, activation=None, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.k, self.units, self.seed = int(k), int(units), seed
        self.activation = keras.activations.get(activation)

    def build(self, input_shape):
        width = int(input_shape[-1])
        lim = 1.0 / math.sqrt(width)
        init = keras.initializers.RandomUniform(-lim, lim, seed=self.seed)
        self.kernel = self.add_weight(name="kernel", shape=(self.k, width, self.units), initializer=init)
        self.bias = self.add_weight(name="bias", shape=(self.k, self.units), initializer=init)

    def call(self, x):
        return self.activation(ops.einsum("bkw,kwu->bku", x, self.kernel) + self.bias)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.k, self.units)

    def get_config(self):
        return {**super().get_config(), "k": self.k, "units": self.units,
                "activation": keras.activations.serialize(self.activation), "seed": self.seed}


@keras.saving.register_keras_serializable(package=PACKAGE)
class EnsembleMean(keras.layers.Layer):
    """(batch, k, units) -> (batch, units): mean of the members' probabilities/outputs."""

    def call(self, x):
        return ops.mean(x, axis=1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[2])


@keras.saving.register_keras_serializable(package=PACKAGE)
class OutputRange(keras.layers.Layer):
    """A regression output held within ``[low, high]`` (``target_range``, in the standardized units the network predicts).

    The members are trained and early-stopped on their unheld outputs (``training_view`` reads the
    members before their mean); what the model predicts is held. A number far past its train range,
    followed linearly by the unclipped copy, otherwise becomes a prediction no target ever was
    (ggplot2 midwest: Cook County's 5.1 million people, 2.4 times the largest train county's, gave a
    poverty rate of -40%; bench/RESULTS.md, stop 39).
    """

    def __init__(self, low: float, high: float, **kwargs):
        super().__init__(**kwargs)
        self.low, self.high = float(low), float(high)

    def build(self, input_shape):
        self.held = [held_weight(self, name, [getattr(self, name)]) for name in ("low", "high")]

    def call(self, x):
        low, high = self.held
        return ops.minimum(ops.maximum(x, low), high)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "low": self.low, "high": self.high}


# A prediction may pass the targets seen by this share of their range on each side. A guard against the
# absurd, not a regularizer: AutoGluon's networks allow 5% of the targets' standard deviation, which held
# fast food's 2,430-calorie item (its fat, carbohydrate and protein past every train item's) at 1,784
# (rmse 46 -> 69); half the range lets such a row through and still holds midwest's -40% (stop 39).
TARGET_RANGE_EXTEND = 0.5


def target_range(targets: np.ndarray) -> tuple[float, float]:
    """(low, high) for ``OutputRange``: the ``targets``' range widened by ``TARGET_RANGE_EXTEND`` of itself on each
    side, and not past 0 on a side where every target is on the same side of 0 (a count, a price, a rate)."""
    y = np.asarray(targets, dtype="float64").reshape(-1)
    low, high = float(y.min()), float(y.max())
    extend = TARGET_RANGE_EXTEND * (high - low)
    low = max(0.0, low - extend) if low >= 0 else low - extend
    high = min(0.0, high + extend) if high <= 0 else high + extend
    return low, high


# Training: each member on its own loss, metrics on the members' mean
# ---------------------------------------------------------------------------------
class MemberLoss(keras.losses.Loss):
    """A Keras loss applied to every member's prediction, averaged over the members (TabM).

    ``y_pred`` is (batch, k, units); each member is scored against the same target,
    so members stay diverse instead of co-adapting to one averaged prediction.
    """

    def __init__(self, inner, name: str = "loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.inner = keras.losses.get(inner)

    def call(self, y_true, y_pred):
        k, units = y_pred.shape[1], y_pred.shape[2]
        # Row r's target repeated k times lines up with row r's k members after the reshape.
        y = ops.repeat(ops.reshape(y_true, (-1, 1)), k, axis=0)
        losses = self.inner(y, ops.reshape(y_pred, (-1, units)))
        # One loss per row (its members' mean), so a row's sample or class weight applies to all its members.
        return ops.mean(ops.reshape(losses, (-1, k)), axis=1) if len(losses.shape) else losses


class MemberMean(keras.metrics.Metric):
    """A Keras metric of the ensemble's prediction: the mean over the members of ``y_pred``."""

    def __init__(self, inner, **kwargs):
        inner = keras.metrics.get(inner) if isinstance(inner, str) else inner
        super().__init__(name=inner.name, **kwargs)
        self.inner = inner

    def update_state(self, y_true, y_pred, sample_weight=None):
        self.inner.update_state(y_true, ops.mean(y_pred, axis=1), sample_weight=sample_weight)

    def result(self):
        return self.inner.result()

    def reset_state(self):
        self.inner.reset_state()


class MembersModel(keras.Model):
    """The members' predictions (batch, k, units): trained on each member's loss, evaluated on their mean's.

    So ``val_loss`` (what early stopping and tuning watch) is the loss of the prediction the
    run keeps, the ensemble's, while each member still learns on its own (TabM). The
    training ``loss`` is the members' mean loss, a little above the ensemble's.
    """

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if not training:
            y_pred = ops.mean(y_pred, axis=1, keepdims=True)  # the ensemble as one member
        return super().compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=training)


def training_view(model, loss, metrics: list):
    """What ``fit`` trains: the members' predictions, each member on ``loss``; metrics on their mean.

    The returned model shares every weight with ``model``, which predicts the mean.
    """
    members = MembersModel(model.inputs, model.get_layer("output").output, name="dlw_tabm_members")
    wrapped = [MemberMean(concrete_metric(m, model)) for m in metrics]
    return members, MemberLoss(loss), wrapped


def concrete_metric(metric, model):
    """A metric object for a name Keras resolves from the loss ("accuracy"), or the metric itself."""
    if metric != "accuracy":
        return metric
    units = model.output.shape[-1]
    return keras.metrics.BinaryAccuracy(name="accuracy") if units == 1 else keras.metrics.SparseCategoricalAccuracy(name="accuracy")


# Building
# ---------------------------------------------------------------------------------
# The ways numbers can enter, as model.embeddings names them; each keeps the scaled number beside its embeddings.
NUMBER_EMBEDDINGS = {
    "piecewise_linear": ("piecewise_linear",),
    "periodic": ("periodic",),
    "piecewise_linear_and_periodic": ("piecewise_linear", "periodic"),
    "none": (),
}


# The copies of each number beside the clipped one, as model.numbers names them.
NUMBER_COPIES = {
    "clipped": (),
    "clipped_and_linear": ("linear",),
    "clipped_and_log": ("log",),
    "clipped_linear_and_log": ("linear", "log"),
}


def numeric_branch(numeric_input, train_numeric: np.ndarray, *, embeddings: str, copies: tuple[str, ...], bins: int | list[int], dim: int, seed: int,
                   bound_numeric: np.ndarray | None = None):
    """Robust scaling and smooth clipping, then the numbers' embeddings (``NUMBER_EMBEDDINGS``) beside the scaled numbers, or the scaled numbers alone.

    ``copies`` (``NUMBER_COPIES``) adds, beside the clipped numbers, ``linear``: each robust-scaled but
    unclipped (``RobustScale``), within the ``tail_bounds`` of ``bound_numeric`` (the train and validation
    rows; default: the train rows); ``log``: the non-negative ones' logs (``LogScaleClip``).
    """
    centre, inv = robust_scale_stats(train_numeric)
    x = RobustScaleClip(centre, inv, name="robust_scale")(numeric_input)
    # The scaled value itself beside its embeddings, as RealMLP's embeddings keep it: the first layer
    # can then follow a number linearly instead of through bins and ReLUs (bench/RESULTS.md).
    parts, added = [x], []
    if "linear" in copies:
        low, high = tail_bounds(train_numeric if bound_numeric is None else bound_numeric, centre, inv)
        parts.append(RobustScale(centre, inv, low, high, name="robust_scale_unclipped")(numeric_input))
        added.append("linear")
    columns, floor, shift = log_copy_stats(train_numeric) if "log" in copies else ([], None, None)
    if columns:
        log_centre, log_inv = robust_scale_stats(logged_columns(train_numeric, columns, floor, shift))
        parts.append(LogScaleClip(columns, floor, shift, log_centre, log_inv, name="log_numbers")(numeric_input))
        added.append("log")
    kinds = NUMBER_EMBEDDINGS[embeddings]
    if not kinds:
        return keras.layers.Concatenate(name="numbers_clipped_and_" + "_and_".join(added))(parts) if len(parts) > 1 else x
    if "piecewise_linear" in kinds:
        scaled = np.asarray(smooth_clip((np.asarray(train_numeric, dtype="float32") - centre) * inv))
        parts.append(PiecewiseLinearEmbedding(quantile_bin_edges(scaled, bins), d_embedding=dim, seed=seed, name="numeric_embedding")(x))
    if "periodic" in kinds:
        # Smooth where the bins are steps (Wage's wage is exp of a column: rmse 0.35 -> 0.23, bench/RESULTS.md).
        parts.append(PeriodicEmbedding(train_numeric.shape[1], d_embedding=dim, seed=seed + 7, name="periodic_embedding")(x))
    return keras.layers.Concatenate(name="numbers_and_embedding")(parts)


def build_tabm(schema, objective, train_inputs: dict[str, np.ndarray], *, hidden_layers, dropout: float, ensemble: int,
               embeddings: str, embedding_dim: int, bins: int | list[int], seed: int, number_copies: tuple[str, ...] = (), text_dim: int = 32,
               text_dropout: float = 0.8, bound_numeric: np.ndarray | None = None, output_range: tuple[float, float] | None = None):
    """Build (but do not compile) the ensemble; ``train_inputs`` fit the scaling and the bins.

    Text columns (``text_ids``/``text_weights``) enter as a learned bag of n-grams
    (``dlw.models.text_bag``), ``text_dim`` wide per column. ``bound_numeric`` (the train and validation
    rows' numbers) places the unclipped copy's bounds: a typing error in a validation row, followed
    linearly, ends early stopping in its first epochs (MASS cpus: rmse 168 without the bounds, 54 with).
    ``output_range`` (standardized; ``target_range``) holds what the model predicts (``OutputRange``).
    """
    from dlw.models.text_bag import text_branch

    inputs, parts = {}, []
    if "numeric" in train_inputs:
        numeric = train_inputs["numeric"]
        inputs["numeric"] = keras.Input(shape=(numeric.shape[1],), name="numeric", dtype="float32")
        parts.append(numeric_branch(inputs["numeric"], numeric, embeddings=embeddings, copies=number_copies, bins=bins, dim=embedding_dim, seed=seed,
                                    bound_numeric=bound_numeric))
    if "categorical" in train_inputs:
        ranges = list(zip(schema.category_offsets, schema.category_sizes))
        inputs["categorical"] = keras.Input(shape=(len(ranges),), name="categorical", dtype="int32")
        parts.append(CategoricalEmbedding(ranges, seed=seed + 1000, name="categorical_embedding")(inputs["categorical"]))
    if "text_ids" in train_inputs:
        parts.append(text_branch(inputs, train_inputs, n_ids=schema.text_width, dim=text_dim, seed=seed + 2000, dropout=text_dropout))
    x = parts[0] if len(parts) == 1 else keras.layers.Concatenate(name="features")(parts)
    if not hidden_layers:
        x = EnsembleAdapter(ensemble, seed=seed, name="ensemble_adapter")(x)
    for i, units in enumerate(hidden_layers, start=1):
        if i == 1:  # the adapter folded into the first layer: the same weights, no k copies of the input
            x = EnsembleDense(ensemble, units, activation="relu", seed=seed, kernel_seed=seed + 11, name="hidden_1")(x)
        else:
            init = keras.initializers.GlorotUniform(seed=seed + 10 + i)
            x = keras.layers.Dense(units, activation="relu", kernel_initializer=init, name=f"hidden_{i}")(x)
        if dropout > 0:
            x = keras.layers.Dropout(dropout, seed=seed + 20 + i, name=f"dropout_{i}")(x)
    members = EnsembleHead(ensemble, objective.output_units, objective.output_activation, seed=seed + 30, name="output")(x)
    mean = EnsembleMean(name="ensemble_mean")(members)
    if output_range is not None:
        mean = OutputRange(*output_range, name="output_range")(mean)
    return keras.Model(inputs, mean, name="dlw_tabm")

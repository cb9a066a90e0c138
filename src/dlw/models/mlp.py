"""A multilayer perceptron whose first layers do the table's preprocessing.

Inputs are ``numeric`` (float32: values with missing ones imputed, then 0/1
missing indicators) and ``categorical`` (int32 token ids, one column per
categorical feature, offset so each feature has its own range). Inside the model:
``Normalization`` (adapted on the train split only) scales the numbers and a
multi-hot ``CategoryEncoding`` turns the token ids into one-hot blocks. So the
saved ``model.keras`` carries its own scaling, and nothing is pickled.
"""

from __future__ import annotations

import numpy as np

from dlw.objectives import Objective
from dlw.schema import Schema


def build_mlp(
    schema: Schema, objective: Objective, train_inputs: dict[str, np.ndarray], hidden_layers, dropout: float, activation: str, *, text_dim: int = 32, text_dropout: float = 0.8
):
    """Build (but do not compile) the MLP; ``train_inputs`` adapt the scaling layer.

    Text columns enter as a learned bag of n-grams (``dlw.models.text_bag``), ``text_dim`` wide each.
    """
    import keras

    from dlw.models.text_bag import text_branch

    inputs, parts = {}, []
    if "numeric" in train_inputs:
        numeric = keras.Input(shape=(train_inputs["numeric"].shape[1],), name="numeric", dtype="float32")
        scale = keras.layers.Normalization(name="standardize")
        scale.adapt(train_inputs["numeric"])
        inputs["numeric"] = numeric
        parts.append(scale(numeric))
    if "categorical" in train_inputs:
        categorical = keras.Input(shape=(train_inputs["categorical"].shape[1],), name="categorical", dtype="int32")
        one_hot = keras.layers.CategoryEncoding(num_tokens=schema.n_category_tokens, output_mode="multi_hot", name="one_hot")
        inputs["categorical"] = categorical
        parts.append(one_hot(categorical))
    if "text_ids" in train_inputs:
        parts.append(text_branch(inputs, train_inputs, n_ids=schema.text_width, dim=text_dim, seed=None, dropout=text_dropout))
    x = parts[0] if len(parts) == 1 else keras.layers.Concatenate(name="features")(parts)
    for i, units in enumerate(hidden_layers, start=1):
        x = keras.layers.Dense(units, activation=activation, name=f"hidden_{i}")(x)
        if dropout > 0:
            x = keras.layers.Dropout(dropout, name=f"dropout_{i}")(x)
    outputs = keras.layers.Dense(objective.output_units, activation=objective.output_activation, name="output")(x)
    return keras.Model(inputs=inputs, outputs=outputs, name="dlw_mlp")

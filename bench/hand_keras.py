"""The reference for bench/overhead.py: the same work as `dlw train`, written by hand.

Reads the CSV, imputes (median + missing indicator), one-hot encodes the categories,
splits 60/20/20 stratified, builds the same MLP (Normalization, Dense 64-32, dropout 0.1),
fits the same number of epochs with the same batch size, measures test accuracy, fits
the same three baselines at full strength (majority; logistic regression with C chosen
on the validation split; HistGradientBoosting early-stopping on it), saves
the model, the history and the two plots: what a careful user would write by hand to
get what `dlw train` gives.

    python bench/hand_keras.py data.csv label 20
"""

import os
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

path, target, epochs = sys.argv[1], sys.argv[2], int(sys.argv[3])
frame = pd.read_csv(path)
y_all = pd.Categorical(frame.pop(target))
y = y_all.codes.astype("int32")
train_idx, test_idx = train_test_split(np.arange(len(frame)), test_size=0.2, stratify=y, random_state=42)
train_idx, val_idx = train_test_split(train_idx, test_size=0.25, stratify=y[train_idx], random_state=42)

numeric = frame.select_dtypes("number")
categorical = frame.drop(columns=numeric.columns).astype("string")
medians = numeric.iloc[train_idx].median()
indicators = numeric.loc[:, numeric.isna().any()].isna().astype("float32")
num = pd.concat([numeric.fillna(medians), indicators], axis=1).to_numpy("float32")
cat = pd.get_dummies(categorical.fillna("<missing>")).to_numpy("float32")

keras.utils.set_random_seed(42)
inp_num = keras.Input((num.shape[1],))
inp_cat = keras.Input((cat.shape[1],))
norm = keras.layers.Normalization()
norm.adapt(num[train_idx])
x = keras.layers.Concatenate()([norm(inp_num), inp_cat])
for units in (64, 32):
    x = keras.layers.Dense(units, activation="relu")(x)
    x = keras.layers.Dropout(0.1)(x)
out = keras.layers.Dense(len(y_all.categories), activation="softmax")(x)
model = keras.Model([inp_num, inp_cat], out)
model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
start = time.perf_counter()
model.fit(
    [num[train_idx], cat[train_idx]], y[train_idx],
    validation_data=([num[val_idx], cat[val_idx]], y[val_idx]),
    epochs=epochs, batch_size=32, verbose=0,
)
fit_seconds = time.perf_counter() - start
_, accuracy = model.evaluate([num[test_idx], cat[test_idx]], y[test_idx], verbose=0)
from sklearn.dummy import DummyClassifier  # noqa: E402
from sklearn.ensemble import HistGradientBoostingClassifier  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.metrics import ConfusionMatrixDisplay, log_loss  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

flat = np.hstack([num, cat])
# The baselines as a careful user fits them: each chooses its capacity on the validation split.
with threadpool_limits(1):
    DummyClassifier().fit(flat[train_idx], y[train_idx]).score(flat[test_idx], y[test_idx])
    grid = train_idx[:20000]
    losses = {}
    for c in (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0):
        candidate = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000)).fit(flat[grid], y[grid])
        losses[c] = log_loss(y[val_idx], candidate.predict_proba(flat[val_idx]), labels=candidate.classes_)
    best_c = min(losses, key=losses.get)
    make_pipeline(StandardScaler(), LogisticRegression(C=best_c, max_iter=2000)).fit(flat[train_idx], y[train_idx]).score(flat[test_idx], y[test_idx])
    boosting = HistGradientBoostingClassifier(max_iter=3000, early_stopping=True, n_iter_no_change=50, validation_fraction=None, random_state=42)
    boosting.fit(flat[train_idx], y[train_idx], X_val=flat[val_idx], y_val=y[val_idx]).score(flat[test_idx], y[test_idx])

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

out = os.environ.get("HAND_OUT", "/tmp/hand_keras_out")
os.makedirs(out, exist_ok=True)
model.save(os.path.join(out, "model.keras"))
history = pd.DataFrame(model.history.history)
history.to_csv(os.path.join(out, "history.csv"))
fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
for ax, name in zip(axes, ("loss", "accuracy")):
    ax.plot(history[name])
    ax.plot(history["val_" + name])
fig.savefig(os.path.join(out, "learning_curves.png"))
fig, ax = plt.subplots()
ConfusionMatrixDisplay.from_predictions(y[test_idx], model.predict([num[test_idx], cat[test_idx]], verbose=0).argmax(1), ax=ax)
fig.savefig(os.path.join(out, "confusion_matrix.png"))
print(f"fit_seconds={fit_seconds:.3f} test_accuracy={accuracy:.4f}")

"""``dlw doctor``: is the install working? Versions, backend, devices and a smoke fit."""

from __future__ import annotations

import importlib.metadata
import platform
import sys
import time


def run_doctor() -> int:
    """Print the checks; return 0 when all passed, 1 otherwise."""
    ok = True
    print(f"python       {platform.python_version()} ({sys.executable})")
    for package in ("dlw", "keras", "jax", "jaxlib", "numpy", "pandas", "scikit-learn", "optuna"):
        try:
            version = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            version = "not installed" + (" (optional)" if package == "optuna" else "")
            ok = ok and package == "optuna"
        print(f"{package:12s} {version}")
    start = time.perf_counter()
    from dlw._backend import device_summary, import_keras

    try:
        keras = import_keras()
    except Exception as exc:
        print(f"keras import FAILED: {type(exc).__name__}: {exc}")
        return 1
    print(f"backend      {keras.backend.backend()} (import {time.perf_counter() - start:.1f} s; set KERAS_BACKEND to change)")
    print(f"devices      {', '.join(device_summary())}")
    import os

    cache = os.environ.get("JAX_COMPILATION_CACHE_DIR") or "off (set JAX_COMPILATION_CACHE_DIR to a folder to keep compiled programs)"
    print(f"compiled     {cache}")
    accuracy, seconds = smoke_fit(keras)
    passed = accuracy >= 0.9
    ok = ok and passed
    print(f"smoke fit    {'ok' if passed else 'FAILED'}: accuracy {accuracy:.2f} on a separable toy set in {seconds:.1f} s")
    print("all good" if ok else "problems found (see above)")
    return 0 if ok else 1


def smoke_fit(keras) -> tuple[float, float]:
    """Fit a tiny MLP on two separable blobs; return its accuracy and the seconds taken."""
    import numpy as np

    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(-2, 1, (256, 4)), rng.normal(2, 1, (256, 4))]).astype("float32")
    y = np.repeat([0, 1], 256)
    from dlw._backend import set_seed

    set_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(1, activation="sigmoid")])
    model.compile("adam", "binary_crossentropy", metrics=["accuracy"])
    start = time.perf_counter()
    model.fit(x, y, epochs=5, batch_size=32, verbose=0)
    _, accuracy = model.evaluate(x, y, verbose=0)
    return float(accuracy), time.perf_counter() - start

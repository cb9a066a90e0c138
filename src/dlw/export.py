"""Step 10, export: the run's network as ONNX or a TensorFlow SavedModel, through Keras's own ``Model.export``.

``dlw export RUN --format onnx|savedmodel --output PATH`` writes the network only, so a
JSON of the preprocessing it expects is written beside it (``<name>.preprocessing.json``):
the input names, shapes and dtypes, the column order, the medians that fill missing
numbers and the missing-value indicators, each category's vocabulary and integer codes,
the boolean spellings, the classes, the output's meaning and the target's scaling.
Numbers are scaled inside the network, so they go in raw (after imputation).

Why a subprocess on TensorFlow: Keras exports ONNX from JAX through jax2onnx, which needs
extra packages that dlw does not otherwise use (jax2onnx and its dependencies), while the
TensorFlow route needs only tf2onnx and onnx, and TensorFlow is already installed for CNNs
on CPUs. Keras fixes its backend per process, so the export runs in a child process with
``KERAS_BACKEND=tensorflow`` that loads ``model.keras`` (safe mode) and exports it; the
weights are the same, and a round-trip test checks the outputs within 1e-5.

>>> from dlw.export import export_run                                    # doctest: +SKIP
>>> export_run("runs/penguins", "onnx", "penguins.onnx")                  # doctest: +SKIP
PosixPath('penguins.onnx')
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from dlw.console import QUIET
from dlw.data.prepared import logs_target
from dlw.errors import DlwError
from dlw.runs import write_atomic, write_json

EXTRA = "pip install 'dlw[export]'"
# --format -> (Keras's Model.export format, the modules it needs)
FORMATS = {"onnx": ("onnx", ("tensorflow", "tf2onnx", "onnx")), "savedmodel": ("tf_saved_model", ("tensorflow",))}


def preprocessing_path(output) -> Path:
    """Where the preprocessing JSON goes: beside ``output``, as ``<stem>.preprocessing.json``."""
    output = Path(output)
    return output.with_name(f"{output.stem}.preprocessing.json")


def check_format(fmt: str) -> tuple[str, tuple[str, ...]]:
    """Keras's name for ``fmt`` and the modules it needs; a one-line error for an unknown format or a missing extra."""
    if fmt not in FORMATS:
        raise DlwError(f"--format: expected one of {', '.join(FORMATS)}; received {fmt!r}")
    keras_format, needs = FORMATS[fmt]
    missing = [name for name in needs if importlib.util.find_spec(name) is None]
    if missing:
        raise DlwError(f"dlw export --format {fmt} needs {', '.join(missing)}, which are not installed; install the extra: {EXTRA}")
    return keras_format, needs


def table_preprocessing(schema) -> dict:
    """The table's inputs as the network expects them, read off ``Schema.encode`` itself."""
    import pandas as pd

    features = list(schema.features)
    cats = [f for f in features if f.kind == "categorical"]
    size = max([len(f.vocabulary) + 1 for f in cats] + [1])
    probe = pd.DataFrame({f.name: (f.vocabulary + [None] * (size - len(f.vocabulary))) if f.kind == "categorical" else [None] * size for f in features})
    encoded, _ = schema.encode(probe)
    unknown, _ = schema.encode(pd.DataFrame({f.name: ["\x00never seen\x00"] if f.kind == "categorical" else [None] for f in features}))
    numeric = [numeric_preprocessing(f) for f in features if f.kind in ("numeric", "boolean")]
    categorical = [
        {
            "column": f.name,
            "codes": {level: int(encoded["categorical"][i, j]) for i, level in enumerate(f.vocabulary)},
            "missing_code": int(encoded["categorical"][-1, j]),
            "unknown_code": int(unknown["categorical"][0, j]),
        }
        for j, f in enumerate(cats)
    ]
    inputs = {}
    if "numeric" in encoded:
        inputs["numeric"] = {"dtype": "float32", "columns": list(schema.numeric_input_names), "how": (
            "one column per numeric/boolean input in this order (a missing or non-finite value becomes the median), "
            "then a 0/1 column per input with missing_indicator (1 where the value was missing); raw units: the network scales them"
        )}
    if "categorical" in encoded:
        inputs["categorical"] = {"dtype": "int32", "columns": [f.name for f in cats], "how": (
            "one integer code per categorical column in this order: codes[level], missing_code when missing, unknown_code for a level not listed"
        )}
    return {"inputs": inputs, "numeric": numeric, "categorical": categorical}


def numeric_preprocessing(feature) -> dict:
    """How one numeric or boolean column becomes its input number."""
    entry = {"column": feature.name, "kind": feature.kind, "median": feature.median, "missing_indicator": feature.indicator}
    if feature.kind == "boolean":
        entry["true_value"] = feature.true_value or "true"
    if (feature.encoding or {}).get("clock"):
        entry["clock"] = "HHMM: the network takes minutes after midnight, 60 * (value // 100) + value % 100 (the median is in minutes)"
    return entry


def output_description(problem, target_scaling) -> dict:
    """What the network's output means, and how to turn it into a prediction."""
    task = problem.task
    out = {"task": task, "target": problem.target}
    if task == "binary":
        threshold = getattr(problem, "threshold", None)
        out.update(classes=[str(c) for c in problem.classes], output="probability of the second class, shape (n, 1)",
                   threshold=threshold if threshold is not None else 0.5)
    elif task == "multiclass":
        out.update(classes=[str(c) for c in problem.classes], output="class probabilities, shape (n, classes), in the order of classes")
    else:
        scaling = target_scaling or {"mean": 0.0, "std": 1.0}
        formula = "expm1(output * std + mean)" if logs_target(scaling) else "output * std + mean"
        out.update(output=f"standardized prediction, shape (n, 1): prediction = {formula}", target_scaling=scaling)
    return out


def preprocessing(run) -> dict:
    """The preprocessing JSON for ``run``: its inputs and what its output means."""
    from dlw.version import __version__

    if run.input_kind == "table":
        inputs = table_preprocessing(run.schema)
    else:
        s = run.schema
        inputs = {"inputs": {"image": {"dtype": "uint8", "shape": ["n", *s.shape], "how": (
            f"{s.channels} channel(s) ({'grayscale' if s.channels == 1 else 'RGB'}), EXIF-rotated, transparency over white, "
            f"resized bilinearly to {s.size[0]}x{s.size[1]} (height x width); pixel values 0-255: the network rescales them"
        )}}}
    return {
        "format": "dlw-export-preprocessing",
        "version": 1,
        "dlw_version": __version__,
        "run": str(run.path),
        "input_kind": run.input_kind,
        **inputs,
        "output": output_description(run.problem, run.target_scaling),
    }


def export_run(source, fmt: str, output, *, console=QUIET, timeout: float = 900) -> Path:
    """Export the network of the run folder or bundle at ``source`` to ``output``; returns ``output``.

    Also writes the preprocessing JSON beside it (``preprocessing_path(output)``).
    """
    from dlw.workflow import load

    keras_format, _ = check_format(fmt)
    output = Path(output)
    if not output.parent.exists():
        raise DlwError(f"{output.parent}: folder does not exist; create it or choose another --output")
    run = load(source)
    started = time.perf_counter()
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3"}

    def write(tmp: Path) -> None:
        command = [sys.executable, "-m", "dlw.export", str(run.path / "model.keras"), keras_format, str(tmp)]
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no message"])[-1]
            raise DlwError(f"{source}: the {fmt} export failed ({last[:300]}); run `dlw --debug export ...` or report it")

    if output.is_dir() and keras_format == "tf_saved_model":
        shutil.rmtree(output)  # the CLI checked --overwrite; a folder cannot be renamed over a full one
    write_atomic(output, write)
    write_json(preprocessing_path(output), {**preprocessing(run), "run": str(source)})  # a bundle's, not its unpacked copy's
    console.say(f"wrote {output} ({fmt}, {time.perf_counter() - started:.1f} s) and {preprocessing_path(output)}")
    return output


def export_in_this_process(model_path: str, keras_format: str, output: str) -> None:
    """The child's side: load ``model.keras`` on this process's backend and ``Model.export`` it."""
    from dlw.models import load_network

    import numpy as np

    model = load_network(model_path)
    # Model.export needs a model that has been called once; a loaded one has not.
    dummy = {t.name: np.zeros([2, *(d or 1 for d in t.shape[1:])], t.dtype) for t in model.inputs}
    model(dummy if len(dummy) > 1 else next(iter(dummy.values())), training=False)
    model.export(output, format=keras_format, verbose=False)


if __name__ == "__main__":
    export_in_this_process(*sys.argv[1:4])

"""dlw export: the network through Keras's Model.export, run back in onnxruntime / TensorFlow.

The round trip feeds the exported network the run's own test split, encoded as the
preprocessing JSON written beside it says, and compares with the probabilities the run
wrote in ``test_predictions.csv`` (dlw's own outputs) within 1e-5.
"""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pandas as pd
import pytest

from conftest import run_dlw


def own_test_outputs(run) -> np.ndarray:
    rows = pd.read_csv(run.path / "test_predictions.csv")
    return rows[[f"prob_{c}" for c in run.problem.classes]].to_numpy(dtype="float64")


def encode_as_documented(rows: pd.DataFrame, spec: dict) -> dict[str, np.ndarray]:
    """The inputs built from the preprocessing JSON alone, without dlw: medians, indicators, codes."""
    numeric, indicators = [], []
    for item in spec["numeric"]:
        values = pd.to_numeric(rows[item["column"]], errors="coerce").to_numpy(dtype="float64")
        missing = ~np.isfinite(values)
        numeric.append(np.where(missing, item["median"], values))
        if item["missing_indicator"]:
            indicators.append(missing.astype("float64"))
    codes = []
    for item in spec["categorical"]:
        column = rows[item["column"]]
        codes.append([item["missing_code"] if pd.isna(v) else item["codes"].get(str(v), item["unknown_code"]) for v in column])
    inputs = {}
    if numeric:
        inputs["numeric"] = np.stack(numeric + indicators, axis=1).astype("float32")
    if codes:
        inputs["categorical"] = np.array(codes, dtype="int32").T
    return inputs


@pytest.mark.skipif(importlib.util.find_spec("onnxruntime") is None or importlib.util.find_spec("tf2onnx") is None, reason="needs dlw[export]")
def test_onnx_export_of_a_tabm_run_reproduces_its_test_outputs(penguins_run, tmp_path):
    import onnxruntime

    output = tmp_path / "penguins.onnx"
    done = run_dlw("export", penguins_run.path, "--format", "onnx", "--output", output)
    assert done.returncode == 0, done.stderr
    spec = json.loads((tmp_path / "penguins.preprocessing.json").read_text())
    assert spec["run"] == str(penguins_run.path)
    assert spec["output"]["classes"] == penguins_run.problem.classes
    assert spec["inputs"]["numeric"]["columns"] == penguins_run.schema.numeric_input_names
    rows = pd.read_csv(penguins_run.path / "test_predictions.csv")
    documented = encode_as_documented(rows, spec)
    encoded, _ = penguins_run.schema.encode(rows)
    for key in encoded:  # the JSON says exactly what dlw does
        np.testing.assert_array_equal(documented[key], encoded[key])
    session = onnxruntime.InferenceSession(str(output))
    got = session.run(None, {i.name: documented[i.name] for i in session.get_inputs()})[0]
    assert np.abs(got - own_test_outputs(penguins_run)).max() < 1e-5


def test_unknown_format_and_existing_output_are_one_line_errors(penguins_run, tmp_path):
    done = run_dlw("export", penguins_run.path, "--format", "tflite", "--output", tmp_path / "m.tflite")
    assert done.returncode == 2 and done.stderr.strip().count("\n") == 0
    assert "--format" in done.stderr and "onnx" in done.stderr
    (tmp_path / "taken.onnx").write_text("x")
    done = run_dlw("export", penguins_run.path, "--output", tmp_path / "taken.onnx")
    assert done.returncode == 2 and "--overwrite" in done.stderr


def test_without_the_extra_the_error_names_it(monkeypatch):
    from dlw.errors import DlwError
    from dlw.export import check_format

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tf2onnx" else real(name, *a))
    with pytest.raises(DlwError, match=r"tf2onnx.*pip install 'dlw\[export\]'"):
        check_format("onnx")


@pytest.mark.slow
def test_savedmodel_export_reproduces_the_test_outputs_in_tensorflow(penguins_run, tmp_path):
    output = tmp_path / "penguins_savedmodel"
    done = run_dlw("export", penguins_run.path, "--format", "savedmodel", "--output", output)
    assert done.returncode == 0, done.stderr
    rows = pd.read_csv(penguins_run.path / "test_predictions.csv")
    inputs, _ = penguins_run.schema.encode(rows)
    np.save(tmp_path / "numeric.npy", inputs["numeric"])
    np.save(tmp_path / "categorical.npy", inputs["categorical"])
    # TensorFlow in its own process: this one runs Keras on JAX.
    script = (
        "import sys, numpy as np, tensorflow as tf\n"
        f"m = tf.saved_model.load({str(output)!r})\n"
        f"x = {{k: tf.constant(np.load({str(tmp_path)!r} + '/' + k + '.npy')) for k in ('numeric', 'categorical')}}\n"
        "out = m.serve(x) if not isinstance(m.serve(x), dict) else list(m.serve(x).values())[0]\n"
        f"np.save({str(tmp_path)!r} + '/out.npy', np.asarray(out))\n"
    )
    import subprocess
    import sys

    subprocess.run([sys.executable, "-c", script], check=True, timeout=300)
    got = np.load(tmp_path / "out.npy")
    assert np.abs(got - own_test_outputs(penguins_run)).max() < 1e-5


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("onnxruntime") is None or importlib.util.find_spec("tf2onnx") is None, reason="needs dlw[export]")
def test_onnx_export_of_a_cnn_reproduces_its_test_outputs(digits_cnn_run, tmp_path):
    import onnxruntime

    from dlw.data.kinds import prepare

    output = tmp_path / "digits.onnx"
    done = run_dlw("export", digits_cnn_run.path, "--format", "onnx", "--output", output)
    assert done.returncode == 0, done.stderr
    spec = json.loads((tmp_path / "digits.preprocessing.json").read_text())
    assert spec["inputs"]["image"]["dtype"] == "uint8" and spec["inputs"]["image"]["shape"] == ["n", 8, 8, 1]
    images = np.asarray(prepare(digits_cnn_run.config, schema=digits_cnn_run.schema).inputs["test"])
    session = onnxruntime.InferenceSession(str(output))
    (name,) = [i.name for i in session.get_inputs()]
    got = session.run(None, {name: images})[0]
    assert np.abs(got - own_test_outputs(digits_cnn_run)).max() < 1e-5


def test_the_documented_target_scaling_turns_the_network_output_into_predictions(regression_run):
    """Regression: the JSON's ``prediction = output * std + mean`` gives what ``Run.predict`` gives."""
    from dlw.export import preprocessing

    run, csv = regression_run
    spec = preprocessing(run)
    assert spec["output"]["task"] == "regression" and "classes" not in spec["output"]
    scaling = spec["output"]["target_scaling"]
    rows = pd.read_csv(csv).head(20)
    inputs = encode_as_documented(rows, spec)
    names = {t.name for t in run.model.inputs}
    raw = np.asarray(run.model.predict({k: v for k, v in inputs.items() if k in names}, verbose=0)).reshape(-1)
    expected = run.predict(rows)["prediction"].to_numpy()
    np.testing.assert_allclose(raw * scaling["std"] + scaling["mean"], expected, rtol=1e-5)

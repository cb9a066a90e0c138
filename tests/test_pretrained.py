"""Transfer learning (``model.kind: pretrained``), offline.

No ImageNet weights can be downloaded here: the keras.applications paths are
exercised with ``weights=None`` architectures, weights files the tests save
themselves, and the error for weights missing from the (empty, temporary)
Keras cache, with sockets disabled. keras.applications models are built in one
TensorFlow subprocess (see ``applications``); saved-model backbones in process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from dlw.errors import ConfigError
from dlw.models import pretrained as P
from dlw.models.cnn import build_cnn
from dlw.objectives import choose_objective


def _images(n, shape, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(n, *shape)).astype("uint8")


def _weights(layer_or_model):
    return [np.array(w) for w in layer_or_model.weights]


# --- resolving model.backbone ------------------------------------------------------------


def test_resolve_application_name_and_did_you_mean(tmp_path):
    spec = P.resolve_backbone("ResNet50", tmp_path)
    assert spec.kind == "application" and spec.input_shape == (224, 224, 3) and spec.preprocessing == "caffe"
    assert spec.weights == "imagenet"
    assert P.resolve_backbone("Xception", tmp_path).input_shape == (299, 299, 3)
    assert P.resolve_backbone("MobileNetV3Small", tmp_path, weights="random", size=32).input_shape == (32, 32, 3)
    with pytest.raises(ConfigError, match=r"model.backbone 'resnet50'.*did you mean 'ResNet50'"):
        P.resolve_backbone("resnet50", tmp_path)
    with pytest.raises(ConfigError, match=r"did you mean 'MobileNetV3Small'"):
        P.resolve_backbone("MobileNetV3Smal", tmp_path)
    with pytest.raises(ConfigError, match=r"model.backbone 'runs/old' does not exist"):
        P.resolve_backbone("runs/old", tmp_path)
    with pytest.raises(ConfigError, match=r"model.backbone_weights 'w.h5' does not exist"):
        P.resolve_backbone("MobileNetV2", tmp_path, weights="w.h5")
    with pytest.raises(ConfigError, match=r"at least 71x71"):
        P.resolve_backbone("Xception", tmp_path, size=32)


def test_registry_names_are_keras_applications():
    for name, app in P.APPLICATIONS.items():
        assert callable(getattr(keras.applications, name)), name
        assert hasattr(getattr(keras.applications, app.module), "preprocess_input"), name
        assert app.preprocessing in P.PREPROCESSING_MODES
    for name in ["MobileNetV3Small", "MobileNetV3Large", "MobileNetV2", "EfficientNetB0", "EfficientNetB3", "ResNet50",
                 "ResNet50V2", "DenseNet121", "Xception", "InceptionV3", "VGG16", "ConvNeXtTiny"]:
        assert name in P.APPLICATIONS


# --- preprocessing as keras.applications does it -------------------------------------------


@pytest.mark.parametrize("name", ["ResNet50", "VGG16", "ResNet50V2", "Xception", "InceptionV3", "MobileNetV2", "DenseNet121",
                                  "EfficientNetB0", "MobileNetV3Small", "ConvNeXtTiny", "EfficientNetV2B0"])
def test_preprocessing_layers_match_preprocess_input(name, tmp_path):
    app = P.APPLICATIONS[name]
    batch = _images(4, (6, 5, 3))
    reference = getattr(keras.applications, app.module).preprocess_input(batch.astype("float32"))
    inputs = keras.Input((6, 5, 3), dtype="uint8")
    x = inputs
    for layer in P.preprocessing_layers(app.preprocessing):
        x = layer(x)
    model = keras.Model(inputs, x)
    got = np.asarray(model.predict(batch, verbose=0), dtype="float32")
    np.testing.assert_allclose(got, reference, rtol=1e-5, atol=1e-4)
    # Built-in layers only: the preprocessing survives safe_mode loading.
    model.save(tmp_path / "p.keras")
    again = keras.models.load_model(tmp_path / "p.keras", safe_mode=True)
    np.testing.assert_allclose(np.asarray(again.predict(batch, verbose=0), dtype="float32"), reference, rtol=1e-5, atol=1e-4)


# --- keras.applications: missing weights, weights from a file --------------------------------
#
# One TensorFlow subprocess builds every keras.applications model of these tests:
# under JAX each new weight shape costs an XLA compilation of its random
# initializer (about 20 s for the first MobileNetV3Small), under TensorFlow
# building ResNet50 takes a second. TensorFlow is also what dlw uses for image
# models on a CPU; the JAX path is the same code (tests below use it for saved models).

_APPLICATIONS_SCRIPT = textwrap.dedent(
    """
    import json, os, socket, sys
    import numpy as np

    def refuse(*a, **k):
        raise AssertionError("network access attempted")

    socket.socket.connect = refuse
    socket.create_connection = refuse

    import keras
    from keras.src.utils import file_utils
    from dlw.errors import ConfigError
    from dlw.models import pretrained as P
    from dlw.objectives import choose_objective

    work = sys.argv[1]
    out = {"backend": keras.backend.backend(), "missing": {}}
    binary = choose_objective("binary", 2)

    # Nothing is cached: the error names the file, the folder and the URL.
    for name in ["MobileNetV3Small", "ResNet50", "DenseNet121"]:
        spec = P.resolve_backbone(name, None, size=32)
        try:
            P.build_pretrained(spec, (32, 32, 1), binary)
            out["missing"][name] = "built?"
        except ConfigError as error:
            out["missing"][name] = str(error)
    out["get_file_restored"] = file_utils.get_file is keras.utils.get_file

    # The exact file asked for; a corrupt copy in the cache is reported, not re-downloaded.
    spec = P.resolve_backbone("MobileNetV3Small", None, size=32)
    wanted = P.imagenet_weights_file(spec)
    out["wanted"] = [wanted.fname, str(wanted.folder), wanted.present]
    wanted.folder.mkdir(parents=True, exist_ok=True)
    wanted.path.write_bytes(b"not the weights")
    out["present_after_copy"] = P.imagenet_weights_file(spec).present
    try:
        P.build_pretrained(spec, (32, 32, 3), binary)
    except ConfigError as error:
        out["corrupt"] = str(error)
    wanted.path.unlink()

    # model.backbone_weights: a weights file saved from the same architecture.
    source = keras.applications.MobileNetV3Small(include_top=False, weights=None, input_shape=(32, 32, 3))
    rng = np.random.default_rng(1)
    source.set_weights([w + rng.normal(0, 0.01, w.shape).astype(w.dtype) for w in source.get_weights()])
    source.save_weights(os.path.join(work, "mnv3.weights.h5"))
    spec = P.resolve_backbone("MobileNetV3Small", work, weights="mnv3.weights.h5", size=32)
    model, backbone = P.build_pretrained(spec, (24, 24, 1), choose_objective("multiclass", 4), dense_layers=[8], dropout=0.0)
    out["weights_equal"] = all(np.array_equal(a, b) for a, b in zip(source.get_weights(), backbone.get_weights()))
    out["n_weights"] = len(backbone.get_weights())
    out["resize"] = list(model.get_layer("resize").output.shape[1:3])
    out["grey_to_rgb"] = model.get_layer("grey_to_rgb").output.shape[-1]
    images = np.random.default_rng(0).integers(0, 256, (2, 24, 24, 1)).astype("uint8")
    out["predict"] = list(model.predict(images, verbose=0).shape)
    out["describe"] = P.describe(model, backbone, spec, dense_layers=[8])
    model.save(os.path.join(work, "full.keras"))
    again = keras.models.load_model(os.path.join(work, "full.keras"), safe_mode=True)
    out["reload_diff"] = float(np.abs(again.predict(images, verbose=0) - model.predict(images, verbose=0)).max())

    # A valid file in the cache is used, not downloaded (a real ImageNet file's hash cannot
    # be made here: the source weights in Keras' legacy .h5 format, hash check waived).
    import h5py
    from keras.src.legacy.saving import legacy_h5_format

    imagenet = P.resolve_backbone("MobileNetV3Small", None, size=32)
    with h5py.File(P.imagenet_weights_file(imagenet).path, "w") as handle:
        legacy_h5_format.save_weights_to_hdf5_group(handle, source)
    file_utils.validate_file = lambda *args, **kwargs: True
    model, backbone = P.build_pretrained(imagenet, (32, 32, 3), binary)
    out["cache_hit_equal"] = all(np.array_equal(a, b) for a, b in zip(source.get_weights(), backbone.get_weights()))
    out["cache_hit_describe"] = P.describe(model, backbone, imagenet)

    # Weights of another architecture.
    other = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Conv2D(2, 3)])
    other.save_weights(os.path.join(work, "other.weights.h5"))
    bad = P.resolve_backbone("MobileNetV3Small", work, weights="other.weights.h5", size=32)
    try:
        P.build_pretrained(bad, (32, 32, 3), binary)
    except ConfigError as error:
        out["mismatch"] = str(error)
    print(json.dumps(out))
    """
)


@pytest.fixture(scope="module")
def applications(tmp_path_factory):
    """What the applications script reports; its KERAS_HOME is an empty temporary folder."""
    pytest.importorskip("tensorflow")
    work = tmp_path_factory.mktemp("applications")
    home = work / "keras-home"
    env = dict(os.environ, KERAS_BACKEND="tensorflow", KERAS_HOME=str(home), TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run([sys.executable, "-c", _APPLICATIONS_SCRIPT, str(work)], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    report["folder"] = str(home / "models")
    return report


@pytest.mark.parametrize(
    ("name", "fname", "url_folder"),
    [
        ("MobileNetV3Small", "weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5", "tensorflow/keras-applications/mobilenet_v3"),
        ("ResNet50", "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5", "tensorflow/keras-applications/resnet"),
        ("DenseNet121", "densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5", "tensorflow/keras-applications/densenet"),
    ],
)
def test_missing_imagenet_weights_names_file_and_folder(applications, name, fname, url_folder):
    message = applications["missing"][name]
    folder = applications["folder"]
    assert "\n" not in message
    assert message.startswith(f"model.backbone '{name}': ImageNet weights not in the Keras cache: {fname} is missing from {folder};")
    assert f"keras.applications.{name}(weights='imagenet', include_top=False, input_shape=(32, 32, 3))" in message
    assert f"copy {folder}/{fname} here" in message
    assert f"download https://storage.googleapis.com/{url_folder}/{fname} into {folder}" in message
    assert message.endswith("or set model.backbone_weights: <path to the file>")


def test_cached_weights_file_is_found_not_downloaded(applications):
    assert applications["get_file_restored"]
    assert applications["wanted"] == ["weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5", applications["folder"], False]
    assert applications["present_after_copy"] is True
    assert applications["cache_hit_equal"]
    assert applications["cache_hit_describe"].startswith("pretrained MobileNetV3Small (ImageNet), frozen, + Dense 128 head; 1.")
    assert "weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5 in" in applications["corrupt"]
    assert "is incomplete or corrupt (its hash does not match): delete it" in applications["corrupt"]


def test_backbone_weights_file_is_loaded(applications):
    assert applications["backend"] == "tensorflow"
    assert applications["weights_equal"] and applications["n_weights"] > 100
    assert applications["resize"] == [32, 32] and applications["grey_to_rgb"] == 3
    assert applications["predict"] == [2, 4]
    assert applications["describe"].startswith("pretrained MobileNetV3Small (weights mnv3.weights.h5), frozen, + Dense 8 head;")
    assert applications["reload_diff"] < 1e-5
    mismatch = applications["mismatch"]
    assert mismatch.startswith("model.backbone_weights '") and "other.weights.h5' does not fit MobileNetV3Small" in mismatch
    assert "\n" not in mismatch


# --- a saved model as the backbone ------------------------------------------------------------


@pytest.fixture
def saved_cnn(tmp_path):
    """A tiny dlw CNN (grey 16x16 images, 3 classes) saved in a run-like folder."""
    model = build_cnn((16, 16, 1), choose_objective("multiclass", 3), conv_filters=(4, 8), dense_layers=(6,), dropout=0.2)
    run = tmp_path / "old_run"
    run.mkdir()
    model.save(run / "model.keras")
    return run, model


def test_saved_model_backbone_cut_freeze_fine_tune_and_reload(saved_cnn, tmp_path):
    run, original = saved_cnn
    spec = P.resolve_backbone("old_run", tmp_path)
    assert spec.kind == "file" and spec.path == run / "model.keras"
    assert spec.input_shape == (16, 16, 1) and spec.input_dtype == "uint8"

    augment = [keras.layers.RandomFlip("horizontal", name="augment_flip")]
    objective = choose_objective("binary", 2)
    model, backbone = P.build_pretrained(spec, (16, 16, 1), objective, dense_layers=[5], dropout=0.0, freeze=True, augment_layers=augment)
    # Cut at the input of the old "output" layer: the old head's last Dense (and its dropout).
    assert spec.cut_layer == "dropout_1"
    assert backbone.output.shape[-1] == 6
    assert "output" not in [layer.name for layer in backbone.layers]
    assert model.get_layer("output").units == 1
    # The old weights came along.
    for a, b in zip(_weights(original.get_layer("conv_1")), _weights(backbone.get_layer("conv_1"))):
        np.testing.assert_array_equal(a, b)

    x, y = _images(16, (16, 16, 1)), np.random.default_rng(0).integers(0, 2, 16).astype("float32")
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=objective.loss)
    before_backbone = _weights(backbone)
    before_head = _weights(model.get_layer("head_dense_1"))
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    for a, b in zip(before_backbone, _weights(backbone)):  # frozen, moving statistics included
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(before_head, _weights(model.get_layer("head_dense_1"))))
    line = P.describe(model, backbone, spec, dense_layers=[5])
    assert line.startswith("pretrained old_run (saved model, cut at 'dropout_1'), frozen, + Dense 5 head;"), line

    # Phase two: the top 2 layers with weights (not batch normalization) become trainable.
    assert P.unfreeze_top(backbone, 2) == 2
    trainable = [layer.name for layer in backbone.layers if layer.trainable and layer.weights]
    assert trainable == ["conv_2", "dense_1"]
    assert not backbone.get_layer("bn_2").trainable and not backbone.get_layer("bn_1").trainable
    assert P.unfreeze_top(backbone, 100) == 3  # conv_1, conv_2, dense_1
    P.unfreeze_top(backbone, 2)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=objective.loss)
    conv1, conv2, bn2 = (_weights(backbone.get_layer(n)) for n in ("conv_1", "conv_2", "bn_2"))
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    assert all(np.array_equal(a, b) for a, b in zip(conv1, _weights(backbone.get_layer("conv_1"))))
    assert all(np.array_equal(a, b) for a, b in zip(bn2, _weights(backbone.get_layer("bn_2"))))
    assert not all(np.array_equal(a, b) for a, b in zip(conv2, _weights(backbone.get_layer("conv_2"))))
    assert "top 2 layers trainable" in P.describe(model, backbone, spec, dense_layers=[5])

    # The whole model saves and loads with safe_mode=True, and predicts the same.
    model.save(tmp_path / "new.keras")
    again = keras.models.load_model(tmp_path / "new.keras", safe_mode=True)
    np.testing.assert_allclose(again.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)


def test_saved_model_backbone_layer_resize_and_grey(saved_cnn, tmp_path):
    run, _ = saved_cnn
    spec = P.resolve_backbone(str(run / "model.keras"), None, layer="features")
    model, backbone = P.build_pretrained(spec, (20, 24, 1), choose_objective("multiclass", 5), dense_layers=[], dropout=0.0)
    assert spec.cut_layer == "features" and backbone.output.shape[-1] == 8
    assert model.get_layer("resize").output.shape[1:3] == (16, 16)
    assert "round_pixels" in [layer.name for layer in model.layers]  # the uint8 backbone gets rounded pixels
    assert model.predict(_images(3, (20, 24, 1)), verbose=0).shape == (3, 5)

    # A grey backbone cannot take colour images.
    with pytest.raises(ConfigError, match=r"takes grey images .*data.channels: 1"):
        P.build_pretrained(spec, (16, 16, 3), choose_objective("binary", 2))


def test_unknown_backbone_layer(saved_cnn, tmp_path):
    spec = P.resolve_backbone("old_run", tmp_path, layer="featurs")
    with pytest.raises(ConfigError) as caught:
        P.build_pretrained(spec, (16, 16, 1), choose_objective("binary", 2))
    message = str(caught.value)
    assert "model.backbone_layer 'featurs' is not a layer of old_run" in message
    assert "did you mean 'features'?" in message and "dense_1" in message and "\n" not in message


def test_a_backbone_naming_dlw_layers_loads_in_a_fresh_process(tmp_path):
    """A calibrated dlw run's model ends in dlw's TemperatureScaling: the backbone loader registers it."""
    from dlw.calibration import TemperatureScaling

    images = keras.Input((8, 8, 3))
    hidden = keras.layers.Dense(8, name="feat")(keras.layers.Flatten()(images))
    probabilities = TemperatureScaling(1.5, name="calibration")(keras.layers.Dense(3, activation="softmax")(hidden))
    keras.Model(images, probabilities).save(tmp_path / "calibrated.keras")
    script = textwrap.dedent("""
        import sys
        from dlw.models.pretrained import load_backbone, resolve_backbone
        print(load_backbone(resolve_backbone(sys.argv[1], base_dir=sys.argv[2])).name)
    """)
    proc = subprocess.run([sys.executable, "-c", script, "calibrated.keras", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1].endswith("_cut")


def test_bad_backbone_files(tmp_path):
    (tmp_path / "empty_run").mkdir()
    with pytest.raises(ConfigError, match=r"folder without model.keras"):
        P.resolve_backbone("empty_run", tmp_path)
    (tmp_path / "broken.keras").write_bytes(b"nope")
    with pytest.raises(ConfigError, match=r"model.backbone '.*broken.keras' is not a readable .keras file"):
        P.resolve_backbone("broken.keras", tmp_path)
    (tmp_path / "weights.h5").write_bytes(b"nope")
    with pytest.raises(ConfigError, match=r"is not a .keras file"):
        P.resolve_backbone("weights.h5", tmp_path)

"""Transfer learning: a pretrained backbone with a new head (``model.kind: pretrained``).

The backbone is either a ``keras.applications`` architecture with ImageNet
weights from the local Keras cache (``model.backbone: ResNet50``), or a model
saved by Keras or dlw (``model.backbone: path/model.keras`` or a dlw run
folder), cut at the last layer before its classifier (or at
``model.backbone_layer``).

The full model takes ``uint8`` images ``(height, width, channels)`` as decoded,
like dlw's CNN, so the saved ``model.keras`` carries everything: augmentation
layers (training only), resizing to the backbone's input size, a grey channel
repeated to RGB, the backbone's own input preprocessing, the backbone (called
with ``training=False`` when frozen, so batch normalization stays in inference
mode), global average pooling, the Dense head and the output layer ``output``.
Only built-in layers are used (no ``Lambda``), so the model loads with
``keras.models.load_model(path, safe_mode=True)``.

This machine may have no internet: ImageNet weights are only ever read from the
Keras cache (``$KERAS_HOME/models`` or ``~/.keras/models``), never downloaded;
when a file is missing the error names it, the folder, and how to put it there.
"""

from __future__ import annotations

import contextlib
import difflib
import inspect
import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from dlw.errors import ConfigError
from dlw.objectives import Objective

# --- the registry of keras.applications backbones --------------------------------

# Input preprocessing, as ``keras.applications.<module>.preprocess_input`` does it:
#   caffe: RGB -> BGR, then minus the ImageNet mean of each channel (0-255 scale)
#   tf:    x / 127.5 - 1
#   torch: x / 255, then minus mean and divided by std of each channel
#   none:  the model includes its own preprocessing and takes 0-255 pixels as they are
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
TORCH_MEAN = (0.485, 0.456, 0.406)
TORCH_STD = (0.229, 0.224, 0.225)
PREPROCESSING_MODES = ("caffe", "tf", "torch", "none")


@dataclass(frozen=True)
class Application:
    """One ``keras.applications`` architecture dlw can use as a backbone."""

    name: str  # the constructor, keras.applications.<name>
    module: str  # keras.applications.<module>.preprocess_input is the reference preprocessing
    size: int  # default input height and width
    preprocessing: str  # one of PREPROCESSING_MODES
    min_size: int = 32  # smallest input Keras accepts for it (weights=None)
    channels: int = 3

    def constructor(self):
        import keras

        return getattr(keras.applications, self.name)


def _family(names, module, preprocessing, size=224, sizes=None, min_size=32):
    sizes = sizes or {}
    return {n: Application(n, module, sizes.get(n, size), preprocessing, min_size) for n in names}


APPLICATIONS: dict[str, Application] = {
    **_family(["ConvNeXtTiny", "ConvNeXtSmall", "ConvNeXtBase", "ConvNeXtLarge", "ConvNeXtXLarge"], "convnext", "none"),
    **_family(["DenseNet121", "DenseNet169", "DenseNet201"], "densenet", "torch"),
    **_family(
        [f"EfficientNetB{i}" for i in range(8)],
        "efficientnet",
        "none",
        sizes={"EfficientNetB0": 224, "EfficientNetB1": 240, "EfficientNetB2": 260, "EfficientNetB3": 300,
               "EfficientNetB4": 380, "EfficientNetB5": 456, "EfficientNetB6": 528, "EfficientNetB7": 600},
    ),
    **_family(
        ["EfficientNetV2B0", "EfficientNetV2B1", "EfficientNetV2B2", "EfficientNetV2B3", "EfficientNetV2S", "EfficientNetV2M", "EfficientNetV2L"],
        "efficientnet_v2",
        "none",
        sizes={"EfficientNetV2B1": 240, "EfficientNetV2B2": 260, "EfficientNetV2B3": 300, "EfficientNetV2S": 384,
               "EfficientNetV2M": 480, "EfficientNetV2L": 480},
    ),
    **_family(["InceptionResNetV2"], "inception_resnet_v2", "tf", size=299, min_size=75),
    **_family(["InceptionV3"], "inception_v3", "tf", size=299, min_size=75),
    **_family(["MobileNet"], "mobilenet", "tf"),
    **_family(["MobileNetV2"], "mobilenet_v2", "tf"),
    **_family(["MobileNetV3Small", "MobileNetV3Large"], "mobilenet_v3", "none"),
    **_family(["NASNetMobile"], "nasnet", "tf"),
    **_family(["NASNetLarge"], "nasnet", "tf", size=331),
    **_family(["ResNet50", "ResNet101", "ResNet152"], "resnet", "caffe"),
    **_family(["ResNet50V2", "ResNet101V2", "ResNet152V2"], "resnet_v2", "tf"),
    **_family(["VGG16"], "vgg16", "caffe"),
    **_family(["VGG19"], "vgg19", "caffe"),
    **_family(["Xception"], "xception", "tf", size=299, min_size=71),
}


# --- what model.backbone names ----------------------------------------------------------


@dataclass
class BackboneSpec:
    """What ``model.backbone`` (and its companion keys) resolved to.

    ``kind`` is ``"application"`` (``application`` set; ``weights`` is
    ``"imagenet"``, a weights file, or None for random initialization) or
    ``"file"`` (``path`` is the ``.keras`` file). ``input_shape`` (height,
    width, channels) and ``input_dtype`` are what the backbone takes: the data
    pipeline may resize images to it; the model resizes anything else itself.
    """

    kind: str
    name: str  # as the user wrote it (an application name, or the path)
    input_shape: tuple[int, int, int]
    input_dtype: str = "float32"
    application: Application | None = None
    path: Path | None = None
    weights: str | Path | None = "imagenet"
    layer: str | None = None
    cut_layer: str | None = field(default=None, compare=False)  # set by build_pretrained: where it was cut

    @property
    def preprocessing(self) -> str:
        return self.application.preprocessing if self.application else "none"

    @property
    def weights_label(self) -> str:
        if self.kind == "file":
            return f"from {self.path}"
        if self.weights == "imagenet":
            return "ImageNet"
        if self.weights is None:
            return "random init"
        return f"weights {Path(self.weights).name}"


def resolve_backbone(
    spec: str,
    base_dir: Path | None = None,
    *,
    weights: str | None = None,
    layer: str | None = None,
    size: int | tuple[int, int] | list[int] | None = None,
) -> BackboneSpec:
    """Resolve ``model.backbone`` (a keras.applications name, a ``.keras`` file or a dlw run folder).

    ``weights`` is ``model.backbone_weights``: None for ImageNet weights from the
    Keras cache, a path to a weights file (relative to ``base_dir``), or
    ``"random"`` for no pretrained weights. ``layer`` is ``model.backbone_layer``.
    ``size`` overrides an application's input size (height and width).
    Raises ``ConfigError`` naming ``model.backbone`` for anything unusable.
    """
    spec = str(spec).strip()
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    if not spec:
        raise ConfigError("model.backbone is empty: name a keras.applications model (e.g. MobileNetV3Small), a .keras file or a dlw run folder")
    if spec in APPLICATIONS:
        app = APPLICATIONS[spec]
        height, width = _size_pair(size, app)
        return BackboneSpec(
            kind="application",
            name=spec,
            input_shape=(height, width, app.channels),
            input_dtype="float32",
            application=app,
            weights=_resolve_weights(weights, base, spec),
            layer=layer,
        )

    path = Path(spec).expanduser()
    if not path.is_absolute():
        path = base / path
    if path.exists():
        if weights is not None:
            raise ConfigError(
                f"model.backbone_weights is only for keras.applications backbones; '{spec}' is a saved model that has its weights: remove model.backbone_weights"
            )
        if size is not None:
            raise ValueError("size is only for keras.applications backbones: a saved model's input size is its own")
        model_file = _model_file(path, spec)
        shape, dtype = _file_input(model_file)
        return BackboneSpec(kind="file", name=spec, input_shape=shape, input_dtype=dtype, path=model_file, weights=None, layer=layer)

    if _looks_like_path(spec):
        raise ConfigError(f"model.backbone '{spec}' does not exist (looked for {path}): give a .keras file or a dlw run folder, or a keras.applications name")
    lowered = {name.lower(): name for name in APPLICATIONS}
    close = [lowered[spec.lower()]] if spec.lower() in lowered else difflib.get_close_matches(spec, list(APPLICATIONS), n=1, cutoff=0.6)
    hint = f"did you mean '{close[0]}'? " if close else ""
    raise ConfigError(
        f"model.backbone '{spec}' is neither a supported keras.applications name (names are case-sensitive) nor an existing file: "
        f"{hint}supported: {', '.join(APPLICATIONS)}"
    )


def _looks_like_path(spec: str) -> bool:
    return "/" in spec or "\\" in spec or spec.startswith(".") or spec.endswith((".keras", ".h5"))


def _size_pair(size, app: Application) -> tuple[int, int]:
    if size is None:
        return app.size, app.size
    height, width = (size, size) if isinstance(size, int) else tuple(size)
    if min(height, width) < app.min_size:
        raise ConfigError(f"model.backbone {app.name} needs images of at least {app.min_size}x{app.min_size} pixels; got {height}x{width}")
    return int(height), int(width)


def _resolve_weights(weights, base: Path, name: str):
    if weights is None or str(weights).lower() == "imagenet":
        return "imagenet"
    if str(weights).lower() in ("random", "none"):
        return None
    path = Path(str(weights)).expanduser()
    if not path.is_absolute():
        path = base / path
    if not path.is_file():
        raise ConfigError(
            f"model.backbone_weights '{weights}' does not exist (looked for {path}): give a .weights.h5 or .h5 file saved from {name} with include_top=False"
        )
    return path


def _model_file(path: Path, spec: str) -> Path:
    if path.is_dir():
        model_file = path / "model.keras"
        if not model_file.is_file():
            raise ConfigError(f"model.backbone '{spec}' is a folder without model.keras: give a dlw run folder or a .keras file")
        return model_file
    if path.suffix != ".keras":
        raise ConfigError(f"model.backbone '{spec}' is not a .keras file: save the model with model.save('name.keras'), or give a dlw run folder")
    return path


def _file_input(model_file: Path) -> tuple[tuple[int, int, int], str]:
    """The (height, width, channels) and dtype a saved ``.keras`` model takes, read from its config."""
    try:
        with zipfile.ZipFile(model_file) as archive:
            config = json.loads(archive.read("config.json"))
    except (zipfile.BadZipFile, KeyError, OSError, ValueError) as error:
        raise ConfigError(f"model.backbone '{model_file}' is not a readable .keras file ({error}): save it again with model.save('name.keras')") from None
    shape = dtype = None
    inner = config.get("config", {})
    names = inner.get("input_layers")
    if names and isinstance(names[0], list):
        if len(names) != 1:
            raise ConfigError(f"model.backbone '{model_file}' has {len(names)} inputs: a backbone must take one image input")
        names = names[0]
    for layer in inner.get("layers", []):
        if layer.get("class_name") == "InputLayer" and (names is None or layer.get("config", {}).get("name") == names[0]):
            shape = layer["config"].get("batch_shape")
            dtype = layer["config"].get("dtype")
            break
    if shape is None and inner.get("build_input_shape"):
        shape = inner["build_input_shape"]
    if isinstance(dtype, dict):  # a serialized DTypePolicy
        dtype = dtype.get("config", {}).get("name")
    if shape is None or len(shape) != 4 or any(d is None for d in shape[1:]):
        raise ConfigError(f"model.backbone '{model_file}' does not take images of a fixed size (its input is {shape}): a backbone must take (height, width, channels) images")
    return tuple(int(d) for d in shape[1:]), str(dtype or "float32")


# --- ImageNet weights from the Keras cache, never downloaded -------------------------------


@dataclass
class WeightsFile:
    """The ImageNet weights file a keras.applications constructor asks for."""

    fname: str
    folder: Path
    origin: str
    file_hash: str | None = None
    present: bool = False
    corrupt: bool = False

    @property
    def path(self) -> Path:
        return self.folder / self.fname


class _WeightsRequest(Exception):
    def __init__(self, weights: WeightsFile):
        super().__init__(weights.fname)
        self.weights = weights


def _cache_folder(cache_dir, cache_subdir) -> Path:
    """Where ``keras.utils.get_file`` keeps a file (its own rule: KERAS_HOME, else /tmp/.keras if unwritable)."""
    from keras.src.backend import config

    base = os.path.expanduser(cache_dir if cache_dir is not None else config.keras_home())
    if not os.access(base, os.W_OK):
        base = os.path.join("/tmp", ".keras")
    return Path(base) / cache_subdir


@contextlib.contextmanager
def _cache_only(capture: bool = False):
    """Replace ``keras.utils.get_file`` with a cache lookup that never downloads.

    Inside, a file that is in the cache (with a matching hash) is returned as
    ``get_file`` would; otherwise, or always when ``capture``, ``_WeightsRequest``
    is raised with the file name, folder and URL Keras asked for.
    The applications call ``file_utils.get_file`` through the module, so
    replacing the module attribute reaches them; it is restored on exit.
    """
    from keras.src.utils import file_utils

    original = file_utils.get_file
    signature = inspect.signature(original)

    def get_file(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        a = bound.arguments
        if a["extract"] or a["untar"]:  # not a weights file: not ours to judge
            return original(*args, **kwargs)
        fname = str(a["fname"] or os.path.basename(a["origin"] or ""))
        folder = _cache_folder(a["cache_dir"], a["cache_subdir"])
        file_hash = a["file_hash"] or a["md5_hash"]
        request = WeightsFile(fname=fname, folder=folder, origin=str(a["origin"]), file_hash=file_hash)
        target = folder / fname
        request.present = target.is_file()
        if request.present and file_hash and not capture:
            algorithm = "md5" if a["md5_hash"] and not a["file_hash"] else a["hash_algorithm"]
            request.corrupt = not file_utils.validate_file(str(target), file_hash, algorithm=algorithm)
        if capture or not request.present or request.corrupt:
            raise _WeightsRequest(request)
        return str(target)

    file_utils.get_file = get_file
    try:
        yield
    finally:
        file_utils.get_file = original


def _download_hint(spec: BackboneSpec) -> str:
    app = spec.application
    shape = ""
    if spec.input_shape[:2] != (app.size, app.size):
        shape = f", input_shape={tuple(spec.input_shape)}"
    return f"import keras; keras.applications.{app.name}(weights='imagenet', include_top=False{shape})"


def _missing_weights_error(spec: BackboneSpec, w: WeightsFile) -> ConfigError:
    what = f"{w.fname} in {w.folder} is incomplete or corrupt (its hash does not match): delete it, then" if w.corrupt else f"{w.fname} is missing from {w.folder};"
    return ConfigError(
        f"model.backbone '{spec.name}': ImageNet weights not in the Keras cache: {what} "
        f"on a machine with internet run `python -c \"{_download_hint(spec)}\"` and copy {w.path} here, "
        f"or download {w.origin} into {w.folder}, or set model.backbone_weights: <path to the file>"
    )


def imagenet_weights_file(spec: BackboneSpec) -> WeightsFile:
    """The ImageNet weights file ``spec``'s constructor wants, and whether it is cached; nothing is downloaded.

    Builds the architecture (without weights) to learn the exact file name, which
    depends on the model and its options (e.g. MobileNetV2's input size).
    """
    if spec.kind != "application":
        raise ValueError("only keras.applications backbones have ImageNet weights")
    try:
        with _cache_only(capture=True):
            _construct(spec, "imagenet")
    except _WeightsRequest as request:
        return request.weights
    raise RuntimeError(f"{spec.name} asked for no weights file")  # pragma: no cover


def _construct(spec: BackboneSpec, weights):
    # Keep the constructor's own model name: EfficientNet derives its weights file
    # name from it, and ConvNeXt refuses ImageNet weights under another name.
    try:
        return spec.application.constructor()(include_top=False, weights=weights, input_shape=tuple(spec.input_shape))
    except ValueError as error:  # e.g. NASNet's ImageNet weights exist for its own input size only
        size = "x".join(str(v) for v in spec.input_shape[:2])
        raise ConfigError(f"model.backbone '{spec.name}' cannot be built for {size} images ({_first_sentence(error)})") from None


def _load_application(spec: BackboneSpec):
    """The application without its top, with the weights ``spec`` asks for (never downloaded)."""
    if spec.weights == "imagenet":
        try:
            with _cache_only():
                return _construct(spec, "imagenet")
        except _WeightsRequest as request:
            raise _missing_weights_error(spec, request.weights) from None
    model = _construct(spec, None)
    if spec.weights is not None:
        _load_weights_file(model, Path(spec.weights), spec.name)
    return model


def _load_weights_file(model, path: Path, name: str) -> None:
    import warnings

    if not str(path).endswith((".h5", ".hdf5", ".keras", ".weights.json")):
        raise ConfigError(f"model.backbone_weights '{path}' is not a Keras weights file: give a .weights.h5 or .h5 file saved from {name} with include_top=False")
    try:
        with warnings.catch_warnings():
            # Keras raises on a mismatch, after one warning per skipped layer: keep the console clean.
            warnings.simplefilter("ignore")
            model.load_weights(str(path))
    except Exception as error:  # noqa: BLE001 - any failure here means: not this architecture's weights
        raise ConfigError(
            f"model.backbone_weights '{path}' does not fit {name} without its top ({_first_sentence(error)}): "
            f"give the weights of keras.applications.{name}(include_top=False) saved with save_weights"
        ) from None


def _first_sentence(error: Exception, limit: int = 160) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    end = text.find(". ")
    text = text[: end if 0 < end else len(text)].rstrip(".:")
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --- cutting a saved model ---------------------------------------------------------------


def _layer_names_hint(model, count: int = 8) -> str:
    names = [layer.name for layer in model.layers]
    return ", ".join(names[-count:])


def _cut(model, spec: BackboneSpec):
    """``model`` up to ``spec.layer`` or the layer before its classifier, as a new Model named ``backbone``."""
    import keras

    if len(model.inputs) != 1:
        raise ConfigError(f"model.backbone '{spec.name}' has {len(model.inputs)} inputs: a backbone must take one image input")
    if spec.layer is not None:
        names = [layer.name for layer in model.layers]
        if spec.layer not in names:
            close = difflib.get_close_matches(spec.layer, names, n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise ConfigError(
                f"model.backbone_layer '{spec.layer}' is not a layer of {spec.name}: {hint}its last layers are {_layer_names_hint(model)}"
            )
        layer = model.get_layer(spec.layer)
        try:
            output = layer.output
        except (AttributeError, ValueError):
            raise ConfigError(f"model.backbone_layer '{spec.layer}' is used more than once in {spec.name}: name another layer") from None
        cut_name = layer.name
    elif spec.kind == "application":
        output, cut_name = model.outputs[0], model.layers[-1].name
    else:
        names = [layer.name for layer in model.layers]
        classifier = model.get_layer("output") if "output" in names else model.layers[-1]
        output = classifier.input
        if isinstance(output, (list, tuple)):
            raise ConfigError(
                f"model.backbone '{spec.name}': its last layer '{classifier.name}' has several inputs: set model.backbone_layer (its last layers are {_layer_names_hint(model)})"
            )
        producer = getattr(output, "_keras_history", None)
        cut_name = producer[0].name if producer else classifier.name
    spec.cut_layer = cut_name
    if output is model.outputs[0]:
        return model
    return keras.Model(model.inputs, output, name=f"{model.name}_cut")


def load_backbone(spec: BackboneSpec):
    """The backbone model for ``spec``: built (applications) or loaded with ``safe_mode=True`` (files), then cut."""
    import keras

    if spec.kind == "application":
        return _cut(_load_application(spec), spec)
    import dlw.layers  # noqa: F401  (a dlw run's model names dlw's own layers, e.g. its calibration)

    try:
        model = keras.models.load_model(spec.path, compile=False, safe_mode=True)
    except Exception as error:  # noqa: BLE001 - a file Keras cannot load is the user's to fix
        raise ConfigError(f"model.backbone '{spec.name}' cannot be loaded by Keras ({_first_sentence(error)}): give a .keras file saved by Keras 3 or a dlw run folder") from None
    return _cut(model, spec)


# --- the full model -------------------------------------------------------------------------


def preprocessing_layers(mode: str, prefix: str = "preprocess") -> list:
    """Built-in Keras layers doing ``keras.applications`` ``preprocess_input`` in ``mode`` on 0-255 RGB images."""
    import keras
    import numpy as np

    if mode == "tf":
        return [keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name=f"{prefix}_scale")]
    if mode == "torch":
        return [
            keras.layers.Rescaling(1.0 / 255, name=f"{prefix}_scale"),
            keras.layers.Normalization(mean=list(TORCH_MEAN), variance=[s * s for s in TORCH_STD], name=f"{prefix}_normalize"),
        ]
    if mode == "caffe":
        # RGB -> BGR and minus the BGR mean, as one fixed linear map of the channels:
        # output channel j = input channel (2 - j) - mean_bgr[j]. A frozen Dense on
        # the last axis with a permutation kernel is exact (products by 1 and 0).
        permute = np.eye(3, dtype="float32")[::-1].copy()
        bias = -np.asarray(CAFFE_MEAN_BGR, dtype="float32")
        return [
            keras.layers.Dense(
                3,
                kernel_initializer=keras.initializers.Constant(permute.tolist()),
                bias_initializer=keras.initializers.Constant(bias.tolist()),
                trainable=False,
                name=f"{prefix}_rgb_to_bgr_minus_mean",
            )
        ]
    if mode == "none":
        return []
    raise ValueError(f"unknown preprocessing mode {mode!r}; one of {PREPROCESSING_MODES}")


def check_channels(spec: BackboneSpec, channels: int) -> None:
    """Refuse images whose channels the backbone cannot take, naming the key to change."""
    want_c = spec.input_shape[2]
    if channels not in (1, 3):
        raise ConfigError(f"data.channels: images have {channels} channels; a pretrained backbone takes 1 (grey) or 3 (colour)")
    if want_c == 1 and channels == 3:
        raise ConfigError(f"model.backbone '{spec.name}' takes grey images (1 channel): set data.channels: 1")
    if want_c not in (1, 3):
        raise ConfigError(f"model.backbone '{spec.name}' takes images of {want_c} channels: dlw gives it 1 or 3")


def build_pretrained(
    backbone_spec: BackboneSpec,
    input_shape: tuple[int, int, int],
    objective: Objective,
    dense_layers=(128,),
    dropout: float = 0.3,
    freeze: bool = True,
    augment_layers=(),
):
    """Build (but do not compile) the transfer-learning model; return ``(model, backbone)``.

    ``input_shape`` is the data's (height, width, channels); images of another
    size than the backbone's are resized inside the model, grey images get their
    channel repeated to RGB. ``freeze`` makes the backbone untrainable and calls
    it with ``training=False`` (so its batch normalization stays in inference mode
    even when ``unfreeze_top`` later makes its top layers trainable).
    """
    import keras

    spec = backbone_spec
    height, width, channels = (int(v) for v in input_shape)
    want_h, want_w, want_c = spec.input_shape
    check_channels(spec, channels)
    backbone = load_backbone(spec)
    if freeze:
        backbone.trainable = False

    inputs = keras.Input(shape=(height, width, channels), dtype="uint8", name="image")
    x = inputs
    changed = False  # a layer before the backbone made the pixels float
    for layer in augment_layers:
        x = layer(x)
        changed = True
    if (height, width) != (want_h, want_w):
        x = keras.layers.Resizing(want_h, want_w, name="resize")(x)
        changed = True
    if channels == 1 and want_c == 3:
        x = keras.layers.Concatenate(axis=-1, name="grey_to_rgb")([x, x, x])
        changed = True
    for layer in preprocessing_layers(spec.preprocessing):
        x = layer(x)
    if changed and "int" in spec.input_dtype:
        # The backbone casts its input to its integer dtype, which truncates:
        # + 0.5 makes that rounding for these non-negative pixels.
        x = keras.layers.Rescaling(1.0, offset=0.5, name="round_pixels")(x)
    x = backbone(x, training=False) if freeze else backbone(x)

    if len(x.shape) == 4:
        x = keras.layers.GlobalAveragePooling2D(name="features")(x)
    elif len(x.shape) == 3:
        x = keras.layers.GlobalAveragePooling1D(name="features")(x)
    elif len(x.shape) != 2:
        x = keras.layers.Flatten(name="features")(x)
    from dlw.models.cnn import dense_head

    outputs = dense_head(x, objective, dense_layers, dropout, prefix="head_")
    return keras.Model(inputs=inputs, outputs=outputs, name="dlw_pretrained"), backbone


# --- phase two, and the console line ---------------------------------------------------------


def _leaf_layers(model):
    for layer in model.layers:
        if hasattr(layer, "layers") and layer.layers:  # a nested model: its own layers, in order
            yield from _leaf_layers(layer)
        else:
            yield layer


def unfreeze_top(backbone, layers: int) -> int:
    """Make the top ``layers`` layers of ``backbone`` trainable (phase two of transfer learning).

    Counted from the top among layers that have weights, skipping batch
    normalization, which stays frozen (and in inference mode). Every other layer
    is frozen. Returns how many layers are now trainable. The caller recompiles
    with the lower learning rate and trains again.
    """
    import keras

    backbone.trainable = True
    left = max(0, int(layers))
    trainable = 0
    for layer in reversed(list(_leaf_layers(backbone))):
        if isinstance(layer, keras.layers.BatchNormalization) or not layer.weights or left == 0:
            layer.trainable = False
            continue
        layer.trainable = True
        left -= 1
        trainable += 1
    return trainable


def _count(n: int) -> str:
    if n >= 100_000:
        return f"{n / 1e6:.1f}M"
    if n >= 1_000:
        return f"{n / 1e3:.1f}k"
    return str(n)


def _weights_count(weights) -> int:
    import math

    return sum(math.prod(w.shape) for w in weights)


def describe(model, backbone, spec: BackboneSpec, dense_layers=(128,), freeze: bool = True) -> str:
    """One line for the console, e.g. ``pretrained ResNet50 (ImageNet), frozen, + Dense 128 head; 23.6M parameters, 0.3M trainable``."""
    where = f", cut at '{spec.cut_layer}'" if spec.kind == "file" or spec.layer else ""
    source = "ImageNet" if spec.kind == "application" and spec.weights == "imagenet" else spec.weights_label
    if spec.kind == "file":
        source = "saved model"
    trainable_layers = sum(1 for layer in _leaf_layers(backbone) if layer.trainable and layer.weights) if backbone.trainable else 0
    state = "frozen" if not backbone.trainable else ("trainable" if not freeze else f"top {trainable_layers} layers trainable")
    head = " + ".join(f"Dense {u}" for u in dense_layers) if dense_layers else "no Dense"
    total = _weights_count(model.weights)
    trainable = _weights_count(model.trainable_weights)
    return f"pretrained {spec.name} ({source}{where}), {state}, + {head} head; {_count(total)} parameters, {_count(trainable)} trainable"

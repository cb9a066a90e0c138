"""Steps 1-3 for images: find the images and labels, decide size and channels, split, load.

``ImagePrepared`` is the images' side of the seam (``dlw.data.prepared``): its inputs
are uint8 arrays (n, height, width, channels) in memory, or ``ImageStream``s that decode
batches from disk.

An image run's ``schema.json`` holds ``"inputs": "images"`` with the size and
channels every image is decoded to, so prediction decodes new images the same
way. Images are decoded once into memory when the decoded set fits
``data.cache_mb``; otherwise each split streams from disk through a
``keras.utils.PyDataset`` that decodes batches in worker processes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from dlw.config import Config
from dlw.console import QUIET, Console
from dlw.data import images as img
from dlw.data.prepared import SPLITS, Prepared
from dlw.data.splits import make_splits
from dlw.errors import ConfigError, DataError
from dlw.problem import Problem, encode_target, formulate
from dlw.runs import json_text, write_atomic

# Images larger than this (on their longer side) are scaled down by default: a CNN
# from scratch on a CPU gains little from more pixels and pays for each one.
DEFAULT_MAX_SIZE = 128
# The pixel baseline sees images at most this size (logistic regression on raw pixels).
BASELINE_SIZE = 16
BASELINE_MAX_TRAIN = 5000


@dataclass
class ImageSchema:
    """How images are turned into model input: decoded to ``size`` with ``channels``."""

    target: str
    size: list[int]  # [height, width]
    channels: int
    source_kind: str  # folder | csv | builtin
    image_column: str | None = None
    class_counts: dict = field(default_factory=dict)
    features: list = field(default_factory=list)  # no table features; kept for code that lists them
    excluded: dict = field(default_factory=dict)

    inputs = "images"

    @property
    def shape(self) -> tuple[int, int, int]:
        return (int(self.size[0]), int(self.size[1]), int(self.channels))

    def to_dict(self) -> dict:
        data = asdict(self)
        data.pop("features"), data.pop("excluded")
        return {"inputs": "images", **data}

    @classmethod
    def from_dict(cls, data: dict) -> "ImageSchema":
        keys = ("target", "size", "channels", "source_kind", "image_column", "class_counts")
        return cls(**{k: data[k] for k in keys if k in data})

    def save(self, path: Path, extra: dict | None = None) -> None:
        write_atomic(Path(path), json_text({**self.to_dict(), **(extra or {})}))


def origin_of(config: Config) -> str:
    return "built-in 'digits'" if config.data.source == "digits" else config.data.source


def find_images(config: Config, labelled: bool = True) -> img.ImageSet:
    """Step 1: the images (and labels) the config points at, with unusable files set aside."""
    data = config.data
    if data.source == "digits":
        return img.digits()
    path = Path(data.source)
    if path.is_dir():
        found = img.scan_folder(path, labelled=labelled)
    else:
        found = img.read_path_csv(path, data.image_column, data.target if labelled else None, labelled=labelled)
    return img.check_images(found, workers=data.workers)


def image_problem(images: img.ImageSet, config: Config) -> Problem:
    """Classes from folder names (always classification), or the CSV's label column (any task)."""
    origin = images.origin
    target = config.data.target or "label"
    if images.kind == "csv":
        frame = pd.DataFrame({target: images.labels})
        return formulate(frame, target, config.task, origin)
    classes = images.classes()
    if config.task == "regression":
        raise ConfigError(f"{origin}: task: regression needs numbers to predict; a folder of class subfolders is a classification")
    task = "binary" if len(classes) == 2 else "multiclass"
    if config.task not in ("auto", task):
        raise ConfigError(f"{origin}: task: {config.task} but the folder has {len(classes)} classes; use task: auto")
    return Problem(task, target, classes, f"{len(classes)} class folders" if images.kind == "folder" else f"{len(classes)} classes")


def choose_shape(images: img.ImageSet, config: Config, console: Console, backbone_shape=None) -> tuple[list[int], int, str]:
    """Image size and channels from the config, a backbone's input, or the data; and a note on why."""
    data = config.data
    stats = img.probe(images)
    channels = data.channels or stats.channels
    if backbone_shape is not None:  # a saved model as backbone: its input decides
        h, w, c = backbone_shape
        if data.image_size and list(data.image_size) != [h, w]:
            console.warn(f"data.image_size {data.image_size} ignored: the backbone takes {h}x{w} images")
        return [int(h), int(w)], int(c), "the backbone's input"
    if data.image_size:
        return list(data.image_size), channels, "data.image_size"
    h, w = stats.size
    scale = min(1.0, DEFAULT_MAX_SIZE / max(h, w))
    size = [max(4, int(round(h * scale))), max(4, int(round(w * scale)))]
    why = f"median image size {h}x{w}" + (f", scaled to at most {DEFAULT_MAX_SIZE}" if scale < 1 else "")
    return size, channels, why


def load_arrays(images: img.ImageSet, size, channels: int, workers: int | None) -> tuple[np.ndarray, list[int]]:
    """Every image decoded into one uint8 array; and the positions that failed to decode."""
    if images.arrays is not None:
        return img.resize_array(images.arrays, tuple(size), channels), []
    arrays, failed = img.decode_many(images.paths, tuple(size), channels, workers=workers)
    return arrays, [index for index, _, _ in failed]


def drop_items(images: img.ImageSet, positions: list[int], reasons: dict[int, str]) -> img.ImageSet:
    keep = np.setdiff1d(np.arange(len(images)), positions)
    skipped = list(images.skipped) + [(images.paths[i], reasons.get(i, "cannot be decoded")) for i in positions]
    return img.ImageSet(
        origin=images.origin,
        paths=[images.paths[i] for i in keep],
        labels=None if images.labels is None else [images.labels[i] for i in keep],
        arrays=None if images.arrays is None else images.arrays[keep],
        skipped=skipped,
        kind=images.kind,
    )


def stream(paths, labels, schema: ImageSchema, config: Config, batch_size: int, shuffle: bool, seed: int):
    from dlw.data.image_stream import ImageStream

    workers = config.data.workers or _cores()
    return ImageStream(
        list(paths), labels, tuple(schema.size), schema.channels, batch_size, shuffle=shuffle, seed=seed, workers=workers
    )


def _cores() -> int:
    import os

    return os.cpu_count() or 1


def pixel_features(inputs, channels: int) -> np.ndarray:
    """Raw pixels scaled down to at most 16x16, flattened and scaled to [0, 1], for the pixel baseline."""
    if isinstance(inputs, np.ndarray):
        h, w = inputs.shape[1:3]
        size = (min(h, BASELINE_SIZE), min(w, BASELINE_SIZE))
        small = inputs if (h, w) == size else img.resize_array(inputs, size, channels)
    else:  # a stream: decode its files again, small
        h, w = inputs.size
        size = (min(h, BASELINE_SIZE), min(w, BASELINE_SIZE))
        small, _ = img.decode_many(list(inputs.paths), size, channels)
    return small.reshape(len(small), -1).astype("float32") / 255.0


def describe_images(images: img.ImageSet, problem: Problem) -> str:
    counts = pd.Series(images.labels).value_counts() if images.labels is not None else pd.Series(dtype=int)
    if problem.is_classification and len(counts):
        shown = ", ".join(f"{k} {v}" for k, v in list(counts.sort_index().items())[:8])
        more = ", ..." if len(counts) > 8 else ""
        return f"{len(images)} images in {len(counts)} classes ({shown}{more})"
    return f"{len(images)} images"


def say_skipped(images: img.ImageSet, console: Console) -> None:
    summary = images.skipped_summary()
    if summary:
        console.warn(f"{images.origin}: {summary}")


@dataclass
class ImagePrepared(Prepared):
    """Images as the seam sees them; ``config`` gives streamed splits their batch size, workers and seed."""

    images: Any = None  # the ImageSet found in step 1

    kind: ClassVar[str] = "images"
    noun: ClassVar[str] = "image"
    baseline_names: ClassVar[tuple[str, ...]] = ("trivial", "logistic_pixels")
    # The pixel block's dimensions share one scale, like the penultimate layer's.
    shared_detector_blocks: ClassVar[tuple[str, ...]] = ("penultimate", "inputs")

    @property
    def streamed(self) -> bool:
        return not isinstance(self.inputs["train"], np.ndarray)

    def take(self, inputs, rows: np.ndarray):
        if isinstance(inputs, np.ndarray):
            return inputs[rows]
        tc = self.config.train
        return stream([inputs.paths[i] for i in rows], None, self.schema, self.config, tc.batch_size, False, tc.seed)

    def predict_raw(self, model, inputs) -> np.ndarray:
        if isinstance(inputs, np.ndarray):
            return model.predict(inputs, batch_size=256, verbose=0)
        return model.predict(inputs, verbose=0)  # a stream: its own batches

    def baseline_features(self, inputs) -> np.ndarray:
        return pixel_features(inputs, self.schema.channels)

    def baseline_training_set(self, features=None) -> tuple[np.ndarray, np.ndarray]:
        x, y = super().baseline_training_set(features)
        if len(x) > BASELINE_MAX_TRAIN:  # logistic regression on pixels: a sample is enough
            keep = np.random.default_rng(0).choice(len(x), BASELINE_MAX_TRAIN, replace=False)
            x, y = x[keep], y[keep]
        return x, y

    def fit_data(self, split: str, config, *, shuffle: bool, seed: int, rows: np.ndarray | None = None):
        x, y = self.inputs[split], self.training_targets(split)
        if rows is not None:
            y = y[rows]
        if isinstance(x, np.ndarray):
            return (x if rows is None else x[rows]), y
        paths = list(x.paths) if rows is None else [x.paths[i] for i in rows]
        return stream(paths, y, self.schema, config, config.train.batch_size, shuffle, seed), None

    def first_images(self, split: str, n: int) -> np.ndarray:
        """The first ``n`` images of ``split`` as a uint8 array (decoded now when the split is streamed)."""
        x = self.inputs[split]
        if isinstance(x, np.ndarray):
            return x[:n]
        arrays, _ = img.decode_many(list(x.paths[:n]), tuple(self.schema.size), self.schema.channels)
        return arrays[:n]

    def explain(self, model, folder: Path, seed: int) -> dict:
        from dlw.explain import image_occlusion

        return {"occlusion": image_occlusion(model, self, folder)}

    def encode_new(self, source, console: Console, origin: str):
        """New images (a folder, a CSV of paths, one file or a list of paths) to ``(paths, arrays, failed positions, origin)``."""
        found = images_for_prediction(source, self.schema, self.config.data.workers, console)
        arrays, failed = decode_for_model(found, self.schema, self.config.data.workers)
        return pd.DataFrame({"path": found.paths}), arrays, failed, found.origin

    def encode_labelled(self, data, console: Console) -> tuple[np.ndarray, np.ndarray]:
        """New labelled images (a class-folder tree or a CSV of paths and labels), decoded for the model."""
        config = self.config.model_copy(deep=True)
        config.data.source = str(Path(data).resolve())
        found = find_images(config)
        say_skipped(found, console)
        arrays, failed = decode_for_model(found, self.schema, self.config.data.workers)
        keep = np.setdiff1d(np.arange(len(found)), failed)
        labels = pd.Series([found.labels[i] for i in keep], name=self.problem.target)
        return arrays[keep], encode_target(labels, self.problem, found.origin)


def decoded_images(config: Config, images: img.ImageSet, size, channels: int, console: Console):
    """The images decoded into memory when they fit ``data.cache_mb`` (else None), and the images that remain."""
    data = config.data
    if images.arrays is None and not img.cache_fits(len(images), tuple(size), channels, data.cache_mb):
        return None, images
    arrays, failed = load_arrays(images, size, channels, data.workers)
    if failed:
        images = drop_items(images, failed, {})
        arrays = np.delete(arrays, failed, axis=0)
        console.warn(f"{images.origin}: {len(failed)} image(s) could not be decoded and were left out, e.g. {Path(images.skipped[-1][0]).name}")
    return arrays, images


def prepare_images(config: Config, console: Console = QUIET, schema: ImageSchema | None = None, backbone_shape=None) -> ImagePrepared:
    """Steps 1-3 for images; the same ``Prepared`` seam as tables, with image arrays or streams as inputs."""
    data = config.data
    if data.split.order != "random":
        kind = "a chronological split" if data.split.time_column else "a split by group"
        raise ConfigError(f"{origin_of(config)}: key 'data.split.order': {kind} needs a table with that column, not images; remove the key")
    images = find_images(config)
    problem = image_problem(images, config)
    console.step(1, f"problem: {problem.question.replace('a row', 'an image')}  [{problem.task}: {problem.reason}]")
    say_skipped(images, console)
    if schema is None:
        size, channels, why = choose_shape(images, config, console, backbone_shape)
    else:
        size, channels, why = list(schema.size), schema.channels, "the run's schema"
    arrays, decoded = decoded_images(config, images, size, channels, console)
    if decoded is not images:
        images, problem = decoded, image_problem(decoded, config)
    labels = encode_target(pd.Series(images.labels, name=problem.target), problem, images.origin)
    if schema is None:
        counts = pd.Series(images.labels).value_counts().sort_index()
        schema = ImageSchema(
            problem.target, size, channels, images.kind, data.image_column,
            {str(k): int(v) for k, v in counts.items()} if problem.is_classification else {},
        )
    console.step(2, f"inputs: {describe_images(images, problem)}, decoded to {size[0]}x{size[1]}x{channels} ({why}); output: {problem.target!r}")
    return split_images(config, console, images=images, arrays=arrays, labels=labels, problem=problem, schema=schema)


def split_images(config: Config, console: Console, *, images, arrays, labels, problem: Problem, schema: ImageSchema) -> ImagePrepared:
    """Step 3 for images: the seeded split, and each split's arrays (or stream)."""
    from dlw.data.tables import target_scaling

    split = config.data.split
    strat = labels if problem.is_classification and split.stratify else None
    splits = make_splits(np.arange(len(images)), strat, split.validation, split.test, split.seed, images.origin, problem.classes)
    inputs, targets = {}, {}
    for name in SPLITS:
        rows = getattr(splits, name)
        targets[name] = labels[rows]
        if arrays is not None:
            inputs[name] = arrays[rows]
        else:
            inputs[name] = stream(
                [images.paths[i] for i in rows], None, schema, config, config.train.batch_size, False, config.train.seed
            )
    how = "in memory" if arrays is not None else f"streamed from disk (decoded set larger than data.cache_mb = {config.data.cache_mb} MiB)"
    sizes = ", ".join(f"{name} {len(getattr(splits, name))}" for name in SPLITS)
    console.step(3, f"data: {len(images)} images, {how}; {splits.method} split: {sizes}")
    notes = [f"{len(images.skipped)} file(s) left out: {images.skipped_summary()}"] if images.skipped else []
    scaling = target_scaling(problem, targets, config.data.target_transform)
    return ImagePrepared(images.frame(), problem, schema, splits, inputs, targets, scaling, 0, notes, config=config, images=images)


def images_for_prediction(source, schema: ImageSchema, workers: int | None = None, console: Console = QUIET):
    """New images to predict: a folder (nested or flat), a CSV of paths, one image file or a list of paths."""
    if isinstance(source, (list, tuple)):
        found = img.ImageSet(origin="paths", paths=[str(Path(p).resolve()) for p in source], labels=None, arrays=None, skipped=[], kind="list")
    else:
        path = Path(source)
        if not path.exists():
            raise DataError(f"{path}: not found; pass a folder of images, a CSV with a column of image paths, or an image file")
        if path.is_dir():
            found = img.scan_folder(path, labelled=False)
        elif path.suffix.lower() in img.IMAGE_SUFFIXES:
            found = img.ImageSet(origin=str(path), paths=[str(path.resolve())], labels=None, arrays=None, skipped=[], kind="list")
        else:
            found = img.read_path_csv(path, schema.image_column, None, labelled=False)
    found = img.check_images(found, workers=workers)
    say_skipped(found, console)
    if not len(found):
        raise DataError(f"{found.origin}: no image could be read")
    return found


def decode_for_model(found: img.ImageSet, schema: ImageSchema, workers: int | None = None):
    """Decoded uint8 images for ``found`` (zeros where decoding failed) and the failed positions."""
    if found.arrays is not None:
        return img.resize_array(found.arrays, tuple(schema.size), schema.channels), []
    arrays, failed = img.decode_many(found.paths, tuple(schema.size), schema.channels, workers=workers)
    return arrays, [index for index, _, _ in failed]

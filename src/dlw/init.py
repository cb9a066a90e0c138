"""``dlw init``: steps 1-2 on a new table or image folder, written down as a commented config to edit."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pandas as pd

from dlw.config import Config, DataConfig
from dlw.spec import load_spec
from dlw.data.builtin import BUILTINS, IMAGE_BUILTINS
from dlw.errors import DlwError
from dlw.schema import Schema, category_strings
from dlw.data.tables import data_origin, load_labelled, log_target_refusal
from dlw.models import input_kind


def write_config(data: str, target: str | None, output: Path | None = None) -> str:
    """A commented YAML config for ``data``: what was inferred, and every key at its default."""
    if data not in (*BUILTINS, *IMAGE_BUILTINS) and Path(data).suffix.lower() in (".yaml", ".yml"):
        raise DlwError(f"{data}: is already a config; `dlw init` takes a data file (CSV/Parquet) or a built-in name")
    spec = load_spec(data, target)
    if input_kind(spec) == "images":
        return _image_config(data, spec, output)
    frame, labelled, dropped, problem = load_labelled(spec)
    schema = Schema.infer(labelled, spec.data.target, origin=data_origin(spec)).fit(labelled)
    source = data if data in BUILTINS else _relative_source(Path(data), output)
    defaults = Config(data=DataConfig(source=source, target=spec.data.target))

    lines = [
        f"# dlw config for {data}, written by `dlw init` on {time.strftime('%Y-%m-%d')}.",
        f"# {len(frame)} rows, {frame.shape[1]} columns"
        + (f"; {dropped} row(s) with a missing target will be dropped." if dropped else "."),
        f"# Step 1, the problem: {problem.question}",
        f"#   task inferred: {problem.task} ({problem.reason}).",
        "# Every key below is at its default; edit what you need. `dlw schema` documents them all.",
        f"name: {spec.name}",
        "data:",
        f"  source: {_scalar(source)}    # a CSV/Parquet path (relative to this file) or a built-in name",
        f"  target: {_scalar(spec.data.target)}",
        "  # Step 2, the inputs dlw inferred (set data.types to change one, data.features to choose):",
    ]
    for f in schema.features:
        lines.append(f"  #   {f.name}: {f.kind}{_describe(f, labelled)}")
    for name, reason in schema.excluded.items():
        lines.append(f"  #   {name}: not used, {reason}")
    lines += [
        "  features: null    # null = every usable column; or a list of column names",
        "  types: {}         # e.g. {zip_code: categorical, notes: ignore}",
        *_target_transform_lines(problem, labelled[spec.data.target]),
        "  split:",
        f"    validation: {defaults.data.split.validation}",
        f"    test: {defaults.data.split.test}         # held out: used only for the final measurement",
        f"    seed: {defaults.data.split.seed}",
        f"    stratify: {str(defaults.data.split.stratify).lower()}      # keep class proportions in every split",
        "    order: random      # or time:<column> for a chronological split, group:<column> to test on groups never seen",
        f"task: auto    # inferred: {problem.task}",
        "model:",
        "  kind: auto         # tabm, dlw's default for tables; mlp is the lesson's plain MLP",
        "  hidden_layers: null    # null: [128, 128] (tabm), [64, 32] (mlp)",
        "  dropout: null          # null: 0 (tabm), 0.1 (mlp)",
        f"  activation: {defaults.model.activation}",
        *_train_lines(defaults),
        "loss: auto       # or a Keras loss name",
        "metrics: auto    # or a list of Keras metric names",
    ]
    return "\n".join(lines) + "\n"


def _target_transform_lines(problem, target) -> list[str]:
    """The ``data.target_transform`` line, for a regression target of 0 or more (where ``log`` can be set); else none."""
    if log_target_refusal(problem, float(pd.to_numeric(target, errors="coerce").min())):
        return []
    return [
        "  target_transform: none    # or log: learn log(1 + target), for a target that varies by factors (a price); "
        "relative errors fall, the rmse often rises (README)"
    ]


def _image_config(data: str, spec: Config, output: Path | None) -> str:
    """The config for an image folder, a CSV of image paths, or ``digits``: what was found, every key at its default."""
    from dlw.console import Console
    from dlw.data.image_sets import choose_shape, find_images, image_problem

    images = find_images(spec)
    problem = image_problem(images, spec)
    size, channels, why = choose_shape(images, spec, Console(quiet=True))
    source = data if data in IMAGE_BUILTINS else _relative_source(Path(data), output)
    defaults = Config(data=DataConfig(source=source, target=spec.data.target))
    m = defaults.model
    summary = images.skipped_summary()
    lines = [
        f"# dlw config for {data}, written by `dlw init` on {time.strftime('%Y-%m-%d')}.",
        f"# {len(images)} images" + (f"; {summary}" if summary else "."),
        f"# Step 1, the problem: {problem.question.replace('a row belongs', 'an image belongs')}",
        f"#   task inferred: {problem.task} ({problem.reason}).",
        "# Every key below is at its default; edit what you need. `dlw schema` documents them all.",
        f"name: {spec.name}",
        "data:",
        f"  source: {_scalar(source)}    # a folder of class subfolders, a CSV of image paths (relative to this file), or digits",
        f"  target: {_scalar(spec.data.target)}",
    ]
    if images.kind == "csv":
        lines.append(f"  image_column: {_scalar(spec.data.image_column) if spec.data.image_column else 'null'}    # null: found by its values")
    if problem.classes:
        counts = pd.Series(images.labels).value_counts().to_dict() if images.labels is not None else {}
        shown = ", ".join(f"{c} {counts[c]}" if c in counts else str(c) for c in problem.classes[:12])
        lines.append(f"  # Step 2, the classes: {shown}{', ...' if len(problem.classes) > 12 else ''}")
    lines += [
        f"  image_size: [{size[0]}, {size[1]}]    # {why}",
        f"  channels: {channels}         # 1 grey, 3 colour",
        "  augment: null       # e.g. {flip: horizontal, rotation: 0.05, zoom: 0.1, translation: 0.1, contrast: 0.1}; training only",
        f"  cache_mb: {defaults.data.cache_mb}      # decoded images stay in memory when they fit; else streamed from disk",
        "  split:",
        f"    validation: {defaults.data.split.validation}",
        f"    test: {defaults.data.split.test}         # held out: used only for the final measurement",
        f"    seed: {defaults.data.split.seed}",
        f"task: auto    # inferred: {problem.task}",
        "model:",
        "  kind: cnn          # or pretrained, with backbone: a keras.applications name, a .keras file or a dlw run folder",
        f"  conv_filters: {m.conv_filters}",
        f"  dense_layers: {m.dense_layers}",
        "  dropout: 0.3",
        f"  batch_norm: {str(m.batch_norm).lower()}",
        "  # backbone: MobileNetV3Small",
        "  # freeze: true",
        "  # fine_tune: {layers: 20, learning_rate: 1.0e-5, epochs: 10}",
        *_train_lines(defaults),
    ]
    return "\n".join(lines) + "\n"


def _train_lines(defaults: Config) -> list[str]:
    t = defaults.train
    return [
        "train:",
        f"  epochs: {t.epochs}       # an upper bound; early stopping usually ends sooner",
        f"  batch_size: {t.batch_size}",
        f"  optimizer: {t.optimizer}",
        f"  learning_rate: {t.learning_rate}",
        "  early_stopping:    # or false",
        f"    patience: {t.early_stopping.patience}",
        f"    monitor: {t.early_stopping.monitor}",
        f"  seed: {t.seed}",
    ]


def _relative_source(path: Path, output: Path | None) -> str:
    base = (output.resolve().parent if output is not None else Path.cwd())
    try:
        relative = os.path.relpath(path.resolve(), base)
    except ValueError:  # another drive on Windows
        return str(path.resolve())
    # On stdout the config's folder is unknown: a path climbing out of this one is kept absolute.
    return str(path.resolve()) if output is None and relative.startswith("..") else relative


def _scalar(value: str) -> str:
    import yaml

    return yaml.safe_dump(value, default_style=None).strip().removesuffix("...").strip()


def _describe(f, frame) -> str:
    missing = frame[f.name].isna().mean()
    parts = []
    if f.kind == "categorical":
        levels = category_strings(frame[f.name]).dropna().unique()
        shown = ", ".join(map(str, levels[:5])) + (", ..." if len(levels) > 5 else "")
        parts.append(f"{len(levels)} levels ({shown})")
    elif f.kind == "boolean":
        parts.append(f"true when {f.true_value!r}" if f.true_value else "true/false")
    elif f.min is not None:
        parts.append(f"{f.min:g} to {f.max:g}")
    if missing:
        parts.append(f"{missing:.0%} missing")
    if f.note:
        parts.append(f.note)
    return f" ({'; '.join(parts)})" if parts else ""

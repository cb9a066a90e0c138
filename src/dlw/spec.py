"""Resolving a run specification: a YAML file, a built-in name, a data path or a dict, plus ``--set``.

``config.py`` holds the pydantic models (the single source of truth for keys, defaults
and checks); this module turns what a user typed into one validated ``Config``: it reads
the file, applies ``--set key.path=value`` overrides (values parsed as YAML), makes paths
absolute, and decides the model kind (``auto`` becomes mlp, cnn or pretrained from the
data), which in turn decides whether the run is on a table or on images.
"""

from __future__ import annotations

import copy
import difflib
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from dlw.config import (
    AugmentConfig, ChecksConfig, Config, DataConfig, Distribution, EarlyStoppingConfig, FineTuneConfig, ModelConfig,
    SplitConfig, TrainConfig, TuneConfig,
)
from dlw.errors import ConfigError
from dlw.models import DEFAULT_KIND, MODEL_KINDS, fill_training_defaults, input_kind


CONFIG_SUFFIXES = (".yaml", ".yml")


DATA_SUFFIXES = (".csv", ".tsv", ".txt", ".parquet", ".pq", ".gz", ".bz2", ".zst", ".xlsx", ".xlsm", ".jsonl", ".ndjson")


# Keys a trial may not change: they decide which rows are the test set, or what is predicted.
UNTUNABLE = ("name", "data.source", "data.target", "data.split", "task", "tune", "checks")


def search_path_problem(path: str) -> str | None:
    """Why ``path`` (e.g. ``model.dropout``) cannot be tuned, or None when it can."""
    if any(path == key or path.startswith(key + ".") for key in UNTUNABLE):
        return "this key cannot be tuned (it decides the data, the split or the tuning itself)"
    model: type[BaseModel] | None = Config
    parts = path.split(".")
    for i, part in enumerate(parts):
        fields = model.model_fields if model else {}
        if part not in fields:
            where = ".".join(parts[:i]) or "the top level"
            close = difflib.get_close_matches(part, list(fields), n=1)
            hint = f"; did you mean {'.'.join([*parts[:i], close[0]])!r}?" if close else ""
            return f"not a config key ({part!r} is not a key of {where}){hint}"
        annotation = fields[part].annotation
        nested = next((t for t in getattr(annotation, "__args__", (annotation,)) if isinstance(t, type) and issubclass(t, BaseModel)), None)
        if i < len(parts) - 1 and nested is None:
            return f"not a config key ({'.'.join(parts[: i + 1])!r} is a value, not a section)"
        model = nested
    if model is not None and path != "train.early_stopping":
        return "names a section; name one of its keys, e.g. " + f"{path}.{next(iter(model.model_fields))}"
    return None


def set_path(raw: dict, path: str, value: Any) -> dict:
    """A copy of ``raw`` with the dotted ``path`` set to ``value`` (sections created as needed)."""
    result = copy.deepcopy(raw)
    node = result
    *parents, last = path.split(".")
    for part in parents:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[last] = value
    return result


def check_search_space(config: "Config", origin: str) -> None:
    """Every value a search space can produce must be valid for its key; errors name the key."""
    space = config.tune.search_space or {}
    base = config.model_dump(mode="json", exclude={"tune"})
    for path, dist in space.items():
        problem = search_path_problem(path)
        if problem:
            raise ConfigError(f"{origin}: key 'tune.search_space.{path}': {problem}")
        values = dist.choice if dist.choice is not None else (dist.float_ or dist.int_)
        for value in values:
            raw = set_path(base, path, value)
            try:
                Config.model_validate(raw)
            except ValidationError as exc:
                err = exc.errors()[0]
                raise ConfigError(
                    f"{origin}: key 'tune.search_space.{path}': the value {value!r} is not valid for {path} ({err['msg']})"
                ) from None


_MODEL_NAMES = {
    m.__name__
    for m in (
        SplitConfig, AugmentConfig, DataConfig, FineTuneConfig, ModelConfig, EarlyStoppingConfig, TrainConfig, ChecksConfig,
        Distribution, TuneConfig, Config,
    )
}


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``a.b=value`` into ``(['a', 'b'], parsed value)``; the value is read as YAML."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE, for example --set train.epochs=50")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {text!r}: the value is not valid YAML ({_first_line(exc)})") from None
    return key.strip().split("."), value


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """Return a copy of ``raw`` with each ``key.path=value`` set (paths created as needed)."""
    result = copy.deepcopy(raw)
    for text in overrides:
        path, value = parse_override(text)
        node = result
        for i, part in enumerate(path[:-1]):
            child = node.get(part)
            if child is None or child is False:
                child = node[part] = {}
            if not isinstance(child, dict):
                where = ".".join(path[: i + 1])
                raise ConfigError(f"--set {text!r}: {where!r} is a value, not a section")
            node = child
        node[path[-1]] = value
    return result


def json_schema() -> dict:
    """The JSON Schema of the config file (``dlw schema``)."""
    return Config.model_json_schema()


def validate(raw: Any, origin: str) -> Config:
    """Build a ``Config`` from plain data; errors name ``origin`` and the key."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{origin}: the config must be a mapping of keys (data:, model:, ...), found {type(raw).__name__}")
    try:
        config = Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{origin}: {describe_validation_error(exc)}") from None
    check_search_space(config, origin)
    return config


def describe_validation_error(exc: ValidationError) -> str:
    """One line for the first problem pydantic found, naming the key and what was expected."""
    errors = exc.errors()
    err = errors[0]
    loc = [str(p) for p in err["loc"] if not _is_union_tag(p)]
    key = ".".join(loc)
    # A key that takes a number or 'auto' fails both ways; that is one problem, not two.
    others = {tuple(str(p) for p in e["loc"] if not _is_union_tag(p)) for e in errors[1:]} - {tuple(loc)}
    more = f" (and {len(others)} more problem(s))" if others else ""
    if err["type"] == "extra_forbidden":
        return f"unknown key {key!r}{_suggestion(loc)}{more}"
    if err["type"] == "missing":
        return f"missing key {key!r}: add it to the config or pass it with --set {key}=...{more}"
    got = err.get("input")
    got_text = "" if isinstance(got, dict) else f" (got {got!r})"
    return f"key {key!r}: {err['msg']}{got_text}{more}"


def _is_union_tag(part: Any) -> bool:
    # pydantic adds the union member it tried ('EarlyStoppingConfig', 'literal[False]') to locations.
    text = str(part)
    return text in _MODEL_NAMES or text.startswith(("literal[", "list[", "dict[", "function-", "constrained-")) or text in ("bool", "str", "int", "float")


def _suggestion(loc: list[str]) -> str:
    model: type[BaseModel] | None = Config
    for part in loc[:-1]:
        field = model.model_fields.get(part) if model else None
        ann = field.annotation if field else None
        model = next((t for t in getattr(ann, "__args__", (ann,)) if isinstance(t, type) and issubclass(t, BaseModel)), None)
    if model is None:
        return ""
    close = difflib.get_close_matches(loc[-1], list(model.model_fields), n=1)
    known = ", ".join(model.model_fields)
    return f"; did you mean {close[0]!r}?" if close else f"; known keys here: {known}"


def _first_line(exc: Exception) -> str:
    return " ".join(str(exc).split())


def read_yaml(path: Path) -> dict:
    """Read a YAML config file into a dict, with one-line errors."""
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file; a config must be UTF-8 YAML") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or _first_line(exc)
        raise ConfigError(f"{path}: malformed YAML{where}: {problem}") from None
    if raw is None:
        raise ConfigError(f"{path}: the config file is empty; start from `dlw init DATA --target COLUMN`")
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the config must be a mapping of keys (data:, model:, ...), found {type(raw).__name__}")
    return raw


def load_spec(source: str | Path | dict, target: str | None = None, overrides: list[str] | None = None) -> Config:
    """Resolve a config file, built-in name, data path or dict into a validated ``Config``.

    >>> load_spec("penguins", overrides=["train.epochs=5"]).train.epochs
    5
    """
    from dlw.data.builtin import BUILTINS, IMAGE_BUILTINS

    overrides = list(overrides or [])
    if isinstance(source, dict):
        raw, origin, base, name = dict(source), "config", Path.cwd(), None
    else:
        text = str(source)
        path = Path(text).expanduser()
        if path.suffix.lower() in CONFIG_SUFFIXES:
            raw, origin, base, name = read_yaml(path), str(path), path.resolve().parent, path.stem
        elif text in (*BUILTINS, *IMAGE_BUILTINS) and not path.exists():
            raw = {"data": {"source": text, "target": BUILTINS[text].target if text in BUILTINS else "label"}}
            origin, base, name = text, Path.cwd(), text
        elif path.exists() or path.suffix.lower() in DATA_SUFFIXES:
            if not path.exists():
                raise ConfigError(f"{path}: data file not found")
            raw = {"data": {"source": str(path.resolve())}}
            if path.is_dir():  # images, one subfolder per class
                raw["data"]["target"] = "label"
            origin, base, name = str(path), Path.cwd(), path.stem
        else:
            known = ", ".join(sorted((*BUILTINS, *IMAGE_BUILTINS)))
            raise ConfigError(
                f"{text!r} is not a config file (.yaml), a data file (.csv, .csv.gz, .xlsx, .jsonl, .parquet), an image folder or a built-in data set ({known})"
            )
    if target is not None:
        raw.setdefault("data", {})
        if not isinstance(raw["data"], dict):
            raise ConfigError(f"{origin}: key 'data' must be a section with source: and target:")
        raw["data"]["target"] = target
    raw = apply_overrides(raw, overrides)
    config = validate(raw, origin if not overrides else f"{origin} (with --set)")
    if config.name is None:
        config.name = name or Path(config.data.source).stem
    if config.data.source not in (*BUILTINS, *IMAGE_BUILTINS):
        config.data.source = str((base / Path(config.data.source).expanduser()).resolve())
    for key in ("backbone", "backbone_weights"):
        value = getattr(config.model, key)
        if value and (base / Path(value).expanduser()).exists():
            setattr(config.model, key, str((base / Path(value).expanduser()).resolve()))
    resolve_kind(config, origin)
    if config.data.target is None:
        if input_kind(config) == "images" and Path(config.data.source).is_dir():
            config.data.target = "label"
        else:
            raise ConfigError(f"{origin}: no target column: pass --target COLUMN or set data.target in the config")
    return config


def is_image_source(data: DataConfig) -> bool:
    """Whether ``data.source`` holds images: the built-in digits, a folder, or a CSV listing image paths."""
    from dlw.data.builtin import IMAGE_BUILTINS

    if data.source in IMAGE_BUILTINS:
        return True
    path = Path(data.source)
    if path.is_dir():
        return True
    if data.image_column:
        return True
    if path.is_file() and path.suffix.lower() in (".csv", ".tsv", ".txt"):
        from dlw.data.images import looks_like_image_csv

        try:
            return looks_like_image_csv(path) is not None
        except Exception:  # an unreadable CSV is reported by the table reader with its own message
            return False
    return False


def resolve_kind(config: Config, origin: str) -> None:
    """Replace ``model.kind: auto`` by mlp, cnn or pretrained from the data; refuse a kind that does not fit.

    This is where a run's input kind (table or images) is decided, once: every later step
    reads it from the resolved ``model.kind`` (``dlw.models.input_kind``) or from the
    ``Prepared`` data built for it.
    """
    images = is_image_source(config.data)
    kind = config.model.kind
    if kind == "auto":
        kind = "pretrained" if images and config.model.backbone else DEFAULT_KIND["images" if images else "table"]
    reads = MODEL_KINDS[kind].inputs
    if images and reads == "table":
        raise ConfigError(f"{origin}: key 'model.kind': {kind!r} is for tables but {config.data.source} holds images; use cnn or pretrained")
    if not images and reads == "images" and not Path(config.data.source).exists():
        raise ConfigError(f"{origin}: key 'data.source': {config.data.source} does not exist; give an image folder, a CSV of image paths or digits")
    if not images and reads == "images":
        raise ConfigError(
            f"{origin}: key 'model.kind': {kind!r} needs images (a folder, a CSV of image paths with data.image_column, or digits) "
            f"but {config.data.source} is a table; use tabm or mlp"
        )
    if reads == "images" and config.train.folds not in ("auto", 1):
        raise ConfigError(f"{origin}: key 'train.folds': cross-fitting ({config.train.folds} folds) is for tables; set train.folds: 1 for images")
    if kind == "pretrained" and not config.model.backbone:
        raise ConfigError(f"{origin}: key 'model.backbone' is required with model.kind: pretrained (a keras.applications name, a .keras file or a run folder)")
    config.model.kind = kind
    fill_training_defaults(config)

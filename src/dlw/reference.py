"""The config reference as a Markdown table, generated from the pydantic models (``dlw schema --markdown``)."""

from __future__ import annotations

import json
import typing

from pydantic import BaseModel

from dlw.config import Config


def config_reference() -> str:
    """One row per key: dotted path, type, default, description."""
    rows = ["| key | type | default | meaning |", "| --- | --- | --- | --- |"]
    _rows(Config, "", rows)
    return "\n".join(rows) + "\n"


def _rows(model: type[BaseModel], prefix: str, rows: list[str]) -> None:
    for name, field in model.model_fields.items():
        path = f"{prefix}{name}"
        nested = _nested_model(field.annotation)
        default = "required" if field.is_required() else _default(field)
        if nested is not None and name != "early_stopping":
            _rows(nested, f"{path}.", rows)
            continue
        meaning = (field.description or "").replace("|", "\\|")
        rows.append(f"| `{path}` | {_type_name(field.annotation)} | {default} | {meaning} |")
        if nested is not None:
            _rows(nested, f"{path}.", rows)


def _nested_model(annotation) -> type[BaseModel] | None:
    for candidate in typing.get_args(annotation) or (annotation,):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _default(field) -> str:
    value = field.get_default(call_default_factory=True)
    if isinstance(value, BaseModel):
        return "(section)"
    return f"`{json.dumps(value)}`"


def _type_name(annotation) -> str:
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return " \\| ".join(json.dumps(a) for a in typing.get_args(annotation))
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return " \\| ".join(_type_name(a) for a in typing.get_args(annotation))
    if origin is typing.Annotated:  # a constrained type: the constraint is in the description
        return _type_name(typing.get_args(annotation)[0])
    if origin in (list, dict):
        args = ", ".join(_type_name(a) for a in typing.get_args(annotation))
        return f"{origin.__name__}[{args}]"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "section"
    return getattr(annotation, "__name__", str(annotation)).replace("NoneType", "null")

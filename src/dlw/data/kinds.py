"""Steps 1-3 for the run's input kind, and the empty ``Prepared`` a finished run predicts with.

The input kind was decided once, when the spec was resolved (``dlw.spec.resolve_kind``),
and is read here from the config (its model kind) or from a finished run's ``schema.json``;
this table maps it to the kind's preparation.
"""

from __future__ import annotations

from dlw.console import QUIET, Console
from dlw.data.image_sets import ImagePrepared, ImageSchema, prepare_images
from dlw.data.prepared import Prepared
from dlw.data.tables import TablePrepared, prepare_table
from dlw.models import input_kind
from dlw.problem import Problem
from dlw.runs import input_kind_of_schema
from dlw.schema import Schema

PREPARED = {"table": TablePrepared, "images": ImagePrepared}
SCHEMAS = {"table": Schema, "images": ImageSchema}


def prepare(config, console: Console = QUIET, schema=None, backbone_shape=None) -> Prepared:
    """Steps 1-3: load, formulate the problem, infer (or reuse) the schema, split, encode.

    A fitted ``schema`` (a finished run's) is used as it is instead of being inferred again.
    ``backbone_shape`` is a pretrained backbone's input shape, which decides the image size.
    """
    if input_kind(config) == "images":
        return prepare_images(config, console, schema, backbone_shape)
    return prepare_table(config, console, schema)


def schema_from_dict(data: dict):
    """A finished run's schema, of the class its ``schema.json`` records."""
    return SCHEMAS[input_kind_of_schema(data)].from_dict(data)


def prepared_for_predictions(kind: str, config, schema, problem: Problem, target_scaling: dict | None) -> Prepared:
    """An empty ``Prepared`` of the run's ``kind``: what a finished run needs to encode new inputs and predict."""
    return PREPARED[kind](None, problem, schema, None, {}, {}, target_scaling, 0, config=config)

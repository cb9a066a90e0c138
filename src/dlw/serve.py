"""Step 10, serving: a run folder or a bundle over HTTP, with FastAPI under uvicorn.

``dlw serve RUN|BUNDLE`` loads the run once, warms its network up on every batch size it
will see, and only then opens the port (127.0.0.1 unless ``--host`` says otherwise).

- ``POST /predict`` (tables): ``{"rows": [{column: value, ...}, ...]}``. The request model is
  generated from the run's ``schema.json``, so ``/docs`` and ``/openapi.json`` show every input
  column with its type, and a categorical column's allowed values as an enum. ``null`` is a
  missing value (a number then takes its training median, as ``dlw predict`` does).
- ``POST /predict/image`` (image runs): a multipart upload of one or more ``files``.
- ``GET /health``, ``GET /metadata`` (task, classes, test metrics, the verdict).

A missing column, a wrong type, an unknown category, an empty list or more rows than
``--max-rows`` is a 422 naming the field, never a 500. A JSON ``POST /predict`` is answered by
``PredictFastPath`` (the same request model, validated on the raw bytes, without FastAPI's
per-request machinery); whatever it does not accept goes to FastAPI's own route, which answers
alike. Concurrent requests are gathered into
one batch by ``MicroBatcher`` (whatever arrived while the previous batch ran; no fixed wait),
and the batch runs the network and its penultimate layer in one jitted call
(``_backend.inference_function``), padded to a power of two so that a handful of compiled shapes serve
every request.

>>> from dlw.serve import create_app          # doctest: +SKIP
>>> app = create_app("runs/penguins")          # doctest: +SKIP
"""

# No ``from __future__ import annotations``: FastAPI reads the generated request models from live annotations.
import asyncio
import gc
import math
import tempfile
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np

from dlw.console import QUIET
from dlw.errors import DlwError

EXTRA = "pip install 'dlw[serve]'"
DEFAULT_MAX_ROWS = 1000
WARM_BATCHES = 64  # batch sizes up to this are compiled before the port opens
FLOAT32_MAX = float(np.finfo(np.float32).max)


def require_serving() -> None:
    """Raise a one-line ``DlwError`` naming the extra when FastAPI or uvicorn is not installed."""
    import importlib.util

    missing = [name for name in ("fastapi", "uvicorn", "multipart") if importlib.util.find_spec(name) is None]
    if missing:
        raise DlwError(f"dlw serve needs {', '.join(missing)}, which are not installed; install the extra: {EXTRA}")


# --- the request model, from the schema ------------------------------------------------------


def as_level(value):
    """A JSON number given for a category becomes its text as ``schema.category_strings`` writes it (3.0 -> '3')."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return value
    return str(int(value)) if float(value).is_integer() else str(value)


def column_type(feature) -> tuple[Any, str]:
    """The pydantic type of one input column and its description for the OpenAPI page."""
    from pydantic import BeforeValidator, Field

    if feature.kind == "categorical":
        levels = tuple(feature.vocabulary) or ("",)
        return Annotated[Literal[levels], BeforeValidator(as_level)], "category; one of the levels seen in training, or null"
    if feature.kind == "boolean":
        return bool, "true or false, or null"
    if feature.kind == "numeric":
        bounds = f"; training range {feature.min:g} to {feature.max:g}" if feature.min is not None else ""
        if (feature.encoding or {}).get("clock"):
            bounds = "; a clock time written HHMM (1530 is 15:30)"
        # Beyond float32's range a number would reach the network as infinity.
        number = Annotated[float, Field(allow_inf_nan=False, ge=-FLOAT32_MAX, le=FLOAT32_MAX)]
        return number, f"number, or null for missing (read as the training median){bounds}"
    return str | float, f"{feature.kind} value, or null"


def row_model(schema):
    """A pydantic model of one input row: every column required (``null`` allowed), typed from the schema.

    Field names are ``c0, c1, ...`` with the column name as alias, so any column name works.
    """
    from pydantic import ConfigDict, Field, create_model

    fields = {}
    for i, feature in enumerate(schema.features):
        kind, description = column_type(feature)
        fields[f"c{i}"] = (kind | None, Field(..., alias=feature.name, description=description))
    return create_model("Row", __config__=ConfigDict(extra="ignore", populate_by_name=False), **fields)


def request_model(schema, max_rows: int):
    """``{"rows": [Row, ...]}`` with between 1 and ``max_rows`` rows."""
    from pydantic import Field, create_model

    row = row_model(schema)
    return create_model("PredictRequest", rows=(list[row], Field(..., min_length=1, max_length=max_rows)))


# --- rows to model inputs, fast ------------------------------------------------------------------


class RowEncoder:
    """Validated rows to model inputs exactly as ``Schema.encode`` makes them, without pandas.

    The codes, medians and indicator layout are read off ``Schema.encode`` itself (on a probe
    frame of every level and every missing value), and checked against it once; a schema with
    a column kind this encoder does not know, or one it disagrees with, goes through
    ``Schema.encode`` for every batch.
    """

    KINDS = ("numeric", "boolean", "categorical")

    def __init__(self, schema):
        import pandas as pd

        self.schema = schema
        self.features = list(schema.features)
        self.fast = all(f.kind in self.KINDS for f in self.features)
        if not self.fast:
            return
        cats = [f for f in self.features if f.kind == "categorical"]
        size = max([len(f.vocabulary) + 1 for f in cats] + [1])
        probe = pd.DataFrame({f.name: (f.vocabulary + [None] * (size - len(f.vocabulary))) if f.kind == "categorical" else [None] * size for f in self.features})
        encoded, _ = schema.encode(probe)
        self.codes = [
            ({level: int(encoded["categorical"][i, j]) for i, level in enumerate(f.vocabulary)}, int(encoded["categorical"][-1, j]))
            for j, f in enumerate(cats)
        ]
        nums = [f for f in self.features if f.kind != "categorical"]
        self.medians = [float(encoded["numeric"][0, j]) for j in range(len(nums))] if nums else []
        self.indicators = [f.indicator for f in nums]
        self.slots = [(i, f.kind) for i, f in enumerate(self.features)]
        self.fast = self.agrees_with_schema(probe)

    def agrees_with_schema(self, probe) -> bool:
        """Whether this encoder gives ``Schema.encode``'s arrays on ``probe``, with every other number present."""
        probe = probe.copy()
        for f in self.features:
            if f.kind != "categorical" and f.min is not None:
                probe.loc[probe.index[::2], f.name] = float(f.min) if f.kind == "numeric" else 1.0
        rows = [[None if v is None or v != v else v for v in values] for values in probe.astype(object).itertuples(index=False)]
        expected, _ = self.schema.encode(probe)
        got = self.encode(rows)
        return got.keys() == expected.keys() and all(np.array_equal(got[k], expected[k]) for k in expected)

    def encode(self, rows: list[list]) -> dict[str, np.ndarray]:
        """Rows as lists of values in schema order (``None`` = missing) to ``{"numeric", "categorical"}`` arrays."""
        if not self.fast:
            import pandas as pd

            frame = pd.DataFrame(rows, columns=[f.name for f in self.features], dtype=object)
            return self.schema.encode(frame, origin="request")[0]
        numeric, extra, categorical = [], [], []
        for row in rows:
            values, missing, codes = [], [], []
            for i, kind in self.slots:
                value = row[i]
                if kind == "categorical":
                    levels, absent = self.codes[len(codes)]
                    codes.append(absent if value is None else levels[value])
                    continue
                j = len(values)
                gone = value is None or not math.isfinite(float(value))
                values.append(self.medians[j] if gone else float(value))
                if self.indicators[j]:
                    missing.append(1.0 if gone else 0.0)
            numeric.append(values)
            extra.append(missing)
            categorical.append(codes)
        inputs = {}
        if self.medians:
            inputs["numeric"] = np.hstack([np.asarray(numeric, "float32"), np.asarray(extra, "float32").reshape(len(rows), -1)])
        if self.codes:
            inputs["categorical"] = np.asarray(categorical, "int32")
        return inputs


# --- the network and its detector, one call per batch --------------------------------------------


def padded_size(n: int) -> int:
    """The batch size ``n`` rows are padded to: the next power of two."""
    return 1 << max(0, (n - 1).bit_length())


class Predictor:
    """A run's network, its penultimate layer and its unfamiliar-input detector as one call per batch."""

    def __init__(self, run):
        model = run.model  # first: loading the model chooses the backend before keras is imported
        self.run = run
        self.prepared = run.prepared
        from dlw._backend import inference_function
        from dlw.ood import outputs_and_features_model

        self.network = outputs_and_features_model(model)
        self.call = inference_function(self.network)
        self.input_names = {t.name for t in model.inputs}

    def predict(self, inputs) -> list[dict]:
        """Each input's ``prediction``, ``probabilities`` (classification), ``ood`` and ``ood_score``."""
        from dlw.ood import blocks_from_penultimate

        if isinstance(inputs, dict):
            inputs = {k: v for k, v in inputs.items() if k in self.input_names}
            n = len(next(iter(inputs.values())))
            padded = {k: pad_rows(v, padded_size(n)) for k, v in inputs.items()}
        else:
            n = len(inputs)
            padded = pad_rows(inputs, padded_size(n))
        raw, penultimate = (np.asarray(a)[:n] for a in self.call(padded))
        outputs = self.prepared.outputs_from_raw(raw)
        records = prediction_records(outputs, self.prepared.problem)
        detector = self.run.detector
        if detector is not None:
            flags, scores = detector.flags_and_scores(blocks_from_penultimate(penultimate, self.prepared, inputs))
            for record, flag, score in zip(records, flags.tolist(), scores.tolist()):
                record["ood"] = flag
                record["ood_score"] = round(score, 4) if math.isfinite(score) else None
        return records


def pad_rows(array: np.ndarray, size: int) -> np.ndarray:
    """``array`` with its last row repeated up to ``size`` rows."""
    extra = size - len(array)
    return array if extra <= 0 else np.concatenate([array, np.repeat(array[-1:], extra, axis=0)])


def prediction_records(outputs: np.ndarray, problem) -> list[dict]:
    """The JSON objects ``/predict`` returns: the prediction as ``dlw predict`` decides it, and each class's probability."""
    from dlw.predict import prediction_frame

    if not problem.is_classification:
        return [{"prediction": p} for p in outputs.astype(float).tolist()]
    classes = [str(c) for c in problem.classes]
    if getattr(problem, "threshold", None) is None:  # the more probable class, as prediction_frame decides it
        predictions = [classes[i] for i in outputs.argmax(axis=1).tolist()]
    else:  # a decision threshold: prediction_frame applies it (pandas costs ~2 ms a batch)
        predictions = [str(p) for p in prediction_frame(outputs, problem)["prediction"].tolist()]
    return [{"prediction": p, "probabilities": dict(zip(classes, probs))} for p, probs in zip(predictions, outputs.astype(float).tolist())]


# --- gathering concurrent requests into batches --------------------------------------------------


class MicroBatcher:
    """Gathers concurrent requests into one batch: whatever arrived while the last batch ran.

    There is no fixed wait, so a lone request runs at once; under load, batches grow by
    themselves. The network runs in one worker thread, so the event loop keeps reading requests.
    """

    def __init__(self, work, max_rows: int):
        self.work, self.max_rows = work, max_rows
        self.pending: deque = deque()
        self.wake: asyncio.Event | None = None
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dlw-serve")
        self.task: asyncio.Task | None = None

    def start(self) -> None:
        self.wake = asyncio.Event()
        self.task = asyncio.get_running_loop().create_task(self.loop())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
        self.executor.shutdown(wait=False, cancel_futures=True)

    async def submit(self, rows: list) -> list[dict]:
        """The predictions for ``rows``, computed in a batch with whatever else is waiting."""
        future = asyncio.get_running_loop().create_future()
        self.pending.append((rows, future))
        self.wake.set()
        return await future

    def next_batch(self) -> list:
        """Waiting requests, oldest first, up to ``max_rows`` rows (always at least one request)."""
        jobs = [self.pending.popleft()]
        total = len(jobs[0][0])
        while self.pending and total + len(self.pending[0][0]) <= self.max_rows:
            jobs.append(self.pending.popleft())
            total += len(jobs[-1][0])
        return jobs

    async def loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self.wake.wait()
            self.wake.clear()
            while self.pending:
                jobs = self.next_batch()
                rows = [row for batch, _ in jobs for row in batch]
                try:
                    results = await loop.run_in_executor(self.executor, self.work, rows)
                except Exception as exc:  # handed to each waiting request, which answers for itself
                    for _, future in jobs:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                start = 0
                for batch, future in jobs:
                    if not future.done():
                        future.set_result(results[start : start + len(batch)])
                    start += len(batch)


# --- the application ------------------------------------------------------------------------------


def run_metadata(run) -> dict:
    """What ``GET /metadata`` returns: the task, classes, test metrics and the verdict."""
    from dlw.version import __version__

    metrics = run.metrics or {}
    advice = metrics.get("advice") or {}
    return {
        "task": run.problem.task,
        "target": run.problem.target,
        "classes": [str(c) for c in run.problem.classes] if run.problem.is_classification else None,
        "input_kind": run.input_kind,
        "inputs": [{"name": f.name, "kind": f.kind} for f in getattr(run.schema, "features", [])],
        "main_metric": metrics.get("main_metric"),
        "metrics": metrics.get("test", {}),
        "baselines": metrics.get("baselines", {}),
        "verdict": {k: advice.get(k) for k in ("outcome", "verdict", "explanation", "baseline", "ci95")},
        "ood_rate": (metrics.get("ood") or {}).get("rate"),
        "dlw_version": __version__,
        "trained_with": {k: (run.manifest or {}).get(k) for k in ("dlw_version", "keras_version", "backend", "created")},
    }


def response_models(problem):
    """The pydantic response models (documented in ``/openapi.json``)."""
    from pydantic import BaseModel, Field

    class Prediction(BaseModel):
        prediction: str | float = Field(description="the predicted class, or the predicted value")
        probabilities: dict[str, float] | None = Field(None, description="each class's probability (classification only)")
        ood: bool | None = Field(None, description="true when the input looks unlike the training data: the prediction is a guess")
        ood_score: float | None = Field(None, description="how unfamiliar the input is (1.0 = a typical validation input)")
        file: str | None = Field(None, description="the uploaded file's name (images)")

    class Predictions(BaseModel):
        predictions: list[Prediction]

    return Predictions


def create_app(source, *, max_rows: int = DEFAULT_MAX_ROWS, warm_up: bool = True):
    """A FastAPI application serving the run folder or bundle at ``source``; the model is loaded and warmed up here.

    Returns the application; ``app.state.predictor`` holds the loaded run.
    """
    require_serving()
    from contextlib import asynccontextmanager

    from fastapi import FastAPI

    from dlw.workflow import load

    if max_rows < 1:
        raise DlwError(f"--max-rows: expected a positive integer; received {max_rows}")
    run = load(source)
    predictor = Predictor(run)
    install = ROUTES[run.input_kind]
    work = install.worker(predictor)
    if warm_up:
        install.warm_up(predictor, min(max_rows, WARM_BATCHES))
    batcher = MicroBatcher(work, max_rows)

    @asynccontextmanager
    async def lifespan(app):
        batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(
        title=f"dlw: {run.config.name or Path(str(source)).name}",
        description=f"Predicts {run.problem.target!r} ({run.problem.task}) from a dlw run. {run_metadata(run)['verdict'].get('explanation') or ''}",
        lifespan=lifespan,
    )
    app.state.predictor, app.state.batcher = predictor, batcher
    add_common_routes(app, run)
    install.routes(app, predictor, batcher, max_rows)
    return app


def json_safe(value):
    """``value`` with non-finite floats as null: JSON has no NaN, and a 422 may echo one."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def add_common_routes(app, run) -> None:
    """``/health``, ``/metadata``, and 422 responses that stay valid JSON whatever the request held."""
    from fastapi.encoders import jsonable_encoder
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse

    metadata = run_metadata(run)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(status_code=422, content={"detail": json_safe(jsonable_encoder(exc.errors()))})

    @app.get("/health", summary="Is the server up? (the model is loaded before the port opens)")
    async def health() -> dict:
        return {"status": "ok"}

    @app.get("/metadata", summary="The task, classes, test metrics and verdict of the run")
    async def get_metadata() -> dict:
        return metadata


class TableRoutes:
    """``POST /predict`` for a table run."""

    @staticmethod
    def worker(predictor: Predictor):
        encoder = RowEncoder(predictor.run.schema)
        return lambda rows: predictor.predict(encoder.encode(rows))

    @staticmethod
    def warm_up(predictor: Predictor, largest: int) -> None:
        encoder = RowEncoder(predictor.run.schema)
        row = [None] * len(predictor.run.schema.features)
        size = 1
        while size <= largest:
            predictor.predict(encoder.encode([row] * size))
            size *= 2

    @staticmethod
    def routes(app, predictor: Predictor, batcher: MicroBatcher, max_rows: int) -> None:
        from fastapi import HTTPException, Response

        request = request_model(predictor.run.schema, max_rows)
        response = response_models(predictor.run.problem)
        names = list(request.model_fields["rows"].annotation.__args__[0].model_fields)

        async def predict(body: request) -> response:  # type: ignore[valid-type]
            rows = row_values(body, names)
            try:
                predictions = await batcher.submit(rows)
            except DlwError as exc:
                raise HTTPException(422, detail=f"rows: {exc}") from None
            # Already plain JSON types: skip FastAPI's response validation (the model still documents it).
            return Response(predictions_json(predictions), media_type="application/json")

        app.post(
            "/predict",
            response_model=response,
            response_model_exclude_none=True,
            summary="Predict rows: each with its prediction, class probabilities and unfamiliar-input flag",
        )(predict)
        app.add_middleware(PredictFastPath, validator=request.__pydantic_validator__, names=names, batcher=batcher)


class PredictFastPath:
    """ASGI middleware: a JSON ``POST /predict`` that validates answered without FastAPI's per-request machinery.

    FastAPI's routing, dependency solving and middleware cost about half of the server's CPU on
    a one-row request (py-spy). Here the body is validated by the same generated request model,
    in one pydantic-core call on the raw bytes, and the batch's answer is written as bytes. Any
    other request, and every request the model refuses or the batch raises on, goes to FastAPI
    unchanged with its body replayed, so errors, 422s and the documentation are FastAPI's own.
    """

    def __init__(self, app, *, validator, names: list[str], batcher: MicroBatcher):
        self.app, self.validator, self.names, self.batcher = app, validator, names, batcher

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != "/predict" or not is_json(scope["headers"]):
            return await self.app(scope, receive, send)
        messages = []
        while not messages or messages[-1].get("more_body", False):
            messages.append(await receive())
            if messages[-1]["type"] != "http.request":
                return  # the client went away
        from pydantic import ValidationError

        try:
            body = self.validator.validate_json(b"".join(m.get("body", b"") for m in messages))
            predictions = await self.batcher.submit(row_values(body, self.names))
        except (ValidationError, DlwError):
            return await self.app(scope, replayed(messages, receive), send)
        payload = predictions_json(predictions)
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": payload})


def row_values(body, names: list[str]) -> list[list]:
    """A validated request's rows as lists of values in schema order, as ``RowEncoder.encode`` takes them."""
    return [[getattr(row, name) for name in names] for row in body.rows]


def predictions_json(predictions: list[dict]) -> bytes:
    """``{"predictions": [...]}`` as JSON bytes, a non-finite number as null (JSON has no NaN)."""
    from pydantic_core import to_json

    return to_json({"predictions": predictions}, inf_nan_mode="null")


def is_json(headers) -> bool:
    """Whether ASGI ``headers`` declare a JSON body (``application/json``, any parameters)."""
    for name, value in headers:
        if name == b"content-type":
            return value.split(b";", 1)[0].strip().lower() == b"application/json"
    return False


def replayed(messages: list[dict], receive):
    """An ASGI ``receive`` that gives ``messages`` again, then whatever ``receive`` gives."""
    queue = deque(messages)

    async def replay() -> dict:
        return queue.popleft() if queue else await receive()

    return replay


class ImageRoutes:
    """``POST /predict/image`` for an image run: a multipart upload of ``files``."""

    @staticmethod
    def worker(predictor: Predictor):
        return lambda images: predictor.predict(np.concatenate(images)) if images else []

    @staticmethod
    def warm_up(predictor: Predictor, largest: int) -> None:
        shape = [d or 1 for d in predictor.network.inputs[0].shape[1:]]
        predictor.predict(np.zeros([1, *shape], dtype="float32"))

    @staticmethod
    def routes(app, predictor: Predictor, batcher: MicroBatcher, max_rows: int) -> None:
        from fastapi import File, HTTPException, UploadFile

        response = response_models(predictor.run.problem)

        async def predict_image(files: list[UploadFile] = File(..., description="one or more image files")) -> response:  # type: ignore[valid-type]
            if len(files) > max_rows:
                raise HTTPException(422, detail=f"files: {len(files)} files; at most {max_rows} (--max-rows) per request")
            loop = asyncio.get_running_loop()
            arrays = []
            for upload in files:
                data = await upload.read()
                array = await loop.run_in_executor(None, decode_upload, predictor, upload.filename or "upload", data)
                arrays.append(array)
            results = await batcher.submit([a for a in arrays])
            for record, upload in zip(results, files):
                record["file"] = upload.filename
            return {"predictions": results}

        app.post(
            "/predict/image",
            response_model=response,
            response_model_exclude_none=True,
            summary="Predict uploaded images: each with its prediction, class probabilities and unfamiliar-input flag",
        )(predict_image)


def decode_upload(predictor: Predictor, name: str, data: bytes) -> np.ndarray:
    """One uploaded image decoded as the run's model expects it, shape ``(1, ...)``; a 422 if it is not an image."""
    from fastapi import HTTPException

    suffix = Path(name).suffix.lower() or ".png"
    with tempfile.TemporaryDirectory(prefix="dlw-upload-") as folder:
        path = Path(folder) / f"upload{suffix}"
        path.write_bytes(data)
        try:
            _, arrays, failed, _ = predictor.prepared.encode_new([str(path)], QUIET, "upload")
        except DlwError as exc:
            raise HTTPException(422, detail=f"files: {name}: {exc}") from None
    if failed:
        raise HTTPException(422, detail=f"files: {name}: could not be decoded as an image")
    return np.asarray(arrays)


ROUTES = {"table": TableRoutes, "images": ImageRoutes}


def serve(source, *, host: str = "127.0.0.1", port: int = 8000, max_rows: int = DEFAULT_MAX_ROWS, console=QUIET) -> None:
    """Load and warm up the run at ``source``, then serve it on ``host:port`` until interrupted."""
    require_serving()
    import uvicorn

    app = create_app(source, max_rows=max_rows)
    gc.freeze()  # the loaded libraries and model are permanent: keep them out of every collection (shorter pauses)
    console.say(f"serving {source} on http://{host}:{port} (API documentation at /docs); Ctrl-C stops")
    # No proxy in front of a loopback server: skip uvicorn's proxy-header middleware on every request.
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False, proxy_headers=False)

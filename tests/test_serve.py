"""dlw serve: a real uvicorn server on loopback, real HTTP requests, a served penguins run.

The functional tests run the server in a thread of this process; the load test and the CLI
test run ``python -m dlw serve`` as its own process, as a user would.
"""

from __future__ import annotations

import asyncio
import importlib.util
import socket
import threading
import time

import numpy as np
import pandas as pd
import pytest

from conftest import bench_module

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

ROW = {"island": "Biscoe", "bill_length_mm": 45.1, "bill_depth_mm": 14.5, "flipper_length_mm": 215.0, "body_mass_g": 5000.0, "sex": "female", "year": 2008}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(penguins_run):
    """The penguins run served by uvicorn in a thread on 127.0.0.1 (max 50 rows a request); yields an httpx client."""
    import uvicorn

    from dlw.serve import create_app

    app = create_app(penguins_run.path, max_rows=50)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        yield client
    server.should_exit = True
    thread.join(timeout=10)


def test_one_row_gets_a_prediction_probabilities_and_an_ood_flag(served, penguins_run):
    response = served.post("/predict", json={"rows": [ROW]})
    assert response.status_code == 200, response.text
    (answer,) = response.json()["predictions"]
    assert answer["prediction"] in penguins_run.problem.classes
    assert set(answer["probabilities"]) == set(penguins_run.problem.classes)
    assert sum(answer["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    assert isinstance(answer["ood"], bool) and answer["ood_score"] >= 0
    # The same answer as the Python API's predict on the same row.
    expected = penguins_run.predict(pd.DataFrame([ROW])).iloc[0]
    assert answer["prediction"] == expected["prediction"]
    for name, p in answer["probabilities"].items():
        assert p == pytest.approx(float(expected[f"prob_{name}"]), abs=1e-5)
    assert answer["ood"] == bool(expected["ood"]) and answer["ood_score"] == pytest.approx(float(expected["ood_score"]), abs=1e-3)


def test_served_test_split_equals_the_runs_own_test_predictions(served, penguins_run):
    """Every test row through HTTP: the same predictions, probabilities and ood flags as the run wrote."""
    rows = pd.read_csv(penguins_run.path / "test_predictions.csv")
    columns = [f.name for f in penguins_run.schema.features]
    payload = [{c: (None if pd.isna(v) else v) for c, v in zip(columns, values)} for values in rows[columns].itertuples(index=False)]
    answers = [a for start in range(0, len(payload), 50) for a in served.post("/predict", json={"rows": payload[start : start + 50]}).json()["predictions"]]
    assert [a["prediction"] for a in answers] == rows["prediction"].tolist()
    probs = np.array([[a["probabilities"][str(c)] for c in penguins_run.problem.classes] for a in answers])
    expected = rows[[f"prob_{c}" for c in penguins_run.problem.classes]].to_numpy()
    assert np.abs(probs - expected).max() < 1e-5
    assert [a["ood"] for a in answers] == rows["ood"].astype(bool).tolist()


def test_openapi_lists_every_input_column_with_its_type_and_levels(served, penguins_run):
    spec = served.get("/openapi.json").json()
    row = spec["components"]["schemas"]["Row"]
    columns = [f.name for f in penguins_run.schema.features]
    assert sorted(row["properties"]) == sorted(columns) and sorted(row["required"]) == sorted(columns)
    island = row["properties"]["island"]["anyOf"][0]
    assert island["enum"] == ["Biscoe", "Dream", "Torgersen"]
    assert row["properties"]["body_mass_g"]["anyOf"][0]["type"] == "number"
    assert "/predict" in spec["paths"] and "/metadata" in spec["paths"] and "/health" in spec["paths"]
    assert served.get("/docs").status_code == 200


@pytest.mark.parametrize(
    "body, field",
    [
        ({"rows": [{k: v for k, v in ROW.items() if k != "year"}]}, "year"),  # a missing column
        ({"rows": [{**ROW, "body_mass_g": "heavy"}]}, "body_mass_g"),  # a wrong type
        ({"rows": [{**ROW, "island": "Atlantis"}]}, "island"),  # a level never seen in training
        ({"rows": []}, "rows"),  # an empty list
        ({"rows": [ROW] * 51}, "rows"),  # over --max-rows (50 here)
        ({"rows": ROW}, "rows"),  # not a list
        ({}, "rows"),
    ],
)
def test_bad_requests_are_422_naming_the_field(served, body, field):
    response = served.post("/predict", json=body)
    assert response.status_code == 422, response.text
    locations = [error["loc"] for error in response.json()["detail"]]
    assert any(field in loc for loc in locations), locations


def test_malformed_json_and_non_finite_numbers_are_4xx_not_500(served):
    assert served.post("/predict", content=b"{not json", headers={"content-type": "application/json"}).status_code == 422
    response = served.post("/predict", content=b'{"rows": [{"island": "Dream", "bill_length_mm": NaN, "bill_depth_mm": 1, '
                           b'"flipper_length_mm": 1, "body_mass_g": 1, "sex": null, "year": 2008}]}', headers={"content-type": "application/json"})
    assert 400 <= response.status_code < 500


def test_null_is_a_missing_value_and_numbers_for_categories_are_read_as_text(served, penguins_run):
    row = {**ROW, "bill_length_mm": None, "sex": None}
    answer = served.post("/predict", json={"rows": [row]}).json()["predictions"][0]
    expected = penguins_run.predict(pd.DataFrame([row])).iloc[0]
    assert answer["prediction"] == expected["prediction"]
    assert answer["probabilities"]["Adelie"] == pytest.approx(float(expected["prob_Adelie"]), abs=1e-5)


def test_health_and_metadata(served, penguins_run):
    assert served.get("/health").json() == {"status": "ok"}
    meta = served.get("/metadata").json()
    assert meta["task"] == "multiclass" and meta["classes"] == ["Adelie", "Chinstrap", "Gentoo"]
    assert meta["metrics"] == penguins_run.metrics["test"]
    assert meta["verdict"]["outcome"] == penguins_run.metrics["advice"]["outcome"]


def test_concurrent_requests_are_batched_and_each_gets_its_own_answer(served):
    """Requests sent at once are gathered into batches; every client still gets the answer for its own row."""
    import httpx as hx

    masses = [3000.0 + 50 * i for i in range(24)]

    async def ask(client, mass):
        response = await client.post("/predict", json={"rows": [{**ROW, "body_mass_g": mass}]})
        return response.json()["predictions"][0]

    async def all_at_once():
        async with hx.AsyncClient(base_url=str(served.base_url), timeout=30) as client:
            return await asyncio.gather(*(ask(client, m) for m in masses))

    together = asyncio.run(all_at_once())
    alone = [served.post("/predict", json={"rows": [{**ROW, "body_mass_g": m}]}).json()["predictions"][0] for m in masses]
    for a, b in zip(together, alone):
        assert a["prediction"] == b["prediction"]
        assert a["probabilities"] == pytest.approx(b["probabilities"], abs=1e-5)


def test_the_fast_path_answers_as_fastapis_own_route(served, penguins_run):
    """Any body, valid or not: ``application/json`` (the fast path) and ``+json`` (FastAPI's route) agree.

    The fast path must never accept what FastAPI's route refuses, nor answer differently.
    """
    import json

    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    def valid(feature):
        if feature.kind == "categorical":
            return st.none() | st.sampled_from(feature.vocabulary)
        return st.none() | st.integers(-5000, 5000) | st.floats(-1e6, 1e6)

    junk = st.none() | st.booleans() | st.floats() | st.text(max_size=5) | st.sampled_from(["Biscoe", "3", "45.1", "true", ""])
    good_row = st.fixed_dictionaries({f.name: valid(f) for f in penguins_run.schema.features})
    any_row = good_row | st.dictionaries(st.sampled_from(sorted(ROW)), junk) | good_row.flatmap(
        lambda row: st.sampled_from(sorted(row)).flatmap(lambda key: junk.map(lambda v: {**row, key: v})))
    statuses = []

    @given(body=st.fixed_dictionaries({"rows": st.lists(good_row, min_size=1, max_size=4) | st.lists(any_row, max_size=3)})
           | st.dictionaries(st.text(max_size=4), junk, max_size=2))
    @settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def check(body):
        content = json.dumps(body).encode()  # NaN and Infinity as Python writes them: both paths must refuse alike
        fast = served.post("/predict", content=content, headers={"content-type": "application/json"})
        route = served.post("/predict", content=content, headers={"content-type": "application/x-dlw+json"})
        assert (fast.status_code, fast.json()) == (route.status_code, route.json()), body
        statuses.append(fast.status_code)

    check()
    assert statuses.count(200) >= 50 and statuses.count(422) >= 20, statuses


def test_row_encoder_equals_schema_encode(penguins_run):
    from palmerpenguins import load_penguins

    from dlw.serve import RowEncoder

    frame = load_penguins()
    schema = penguins_run.schema
    columns = [f.name for f in schema.features]
    rows = [[None if pd.isna(v) else v for v in values] for values in frame[columns].itertuples(index=False)]
    encoder = RowEncoder(schema)
    assert encoder.fast
    fast = encoder.encode(rows)
    slow, _ = schema.encode(frame)
    encoder.fast = False  # the path a schema with other column kinds takes: Schema.encode on a frame of the rows
    fallback = encoder.encode(rows)
    assert fast.keys() == slow.keys() == fallback.keys()
    for key in slow:
        np.testing.assert_array_equal(fast[key], slow[key])
        np.testing.assert_array_equal(fallback[key], slow[key])


def test_without_the_extra_the_error_names_it(monkeypatch, penguins_run):
    from dlw.errors import DlwError
    from dlw.serve import create_app

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "fastapi" else real(name, *a))
    with pytest.raises(DlwError, match=r"pip install 'dlw\[serve\]'"):
        create_app(penguins_run.path)


@pytest.mark.slow
def test_cli_server_on_loopback_answers_2000_requests_from_16_clients(penguins_run):
    """``dlw serve`` as its own process, bound to 127.0.0.1: 0 errors and a p99 of at most 50 ms."""
    bench = bench_module("serve")
    port = free_port()
    server = bench.start_server(penguins_run.path, port)
    try:
        with socket.socket() as s:  # bound to loopback only: nothing listens on the other addresses
            s.settimeout(2)
            other = socket.gethostbyname(socket.gethostname())
            if not other.startswith("127."):
                assert s.connect_ex((other, port)) != 0
        asyncio.run(bench.hammer(port, requests=200, clients=16, max_seconds=30))
        result = asyncio.run(bench.hammer(port, requests=2000, clients=16, max_seconds=120))
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert result["requests"] == 2000 and result["errors"] == 0, result
    assert result["p99_ms"] <= 50, result


@pytest.mark.slow
def test_schemathesis_finds_no_server_error(served):
    """Generated requests, valid and invalid, against /openapi.json: never a 5xx."""
    schemathesis = pytest.importorskip("schemathesis")
    from hypothesis import HealthCheck, given, settings

    schema = schemathesis.openapi.from_url(f"{served.base_url}/openapi.json")
    statuses: list[int] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        # GET /health and /metadata take no input, so there is nothing invalid to generate for them.
        modes = [schemathesis.GenerationMode.POSITIVE] + ([schemathesis.GenerationMode.NEGATIVE] if operation.method.upper() == "POST" else [])
        for mode in modes:

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None)
            def check(case):
                response = case.call()
                statuses.append(response.status_code)
                assert response.status_code < 500, f"{case.method} {case.path}: {response.status_code} {response.text[:300]}"

            check()
    assert len(statuses) >= 100 and any(s == 422 for s in statuses) and any(s == 200 for s in statuses)


def serve_in_thread(app):
    """``app`` under uvicorn in a daemon thread on a free loopback port; returns ``(server, base_url)``."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    deadline = time.monotonic() + 60
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    return server, f"http://127.0.0.1:{port}"


def test_a_bundle_serves_what_its_run_folder_serves(served, penguins_run, tmp_path):
    from dlw.bundle import write_bundle
    from dlw.serve import create_app

    bundle = write_bundle(penguins_run.path, tmp_path / "penguins.dlw.zip")
    server, url = serve_in_thread(create_app(bundle, max_rows=50, warm_up=False))
    try:
        from_bundle = httpx.post(f"{url}/predict", json={"rows": [ROW]}, timeout=30).json()
    finally:
        server.should_exit = True
    assert from_bundle == served.post("/predict", json={"rows": [ROW]}).json()


def test_regression_answers_carry_no_probabilities(regression_run):
    from dlw.serve import create_app

    run, csv = regression_run
    row = pd.read_csv(csv).drop(columns=["price"]).iloc[0]
    payload = {c: (None if pd.isna(v) else (v.item() if hasattr(v, "item") else v)) for c, v in row.items()}
    server, url = serve_in_thread(create_app(run.path, warm_up=False))
    try:
        answer = httpx.post(f"{url}/predict", json={"rows": [payload]}, timeout=30).json()["predictions"][0]
    finally:
        server.should_exit = True
    assert "probabilities" not in answer and isinstance(answer["prediction"], float)
    expected = run.predict(pd.DataFrame([payload])).iloc[0]
    assert answer["prediction"] == pytest.approx(float(expected["prediction"]), rel=1e-5)


@pytest.mark.slow
def test_image_upload_is_predicted_like_dlw_predict(digits_cnn_run, tmp_path):
    from PIL import Image
    from sklearn.datasets import load_digits

    from dlw.serve import create_app

    digits = load_digits()
    paths = []
    for i in (0, 1, 2):
        path = tmp_path / f"digit{i}.png"
        Image.fromarray((digits.images[i] * 255 / 16).round().astype("uint8")).save(path)
        paths.append(path)
    server, url = serve_in_thread(create_app(digits_cnn_run.path))
    try:
        files = [("files", (p.name, p.read_bytes(), "image/png")) for p in paths]
        response = httpx.post(f"{url}/predict/image", files=files, timeout=60)
        broken = httpx.post(f"{url}/predict/image", files=[("files", ("x.png", b"not an image", "image/png"))], timeout=60)
        spec = httpx.get(f"{url}/openapi.json").json()
    finally:
        server.should_exit = True
    assert response.status_code == 200, response.text
    answers = response.json()["predictions"]
    expected = digits_cnn_run.predict([str(p) for p in paths])
    assert [a["file"] for a in answers] == [p.name for p in paths]
    assert [a["prediction"] for a in answers] == expected["prediction"].astype(str).tolist()
    for a, (_, row) in zip(answers, expected.iterrows()):
        assert a["probabilities"]["0"] == pytest.approx(float(row["prob_0"]), abs=1e-5)
    assert broken.status_code == 422 and "files" in broken.text
    assert "/predict/image" in spec["paths"] and "/predict" not in spec["paths"]

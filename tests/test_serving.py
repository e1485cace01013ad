"""Keel's model server (keel.serving, keel serve): real HTTP on 127.0.0.1, models made by the stages.

A classifier (one-hot, linear) and a regressor (ordinal, histogram gradient boosting) are trained by
ingest -> validate -> preprocess -> train -> evaluate -> publish on a table with missing numbers,
missing categories and a boolean column with gaps, then served from the store.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest
import requests
from click.testing import CliRunner

from keel.contracts import FeatureSpec
from keel.errors import IntegrityError, RegistryError
from keel.registry import Registry
from keel.serve_cli import serve
from keel.serving import (
    MAX_ROWS,
    ServedModel,
    load_folder,
    load_version,
    records_frame,
    serving,
)
from keel.storage import open_store

try:
    from factories import publish_stages, run_stages
except ImportError:  # tests/ imported as a package
    from tests.factories import publish_stages, run_stages

CLASSIFIER, REGRESSOR = "churn", "price"
ROOT = Path(__file__).resolve().parents[1]


def table(rows: int = 240) -> pd.DataFrame:
    rng = np.random.default_rng(7)
    frame = pd.DataFrame({
        "age": rng.integers(18, 80, rows).astype(float),
        "visits": rng.integers(0, 30, rows),
        "city": rng.choice(["lyon", "oslo", "rome"], rows).astype(object),
        "member": rng.choice([True, False], rows).astype(object),
    })
    frame.loc[rng.choice(rows, 25, replace=False), "age"] = np.nan
    frame.loc[rng.choice(rows, 30, replace=False), "city"] = None
    frame.loc[rng.choice(rows, 20, replace=False), "member"] = None
    age = frame.age.fillna(45)
    frame["churn"] = np.where(age + 8 * (frame.city == "oslo") + rng.normal(0, 8, rows) > 50,
                              "yes", "no")
    frame["price"] = age * 3 + frame.visits + 20 * (frame.city == "rome") + rng.normal(0, 5, rows)
    return frame


def build_version(folder: Path, store: str, model: str, target: str, estimator: str,
                  params: str = "{}") -> dict[str, str]:
    """The stages, for real, then publish and make the version production; artifact paths."""
    folder.mkdir(parents=True, exist_ok=True)
    frame = table().drop(columns=[c for c in ("churn", "price") if c != target])
    frame.to_csv(folder / "table.csv", index=False)
    p = run_stages(folder, folder / "table.csv", store, model, target, estimator=estimator,
                   params=params, bootstrap_rounds=20)
    published = publish_stages(p, store, model)
    Registry(open_store(store), model).move_alias(
        published.version, expected_generation=0, action="promote", reason="test")
    return p


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from threadpoolctl import threadpool_limits

    root = tmp_path_factory.mktemp("serving")
    store = str(root / "store")
    with threadpool_limits(limits=1):
        return {"store": store,
                CLASSIFIER: build_version(root / "c", store, CLASSIFIER, "churn", "linear"),
                REGRESSOR: build_version(root / "r", store, REGRESSOR, "price",
                                         "hist_gradient_boosting", '{"max_iter": 30}')}


@pytest.fixture(scope="module")
def classifier(built: dict[str, Any]) -> ServedModel:
    return load_version(built["store"], CLASSIFIER)


@pytest.fixture(scope="module")
def regressor(built: dict[str, Any]) -> ServedModel:
    return load_version(built["store"], REGRESSOR)


@pytest.fixture
def server(classifier: ServedModel) -> Any:
    with serving(classifier, log=io.StringIO()) as running:
        yield running


def training_rows(built: dict[str, Any], model: str, rows: int = 40) -> pd.DataFrame:
    """Rows as the pipeline was trained on them (read from the stage's Parquet), with gaps."""
    frame = pd.read_parquet(built[model]["train.parquet"])
    spec = FeatureSpec.read(built[model]["spec.json"])
    gappy = frame[frame[spec.features].isna().any(axis=1)].head(rows // 2)
    return pd.concat([gappy, frame.head(rows - len(gappy))])[spec.features]


def as_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """JSON records as a client sends them: a missing value is null."""
    return json.loads(frame.to_json(orient="records"))


def post(url: str, body: Any) -> requests.Response:
    data = body if isinstance(body, bytes | str) else json.dumps(body)
    return requests.post(url, data=data, headers={"Content-Type": "application/json"},
                         timeout=30)


# -- predictions ------------------------------------------------------------------------------
def test_v1_records_get_what_the_pipeline_predicts_in_python(built, server):
    rows = training_rows(built, CLASSIFIER)
    assert rows.city.isna().any() and rows.age.isna().any() and rows.member.isna().any()
    pipeline = joblib.load(built[CLASSIFIER]["model.joblib"])
    answer = post(f"{server.url}/v1/models/churn:predict",
                  {"instances": as_records(rows), "parameters": {"probabilities": True}})
    assert answer.status_code == 200, answer.text
    doc = answer.json()
    assert doc["predictions"] == pipeline.predict(rows).tolist()
    assert doc["classes"] == ["no", "yes"]
    np.testing.assert_allclose(doc["probabilities"], pipeline.predict_proba(rows), rtol=1e-12)
    # A null category reaches the model as training's missing value, not as the text "None".
    nulls = rows[rows.city.isna()].head(1)
    as_text = nulls.assign(city="None")
    assert not np.allclose(pipeline.predict_proba(nulls), pipeline.predict_proba(as_text))


def test_v1_lists_in_column_order_columns_and_the_inputs_alias_agree(built, server, classifier):
    rows = training_rows(built, CLASSIFIER, 12)
    names = [c.name for c in classifier.columns]
    records = as_records(rows)
    url = f"{server.url}/v1/models/churn:predict"
    expected = post(url, {"instances": records}).json()["predictions"]
    as_lists = [[record[n] for n in names] for record in records]
    assert post(url, {"instances": as_lists}).json()["predictions"] == expected
    assert post(url, {"inputs": records}).json()["predictions"] == expected
    columns = {n: [r[n] for r in records] for n in reversed(names)}
    assert post(url, {"instances": columns}).json()["predictions"] == expected
    shuffled = [dict(reversed(list(r.items())), extra="ignored") for r in records]
    assert post(url, {"instances": shuffled}).json()["predictions"] == expected


def test_v2_pd_columns_in_any_order_with_probabilities(built, server, classifier):
    rows = training_rows(built, CLASSIFIER, 10)
    pipeline = joblib.load(built[CLASSIFIER]["model.joblib"])
    records = as_records(rows)
    datatypes = {c.name: c.datatype for c in classifier.columns}
    inputs = [{"name": name, "shape": [len(records)], "datatype": datatypes[name],
               "data": [r[name] for r in records]} for name in reversed(list(datatypes))]
    answer = post(f"{server.url}/v2/models/churn/infer",
                  {"id": "req-1", "inputs": inputs, "parameters": {"content_type": "pd"},
                   "outputs": [{"name": "predict"}, {"name": "predict_proba"}]})
    assert answer.status_code == 200, answer.text
    doc = answer.json()
    assert (doc["model_name"], doc["model_version"], doc["id"]) == ("churn", "1", "req-1")
    predict, proba = doc["outputs"]
    assert predict == {"name": "predict", "shape": [10], "datatype": "BYTES",
                       "data": pipeline.predict(rows).tolist()}
    assert proba["shape"] == [10, 2] and proba["parameters"] == {"classes": ["no", "yes"]}
    np.testing.assert_allclose(np.reshape(proba["data"], (10, 2)), pipeline.predict_proba(rows))
    # One 2-D tensor without content_type: rows in fit-time column order (flat, row-major).
    flat = [r[c.name] for r in records for c in classifier.columns]
    matrix = post(f"{server.url}/v2/models/churn/versions/1/infer",
                  {"inputs": [{"name": "x", "shape": [10, len(classifier.columns)],
                               "datatype": "BYTES", "data": flat}]}).json()
    assert matrix["outputs"][0]["data"] == predict["data"] and matrix["id"]


def test_the_regressor_over_v1_and_v2(built, regressor):
    rows = training_rows(built, REGRESSOR, 20)
    pipeline = joblib.load(built[REGRESSOR]["model.joblib"])
    expected = pipeline.predict(rows)
    records = as_records(rows)
    with serving(regressor, log=None) as running:
        v1 = post(f"{running.url}/v1/models/price:predict", {"instances": records}).json()
        np.testing.assert_allclose(v1["predictions"], expected, rtol=1e-12)
        inputs = [{"name": c.name, "shape": [20], "datatype": c.datatype,
                   "data": [r[c.name] for r in records]} for c in regressor.columns]
        v2 = post(f"{running.url}/v2/models/price/infer",
                  {"inputs": inputs, "parameters": {"content_type": "pd"}}).json()
        assert v2["outputs"][0]["datatype"] == "FP64"
        np.testing.assert_allclose(v2["outputs"][0]["data"], expected, rtol=1e-12)
        refused = post(f"{running.url}/v1/models/price:predict",
                       {"instances": records, "parameters": {"probabilities": True}})
        assert refused.status_code == 400 and "regressor" in refused.json()["error"]


def test_a_lone_null_does_not_change_how_other_rows_are_read(built, classifier):
    # Gaps in one row: the other rows must keep their values and types.
    rows = as_records(training_rows(built, CLASSIFIER, 6))
    alone = [classifier.predict(records_frame(classifier.columns, [r])) for r in rows]
    rows[0].update(visits=None, city=None, member=None)
    together = classifier.predict(records_frame(classifier.columns, rows))
    assert together[1:] == [a[0] for a in alone[1:]]


# -- bad requests -----------------------------------------------------------------------------
GOOD = {"age": 40, "visits": 3, "city": "oslo", "member": True}


@pytest.mark.parametrize("path, body, status, words", [
    (":predict", b"{not json", 400, ["not JSON"]),
    (":predict", {"rows": [GOOD]}, 400, ["'instances'"]),
    (":predict", {"instances": []}, 400, ["no rows"]),
    (":predict", {"instances": [GOOD, {k: v for k, v in GOOD.items() if k != "city"}]}, 400,
     ["'city'", "instances[1]"]),
    (":predict", {"instances": [{**GOOD, "age": "forty"}]}, 400,
     ["'age'", "a number or null", "'forty'", "instances[0]"]),
    (":predict", {"instances": [{**GOOD, "visits": True}]}, 400, ["'visits'", "True"]),
    (":predict", {"instances": [{**GOOD, "city": ["oslo"]}]}, 400, ["'city'", "a list"]),
    (":predict", {"instances": [[40, 3]]}, 400, ["instances[0] has 2 values", "4"]),
    (":predict", {"instances": ["oslo"]}, 400, ["instances[0]"]),
    (":predict", {"instances": [GOOD], "parameters": {"probabilities": "yes"}}, 400,
     ["'probabilities'"]),
    (":predict", {"instances": [GOOD] * (MAX_ROWS + 1)}, 413, [str(MAX_ROWS + 1), str(MAX_ROWS)]),
    ("/infer", {"inputs": [{"name": "age", "shape": [1], "datatype": "FP64", "data": [40]}],
                "parameters": {"content_type": "pd"}}, 400, ["'visits' is missing"]),
    ("/infer", {"inputs": [{"name": n, "shape": [1], "datatype": "BYTES", "data": [v]}
                           for n, v in {**GOOD, "visits": "3"}.items()],
                "parameters": {"content_type": "pd"}}, 400,
     ["'visits'", "'3'", "data[0] of input 'visits'"]),
    ("/infer", {"inputs": [{"name": n, "shape": [1], "datatype": "FP64", "data": [v]}
                           for n, v in GOOD.items()], "outputs": [{"name": "shap"}]}, 400,
     ["'shap'"]),
])
def test_a_bad_request_is_a_4xx_naming_the_problem(server, path, body, status, words):
    url = (f"{server.url}/v1/models/churn:predict" if path == ":predict"
           else f"{server.url}/v2/models/churn/infer")
    answer = post(url, body)
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert all(word in error for word in words), error
    assert "Traceback" not in answer.text
    assert post(url.replace("/churn", "/other"), {"instances": [GOOD]}).status_code == 404


V2_GOOD = [{"name": n, "shape": [1], "datatype": "BYTES", "data": [v]} for n, v in GOOD.items()]


@pytest.mark.parametrize("path, body, status, words", [
    # values no float64 holds, and JSON too deep for the parser: 400s, not 500s
    (":predict", '{"instances": [{"age": 1%s, "visits": 3, "city": "oslo", "member": true}]}'
     % ("0" * 400), 400, ["'age'", "a number or null", "instances[0]"]),
    (":predict", {"instances": [{**GOOD, "visits": -(10 ** 400)}]}, 400, ["'visits'"]),
    (":predict", "[" * 100_000 + "]" * 100_000, 400, ["nested too deeply"]),
    (":predict", {"instances": [GOOD], "inputs": [GOOD]}, 400, ["both 'instances' and 'inputs'"]),
    (":predict", {"instances": [None]}, 400, ["instances[0] is null"]),
    # V2 tensors whose shape, datatype or name contradicts their data
    ("/infer", {"inputs": [{**t, "shape": [3]} for t in V2_GOOD]}, 400,
     ["Input 'age' has shape [3]", "3 values", "'data' has 1"]),
    ("/infer", {"inputs": [{**t, "datatype": "FLOAT"} for t in V2_GOOD]}, 400,
     ["'datatype' must be a KServe V2 datatype", "'FLOAT'"]),
    ("/infer", {"inputs": [{**t, "datatype": "BOOL"} for t in V2_GOOD]}, 400,
     ["Input 'age' has datatype BOOL", "got 40 at data[0]"]),
    ("/infer", {"inputs": [{**t, "datatype": "INT64"} for t in V2_GOOD if t["name"] == "city"]
     + V2_GOOD, "parameters": {"content_type": "pd"}}, 400, ["datatype INT64", "'oslo'"]),
    ("/infer", {"inputs": [*V2_GOOD, V2_GOOD[0]]}, 400, ["Two inputs are named 'age'"]),
    ("/infer", {"inputs": V2_GOOD, "parameters": {"content_type": ["pd"]}}, 400,
     ["'content_type'", "a list"]),
    ("/infer", {"inputs": V2_GOOD, "outputs": [{}]}, 400, ["An output has no 'name'"]),
    ("/infer", {"inputs": [{"name": "x", "datatype": "FP64", "data": 5}]}, 400,
     ["no 'data' list"]),
    ("/infer", {"inputs": [{"name": "x", "shape": [2, 4], "datatype": "BYTES",
                            "data": [[40, 3, "oslo", True], 5]}]}, 400, ["shape [2, 4]"]),
])
def test_more_bad_requests_are_4xx_naming_the_problem(server, path, body, status, words):
    test_a_bad_request_is_a_4xx_naming_the_problem(server, path, body, status, words)
    assert requests.get(f"{server.url}/v2/health/ready", timeout=10).status_code == 200


def test_v2_datatypes_that_describe_the_data_are_served(server, classifier):
    # The README's example: each column with the datatype of its values, nulls allowed.
    inputs = [{"name": "age", "shape": [2], "datatype": "FP64", "data": [40, None]},
              {"name": "visits", "shape": [2, 1], "datatype": "INT64", "data": [[3], [None]]},
              {"name": "city", "shape": [2], "datatype": "BYTES", "data": ["oslo", None]},
              {"name": "member", "shape": [2], "datatype": "BOOL", "data": [True, None]}]
    answer = post(f"{server.url}/v2/models/churn/infer",
                  {"inputs": inputs, "parameters": {"content_type": "pd"}})
    assert answer.status_code == 200, answer.text
    rows = [{"age": 40, "visits": 3, "city": "oslo", "member": True},
            {"age": None, "visits": None, "city": None, "member": None}]
    assert answer.json()["outputs"][0]["data"] == classifier.predict(
        records_frame(classifier.columns, rows))


def raw_request(url: str, head: bytes, body: bytes = b"", timeout: float = 10) -> bytes:
    """One request written by hand on a new connection; everything the server answers."""
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=timeout) as sock:
        sock.sendall(head + b"\r\n\r\n" + body)
        sock.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    return received


def test_http_level_mistakes_are_json_4xx_and_the_server_stays_up(server):
    predict = b"POST /v1/models/churn:predict HTTP/1.1\r\nHost: x\r\n"
    body = json.dumps({"instances": [GOOD]}).encode()
    # A negative Content-Length, a compressed body, and http.server's own refusals (a URL too
    # long, an unknown method) are one JSON line with a 4xx, never a 500 or an HTML page.
    answers = {
        "negative length": raw_request(server.url, predict + b"Content-Length: -5", b"{}"),
        "gzip": raw_request(server.url, predict + b"Content-Encoding: gzip\r\n"
                            + f"Content-Length: {len(body)}".encode(), body),
        "long url": raw_request(server.url, b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\nHost: x"),
        "header too long": raw_request(server.url, b"GET / HTTP/1.1\r\nX-Big: " + b"b" * 70_000),
    }
    expected = {"negative length": (b"400", b"Content-Length '-5'"),
                "gzip": (b"415", b"Content-Encoding 'gzip' is not accepted"),
                "long url": (b"414", b"URI Too Long"),
                "header too long": (b"431", b"Line too long")}
    for name, answer in answers.items():
        head, _, payload = answer.partition(b"\r\n\r\n")
        status, words = expected[name]
        assert head.split(b" ")[1] == status, (name, answer[:300])
        assert b"application/json" in head and words in json.loads(payload)["error"].encode(), (
            name, payload)
    for method in ("PUT", "DELETE", "PATCH", "OPTIONS"):
        answer = requests.request(method, f"{server.url}/v1/models/churn:predict", timeout=10)
        assert answer.status_code == 405 and answer.headers["Allow"] == "GET, POST"
        assert method in answer.json()["error"]
    got = requests.get(f"{server.url}/v1/models/churn:predict", timeout=10)
    assert got.status_code == 405 and got.headers["Allow"] == "POST" and "POST" in got.json()[
        "error"]
    assert requests.get(f"{server.url}/v2/health/ready", timeout=10).json() == {"ready": True}


def test_a_chunked_body_is_read_like_one_with_a_length(server):
    body = json.dumps({"instances": [GOOD, GOOD]}).encode()
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 7]), body[i:i + 7])
                      for i in range(0, len(body), 7)) + b"0\r\n\r\n"
    answer = raw_request(server.url, b"POST /v1/models/churn:predict HTTP/1.1\r\nHost: x\r\n"
                         b"Transfer-Encoding: chunked\r\nConnection: close", chunks)
    head, _, payload = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), answer[:300]
    assert len(json.loads(payload)["predictions"]) == 2
    # requests sends a generator body chunked
    streamed = requests.post(f"{server.url}/v1/models/churn:predict",
                             data=(body[i:i + 5] for i in range(0, len(body), 5)), timeout=10)
    assert streamed.status_code == 200 and len(streamed.json()["predictions"]) == 2
    bad = raw_request(server.url, b"POST /v1/models/churn:predict HTTP/1.1\r\nHost: x\r\n"
                      b"Transfer-Encoding: chunked", b"zz\r\n{}\r\n0\r\n\r\n")
    assert bad.split(b" ")[1] == b"400" and b"chunk size" in bad


def test_a_body_shorter_than_its_length_is_a_408_not_a_500(classifier, monkeypatch):
    from keel.serving import _Handler

    monkeypatch.setattr(_Handler, "timeout", 0.5)
    log = io.StringIO()
    with serving(classifier, log=log) as running:
        import socket
        from urllib.parse import urlsplit

        parts = urlsplit(running.url)
        with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
            sock.sendall(b"POST /v1/models/churn:predict HTTP/1.1\r\nHost: x\r\n"
                         b"Content-Length: 100\r\n\r\n{}")  # 98 bytes never come
            answer = b""
            while chunk := sock.recv(65536):  # headers and body may come apart: read to close
                answer += chunk
    assert answer.startswith(b"HTTP/1.1 408"), answer[:300]
    assert b"did not arrive" in answer and "408 rows=0" in log.getvalue()


def test_a_percent_encoded_model_name_is_the_same_route(server):
    body = json.dumps({"instances": [GOOD]}).encode()  # by hand: requests would decode %63
    answer = raw_request(server.url, b"POST /v1/models/%63hurn:predict HTTP/1.1\r\nHost: x\r\n"
                         b"Connection: close\r\nContent-Length: " + str(len(body)).encode(), body)
    assert answer.startswith(b"HTTP/1.1 200"), answer[:300]


def test_many_clients_connecting_at_once_are_queued_not_reset(classifier):
    # socketserver listens with a backlog of 5: clients beyond that were dropped or reset while
    # the server was busy (seen with 16 concurrent clients). Connect 64 before it accepts any.
    import socket

    from keel.serving import make_server

    server = make_server(classifier, log=None)
    host, port = server.server_address[:2]
    sockets = []
    try:
        for _ in range(64):
            sock = socket.socket()
            sock.settimeout(0.5)
            sock.connect((host, port))  # times out when the kernel's queue is full
            sockets.append(sock)
    finally:
        for sock in sockets:
            sock.close()
        server.server_close()
    assert len(sockets) == 64


def test_unknown_models_and_routes_are_404s_naming_the_served_model(server):
    answer = post(f"{server.url}/v1/models/credit:predict", {"instances": [GOOD]})
    assert answer.status_code == 404
    assert "'credit'" in answer.json()["error"] and "'churn' version 1" in answer.json()["error"]
    assert requests.get(f"{server.url}/v2/models/churn/versions/9", timeout=10).status_code == 404
    assert requests.get(f"{server.url}/nowhere", timeout=10).status_code == 404
    wrong_method = post(f"{server.url}/v1/models/churn", {})  # a GET route: 405, not 404
    assert wrong_method.status_code == 405 and wrong_method.headers["Allow"] == "GET"


def test_an_unexpected_failure_is_a_500_of_one_line(classifier):
    class Broken:
        feature_names_in_ = np.array([c.name for c in classifier.columns], dtype=object)

        def predict(self, frame):
            raise RuntimeError("boom\nsecret internals")

    broken = ServedModel(name="churn", version=1, pipeline=Broken(), columns=classifier.columns,
                         task="classification")
    log = io.StringIO()
    with serving(broken, log=log) as running:
        answer = post(f"{running.url}/v1/models/churn:predict", {"instances": [GOOD]})
    assert answer.status_code == 500
    assert answer.json() == {"error": "Internal error: RuntimeError: boom\\nsecret internals"}
    assert "POST /v1/models/churn:predict 500 rows=0" in log.getvalue()


def test_each_request_is_one_log_line(classifier):
    log = io.StringIO()
    with serving(classifier, log=log) as running:
        post(f"{running.url}/v1/models/churn:predict", {"instances": [GOOD, GOOD]})
        post(f"{running.url}/v1/models/churn:predict", {"instances": []})
    first, second = log.getvalue().splitlines()
    assert first.startswith("POST /v1/models/churn:predict 200 rows=2 ") and first.endswith("ms")
    assert second.startswith("POST /v1/models/churn:predict 400 rows=0 ")


# -- health, readiness, metadata --------------------------------------------------------------
def test_health_readiness_and_metadata(server):
    def get(path: str) -> Any:
        answer = requests.get(f"{server.url}{path}", timeout=10)
        assert answer.status_code == 200, (path, answer.text)
        return answer.json()

    assert get("/v2/health/live") == {"live": True}
    assert get("/v2/health/ready") == {"ready": True}
    assert get("/v1/models/churn") == {"name": "churn", "ready": True}
    assert get("/v2/models/churn/ready") == {"name": "churn", "ready": True}
    assert get("/v1/models") == {"models": ["churn"]}
    meta = get("/v2/models/churn")
    assert (meta["name"], meta["versions"], meta["platform"]) == ("churn", ["1"], "sklearn")
    assert meta["inputs"] == [{"name": "age", "datatype": "FP64", "shape": [-1]},
                              {"name": "visits", "datatype": "FP64", "shape": [-1]},
                              {"name": "city", "datatype": "BYTES", "shape": [-1]},
                              {"name": "member", "datatype": "BYTES", "shape": [-1]}]
    assert [o["name"] for o in meta["outputs"]] == ["predict", "predict_proba"]
    assert get("/v2/models/churn/versions/1")["name"] == "churn"


# -- loading ----------------------------------------------------------------------------------
def damaged_copy(built: dict[str, Any], tmp_path: Path) -> str:
    import shutil

    store = tmp_path / "store"
    shutil.copytree(built["store"], store)
    target = store / "registry" / "churn" / "versions" / "1" / "model.joblib"
    target.write_bytes(target.read_bytes()[:-10] + b"0123456789")
    return str(store)


def test_a_damaged_model_is_refused_before_loading(built, tmp_path):
    store = damaged_copy(built, tmp_path)
    with pytest.raises(IntegrityError, match="sha256.*will not be loaded"):
        load_version(store, CLASSIFIER)
    result = CliRunner().invoke(serve, ["--store", store, "--model", "churn", "--port", "0"])
    assert result.exit_code == 1
    assert "keel: error: [registry]" in result.output and "sha256" in result.output
    assert "Serving" not in result.output


def test_a_version_must_exist_and_production_must_be_set(built, tmp_path):
    with pytest.raises(RegistryError, match="no version 7"):
        load_version(built["store"], CLASSIFIER, 7)
    assert load_version(built["store"], CLASSIFIER, 1).version == 1
    store = tmp_path / "store"
    import shutil

    shutil.copytree(built["store"], store)
    (store / "registry" / "churn" / "aliases" / "production.json").unlink()
    for event in (store / "registry" / "churn" / "events").iterdir():
        event.unlink()
    with pytest.raises(RegistryError, match="no production version"):
        load_version(str(store), CLASSIFIER)
    result = CliRunner().invoke(serve, ["--store", str(store), "--port", "0"])
    assert result.exit_code == 1 and "holds 2 models" in result.output


def test_a_version_loads_from_a_local_folder_checked_against_its_manifest(built, tmp_path):
    registry = Registry(open_store(built["store"]), CLASSIFIER)
    manifest = registry.manifest(1)
    for name in ("model.joblib", "schema.json", "feature_spec.json"):
        registry.download_verified(1, name, tmp_path / name)
    served = load_folder(tmp_path, manifest.to_dict())
    assert (served.name, served.version) == ("churn", 1)
    assert [c.name for c in served.columns] == ["age", "visits", "city", "member"]
    (tmp_path / "schema.json").write_text((tmp_path / "schema.json").read_text() + " ")
    with pytest.raises(IntegrityError, match="schema.json has sha256"):
        load_folder(tmp_path, manifest)


# -- keel serve -------------------------------------------------------------------------------
def test_keel_serve_answers_then_stops_on_sigint(built):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-c", "from keel.serve_cli import serve; serve()", "--store",
         built["store"], "--model", "churn", "--host", "127.0.0.1", "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    try:
        line = process.stdout.readline()
        assert line.startswith("Serving model 'churn' version 1 at http://127.0.0.1:"), (
            line, process.stderr.read() if process.poll() is not None else "")
        assert "(V1 /v1/models/churn:predict, V2 /v2/models/churn/infer)" in line
        url = line.split(" at ")[1].split()[0]
        answer = post(f"{url}/v1/models/churn:predict", {"instances": [GOOD]})
        assert answer.status_code == 200 and answer.json()["predictions"][0] in ("yes", "no")
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=20) == 0
        errors = process.stderr.read()
        assert "POST /v1/models/churn:predict 200 rows=1" in errors
        assert "Stopped serving model 'churn'." in errors and "Traceback" not in errors
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()



def test_keel_serve_model_dir_serves_a_version_folder_as_kserve_mounts_it(built, tmp_path):
    # KServe's storage initializer copies the version folder (the storageUri) to /mnt/models;
    # the ServingRuntime's container runs `keel serve --model-dir /mnt/models --model NAME`.
    import shutil

    mounted = tmp_path / "mnt-models"
    shutil.copytree(Path(built["store"]) / "registry" / "churn" / "versions" / "1", mounted)
    process = subprocess.Popen(
        [sys.executable, "-c", "from keel.serve_cli import serve; serve()", "--model-dir",
         str(mounted), "--model", "churn-isvc", "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        line = process.stdout.readline()
        assert line.startswith("Serving model 'churn-isvc' version 1 at "), (
            line, process.stderr.read() if process.poll() is not None else "")
        url = line.split(" at ")[1].split()[0]
        answer = post(f"{url}/v1/models/churn-isvc:predict", {"instances": [GOOD]})
        assert answer.status_code == 200 and answer.json()["predictions"][0] in ("yes", "no")
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    (mounted / "model.joblib").write_bytes(b"not the model")  # damaged: never served
    refused = subprocess.run(
        [sys.executable, "-c", "from keel.serve_cli import serve; serve()", "--model-dir",
         str(mounted), "--port", "0"], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert refused.returncode == 1 and "sha256" in refused.stderr

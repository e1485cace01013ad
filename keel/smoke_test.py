"""Golden rows and the serving smoke test: a version answers over HTTP what it answered in training.

:func:`golden_rows` samples rows of the training frame and records the fitted pipeline's answers
on those rows as training read them (the in-process answers), and the rows as JSON.
:func:`smoke_test` loads a published version the way the
server does (sha256 checked), serves it on loopback, sends the rows through the KServe V1
protocol over real HTTP and requires the same answers; :func:`endpoint_smoke_test` does the same
against a server already running (a deployed ``InferenceService``). A failed smoke test is a
:class:`~keel.contracts.SmokeTest` with ``passed`` False and the reason, never an exception.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from keel.contracts import FeatureSpec, GoldenRows, SmokeTest
from keel.errors import KeelError, one_line
from keel.serving import columns_of, json_ready, load_version, serving

SINGLE_ROW_REQUESTS = 5  # golden rows also sent one per request: an answer must not depend on
#: the other rows of the batch (a null in one row must not change how the others are read)
REL_TOLERANCE = 1e-9  # regression values and probabilities: relative difference allowed
ABS_TOLERANCE = 1e-12  # ... and absolute, for values near zero
TIMEOUT = 30.0  # seconds per request


def golden_rows(pipeline: Any, frame: pd.DataFrame, features: FeatureSpec, *, rows: int = 20,
                seed: int = 0) -> GoldenRows:
    """A seeded sample of the training frame's feature columns, and the pipeline's answers.

    The sample prefers a row of each class (classification) and rows with missing values, when
    there are some; rows holding infinite numbers are left out (JSON has no infinity). The
    answers are the pipeline's on the training frame's own rows (what it predicts in process),
    so a server that reads the JSON records differently from training fails the smoke test.
    """
    order = getattr(pipeline, "feature_names_in_", None)
    columns = columns_of(features, {name: str(frame[name].dtype) for name in features.features},
                         None if order is None else list(order))
    names = [c.name for c in columns]
    chosen = _sample(frame, features, names, rows, seed)
    records = [{name: json_ready(frame.at[index, name]) for name in names} for index in chosen]
    served = frame.loc[chosen, names]  # the rows as training read them, not as a server would
    predictions = [json_ready(v) for v in pipeline.predict(served).tolist()]
    classes = probabilities = None
    if features.task == "classification" and hasattr(pipeline, "predict_proba"):
        classes = [json_ready(c) for c in pipeline.classes_]
        probabilities = [[float(p) for p in row]
                         for row in pipeline.predict_proba(served).tolist()]
    return GoldenRows(columns=names, rows=records, predictions=predictions, classes=classes,
                      probabilities=probabilities)


def _sample(frame: pd.DataFrame, spec: FeatureSpec, names: list[str], rows: int,
            seed: int) -> list[Any]:
    """Index labels of the sample: a row per class, rows with gaps, then random rows."""
    rng = np.random.default_rng(seed)
    gaps = frame[names].isna().to_numpy()
    numeric = [n for n in names if n in spec.numeric]
    usable = np.ones(len(frame), dtype=bool)
    if numeric:
        values = frame[numeric].to_numpy(dtype=np.float64, na_value=np.nan)
        usable = ~np.isinf(values).any(axis=1)
    order = rng.permutation(len(frame))
    order = order[usable[order]]
    chosen: list[int] = []

    def take(candidates: np.ndarray[Any, Any], most: int) -> None:
        for position in candidates[: most + len(chosen)].tolist():
            if len(chosen) >= rows or most <= 0:
                return
            if position not in chosen:
                chosen.append(position)
                most -= 1

    if spec.task == "classification" and spec.target in frame.columns:
        target = frame[spec.target].to_numpy()[order]
        for label in sorted(pd.unique(target[~pd.isna(target)]), key=str):
            take(order[target == label], 1)
    for j in range(len(names)):  # a row missing each column that has gaps
        take(order[gaps[order, j]], 1)
    take(order[gaps[order].any(axis=1)], max(rows // 4, 1))
    take(order, rows)
    return list(frame.index[chosen])


def smoke_test(store: str, model: str, version: int, golden: GoldenRows,
               timeout: float = TIMEOUT) -> SmokeTest:
    """Serve ``version`` on loopback with Keel's model server and check its golden rows.

    Loading verifies the files' sha256 like ``keel serve``: a damaged version fails the smoke
    test (``passed`` False, the reason), as do an HTTP error and a different answer.
    """
    try:
        served = load_version(store, model, version)
    except KeelError as exc:
        return SmokeTest(passed=False, rows=0, where="",
                         reason=one_line(f"version {version} of {model!r} could not be loaded "
                                         f"for serving: {exc.args[0]}", 600))
    with serving(served, "127.0.0.1", 0, log=None) as server:
        return endpoint_smoke_test(server.url, served.name, golden, timeout)


def endpoint_smoke_test(url: str, model: str, golden: GoldenRows,
                        timeout: float = TIMEOUT) -> SmokeTest:
    """Send the golden rows to a running server (``http://host:port``) and compare the answers.

    The rows go in one V1 ``:predict`` request (with probabilities for a classifier), then the
    first :data:`SINGLE_ROW_REQUESTS` one per request; ``latency_ms`` is the slowest request's.
    """
    import requests

    endpoint = f"{url.rstrip('/')}/v1/models/{model}:predict"
    latencies: list[float] = []

    def result(reason: str) -> SmokeTest:
        return SmokeTest(passed=not reason, reason=one_line(reason, 600) if reason else "",
                         rows=len(golden.rows), where=endpoint,
                         latency_ms=round(max(latencies), 3) if latencies else None)

    batches = [list(range(len(golden.rows)))]
    batches += [[i] for i in range(min(SINGLE_ROW_REQUESTS, len(golden.rows)))]
    with requests.Session() as session:
        for batch in batches:
            body: dict[str, Any] = {"instances": [golden.rows[i] for i in batch]}
            if golden.probabilities is not None:
                body["parameters"] = {"probabilities": True}
            started = time.perf_counter()
            try:
                response = session.post(endpoint, json=body, timeout=timeout)
                latencies.append((time.perf_counter() - started) * 1000)
                answer = response.json()
            except requests.RequestException as exc:
                return result(f"the request to {endpoint} failed: {type(exc).__name__}: {exc}")
            except ValueError:
                return result(f"{endpoint} answered HTTP {response.status_code} with a body that "
                              f"is not JSON: {response.text[:200]!r}")
            if response.status_code != 200:
                error = answer.get("error") if isinstance(answer, dict) else answer
                return result(f"{endpoint} answered HTTP {response.status_code}: {error}")
            problem = compare(golden, batch, answer)
            if problem:
                return result(problem)
    return result("")


def _same(expected: Any, got: Any, numeric: bool) -> bool:
    if numeric and _number(expected) and _number(got):
        return math.isclose(expected, got, rel_tol=REL_TOLERANCE, abs_tol=ABS_TOLERANCE)
    return type(expected) is type(got) and expected == got or (
        _number(expected) and _number(got) and expected == got)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def compare(golden: GoldenRows, batch: Sequence[int], answer: Any) -> str:
    """Why ``answer`` (a V1 response for golden rows ``batch``) differs; "" when it does not.

    Labels must be equal; regression values and probabilities equal within
    :data:`REL_TOLERANCE` relative.
    """
    if not isinstance(answer, dict) or not isinstance(answer.get("predictions"), list):
        return f"the answer has no 'predictions' list: {str(answer)[:200]}"
    predictions = answer["predictions"]
    if len(predictions) != len(batch):
        return f"{len(batch)} rows were sent and {len(predictions)} predictions came back"
    regression = golden.classes is None
    for got, index in zip(predictions, batch, strict=True):
        expected = golden.predictions[index]
        if not _same(expected, got, regression):
            return (f"golden row {index} was predicted {got!r} by the server and {expected!r} "
                    f"in training (row: {golden.rows[index]})")
    if golden.probabilities is None:
        return ""
    if answer.get("classes") != golden.classes:
        return (f"the server's classes are {answer.get('classes')!r}; training's were "
                f"{golden.classes!r}")
    probabilities = answer.get("probabilities")
    if not isinstance(probabilities, list) or len(probabilities) != len(batch):
        return "the answer has no 'probabilities' list with one row per instance"
    for got_row, index in zip(probabilities, batch, strict=True):
        expected_row = golden.probabilities[index]
        if not isinstance(got_row, list) or len(got_row) != len(expected_row) or not all(
                _same(e, g, True) for e, g in zip(expected_row, got_row, strict=True)):
            return (f"golden row {index} got probabilities {got_row!r} from the server and "
                    f"{expected_row!r} in training (row: {golden.rows[index]})")
    return ""

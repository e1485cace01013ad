"""Keel's model server: one registered version behind the KServe V1 and V2 inference protocols.

Keel does not use the ``kserve`` package: it requires pandas < 3, and Keel's stack has pandas 3.1.
This server is built on the standard library's ``http.server.ThreadingHTTPServer`` (no new
dependency), so the serving image runs exactly the training stack (the same
``requirements.lock``) and the model is unpickled by the scikit-learn that trained it. It speaks
the KServe protocols, so KServe clients, probes and ``InferenceService`` routes work unchanged:

- ``GET /v2/health/live``, ``GET /v2/health/ready``, ``GET /v2`` (server metadata);
- ``GET /v1/models``, ``GET /v1/models/M`` (``{"name": M, "ready": true}``), ``GET /v2/models/M``
  (metadata: versions, platform ``sklearn``, inputs with their datatypes), ``GET
  /v2/models/M/ready``;
- ``POST /v1/models/M:predict``: ``{"instances": [...]}`` (or ``"inputs"``) holding records
  (``{"Age": 40, "City": null}``), lists in fit-time column order, or one object of columns
  (``{"Age": [40, 51]}``); answers ``{"predictions": [...]}``. With ``"parameters":
  {"probabilities": true}`` at the top level a classifier also answers ``"probabilities"`` (one
  row per instance, in ``"classes"`` order) and ``"classes"``;
- ``POST /v2/models/M/infer`` (and ``/v2/models/M/versions/N/infer``): with ``"parameters":
  {"content_type": "pd"}`` each input tensor is one column (``{"name": "Age", "shape": [n],
  "datatype": "FP64", "data": [...]}``); a single 2-D tensor holds rows in fit-time column order.
  Answers ``outputs`` ``predict`` and, when asked for (``"outputs": [{"name":
  "predict_proba"}]``), ``predict_proba`` (flattened row-major, shape ``[n, classes]``).

Before it is served, the model file's sha256 is checked against the version's manifest: a damaged
version is refused and the server never starts. Requests are checked against the version's schema
and turned into the DataFrame the model was trained on (:func:`build_frame`, also what
:func:`keel.smoke_test.golden_rows` computes its answers from): a missing column, or text in a
numeric column, is a 400 naming the column; a V2 tensor whose ``shape`` or ``datatype`` contradicts
its ``data`` is a 400; more than :data:`MAX_ROWS` rows or :data:`MAX_BODY` bytes a 413; a
compressed body a 415; the wrong method a 405 (with ``Allow``). Bodies come with a
``Content-Length`` or chunked. Every answer, http.server's own refusals included, is JSON;
anything unexpected is a 500 with one line, never a traceback. Each request is logged as one
line on stderr.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any, Literal

import numpy as np
import pandas as pd

from keel import __version__
from keel.contracts import FeatureSpec, Manifest, TableSchema, Task
from keel.errors import IntegrityError, KeelError, RegistryError, one_line

MAX_ROWS = 10_000  # rows in one request; more is a 413
MAX_BODY = 64 << 20  # bytes of one request body; more is a 413
MAX_DEPTH = 64  # JSON nesting of one request body; deeper is a 400 (a row is at most 3 deep)
INT64 = (-(1 << 63), (1 << 63) - 1)
SCHEMA_FILE = "schema.json"
SPEC_FILE = "feature_spec.json"
MODEL_FILE = "model.joblib"
PLATFORM = "sklearn"

Kind = Literal["numeric", "categorical"]


class RequestError(KeelError):
    """A request the server cannot answer: bad JSON, a missing column, too many rows (4xx)."""

    stage = "serving"

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


class NotFound(RequestError):
    """An unknown path or model name (404)."""

    def __init__(self, message: str):
        super().__init__(message, 404)


class MethodNotAllowed(RequestError):
    """A known path asked with the wrong HTTP method (405, with the ``Allow`` header)."""

    def __init__(self, message: str, allow: str):
        super().__init__(message, 405)
        self.allow = allow


# -- the model's columns ----------------------------------------------------------------------
@dataclass(frozen=True)
class Column:
    """One input column of the model: its name, kind, and the pandas dtype it was trained with."""

    name: str
    kind: Kind
    dtype: str  # str(series.dtype) of the training frame: "float64", "int64", "str", "bool", ...

    @property
    def datatype(self) -> str:
        """The KServe V2 tensor datatype of this column."""
        if self.kind == "numeric":
            return "FP64"
        family = dtype_family(self.dtype)
        return {"bool": "BOOL", "int": "INT64", "float": "FP64"}.get(family, "BYTES")

    @property
    def expects(self) -> str:
        """What a value of this column may be, for error messages."""
        if self.kind == "numeric":
            return "a number or null"
        return "text, a number, a boolean or null"


def columns_of(spec: FeatureSpec, dtypes: Mapping[str, str],
               order: Sequence[str] | None = None) -> tuple[Column, ...]:
    """The model's input columns in fit-time order (``order``: ``feature_names_in_``)."""
    names = list(order) if order is not None else spec.features
    numeric = set(spec.numeric)
    return tuple(Column(name, "numeric" if name in numeric else "categorical",
                        dtypes.get(name, "float64" if name in numeric else "str"))
                 for name in names)


#: pandas dtypes whose missing value is ``pd.NA`` (nullable booleans, integers, floats, and the
#: ``string`` dtype): a Parquet source written by pandas keeps them, so training read them, and
#: the model's encoder turns their missing value into the text ``'<NA>'``, not ``'nan'``.
NULLABLE_DTYPE = re.compile(r"^(boolean|U?Int(8|16|32|64)|Float(32|64)|string(\[(python|pyarrow)\])?)$")
_TRUE_FALSE = {"true": True, "false": False}


def dtype_family(dtype: str | None) -> str:
    """How values of a training pandas dtype are held: bool, int, float, text, or object.

    ``object`` (and no dtype or an unknown one) means as read: booleans with gaps (None),
    decimals... The server and batch prediction both build columns by it.
    """
    lowered = (dtype or "object").lower()
    if lowered in ("bool", "boolean"):
        return "bool"
    if lowered.startswith(("int", "uint")):
        return "int"
    if lowered.startswith("float"):
        return "float"
    if lowered in ("str", "string", "category") or lowered.startswith("string["):
        return "text"
    return "object"


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _finite(value: Any) -> float | None:
    """A JSON number as a finite float; None for anything else (text, infinity, 1e400 as an int)."""
    if not _is_number(value):
        return None
    try:
        number = float(value)
    except OverflowError:  # an integer beyond float64's range
        return None
    return None if math.isinf(number) else number


def _int64(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and INT64[0] <= value <= INT64[1]


def _shown(value: Any) -> str:
    if value is None:
        return "null"
    text = repr(value) if isinstance(value, str | int | float | bool) else f"a {_json_type(value)}"
    return one_line(text, 60)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "JSON object"
    if isinstance(value, list):
        return "list"
    return type(value).__name__


def _column_values(column: Column, values: Sequence[Any], where: Callable[[int], str]) -> Any:
    """One column as the training frame held it (numbers as float64, null as NaN or None).

    Training frames come from Parquet: a text column is pandas ``str`` with NaN for missing
    values, a boolean column with gaps is ``object`` holding None, numbers are float64 (int64
    when complete). The model's encoder turns categories into text, so a JSON null must become
    what training had (text "nan" from NaN, "None" from None), never another category.
    """
    if column.kind == "numeric":
        out = np.empty(len(values), dtype=np.float64)
        for i, value in enumerate(values):
            if value is None:
                out[i] = np.nan
                continue
            number = _finite(value)
            if number is None:
                raise RequestError(f"Column {column.name!r} must be {column.expects}; got "
                                   f"{_shown(value)} in {where(i)}.")
            out[i] = number
        return out
    for i, value in enumerate(values):
        if not (value is None or isinstance(value, str | int | float | bool)):
            raise RequestError(f"Column {column.name!r} must be {column.expects}; got "
                               f"{_shown(value)} in {where(i)}.")
    family = dtype_family(column.dtype)
    if family == "bool":  # true/false, 1/0 and "true"/"false" are the same boolean
        values = [_boolean(column, v, where(i)) for i, v in enumerate(values)]
    gaps = any(_missing(v) for v in values)
    if NULLABLE_DTYPE.match(column.dtype):
        nullable = _nullable(column.dtype, family, values)
        if nullable is not None:
            return nullable
    if family == "text":
        return pd.array([None if _missing(v) else v if isinstance(v, str) else str(v)
                         for v in values], dtype="str")
    if family in ("bool", "object"):
        if family == "bool" and not gaps and all(isinstance(v, bool) for v in values):
            return np.array(values, dtype=bool)
        return np.array([None if _missing(v) else v for v in values], dtype=object)
    if family == "int":
        ints = [int(v) if isinstance(v, float) and v.is_integer() else v for v in values]
        if not gaps and all(_int64(v) for v in ints):
            return np.array(ints, dtype=np.int64)
        return np.array([np.nan if _missing(v) else v for v in ints], dtype=object)
    # float: a number too large for float64 stays as it came (a category training never saw)
    floats = [np.nan if _missing(v) else v if (number := _finite(v)) is None else number
              for v in values]
    if all(isinstance(v, float) for v in floats):
        return np.array(floats, dtype=np.float64)
    return np.array(floats, dtype=object)


def _boolean(column: Column, value: Any, where: str) -> Any:
    """A value of a column trained as booleans: a bool, or None when missing."""
    if _missing(value) or isinstance(value, bool):
        return None if _missing(value) else value
    if _is_number(value) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE_FALSE:
        return _TRUE_FALSE[value.strip().lower()]
    raise RequestError(f"Column {column.name!r} holds booleans: true or false (1 or 0, \"true\" "
                       f"or \"false\") or null; got {_shown(value)} in {where}.")


def _nullable(dtype: str, family: str, values: Sequence[Any]) -> Any:
    """Values as the nullable pandas ``dtype`` training read (missing as ``pd.NA``), or None.

    None when the values do not fit it (text in an integer column, 3.5, a number out of range):
    they are categories training never saw, kept as they came.
    """
    present = [v for v in values if not _missing(v)]
    if family == "int":
        present = [int(v) if isinstance(v, float) and v.is_integer() else v for v in present]
        if not all(_int64(v) for v in present):
            return None
    elif family == "float" and not all(_finite(v) is not None for v in present):
        return None
    elif family == "text":
        present = [v if isinstance(v, str) else str(v) for v in present]
    it = iter(present)
    try:
        return pd.array([None if _missing(v) else next(it) for v in values], dtype=dtype)
    except (TypeError, ValueError, OverflowError):
        return None


def build_frame(columns: Sequence[Column], data: Mapping[str, Sequence[Any]], rows: int,
                where: Callable[[str, int], str] | None = None) -> pd.DataFrame:
    """The DataFrame the model was trained on, from one list of JSON values per column.

    Columns come in fit-time order whatever order they were sent in; columns the model does not
    use are ignored (like KServe). ``where(column, row)`` names a value in an error message.
    """
    def place(name: str) -> Callable[[int], str]:
        return (lambda i: where(name, i)) if where is not None else (lambda i: f"row {i}")

    frame = {}
    for column in columns:
        if column.name not in data:
            raise RequestError(f"Column {column.name!r} is missing; the model needs "
                               f"{_names(columns)}.")
        values = data[column.name]
        if len(values) != rows:
            raise RequestError(f"Column {column.name!r} has {len(values)} values; the other "
                               f"columns have {rows}.")
        frame[column.name] = _column_values(column, values, place(column.name))
    return pd.DataFrame(frame, columns=[c.name for c in columns])


def records_frame(columns: Sequence[Column], records: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """The model's input frame from JSON records (``{"Age": 40, "City": null}``), as served."""
    return _records(columns, list(records), "instances")


def _names(columns: Sequence[Column], limit: int = 200) -> str:
    return one_line(", ".join(c.name for c in columns), limit)


def _records(columns: Sequence[Column], instances: list[Any], field: str) -> pd.DataFrame:
    """Records, or lists in fit-time column order, to the model's frame (V1 ``instances``)."""
    width = len(columns)
    data: dict[str, list[Any]] = {c.name: [] for c in columns}
    for i, instance in enumerate(instances):
        if isinstance(instance, dict):
            for column in columns:
                if column.name not in instance:
                    raise RequestError(
                        f"Column {column.name!r} is missing from {field}[{i}]; every row needs "
                        f"the model's columns: {_names(columns)}.")
                data[column.name].append(instance[column.name])
        elif isinstance(instance, list):
            if len(instance) != width:
                raise RequestError(
                    f"{field}[{i}] has {len(instance)} values; a row sent as a list needs "
                    f"{width}, in the model's column order: {_names(columns)}.")
            for column, value in zip(columns, instance, strict=True):
                data[column.name].append(value)
        else:
            raise RequestError(
                f"{field}[{i}] is {_shown(instance)}; a row is an object of column values or a "
                f"list in the model's column order ({_names(columns)}).")
    return build_frame(columns, data, len(instances), lambda name, i: f"{field}[{i}]")


# -- the served model -------------------------------------------------------------------------
@dataclass(frozen=True)
class ServedModel:
    """A verified, loaded version: the fitted pipeline and the columns it expects."""

    name: str
    version: int
    pipeline: Any
    columns: tuple[Column, ...]
    task: Task
    manifest: Manifest | None = None

    @property
    def classes(self) -> list[Any] | None:
        """The classifier's classes (the order of probabilities); None for a regressor."""
        if self.task != "classification" or not hasattr(self.pipeline, "classes_"):
            return None
        return [json_ready(c) for c in self.pipeline.classes_]

    def predict(self, frame: pd.DataFrame) -> list[Any]:
        """Predictions for every row, as JSON values."""
        return [json_ready(v) for v in self.pipeline.predict(frame).tolist()]

    def probabilities(self, frame: pd.DataFrame) -> list[list[float]]:
        """Class probabilities for every row, in :attr:`classes` order."""
        if self.classes is None or not hasattr(self.pipeline, "predict_proba"):
            raise RequestError(f"Model {self.name!r} is a regressor: it has no probabilities; "
                               "leave out the probabilities parameter.")
        return [[float(p) for p in row] for row in self.pipeline.predict_proba(frame).tolist()]


def served_model(name: str, version: int, pipeline: Any, spec: FeatureSpec,
                 schema: TableSchema | None, manifest: Manifest | None = None) -> ServedModel:
    """A :class:`ServedModel` from a loaded pipeline, its feature spec and schema (the dtypes)."""
    dtypes = {c.name: c.dtype for c in schema.columns} if schema is not None else {}
    order = getattr(pipeline, "feature_names_in_", None)
    return ServedModel(name=name, version=version, pipeline=pipeline,
                       columns=columns_of(spec, dtypes, None if order is None else list(order)),
                       task=spec.task, manifest=manifest)


def _unpickle(path: Path, where: str, manifest: Manifest | None) -> Any:
    import joblib
    import sklearn

    try:
        return joblib.load(path)
    except Exception as exc:
        saved = (f" It was saved with scikit-learn {manifest.environment.scikit_learn} on Python "
                 f"{manifest.environment.python}; this is scikit-learn {sklearn.__version__}."
                 if manifest is not None else "")
        raise RegistryError(f"{where} matches its recorded sha256 but cannot be loaded here "
                            f"({type(exc).__name__}: {one_line(str(exc), 120)}).{saved}") from exc


def load_version(store: str, model: str, version: int | None = None) -> ServedModel:
    """Download a version (production when ``version`` is None), verify and load it.

    model.joblib, schema.json and feature_spec.json are checked against the sha256 the manifest
    recorded before anything is unpickled: a damaged file is an :class:`IntegrityError` (or
    :class:`keel.registry.DamagedVersion`), and nothing is served.
    """
    from keel.registry import PRODUCTION, Registry
    from keel.storage import open_store

    registry = Registry(open_store(store), model)
    number = registry.resolve(PRODUCTION if version is None else version)
    manifest = registry.manifest(number)
    with tempfile.TemporaryDirectory(prefix="keel-serve-") as tmp:
        model_path = registry.download_verified(number, MODEL_FILE, Path(tmp) / MODEL_FILE,
                                                manifest)
        schema = None
        if SCHEMA_FILE in manifest.files:
            schema = TableSchema.read(registry.download_verified(
                number, SCHEMA_FILE, Path(tmp) / SCHEMA_FILE, manifest), stage="serving")
        spec = manifest.features
        if SPEC_FILE in manifest.files:
            spec = FeatureSpec.read(registry.download_verified(
                number, SPEC_FILE, Path(tmp) / SPEC_FILE, manifest), stage="serving")
        pipeline = _unpickle(model_path, registry.file_url(number, MODEL_FILE), manifest)
    return served_model(registry.model, number, pipeline, spec, schema, manifest)


def load_folder(folder: str | os.PathLike[str], manifest: Manifest | Mapping[str, Any]
                ) -> ServedModel:
    """Load a version from a local folder holding its files, checked against ``manifest``."""
    from keel.registry import sha256_file

    if not isinstance(manifest, Manifest):
        manifest = Manifest.from_dict(dict(manifest), origin="the manifest", stage="serving")
    root = Path(folder)
    for name in (MODEL_FILE, SCHEMA_FILE, SPEC_FILE):
        expected = manifest.files.get(name)
        if expected is None:
            if name == MODEL_FILE:
                raise RegistryError(f"The manifest of {manifest.model!r} version "
                                    f"{manifest.version} lists no {MODEL_FILE}.", stage="serving")
            continue
        path = root / name
        if not path.is_file():
            raise RegistryError(f"{path} is missing; the manifest records it.", stage="serving")
        actual = sha256_file(path)
        if actual != expected.sha256:
            raise IntegrityError(f"{path} has sha256 {actual}, but its manifest recorded "
                                 f"{expected.sha256}; it will not be loaded.", stage="serving")
    schema = (TableSchema.read(root / SCHEMA_FILE, stage="serving")
              if SCHEMA_FILE in manifest.files else None)
    spec = (FeatureSpec.read(root / SPEC_FILE, stage="serving")
            if SPEC_FILE in manifest.files else manifest.features)
    pipeline = _unpickle(root / MODEL_FILE, str(root / MODEL_FILE), manifest)
    return served_model(manifest.model, manifest.version, pipeline, spec, schema, manifest)


# -- JSON -------------------------------------------------------------------------------------
def json_ready(value: Any) -> Any:
    """A plain JSON value: numpy scalars as Python, NaN and NaT as None, timestamps as ISO text."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or value is pd.NaT or value is pd.NA:
        return None
    if isinstance(value, float):
        return None if math.isnan(value) else value
    if isinstance(value, pd.Timestamp | np.datetime64):
        return pd.Timestamp(value).isoformat()
    if hasattr(value, "isoformat"):  # datetime, date, time
        return value.isoformat()
    if isinstance(value, list | tuple):
        return [json_ready(v) for v in value]
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    return value


# -- the protocols ----------------------------------------------------------------------------
def _count(rows: int, max_rows: int) -> None:
    if rows == 0:
        raise RequestError("The request has no rows: send at least one instance.")
    if rows > max_rows:
        raise RequestError(f"The request has {rows} rows; at most {max_rows} are served per "
                           "request. Split it into smaller requests.", 413)


def _flag(parameters: Any, name: str) -> bool:
    if parameters is None:
        return False
    if not isinstance(parameters, dict):
        raise RequestError(f"'parameters' must be a JSON object; got {_shown(parameters)}.")
    value = parameters.get(name, False)
    if not isinstance(value, bool):
        raise RequestError(f"The {name!r} parameter must be true or false; got {_shown(value)}.")
    return value


def parse_v1(body: Any, served: ServedModel, max_rows: int = MAX_ROWS
             ) -> tuple[pd.DataFrame, bool]:
    """The frame and whether probabilities were asked for, from a V1 ``:predict`` body."""
    if not isinstance(body, dict):
        raise RequestError(f"The request body must be a JSON object; got {_shown(body)}.")
    field = "instances" if "instances" in body else "inputs" if "inputs" in body else None
    if "instances" in body and "inputs" in body:
        raise RequestError("The request has both 'instances' and 'inputs'; send the rows in "
                           "one of them.")
    if field is None:
        raise RequestError("The request has no 'instances': send {\"instances\": [{column: "
                           "value, ...}, ...]}.")
    probabilities = _flag(body.get("parameters"), "probabilities")
    instances = body[field]
    if isinstance(instances, dict):  # one object of columns: {"Age": [40, 51], ...}
        lengths = {len(v) if isinstance(v, list) else -1 for v in instances.values()}
        if -1 in lengths or len(lengths) > 1:
            raise RequestError(f"'{field}' as an object must map every column to a list of "
                               "values of the same length.")
        rows = lengths.pop() if lengths else 0
        _count(rows, max_rows)
        return build_frame(served.columns, instances, rows,
                           lambda name, i: f"{field}[{name!r}][{i}]"), probabilities
    if not isinstance(instances, list):
        raise RequestError(f"'{field}' must be a list of rows; got {_shown(instances)}.")
    _count(len(instances), max_rows)
    return _records(served.columns, instances, field), probabilities


def v1_answer(served: ServedModel, frame: pd.DataFrame, probabilities: bool) -> dict[str, Any]:
    """The V1 response: predictions, and probabilities with their classes when asked."""
    answer: dict[str, Any] = {"predictions": served.predict(frame)}
    if probabilities:
        answer["probabilities"] = served.probabilities(frame)
        answer["classes"] = served.classes
    return answer


#: KServe V2 tensor datatypes, and what a JSON value of each must be (None: any scalar).
_V2_TYPES: dict[str, tuple[str, Callable[[Any], bool]] | None] = {
    "BOOL": ("true or false", lambda v: isinstance(v, bool)),
    **{f"{sign}INT{bits}": ("integers", lambda v: isinstance(v, int) and not isinstance(v, bool))
       for sign in ("", "U") for bits in (8, 16, 32, 64)},
    **{f"FP{bits}": ("numbers", _is_number) for bits in (16, 32, 64)},
    "BYTES": None,
}


def _scalars(data: list[Any]) -> Iterator[Any]:
    """The values of a (possibly nested, row-major) tensor ``data`` list."""
    for value in data:
        if isinstance(value, list):
            yield from _scalars(value)
        else:
            yield value


def _tensor_values(tensor: dict[str, Any], label: str) -> tuple[list[Any], list[int] | None]:
    """A tensor's ``data``, checked against its ``shape`` and ``datatype`` when it has them."""
    data = tensor.get("data")
    if not isinstance(data, list):
        raise RequestError(f"{label} has no 'data' list.")
    shape = tensor.get("shape")
    if shape is not None and (not isinstance(shape, list) or not all(
            isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape)):
        raise RequestError(f"{label}: 'shape' must be a list of sizes (integers, 0 or more); "
                           f"got {_shown(shape)}.")
    values = list(_scalars(data))
    if shape is not None and math.prod(shape) != len(values):
        raise RequestError(f"{label} has shape {shape}, which holds {math.prod(shape)} values, "
                           f"but its 'data' has {len(values)}.")
    datatype = tensor.get("datatype")
    if datatype is None:
        return data, shape
    if not isinstance(datatype, str) or datatype not in _V2_TYPES:
        raise RequestError(f"{label}: 'datatype' must be a KServe V2 datatype "
                           f"({', '.join(_V2_TYPES)}); got {_shown(datatype)}.")
    rule = _V2_TYPES[datatype]
    if rule is not None:
        what, fits = rule
        for i, value in enumerate(values):
            if value is not None and not fits(value):
                raise RequestError(f"{label} has datatype {datatype}, which holds {what} (or "
                                   f"null); got {_shown(value)} at data[{i}]. Use datatype "
                                   "BYTES for text.")
    return data, shape


def parse_v2(body: Any, served: ServedModel, max_rows: int = MAX_ROWS
             ) -> tuple[pd.DataFrame, list[str]]:
    """The frame and the outputs asked for (``predict``, ``predict_proba``) from a V2 body."""
    if not isinstance(body, dict):
        raise RequestError(f"The request body must be a JSON object; got {_shown(body)}.")
    inputs = body.get("inputs")
    if not isinstance(inputs, list) or not inputs or not all(isinstance(t, dict) for t in inputs):
        raise RequestError("The request needs 'inputs': a list of tensors, one per column with "
                           "parameters content_type 'pd' ({\"name\": \"Age\", \"shape\": [n], "
                           "\"datatype\": \"FP64\", \"data\": [...]}).")
    parameters = body.get("parameters")
    if parameters is not None and not isinstance(parameters, dict):
        raise RequestError(f"'parameters' must be a JSON object; got {_shown(parameters)}.")
    content_type = (parameters or {}).get("content_type")
    for tensor in inputs:
        own = tensor.get("parameters")
        if content_type is None and isinstance(own, dict):
            content_type = own.get("content_type")
    if content_type is not None and not isinstance(content_type, str):
        raise RequestError(f"The 'content_type' parameter must be text (\"pd\": one input per "
                           f"column); got {_shown(content_type)}.")
    outputs = ["predict"]
    asked = body.get("outputs")
    if asked is not None:
        if not isinstance(asked, list) or not all(isinstance(o, dict) for o in asked):
            raise RequestError("'outputs' must be a list of objects like {\"name\": "
                               "\"predict_proba\"}.")
        outputs = [o.get("name") for o in asked] or outputs
        unknown = [o for o in outputs if o not in ("predict", "predict_proba")]
        if unknown:
            shown = ("An output has no 'name'" if unknown[0] is None
                     else f"Unknown output {_shown(unknown[0])}")
            raise RequestError(f"{shown}; outputs are 'predict' and 'predict_proba'.")
        outputs = list(dict.fromkeys(outputs))  # each once
    if _flag(parameters, "probabilities") and "predict_proba" not in outputs:
        outputs.append("predict_proba")
    first_shape = inputs[0].get("shape")
    matrix = (content_type != "pd" and len(inputs) == 1 and (
        isinstance(first_shape, list) and len(first_shape) == 2
        or isinstance(inputs[0].get("data"), list)
        and any(isinstance(v, list) for v in inputs[0]["data"])))
    if matrix:
        data, shape = _tensor_values(inputs[0], "inputs[0]")
        rows: list[Any] = data
        if data and not isinstance(data[0], list):  # flat, row-major
            width = shape[1] if shape and len(shape) == 2 else len(served.columns)
            if width <= 0 or len(data) % width:
                raise RequestError(f"inputs[0] has {len(data)} values, not a whole number of rows "
                                   f"of {width}.")
            rows = [data[i:i + width] for i in range(0, len(data), width)]
        _count(len(rows), max_rows)
        return _records(served.columns, rows, "inputs[0].data"), outputs
    columns: dict[str, list[Any]] = {}
    for index, tensor in enumerate(inputs):
        name = tensor.get("name")
        if not isinstance(name, str):
            raise RequestError(f"inputs[{index}] has no 'name' (the column it holds).")
        if name in columns:
            raise RequestError(f"Two inputs are named {one_line(repr(name), 80)}; send each "
                               "column once.")
        data, _shape = _tensor_values(tensor, f"Input {one_line(repr(name), 80)}")
        if data and all(isinstance(v, list) and len(v) == 1 for v in data):
            data = [v[0] for v in data]  # shape [n, 1]
        columns[name] = data
    needed = [c for c in served.columns if c.name not in columns]
    if needed:
        raise RequestError(f"Column {needed[0].name!r} is missing: no input is named "
                           f"{needed[0].name!r}; the model needs {_names(served.columns)}.")
    rows_count = len(columns[served.columns[0].name])
    _count(rows_count, max_rows)
    frame = build_frame(served.columns, columns, rows_count,
                        lambda name, i: f"data[{i}] of input {name!r}")
    return frame, outputs


def _datatype(values: list[Any]) -> str:
    present = [v for v in values if v is not None]
    if present and all(isinstance(v, bool) for v in present):
        return "BOOL"
    if present and all(isinstance(v, int) and not isinstance(v, bool) for v in present):
        return "INT64"
    if present and all(_is_number(v) for v in present):
        return "FP64"
    return "BYTES"


def v2_answer(served: ServedModel, frame: pd.DataFrame, outputs: list[str], request_id: Any
              ) -> dict[str, Any]:
    """The V2 response: ``model_name``, ``model_version``, ``id`` and the outputs asked for."""
    tensors: list[dict[str, Any]] = []
    for name in outputs:
        if name == "predict":
            data = served.predict(frame)
            tensors.append({"name": "predict", "shape": [len(data)], "datatype": _datatype(data),
                            "data": data})
        else:
            matrix = served.probabilities(frame)
            width = len(served.classes or [])
            tensors.append({"name": "predict_proba", "shape": [len(matrix), width],
                            "datatype": "FP64", "data": [p for row in matrix for p in row],
                            "parameters": {"classes": served.classes}})
    return {"model_name": served.name, "model_version": str(served.version),
            "id": request_id if isinstance(request_id, str) else str(uuid.uuid4()),
            "parameters": {}, "outputs": tensors}


def metadata(served: ServedModel) -> dict[str, Any]:
    """The V2 model metadata: versions, platform, inputs (from the schema) and outputs."""
    outputs: list[dict[str, Any]] = [{"name": "predict", "datatype": _datatype(
        served.classes or []) if served.classes else "FP64", "shape": [-1]}]
    if served.classes is not None:
        outputs.append({"name": "predict_proba", "datatype": "FP64",
                        "shape": [-1, len(served.classes)]})
    return {"name": served.name, "versions": [str(served.version)], "platform": PLATFORM,
            "inputs": [{"name": c.name, "datatype": c.datatype, "shape": [-1]}
                       for c in served.columns],
            "outputs": outputs}


# -- the HTTP server --------------------------------------------------------------------------
_V1_MODEL = re.compile(r"^/v1/models/([^/:]+)$")
_V1_PREDICT = re.compile(r"^/v1/models/([^/:]+):predict$")
_V2_MODEL = re.compile(r"^/v2/models/([^/]+)(?:/versions/([^/]+))?(/ready|/infer)?$")
_GET_PATHS = ("/", "/v2/health/live", "/v2/health/ready", "/v2", "/v1/models")


class ModelServer(ThreadingHTTPServer):
    """A threading HTTP server answering the KServe protocols for one :class:`ServedModel`."""

    daemon_threads = True  # a shutdown never waits on an idle keep-alive connection
    allow_reuse_address = True
    #: connections the kernel queues before the server accepts them (socketserver's default, 5,
    #: resets clients as soon as a few more than that connect at once)
    request_queue_size = 128

    def __init__(self, served: ServedModel, host: str = "127.0.0.1", port: int = 0, *,
                 max_rows: int = MAX_ROWS, log: IO[str] | None = sys.stderr):
        self.served = served
        self.max_rows = max_rows
        self.log = log
        self._log_lock = threading.Lock()
        super().__init__((host, port), _Handler)

    @property
    def url(self) -> str:
        """``http://host:port`` of the bound socket (the real port when 0 was asked for)."""
        host, port = self.server_address[:2]
        shown = host.decode() if isinstance(host, bytes) else host
        return f"http://{shown}:{port}"

    def log_line(self, text: str) -> None:
        """Write one request line to the log (stderr), if any."""
        if self.log is not None:
            with self._log_lock:
                self.log.write(text + "\n")
                self.log.flush()

    def _model(self, name: str, version: str | None = None) -> ServedModel:
        if name != self.served.name or (version is not None and version != str(
                self.served.version)):
            asked = f"Model {name!r}" + (f" version {version}" if version is not None else "")
            raise NotFound(f"{one_line(asked, 120)} is not served here; this server serves "
                           f"{self.served.name!r} version {self.served.version}.")
        return self.served

    def answer_get(self, path: str) -> dict[str, Any]:
        """The body of a GET; :class:`NotFound` for an unknown path or model."""
        if path in ("/", "/v2/health/live"):
            return {"live": True}
        if path == "/v2/health/ready":
            return {"ready": True}
        if path == "/v2":
            return {"name": "keel", "version": __version__, "extensions": []}
        if path == "/v1/models":
            return {"models": [self.served.name]}
        if match := _V1_MODEL.match(path):
            return {"name": self._model(match[1]).name, "ready": True}
        if (match := _V2_MODEL.match(path)) and match[3] != "/infer":
            served = self._model(match[1], match[2])
            if match[3] == "/ready":
                return {"name": served.name, "ready": True}
            return metadata(served)
        if _V1_PREDICT.match(path) or ((match := _V2_MODEL.match(path)) and match[3] == "/infer"):
            raise MethodNotAllowed(f"{one_line(path, 120)} answers POST only (a JSON body of "
                                   "rows), not GET.", "POST")
        raise NotFound(f"No GET route {one_line(path, 120)}.")

    def answer_post(self, path: str, body: bytes) -> tuple[dict[str, Any], int]:
        """The body of a POST and the rows it scored."""
        if match := _V1_PREDICT.match(path):
            served = self._model(match[1])
            frame, probabilities = parse_v1(_json(body), served, self.max_rows)
            return v1_answer(served, frame, probabilities), len(frame)
        if (match := _V2_MODEL.match(path)) and match[3] == "/infer":
            served = self._model(match[1], match[2])
            request = _json(body)
            v2_frame, outputs = parse_v2(request, served, self.max_rows)
            return v2_answer(served, v2_frame, outputs, request.get("id")), len(v2_frame)
        if path in _GET_PATHS or _V1_MODEL.match(path) or _V2_MODEL.match(path):
            raise MethodNotAllowed(f"{one_line(path, 120)} answers GET only; predictions are "
                                   f"POST /v1/models/{self.served.name}:predict or "
                                   f"/v2/models/{self.served.name}/infer.", "GET")
        raise NotFound(f"No POST route {one_line(path, 120)}; predictions are POST "
                       f"/v1/models/{self.served.name}:predict or "
                       f"/v2/models/{self.served.name}/infer.")


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError included
        raise RequestError(f"The request body is not JSON: {one_line(str(exc), 120)}.") from None
    except RecursionError:
        raise RequestError("The request body is JSON nested too deeply; a request is an object "
                           "of rows (or tensors) of values.") from None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: a client reuses its connection
    server_version = f"keel/{__version__}"
    timeout = 60  # seconds an idle connection is kept

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        """Silenced: each request is logged once, as one line (see ``_respond``)."""

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        """Health, readiness and metadata."""
        self._handle(lambda server: (server.answer_get(self._path()), 0))

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        """V1 predict and V2 infer."""
        self._handle(lambda server: server.answer_post(self._path(), self._body()))

    def _not_allowed(self) -> None:
        def refuse(server: ModelServer) -> tuple[dict[str, Any], int]:
            self.close_connection = True  # a body, if any, is not read
            raise MethodNotAllowed(f"{one_line(self.command, 20)} is not served; use GET for "
                                   "health and metadata, POST for predictions.", "GET, POST")
        self._handle(refuse)

    do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD = _not_allowed  # noqa: N815

    def send_error(self, code: int, message: str | None = None, explain: str | None = None
                   ) -> None:
        """http.server's own refusals (a bad request line, a URL too long...) as JSON, logged."""
        server = self.server
        try:
            phrase = HTTPStatus(code).phrase
        except ValueError:
            phrase = "the request was refused"
        text = one_line(f"HTTP {code} {phrase}: {message or explain or phrase}.", 300)
        payload = json.dumps({"error": text}).encode()
        if isinstance(server, ModelServer):  # command and path are unset for a bad request line
            server.log_line(one_line(f"{getattr(self, 'command', '') or '-'} "
                                     f"{getattr(self, 'path', '') or '-'} {code} rows=0", 300))
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.send_response(code, message)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.send_header("Connection", "close")
            self.end_headers()
            if getattr(self, "command", "") != "HEAD" and code >= 200 and code not in (204, 304):
                self.wfile.write(payload)

    def _path(self) -> str:
        return urllib.parse.unquote(self.path.split("?", 1)[0])

    def _body(self) -> bytes:
        encoding = (self.headers.get("Content-Encoding") or "identity").strip().lower()
        if encoding != "identity":
            self.close_connection = True
            raise RequestError(f"Content-Encoding {_shown(encoding)} is not accepted; send the "
                               "JSON body uncompressed.", 415)
        chunked = "chunked" in (self.headers.get("Transfer-Encoding") or "").lower()
        length = self.headers.get("Content-Length")
        if chunked:
            return self._chunked()
        if length is None:
            self.close_connection = True
            raise RequestError("The request has no Content-Length; send the JSON body with one "
                               "(or chunked).", 411)
        try:
            size = int(length)
            if size < 0:
                raise ValueError(size)
        except ValueError:
            self.close_connection = True
            raise RequestError(f"Content-Length {_shown(length)} is not a number of bytes."
                               ) from None
        if size > MAX_BODY:
            self.close_connection = True  # the body is not read: the connection cannot be reused
            raise RequestError(f"The request body has {size} bytes; at most {MAX_BODY} are "
                               "accepted. Split it into smaller requests.", 413)
        return self._read(size)

    def _read(self, size: int) -> bytes:
        try:
            data = self.rfile.read(size)
        except TimeoutError:
            self.close_connection = True
            raise RequestError(f"The request body did not arrive: no byte for {self.timeout} s "
                               f"of the {size} announced.", 408) from None
        if len(data) < size:
            self.close_connection = True
            raise RequestError(f"The request body ended after {len(data)} of the {size} bytes "
                               "announced.")
        return data

    def _chunked(self) -> bytes:
        """A ``Transfer-Encoding: chunked`` body, at most :data:`MAX_BODY` bytes."""
        parts: list[bytes] = []
        total = 0
        while True:
            line = self.rfile.readline(1026)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
                if size < 0:
                    raise ValueError(size)
            except ValueError:
                self.close_connection = True
                raise RequestError(f"The chunked request body has a bad chunk size line "
                                   f"{_shown(line.decode('latin-1'))}.") from None
            if size == 0:
                while self.rfile.readline(1026) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(parts)
            total += size
            if total > MAX_BODY:
                self.close_connection = True
                raise RequestError(f"The chunked request body exceeds {MAX_BODY} bytes. Split "
                                   "it into smaller requests.", 413)
            parts.append(self._read(size))
            if self.rfile.readline(3) not in (b"\r\n", b"\n"):
                self.close_connection = True
                raise RequestError("The chunked request body has a chunk not followed by CRLF.")

    def _handle(self, answer: Callable[[ModelServer], tuple[dict[str, Any], int]]) -> None:
        server = self.server
        assert isinstance(server, ModelServer)
        started = time.perf_counter()
        rows = 0
        allow = ""
        try:
            doc, rows = answer(server)
            status = 200
        except RequestError as exc:
            status, doc = exc.status, {"error": str(exc.args[0])}
            allow = getattr(exc, "allow", "")
        except Exception as exc:  # a bug, or a model that fails on these rows: one line, no trace
            status = 500
            doc = {"error": one_line(f"Internal error: {type(exc).__name__}: {exc}", 300)}
        try:
            payload = json.dumps(doc, allow_nan=False).encode()
        except ValueError as exc:
            status, payload = 500, json.dumps({"error": f"Internal error: {exc}"}).encode()
        # Logged before the answer is sent: a client that has its answer can rely on the line
        # being written, even if the server is stopped right after (handler threads are daemons).
        elapsed = (time.perf_counter() - started) * 1000
        server.log_line(one_line(f"{self.command} {self.path} {status} rows={rows} "
                                 f"{elapsed:.1f}ms", 300))
        with contextlib.suppress(OSError):  # the client went away
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            if allow:
                self.send_header("Allow", allow)
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)


def make_server(served: ServedModel, host: str = "127.0.0.1", port: int = 0, *,
                max_rows: int = MAX_ROWS, log: IO[str] | None = sys.stderr) -> ModelServer:
    """A bound (not yet serving) :class:`ModelServer`; call ``serve_forever`` to serve."""
    try:
        return ModelServer(served, host, port, max_rows=max_rows, log=log)
    except OSError as exc:
        raise KeelError(f"Cannot listen on {host}:{port}: {exc.strerror or exc}.",
                        stage="serving") from None


@contextlib.contextmanager
def serving(served: ServedModel, host: str = "127.0.0.1", port: int = 0, *,
            max_rows: int = MAX_ROWS, log: IO[str] | None = sys.stderr) -> Iterator[ModelServer]:
    """Serve in a background thread for the ``with`` block; stopped and closed after it."""
    server = make_server(served, host, port, max_rows=max_rows, log=log)
    thread = threading.Thread(target=server.serve_forever, name="keel-serving", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)

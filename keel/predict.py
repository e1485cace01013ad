"""Batch prediction: score an ingested table with a registered model version, streaming.

The rows come from an ingest snapshot (Parquet, missing values as nulls). Each record batch is
turned into the frame the model was trained on, column by column, the way training read its rows
(``pd.read_parquet`` of the validated snapshot):

- a **numeric feature** becomes float64, missing values and infinities NaN (validate made
  infinities missing before training);
- a **categorical feature** becomes what training held for it, by the column's training dtype in
  the version's ``schema.json``: text with NaN for a missing value (encoded as ``'nan'``, like
  training, never as ``'None'``), whole numbers as integers (``'3'``, not ``'3.0'`` because this
  batch happens to have a gap), floats as floats, booleans as booleans (1/0 and "true"/"false"
  too); a nullable pandas dtype training read (``boolean``, ``Int64``, ``string``) is kept, so a
  missing value is ``pd.NA`` (encoded ``'<NA>'``) as in training.

The output Parquet file holds every input column (so it joins back to the input), then
``prediction``, one ``probability_<class>`` column per class for a classifier, ``model_version``
and ``data_version``. It is written batch by batch, so memory does not grow with rows; a failure
removes the partial file. The model is loaded only after its sha256 matched its manifest.

Stage logic: never imports kfp (``components/predict.py`` is the KFP wrapper).
"""

from __future__ import annotations

import json
import re
import tempfile
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field

from keel.contracts import Document, FeatureSpec, IngestResult, TableSchema
from keel.errors import ParameterError, RegistryError, SchemaError, reports_errors

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import pyarrow as pa

    from keel.registry import Registry

STAGE = "predict"
BATCH_ROWS = 65_536  # rows per record batch read from the snapshot and written to the output
OUTPUT_COMPRESSION = "zstd"
PREDICTION = "prediction"
PROBABILITY_PREFIX = "probability_"
MODEL_VERSION = "model_version"
DATA_VERSION = "data_version"
FEATURE_SPEC_FILE = "feature_spec.json"
SCHEMA_FILE = "schema.json"
#: Parquet file metadata key: JSON {model, version, data_version, probabilities: {column: class}}
METADATA_KEY = b"keel.predictions"
_UNSAFE = re.compile(r"[^0-9A-Za-z_]+")


class PredictionResult(Document):
    """What a batch prediction wrote: which model version scored which data, how many rows, where."""

    artifact: ClassVar[str] = "prediction result"
    model: str
    version: int = Field(ge=1)
    data_version: str = Field(pattern=r"^[0-9a-f]{64}$")
    rows: int = Field(ge=0)
    output: str
    columns: list[str]


# -- the model version --------------------------------------------------------------------------
def resolve_version(registry: Registry, version: int | None) -> int:
    """``version`` if the model has it, else (None or 0) the production version.

    No production version is a RegistryError saying to name one; a missing production.json whose
    moves are in the event log is the registry's MissingAlias (damage, never "no production").
    """
    if version is not None and version != 0:
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise ParameterError(
                f"The 'version' parameter of predict must be a version number (1 or more), or "
                f"0 for production. Got {version!r}.", stage=STAGE)
        registry.manifest(version)  # an unknown number: an error listing the versions
        return version
    production = registry.alias().version
    if production is None:
        known = ", ".join(map(str, registry.versions())) or "none"
        raise RegistryError(
            f"Model {registry.model!r} in {registry.store.uri} has no production version to "
            f"predict with; name a version with --version N (versions: {known}).")
    return production


def _stored(registry: Registry, version: int, name: str, contract: Any, tmp: str) -> Any:
    path = registry.download_verified(version, name, Path(tmp) / name)
    return contract.from_json(path.read_bytes(), stage=STAGE,
                              origin=registry.file_url(version, name))


def version_inputs(registry: Registry, version: int) -> tuple[FeatureSpec, dict[str, str]]:
    """The version's feature spec, and each column's pandas dtype in training (``schema.json``).

    Both are downloaded and checked against their sha256 first. A version published without a
    schema document gives no dtypes: its batches are converted as pandas reads Parquet.
    """
    manifest = registry.manifest(version)
    with tempfile.TemporaryDirectory(prefix="keel-predict-") as tmp:
        spec: FeatureSpec = _stored(registry, version, FEATURE_SPEC_FILE, FeatureSpec, tmp)
        dtypes: dict[str, str] = {}
        if SCHEMA_FILE in manifest.files:
            schema: TableSchema = _stored(registry, version, SCHEMA_FILE, TableSchema, tmp)
            dtypes = {column.name: column.dtype for column in schema.columns}
    return spec, dtypes


# -- output columns -----------------------------------------------------------------------------
def probability_columns(classes: Sequence[Any]) -> list[str]:
    """``probability_<class>`` per class, in the model's order, safe and unique.

    Only letters, digits and ``_`` are kept; names made equal by that get ``_2``, ``_3``...
    (classes ``'a b'`` and ``'a-b'`` both read ``a_b``).
    """
    names: list[str] = []
    for value in classes:
        base = PROBABILITY_PREFIX + _UNSAFE.sub("_", str(value)).strip("_")
        name, n = base, 1
        while name in names:
            n += 1
            name = f"{base}_{n}"
        names.append(name)
    return names


def _output_schema(
    inputs: pa.Schema, prediction_type: pa.DataType, probabilities: Sequence[str],
    metadata: dict[bytes, bytes],
) -> pa.Schema:
    import pyarrow as pa

    added = [pa.field(PREDICTION, prediction_type),
             *(pa.field(name, pa.float64()) for name in probabilities),
             pa.field(MODEL_VERSION, pa.int64()), pa.field(DATA_VERSION, pa.string())]
    clash = [f.name for f in added if f.name in inputs.names]
    if clash:
        raise SchemaError(
            f"The input table already has column(s) {', '.join(map(repr, clash))}, which the "
            "predictions add; rename or drop them in the source (an earlier prediction output "
            "cannot be scored again as it is).", stage=STAGE)
    return pa.schema([*inputs, *added], metadata=metadata)


# -- the frame training saw ---------------------------------------------------------------------
_NUMERIC_INPUT = ("integer", "floating", "decimal", "boolean", "null")


def _arrow_kind(arrow_type: pa.DataType) -> str:
    import pyarrow as pa

    for kind, test in (("integer", pa.types.is_integer), ("floating", pa.types.is_floating),
                       ("decimal", pa.types.is_decimal), ("boolean", pa.types.is_boolean),
                       ("null", pa.types.is_null), ("text", pa.types.is_string),
                       ("text", pa.types.is_large_string)):
        if test(arrow_type):
            return kind
    return str(arrow_type)


def _decoded(column: pa.Array) -> pa.Array:
    import pyarrow as pa

    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    return column.dictionary_decode() if pa.types.is_dictionary(column.type) else column


def check_columns(inputs: pa.Schema, spec: FeatureSpec, model: str, version: int,
                  dtypes: Mapping[str, str]) -> None:
    """Refuse a table the version cannot score: a feature missing, repeated, or not numbers.

    One SchemaError naming every missing feature column; extra columns are fine (carried
    through to the output).
    """
    import pyarrow as pa

    names = Counter(inputs.names)
    missing = [name for name in spec.features if name not in names]
    if missing:
        raise SchemaError(
            f"The input table lacks {len(missing)} feature column(s) of model {model!r} version "
            f"{version}: {', '.join(map(repr, missing))}. The model needs "
            f"{', '.join(map(repr, spec.features))}.", stage=STAGE)
    repeated = [name for name in spec.features if names[name] > 1]
    if repeated:
        raise SchemaError(f"Feature column(s) {', '.join(map(repr, repeated))} appear more than "
                          "once in the input table; column names must be unique.", stage=STAGE)
    for name in spec.numeric:
        arrow_type = inputs.field(name).type
        if pa.types.is_dictionary(arrow_type):
            arrow_type = arrow_type.value_type
        if _arrow_kind(arrow_type) not in _NUMERIC_INPUT:
            trained = f" ({dtypes[name]} in training)" if name in dtypes else ""
            raise SchemaError(
                f"The column {name!r} is a numeric feature of model {model!r} version {version}"
                f"{trained}; expected numbers, got {arrow_type} values. Convert it to numbers in "
                "the source.", stage=STAGE)


def _numeric(column: pa.Array) -> np.ndarray:
    """float64, missing values and infinities as NaN (validate's rule before training)."""
    import numpy as np
    import pyarrow as pa

    column = _decoded(column)
    if pa.types.is_null(column.type):
        return np.full(len(column), np.nan)
    values = np.array(column.cast(pa.float64()).to_numpy(zero_copy_only=False), dtype=float)
    values[np.isinf(values)] = np.nan  # a copy: Arrow's buffer is read-only
    return values


def _categorical(column: pa.Array, dtype: str | None) -> pd.Series:
    """A categorical feature's values as training held them (its text is what the model encodes)."""
    from keel.serving import NULLABLE_DTYPE, dtype_family

    column = _decoded(column)
    family = dtype_family(dtype)
    kind = _arrow_kind(column.type)
    if family == "bool" and kind not in ("boolean", "null"):
        booleans = _booleans(column, kind)
        if booleans is not None:  # 1/0, "true"/"false": the booleans training saw
            column, kind = booleans, "boolean"
    values = _as_read(column, family, kind)
    if dtype is not None and NULLABLE_DTYPE.match(dtype):
        # A nullable dtype (boolean, Int64, string...) held pd.NA for a missing value, which the
        # model's encoder reads as '<NA>', not 'nan' or 'None': hand it the same dtype.
        try:
            return values.astype(dtype)
        except (TypeError, ValueError, OverflowError):
            pass  # values that do not fit it: categories training never saw, as they came
    return values


def _booleans(column: pa.Array, kind: str) -> pa.Array | None:
    """1/0 or "true"/"false" (any case) as Arrow booleans; None for other values."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if kind in ("integer", "floating", "decimal"):
        values, allowed = column, pa.array([0, 1]).cast(column.type)
    elif kind == "text":
        values, allowed = pc.utf8_lower(pc.utf8_trim_whitespace(column)), pa.array(["true", "false"])
    else:
        return None
    fits = pc.or_kleene(pc.is_null(values), pc.is_in(values, value_set=allowed))
    if not pc.all(fits).as_py():
        return None
    return pc.equal(values, allowed[1])


def _as_read(column: pa.Array, family: str, kind: str) -> pd.Series:
    """A categorical column as pandas reads training's type (before any nullable dtype)."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa

    if family in ("text", "int", "float") and kind == "null":
        return pd.Series(np.full(len(column), np.nan, dtype=object))  # encoded as 'nan'
    if family == "text" and kind != "text":
        if kind in ("integer", "decimal"):
            return pd.Series(column.cast(pa.string()).to_pandas())
        values = column.to_pandas().astype(object)  # booleans, floats: Python's text of them
        return values.where(values.notna(), np.nan)
    if family == "int" and kind == "floating":
        try:
            column = column.cast(pa.int64())  # whole numbers, as training's integers
            kind = "integer"
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass  # fractions: categories training never saw
    if family == "int" and kind == "integer":
        # A gap would make pandas read the integers as floats ('3.0'): keep them integers.
        values = column.to_pandas(integer_object_nulls=True)
        return values.where(values.notna(), np.nan)
    if family == "float" and kind in ("integer", "decimal", "boolean", "floating"):
        return pd.Series(_numeric(column))
    return pd.Series(column.to_pandas())  # as training read the same type


def training_frame(batch: pa.RecordBatch, spec: FeatureSpec,
                   dtypes: Mapping[str, str]) -> pd.DataFrame:
    """The feature columns of ``batch`` as the frame the model was trained on (module docstring)."""
    import pandas as pd

    names = batch.schema.names
    data: dict[str, Any] = {}
    for name in spec.numeric:
        data[name] = _numeric(batch.column(names.index(name)))
    for name in spec.categorical:
        data[name] = _categorical(batch.column(names.index(name)), dtypes.get(name)).array  # dtype kept
    return pd.DataFrame(data, columns=spec.features)


# -- the stage ----------------------------------------------------------------------------------
def _scored(model: Any, frame: pd.DataFrame, task: str) -> tuple[Any, Any]:
    """Predictions and class probabilities (None without them) of one batch.

    A classifier's prediction is the argmax of its probabilities (what scikit-learn's
    ``predict`` computes): the probabilities are computed once.
    """
    import numpy as np

    if task == "regression":
        return np.asarray(model.predict(frame), dtype=float), None
    if not hasattr(model, "predict_proba"):
        return np.asarray(model.predict(frame)), None
    proba = np.asarray(model.predict_proba(frame), dtype=float)
    return np.asarray(model.classes_)[proba.argmax(axis=1)], proba


def predict(
    snapshot_path: str, store: str, model: str, version: int | None, output_path: str, *,
    data_version: str, batch_rows: int = BATCH_ROWS,
) -> PredictionResult:
    """Score the snapshot at ``snapshot_path`` with ``model`` (``version``; None: production).

    Writes the predictions to ``output_path`` (zstd Parquet): every input column, then
    ``prediction``, ``probability_<class>`` per class (classifiers), ``model_version`` and
    ``data_version``. ``data_version`` is the ingest data version of the snapshot.
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from keel.registry import Registry
    from keel.storage import open_store

    if not re.fullmatch(r"[0-9a-f]{64}", data_version):
        raise ParameterError(f"The 'data_version' of predict must be an ingest data version (64 "
                             f"hex digits). Got {data_version!r}.", stage=STAGE)
    if isinstance(batch_rows, bool) or not isinstance(batch_rows, int) or batch_rows < 1:
        raise ParameterError(f"batch_rows must be a whole number of rows, 1 or more. Got "
                             f"{batch_rows!r}.", stage=STAGE)
    registry = Registry(open_store(store), model)
    number = resolve_version(registry, version)
    spec, dtypes = version_inputs(registry, number)
    parquet = pq.ParquetFile(snapshot_path, pre_buffer=False)  # pre_buffer keeps every chunk
    inputs = parquet.schema_arrow
    check_columns(inputs, spec, registry.model, number, dtypes)
    fitted = registry.load_model(number)  # sha256-verified before unpickling
    classes = list(fitted.classes_) if spec.task == "classification" else []
    probabilities = probability_columns(classes) if hasattr(fitted, "predict_proba") else []
    prediction_type = pa.array(np.asarray(classes)).type if classes else pa.float64()
    metadata = {METADATA_KEY: json.dumps({
        "model": registry.model, "version": number, "data_version": data_version,
        "probabilities": dict(zip(probabilities, map(_plain, classes), strict=False)),
    }).encode()}
    schema = _output_schema(inputs, prediction_type, probabilities, metadata)
    rows = 0
    output = Path(output_path)
    try:
        with pq.ParquetWriter(output, schema, compression=OUTPUT_COMPRESSION) as writer:
            for batch in parquet.iter_batches(batch_size=batch_rows):
                n = batch.num_rows
                if not n:
                    continue
                pred, proba = _scored(fitted, training_frame(batch, spec, dtypes), spec.task)
                added = [pa.array(pred).cast(prediction_type)]
                if proba is not None:
                    added += [pa.array(proba[:, i]) for i in range(proba.shape[1])]
                added += [pa.array(np.full(n, number, dtype=np.int64)),
                          pa.array([data_version] * n, pa.string())]
                writer.write_batch(pa.RecordBatch.from_arrays([*batch.columns, *added],
                                                              schema=schema))
                rows += n
    except BaseException:
        output.unlink(missing_ok=True)  # nothing half-written is left behind
        raise
    return PredictionResult(model=registry.model, version=number, data_version=data_version,
                            rows=rows, output=str(output_path), columns=list(schema.names))


def _plain(value: Any) -> Any:
    """A numpy scalar class as the JSON value it is (``numpy.int64(1)`` -> 1)."""
    return value.item() if hasattr(value, "item") else value


@reports_errors
def run(snapshot_path: str, store: str, model_name: str, version: int | float, ingest_info: str,
        output_path: str, *, batch_rows: int = BATCH_ROWS) -> PredictionResult:
    """The predict stage: ``version`` 0 is production; the data version is ingest's."""
    from keel.settings import checked

    ingested = IngestResult.from_json(ingest_info, origin="the ingest result", stage=STAGE)
    # KFP hands ints to a component as floats: accept 3.0, refuse 3.5.
    number: Any = version
    if isinstance(version, float) and version.is_integer():
        number = int(version)
    return predict(snapshot_path, checked("store", store), checked("model_name", model_name),
                   number or None, output_path, data_version=ingested.data_version,
                   batch_rows=batch_rows)

"""Seeded, credit-shaped sample tables of any size, written in chunks (``keel sample``).

A table has a binary target ``Status`` (``good`` or ``bad``) that depends on the features through
a noisy logistic rule, so a model learns something (roc_auc about 0.8, never 1), 10 numeric
columns (5 with missing values) and 4 categorical ones. It is generated and written
:data:`CHUNK_ROWS` rows at a time: memory holds one chunk whatever the number of rows.

Chunk ``i`` draws from its own generator, seeded with ``(seed, i)``, so the same seed and rows
always give the same bytes (the file's format is decided by its suffix: ``.csv``, ``.csv.gz`` or
``.parquet``), and tables of different sizes with one seed share their whole chunks.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal

import numpy as np
import numpy.typing as npt

from keel.errors import ParameterError

STAGE = "sample"
CHUNK_ROWS = 65_536  # rows per chunk: one Parquet row group, like an ingest snapshot
TARGET = "Status"
FORMATS: dict[str, Literal["csv", "csv.gz", "parquet"]] = {
    ".csv.gz": "csv.gz", ".csv": "csv", ".parquet": "parquet"}
COMPRESSION = "zstd"  # Parquet, as the ingest snapshot
GZIP_LEVEL = 6

PURPOSES = ["debt_consolidation", "credit_card", "home_improvement", "car", "medical",
            "small_business", "vacation", "other"]
PURPOSE_SHARE = [0.30, 0.25, 0.12, 0.10, 0.08, 0.06, 0.04, 0.05]
PURPOSE_RISK = [0.2, 0.1, -0.2, -0.1, 0.3, 0.6, 0.0, 0.1]
HOMES = ["rent", "mortgage", "own", "other"]
HOME_SHARE = [0.45, 0.40, 0.13, 0.02]
HOME_RISK = [0.3, -0.2, -0.3, 0.4]
GRADES = list("ABCDEFG")
STATES = [f"S{i:02d}" for i in range(50)]
#: the share of missing values of the columns that have some
MISSING = {"income": 0.05, "credit_score": 0.02, "months_employed": 0.08, "utilization": 0.03,
           "balance": 0.10}
NUMERIC = ["age", "income", "loan_amount", "credit_score", "debt_to_income", "months_employed",
           "open_accounts", "utilization", "late_payments", "balance"]
CATEGORICAL = ["purpose", "home_ownership", "state", "grade"]
COLUMNS = [TARGET, *NUMERIC, *CATEGORICAL]
INTERCEPT = -2.05  # about 27% bad, like the bundled data/credit.csv

@dataclass(frozen=True)
class SampleResult:
    """What ``keel sample`` wrote."""

    path: str
    format: str
    rows: int
    seed: int
    bytes: int

    def to_dict(self) -> dict[str, Any]:
        """The result as a JSON object (``keel sample --json``)."""
        return {"path": self.path, "format": self.format, "rows": self.rows, "seed": self.seed,
                "bytes": self.bytes}


def output_format(path: str | Path) -> Literal["csv", "csv.gz", "parquet"]:
    """The format a path's suffix asks for; a ParameterError naming the known suffixes otherwise."""
    name = Path(path).name.lower()
    for suffix, fmt in FORMATS.items():
        if name.endswith(suffix) and len(name) > len(suffix):
            return fmt
    raise ParameterError(
        f"The --out of sample must be a file name ending in {', '.join(FORMATS)}. "
        f"Got {str(path)!r}.", stage=STAGE)


def check_rows(rows: int) -> int:
    """``rows`` if it is a whole number of rows, 1 or more; a ParameterError otherwise."""
    if isinstance(rows, bool) or not isinstance(rows, int) or rows < 1:
        raise ParameterError(f"The --rows of sample must be a whole number, 1 or more. "
                             f"Got {rows!r}.", stage=STAGE)
    return rows


def check_seed(seed: int) -> int:
    """``seed`` if it is a whole number, 0 or more; a ParameterError otherwise."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ParameterError(f"The --seed of sample must be a whole number, 0 or more. "
                             f"Got {seed!r}.", stage=STAGE)
    return seed


def check_output(out: str | Path, overwrite: bool = False) -> Path:
    """The absolute path of ``out``, if it is a file Keel may write; a ParameterError otherwise."""
    output_format(out)
    path = Path(out).expanduser().absolute()
    if path.is_dir():
        raise ParameterError(f"The --out of sample must be a file, not a folder. Got {str(out)!r}.",
                             stage=STAGE)
    if os.path.lexists(path) and not overwrite:
        raise ParameterError(f"The output {str(path)!r} exists; pass --overwrite to replace it.",
                             stage=STAGE)
    return path


# -- the rows ---------------------------------------------------------------------------------
def chunk(seed: int, index: int, rows: int) -> Any:
    """Chunk ``index`` (``rows`` rows) of the table of ``seed``, as a pyarrow RecordBatch."""
    import pyarrow as pa

    rng = np.random.default_rng([seed, index])
    age = rng.integers(18, 80, rows)
    income = (rng.lognormal(10.8, 0.5, rows)).round(2)
    loan = (rng.gamma(2.0, 7500.0, rows) // 25 * 25 + 500).astype(np.float64)
    score = rng.normal(680, 70, rows).clip(300, 850).round()
    dti = (loan / income).round(4)
    employed = rng.geometric(1 / 60, rows).astype(np.float64)
    accounts = rng.poisson(9, rows)
    utilization = rng.beta(2, 5, rows).round(4)
    late = rng.poisson(0.4 + 0.6 * (score < 620), rows)
    balance = (rng.normal(12000, 9000, rows) + 2 * loan).round(2)
    purpose = rng.choice(len(PURPOSES), rows, p=PURPOSE_SHARE)
    home = rng.choice(len(HOMES), rows, p=HOME_SHARE)
    state = rng.integers(0, len(STATES), rows)
    grade = np.clip(np.round((760 - score) / 45 + rng.normal(0, 0.9, rows)), 0,
                    len(GRADES) - 1).astype(np.int64)

    logit = (INTERCEPT
             - 0.9 * (score - 680) / 70
             + 0.55 * np.minimum(late, 5)
             + 1.6 * (dti - 0.35)
             + 1.8 * (utilization - 0.29)
             - 0.35 * (np.log(employed) - 3.5)
             - 0.25 * (np.log(income) - 10.8)
             - 0.012 * (age - 48)
             + 0.15 * grade
             + np.take(PURPOSE_RISK, purpose) + np.take(HOME_RISK, home)
             + 0.1 * ((state % 7) == 0))
    bad = rng.random(rows) < 1 / (1 + np.exp(-logit))

    def missing(name: str, values: npt.NDArray[Any], kind: Any) -> Any:
        mask = rng.random(rows) < MISSING[name] if name in MISSING else None
        return pa.array(values, type=kind, mask=mask)

    def text(values: list[str], codes: npt.NDArray[Any]) -> Any:
        return pa.DictionaryArray.from_arrays(pa.array(codes, pa.int32()),
                                              pa.array(values)).dictionary_decode()

    columns = {
        TARGET: text(["good", "bad"], bad.astype(np.int32)),
        "age": missing("age", age, pa.int64()),
        "income": missing("income", income, pa.float64()),
        "loan_amount": missing("loan_amount", loan, pa.float64()),
        "credit_score": missing("credit_score", score.astype(np.int64), pa.int64()),
        "debt_to_income": missing("debt_to_income", dti, pa.float64()),
        "months_employed": missing("months_employed", employed.astype(np.int64), pa.int64()),
        "open_accounts": missing("open_accounts", accounts, pa.int64()),
        "utilization": missing("utilization", utilization, pa.float64()),
        "late_payments": missing("late_payments", late, pa.int64()),
        "balance": missing("balance", balance, pa.float64()),
        "purpose": text(PURPOSES, purpose),
        "home_ownership": text(HOMES, home),
        "state": text(STATES, state),
        "grade": text(GRADES, grade),
    }
    return pa.RecordBatch.from_pydict(columns)


def chunks(rows: int, seed: int = 0) -> Iterator[Any]:
    """The table of ``rows`` rows and ``seed``, one RecordBatch of at most CHUNK_ROWS at a time."""
    check_rows(rows)
    check_seed(seed)
    for index, start in enumerate(range(0, rows, CHUNK_ROWS)):
        yield chunk(seed, index, min(CHUNK_ROWS, rows - start))


# -- the file ---------------------------------------------------------------------------------
class _Writer:
    """Writes batches as ``fmt`` to an open binary file (CSV header once; gzip with no mtime)."""

    def __init__(self, file: IO[bytes], fmt: str):
        self.file, self.fmt = file, fmt
        self.gz: gzip.GzipFile | None = None
        self.writer: Any = None

    def write(self, batch: Any) -> None:
        import pyarrow.csv as csv
        import pyarrow.parquet as pq

        if self.writer is None:
            if self.fmt == "parquet":
                self.writer = pq.ParquetWriter(self.file, batch.schema, compression=COMPRESSION)
            else:
                sink: Any = self.file
                if self.fmt == "csv.gz":  # no name, no time in the header: the same bytes
                    self.gz = gzip.GzipFile(filename="", mode="wb", fileobj=self.file,
                                            compresslevel=GZIP_LEVEL, mtime=0)
                    sink = self.gz
                self.writer = csv.CSVWriter(sink, batch.schema, write_options=csv.WriteOptions(
                    quoting_style="none", quoting_header="none"))
        self.writer.write_batch(batch)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        if self.gz is not None:
            self.gz.close()


def write_sample(out: str | Path, rows: int, seed: int = 0, *,
                 progress: Callable[[int, int], None] | None = None,
                 overwrite: bool = False) -> SampleResult:
    """Write the table of ``rows`` rows and ``seed`` to ``out`` (its suffix names the format).

    The rows go to a temporary file beside ``out``, renamed into place when every row is
    written: a failure or an interrupt leaves no partial table. An existing ``out`` is refused
    unless ``overwrite``. ``progress(rows_written, rows)`` is called after each chunk.
    """
    fmt = output_format(out)
    check_rows(rows)
    check_seed(seed)
    path = check_output(out, overwrite)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        written = 0
        with open(tmp, "wb") as file:
            writer = _Writer(file, fmt)
            try:
                for batch in chunks(rows, seed):
                    writer.write(batch)
                    written += batch.num_rows
                    if progress is not None:
                        progress(written, rows)
            finally:
                writer.close()
        if overwrite:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)  # exclusive: never over a file that appeared meanwhile
            except FileExistsError:
                raise ParameterError(f"The output {str(path)!r} was created by someone else "
                                     "while sampling; pass --overwrite to replace it.",
                                     stage=STAGE) from None
    except OSError as exc:
        raise ParameterError(f"The table could not be written to {str(path)!r}: "
                             f"{exc.strerror or exc}.", stage=STAGE) from None
    finally:
        with contextlib.suppress(OSError):  # below a file, say: then there is nothing to remove
            tmp.unlink(missing_ok=True)
    return SampleResult(path=str(path), format=fmt, rows=rows, seed=seed,
                        bytes=path.stat().st_size)

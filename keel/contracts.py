"""What flows between stages, as types: one pydantic model per artifact, with a JSON round trip.

Every stage writes its structured outputs through these models and reads its inputs through them,
so no stage reads another's dict by key, and an artifact that is missing a field or has a field of
the wrong type is refused at once with a :class:`ContractError` naming the artifact and the field.
The registry's ``manifest.json`` is a :class:`Manifest`.

Each document carries ``schema_version``. Keel 0.1.0 wrote none: such a document is version 1,
whose fields are a subset of version 2's, so it reads unchanged. A document from a newer Keel is
refused with a message that says so, rather than half understood.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    model_validator,
)

from keel.errors import KeelError

# 3: split rule, search, comparison, intervals, slices, evaluation report
# 4: statistics, data checks (anomalies, drift, leakage), validation rules, source details,
#    golden rows, the serving smoke test and the deployment
SCHEMA_VERSION = 4
LEGACY_SCHEMA_VERSION = 1  # documents written by Keel 0.1.0, which had no schema_version
READING = "keel.reading"  # validation context: a stored document, not one being made

Task = Literal["classification", "regression"]
Encoding = Literal["auto", "onehot", "ordinal"]
Scalar = bool | int | float | str
JsonValue = Scalar | None | list[Any] | dict[str, Any]


class ContractError(KeelError):
    """A stage artifact or registry document does not have the fields and types it must have."""

    stage = "contracts"


class Contract(BaseModel):
    """Base of every artifact and of its parts: strict types, no unknown fields, immutable."""

    # NaN and inf would be written as null and refused only by the next stage: refuse them here.
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, allow_inf_nan=False)

    artifact: ClassVar[str] = "artifact"

    @classmethod
    def from_json(cls, text: str | bytes, *, origin: str = "", stage: str | None = None) -> Self:
        """Parse and check a JSON document; :class:`ContractError` names the first bad field."""
        try:
            return cls.model_validate_json(text, context={READING: True})
        except ValidationError as exc:
            raise contract_error(cls.artifact, exc, origin, stage) from None

    @classmethod
    def from_dict(cls, doc: Any, *, origin: str = "", stage: str | None = None) -> Self:
        """Check an already parsed document (JSON types: dicts, lists, str, numbers, bool, None)."""
        try:
            return cls.model_validate(doc, context={READING: True})
        except ValidationError as exc:
            raise contract_error(cls.artifact, exc, origin, stage) from None

    @classmethod
    def read(cls, path: str | Path, *, stage: str | None = None) -> Self:
        """Read the artifact file a previous stage wrote."""
        return cls.from_json(Path(path).read_bytes(), origin=str(path), stage=stage)

    def to_json(self) -> str:
        """Compact JSON, keys in declaration order; ints stay ints (KFP numbers would be floats)."""
        return self.model_dump_json()

    def to_dict(self) -> dict[str, Any]:
        """The document as plain JSON types."""
        return self.model_dump(mode="json")

    def write(self, path: str | Path) -> None:
        """Write the artifact file, indented for people reading it in the dashboard."""
        Path(path).write_text(self.model_dump_json(indent=2) + "\n")


def contract_error(
    artifact: str, exc: ValidationError, origin: str = "", stage: str | None = None
) -> ContractError:
    """One line: the artifact, where it came from, the first bad field, what was expected and got."""
    first = exc.errors(include_url=False)[0]
    field = ".".join(str(part) for part in first["loc"])
    where = f" ({origin})" if origin else ""
    got = first.get("input")
    shown = repr(got) if not isinstance(got, dict | list) else type(got).__name__
    if len(shown) > 80:
        shown = shown[:77] + "..."
    more = f" ({exc.error_count() - 1} more problem(s))" if exc.error_count() > 1 else ""
    message = first["msg"].removeprefix("Value error, ")
    if not field:  # the document as a whole: not JSON, not an object, or a rule across fields
        detail = message
    elif first["type"] == "missing":
        detail = f"field {field!r} is missing"
    else:
        detail = f"field {field!r}: {message}; got {shown}"
    return ContractError(f"The {artifact}{where} is not valid: {detail}{more}.", stage=stage)


class Document(Contract):
    """A whole artifact file or registry document: it carries its ``schema_version``."""

    schema_version: int = SCHEMA_VERSION

    @model_validator(mode="before")
    @classmethod
    def _known_schema_version(cls, data: Any, info: ValidationInfo) -> Any:
        if not isinstance(data, dict):
            return data
        found = data.get("schema_version")
        if isinstance(found, int) and found > SCHEMA_VERSION:
            raise ValueError(
                f"it was written by a newer Keel (schema_version {found}) and this Keel reads "
                f"up to {SCHEMA_VERSION}: upgrade Keel to read it"
            )
        if found is None and (info.context or {}).get(READING):
            data = {**data, "schema_version": LEGACY_SCHEMA_VERSION}  # written by Keel 0.1.0
        return data


# -- ingest -----------------------------------------------------------------------------------
class IngestResult(Document):
    """What ingest read: the source, its format and the data version (sha256 of the rows)."""

    artifact: ClassVar[str] = "ingest result"
    source: str
    format: str
    data_version: str = Field(pattern=r"^[0-9a-f]{64}$")
    rows: int = Field(ge=0)
    columns: list[str]
    query: str = ""  # a SQL source: the query, or the table read
    parts: int = Field(default=1, ge=0)  # files read (a folder or prefix), or an API's pages


# -- validate ---------------------------------------------------------------------------------
ColumnKind = Literal[
    "numeric", "categorical", "text", "identifier", "datetime", "empty", "constant"
]


class ColumnInfo(Contract):
    """One column of the validated table: its kind, its role, and why it is excluded if it is."""

    artifact: ClassVar[str] = "column description"
    name: str
    dtype: str
    kind: ColumnKind
    role: Literal["feature", "target", "excluded"]
    missing: int = Field(ge=0)
    unique: int = Field(ge=0)
    reason: str = ""
    stats: dict[str, JsonValue] = Field(default_factory=dict)


class TableSchema(Document):
    """The validate stage's schema document: task, classes, rows kept, and every column."""

    artifact: ClassVar[str] = "schema document"
    target: str
    task: Task
    classes: list[Scalar] | None
    rows_in: int = Field(ge=0)
    rows_dropped_missing_target: int = Field(ge=0)
    rows: int = Field(ge=0)
    infinite_values: dict[str, int]
    numeric_features: list[str]
    categorical_features: list[str]
    excluded: dict[str, str]
    columns: list[ColumnInfo]
    schema_hash: str

    @model_validator(mode="after")
    def _classes_match_task(self) -> Self:
        if (self.task == "classification") != (self.classes is not None):
            raise ValueError("classes must be a list for classification and null for regression")
        return self


# -- statistics and data checks (validate) ----------------------------------------------------
StatisticsKind = Literal["numeric", "categorical", "boolean", "text", "datetime", "other"]
Severity = Literal["error", "warning", "ignore"]
#: What a data check can find; each has a default severity (keel.data_checks.DEFAULT_SEVERITY).
AnomalyKind = Literal[
    "missing_column",  # a column of the reference is not in this table
    "production_feature_missing",  # ... and production's model uses it as a feature
    "new_column",  # a column that the reference does not have
    "type_change",  # the column's type differs from the reference's, or from the expected type
    "kind_change",  # same type, another kind (categorical became free text, numbers an id)
    "new_category",  # values of a categorical column the reference never saw (share of rows)
    "out_of_range",  # numbers outside the reference's (or the expected) min..max (share of rows)
    "missing_rate",  # the share of missing values rose by more than the allowed jump
    "row_count",  # the row count is far from the reference's
    "constant",  # a feature column with a single value
    "single_class",  # a classification target with one class
    "drift",  # the distribution moved beyond the column's drift threshold
    "target_leakage",  # the feature alone predicts the target almost perfectly
]
DriftMethod = Literal["psi", "js", "linf"]


class Histogram(Contract):
    """Counts of values in the bins between consecutive ``edges`` (the last bin includes its end)."""

    artifact: ClassVar[str] = "histogram"
    edges: list[float]
    counts: list[int]

    @model_validator(mode="after")
    def _one_more_edge(self) -> Self:
        if len(self.edges) != len(self.counts) + 1:
            raise ValueError("a histogram has one more edge than it has counts")
        return self


class Frequency(Contract):
    """How many rows hold one value (as text: JSON keys and categories are text)."""

    artifact: ClassVar[str] = "frequency"
    value: str
    count: int = Field(ge=0)


class ColumnStatistics(Contract):
    """One column's statistics from one streaming pass over the snapshot.

    Numbers (``numeric``): range, moments, quantiles from a KLL sketch (``sketch``, base64, what
    drift is computed from) and a histogram. Categories, booleans and text: the most frequent
    values, every value's count while there are at most ``keel.statistics.MAX_TRACKED`` of them
    (None beyond), and text lengths. Dates: earliest and latest as ISO 8601 text.
    """

    artifact: ClassVar[str] = "column statistics"
    name: str
    type: str  # the Arrow type, e.g. int64, double, string, timestamp[us]
    kind: StatisticsKind
    count: int = Field(ge=0)  # values present
    missing: int = Field(ge=0)
    distinct: int = Field(ge=0)
    distinct_exact: bool = True  # False: estimated by a sketch
    min: float | None = None
    max: float | None = None
    mean: float | None = None
    std: float | None = None
    quantiles: dict[str, float] = Field(default_factory=dict)  # "0.5" -> median, ...
    histogram: Histogram | None = None
    sketch: str = ""
    top: list[Frequency] = Field(default_factory=list)  # most frequent first
    categories: dict[str, int] | None = None
    min_length: int | None = None
    mean_length: float | None = None
    max_length: int | None = None
    earliest: str | None = None
    latest: str | None = None


class TableStatistics(Document):
    """Every column's statistics: written by validate, stored with each version as reference."""

    artifact: ClassVar[str] = "statistics"
    rows: int = Field(ge=0)
    columns: list[ColumnStatistics]

    def column(self, name: str) -> ColumnStatistics | None:
        """The statistics of column ``name``; None when the table has no such column."""
        return next((c for c in self.columns if c.name == name), None)


class ColumnRule(Contract):
    """What a user expects of one column, overriding what Keel infers or compares."""

    artifact: ClassVar[str] = "column rule"
    type: Literal["numeric", "categorical", "boolean", "text", "datetime"] | None = None
    min: float | None = None
    max: float | None = None
    exclude: bool = False  # never a feature, and no check looks at it
    drift_method: DriftMethod | None = None
    drift_threshold: float | None = Field(default=None, gt=0)
    severity: dict[AnomalyKind, Severity] = Field(default_factory=dict)


class ValidationRules(Contract):
    """Users' overrides of the data checks: a rules file, or the ``validation_rules`` parameter.

    Defaults are Keel's: every field can be left out. Thresholds of a drift method not named in
    ``drift_threshold`` are keel.data_checks.DEFAULT_DRIFT_THRESHOLD's.
    """

    artifact: ClassVar[str] = "validation rules"
    severity: dict[AnomalyKind, Severity] = Field(default_factory=dict)
    columns: dict[str, ColumnRule] = Field(default_factory=dict)
    numeric_drift: DriftMethod = "psi"
    categorical_drift: DriftMethod = "linf"
    drift_threshold: dict[DriftMethod, Annotated[float, Field(gt=0)]] = Field(
        default_factory=dict)  # method -> bar
    new_category_share: float = Field(default=0.01, ge=0, le=1)  # share of rows, above: anomaly
    out_of_range_share: float = Field(default=0.01, ge=0, le=1)
    missing_rate_jump: float = Field(default=0.1, ge=0, le=1)  # absolute rise of the share
    row_count_ratio: float = Field(default=2.0, ge=1)  # rows / reference rows beyond x or 1/x
    leakage_threshold: float = Field(default=0.98, gt=0, le=1)

    @model_validator(mode="after")
    def _methods_fit(self) -> Self:
        if self.categorical_drift == "psi":
            raise ValueError("categorical_drift must be linf or js (psi is for numbers)")
        return self


class Anomaly(Contract):
    """One thing a data check found, with its numbers and what it does to the run."""

    artifact: ClassVar[str] = "anomaly"
    kind: AnomalyKind
    column: str  # "" for the table as a whole (row_count)
    severity: Severity
    message: str  # one line naming the column and the numbers
    value: float | None = None  # what was found (a share, a rate, a score, a row count)
    reference: float | None = None  # the reference's number it is compared with
    threshold: float | None = None


class Drift(Contract):
    """How far one feature's distribution moved from the reference."""

    artifact: ClassVar[str] = "drift"
    column: str
    method: DriftMethod
    score: float = Field(ge=0)
    threshold: float = Field(gt=0)

    @property
    def drifted(self) -> bool:
        """Whether the score is beyond the column's threshold."""
        return self.score > self.threshold


class LeakageScore(Contract):
    """How well one feature alone predicts the target, on rows it was not fitted on."""

    artifact: ClassVar[str] = "leakage score"
    column: str
    metric: str  # balanced_accuracy (classification) or rank_r2 (regression: R² on ranks)
    score: float


class ValidationResult(Document):
    """The data checks of one run: anomalies, drift and leakage, against which reference."""

    artifact: ClassVar[str] = "validation result"
    reference_version: int | None  # production version compared with; None: no reference
    reference_rows: int | None
    reference_note: str  # what the reference was, or why there was none
    anomalies: list[Anomaly]
    drift: list[Drift]  # worst first (score / threshold)
    leakage: list[LeakageScore]  # highest first

    @property
    def errors(self) -> list[Anomaly]:
        """The anomalies that stop the run."""
        return [a for a in self.anomalies if a.severity == "error"]

    @property
    def warnings(self) -> list[Anomaly]:
        """The anomalies that are reported only."""
        return [a for a in self.anomalies if a.severity == "warning"]


# -- preprocess -------------------------------------------------------------------------------
class FeatureSpec(Document):
    """The feature transformer as data: which columns are numeric or categorical, and encoding."""

    artifact: ClassVar[str] = "feature spec"
    target: str
    task: Task
    numeric: list[str]
    categorical: list[str]
    encoding: Encoding

    @property
    def features(self) -> list[str]:
        """The model's input columns, in the transformer's order (numeric, then categorical)."""
        return self.numeric + self.categorical


ROW_HASH = "keel-row-hash-1"  # the hash of keel.split; a change to it is a new name


class SplitRule(Contract):
    """Which rows are test rows, recorded so a later run can tell which rows a version trained on.

    ``hash``: a row is a test row when the salted hash of its values in ``columns`` (the key
    columns the user named, or every feature and the target) falls in the lowest ``test_size``
    share, so a row keeps its side from run to run. ``time``: rows whose ``columns[0]`` is at or
    after ``cutoff`` (the newest ``test_size`` share when the rule was made) are test rows.
    """

    artifact: ClassVar[str] = "split rule"
    method: Literal["hash", "time"]
    test_size: float = Field(gt=0, lt=1)
    columns: list[str] = Field(min_length=1)
    keyed: bool = False  # hash: the columns are key columns the user named
    salt: str = ""
    algorithm: str = ROW_HASH
    cutoff: str | None = None  # time: ISO 8601 timestamp, or a number as text

    @model_validator(mode="after")
    def _complete(self) -> Self:
        if self.method == "time" and (self.cutoff is None or len(self.columns) != 1):
            raise ValueError("a time rule needs one column and its cutoff")
        return self


class SplitResult(Document):
    """Rows on each side of the split, and the rule that put them there."""

    artifact: ClassVar[str] = "split result"
    train_rows: int = Field(ge=0)
    test_rows: int = Field(ge=0)
    rule: SplitRule


# -- train ------------------------------------------------------------------------------------
class Trial(Contract):
    """One parameter set of a search, fitted on the training rows and scored on validation rows."""

    artifact: ClassVar[str] = "search trial"
    index: int = Field(ge=0)
    params: dict[str, JsonValue]
    metric: str
    score: float | None  # None when the fit or the scoring failed (``error`` says why)
    error: str | None = None
    fit_seconds: float = Field(ge=0)
    validation_rows: int = Field(ge=0)


class Search(Contract):
    """A hyperparameter search: every trial, and the one chosen (on validation rows only)."""

    artifact: ClassVar[str] = "search record"
    metric: str
    higher_is_better: bool
    method: Literal["grid", "random"]
    validation_size: float = Field(gt=0, lt=1)
    candidates: list[Trial] = Field(min_length=1)
    best: int = Field(ge=0)

    @model_validator(mode="after")
    def _best_scored(self) -> Self:
        if self.best >= len(self.candidates) or self.candidates[self.best].score is None:
            raise ValueError("best must be the index of a trial that has a score")
        return self


class TrainRecord(Document):
    """What was fitted and how: estimator, user and effective parameters, rows, fit time."""

    artifact: ClassVar[str] = "training record"
    estimator: str
    estimator_class: str
    params: dict[str, JsonValue]
    effective_params: dict[str, Scalar | None]
    encoding: Encoding
    features: list[str]
    train_rows: int = Field(ge=0)
    fit_seconds: float = Field(ge=0)
    seed: int
    search: Search | None = None  # absent when one parameter set was given
    #: The scikit-learn that fitted the model (what loads it); absent in records of Keel 0.1.0
    #: versions made before the stages had images of their own.
    scikit_learn: str = ""


class GoldenRows(Document):
    """Rows and the predictions the trained model gave them in the training process.

    Stored with the version (``golden_rows.json``); the serving smoke test sends the rows to a
    model server and requires the same answers. ``rows`` are JSON records of the model's input
    columns as a client would send them (a missing value is null).
    """

    artifact: ClassVar[str] = "golden rows"
    columns: list[str]
    rows: list[dict[str, JsonValue]]
    predictions: list[JsonValue]
    classes: list[Scalar] | None = None
    probabilities: list[list[float]] | None = None  # one per row, in ``classes`` order

    @model_validator(mode="after")
    def _one_answer_per_row(self) -> Self:
        if len(self.predictions) != len(self.rows) or (
                self.probabilities is not None and len(self.probabilities) != len(self.rows)):
            raise ValueError("golden rows need one prediction (and probability row) per row")
        return self


# -- evaluate ---------------------------------------------------------------------------------
class Baseline(Contract):
    """The production model re-scored on this run's test rows (``metrics`` None if it could not)."""

    artifact: ClassVar[str] = "baseline"
    version: int = Field(ge=1)
    generation: int = Field(ge=0)
    metrics: dict[str, float] | None
    error: str | None = None
    #: why production was not re-scored at all: it predicts another target, task or classes and
    #: the run was allowed to replace it (allow_target_change); None when it was compared
    not_compared: str | None = None


class Interval(Contract):
    """A paired-bootstrap interval of candidate minus baseline on one metric."""

    artifact: ClassVar[str] = "interval"
    low: float
    high: float
    level: float = Field(gt=0, lt=1)
    rounds: int = Field(ge=1)


class Comparison(Contract):
    """The rows candidate and baseline were both scored on, and those left out and why.

    The baseline is never scored on a row it trained on: the test rows its own split rule puts on
    its training side (or, for a version without a recorded rule, rows of its training data) are
    left out of both scores.
    """

    artifact: ClassVar[str] = "comparison"
    rows: int = Field(ge=0)
    excluded: int = Field(ge=0)
    reason: str = ""  # why rows were left out ("" when none were)
    candidate: dict[str, float]  # the candidate on the comparable rows
    intervals: dict[str, Interval] = Field(default_factory=dict)


class Check(Contract):
    """One rule of the gate, with the numbers it compared."""

    artifact: ClassVar[str] = "gate check"
    metric: str
    check: str
    candidate: float | None
    baseline: float | None = None
    threshold: float | None = None
    required: float | None
    passed: bool
    note: str | None = None
    interval: Interval | None = None  # candidate - baseline, when the rule compared them
    rows: int | None = None  # rows the numbers were computed on
    slice: str | None = None  # "column=value" for a slice rule


class SliceMetrics(Contract):
    """The metrics of one slice of the comparable test rows (one value or quantile bin)."""

    artifact: ClassVar[str] = "slice metrics"
    column: str
    value: str
    rows: int = Field(ge=0)
    candidate: dict[str, float]
    baseline: dict[str, float] | None = None


class Override(Contract):
    """A manual promotion whatever the checks said, and why."""

    artifact: ClassVar[str] = "override"
    reason: str = Field(min_length=1)
    checks_passed: bool


class Decision(Document):
    """The decision record: every check, the baseline, any override. Promotion reads only this."""

    artifact: ClassVar[str] = "decision record"
    passed: bool
    checks: list[Check]
    baseline: Baseline | None
    first_run: bool
    thresholds: dict[str, dict[str, float]]
    override: Override | None
    notes: list[str]
    metrics: dict[str, float]
    test_rows: int = Field(ge=0)
    comparison: Comparison | None = None  # None on a first run or when not compared
    per_class: dict[str, dict[str, float]] = Field(default_factory=dict)
    slices: list[SliceMetrics] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.first_run != (self.baseline is None):
            raise ValueError("first_run must be true exactly when there is no baseline")
        checks_passed = all(check.passed for check in self.checks)
        if self.passed != (checks_passed or self.override is not None):
            raise ValueError("passed must be true exactly when every check passed or an override "
                             "was given")
        return self


class Curve(Contract):
    """Points of one plot: ROC, precision-recall, calibration, residuals."""

    artifact: ClassVar[str] = "curve"
    x: list[float]
    y: list[float]
    thresholds: list[float] = Field(default_factory=list)

    @model_validator(mode="after")
    def _paired(self) -> Self:
        if len(self.x) != len(self.y) or (self.thresholds and len(self.thresholds) != len(self.x)):
            raise ValueError("x, y (and thresholds, when given) must have the same length")
        return self


class FeatureImportance(Contract):
    """Permutation importance of one input column: the drop of the primary metric when shuffled."""

    artifact: ClassVar[str] = "feature importance"
    feature: str
    mean: float
    std: float = Field(ge=0)
    shuffles: int = Field(default=5, ge=1)  # 1: ranked by the screening of a wide table only


class EvaluationReport(Document):
    """What the model card plots: curves, confusion matrix, feature importance (from evaluate)."""

    artifact: ClassVar[str] = "evaluation report"
    task: Task
    primary_metric: str
    labels: list[str] = Field(default_factory=list)  # classes, as text
    confusion_matrix: list[list[int]] | None = None
    #: "roc", "pr" (binary), "calibration" (binary: mean predicted vs observed share per bin),
    #: "residuals" (regression: predicted vs actual minus predicted, a sample of rows)
    curves: dict[str, Curve] = Field(default_factory=dict)
    importance: list[FeatureImportance] = Field(default_factory=list)  # largest first
    importance_rows: int = Field(default=0, ge=0)
    #: rows of the one-shuffle ranking of every feature of a wide table; 0: no screening
    importance_screen_rows: int = Field(default=0, ge=0)


# -- publish ----------------------------------------------------------------------------------
class FileDigest(Contract):
    """The sha256 a stored file is checked against before it is loaded."""

    artifact: ClassVar[str] = "file digest"
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class DataLineage(Contract):
    """Which data a version was trained on: the ingest result, the stored snapshot, rows used."""

    artifact: ClassVar[str] = "data lineage"
    source: str
    format: str
    data_version: str
    rows: int = Field(ge=0)
    columns: list[str]
    snapshot: str
    rows_used: int = Field(ge=0)
    rows_dropped_missing_target: int = Field(ge=0)
    query: str = ""  # absent before schema 4
    parts: int = Field(default=1, ge=0)


class Environment(Contract):
    """The code that made a version: package, commit, Python, scikit-learn, stage images."""

    artifact: ClassVar[str] = "environment record"
    keel: str
    git_commit: str
    python: str
    scikit_learn: str
    images: dict[str, str]
    ran_in_image: str | None


class Lineage(Document):
    """Which data, features, parameters, code and images produced which results."""

    artifact: ClassVar[str] = "lineage record"
    data: DataLineage
    schema_hash: str
    task: Task
    target: str
    features: FeatureSpec
    excluded_columns: dict[str, str] = Field(default_factory=dict)  # absent in version 1
    training: TrainRecord
    split: SplitRule | None = None  # absent before schema 3: the rule is unknown
    hyperparameters: dict[str, JsonValue]
    metrics: dict[str, float]
    baseline: Baseline | None
    decision: Decision
    environment: Environment
    run_id: str
    validation: ValidationResult | None = None  # absent before schema 4


class Manifest(Lineage):
    """A version's ``manifest.json``, the commit point of a version: its lineage, name and files.

    Written by the registry when it publishes; version 1 manifests (Keel 0.1.0) read unchanged.
    """

    artifact: ClassVar[str] = "version manifest"
    model: str
    version: int = Field(ge=1)
    registered_at: str
    files: dict[str, FileDigest]


class Publication(Document):
    """What publish returns: the version it wrote."""

    artifact: ClassVar[str] = "publication"
    model: str
    store: str
    version: int = Field(ge=1)


# -- deploy -----------------------------------------------------------------------------------
class SmokeTest(Contract):
    """The published version served on loopback by Keel's model server, asked the golden rows."""

    artifact: ClassVar[str] = "smoke test"
    passed: bool
    reason: str  # why it failed; "" when it passed
    rows: int = Field(ge=0)  # golden rows sent
    latency_ms: float | None = Field(default=None, ge=0)  # of the slowest request
    where: str = ""  # the server asked: a loopback URL, or the deployed endpoint


class Deployment(Document):
    """What the deploy stage did: the smoke test, and the KServe deployment when enabled."""

    artifact: ClassVar[str] = "deployment"
    model: str
    version: int = Field(ge=1)
    smoke_test: SmokeTest
    enabled: bool  # a cluster target (namespace) was given
    deployed: bool  # the InferenceService serves this version now
    namespace: str = ""
    name: str = ""  # of the InferenceService
    url: str = ""
    revision: str = ""
    previous_version: int | None = None  # what the InferenceService served before
    rolled_back: bool = False  # a failed deployment re-applied the previous version
    reason: str = ""  # why it was not deployed, or what failed
    endpoint_smoke_test: SmokeTest | None = None


# -- promote ----------------------------------------------------------------------------------
class Promotion(Document):
    """What promote did: whether the alias moved, and where production points now."""

    artifact: ClassVar[str] = "promotion"
    model: str
    store: str
    version: int = Field(ge=1)
    promoted: bool
    production_version: int | None
    reason: str
    #: each mirror (mlflow, kubeflow) and how recording this run went: "ok" or "failed: why"
    mirrors: dict[str, str] = Field(default_factory=dict)
    deployment: Deployment | None = None  # absent before schema 4


# -- the run summary (built by the CLI from the contracts above) ------------------------------
class SummaryDecision(Contract):
    """The part of the decision record a person reads in the summary."""

    artifact: ClassVar[str] = "summary decision"
    passed: bool
    checks: list[Check]
    first_run: bool
    override: Override | None
    notes: list[str]


class SummaryBaseline(Contract):
    """The baseline as the summary shows it (no generation: that is for promote)."""

    artifact: ClassVar[str] = "summary baseline"
    version: int
    metrics: dict[str, float] | None
    error: str | None = None
    not_compared: str | None = None
    rows: int | None = None  # comparable test rows both models were scored on
    excluded: int | None = None  # test rows left out: production may have trained on them
    excluded_reason: str = ""


class SummaryTrial(Contract):
    """One parameter set of a search, as the summary shows it."""

    artifact: ClassVar[str] = "summary trial"
    params: dict[str, JsonValue]
    score: float | None
    error: str | None = None


class SummarySearch(Contract):
    """The search: every parameter set with its validation score, and the best."""

    artifact: ClassVar[str] = "summary search"
    metric: str
    candidates: list[SummaryTrial]
    best: SummaryTrial


class RunSummary(Document):
    """What ``keel run`` prints (``--json``: this document on the last line of standard output)."""

    artifact: ClassVar[str] = "run summary"
    status: Literal["promoted", "rejected"]
    model: str
    store: str
    version: int
    production_version: int | None
    data_version: str
    rows: int
    task: Task
    metrics: dict[str, float]
    baseline: SummaryBaseline | None
    decision: SummaryDecision
    excluded_columns: dict[str, str]
    log: str
    search: SummarySearch | None = None
    split: SplitRule | None = None
    model_card: str = ""  # where the version's model card is
    mirrors: dict[str, str] = Field(default_factory=dict)  # mirror -> "ok" or "failed: why"
    validation: ValidationResult | None = None  # the data checks (warnings, drift, leakage)
    reason: str = ""  # why production moved or did not (promote's reason)
    deployment: Deployment | None = None  # the serving smoke test and the KServe deployment

    @classmethod
    def of(cls, manifest: Manifest, promotion: Promotion, log: str, model_card: str = ""
           ) -> RunSummary:
        """The summary of one run, from the version it published and what promote did."""
        decision, baseline = manifest.decision, manifest.baseline
        comparison, search = decision.comparison, manifest.training.search
        trials = [] if search is None else [
            SummaryTrial(params=t.params, score=t.score, error=t.error) for t in search.candidates]
        return cls(
            status="promoted" if promotion.promoted else "rejected",
            model=manifest.model,
            store=promotion.store,
            version=manifest.version,
            production_version=promotion.production_version,
            data_version=manifest.data.data_version,
            rows=manifest.data.rows,
            task=manifest.task,
            metrics=manifest.metrics,
            baseline=None if baseline is None else SummaryBaseline(
                version=baseline.version, metrics=baseline.metrics, error=baseline.error,
                not_compared=baseline.not_compared,
                rows=None if comparison is None else comparison.rows,
                excluded=None if comparison is None else comparison.excluded,
                excluded_reason="" if comparison is None else comparison.reason),
            decision=SummaryDecision(
                passed=decision.passed, checks=decision.checks, first_run=decision.first_run,
                override=decision.override, notes=decision.notes),
            excluded_columns=manifest.excluded_columns,
            log=log,
            search=None if search is None else SummarySearch(
                metric=search.metric, candidates=trials, best=trials[search.best]),
            split=manifest.split,
            model_card=model_card,
            mirrors=promotion.mirrors,
            validation=manifest.validation,
            reason=promotion.reason,
            deployment=promotion.deployment,
        )

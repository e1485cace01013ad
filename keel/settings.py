"""The one table of run settings: name, type, default, constraint and help of every setting.

The ``keel run`` options are generated from it, the pipeline's docstring (the input descriptions
users see in the dashboard) and the components' setting descriptions come from it, and a test
fails when the pipeline signature disagrees with it. Every constraint runs twice with the same
code: in :func:`check_settings` before the first stage starts (``keel run``), and in the stage
that uses the setting (:func:`checked`), for runs submitted straight to Kubeflow.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from keel.errors import ParameterError

F = TypeVar("F", bound=Callable[..., Any])
REQUIRED: Any = object()  # the pipeline cannot run without a value
#: KServe's deployment modes (keel.deploy reads them from here): 0.20 renamed Serverless to
#: Knative and RawDeployment to Standard, and still reads the older names.
KNATIVE_MODES = ("Serverless", "Knative")
STANDARD_MODES = ("RawDeployment", "Standard")
DEPLOYMENT_MODES = KNATIVE_MODES + STANDARD_MODES
SAME: Any = object()  # the CLI default is the pipeline default


@dataclass(frozen=True)
class Setting:
    """One run setting, as the pipeline parameter ``name``."""

    name: str
    type: type
    help: str
    stage: str  # the stage that uses it: error messages name it
    default: Any = REQUIRED
    choices: tuple[str, ...] = ()
    #: (this setting, value, the other settings) -> the value as the stage uses it, or a
    #: ParameterError
    check: Callable[[Setting, Any, Mapping[str, Any]], Any] | None = None
    flag: str = ""  # CLI flag; default ``--`` + name with dashes
    cli_default: Any = SAME
    cli_help: str = ""  # when the CLI takes the value in another form than the pipeline
    #: repeated CLI values (``--param a=1 --param b=2``) -> the pipeline value
    from_cli: Callable[[tuple[str, ...]], Any] | None = None
    metavar: str | None = None

    @property
    def cli_flag(self) -> str:
        """The ``keel run`` option for this setting."""
        return self.flag or "--" + self.name.replace("_", "-")

    def fail(self, expected: str, got: Any) -> ParameterError:
        """A ParameterError in scikit-learn's shape, naming this setting and its stage."""
        return ParameterError(
            f"The {self.name!r} parameter of {self.stage} must be {expected}. Got {got!r}.",
            stage=self.stage,
        )


# -- constraints ------------------------------------------------------------------------------
def _text(setting: Setting, value: Any, values: Mapping[str, Any]) -> str:
    if not isinstance(value, str):
        raise setting.fail("a string", value)
    return value


def _non_empty(setting: Setting, value: Any, values: Mapping[str, Any]) -> str:
    if not isinstance(value, str) or not value.strip():
        raise setting.fail("a non-empty string", value)
    return value


def _choice(setting: Setting, value: Any, values: Mapping[str, Any]) -> str:
    if value not in setting.choices:
        raise setting.fail(f"one of {', '.join(setting.choices)}", value)
    return str(value)


def _fraction(setting: Setting, value: Any, values: Mapping[str, Any]) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise setting.fail("a number in (0, 1)", value)
    if not (math.isfinite(value) and 0.0 < value < 1.0):
        raise setting.fail("a finite fraction strictly between 0 and 1", value)
    return float(value)


def _whole(expected: str, top: int) -> Callable[[Setting, Any, Mapping[str, Any]], int]:
    """A constraint: a whole number from 0 to ``top``, described as ``expected``."""
    def check(setting: Setting, value: Any, values: Mapping[str, Any]) -> int:
        # KFP hands ints to a component as floats (protobuf numbers): accept 3.0, refuse 3.5.
        if isinstance(value, bool) or not isinstance(value, int | float) \
                or not math.isfinite(value) or value != int(value) or not 0 <= value <= top:
            raise setting.fail(expected, value)
        return int(value)
    return check


_count = _whole("a whole number of rows, 0 or more", 10**9)
_rounds = _whole("a whole number of resamples from 0 to 100000", 100_000)
_replicas = _whole("a whole number of replicas from 0 to 100", 100)
_seconds = _whole("a whole number of seconds from 0 to 86400", 86_400)


def _flag(setting: Setting, value: Any, values: Mapping[str, Any]) -> bool:
    if not isinstance(value, bool):
        raise setting.fail("true or false", value)
    return value


def _encoding_name(setting: Setting, value: Any, values: Mapping[str, Any]) -> str:
    import codecs

    try:
        codec = codecs.lookup(_non_empty(setting, value, values))
    except LookupError:
        codec = None
    if codec is None or not codec._is_text_encoding:  # rot13, base64, zlib: not text encodings
        raise setting.fail("a text encoding Python knows (utf-8, latin-1, cp1252, ...)", value)
    return codec.name


def _seed(setting: Setting, value: Any, values: Mapping[str, Any]) -> int:
    # KFP hands ints to a component as floats (protobuf numbers): accept 3.0, refuse 3.5.
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value) \
            or not 0 <= value < 2**32:
        raise setting.fail("an integer in [0, 2**32)", value)
    return int(value)


def _source(setting: Setting, value: Any, values: Mapping[str, Any]) -> str:
    from keel.sources import SourceOptions, check_source_options, check_source_uri

    uri = check_source_uri(_non_empty(setting, value, values))
    if "source_query" in values or "source_table" in values:  # all settings: before a run
        text = {name: values.get(name) for name in ("source_query", "source_table",
                                                     "records_key")}
        if all(isinstance(v, str | None) for v in text.values()):
            check_source_options(uri, SourceOptions(
                query=text["source_query"] or "", table=text["source_table"] or "",
                records_key=text["records_key"] or ""))
    return uri


def _store(setting: Setting, value: Any, values: Mapping[str, Any]) -> str:
    from keel.storage import check_store_uri

    return check_store_uri(_non_empty(setting, value, values))


def _model_name(setting: Setting, value: Any, values: Mapping[str, Any]) -> str:
    from keel.registry import check_model_name

    return check_model_name(value, stage=setting.stage)


def _estimator(setting: Setting, value: Any, values: Mapping[str, Any]) -> str:
    from keel.estimators import get_estimator

    return get_estimator(value, stage=setting.stage).name


def _json_object(setting: Setting, value: Any, what: str) -> dict[str, Any]:
    """``value`` parsed as a JSON object (a dict passes as it is); else a ParameterError."""
    try:
        parsed = json.loads(value or "{}") if isinstance(value, str) else value
    except ValueError as exc:
        raise setting.fail(f"a JSON object ({exc})", value) from None
    if not isinstance(parsed, dict):
        raise setting.fail(f"a JSON object of {what}", value)
    return parsed


def _params(setting: Setting, value: Any, values: Mapping[str, Any]) -> dict[str, Any]:
    """A JSON object (so 1 and 1.0 stay apart, as scikit-learn needs), valid for the estimator."""
    from keel.estimators import check_params

    params = _json_object(setting, value, "hyperparameters")
    estimator = _estimator(SETTINGS["estimator"], values.get("estimator", DEFAULTS["estimator"]),
                           values)
    if params:  # no parameter given: nothing to check (and scikit-learn is not imported here)
        check_params(estimator, values.get("task", "auto"), params)
    return params


def _thresholds(setting: Setting, value: Any, values: Mapping[str, Any]) -> dict[str, Any]:
    from keel.evaluate import check_thresholds

    if not isinstance(value, dict):
        raise setting.fail("a mapping of metric to rules", value)
    return check_thresholds(value, values.get("task", "auto"), values.get("slices"))


def _columns(setting: Setting, value: Any, values: Mapping[str, Any]) -> list[str]:
    if not isinstance(value, list | tuple) or not all(
            isinstance(c, str) and c.strip() for c in value):
        raise setting.fail("a list of column names", value)
    if len(set(value)) != len(value):
        raise setting.fail("a list of distinct column names", value)
    return list(value)


def _time_column(setting: Setting, value: Any, values: Mapping[str, Any]) -> str:
    if not isinstance(value, str) or (value and not value.strip()):
        raise setting.fail("a column name, or empty for none", value)
    if value and values.get("split_key"):
        raise setting.fail(
            f"empty when split_key is given (a split is by key or by time, not both; split_key "
            f"is {list(values['split_key'])!r})", value)
    return value


def _grid(setting: Setting, value: Any, values: Mapping[str, Any]) -> dict[str, list[Any]]:
    from keel.search import check_grid

    estimator = _estimator(SETTINGS["estimator"], values.get("estimator", DEFAULTS["estimator"]),
                           values)
    params = _params(SETTINGS["params"], values.get("params", "{}"), values)
    return check_grid(value, estimator, values.get("task", "auto"), params,
                      search_random=values.get("search_random", 0))


def _search_random(setting: Setting, value: Any, values: Mapping[str, Any]) -> int:
    from keel.search import check_search_random

    estimator = _estimator(SETTINGS["estimator"], values.get("estimator", DEFAULTS["estimator"]),
                           values)
    grid = _grid(SETTINGS["grid"], values.get("grid", "{}"), {**values, "search_random": value})
    params = _params(SETTINGS["params"], values.get("params", "{}"), values)
    return check_search_random(value, grid, estimator, values.get("task", "auto"), params=params)


def _change_bound(setting: Setting, value: Any, values: Mapping[str, Any]) -> str:
    bound = _choice(setting, value, values)
    if bound == "interval" and values.get("bootstrap_rounds", DEFAULTS["bootstrap_rounds"]) == 0:
        raise setting.fail("'estimate' when bootstrap_rounds is 0 (no intervals are computed)",
                           value)
    return bound


def _http_uri(setting: Setting, value: Any, values: Mapping[str, Any]) -> str:
    if not isinstance(value, str) or (value and not re.match(r"^https?://[^/\s]+", value)):
        raise setting.fail("an http:// or https:// URL, or empty for none", value)
    return value


def _mlflow_uri(setting: Setting, value: Any, values: Mapping[str, Any]) -> str:
    if not isinstance(value, str) or (value and (value != value.strip() or not re.match(
            r"^(https?://[^/\s]+|databricks(://\S*)?$|file:|sqlite:)", value))):
        raise setting.fail("an MLflow tracking URI (http://, https://, databricks, file: or "
                           "sqlite:), or empty for none", value)
    return value


def _source_option(setting: Setting, value: Any, values: Mapping[str, Any]) -> str:
    """A SQL query, table or records key: text the source at ``source`` must take."""
    from keel.sources import SourceOptions, check_source_options

    text = _text(setting, value, values)
    source = values.get("source")
    if text and isinstance(source, str) and source.strip():
        # with the other options given alongside: a query and a table together are refused
        given = {name: values.get(name, "") for name in ("source_query", "source_table",
                                                         "records_key")}
        given[setting.name] = text
        check_source_options(_source(SETTINGS["source"], source, values), SourceOptions(
            query=given["source_query"] if isinstance(given["source_query"], str) else "",
            table=given["source_table"] if isinstance(given["source_table"], str) else "",
            records_key=given["records_key"] if isinstance(given["records_key"], str) else ""))
    return text


def _object_name(setting: Setting, value: Any, values: Mapping[str, Any]) -> str:
    # a Kubernetes object name (RFC 1123 subdomain): a secret, a service account
    if not isinstance(value, str) or not re.fullmatch(
            r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?", value):
        raise setting.fail("a Kubernetes object name (lowercase letters, digits, '-' and '.')",
                           value)
    return value


def _deploy_namespace(setting: Setting, value: Any, values: Mapping[str, Any]) -> str:
    # a Kubernetes namespace name (RFC 1123 label), or empty for no deployment
    if not isinstance(value, str) or (value and not re.fullmatch(
            r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", value)):
        raise setting.fail("a Kubernetes namespace (lowercase letters, digits and '-', at most "
                           "63), or empty for no deployment", value)
    if value and isinstance(values.get("model_name"), str):
        # refused before any stage, not at deploy after training: the model's name must also
        # name its InferenceService
        from keel.deploy import isvc_name

        isvc_name(values["model_name"])
    return value


def _validation_rules(setting: Setting, value: Any, values: Mapping[str, Any]) -> Any:
    """A JSON object of validation rules (ValidationRules), as the rules file holds it."""
    from keel.contracts import ContractError, ValidationRules

    rules = _json_object(setting, value, "validation rules")
    try:
        return ValidationRules.from_dict(rules, stage=setting.stage)
    except ContractError as exc:
        raise ParameterError(f"The {setting.name!r} parameter of {setting.stage} is not valid: "
                             f"{exc.args[0]}", stage=setting.stage) from None


def _severities(setting: Setting, value: Any, values: Mapping[str, Any]) -> list[str]:
    """``[COLUMN:]KIND=LEVEL`` entries: an anomaly kind (for one column) made error/warning/ignore."""
    from typing import get_args

    from keel.contracts import AnomalyKind, Severity

    if not isinstance(value, list | tuple):
        raise setting.fail("a list of [COLUMN:]KIND=LEVEL entries", value)
    kinds, levels = get_args(AnomalyKind), get_args(Severity)
    for entry in value:
        head, sep, level = entry.rpartition("=") if isinstance(entry, str) else ("", "", "")
        kind = head.rpartition(":")[2]
        if not sep or kind not in kinds or level not in levels:
            raise setting.fail(
                f"a list of [COLUMN:]KIND=LEVEL entries with KIND one of {', '.join(kinds)} and "
                f"LEVEL one of {', '.join(levels)} (e.g. drift=error, income:out_of_range=ignore)",
                entry)
    return list(value)


def _source_format(setting: Setting, value: Any, values: Mapping[str, Any]) -> str:
    from keel.sources import check_format_name

    return check_format_name(value)


def _formats() -> tuple[str, ...]:
    from keel.sources import FORMAT_NAMES

    return ("auto", *FORMAT_NAMES)


def _estimators() -> tuple[str, ...]:
    from keel.estimators import ESTIMATORS

    return tuple(ESTIMATORS)


def _default_estimator() -> str:
    from keel.estimators import DEFAULT_ESTIMATOR

    return DEFAULT_ESTIMATOR


# -- the CLI's forms of the two structured settings ---------------------------------------------
def parse_param_value(text: str) -> Any:
    """``5`` -> 5, ``0.1`` -> 0.1, ``true`` -> True, ``none`` -> None, ``[1,2]`` -> list, else str."""
    lowered = text.strip().lower()
    if lowered in ("none", "null"):
        return None
    if lowered in ("true", "false"):
        return lowered == "true"
    try:
        return json.loads(text)
    except ValueError:
        return text


def params_from_cli(pairs: tuple[str, ...]) -> str:
    """``("max_depth=5",)`` -> ``'{"max_depth": 5}'``, the pipeline's JSON form."""
    params = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ParameterError(
                f"A --param must look like name=value (for example max_depth=5). Got {pair!r}.",
                stage="train",
            )
        params[key.strip()] = parse_param_value(value)
    return json.dumps(params)


def thresholds_from_cli(items: tuple[str, ...]) -> dict[str, dict[str, float]]:
    """``("roc_auc.lower=0.7",)`` -> ``{"roc_auc": {"lower": 0.7}}``."""
    result: dict[str, dict[str, float]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        metric, dot, rule = key.partition(".")
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if not sep or not dot or not math.isfinite(number):
            raise ParameterError(
                "A --threshold must look like METRIC.RULE=NUMBER with a finite number, for "
                f"example roc_auc.lower=0.7 or rmse.min_relative_change=0.01. Got {item!r}.",
                stage="evaluate",
            )
        result.setdefault(metric, {})[rule] = number
    return result


def columns_from_cli(items: tuple[str, ...]) -> list[str]:
    """``("customer_id", "region")`` -> the pipeline's list form."""
    return list(items)


def rules_from_cli(paths: tuple[str, ...]) -> str:
    """``--validation-rules FILE`` (JSON or YAML; repeatable, later files win) -> the JSON form."""
    import yaml

    merged: dict[str, Any] = {}
    for path in paths:
        try:
            with open(path, encoding="utf-8") as f:
                doc = yaml.safe_load(f)  # YAML is a superset of JSON
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise ParameterError(
                f"The --validation-rules file {path!r} cannot be read as JSON or YAML: "
                f"{str(exc).splitlines()[0]}", stage="validate") from None
        if not isinstance(doc, dict):
            raise ParameterError(
                f"The --validation-rules file {path!r} must hold a mapping of rules (severity, "
                f"columns, ...). Got {type(doc).__name__}.", stage="validate")
        for key, part in doc.items():
            if isinstance(part, dict) and isinstance(merged.get(key), dict):
                merged[key] = {**merged[key], **part}
            else:
                merged[key] = part
    return json.dumps(merged, default=str)


def default_model_name(source: str) -> str:
    """``data/credit.csv`` -> ``credit``."""
    stem = source.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1].split(".", 1)[0].lower()
    return re.sub(r"[^a-z0-9._-]+", "-", stem).strip("-._") or "model"


def _grid_from_cli(items: tuple[str, ...]) -> str:
    from keel.search import grid_from_cli

    return json.dumps(grid_from_cli(items))


# -- the table --------------------------------------------------------------------------------
def _table() -> dict[str, Setting]:
    entries = (
        Setting("source", str, stage="ingest", check=_source,
                help="Table to learn from: a CSV, Parquet or JSON Lines file or a folder of "
                     "them (a local path or gs://), a SQLAlchemy URL (postgresql://user@host/db, "
                     "with source_query or source_table) or an https:// JSON API."),
        Setting("target", str, stage="validate", check=_non_empty, help="Column to predict."),
        Setting("store", str, stage="publish", check=_store, cli_default=".keel",
                help="Registry root: gs://bucket/prefix, or a local folder."),
        Setting("model_name", str, stage="publish", default="model", check=_model_name,
                flag="--model", cli_default=None,
                help="Registry name of the model: 1-63 lowercase letters, digits, '.', '_' "
                     "or '-'.",
                cli_help="Registry name of the model: 1-63 lowercase letters, digits, '.', '_' "
                         "or '-' [default: the source's file name]."),
        Setting("task", str, stage="validate", default="auto",
                choices=("auto", "classification", "regression"), check=_choice,
                help="auto (decided from the target), classification or regression."),
        Setting("estimator", str, stage="train", default=_default_estimator(),
                choices=_estimators(), check=_estimator,
                help="Estimator family: " + ", ".join(_estimators()) + "."),
        Setting("params", str, stage="train", default="{}", check=_params,
                help='JSON object of hyperparameters for the scikit-learn estimator, e.g. '
                     '{"max_depth": 5} (JSON, so 1 and 1.0 stay different, as scikit-learn '
                     'needs).',
                flag="--param", from_cli=params_from_cli, metavar="NAME=VALUE",
                cli_help="Hyperparameter for the estimator (repeatable), e.g. max_depth=5: 5 is "
                         "an int, 0.1 a float; true, none and JSON lists work; else a string."),
        Setting("test_size", float, stage="preprocess", default=0.2, check=_fraction,
                help="Fraction of rows held out to evaluate the candidate and production."),
        Setting("seed", int, stage="preprocess", default=0, check=_seed,
                help="Seed of the estimator, the search and the bootstrap: same data and seed, same "
                     "model. The holdout does not depend on it (see split_salt)."),
        Setting("encoding", str, stage="preprocess", default="auto",
                choices=("auto", "onehot", "ordinal"), check=_choice,
                help="Categorical encoding; auto is the estimator's preferred one (one-hot for "
                     "linear, ordinal for trees)."),
        Setting("thresholds", dict, stage="evaluate", default={}, check=_thresholds,
                help='Gate per metric, e.g. {"roc_auc": {"lower": 0.7, "min_absolute_change": '
                     '0}}; rules: lower, upper, min_relative_change, min_absolute_change, '
                     'max_slice_drop. They add to the default rule "no worse than production '
                     'on the primary metric" (see replace_default_rule).',
                flag="--threshold", from_cli=thresholds_from_cli, metavar="METRIC.RULE=NUMBER",
                cli_help="Gate rule (repeatable): RULE is lower, upper, min_relative_change, "
                         "min_absolute_change or max_slice_drop. Adds to the default rule: no "
                         "worse than production on the primary metric."),
        Setting("override_reason", str, stage="evaluate", default="", check=_text,
                help="Promote regardless of the gate, recording this reason."),
        Setting("source_format", str, stage="ingest", default="auto", choices=_formats(),
                check=_source_format, flag="--format",
                help="Source format: auto (from the file name) or " + ", ".join(_formats()[1:])
                     + "."),
        Setting("source_encoding", str, stage="ingest", default="utf-8", check=_encoding_name,
                help="Text encoding of a CSV or JSON Lines source, e.g. latin-1 or cp1252; "
                     "bytes that are not valid in it are reported with their offset."),
        Setting("source_query", str, stage="ingest", default="", check=_source_option,
                flag="--query",
                help="SQL source: the query whose rows are the table (credentials come from "
                     "KEEL_SOURCE_PASSWORD, never from the URL)."),
        Setting("source_table", str, stage="ingest", default="", check=_source_option,
                flag="--table", help="SQL source: the table to read whole (instead of a query)."),
        Setting("records_key", str, stage="ingest", default="", check=_source_option,
                help="JSON API source: the key of the response object that holds the records "
                     "(default: results, data, items or records)."),
        Setting("source_secret", str, stage="ingest", default="keel-source", check=_object_name,
                help="On Kubeflow: the Kubernetes secret whose keys 'password' and 'token' "
                     "become KEEL_SOURCE_PASSWORD and KEEL_SOURCE_TOKEN for ingest (optional; "
                     "a local run reads them from its own environment)."),
        Setting("validation_rules", str, stage="validate", default="{}",
                check=_validation_rules, from_cli=rules_from_cli, metavar="FILE",
                help='JSON object overriding the data checks, e.g. {"severity": {"drift": '
                     '"error"}, "columns": {"age": {"min": 0, "max": 120}}}: severities, a '
                     "column's expected type or range, excluded columns, drift methods and "
                     "thresholds (README, \"Data checks\").",
                cli_help="JSON or YAML file of validation rules (repeatable; later files win): "
                         "severities, expected types and ranges, excluded columns, drift "
                         "thresholds."),
        Setting("severity", list, stage="validate", default=[], check=_severities,
                from_cli=columns_from_cli, metavar="[COLUMN:]KIND=LEVEL",
                help="Severity overrides, e.g. [\"drift=error\", \"income:out_of_range=ignore\"]"
                     ": error stops the run before training, warning is reported, ignore hides "
                     "it.",
                cli_help="Make an anomaly kind (for one column: COLUMN:KIND) error, warning or "
                         "ignore (repeatable), e.g. drift=error."),
        Setting("exclude_columns", list, stage="validate", default=[], check=_columns,
                from_cli=columns_from_cli, flag="--exclude-column", metavar="COLUMN",
                help="Columns never used as features nor checked (e.g. a column known to be "
                     "computed from the target).",
                cli_help="Never use this column as a feature nor check it (repeatable)."),
        Setting("min_test_rows", int, stage="validate", default=20, check=_count,
                help="Fewest rows the test split may have: a smaller table is refused before "
                     "training, since its evaluation would mean little."),
        Setting("min_class_test_rows", int, stage="validate", default=5, check=_count,
                help="Fewest test rows each class may have (classification)."),
        Setting("allow_target_change", bool, stage="validate", default=False, check=_flag,
                help="Let this run replace a production model that predicts another target, "
                     "task or set of classes (otherwise refused: use a new model name)."),
        Setting("split_key", list, stage="preprocess", default=[], check=_columns,
                help="Columns whose values decide a row's side of the holdout (e.g. a customer "
                     "id: all its rows fall on one side); default: every feature and the "
                     "target.",
                from_cli=columns_from_cli, metavar="COLUMN",
                cli_help="Column whose values decide a row's side of the holdout (repeatable), "
                         "e.g. a customer id. Default: every feature and the target."),
        Setting("split_time_column", str, stage="preprocess", default="", check=_time_column,
                help="Split by time instead: the newest test_size share of rows by this "
                     "column is the test split."),
        Setting("split_salt", str, stage="preprocess", default="keel", check=_non_empty,
                help="Salt of the holdout hash: keep it to keep every row on its side from "
                     "run to run; change it only to draw a new holdout."),
        Setting("grid", str, stage="train", default="{}", check=_grid,
                help='Hyperparameter search: JSON object of value lists per parameter, e.g. '
                     '{"max_depth": [3, 5]} (JSON, so 1 and 1.0 stay different); every '
                     'combination is trained in parallel and the best on validation rows kept.',
                from_cli=_grid_from_cli, metavar="NAME=V1,V2",
                cli_help="Search these values of a hyperparameter (repeatable): every "
                         "combination of the lists is trained in parallel, the best on "
                         "validation rows kept."),
        Setting("search_random", int, stage="train", default=0, check=_search_random,
                help="Search a seeded random sample of this many parameter sets (from the grid, "
                     "or the estimator's default search space); 0: no random search."),
        Setting("validation_size", float, stage="train", default=0.2, check=_fraction,
                help="Share of the training rows a search scores its candidates on (never the "
                     "test rows)."),
        Setting("replace_default_rule", bool, stage="evaluate", default=False, check=_flag,
                help='Gate only on the given thresholds, dropping the default rule "no worse '
                     'than production on the primary metric".'),
        Setting("change_bound", str, stage="evaluate", default="estimate",
                choices=("estimate", "interval"), check=_change_bound,
                help="What a change threshold compares: the estimate of candidate minus "
                     "production, or the conservative end of its bootstrap interval."),
        Setting("confidence", float, stage="evaluate", default=0.95, check=_fraction,
                help="Level of the paired-bootstrap intervals of candidate minus production."),
        Setting("bootstrap_rounds", int, stage="evaluate", default=1000, check=_rounds,
                help="Resamples of the comparable test rows for the intervals (0: none)."),
        Setting("slices", list, stage="evaluate", default=[], check=_columns,
                help="Columns to report the metrics per value of (numbers: per quantile bin); "
                     "gate them with a max_slice_drop threshold.",
                from_cli=columns_from_cli, flag="--slice", metavar="COLUMN",
                cli_help="Report the metrics per value of this column (repeatable; numbers: "
                         "per quartile). Gate with --threshold METRIC.max_slice_drop=X."),
        Setting("min_slice_rows", int, stage="evaluate", default=30, check=_count,
                help="Fewest comparable rows a slice needs to be gated (smaller ones are only "
                     "reported)."),
        Setting("mlflow_uri", str, stage="promote", default="", check=_mlflow_uri,
                help="MLflow tracking server to mirror runs, versions and the production alias "
                     "to (empty: MLFLOW_TRACKING_URI, else none). A mirror that fails never "
                     "stops the run."),
        Setting("model_registry_uri", str, stage="promote", default="", check=_http_uri,
                help="Kubeflow Model Registry to register versions in (empty: "
                     "KEEL_MODEL_REGISTRY_URI, else none). A mirror that fails never stops the "
                     "run."),
        Setting("deploy_namespace", str, stage="deploy", default="", check=_deploy_namespace,
                help="Kubernetes namespace to serve the version from with KServe once it passes "
                     "the gate (empty: no deployment; the loopback smoke test runs anyway). "
                     "Production moves only after a successful deployment."),
        Setting("serving_account", str, stage="deploy", default="keel-serving",
                check=_object_name,
                help="Service account of the InferenceService's pods (reads the store)."),
        Setting("serving_replicas", int, stage="deploy", default=1, check=_replicas,
                help="Fewest replicas of the InferenceService (0: scale to zero, Serverless "
                     "mode only)."),
        Setting("deployment_mode", str, stage="deploy", default="Serverless",
                choices=DEPLOYMENT_MODES, check=_choice,
                help="KServe deployment mode: Serverless (Knative revisions) or RawDeployment "
                     "(a Kubernetes Deployment); KServe 0.20 also names them Knative and "
                     "Standard."),
        Setting("deploy_timeout", int, stage="deploy", default=600, check=_seconds,
                help="Seconds to wait for the new revision to be ready before the previous "
                     "version is re-applied."),
    )
    return {entry.name: entry for entry in entries}


SETTINGS: dict[str, Setting] = _table()
DEFAULTS: dict[str, Any] = {s.name: s.default for s in SETTINGS.values() if s.default is not REQUIRED}


def checked(name: str, value: Any, **others: Any) -> Any:
    """Check one setting (``others``: the settings its constraint depends on); the value to use."""
    setting = SETTINGS[name]
    return setting.check(setting, value, others) if setting.check else value


def check_settings(values: Mapping[str, Any]) -> dict[str, Any]:
    """Check every setting before the first stage starts; the values as the stages use them."""
    missing = [n for n, s in SETTINGS.items() if s.default is REQUIRED and values.get(n) is None]
    if missing:
        raise ParameterError(f"Missing required setting(s): {', '.join(missing)}.", stage="run")
    unknown = sorted(set(values) - set(SETTINGS))
    if unknown:
        import difflib

        close = sorted({m for name in unknown
                        for m in difflib.get_close_matches(name, SETTINGS, n=3, cutoff=0.6)})
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise ParameterError(
            f"Unknown setting(s) {', '.join(map(repr, unknown))}; {hint}the {len(SETTINGS)} "
            "settings are the pipeline's parameters (keel run --help lists them).",
            stage="run",
        )
    full = {**DEFAULTS, **values}
    return {name: checked(name, full[name], **full) for name in SETTINGS}


def pipeline_docstring(summary: str) -> str:
    """A Google-style docstring whose ``Args`` are the settings' help (KFP's input descriptions)."""
    lines = [summary, "", "Args:"]
    lines += [f"    {s.name}: {s.help}" for s in SETTINGS.values()]
    return "\n".join(lines) + "\n"


def document_settings(func: F) -> F:
    """Add the table's help for each setting ``func`` takes to its docstring's ``Args``.

    A component documents its artifacts itself; the settings it takes are described once, here.
    """
    import inspect

    doc = inspect.cleandoc(func.__doc__ or "")
    head, marker, rest = doc.partition("\nArgs:\n")
    if not marker:
        raise ValueError(f"{func.__name__}'s docstring has no 'Args:' section to extend.")
    args_block, blank, tail = rest.partition("\n\n")
    documented = set(re.findall(r"^    (\w+):", args_block, flags=re.M))
    extra = [f"    {name}: {SETTINGS[name].help}"
             for name in inspect.signature(func).parameters
             if name in SETTINGS and name not in documented]
    func.__doc__ = head + marker + "\n".join([args_block, *extra]) + blank + tail
    return func

"""Unit tests of keel.validate: task inference, column kinds, repairs, blocking errors, outputs."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from keel.contracts import ColumnInfo, ContractError, TableSchema, ValidationResult
from keel.errors import DataValidationError, ParameterError, SchemaError
from keel.statistics import compute_statistics
from keel.validate import (
    MAX_CATEGORIES,
    MAX_CLASSES_FOR_NUMERIC_TARGET,
    infer_task,
    run,
    schema_hash,
    validate,
)
from keel.validation_report import report_markdown

ROWS = 60  # more than MAX_CATEGORIES, so identifier and free-text rules can apply


def table(**columns: Any) -> pd.DataFrame:
    """A usable table of ROWS rows (one numeric, one categorical feature) plus ``columns``."""
    frame = pd.DataFrame(
        {
            "income": np.linspace(100.0, 700.0, ROWS),
            "home": ["rent", "owner", "parents"] * (ROWS // 3),
            "status": ["good", "bad"] * (ROWS // 2),
        }
    )
    for name, values in columns.items():
        frame[name] = values
    return frame


# The schema tests use 60-row tables (12 test rows): the size rules are off unless a test sets them.
NO_SIZE_RULES = {"min_test_rows": 0, "min_class_test_rows": 0}


def report_of(tmp_path: Path, schema: TableSchema, notes: list[str] | None = None) -> str:
    """The Markdown report of the snapshot check() last wrote, with no reference."""
    statistics = compute_statistics(str(tmp_path / "snapshot.parquet"))
    nothing = ValidationResult(reference_version=None, reference_rows=None,
                               reference_note="no reference", anomalies=[], drift=[], leakage=[])
    return report_markdown(schema, statistics, nothing, None, notes or [])


def column_table(report: str) -> list[str]:
    """The rows of the report's column table (its header first)."""
    lines = report.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| column | type | kind"))
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    return [line for line in lines[start:end] if "---" not in line]


def snapshot_of(tmp_path: Path, frame: pd.DataFrame | pa.Table) -> str:
    snapshot = tmp_path / "snapshot.parquet"
    if isinstance(frame, pa.Table):
        pq.write_table(frame, snapshot)
    else:
        frame.to_parquet(snapshot, index=False)
    return str(snapshot)


def check(tmp_path: Path, frame: pd.DataFrame | pa.Table, target: str = "status",
          task: str = "auto", **settings: Any) -> TableSchema:
    """validate() on ``frame``; ``settings`` override NO_SIZE_RULES."""
    return validate(snapshot_of(tmp_path, frame), target, task, str(tmp_path / "valid.parquet"),
                    **{**NO_SIZE_RULES, **settings})


def column(schema: TableSchema, name: str) -> ColumnInfo:
    (found,) = [c for c in schema.columns if c.name == name]
    return found


def round_trips(schema: TableSchema) -> TableSchema:
    """The schema read back from its JSON: equal to the schema (a NaN would not be)."""
    again = TableSchema.from_json(schema.to_json())
    assert again == schema
    return again


def assert_validate_message(error: Exception) -> str:
    message = str(error)
    assert message.startswith("[validate] "), message
    return message


# --- happy path --------------------------------------------------------------------------------


def test_a_clean_table_is_described_completely(tmp_path):
    schema = check(tmp_path, table())

    assert isinstance(schema, TableSchema)
    assert schema.target == "status" and schema.task == "classification"
    assert schema.classes == ["bad", "good"]
    assert (schema.rows_in, schema.rows, schema.rows_dropped_missing_target) == (60, 60, 0)
    assert schema.numeric_features == ["income"]
    assert schema.categorical_features == ["home"]
    assert schema.excluded == {} and schema.infinite_values == {}
    assert [c.name for c in schema.columns] == ["income", "home", "status"]
    assert [(c.kind, c.role) for c in schema.columns] == [
        ("numeric", "feature"), ("categorical", "feature"), ("categorical", "target")]
    assert column(schema, "income").stats == {
        "mean": pytest.approx(400.0), "std": pytest.approx(np.linspace(100, 700, 60).std(ddof=1)),
        "min": 100.0, "max": 700.0,
    }
    assert column(schema, "home").stats == {"top": {"rent": 20, "owner": 20, "parents": 20}}
    assert schema.schema_hash == schema_hash(schema.columns)
    round_trips(schema)
    written = pd.read_parquet(tmp_path / "valid.parquet")
    pd.testing.assert_frame_equal(written, table(), check_dtype=False)


# --- target and table errors -------------------------------------------------------------------


def test_missing_target_is_a_schema_error_listing_the_columns(tmp_path):
    with pytest.raises(SchemaError) as caught:
        check(tmp_path, table(), target="Status")
    message = assert_validate_message(caught.value)
    assert "'target'" in message and "'Status'" in message
    assert "'income', 'home', 'status'" in message


def test_empty_table_is_a_data_validation_error(tmp_path):
    with pytest.raises(DataValidationError) as caught:
        check(tmp_path, table().iloc[:0])
    message = assert_validate_message(caught.value)
    assert "empty" in message and "got 0" in message


def test_all_missing_target_is_a_data_validation_error(tmp_path):
    with pytest.raises(DataValidationError) as caught:
        check(tmp_path, table(status=[None] * ROWS))
    message = assert_validate_message(caught.value)
    assert "'status'" in message and "missing" in message and "60 rows" in message


def test_rows_with_a_missing_target_are_dropped_and_counted(tmp_path):
    status = ["good", "bad"] * (ROWS // 2)
    status[0] = status[7] = status[30] = None

    schema = check(tmp_path, table(status=status))

    assert (schema.rows_in, schema.rows_dropped_missing_target, schema.rows) == (60, 3, 57)
    written = pd.read_parquet(tmp_path / "valid.parquet")
    assert len(written) == 57 and written["status"].notna().all()
    assert written["income"].tolist() == [v for i, v in enumerate(table()["income"])
                                          if i not in (0, 7, 30)]


def test_duplicate_column_names_are_a_schema_error(tmp_path):
    duplicated = pa.Table.from_arrays(
        [pa.array([1.0, 2.0, 3.0, 4.0]), pa.array([5.0, 6.0, 7.0, 8.0]),
         pa.array(["a", "b", "a", "b"])],
        names=["amount", "amount", "status"],
    )
    with pytest.raises(SchemaError) as caught:
        check(tmp_path, duplicated)
    message = assert_validate_message(caught.value)
    assert "1 appear more than once: 'amount'." in message and "unique" in message


def test_invalid_task_is_a_parameter_error(tmp_path):
    with pytest.raises(ParameterError) as caught:
        check(tmp_path, table(), task="clustering")
    message = assert_validate_message(caught.value)
    assert message == ("[validate] The 'task' parameter of validate must be one of auto, "
                       "classification, regression. Got 'clustering'.")


@pytest.mark.parametrize("task", ["Classification", "", None])
def test_infer_task_checks_the_task_through_the_settings_table(task):
    with pytest.raises(ParameterError) as caught:
        infer_task(pd.Series(["yes", "no"], name="y"), task)
    assert str(caught.value) == (
        "[validate] The 'task' parameter of validate must be one of auto, classification, "
        f"regression. Got {task!r}.")


@pytest.mark.parametrize("target", ["", "   "])
def test_a_blank_target_is_a_parameter_error(tmp_path, target):
    with pytest.raises(ParameterError) as caught:
        check(tmp_path, table(), target=target)
    message = assert_validate_message(caught.value)
    assert message == ("[validate] The 'target' parameter of validate must be a non-empty "
                       f"string. Got {target!r}.")


# --- task inference ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["yes", "no"] * 30, "classification"),
        (np.linspace(0.5, 30.5, 60), "regression"),
        ([1.0, 2.5] * 30, "regression"),
        ([0, 1, 2] * 20, "classification"),
        ([0.0, 1.0] * 30, "classification"),  # integral floats (e.g. after a missing value)
        (list(range(MAX_CLASSES_FOR_NUMERIC_TARGET)) * 3, "classification"),
        (list(range(MAX_CLASSES_FOR_NUMERIC_TARGET + 1)) * 2 + [0] * 18, "regression"),
        (list(range(60)), "regression"),
        ([True, False] * 30, "classification"),
    ],
)
def test_task_is_inferred_from_the_target(values, expected):
    assert infer_task(pd.Series(values, name="y"), "auto") == expected


def test_explicit_task_wins_over_inference():
    assert infer_task(pd.Series([0, 1, 2] * 5, name="y"), "regression") == "regression"
    assert infer_task(pd.Series(np.linspace(0, 1, 30), name="y"), "classification") == (
        "classification"
    )


def test_bool_target_gives_two_boolean_classes(tmp_path):
    schema = check(tmp_path, table(status=[True, False] * (ROWS // 2)))
    assert schema.task == "classification"
    assert schema.classes == [False, True]
    assert all(type(c) is bool for c in schema.classes)
    # JSON true/false must come back as bool, not as the ints 1/0
    assert all(type(c) is bool for c in round_trips(schema).classes)


def test_integer_classes_stay_integers_through_json(tmp_path):
    schema = check(tmp_path, table(status=[0, 1, 2] * (ROWS // 3)))
    assert schema.classes == [0, 1, 2]
    assert all(type(c) is int for c in round_trips(schema).classes)


def test_integer_target_with_many_values_is_regression(tmp_path):
    schema = check(tmp_path, table(status=np.arange(ROWS) * 3 % 47))
    assert schema.task == "regression" and schema.classes is None
    assert column(schema, "status").kind == "numeric"
    assert column(schema, "status").role == "target"


@pytest.mark.parametrize("values", [["good", "bad"] * (ROWS // 2), [True, False] * (ROWS // 2)])
def test_regression_on_a_non_numeric_target_is_a_schema_error(tmp_path, values):
    with pytest.raises(SchemaError) as caught:
        check(tmp_path, table(status=values), task="regression")
    message = assert_validate_message(caught.value)
    assert "numeric target" in message and "'status'" in message
    assert repr(values[0]) in message
    assert "classification" in message


def test_a_single_class_is_a_data_validation_error_naming_it(tmp_path):
    with pytest.raises(DataValidationError) as caught:
        check(tmp_path, table(status=["good"] * ROWS))
    message = assert_validate_message(caught.value)
    assert "two classes" in message and "'status'" in message and "'good'" in message


def test_a_class_with_one_row_is_a_data_validation_error_naming_it(tmp_path):
    status = ["good", "bad"] * (ROWS // 2)
    status[5] = "fraud"
    with pytest.raises(DataValidationError) as caught:
        check(tmp_path, table(status=status))
    message = assert_validate_message(caught.value)
    assert "'fraud'" in message and "only 1" in message and "'good'" not in message


def test_unused_categories_of_a_categorical_target_are_not_classes(tmp_path):
    status = pd.Categorical(["good", "bad"] * (ROWS // 2), categories=["bad", "good", "unknown"])
    schema = check(tmp_path, table(status=status))
    assert schema.classes == ["bad", "good"]

    one_class = pd.Categorical(["good"] * ROWS, categories=["bad", "good"])
    with pytest.raises(DataValidationError, match="every row has 'good'"):
        check(tmp_path, table(status=one_class))


# --- column kinds and exclusions ---------------------------------------------------------------


def test_unusable_columns_are_excluded_with_a_reason(tmp_path):
    frame = table(
        row_id=np.arange(1000, 1000 + ROWS)[::-1],  # consecutive once sorted
        customer=[f"C-{i:05d}" for i in range(ROWS)],
        note=[f"called on day {i % 55}, customer asked about their balance" for i in range(ROWS)],
        country="ES",
        comment=[None] * ROWS,
        signed=pd.date_range("2024-01-01", periods=ROWS, freq="D"),
    )
    frame["comment"] = frame["comment"].astype(float)

    schema = check(tmp_path, frame)

    expected_kinds = {"row_id": "identifier", "customer": "identifier", "note": "text",
                      "country": "constant", "comment": "empty", "signed": "datetime"}
    for name, kind in expected_kinds.items():
        assert column(schema, name).kind == kind, name
        assert column(schema, name).role == "excluded", name
        assert column(schema, name).reason == schema.excluded[name], name
    assert set(schema.excluded) == set(expected_kinds)
    assert "consecutive" in schema.excluded["row_id"]
    assert "unique for every row" in schema.excluded["customer"]
    assert "free text" in schema.excluded["note"] and "55 distinct" in schema.excluded["note"]
    assert "'ES'" in schema.excluded["country"]
    assert "missing" in schema.excluded["comment"]
    assert schema.numeric_features == ["income"]
    assert schema.categorical_features == ["home"]
    round_trips(schema)


def test_unique_but_not_consecutive_integers_stay_numeric(tmp_path):
    schema = check(tmp_path, table(amount=np.arange(ROWS) * 7 + 3))
    assert column(schema, "amount").kind == "numeric"
    assert "amount" in schema.numeric_features


def test_few_distinct_strings_are_categorical_not_text(tmp_path):
    values = [f"a long category label number {i % MAX_CATEGORIES}" for i in range(ROWS)]
    schema = check(tmp_path, table(segment=values))
    assert column(schema, "segment").kind == "categorical"


def test_bool_and_missing_values_in_features(tmp_path):
    flag = [True, False, None] * (ROWS // 3)
    amount = [1.5, None, 3.0, 4.0] * (ROWS // 4)
    schema = check(tmp_path, table(flag=flag, amount=amount))
    assert "flag" in schema.categorical_features
    assert "amount" in schema.numeric_features
    assert column(schema, "flag").missing == 20 and column(schema, "flag").unique == 2
    assert column(schema, "amount").missing == 15


def test_infinite_values_are_read_as_missing_and_counted(tmp_path):
    schema = check(tmp_path, table(ratio=[1.0, np.inf, 2.0, -np.inf] * (ROWS // 4)))
    assert schema.infinite_values == {"ratio": ROWS // 2}
    ratio = column(schema, "ratio")
    assert ratio.missing == ROWS // 2 and ratio.role == "feature"
    assert ratio.stats["min"] == 1.0 and ratio.stats["max"] == 2.0
    assert all(math.isfinite(v) for v in ratio.stats.values())
    round_trips(schema)
    written = pd.read_parquet(tmp_path / "valid.parquet")["ratio"]
    assert written.isna().sum() == ROWS // 2 and not np.isinf(written).any()
    assert "infinite values read as missing: ratio (" in report_of(tmp_path, schema)


def test_an_infinite_regression_target_drops_its_row(tmp_path):
    price = np.linspace(1.0, 99.0, ROWS)
    price[3] = np.inf
    schema = check(tmp_path, table(price=price), target="price")
    assert schema.task == "regression"
    assert schema.rows_dropped_missing_target == 1 and schema.rows == ROWS - 1


def test_report_escapes_pipes_in_column_names(tmp_path):
    schema = check(tmp_path, table(**{"a|b": np.arange(ROWS) % 7}))
    row = next(line for line in column_table(report_of(tmp_path, schema))
               if line.startswith("| a"))
    assert row.startswith("| a\\|b | ") and row.count(" | ") == 6


def test_no_usable_feature_is_a_data_validation_error_with_the_reasons(tmp_path):
    frame = pd.DataFrame({"id": [f"r{i}" for i in range(10)], "constant": [1] * 10,
                          "status": ["good", "bad"] * 5})
    with pytest.raises(DataValidationError) as caught:
        check(tmp_path, frame)
    message = assert_validate_message(caught.value)
    assert "No column can be used as a feature" in message and "'status'" in message
    assert "id: it is unique" in message and "constant: it has a single value (1)" in message


# --- schema hash and report --------------------------------------------------------------------


def test_schema_hash_depends_on_the_schema_not_the_values(tmp_path):
    first = check(tmp_path, table()).schema_hash
    again = check(tmp_path, table()).schema_hash
    other_values = check(tmp_path, table(income=np.linspace(5.0, 9.0, ROWS))).schema_hash
    int_income = check(tmp_path, table(income=np.arange(ROWS) * 10 % 37)).schema_hash
    renamed = check(tmp_path, table().rename(columns={"home": "housing"})).schema_hash

    assert len(first) == 64
    assert first == again == other_values
    assert int_income != first
    assert renamed != first


def test_schema_hash_function_covers_name_type_kind_and_role():
    fields = {"name": "a", "dtype": "float64", "kind": "numeric", "role": "feature",
              "missing": 0, "unique": 10}
    base = [ColumnInfo(**fields)]
    same_schema = ColumnInfo(**{**fields, "missing": 3, "unique": 4, "reason": "r",
                                "stats": {"x": 1}})
    assert schema_hash(base) == schema_hash([same_schema])
    for key, value in [("name", "b"), ("dtype", "int64"), ("kind", "categorical"),
                       ("role", "excluded")]:
        assert schema_hash([ColumnInfo(**{**fields, key: value})]) != schema_hash(base), key
    other = ColumnInfo(**{**fields, "name": "b"})
    assert schema_hash([base[0], other]) != schema_hash([other, base[0]])  # order counts


def test_report_markdown_has_every_column_and_the_counts(tmp_path):
    status = ["good", "bad"] * (ROWS // 2)
    status[3] = None
    schema = check(tmp_path, table(status=status, country="ES"))

    report = report_of(tmp_path, schema)

    assert report.startswith("# Validation report: target `status` (classification)")
    assert "- rows read: 60" in report
    assert "- rows dropped because the target is missing: 1" in report
    assert "- rows kept: 59" in report
    rows = column_table(report)
    assert [r.split(" | ")[0].removeprefix("| ") for r in rows[1:]] == [
        "income", "home", "status", "country"]
    assert "| country | str | constant | excluded | 0 | 1 | it has a single value ('ES') |" in report


def test_run_writes_the_dataset_schema_and_report(tmp_path):
    snapshot = tmp_path / "snapshot.parquet"
    table().to_parquet(snapshot, index=False)
    out = {name: tmp_path / name for name in ("valid.parquet", "schema.json", "report.md")}

    # 60 rows: 12 test rows, 6 per class
    validated = run(str(snapshot), "status", "auto", *(str(p) for p in out.values()),
                    min_test_rows=12, min_class_test_rows=6)
    schema = validated.schema

    assert isinstance(schema, TableSchema)
    assert TableSchema.read(out["schema.json"], stage="preprocess") == schema
    assert json.loads(out["schema.json"].read_text()) == schema.to_dict()
    note = "production: not compared (no store and model name given)"
    assert validated.result.reference_version is None
    assert out["report.md"].read_text() == report_markdown(
        schema, validated.statistics, validated.result, None, [note])
    assert f"excluded columns: 0\n- {note}\n" in out["report.md"].read_text()
    assert len(pd.read_parquet(out["valid.parquet"])) == ROWS


def test_run_reports_its_error_through_keel_error_file(tmp_path, monkeypatch):
    snapshot = tmp_path / "snapshot.parquet"
    table().to_parquet(snapshot, index=False)
    report = tmp_path / "error.json"
    monkeypatch.setenv("KEEL_ERROR_FILE", str(report))

    with pytest.raises(SchemaError):
        run(str(snapshot), "nope", "auto", *(str(tmp_path / n) for n in ("a", "b", "c")))

    written = json.loads(report.read_text())
    assert written["type"] == "SchemaError" and written["stage"] == "validate"
    assert "'nope'" in written["message"]
    assert not (tmp_path / "b").exists()


# --- the schema document as a contract ---------------------------------------------------------


def regression_with_repairs() -> pd.DataFrame:
    price = np.linspace(1.0, 99.0, ROWS)
    price[3] = np.inf
    return table(price=price, ratio=[1.0, np.inf, 2.0, None] * (ROWS // 4), country="ES",
                 customer=[f"C-{i:05d}" for i in range(ROWS)])


@pytest.mark.parametrize(
    ("frame", "target"),
    [(table(), "status"), (table(status=[True, False] * (ROWS // 2)), "status"),
     (table(status=[0, 1, 2] * (ROWS // 3)), "status"), (regression_with_repairs(), "price")],
    ids=["strings", "bools", "ints", "regression-with-repairs"],
)
def test_the_schema_round_trips_through_its_file(tmp_path, frame, target):
    schema = check(tmp_path, frame, target=target)
    path = tmp_path / "schema.json"

    schema.write(path)
    again = TableSchema.read(path, stage="preprocess")

    assert again == schema
    assert [type(c) for c in again.classes or []] == [type(c) for c in schema.classes or []]
    assert json.loads(path.read_text()) == schema.to_dict()  # the file is plain, strict JSON
    assert again.schema_hash == schema_hash(again.columns)


def test_the_repairs_survive_the_round_trip(tmp_path):
    schema = check(tmp_path, regression_with_repairs(), target="price")
    schema.write(tmp_path / "schema.json")
    again = TableSchema.read(tmp_path / "schema.json")
    assert again.task == "regression" and again.classes is None
    assert again.rows_dropped_missing_target == 1 and again.rows == ROWS - 1
    assert again.infinite_values == {"price": 1, "ratio": ROWS // 4}
    assert set(again.excluded) == {"country", "customer"}


def written_schema(tmp_path: Path, **changes: Any) -> Path:
    """A schema file validate wrote, with top-level fields changed (None: field removed)."""
    document = check(tmp_path, table()).to_dict()
    for name, value in changes.items():
        if value is None:
            del document[name]
        else:
            document[name] = value
    path = tmp_path / "schema.json"
    path.write_text(json.dumps(document))
    return path


def test_a_field_of_the_wrong_type_is_a_contract_error_naming_the_field_and_the_file(tmp_path):
    path = written_schema(tmp_path, rows="60")

    with pytest.raises(ContractError) as caught:
        TableSchema.read(path, stage="preprocess")

    assert caught.value.stage == "preprocess"
    message = str(caught.value)
    assert message.startswith(f"[preprocess] The schema document ({path}) is not valid: ")
    assert "field 'rows'" in message and "got '60'" in message


@pytest.mark.parametrize(
    ("changes", "field", "detail"),
    [({"task": "clustering"}, "'task'", "got 'clustering'"),
     ({"classes": None}, "'classes'", "is missing"),
     ({"rows_in": -1}, "'rows_in'", "got -1"),
     ({"schema_hash": None}, "'schema_hash'", "is missing"),
     ({"owner": "someone"}, "'owner'", "got 'someone'")],
)
def test_a_damaged_schema_file_is_a_contract_error(tmp_path, changes, field, detail):
    path = written_schema(tmp_path, **changes)
    with pytest.raises(ContractError) as caught:
        TableSchema.read(path, stage="preprocess")
    message = str(caught.value)
    assert str(path) in message and f"field {field}" in message and detail in message


def test_a_wrong_type_inside_a_column_names_the_nested_field(tmp_path):
    columns = check(tmp_path, table()).to_dict()["columns"]
    columns[1]["missing"] = 1.5
    path = written_schema(tmp_path, columns=columns)
    with pytest.raises(ContractError, match=r"field 'columns\.1\.missing'.*got 1\.5"):
        TableSchema.read(path, stage="preprocess")


def test_classes_that_do_not_match_the_task_are_a_contract_error(tmp_path):
    path = written_schema(tmp_path, task="regression")
    with pytest.raises(ContractError) as caught:
        TableSchema.read(path, stage="train")
    assert str(caught.value).startswith(f"[train] The schema document ({path}) is not valid: ")
    assert "classes must be a list for classification and null for regression" in str(caught.value)


def test_a_date_target_is_refused_with_what_to_do(tmp_path):
    from keel.validate import validate

    frame = pd.DataFrame({"when": pd.to_datetime(["2026-01-01", "2026-02-01"] * 10),
                          "x": range(20)})
    snapshot = tmp_path / "snapshot.parquet"
    frame.to_parquet(snapshot)
    with pytest.raises(SchemaError, match="'when' holds dates or times.*Convert it"):
        validate(str(snapshot), "when", "auto", str(tmp_path / "out.parquet"))
    assert not (tmp_path / "out.parquet").exists()


# --- the size of a meaningful evaluation (issue 6) ---------------------------------------------


def regression_table(rows: int) -> pd.DataFrame:
    return pd.DataFrame({"x": np.arange(rows) % 7 * 1.5, "price": np.linspace(1.0, 9.5, rows)})


def classes_table(counts: dict[Any, int]) -> pd.DataFrame:
    """One row per class value, ``counts[value]`` times, and a numeric feature."""
    labels = [label for label, count in counts.items() for _ in range(count)]
    return pd.DataFrame({"x": np.arange(len(labels)) % 11 * 1.0, "status": labels})


def refused(tmp_path: Path, frame: pd.DataFrame, target: str = "status", error=DataValidationError,
            **settings: Any) -> str:
    """The one-line message validate() refuses ``frame`` with."""
    with pytest.raises(error) as caught:
        check(tmp_path, frame, target=target, **settings)
    message = assert_validate_message(caught.value)
    assert "\n" not in message
    assert not (tmp_path / "valid.parquet").exists()
    return message


def test_run_defaults_are_the_settings_table_defaults():
    import inspect

    from keel.settings import DEFAULTS

    parameters = inspect.signature(run).parameters
    for name in ("test_size", "min_test_rows", "min_class_test_rows", "allow_target_change"):
        assert parameters[name].default == DEFAULTS[name], name
        assert parameters[name].kind is inspect.Parameter.KEYWORD_ONLY
    # "" means no registry check (the component on its own); the pipeline passes both.
    assert parameters["store"].default == parameters["model_name"].default == ""
    for name in ("test_size", "min_test_rows", "min_class_test_rows"):
        assert inspect.signature(validate).parameters[name].default == DEFAULTS[name], name


def test_a_three_row_regression_table_is_refused_with_what_it_needs(tmp_path):
    message = refused(tmp_path, regression_table(3), target="price", min_test_rows=20)
    assert message == (
        "[validate] The table is too small for a meaningful evaluation: 3 usable rows give a "
        "test split of 1 at test_size 0.2, below --min-test-rows 20; it needs at least 96 rows. "
        "Add rows, or change --test-size or --min-test-rows.")


def test_the_default_settings_refuse_95_rows_and_accept_96(tmp_path):
    # train_test_split takes ceil(0.2 * rows) test rows: 96 rows give 20 (19.2 rounded up).
    snapshot = snapshot_of(tmp_path, regression_table(95))
    with pytest.raises(DataValidationError, match="95 usable rows give a test split of 19 "):
        validate(snapshot, "price", "auto", str(tmp_path / "valid.parquet"))
    snapshot = snapshot_of(tmp_path, regression_table(96))
    assert validate(snapshot, "price", "auto", str(tmp_path / "valid.parquet")).rows == 96


@pytest.mark.parametrize("test_size", [0.1, 0.2, 0.25, 0.3, 1 / 3, 0.7, 0.05, 0.123])
@pytest.mark.parametrize("min_test_rows", [1, 3, 20, 29, 57])
def test_the_size_rule_counts_test_rows_as_train_test_split_does(test_size, min_test_rows):
    from sklearn.model_selection import train_test_split

    from keel.validate import held_out_rows, rows_needed

    def split_test_rows(rows: int) -> int:
        return len(train_test_split(np.arange(rows), test_size=test_size, random_state=0)[1])

    def splits(rows: int) -> bool:  # train_test_split refuses an empty training split
        return held_out_rows(rows, test_size) < rows

    needed = rows_needed(min_test_rows, test_size)
    for rows in range(max(needed - 3, 1), needed + 3):
        if splits(rows):
            assert held_out_rows(rows, test_size) == split_test_rows(rows), rows
    assert splits(needed) and split_test_rows(needed) >= min_test_rows
    below = needed - 1
    assert below == 0 or not splits(below) or split_test_rows(below) < min_test_rows


def test_a_table_that_leaves_no_training_row_is_refused(tmp_path):
    message = refused(tmp_path, regression_table(3), target="price", test_size=0.7,
                      min_test_rows=0)
    assert ("3 usable rows give a test split of 3 at test_size 0.7, leaving no row to train on; "
            "it needs at least 4 rows.") in message
    assert check(tmp_path, regression_table(4), target="price", test_size=0.7,
                 min_test_rows=0).rows == 4


def test_rows_dropped_for_a_missing_target_do_not_count(tmp_path):
    frame = regression_table(100)
    frame.loc[::10, "price"] = None
    message = refused(tmp_path, frame, target="price", min_test_rows=20)
    assert "90 usable rows (10 of 100 dropped for a missing target) give a test split of 18 " \
           "at test_size 0.2, below --min-test-rows 20; it needs at least 96 rows." in message


def test_the_needed_rows_follow_the_test_size(tmp_path):
    message = refused(tmp_path, regression_table(40), target="price", test_size=0.3,
                      min_test_rows=30)
    assert "test split of 12 at test_size 0.3, below --min-test-rows 30; it needs at least 97 " \
           "rows." in message


def test_size_rules_at_zero_let_a_tiny_table_through(tmp_path):
    assert check(tmp_path, regression_table(3), target="price", min_test_rows=0).rows == 3
    frame = classes_table({"good": 3, "bad": 2})
    assert check(tmp_path, frame, min_test_rows=0, min_class_test_rows=0).classes == ["bad", "good"]


def test_a_small_class_is_refused_with_its_count_and_the_rows_it_needs(tmp_path):
    frame = classes_table({"good": 200, "bad": 150, "fraud": 24})
    message = refused(tmp_path, frame, min_test_rows=20, min_class_test_rows=5)
    assert message == (
        "[validate] 1 class(es) of target 'status' are too small to evaluate: each needs 25 rows "
        "(5 test rows at test_size 0.2); smallest: 'fraud' (24 rows). Add rows or merge classes, "
        "or change --test-size or --min-class-test-rows.")


def test_a_class_with_exactly_the_rows_it_needs_passes_and_gets_its_test_rows(tmp_path):
    from sklearn.model_selection import train_test_split

    frame = classes_table({"good": 200, "bad": 150, "fraud": 25})
    schema = check(tmp_path, frame, min_test_rows=20, min_class_test_rows=5)
    assert schema.classes == ["bad", "fraud", "good"]
    for seed in range(20):
        _, test = train_test_split(frame, test_size=0.2, random_state=seed,
                                   stratify=frame["status"])
        assert (test["status"] == "fraud").sum() >= 5


def test_floating_point_error_does_not_refuse_a_class_that_has_enough_rows(tmp_path):
    # 10 * 0.3 is 3 (not 2.9999...): a class of 10 rows gets its 3 test rows
    frame = classes_table({"good": 60, "bad": 10})
    (tmp_path / "enough").mkdir()
    assert check(tmp_path / "enough", frame, test_size=0.3, min_class_test_rows=3).rows == 70
    message = refused(tmp_path, classes_table({"good": 60, "bad": 9}), test_size=0.3,
                      min_class_test_rows=3)
    assert "each needs 10 rows (3 test rows at test_size 0.3)" in message
    assert "'bad' (9 rows)" in message


def test_the_smallest_classes_come_first_then_a_count(tmp_path):
    counts = {"big": 500, **{f"k{i:02d}": 10 + i for i in range(12)}, "c": 3, "b": 3, "a": 7}
    message = refused(tmp_path, classes_table(counts), min_class_test_rows=5)
    assert "[validate] 15 class(es) of target 'status' are too small" in message
    assert "smallest: 'b' (3 rows), 'c' (3 rows), 'a' (7 rows) ... and 12 more." in message
    assert "'big'" not in message


def test_the_size_rules_come_after_the_single_class_check(tmp_path):
    message = refused(tmp_path, classes_table({"good": 3}), min_test_rows=20)
    assert "at least two classes" in message


def test_the_one_row_class_rule_still_holds_without_the_class_size_rule(tmp_path):
    message = refused(tmp_path, classes_table({"good": 50, "bad": 50, "fraud": 1}),
                      min_class_test_rows=0)
    assert "needs at least 2 rows for a stratified split; 1 class(es) have only 1: 'fraud'." \
           in message


@pytest.mark.parametrize(
    ("settings", "expected"),
    [({"test_size": 1.5}, "'test_size' parameter of preprocess must be a finite fraction"),
     ({"test_size": "0.2"}, "'test_size' parameter of preprocess must be a number"),
     ({"min_test_rows": -1}, "'min_test_rows' parameter of validate must be a whole number"),
     ({"min_test_rows": 2.5}, "'min_test_rows' parameter of validate must be a whole number"),
     ({"min_class_test_rows": True}, "'min_class_test_rows' parameter of validate must be a whole"),
     ({"allow_target_change": "yes"}, "'allow_target_change' parameter of validate must be true")],
)
def test_the_new_settings_are_checked_by_the_settings_table(tmp_path, settings, expected):
    with pytest.raises(ParameterError, match=expected):
        check(tmp_path, table(), **settings)
    with pytest.raises(ParameterError, match=expected):  # and by run, before anything is read
        run(str(tmp_path / "absent.parquet"), "status", "auto",
            *(str(tmp_path / n) for n in ("a", "b", "c")), **settings)


def test_kfp_whole_floats_are_accepted_as_row_counts(tmp_path):
    # KFP hands ints to a component as floats
    schema = check(tmp_path, table(), min_test_rows=12.0, min_class_test_rows=6.0)
    assert schema.rows == ROWS


# --- messages stay one short line, whatever the data --------------------------------------------

LONG = 300  # characters: the longest message any data can produce


def short(message: str) -> str:
    assert len(message) <= LONG, (len(message), message)
    assert "\n" not in message
    return message


def many_classes(count: int, rows_each: int) -> pd.DataFrame:
    return classes_table({f"class-{i:05d}": rows_each for i in range(count)})


def test_5000_classes_of_one_row_give_a_short_line(tmp_path):
    message = short(refused(tmp_path, many_classes(5000, 1), min_class_test_rows=0))
    assert "5000 class(es) have only 1: 'class-00000', 'class-00001'," in message
    assert "... and 4995 more." in message


def test_5000_small_classes_give_a_short_line(tmp_path):
    message = short(refused(tmp_path, many_classes(5000, 3), min_class_test_rows=5))
    assert "5000 class(es) of target 'status' are too small" in message
    assert "'class-00000' (3 rows)" in message and "more." in message


def test_500_columns_are_listed_with_a_count_when_the_target_is_missing(tmp_path):
    frame = pd.DataFrame({f"column_{i:03d}": [1.0, 2.0] for i in range(500)})
    message = short(refused(tmp_path, frame, target="status", error=SchemaError))
    assert "Got 'status'; the 500 columns are 'column_000', 'column_001'," in message
    assert "... and 49" in message and "more." in message


def test_500_duplicated_columns_are_listed_with_a_count(tmp_path):
    names = [f"column_{i:03d}" for i in range(500)] * 2 + ["status"]
    duplicated = pa.Table.from_arrays([pa.array([1.0, 2.0])] * 1000 + [pa.array(["a", "b"])],
                                      names=names)
    message = short(refused(tmp_path, duplicated, error=SchemaError))
    assert "500 appear more than once: 'column_000'," in message and "more." in message


def test_500_excluded_columns_are_listed_with_a_count(tmp_path):
    frame = pd.DataFrame({f"constant_{i:03d}": ["the same value"] * 10 for i in range(500)})
    frame["status"] = ["good", "bad"] * 5
    message = short(refused(tmp_path, frame))
    assert "No column can be used as a feature" in message
    assert "constant_000: it has a single value ('the same value')" in message
    assert "... and 49" in message and "more)." in message


def test_long_column_names_and_values_are_clipped(tmp_path):
    name = "a very long column name " * 50
    value = "a very long value " * 200
    frame = pd.DataFrame({name + str(i): [value] * 10 for i in range(500)})
    frame["status"] = [value + "good", value + "bad"] * 5
    frame["amount"] = np.arange(10) * 1.5

    short(refused(tmp_path, frame, target=name, error=SchemaError))  # missing target
    short(refused(tmp_path, frame.drop(columns="amount")))  # no usable feature
    short(refused(tmp_path, frame, task="regression", error=SchemaError))  # text as a number
    short(refused(tmp_path, frame.assign(status=value), target="status"))  # one class
    short(refused(tmp_path, frame.rename(columns={"status": name}), target=name,
                  min_test_rows=20))
    short(refused(tmp_path, frame.rename(columns={"status": name}), target=name,
                  min_class_test_rows=3))
    frame[name] = [value + str(i) for i in range(10)]
    frame.loc[1, name] = value + "0"
    short(refused(tmp_path, frame, target=name, min_class_test_rows=0))  # 1-row classes
    excluded = check(tmp_path, frame.assign(status=["good", "bad"] * 5)).excluded
    assert all(len(reason) < 80 for reason in excluded.values())


def test_listing_shows_a_handful_then_a_count():
    from keel.validate import listing

    assert listing([]) == ""
    assert listing(["a"]) == "'a'"
    assert listing(["a", "b", "c"]) == "'a', 'b', 'c'"
    assert listing(list("abcdefg")) == "'a', 'b', 'c', 'd', 'e' ... and 2 more"
    assert listing(["x" * 500]) == "'" + "x" * 36 + "..."  # a name is clipped to 40 first
    assert listing(["x" * 500], render=str) == "x" * 97 + "..."
    assert len(listing([f"value {i}" * 20 for i in range(10_000)])) <= 100
    assert listing([1, 2.5, True, None]) == "1, 2.5, True, None"


@pytest.mark.parametrize(("setting", "arguments", "shown"), [
    ("validation_rules", {"validation_rules": '{"columns": {"alcohool": {"min": 0}}}'},
     "'alcohool' (did you mean 'alcohol'?)"),
    ("severity", {"severity": ["hu:out_of_range=error"]}, "'hu' (did you mean 'hue'?)"),
    ("exclude_columns", {"exclude_columns": ["nope"]}, "'nope'"),
])
def test_a_rule_for_a_column_the_table_lacks_is_refused_not_ignored(tmp_path, setting,
                                                                     arguments, shown):
    """A misspelt column in the rules file or a per-column --severity checked nothing, silently:
    the expected range of 'alcohol' was never enforced."""
    from sklearn.datasets import load_wine

    frame = load_wine(as_frame=True).frame
    snapshot = snapshot_of(tmp_path, frame)
    out = [str(tmp_path / n) for n in ("valid.parquet", "schema.json", "report.md")]
    with pytest.raises(SchemaError) as caught:
        run(snapshot, "target", "auto", *out, **arguments)
    message = assert_validate_message(caught.value)
    assert f"The '{setting}' parameter of validate must name columns of the table. Got {shown}"\
        in message
    assert "the 14 columns are 'alcohol', 'malic_acid'" in message and len(message) < 300
    assert not Path(out[0]).exists() and not Path(out[2]).exists()
    good = {"validation_rules": '{"columns": {"alcohol": {"min": 0}}}'} if (
        setting == "validation_rules") else {"severity": ["hue:out_of_range=error"]}
    run(snapshot, "target", "auto", *out, **good)  # the right name passes

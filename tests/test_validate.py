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

from keel.contracts import ColumnInfo, ContractError, TableSchema
from keel.errors import DataValidationError, ParameterError, SchemaError
from keel.validate import (
    MAX_CATEGORIES,
    MAX_CLASSES_FOR_NUMERIC_TARGET,
    infer_task,
    report_markdown,
    run,
    schema_hash,
    validate,
)

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


def check(tmp_path: Path, frame: pd.DataFrame | pa.Table, target: str = "status",
          task: str = "auto") -> TableSchema:
    snapshot = tmp_path / "snapshot.parquet"
    if isinstance(frame, pa.Table):
        pq.write_table(frame, snapshot)
    else:
        frame.to_parquet(snapshot, index=False)
    return validate(str(snapshot), target, task, str(tmp_path / "valid.parquet"))


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
    assert "['amount']" in message and "unique" in message


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
    assert "infinite values read as missing: ratio (" in report_markdown(schema)


def test_an_infinite_regression_target_drops_its_row(tmp_path):
    price = np.linspace(1.0, 99.0, ROWS)
    price[3] = np.inf
    schema = check(tmp_path, table(price=price), target="price")
    assert schema.task == "regression"
    assert schema.rows_dropped_missing_target == 1 and schema.rows == ROWS - 1


def test_report_escapes_pipes_in_column_names(tmp_path):
    schema = check(tmp_path, table(**{"a|b": np.arange(ROWS) % 7}))
    row = next(line for line in report_markdown(schema).splitlines() if line.startswith("| a"))
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

    report = report_markdown(schema)

    assert report.startswith("# Validation report: target `status` (classification)")
    assert "- rows read: 60" in report
    assert "- rows dropped because the target is missing: 1" in report
    assert "- rows kept: 59" in report
    rows = [line for line in report.splitlines() if line.startswith("| ") and "---" not in line]
    assert [r.split(" | ")[0].removeprefix("| ") for r in rows[1:]] == [
        "income", "home", "status", "country"]
    assert "| country | str | constant | excluded | 0 | 1 | it has a single value ('ES') |" in report


def test_run_writes_the_dataset_schema_and_report(tmp_path):
    snapshot = tmp_path / "snapshot.parquet"
    table().to_parquet(snapshot, index=False)
    out = {name: tmp_path / name for name in ("valid.parquet", "schema.json", "report.md")}

    schema = run(str(snapshot), "status", "auto", *(str(p) for p in out.values()))

    assert isinstance(schema, TableSchema)
    assert TableSchema.read(out["schema.json"], stage="preprocess") == schema
    assert json.loads(out["schema.json"].read_text()) == schema.to_dict()
    assert out["report.md"].read_text() == report_markdown(schema)
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

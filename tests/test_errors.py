"""Unit tests of keel.errors: the message shape, the error file and rebuilding reported errors."""

from __future__ import annotations

import json

import pytest

from keel.errors import (
    ERROR_FILE_ENV,
    DataValidationError,
    IntegrityError,
    KeelError,
    ParameterError,
    RegistryConflict,
    RegistryError,
    SchemaError,
    SourceError,
    from_report,
    reports_errors,
)
from keel.storage import ObjectNotFound

DEFAULT_STAGES = [
    (KeelError, "keel"), (SourceError, "ingest"), (SchemaError, "validate"),
    (DataValidationError, "validate"), (ParameterError, "keel"), (RegistryError, "registry"),
    (RegistryConflict, "registry"), (IntegrityError, "registry"), (ObjectNotFound, "storage"),
]


@pytest.mark.parametrize(("cls", "stage"), DEFAULT_STAGES)
def test_str_is_stage_in_brackets_then_the_message(cls, stage):
    error = cls("The 'target' parameter must be a column. Got 'price'.")
    assert str(error) == f"[{stage}] The 'target' parameter must be a column. Got 'price'."
    assert error.stage == stage
    assert error.args == ("The 'target' parameter must be a column. Got 'price'.",)
    assert isinstance(error, KeelError)


def test_an_explicit_stage_overrides_the_class_default_for_that_error_only():
    error = ParameterError("bad test_size", stage="preprocess")
    assert str(error) == "[preprocess] bad test_size"
    assert ParameterError("x").stage == "keel"
    assert DataValidationError("x", stage="preprocess").stage == "preprocess"
    assert DataValidationError("x").stage == "validate"


def test_the_hierarchy_lets_callers_catch_broadly():
    assert issubclass(RegistryConflict, RegistryError)
    assert issubclass(IntegrityError, RegistryError)
    for cls, _ in DEFAULT_STAGES:
        assert issubclass(cls, KeelError) and issubclass(cls, Exception)


# --- reports_errors ----------------------------------------------------------------------------


@reports_errors
def stage_entry(kind: str, value: int = 1) -> int:
    """A stage entry point."""
    if kind == "keel":
        raise SchemaError("The 'target' parameter must be a column. Got 'price'.")
    if kind == "bug":
        raise ZeroDivisionError("division by zero")
    return value * 2


def test_reports_errors_writes_the_error_file_and_reraises(tmp_path, monkeypatch):
    path = tmp_path / "error.json"
    monkeypatch.setenv(ERROR_FILE_ENV, str(path))

    with pytest.raises(SchemaError) as caught:
        stage_entry("keel")

    assert str(caught.value) == "[validate] The 'target' parameter must be a column. Got 'price'."
    assert json.loads(path.read_text()) == {
        "type": "SchemaError", "stage": "validate",
        "message": "The 'target' parameter must be a column. Got 'price'.",
        "unexpected": False}


def test_reports_errors_records_an_overridden_stage(tmp_path, monkeypatch):
    path = tmp_path / "error.json"
    monkeypatch.setenv(ERROR_FILE_ENV, str(path))

    @reports_errors
    def split_stage():
        raise ParameterError("The 'test_size' parameter must be in (0, 1). Got 2.",
                             stage="preprocess")

    with pytest.raises(ParameterError):
        split_stage()
    assert json.loads(path.read_text())["stage"] == "preprocess"


def test_reports_errors_without_the_variable_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.delenv(ERROR_FILE_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SchemaError):
        stage_entry("keel")
    assert list(tmp_path.iterdir()) == []


def test_reports_errors_reports_bugs_as_unexpected_and_reraises_them(tmp_path, monkeypatch):
    path = tmp_path / "error.json"
    monkeypatch.setenv(ERROR_FILE_ENV, str(path))
    with pytest.raises(ZeroDivisionError):
        stage_entry("bug")
    report = json.loads(path.read_text())
    assert report["unexpected"] is True and report["type"] == "ZeroDivisionError"
    assert report["stage"] == "test_errors"  # the stage module's name
    rebuilt = from_report(report, log="/tmp/run.log")
    assert type(rebuilt) is KeelError
    assert str(rebuilt).startswith("[test_errors] unexpected ZeroDivisionError: division by zero")
    assert "/tmp/run.log" in str(rebuilt)


def test_reports_errors_passes_results_and_keeps_the_signature(tmp_path, monkeypatch):
    path = tmp_path / "error.json"
    monkeypatch.setenv(ERROR_FILE_ENV, str(path))
    assert stage_entry("ok", value=21) == 42
    assert not path.exists()
    assert stage_entry.__name__ == "stage_entry"
    assert stage_entry.__doc__ == "A stage entry point."


# --- from_report -------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [cls for cls, _ in DEFAULT_STAGES])
def test_from_report_rebuilds_the_reported_class(tmp_path, monkeypatch, cls):
    path = tmp_path / "error.json"
    monkeypatch.setenv(ERROR_FILE_ENV, str(path))

    @reports_errors
    def failing():
        raise cls("something the user can fix", stage="somewhere")

    with pytest.raises(cls):
        failing()
    rebuilt = from_report(json.loads(path.read_text()))

    assert type(rebuilt) is cls
    assert rebuilt.stage == "somewhere"
    assert str(rebuilt) == "[somewhere] something the user can fix"


def test_from_report_of_an_unknown_type_is_a_plain_keel_error():
    rebuilt = from_report({"type": "ValueError", "stage": "train", "message": "odd"})
    assert type(rebuilt) is KeelError
    assert str(rebuilt) == "[train] odd"


def test_a_real_stage_reports_through_the_file(tmp_path, monkeypatch):
    from keel.ingest import ingest

    path = tmp_path / "error.json"
    monkeypatch.setenv(ERROR_FILE_ENV, str(path))
    with pytest.raises(SourceError):
        ingest(str(tmp_path / "missing.csv"), str(tmp_path / "out.parquet"))

    rebuilt = from_report(json.loads(path.read_text()))
    assert type(rebuilt) is SourceError and rebuilt.stage == "ingest"
    assert "missing.csv" in str(rebuilt)

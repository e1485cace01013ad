"""Unit tests of keel.errors: the message shape, the error file and rebuilding reported errors."""

from __future__ import annotations

import json

import pytest

from keel.errors import (
    ERROR_FILE_ENV,
    MAX_DETAILS,
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
        "unexpected": False, "details": []}


def test_details_travel_through_the_error_file_escaped_and_bounded(tmp_path, monkeypatch):
    path = tmp_path / "error.json"
    monkeypatch.setenv(ERROR_FILE_ENV, str(path))

    @reports_errors
    def checks_stage():
        raise DataValidationError("2 blocking data anomalies", details=[
            "error 'income' type_change: double in the reference, string now",
            "warning 'a\x1b[31mb' drift: psi 0.41 (threshold 0.2)", *(["x" * 500] * 60)])

    with pytest.raises(DataValidationError) as caught:
        checks_stage()
    rebuilt = from_report(json.loads(path.read_text()))
    assert isinstance(rebuilt, DataValidationError)
    assert rebuilt.details[0] == caught.value.details[0] == (
        "error 'income' type_change: double in the reference, string now")
    assert "\x1b" not in rebuilt.details[1]  # the raw escape never reaches a terminal
    assert "'a\\x1b[31mb'" in rebuilt.details[1]  # it is shown escaped
    assert len(rebuilt.details) == MAX_DETAILS and all(len(d) <= 300 for d in rebuilt.details)


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


# --- one safe, bounded line --------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "shown"), [
    ("red \x1b[31mtext\x1b[0m", "red \\x1b[31mtext\\x1b[0m"),
    ("a\nb\rc\td", "a\\nb\\rc\\td"),
    ("nul\x00 bell\x07 del\x7f", "nul\\x00 bell\\x07 del\\x7f"),
    ("csi\x9b2J nel\x85", "csi\\x9b2J nel\\x85"),
    ("line\u2028sep bidi\u202eevil", "line\\u2028sep bidi\\u202eevil"),
    ("undecodable \udce9 byte", "undecodable \\udce9 byte"),
    ("plain text, accents é and ü, 'quotes'", "plain text, accents é and ü, 'quotes'"),
])
def test_printable_escapes_every_control_character(raw, shown):
    from keel.errors import printable

    assert printable(raw) == shown


def test_shorten_keeps_start_and_end_and_says_how_much_was_cut():
    from keel.errors import shorten

    text = "START " + "x" * 5000 + " END"
    short = shorten(text, 300)
    assert len(short) <= 300
    assert short.startswith("START xxx") and short.endswith("xxx END")
    cut = int(short.split("[... ")[1].split(" characters cut")[0])
    assert len(short) - len(f" [... {cut} characters cut ...] ") + cut == len(text)
    assert shorten("short", 300) == "short"
    assert len(shorten("y" * 301, 300)) <= 300


def test_error_line_is_one_escaped_line_of_at_most_300_characters():
    from keel.errors import MAX_LINE, error_line

    error = SourceError("bad row '\x1b[31m" + "z" * 2000 + "\nend' in /data/t.csv")
    line = error_line(error)
    assert line.startswith("keel: error: [ingest] bad row '\\x1b[31mzzz")
    assert line.endswith("\\nend' in /data/t.csv")
    assert len(line) <= MAX_LINE and "\n" not in line and "\x1b" not in line


def test_from_report_bounds_and_escapes_a_stage_message():
    from keel.errors import LINE_PREFIX, MAX_LINE

    rebuilt = from_report({"type": "DataValidationError", "stage": "validate",
                           "message": "classes: " + ", ".join(f"'c\x1b{i}'" for i in range(5000)),
                           "unexpected": False})
    assert type(rebuilt) is DataValidationError
    assert len(LINE_PREFIX + str(rebuilt)) <= MAX_LINE
    assert "\x1b" not in str(rebuilt) and "characters cut" in str(rebuilt)


def test_an_unexpected_report_keeps_the_log_path_however_long_the_message():
    from keel.errors import MAX_LINE, error_line

    log = "/root/.cache/keel/logs/20261127-141528-154523.log"
    rebuilt = from_report({"type": "TypeError", "stage": "train", "unexpected": True,
                           "message": "bad \x1b[2J" + "w" * 10_000}, log=log)
    line = error_line(rebuilt)
    assert line.startswith("keel: error: [train] unexpected TypeError: bad \\x1b[2Jwww")
    assert line.endswith(f"the traceback is in {log})")
    assert len(line) <= MAX_LINE


def test_a_report_with_a_hostile_stage_name_is_escaped():
    rebuilt = from_report({"type": "SchemaError", "stage": "val\x1b[2Jidate\n", "message": "m"})
    assert rebuilt.stage == "val\\x1b[2Jidate\\n"


@pytest.mark.parametrize(("signum", "status"), [(2, 130), (15, 143)])
def test_interrupted_exits_with_128_plus_the_signal(signum, status):
    from keel.errors import Interrupted

    interrupt = Interrupted(signum)
    assert interrupt.exit_status == status
    assert not isinstance(interrupt, Exception)  # no `except Exception` swallows it

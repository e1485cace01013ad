"""``keel validate``: ingest and validate a table alone, and print what the data checks found.

It runs the same stage code as the pipeline (ingest, then validate) in this process, with no
training: a quick look at a new extract before a run, or at why a run was stopped. With
``--against MODEL`` the table is checked against that model's production version (its stored
statistics are the reference); without it, against its own inferred schema and the rules only.
The reports (Markdown, HTML), statistics and checks are written to ``--output``.

Exit status: 0 when nothing blocks a run, 1 when an anomaly of severity error does (the summary
is printed first, then the error line).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from keel.cli import debug_option, echo_json, say, setting_option
from keel.settings import SETTINGS, default_model_name

if TYPE_CHECKING:
    from keel.contracts import ValidationResult
    from keel.errors import DataValidationError

#: The run settings ``keel validate`` takes, as ``keel run`` takes them.
SETTING_NAMES = (
    "source", "target", "task", "source_format", "source_encoding", "source_query",
    "source_table", "records_key", "validation_rules", "severity", "exclude_columns",
    "test_size", "min_test_rows", "min_class_test_rows", "seed",
)
OUTPUT_FILES = {"report": "validation_report.md", "report_html": "validation_report.html",
                "statistics": "statistics.json", "checks": "validation.json",
                "schema": "schema.json"}


def _settings(func: Callable[..., Any]) -> Callable[..., Any]:
    for name in reversed(SETTING_NAMES):
        func = setting_option(SETTINGS[name])(func)
    return func


def default_output(source: str) -> Path:
    """``~/.cache/keel/validation/<source name>-<time>``: a new folder per call."""
    base = Path(os.environ.get("KEEL_WORK_DIR", "~/.cache/keel")).expanduser()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return base / "validation" / f"{default_model_name(source)}-{stamp}-{os.getpid()}"


@click.command("validate")
@_settings
@click.option("--store", default=SETTINGS["store"].cli_default, show_default=True,
              help="Registry root holding the model given with --against.")
@click.option("--against", "model_name", default="", metavar="MODEL",
              help="Check the table against this model's production version (its statistics "
                   "are the reference) [default: no reference].")
@click.option("--output", type=click.Path(path_type=Path), default=None,
              help="Folder for the reports, statistics and checks [default: a new folder under "
                   "~/.cache/keel/validation].")
@click.option("--json", "as_json", is_flag=True,
              help="Print the data checks as one JSON line (the validation result).")
@debug_option()
def validate_command(store: str, model_name: str, output: Path | None, as_json: bool,
                     debug: bool, **options: Any) -> None:
    """Ingest and validate a table alone; print the anomalies, drift and leakage found."""
    from keel.cli import check_writable_folder
    from keel.data_checks import summary_lines
    from keel.errors import DataValidationError
    from keel.settings import check_settings
    from keel.validation_report import plural

    arguments = {}
    for name, value in options.items():
        parse = SETTINGS[name].from_cli
        arguments[name] = parse(value) if parse is not None else value
    arguments.update(store=store, model_name=model_name or "model")
    checked = check_settings(arguments)
    folder = output or default_output(arguments["source"])
    check_writable_folder(folder, "--output", "validate")
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    try:
        result, stopped, paths = _validate(folder, arguments, checked, store, model_name)
    except BaseException:
        if created:  # a refused table leaves no empty folder behind
            with contextlib.suppress(OSError):
                folder.rmdir()  # only when empty: the reports of a stopped run stay
        raise
    if as_json:
        echo_json(result.to_dict())
    else:
        blocking = plural(len(result.errors), "blocking anomaly", "blocking anomalies")
        verdict = f"STOPPED: {blocking}" if result.errors else "passed"
        say(f"Data checks {verdict}, {plural(len(result.warnings), 'warning')}")
        say(f"  reference {result.reference_note}")
        for line in summary_lines(result, width=98):  # printed after two spaces
            say(f"  {line}")
        say(f"  report    {paths['report_html']}")
        say(f"  markdown  {paths['report']}")
    if stopped is not None:  # its details are the lines above: the error line alone
        raise DataValidationError(stopped.args[0]) from None


def _validate(folder: Path, arguments: dict[str, Any], checked: dict[str, Any], store: str,
              model_name: str) -> tuple[ValidationResult, DataValidationError | None,
                                        dict[str, Path]]:
    """Ingest and validate into ``folder``: (the checks, the error that stopped them, paths)."""
    from keel.contracts import ValidationResult
    from keel.errors import DataValidationError
    from keel.ingest import ingest
    from keel.sources import SourceOptions
    from keel.validate import run

    paths = {name: folder / file for name, file in OUTPUT_FILES.items()}
    for path in paths.values():  # an earlier call's files must not pass for this one's
        path.unlink(missing_ok=True)
    snapshot = folder / "snapshot.parquet"
    ingested = ingest(
        arguments["source"], str(snapshot), checked["source_format"], checked["source_encoding"],
        SourceOptions(query=checked["source_query"], table=checked["source_table"],
                      records_key=checked["records_key"]))
    say(f"Validating {ingested.rows} rows x {len(ingested.columns)} columns from "
        f"{arguments['source']} (data version {ingested.data_version[:12]})", err=True)
    stopped: DataValidationError | None = None
    try:
        validated = run(
            str(snapshot), arguments["target"], checked["task"], str(folder / "valid.parquet"),
            str(paths["schema"]), str(paths["report"]), statistics_out=str(paths["statistics"]),
            validation_out=str(paths["checks"]), report_html_out=str(paths["report_html"]),
            test_size=checked["test_size"], min_test_rows=checked["min_test_rows"],
            min_class_test_rows=checked["min_class_test_rows"],
            store=store if model_name else "", model_name=model_name,
            validation_rules=checked["validation_rules"], severity=checked["severity"],
            exclude_columns=checked["exclude_columns"], seed=checked["seed"])
        result = validated.result
    except DataValidationError as exc:
        if not paths["checks"].is_file():  # stopped before the data checks ran
            raise
        stopped = exc
        result = ValidationResult.read(paths["checks"], stage="validate")
    finally:
        snapshot.unlink(missing_ok=True)
        (folder / "valid.parquet").unlink(missing_ok=True)
    return result, stopped, paths

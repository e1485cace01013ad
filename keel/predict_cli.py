"""``keel predict``: score a table with a registered model version, in this process.

The same stage code as the batch prediction pipeline, with no cluster: ingest the source (any
source Keel reads) into a temporary snapshot, which gives its data version, then score it with
the production version or ``--version N`` (sha256-verified before loading). The predictions go to
a temporary file beside ``--output`` that is renamed into place only when every row is written,
so a failure or an interrupt leaves no output at all; an existing file is refused unless
``--overwrite``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from keel.cli import debug_option, echo_json, say, setting_option
from keel.settings import SETTINGS

#: The run settings ``keel predict`` takes, as ``keel run`` takes them: where the rows come from.
SETTING_NAMES = ("source", "source_format", "source_encoding", "source_query", "source_table",
                 "records_key")
PRODUCTION = "production"
SOURCE_HELP = ("Table to score: a CSV, Parquet or JSON Lines file or a folder of them (a local "
               "path or gs://), a SQLAlchemy URL (with --query or --table) or an https:// JSON "
               "API. It needs the model's feature columns; all its columns are carried through.")


def _settings(func: Callable[..., Any]) -> Callable[..., Any]:
    for name in reversed(SETTING_NAMES):
        setting = SETTINGS[name]
        if name == "source":
            setting = dataclasses.replace(setting, cli_help=SOURCE_HELP)
        func = setting_option(setting)(func)
    return func


def _version(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    """``--version``: a version number, or ``production`` (None)."""
    if value is None or value.strip().lower() == PRODUCTION:
        return None
    text = value.strip()
    if not text.isdigit() or int(text) < 1:
        raise click.BadParameter(f"expected a version number (1 or more) or {PRODUCTION!r}; "
                                 f"got {value!r}.")
    return int(text)


def check_output(output: str, overwrite: bool) -> Path:
    """The absolute output path, if Keel may write it; a ParameterError saying why not."""
    from keel.cli import check_writable_folder
    from keel.errors import ParameterError

    def refuse(why: str) -> ParameterError:
        return ParameterError(f"The --output of predict must be {why}. Got {output!r}.",
                              stage="predict")

    if "://" in output:
        raise refuse("a local file path (write to a local file, then copy it)")
    path = Path(output).expanduser().absolute()
    if path.suffix.lower() != ".parquet":
        raise refuse("a path ending in .parquet")
    if path.is_dir():
        raise refuse("a file, not a folder")
    if os.path.lexists(path) and not overwrite:
        raise ParameterError(f"The output {str(path)!r} exists; pass --overwrite to replace it.",
                             stage="predict")
    check_writable_folder(path.parent, "The folder of --output", "predict")
    return path


def _make_folder(folder: Path) -> list[Path]:
    """Create ``folder`` and its missing parents; the ones created, innermost first."""
    missing = [f for f in (folder, *folder.parents) if not f.exists()]
    folder.mkdir(parents=True, exist_ok=True)
    return missing


def _publish(tmp: Path, path: Path, overwrite: bool) -> None:
    """Move the finished file into place: atomically, never over a file that appeared meanwhile."""
    from keel.errors import ParameterError

    if overwrite:
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)  # exclusive: fails if the path exists
    except FileExistsError:
        raise ParameterError(f"The output {str(path)!r} was created by someone else while "
                             "predicting; pass --overwrite to replace it.",
                             stage="predict") from None
    tmp.unlink()


@click.command("predict")
@click.option("--store", default=SETTINGS["store"].cli_default, show_default=True,
              help=SETTINGS["store"].help)
@click.option("--model", "model_name", help="Model name [default: the only model in the store].")
@click.option("--version", "version", default=None, callback=_version, metavar="N",
              help="Model version to score with [default: production].")
@_settings
@click.option("--output", required=True, metavar="FILE.parquet",
              help="Parquet file to write: every input column, prediction, probability_<class> "
                   "per class (classifiers), model_version and data_version.")
@click.option("--overwrite", is_flag=True, help="Replace --output if it exists.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON line.")
@debug_option()
def predict(store: str, model_name: str | None, version: int | None, output: str,
            overwrite: bool, as_json: bool, debug: bool, **options: Any) -> None:
    """Score a table with a registered model version (production by default)."""
    from keel.ingest import ingest
    from keel.models_cli import open_registry
    from keel.predict import predict as score
    from keel.predict import resolve_version
    from keel.settings import checked
    from keel.sources import SourceOptions

    source = {name: checked(name, value, **options) for name, value in options.items()}
    path = check_output(output, overwrite)
    registry = open_registry(store, model_name)
    number = resolve_version(registry, version)  # before the source is read: fail fast
    made = _make_folder(path.parent)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    published = False
    try:
        with tempfile.TemporaryDirectory(prefix="keel-predict-") as folder:
            snapshot = str(Path(folder) / "snapshot.parquet")
            ingested = ingest(
                source["source"], snapshot, source["source_format"], source["source_encoding"],
                SourceOptions(query=source["source_query"], table=source["source_table"],
                              records_key=source["records_key"]))
            say(f"Scoring {ingested.rows} rows from {options['source']} with "
                f"{registry.model!r} version {number}", err=True)
            result = score(snapshot, store, registry.model, number, str(tmp),
                           data_version=ingested.data_version)
        _publish(tmp, path, overwrite)
        published = True
    finally:
        tmp.unlink(missing_ok=True)
        if not published:
            for created in made:  # the folders this command made for --output, innermost first
                with contextlib.suppress(OSError):  # not empty: someone else wrote there
                    created.rmdir()
    result = result.model_copy(update={"output": str(path)})
    if as_json:
        echo_json(result.to_dict())
    else:
        say(f"Predicted {result.rows} rows with {result.model!r} version {result.version} "
            f"(data version {result.data_version[:12]}): {path}")

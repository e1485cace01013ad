"""The ``keel`` command: run the pipeline locally, and inspect or roll back the registry.

A KeelError becomes one line on stderr and exit code 1 (the traceback only with --debug).
With --json, the last line of standard output is one JSON object.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from keel.errors import KeelError
from keel.settings import REQUIRED, SAME, SETTINGS, Setting, default_model_name

if TYPE_CHECKING:
    from keel.contracts import RunSummary

DEBUG = "keel.debug"  # key in click's ctx.meta, shared by the group and its commands


def echo_json(doc: Any) -> None:
    """One JSON object on one line (the last line of standard output with --json)."""
    click.echo(json.dumps(doc, sort_keys=True, default=str))


def fmt(value: Any) -> str:
    """Numbers to four decimals for the summary; anything else as it is."""
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _remember_debug(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
    ctx.meta[DEBUG] = ctx.meta.get(DEBUG, False) or value
    return value


class KeelGroup(click.Group):
    """Turns KeelError into one readable line (and a traceback only with --debug)."""

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command; a KeelError becomes ``keel: error: ...`` and exit code 1."""
        try:
            return super().invoke(ctx)
        except KeelError as exc:
            if ctx.meta.get(DEBUG):
                raise
            click.echo(f"keel: error: {exc}", err=True)
            ctx.exit(1)


def debug_option(help_text: str = "Show tracebacks.") -> Callable[[Any], Any]:
    """``--debug``, recorded in the click context for :class:`KeelGroup`."""
    return click.option("--debug", is_flag=True, help=help_text, callback=_remember_debug,
                        is_eager=True)


@click.group(cls=KeelGroup)
@click.version_option(package_name="keel")
def main() -> None:
    """Keel: train, evaluate and version scikit-learn models with Kubeflow Pipelines."""


def setting_option(setting: Setting) -> Callable[[Any], Any]:
    """The ``keel run`` option of one run setting, from the settings table."""
    default = setting.default if setting.cli_default is SAME else setting.cli_default
    kwargs: dict[str, Any] = {"help": setting.cli_help or setting.help, "metavar": setting.metavar}
    if setting.from_cli is not None:
        kwargs["multiple"] = True
    elif setting.type is bool:
        kwargs.update(is_flag=True, default=default)
    elif default is REQUIRED:
        kwargs["required"] = True
    else:
        kwargs.update(default=default, show_default=default not in (None, ""))
    if setting.choices:
        kwargs["type"] = click.Choice(setting.choices)
    elif setting.from_cli is None:
        kwargs["type"] = setting.type
    return click.option(setting.cli_flag, setting.name, **kwargs)


def setting_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Every run setting as an option, in the table's order."""
    for setting in reversed(SETTINGS.values()):
        func = setting_option(setting)(func)
    return func


def pipeline_arguments(options: dict[str, Any]) -> dict[str, Any]:
    """The CLI's option values as pipeline arguments, checked as the stages will check them."""
    from keel.settings import check_settings
    from keel.storage import is_gcs, open_store

    arguments = {}
    for name, value in options.items():
        setting = SETTINGS[name]
        arguments[name] = setting.from_cli(value) if setting.from_cli else value
    arguments["model_name"] = arguments["model_name"] or default_model_name(arguments["source"])
    # Stages run in other processes (and folders): hand them absolute local paths.
    for name in ("source", "store"):
        uri = arguments[name]
        if "://" not in uri and uri:
            arguments[name] = str(Path(uri).expanduser().absolute())
    check_settings(arguments)
    if is_gcs(arguments["store"]):
        open_store(arguments["store"])  # credentials, before any stage starts
    return arguments


def print_summary(summary: RunSummary) -> None:
    """The human form of the run summary."""
    click.echo(
        f"\nModel {summary.model!r} version {summary.version}: {summary.status.upper()} "
        f"(production is version {summary.production_version})"
    )
    click.echo(f"  data      {summary.rows} rows, data version {summary.data_version[:12]}")
    click.echo(f"  task      {summary.task}")
    click.echo("  metrics   " + "  ".join(f"{k} {fmt(v)}" for k, v in summary.metrics.items()))
    baseline = summary.baseline
    if baseline is None:
        click.echo("  baseline  none (first model: change thresholds do not apply)")
    elif baseline.metrics is None:
        click.echo(f"  baseline  version {baseline.version} could not be scored: {baseline.error}")
    else:
        click.echo(f"  baseline  version {baseline.version} on this test split: " + "  ".join(
            f"{k} {fmt(v)}" for k, v in baseline.metrics.items()))
    for check in summary.decision.checks:
        verdict = "pass" if check.passed else "FAIL"
        click.echo(f"  gate      {check.metric} {check.check}: {fmt(check.candidate)} "
                   f"vs required {fmt(check.required)} -> {verdict}")
    for note in summary.decision.notes:
        click.echo(f"  note      {note}")
    for column, reason in summary.excluded_columns.items():
        click.echo(f"  excluded  {column}: {reason}")
    click.echo(f"  store     {summary.store}")
    click.echo(f"  log       {summary.log}")


@main.command()
@setting_options
@click.option("--work-dir", type=click.Path(path_type=Path),
              default=lambda: Path(os.environ.get("KEEL_WORK_DIR", "~/.cache/keel")).expanduser(),
              help="Where kfp.local keeps run artifacts and logs [default: ~/.cache/keel].")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON line.")
@debug_option("Stream stage logs; show tracebacks.")
def run(work_dir: Path, as_json: bool, debug: bool, **options: Any) -> None:
    """Run the training pipeline locally (kfp.local) and print its summary."""
    from keel.contracts import RunSummary
    from keel.local_run import run_training
    from keel.registry import Registry
    from keel.storage import open_store

    arguments = pipeline_arguments(options)
    click.echo(f"Training {arguments['model_name']!r} from {arguments['source']} "
               f"(store {arguments['store']})", err=True)
    promotion, log = run_training(arguments, work_dir, lambda line: click.echo(line, err=True),
                                  debug)
    manifest = Registry(open_store(promotion.store), promotion.model).manifest(promotion.version)
    summary = RunSummary.of(manifest, promotion, log)
    if as_json:
        echo_json(summary.to_dict())
    else:
        print_summary(summary)


@main.command("compile")
@click.option("--output", type=click.Path(path_type=Path), default=None,
              help="Where to write the spec [default: pipelines/compiled/training.yaml].")
def compile_command(output: Path | None) -> None:
    """Compile the training pipeline to a KFP pipeline spec (YAML); regenerate the components' README."""
    from keel.components import readme
    from keel.pipelines.training import COMPILED, compile_pipeline

    click.echo(compile_pipeline(output or COMPILED))
    if output is None:
        click.echo(readme.write())


from keel.models_cli import models  # noqa: E402 - the group needs main's helpers above

main.add_command(models)

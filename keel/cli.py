"""The ``keel`` command: run the pipeline locally, and inspect or roll back the registry.

Nothing a user types crashes Keel. Exit statuses (README, "Errors and exit statuses"):

- 0: the run finished, whether the candidate was promoted or rejected;
- 1: an error, as one line ``keel: error: [stage] message`` on stderr (a KeelError the user can
  fix, or a bug reported as ``unexpected``); the traceback only with --debug;
- 2: a usage error (click's own message);
- 3: the candidate was rejected and ``keel run --fail-on-reject`` was given;
- 130 / 143: interrupted by SIGINT / SIGTERM; the last line says what the store now holds.

With --json, the last line of standard output is one JSON object.
"""

from __future__ import annotations

import errno
import json
import os
import tempfile
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from keel.errors import (
    Interrupted,
    KeelError,
    ParameterError,
    error_line,
    printable,
    unexpected,
)
from keel.settings import REQUIRED, SAME, SETTINGS, Setting, default_model_name

if TYPE_CHECKING:
    from keel.contracts import RunSummary

DEBUG = "keel.debug"  # key in click's ctx.meta, shared by the group and its commands
EXIT_ERROR = 1
EXIT_USAGE = 2  # click's own status for usage errors
EXIT_REJECTED = 3  # keel run --fail-on-reject, when the gate rejected the candidate


def echo_json(doc: Any) -> None:
    """One JSON object on one line (the last line of standard output with --json)."""
    click.echo(json.dumps(doc, sort_keys=True, default=str))


def fmt(value: Any) -> str:
    """Numbers to four decimals for the summary; anything else as it is."""
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def metric_lines(label: str, head: str, metrics: dict[str, float]) -> list[str]:
    """``  label     head m1 v1  m2 v2 ...`` wrapped under itself at 100 columns."""
    import textwrap

    text = head + "  ".join(f"{k}\N{NO-BREAK SPACE}{fmt(v)}" for k, v in metrics.items())
    lines = textwrap.wrap(text, width=100, initial_indent=f"  {label:<9} ",
                          subsequent_indent=" " * 12, break_on_hyphens=False)
    return [line.replace("\N{NO-BREAK SPACE}", " ") for line in lines]


def say(text: str, err: bool = False) -> None:
    """One human line; names from data or paths get their control characters escaped."""
    click.echo(printable(text), err=err)


def _remember_debug(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
    ctx.meta[DEBUG] = ctx.meta.get(DEBUG, False) or value
    return value


class KeelGroup(click.Group):
    """Turns any failure into one readable line and an exit status (a traceback only with --debug).

    Click's own exceptions (usage errors, exits) pass through untouched: they keep click's
    message and status.
    """

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command; an error becomes ``keel: error: [stage] ...`` and exit status 1."""
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except KeelError as exc:
            fail(ctx, exc, exc)
        except (Interrupted, KeyboardInterrupt) as exc:  # `keel run` says what the store holds
            click.echo("keel: interrupted", err=True)
            ctx.exit(exc.exit_status if isinstance(exc, Interrupted) else 130)
        except Exception as exc:
            where = ("the traceback is above" if ctx.meta.get(DEBUG)
                     else "run again with --debug to see the traceback")
            fail(ctx, unexpected(type(exc).__name__, str(exc), "keel", where), exc)


def fail(ctx: click.Context, error: KeelError, cause: BaseException) -> None:
    """Print ``error`` as its one line (after ``cause``'s traceback with --debug); exit 1."""
    if ctx.meta.get(DEBUG):
        for line in "".join(traceback.format_exception(cause)).splitlines():
            click.echo(printable(line), err=True)
    for line in error.details:  # already escaped and shortened
        click.echo(f"  {line}", err=True)
    click.echo(error_line(error), err=True)
    ctx.exit(EXIT_ERROR)


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
    if arguments["model_name"] is None:  # an explicit --model "" is refused, not replaced
        arguments["model_name"] = default_model_name(arguments["source"])
    # Stages run in other processes (and folders): hand them absolute local paths.
    for name in ("source", "store"):
        uri = arguments[name]
        if "://" not in uri and uri:
            arguments[name] = str(Path(uri).expanduser().absolute())
    check_settings(arguments)
    if is_gcs(arguments["store"]):
        open_store(arguments["store"])  # credentials, before any stage starts
    else:
        check_writable_folder(Path(arguments["store"]), "The 'store' parameter",
                              SETTINGS["store"].stage)
    return arguments


def check_writable_folder(path: Path, name: str, stage: str) -> None:
    """Refuse, before any stage starts, a folder that Keel could not create or write into.

    Permission bits say little (root ignores them; /proc refuses even root), so the nearest
    existing folder is probed by creating and removing a temporary file in it. Nothing else is
    created: a refused run leaves no trace.
    """
    from keel.local_run import shielded

    path = path.expanduser().absolute()

    def refuse(reason: str) -> ParameterError:
        return ParameterError(f"{name} must be a folder Keel can write to; {reason}.",
                              stage=stage)

    existing = path
    while not os.path.lexists(existing) and existing != existing.parent:
        existing = existing.parent
    kind = "a file" if existing.is_file() else "not a folder"
    if not existing.is_dir():
        raise refuse(f"{path} is {kind}" if existing == path
                     else f"{path} cannot be created, as {existing} is {kind}")
    try:
        name_max = os.pathconf(existing, "PC_NAME_MAX")
    except (OSError, ValueError):
        name_max = 255
    for part in path.relative_to(existing).parts:
        if len(os.fsencode(part)) > name_max:
            raise refuse(f"the name {part[:40]!r}... is longer than the {name_max} bytes a "
                         "folder name may have")
    try:
        with shielded():  # an interrupt must not leave the probe behind
            fd, probe = tempfile.mkstemp(dir=existing, prefix=".keel-probe-")
            os.close(fd)
            os.unlink(probe)
    except OSError as exc:
        why = "it takes no new files" if exc.errno == errno.ENOENT else exc.strerror or str(exc)
        raise refuse(f"{existing} cannot be written ({why})") from None


@dataclass(frozen=True)
class StoreState:
    """What a model's registry holds: its complete versions and the production version."""

    versions: frozenset[int]
    production: int | None


def read_store_state(store: str, model: str) -> StoreState | None:
    """The registry's state now, or None when it cannot be read (then it is not compared)."""
    from keel.registry import Registry
    from keel.storage import open_store

    try:
        registry = Registry(open_store(store), model)
        return StoreState(frozenset(registry.versions()), registry.alias().version)
    except Exception:  # a damaged store: the interrupt line says so instead of failing
        return None


def _versions(numbers: list[int]) -> str:
    return (f"version {numbers[0]}" if len(numbers) == 1
            else "versions " + ", ".join(map(str, numbers)))


def _production(version: int | None) -> str:
    return f"version {version}" if version is not None else "no version"


def interrupted_line(before: StoreState | None, after: StoreState | None) -> str:
    """The last line of an interrupted run: what the store holds now, compared with before."""
    if after is None:
        return ("keel: interrupted: the store could not be read to say what it holds; "
                "see `keel models list`")
    if before is None:
        return ("keel: interrupted: the store holds "
                f"{_versions(sorted(after.versions)) if after.versions else 'no version'}, "
                f"production is {_production(after.production)}")
    new = sorted(after.versions - before.versions)
    moved = after.production != before.production
    if not new:
        return "keel: interrupted: nothing was registered" + (
            f" (production moved from {_production(before.production)} to "
            f"{_production(after.production)})" if moved else "")
    registered = f"{_versions(new)} {'was' if len(new) == 1 else 'were'} registered"
    if after.production in new:
        promoted = "" if len(new) == 1 else f" ({_production(after.production)})"
        return f"keel: interrupted: {registered} and promoted{promoted} before the interrupt"
    if not moved:
        still = (f"production is still {_production(before.production)}"
                 if before.production is not None else "no version is in production")
        return f"keel: interrupted: {registered} but not promoted ({still})"
    return (f"keel: interrupted: {registered} but not promoted (production moved from "
            f"{_production(before.production)} to {_production(after.production)})")


def print_summary(summary: RunSummary) -> None:
    """The human form of the run summary (column names and paths escaped: they come from data)."""
    click.echo()
    say(
        f"Model {summary.model!r} version {summary.version}: {summary.status.upper()} "
        f"(production is version {summary.production_version})"
    )
    say(f"  data      {summary.rows} rows, data version {summary.data_version[:12]}")
    say(f"  task      {summary.task}")
    if summary.validation is not None:
        from keel.data_checks import summary_lines

        checks = summary.validation
        warnings = len(checks.warnings)
        say(f"  checks    {warnings} warning{'' if warnings == 1 else 's'}; "
            f"{checks.reference_note}")
        for line in summary_lines(checks, width=88):
            say(f"            {line}")
    for line in metric_lines("metrics", "", summary.metrics):
        say(line)
    baseline = summary.baseline
    if baseline is None:
        say("  baseline  none (first model: change thresholds do not apply)")
    elif baseline.not_compared:
        say(f"  baseline  version {baseline.version} not compared: {baseline.not_compared}")
    elif baseline.metrics is None:
        say(f"  baseline  version {baseline.version} could not be scored: {baseline.error}")
    else:
        rows = "" if baseline.rows is None else f" ({baseline.rows} comparable test rows)"
        for line in metric_lines("baseline", f"version {baseline.version}{rows}: ",
                                 baseline.metrics):
            say(line)
    if summary.search is not None:
        best = summary.search.best
        say(f"  search    {len(summary.search.candidates)} parameter sets, best "
            f"{summary.search.metric} {fmt(best.score)} on validation rows: "
            + ", ".join(f"{k}={v}" for k, v in best.params.items()))
    for check in summary.decision.checks:
        verdict = "pass" if check.passed else "FAIL"
        where = f" [{check.slice}]" if check.slice else ""
        interval = "" if check.interval is None else \
            f" (difference {fmt(check.interval.low)} to {fmt(check.interval.high)})"
        baseline_value = "" if check.baseline is None else f" vs production {fmt(check.baseline)}"
        say(f"  gate      {check.metric} {check.check}{where}: {fmt(check.candidate)}"
            f"{baseline_value}{interval}, required {fmt(check.required)} -> {verdict}")
    for note in summary.decision.notes:
        say(f"  note      {note}")
    deployment = summary.deployment
    if deployment is not None:
        smoke = deployment.smoke_test
        latency = "" if smoke.latency_ms is None else f", slowest request {smoke.latency_ms:.0f} ms"
        verdict = "passed" if smoke.passed else f"FAILED: {smoke.reason}"
        say(f"  serving   smoke test on {smoke.rows} golden rows{latency}: {verdict}")
        if deployment.enabled:
            where = f"{deployment.namespace}/{deployment.name}"
            if deployment.deployed:
                say(f"  deployed  {where} revision {deployment.revision or '?'} at "
                    f"{deployment.url or '?'}")
            else:
                rolled = (f" (re-applied version {deployment.previous_version})"
                          if deployment.rolled_back else "")
                say(f"  deployed  not to {where}: {deployment.reason}{rolled}")
    if summary.status == "rejected" and summary.reason:
        say(f"  reason    {summary.reason}")
    for column, reason in summary.excluded_columns.items():
        say(f"  excluded  {column}: {reason}")
    for name, status in summary.mirrors.items():
        hint = "" if status == "ok" else f" (repair later: keel models sync --to {name})"
        say(f"  mirror    {name}: {status}{hint}")
    say(f"  store     {summary.store}")
    if summary.model_card:
        say(f"  card      {summary.model_card}")
    say(f"  log       {summary.log}")


_UNREAD: Any = object()  # the store was not read yet: no stage had started


@main.command()
@setting_options
@click.option("--work-dir", type=click.Path(path_type=Path),
              default=lambda: Path(os.environ.get("KEEL_WORK_DIR", "~/.cache/keel")).expanduser(),
              help="Where kfp.local keeps run artifacts and logs [default: ~/.cache/keel].")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON line.")
@click.option("--fail-on-reject", is_flag=True,
              help=f"Exit with status {EXIT_REJECTED} when the gate rejects the candidate (the "
                   "summary is still printed), for CI scripts; by default a finished run exits 0.")
@click.option("--runner", type=click.Choice(["subprocess", "docker"]), default="subprocess",
              show_default=True,
              help="subprocess: the stages run as processes of this Python. docker: each stage "
                   "runs in its own image (`make images`), through a Docker API engine such as "
                   "`podman system service` (DOCKER_HOST).")
@debug_option("Stream stage logs; show tracebacks.")
@click.pass_context
def run(ctx: click.Context, /, work_dir: Path, as_json: bool, fail_on_reject: bool, debug: bool,
        runner: str, **options: Any) -> None:
    """Run the training pipeline locally (kfp.local) and print its summary."""
    from keel.contracts import RunSummary
    from keel.local_run import interruptible, run_training
    from keel.registry import MODEL_CARD_FILE, Registry
    from keel.storage import open_store

    with interruptible():
        before: StoreState | None = _UNREAD
        arguments: dict[str, Any] = {}
        try:
            arguments = pipeline_arguments(options)
            for folder in (work_dir, work_dir / "logs", work_dir / "pipeline_root"):
                check_writable_folder(folder, "--work-dir (or KEEL_WORK_DIR)", "run")
            before = read_store_state(arguments["store"], arguments["model_name"])
            say(f"Training {arguments['model_name']!r} from {arguments['source']} "
                f"(store {arguments['store']})", err=True)
            promotion, log = run_training(arguments, work_dir,
                                          lambda line: click.echo(line, err=True), debug, runner)
            registry = Registry(open_store(promotion.store), promotion.model)
            manifest = registry.manifest(promotion.version)
            card = registry.file_url(promotion.version, MODEL_CARD_FILE) \
                if MODEL_CARD_FILE in manifest.files else ""
            summary = RunSummary.of(manifest, promotion, log, card)
            if as_json:
                echo_json(summary.to_dict())
            else:
                print_summary(summary)
        except Interrupted as exc:
            if before is _UNREAD:  # interrupted before the first stage: nothing can have changed
                line = "keel: interrupted: nothing was registered"
            else:
                after = read_store_state(arguments["store"], arguments["model_name"])
                line = interrupted_line(before, after)
            click.echo(line, err=True)
            ctx.exit(exc.exit_status)
    if fail_on_reject and summary.status == "rejected":
        ctx.exit(EXIT_REJECTED)


@main.command("compile")
@click.option("--output", type=click.Path(path_type=Path), default=None,
              help="Where to write the spec [default: pipelines/compiled/training.yaml].")
def compile_command(output: Path | None) -> None:
    """Compile the training (and batch prediction) pipelines to KFP specs; regenerate the README.

    With --output, only the training pipeline is written there.
    """
    from keel.components import readme
    from keel.pipelines import batch_prediction
    from keel.pipelines.training import COMPILED, compile_pipeline

    click.echo(compile_pipeline(output or COMPILED))
    if output is None:
        click.echo(batch_prediction.compile_pipeline())
        click.echo(readme.write())


from keel.cluster_cli import cluster_group  # noqa: E402 - the commands need main's helpers
from keel.deploy_cli import deploy_command  # noqa: E402
from keel.models_cli import models  # noqa: E402
from keel.predict_cli import predict as predict_command  # noqa: E402
from keel.sample_cli import sample as sample_command  # noqa: E402
from keel.serve_cli import serve  # noqa: E402
from keel.validate_cli import validate_command  # noqa: E402

main.add_command(models)
main.add_command(validate_command)
main.add_command(predict_command)
main.add_command(sample_command)
main.add_command(serve)
main.add_command(deploy_command)
main.add_command(cluster_group)

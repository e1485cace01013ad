"""``keel cluster``: compile for a Kubeflow environment, upload, submit and schedule runs.

An environment is a file such as ``manifests/env/dev.yaml`` (see :mod:`keel.cluster`): the KFP
endpoint and names, the image registry, the run's parameters, the schedule and each stage's pod
settings. Options and environment variables override its ``kfp:`` values (``--host`` or
KFP_HOST, ``--namespace`` or KFP_NAMESPACE, ...); credentials come only from the environment
(KF_PIPELINES_TOKEN, KF_PIPELINES_COOKIES, KF_PIPELINES_SA_TOKEN_PATH), never from argv.
``--dry-run`` prints the request as JSON and contacts no server.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from keel.cli import debug_option, echo_json, say

if TYPE_CHECKING:
    from keel.cluster import Environment, Target

HELP_ENV = "Environment file, e.g. manifests/env/dev.yaml."


def _env_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--env", "env_file", required=True, metavar="FILE",
                        type=click.Path(path_type=Path), help=HELP_ENV)(func)


def _target_options(*names: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Overrides of the env file's ``kfp:`` values: an option, else its variable, else the file."""
    helps = {
        "host": ("KFP_HOST", "KFP API endpoint, e.g. http://127.0.0.1:8888 after `kubectl "
                             "port-forward -n kubeflow svc/ml-pipeline-ui 8888:80`"),
        "namespace": ("KFP_NAMESPACE", "Namespace of the runs (the profile namespace in "
                                       "multi-user Kubeflow; \"\" for standalone KFP)"),
        "experiment": ("KFP_EXPERIMENT", "Experiment of the runs (created if absent)"),
        "pipeline": ("KFP_PIPELINE", "Pipeline name in KFP"),
        "service_account": ("KFP_SERVICE_ACCOUNT", "ServiceAccount the run's pods run as"),
    }

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        for name in reversed(names):
            variable, text = helps[name]
            func = click.option(f"--{name.replace('_', '-')}", name, envvar=variable,
                                default=None,
                                help=f"{text} [default: {variable}, else the env file's "
                                     f"kfp.{name}].")(func)
        return func

    return decorate


_dry_run = click.option("--dry-run", is_flag=True,
                        help="Print the request as JSON; contact no server.")
_json = click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON line.")


def _package_option(help_text: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return click.option("--package", type=click.Path(path_type=Path), default=None,
                        metavar="FILE.yaml", help=help_text)


def _load(env_file: Path) -> Environment:
    from keel.cluster import load_environment

    return load_environment(env_file)


def _target(environment: Environment, **given: str | None) -> Target:
    from keel.cluster import override

    return override(environment, **given)


def _existing(package: Path) -> Path:
    from keel.errors import ParameterError

    if not package.is_file():
        raise ParameterError(f"--package {str(package)!r} is not a file (a compiled spec: "
                             "keel cluster compile --env ...).", stage="cluster")
    return package.absolute()


def _default_output(environment: Environment) -> Path:
    return Path("build") / environment.name / "training.yaml"


def _print_request(request: dict[str, Any]) -> None:
    click.echo(json.dumps({**request, "dry_run": True}, indent=2, sort_keys=True, default=str))


def _stamp() -> str:
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime())


@click.group("cluster")
def cluster_group() -> None:
    """Compile for a Kubeflow environment; upload, submit and schedule runs on it."""


@cluster_group.command("compile")
@_env_option
@click.option("--output", type=click.Path(path_type=Path), default=None,
              help="Where to write the spec [default: build/<env>/training.yaml].")
@debug_option()
def compile_command(env_file: Path, output: Path | None, debug: bool) -> None:
    """Compile the training pipeline with the environment's images and pod settings."""
    from keel.cluster import compile_for

    environment = _load(env_file)
    click.echo(compile_for(environment, output or _default_output(environment)))


@cluster_group.command("upload")
@_env_option
@_target_options("host", "namespace", "pipeline")
@_package_option("Upload this compiled spec [default: compile the environment's spec to "
                 "--output first].")
@click.option("--output", type=click.Path(path_type=Path), default=None,
              help="Where to compile the spec [default: build/<env>/training.yaml].")
@click.option("--version-name", default=None,
              help="Name of the pipeline version [default: <keel version>-<git commit>-<UTC "
                   "time>].")
@_dry_run
@_json
@debug_option()
def upload_command(env_file: Path, host: str | None, namespace: str | None,
                   pipeline: str | None, package: Path | None, output: Path | None,
                   version_name: str | None, dry_run: bool, as_json: bool, debug: bool) -> None:
    """Upload the compiled spec as a new version of the pipeline (created if absent)."""
    from keel import cluster as ops

    environment = _load(env_file)
    target = _target(environment, host=host, namespace=namespace, pipeline=pipeline)
    path = _existing(package) if package else ops.compile_for(
        environment, output or _default_output(environment))
    version = version_name or ops.version_name()
    request = ops.upload_request(target, path, version)
    if dry_run:
        _print_request(request)
        return
    client = ops.connect(target, ops.Credentials.from_environment(), "upload a pipeline")
    description = (f"Keel training pipeline, compiled for {environment.path} (images from "
                   f"{environment.image_registry})")
    result = {**request, **ops.upload_version(client, target, path, version, description),
              "dry_run": False}
    if as_json:
        echo_json(result)
        return
    created = " (created the pipeline)" if result["created_pipeline"] else ""
    say(f"Uploaded pipeline {target.pipeline!r} version {version!r} (id "
        f"{result['pipeline_version_id']}) to {target.host}{created}")


def _run_options(func: Callable[..., Any]) -> Callable[..., Any]:
    func = _package_option("Run this compiled spec instead of a pipeline version uploaded to "
                           "KFP.")(func)
    func = click.option("--pipeline-version", default=None, metavar="NAME",
                        help="Version of the uploaded pipeline to run [default: the newest]."
                        )(func)
    return click.option("--param", "params", multiple=True, metavar="NAME=VALUE",
                        help="A pipeline parameter, over the env file's parameters "
                             "(repeatable).")(func)


@cluster_group.command("submit")
@_env_option
@_target_options("host", "namespace", "experiment", "pipeline", "service_account")
@_run_options
@click.option("--name", default=None, help="Run name [default: <pipeline>-<env>-<UTC time>].")
@_dry_run
@_json
@debug_option()
def submit_command(env_file: Path, host: str | None, namespace: str | None,
                   experiment: str | None, pipeline: str | None, service_account: str | None,
                   params: tuple[str, ...], pipeline_version: str | None,
                   package: Path | None, name: str | None, dry_run: bool, as_json: bool,
                   debug: bool) -> None:
    """Start one run of the training pipeline in the environment's experiment."""
    from keel import cluster as ops

    environment = _load(env_file)
    target = _target(environment, host=host, namespace=namespace, experiment=experiment,
                     pipeline=pipeline, service_account=service_account)
    parameters = ops.run_parameters(environment, params)
    path = _existing(package) if package else None
    run_name = name or f"{target.pipeline}-{environment.name}-{_stamp()}"
    request = ops.run_request(environment, target, parameters, path, pipeline_version, run_name)
    if dry_run:
        _print_request(request)
        return
    client = ops.connect(target, ops.Credentials.from_environment(), "submit a run")
    result = {**ops.create_run(client, target, request, path, pipeline_version,
                               f"Keel training runs ({environment.path})"), "dry_run": False}
    if as_json:
        echo_json(result)
        return
    version = f"version {result['pipeline_version']!r}" if path is None else str(path)
    say(f"Submitted run {run_name!r} of {target.pipeline!r} ({version}) in experiment "
        f"{target.experiment!r}: {result['url']}")


@cluster_group.command("schedule")
@_env_option
@_target_options("host", "namespace", "experiment", "pipeline", "service_account")
@_run_options
@click.option("--cron", default=None,
              help="KFP cron, six fields with seconds first (\"0 0 6 * * 1\": 06:00 every "
                   "Monday) [default: the env file's schedule.cron].")
@click.option("--catchup/--no-catchup", default=None,
              help="Run the intervals missed while paused [default: the env file's "
                   "schedule.catchup].")
@click.option("--max-concurrency", type=int, default=None, metavar="N",
              help="Runs of this schedule at once, 1 to 10 [default: the env file's "
                   "schedule.max_concurrency].")
@click.option("--name", default=None,
              help="Recurring run name [default: <pipeline>-<env>].")
@click.option("--replace", is_flag=True,
              help="Replace a recurring run of the same name (deleted once the new one exists).")
@_dry_run
@_json
@debug_option()
def schedule_command(env_file: Path, host: str | None, namespace: str | None,
                     experiment: str | None, pipeline: str | None, service_account: str | None,
                     params: tuple[str, ...], pipeline_version: str | None,
                     package: Path | None, cron: str | None, catchup: bool | None,
                     max_concurrency: int | None, name: str | None, replace: bool,
                     dry_run: bool, as_json: bool, debug: bool) -> None:
    """Create a recurring run of the training pipeline (the env file's schedule by default)."""
    import dataclasses

    from keel import cluster as ops
    from keel.errors import ParameterError

    environment = _load(env_file)
    target = _target(environment, host=host, namespace=namespace, experiment=experiment,
                     pipeline=pipeline, service_account=service_account)
    planned = environment.schedule
    if planned is None and cron is None:
        raise ParameterError(f"{environment.path} has no schedule: and no --cron was given: "
                             "nothing says when to run.", stage="cluster")
    planned = planned or ops.Schedule(cron="", catchup=False, max_concurrency=1)
    changes: dict[str, Any] = {}
    if cron is not None:
        changes["cron"] = ops.check_cron(cron)
    if catchup is not None:
        changes["catchup"] = catchup
    if max_concurrency is not None:
        changes["max_concurrency"] = ops.check_max_concurrency(max_concurrency)
    chosen = dataclasses.replace(planned, **changes)
    parameters = ops.run_parameters(environment, params)
    path = _existing(package) if package else None
    job_name = name or f"{target.pipeline}-{environment.name}"
    request = ops.schedule_request(environment, target, parameters, path, pipeline_version,
                                   job_name, chosen, replace)
    if dry_run:
        _print_request(request)
        return
    client = ops.connect(target, ops.Credentials.from_environment(), "schedule runs")
    result = {**ops.create_schedule(client, target, request, path, pipeline_version,
                                    f"Keel training runs ({environment.path})"),
              "dry_run": False}
    if as_json:
        echo_json(result)
        return
    version = f"version {result['pipeline_version']!r}" if path is None else str(path)
    replaced = f", replacing {', '.join(result['replaced'])}" if result["replaced"] else ""
    say(f"Scheduled {job_name!r} ({target.pipeline!r} {version}) at cron {chosen.cron!r}, "
        f"at most {chosen.max_concurrency} at once, catchup "
        f"{'on' if chosen.catchup else 'off'}, in experiment {target.experiment!r} "
        f"(id {result['recurring_run_id']}{replaced})")

"""The ``keel`` command: run the pipeline locally, and inspect or roll back the registry.

A KeelError becomes one line on stderr and exit code 1 (the traceback only with --debug).
With --json, the last line of standard output is one JSON object.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any

import click

from keel.errors import KeelError, ParameterError

DEFAULT_STORE = ".keel"


def _echo_json(doc: Any) -> None:
    click.echo(json.dumps(doc, sort_keys=True, default=str))


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


class KeelGroup(click.Group):
    """Turns KeelError into one readable line (and a traceback only with --debug)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KeelError as exc:
            if "--debug" in sys.argv:
                raise
            click.echo(f"keel: error: {exc}", err=True)
            ctx.exit(1)


@click.group(cls=KeelGroup)
@click.version_option(package_name="keel")
def main() -> None:
    """Keel: train, evaluate and version scikit-learn models with Kubeflow Pipelines."""


def default_model_name(source: str) -> str:
    """``data/credit.csv`` -> ``credit``."""
    stem = source.rstrip("/").rsplit("/", 1)[-1].split(".", 1)[0].lower()
    return re.sub(r"[^a-z0-9._-]+", "-", stem).strip("-._") or "model"


def parse_thresholds(items: tuple[str, ...]) -> dict[str, dict[str, float]]:
    result: dict[str, dict[str, float]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        metric, dot, rule = key.partition(".")
        try:
            number = float(value)
        except ValueError:
            number = None
        if not sep or not dot or number is None:
            raise ParameterError(
                "A --threshold must look like METRIC.RULE=NUMBER, for example "
                f"roc_auc.lower=0.7 or rmse.min_relative_change=0.01. Got {item!r}.",
                stage="run",
            )
        result.setdefault(metric, {})[rule] = number
    return result


def preflight(store: str, model: str, estimator: str, thresholds: dict) -> None:
    """Check what can be checked before any stage starts (the stages check again)."""
    from keel.evaluate import check_thresholds
    from keel.registry import check_model_name
    from keel.storage import open_store
    from keel.train import check_estimator

    check_model_name(model)
    open_store(store)
    check_estimator(estimator)
    check_thresholds(thresholds)


def print_summary(summary: dict[str, Any]) -> None:
    status = summary["status"].upper()
    click.echo(
        f"\nModel {summary['model']!r} version {summary['version']}: {status} "
        f"(production is version {summary['production_version']})"
    )
    click.echo(f"  data      {summary['rows']} rows, data version {summary['data_version'][:12]}")
    click.echo(f"  task      {summary['task']}")
    click.echo("  metrics   " + "  ".join(f"{k} {_fmt(v)}" for k, v in summary["metrics"].items()))
    baseline = summary["baseline"]
    if baseline is None:
        click.echo("  baseline  none (first model: change thresholds do not apply)")
    elif baseline["metrics"] is None:
        click.echo(f"  baseline  version {baseline['version']} could not be scored: "
                   f"{baseline.get('error')}")
    else:
        click.echo(f"  baseline  version {baseline['version']} on this test split: " + "  ".join(
            f"{k} {_fmt(v)}" for k, v in baseline["metrics"].items()))
    for check in summary["decision"]["checks"]:
        verdict = "pass" if check["passed"] else "FAIL"
        click.echo(f"  gate      {check['metric']} {check['check']}: {_fmt(check['candidate'])} "
                   f"vs required {_fmt(check['required'])} -> {verdict}")
    for note in summary["decision"]["notes"]:
        click.echo(f"  note      {note}")
    for column, reason in summary["excluded_columns"].items():
        click.echo(f"  excluded  {column}: {reason}")
    click.echo(f"  store     {summary['store']}")
    click.echo(f"  log       {summary['log']}")


@main.command()
@click.option("--source", required=True, help="CSV, Parquet or JSON Lines table: path or gs:// URI.")
@click.option("--target", required=True, help="Column to predict.")
@click.option("--task", type=click.Choice(["auto", "classification", "regression"]),
              default="auto", show_default=True)
@click.option("--model", "model_name", help="Registry name [default: the source's file name].")
@click.option("--store", default=DEFAULT_STORE, show_default=True,
              help="Registry root: a folder or gs://bucket/prefix.")
@click.option("--estimator", default="hist_gradient_boosting", show_default=True,
              help="linear, random_forest or hist_gradient_boosting.")
@click.option("--param", "params", multiple=True, metavar="NAME=VALUE",
              help="Hyperparameter for the estimator (repeatable), e.g. max_depth=5.")
@click.option("--threshold", "thresholds", multiple=True, metavar="METRIC.RULE=NUMBER",
              help="Gate rule (repeatable): RULE is lower, upper, min_relative_change or "
                   "min_absolute_change. Default: no worse than production on the primary metric.")
@click.option("--test-size", default=0.2, show_default=True, type=float,
              help="Fraction of rows held out to evaluate the candidate and production.")
@click.option("--seed", default=0, show_default=True, type=int,
              help="Seed of the split and the estimator: same data and seed, same model.")
@click.option("--encoding", type=click.Choice(["auto", "onehot", "ordinal"]), default="auto",
              show_default=True,
              help="Categorical encoding; auto is one-hot for linear, ordinal for trees.")
@click.option("--format", "source_format", type=click.Choice(["auto", "csv", "parquet", "jsonl"]),
              default="auto", show_default=True, help="Source format; auto reads the file name.")
@click.option("--override-reason", default="", help="Promote even if the gate fails, with reason.")
@click.option("--work-dir", type=click.Path(path_type=Path),
              default=lambda: Path(os.environ.get("KEEL_WORK_DIR", "~/.cache/keel")).expanduser(),
              help="Where kfp.local keeps run artifacts and logs [default: ~/.cache/keel].")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON line.")
@click.option("--debug", is_flag=True, help="Stream stage logs; show tracebacks.")
def run(source, target, task, model_name, store, estimator, params, thresholds, test_size, seed,
        encoding, source_format, override_reason, work_dir, as_json, debug) -> None:
    """Run the training pipeline locally (kfp.local) and print its summary."""
    from keel.local_run import run_training
    from keel.storage import is_gcs
    from keel.train import parse_params

    model_name = model_name or default_model_name(source)
    # Stages run in other processes (and folders): hand them absolute local paths.
    source, store = (uri if is_gcs(uri) else str(Path(uri).expanduser().absolute())
                     for uri in (source, store))
    rules = parse_thresholds(thresholds)
    preflight(store, model_name, estimator, rules)
    arguments = {
        "source": source, "target": target, "store": store, "model_name": model_name,
        "task": task, "estimator": estimator, "params": json.dumps(parse_params(params)),
        "test_size": test_size, "seed": seed, "encoding": encoding, "thresholds": rules,
        "override_reason": override_reason, "source_format": source_format,
    }
    click.echo(f"Training {model_name!r} from {source} (store {store})", err=True)
    summary = run_training(arguments, work_dir, lambda line: click.echo(line, err=True), debug)
    if as_json:
        _echo_json(summary)
    else:
        print_summary(summary)


@main.command("compile")
@click.option("--output", type=click.Path(path_type=Path), default=None,
              help="Where to write the spec [default: pipelines/compiled/training.yaml].")
def compile_command(output: Path | None) -> None:
    """Compile the training pipeline to a KFP pipeline spec (YAML)."""
    from keel.pipelines.training import COMPILED, compile_pipeline

    click.echo(compile_pipeline(output or COMPILED))


# -- models ----------------------------------------------------------------------------------
store_option = click.option("--store", default=DEFAULT_STORE, show_default=True,
                            help="Registry root: a folder or gs://bucket/prefix.")
model_option = click.option("--model", "model_name",
                            help="Model name [default: the only model in the store].")
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")
debug_option = click.option("--debug", is_flag=True, help="Show tracebacks.")


def open_registry(store: str, model_name: str | None):
    from keel.errors import RegistryError
    from keel.registry import Registry
    from keel.storage import open_store

    target = open_store(store)
    if model_name is None:
        names = sorted({k.split("/")[1] for k in target.list("registry")})
        if len(names) != 1:
            raise RegistryError(
                f"The store {target.uri} holds {len(names)} models "
                f"({', '.join(names) or 'none'}); name one with --model."
            )
        model_name = names[0]
    return Registry(target, model_name)


@main.group()
def models() -> None:
    """List, show and roll back registered model versions."""


@models.command("list")
@store_option
@model_option
@json_option
@debug_option
def list_versions(store, model_name, as_json, debug) -> None:
    """List the versions of a model, marking production."""
    registry = open_registry(store, model_name)
    production = registry.alias().version
    rows = []
    for version in registry.versions():
        manifest = registry.manifest(version)
        rows.append({
            "version": version,
            "production": version == production,
            "registered_at": manifest["registered_at"],
            "passed_gate": manifest["decision"]["passed"],
            "data_version": manifest["data"]["data_version"],
            "metrics": manifest["metrics"],
        })
    if as_json:
        _echo_json({"model": registry.model, "production_version": production, "versions": rows})
        return
    click.echo(f"Model {registry.model!r} in {registry.store.uri}")
    for row in rows:
        mark = "*" if row["production"] else " "
        gate = "passed" if row["passed_gate"] else "rejected"
        metrics = "  ".join(f"{k} {_fmt(v)}" for k, v in row["metrics"].items())
        click.echo(f"{mark} v{row['version']:<4} {row['registered_at']}  {gate:<8}  "
                   f"data {row['data_version'][:12]}  {metrics}")
    if not rows:
        click.echo("  (no versions)")


@models.command("show")
@store_option
@model_option
@click.option("--version", type=int, help="Version [default: production].")
@json_option
@debug_option
def show(store, model_name, version, as_json, debug) -> None:
    """Show a version's manifest (lineage, metrics, decision)."""
    from keel.errors import RegistryError

    registry = open_registry(store, model_name)
    version = version or registry.alias().version
    if version is None:
        raise RegistryError(f"Model {registry.model!r} has no production version; pass --version.")
    manifest = registry.manifest(version)
    if as_json:
        _echo_json(manifest)
        return
    click.echo(json.dumps(manifest, indent=2, sort_keys=True, default=str))


@models.command("rollback")
@store_option
@model_option
@click.option("--to", "to", type=int, help="Version to restore [default: the previous one].")
@click.option("--reason", default="", help="Why, recorded in the event log.")
@json_option
@debug_option
def rollback(store, model_name, to, reason, as_json, debug) -> None:
    """Move production back to the previous production version (or to --to N)."""
    registry = open_registry(store, model_name)
    event = registry.rollback(to=to, reason=reason)
    if as_json:
        _echo_json({"model": registry.model, **event})
        return
    click.echo(f"Model {registry.model!r}: production moved from version {event['from']} "
               f"to version {event['to']}.")

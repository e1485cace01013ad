"""``keel models``: list, show and roll back the versions of a model in a store."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import click

from keel.cli import debug_option, echo_json, fmt
from keel.settings import SETTINGS

if TYPE_CHECKING:
    from keel.registry import Registry

store_option = click.option("--store", default=SETTINGS["store"].cli_default, show_default=True,
                            help=SETTINGS["store"].help)
model_option = click.option("--model", "model_name",
                            help="Model name [default: the only model in the store].")
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


def open_registry(store: str, model_name: str | None) -> Registry:
    """The registry of ``model_name``, or of the only model in the store."""
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


@click.group()
def models() -> None:
    """List, show and roll back registered model versions."""


@models.command("list")
@store_option
@model_option
@json_option
@debug_option()
def list_versions(store: str, model_name: str | None, as_json: bool, debug: bool) -> None:
    """List the versions of a model, marking production."""
    registry = open_registry(store, model_name)
    production = registry.alias().version
    rows: list[dict[str, Any]] = []
    for version in registry.versions():
        manifest = registry.manifest(version)
        rows.append({
            "version": version,
            "production": version == production,
            "registered_at": manifest.registered_at,
            "passed_gate": manifest.decision.passed,
            "data_version": manifest.data.data_version,
            "metrics": manifest.metrics,
        })
    if as_json:
        echo_json({"model": registry.model, "production_version": production, "versions": rows})
        return
    click.echo(f"Model {registry.model!r} in {registry.store.uri}")
    for row in rows:
        mark = "*" if row["production"] else " "
        gate = "passed" if row["passed_gate"] else "rejected"
        metrics = "  ".join(f"{k} {fmt(v)}" for k, v in row["metrics"].items())
        click.echo(f"{mark} v{row['version']:<4} {row['registered_at']}  {gate:<8}  "
                   f"data {row['data_version'][:12]}  {metrics}")
    if not rows:
        click.echo("  (no versions)")


@models.command("show")
@store_option
@model_option
@click.option("--version", type=int, help="Version [default: production].")
@json_option
@debug_option()
def show(store: str, model_name: str | None, version: int | None, as_json: bool,
         debug: bool) -> None:
    """Show a version's manifest (lineage, metrics, decision)."""
    from keel.errors import RegistryError

    registry = open_registry(store, model_name)
    version = version or registry.alias().version
    if version is None:
        raise RegistryError(f"Model {registry.model!r} has no production version; pass --version.")
    manifest = registry.manifest(version).to_dict()
    if as_json:
        echo_json(manifest)
        return
    click.echo(json.dumps(manifest, indent=2, sort_keys=True, default=str))


@models.command("rollback")
@store_option
@model_option
@click.option("--to", "to", type=int, help="Version to restore [default: the previous one].")
@click.option("--reason", default="", help="Why, recorded in the event log.")
@json_option
@debug_option()
def rollback(store: str, model_name: str | None, to: int | None, reason: str, as_json: bool,
             debug: bool) -> None:
    """Move production back to the previous production version (or to --to N)."""
    registry = open_registry(store, model_name)
    event = registry.rollback(to=to, reason=reason)
    if as_json:
        echo_json({"model": registry.model, **event})
        return
    click.echo(f"Model {registry.model!r}: production moved from version {event['from']} "
               f"to version {event['to']}.")

"""``keel models``: list, show and roll back the versions of a model in a store.

``list`` and ``show`` read every file of the versions they report and check it against its sha256,
so a damaged version is marked as such, never shown as healthy. Anything damaged that a command
needs (production.json, an event, the manifest shown) is one ``keel: error:`` line naming it.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import click

from keel.cli import debug_option, echo_json, fmt, say
from keel.settings import SETTINGS

if TYPE_CHECKING:
    from keel.registry import Registry, VersionCheck

store_option = click.option("--store", default=SETTINGS["store"].cli_default, show_default=True,
                            help=SETTINGS["store"].help)
model_option = click.option("--model", "model_name",
                            help="Model name [default: the only model in the store].")
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


def open_registry(store: str, model_name: str | None) -> Registry:
    """The registry of ``model_name``, or of the only model in the store.

    A name the store does not hold is an error listing those it holds (a typo must not read as
    a model with no versions).
    """
    from keel.errors import RegistryError
    from keel.registry import Registry, model_names
    from keel.storage import open_store

    target = open_store(store)
    if model_name is None:
        names = model_names(target)
        if len(names) != 1:
            raise RegistryError(
                f"The store {target.uri} holds {len(names)} models "
                f"({', '.join(names) or 'none'}); name one with --model."
            )
        model_name = names[0]
    registry = Registry(target, model_name)
    if not target.list(registry.root):
        names = model_names(target)
        holds = f"holds {', '.join(names)}" if names else "holds no models"
        raise RegistryError(f"The store {target.uri} has no model {model_name!r}; it {holds}.")
    return registry


def damage_json(check: VersionCheck) -> dict[str, Any]:
    """The damage fields of a version, as ``list`` and ``show`` print them with --json."""
    return {"damaged": check.damaged, "damage": [d.to_dict() for d in check.damage]}


@click.group()
def models() -> None:
    """List, show and roll back registered model versions."""


@models.command("list")
@store_option
@model_option
@json_option
@debug_option()
def list_versions(store: str, model_name: str | None, as_json: bool, debug: bool) -> None:
    """List the versions of a model, marking production and damaged versions.

    Every file of every version is read and checked against its sha256.
    """
    from keel.registry import repair_hint

    registry = open_registry(store, model_name)
    production = registry.alias().version
    rows: list[dict[str, Any]] = []
    for version in registry.versions():
        check = registry.verify(version)
        manifest = check.manifest
        rows.append({
            "version": version,
            "production": version == production,
            "registered_at": manifest.registered_at if manifest else None,
            "passed_gate": manifest.decision.passed if manifest else None,
            "data_version": manifest.data.data_version if manifest else None,
            "metrics": manifest.metrics if manifest else {},
            **damage_json(check),
        })
    if as_json:
        echo_json({"model": registry.model, "production_version": production, "versions": rows})
        return
    say(f"Model {registry.model!r} in {registry.store.uri}")
    for row in rows:
        mark = "*" if row["production"] else " "
        if row["registered_at"] is None:
            say(f"{mark} v{row['version']:<4} DAMAGED   manifest unreadable")
        else:
            gate = "passed" if row["passed_gate"] else "rejected"
            metrics = "  ".join(f"{k} {fmt(v)}" for k, v in row["metrics"].items())
            state = "DAMAGED  " if row["damaged"] else ""
            say(f"{mark} v{row['version']:<4} {state}{row['registered_at']}  {gate:<8}  "
                       f"data {row['data_version'][:12]}  {metrics}")
        for damage in row["damage"]:
            say(f"        damaged: {damage['problem']}")
    if not rows:
        say("  (no versions)")
    damaged = [row["version"] for row in rows if row["damaged"]]
    if damaged:
        if production in damaged:
            say(f"PRODUCTION (version {production}) IS DAMAGED: a server loading it gets "
                       "a model that is not the one registered.")
        say(f"{len(damaged)} damaged version(s): "
                   f"{', '.join(map(str, damaged))}; production will not be moved to them. "
                   + repair_hint(registry.model))


@models.command("show")
@store_option
@model_option
@click.option("--version", type=int, help="Version [default: production].")
@json_option
@debug_option()
def show(store: str, model_name: str | None, version: int | None, as_json: bool,
         debug: bool) -> None:
    """Show a version's manifest (lineage, metrics, decision) and whether its files are intact."""
    from keel.errors import RegistryError
    from keel.registry import DamagedVersion, repair_hint

    registry = open_registry(store, model_name)
    if version is None:
        version = registry.alias().version
        if version is None:
            known = ", ".join(map(str, registry.versions())) or "none"
            raise RegistryError(f"Model {registry.model!r} has no production version; pass "
                                f"--version N (versions: {known}).")
    check = registry.verify(version)  # an unknown version is an error listing those that exist
    if check.manifest is None:  # the problem names the manifest and how to repair it
        raise DamagedVersion(check.damage[0].problem)
    manifest = check.manifest.to_dict()
    if as_json:
        echo_json({**manifest, **damage_json(check)})
        return
    say(json.dumps(manifest, indent=2, sort_keys=True, default=str))
    if check.damaged:
        say(f"DAMAGED: version {version} of {registry.model!r} does not match what was "
                   "registered; it will not be loaded, promoted or rolled back to.")
        for damage in check.damage:
            say(f"  {damage.problem}")
        say(f"  {repair_hint(registry.model)}")
    else:
        say(f"intact: all {len(check.manifest.files)} files match the sha256 recorded "
                   "in the manifest.")


@models.command("rollback")
@store_option
@model_option
@click.option("--to", "to", type=int, help="Version to restore [default: the previous one].")
@click.option("--reason", default="", help="Why, recorded in the event log.")
@click.option("--force", is_flag=True,
              help="Allow a version its gate rejected, or one newer than production (needs "
                   "--reason); the event records it. Never allows a damaged version.")
@json_option
@debug_option()
def rollback(store: str, model_name: str | None, to: int | None, reason: str, force: bool,
             as_json: bool, debug: bool) -> None:
    """Move production back to the previous production version (or to --to N).

    With production.json missing, --to N restores it.
    """
    registry = open_registry(store, model_name)
    event = registry.rollback(to=to, reason=reason, force=force)
    if as_json:
        echo_json({"model": registry.model, **event})
        return
    if event["action"] == "restore":
        message = (f"Model {registry.model!r}: production.json restored, production is version "
                   f"{event['to']}.")
    else:
        message = (f"Model {registry.model!r}: production moved from version {event['from']} "
                   f"to version {event['to']}.")
    if event.get("forced"):
        message += f" Forced: {'; '.join(event['forced_because'])}. Reason: {event['reason']}"
    say(message)

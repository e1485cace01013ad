"""``keel models``: list, show, diff, roll back and promote the versions of a model in a store.

``list``, ``show`` and ``diff`` read every file of the versions they report and check it against
its sha256, so a damaged version is marked as such, never shown as healthy. Anything damaged that a
command needs (production.json, an event, the manifest shown) is one ``keel: error:`` line naming
it. ``rollback`` and ``promote`` move production by compare-and-swap and log the event.
"""

from __future__ import annotations

import json
from collections.abc import Callable
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


def mirror_options(func: Any) -> Any:
    """``--mlflow-uri`` and ``--model-registry-uri``: where production moves are mirrored."""
    func = click.option("--model-registry-uri", default="", metavar="URL",
                        help="Kubeflow Model Registry to mirror to [default: "
                             "KEEL_MODEL_REGISTRY_URI, else none].")(func)
    return click.option("--mlflow-uri", default="", metavar="URI",
                        help="MLflow tracking server to mirror to [default: "
                             "MLFLOW_TRACKING_URI, else none].")(func)


def mirror_moves(registry: Registry, mlflow_uri: str, model_registry_uri: str) -> dict[str, str]:
    """Move every configured mirror's production marker; say each failure in one line."""
    from keel.mirrors import configured_mirrors, mirror_production
    from keel.settings import checked

    mirrors = configured_mirrors(checked("mlflow_uri", mlflow_uri),
                                 checked("model_registry_uri", model_registry_uri))
    statuses = mirror_production(mirrors, registry)
    for name, status in statuses.items():
        if status != "ok":
            say(f"keel: mirror {name} {status}; run `keel models sync --to {name}` later",
                err=True)
    return statuses


def open_registry(store: str, model_name: str | None) -> Registry:
    """The registry of ``model_name``, or of the only model in the store.

    A name the store does not hold is an error listing those it holds (a typo must not read as
    a model with no versions).
    """
    from keel.errors import ParameterError, RegistryError
    from keel.registry import Registry, model_names
    from keel.storage import GCSStore, ObjectNotFound, open_store

    try:
        target = open_store(store)
    except ParameterError as exc:  # no Google Cloud credentials: say which store needed them
        raise ParameterError(f"The store {store} cannot be opened: {exc.args[0]}",
                             stage=exc.stage) from None

    def listed(read: Callable[[], list[str]]) -> list[str]:
        try:
            return read()
        except ObjectNotFound:
            if isinstance(target, GCSStore):  # listing a prefix fails only without its bucket
                raise ObjectNotFound(
                    f"The store {target.uri} cannot be read: its bucket {target.bucket_name!r} "
                    "does not exist (or is not visible to the credentials in use).") from None
            raise

    names = listed(lambda: model_names(target)) if model_name is None else []
    if model_name is None:
        if len(names) != 1:
            raise RegistryError(
                f"The store {target.uri} holds {len(names)} models "
                f"({', '.join(names) or 'none'}); name one with --model."
            )
        model_name = names[0]
    registry = Registry(target, model_name)
    if not listed(lambda: target.list(registry.root)):
        names = model_names(target)
        holds = f"holds {', '.join(names)}" if names else "holds no models"
        raise RegistryError(f"The store {target.uri} has no model {model_name!r}; it {holds}.")
    return registry


def damage_json(check: VersionCheck) -> dict[str, Any]:
    """The damage fields of a version, as ``list`` and ``show`` print them with --json."""
    return {"damaged": check.damaged, "damage": [d.to_dict() for d in check.damage]}


def production_origin(registry: Registry, production: int | None) -> dict[str, Any] | None:
    """How production got where it is, from production.json (written with the move's event).

    ``{action, reason, at, by}``: ``action`` is ``promote`` (a run's gate), ``rollback``,
    ``restore`` or ``override`` (``keel models promote``).
    """
    doc = registry.alias().doc if production is not None else None
    if doc is None:
        return None
    return {"action": doc.get("action"), "reason": doc.get("reason"),
            "at": doc.get("updated_at"), "by": doc.get("by") or None}


# Typed explicitly: keel.cli imports this group while this module imports keel.cli's helpers,
# and mypy cannot infer a decorated function's type across that cycle.
models: click.Group = click.Group(
    "models", help="List, show, compare, roll back and promote registered model versions.")


@models.command("list")
@store_option
@model_option
@json_option
@debug_option()
def list_versions(store: str, model_name: str | None, as_json: bool, debug: bool) -> None:
    """List the versions of a model, marking production and damaged versions.

    Every file of every version is read and checked against its sha256.
    """
    from keel.registry import OVERRIDE, repair_hint
    from keel.version_diff import decision_status

    registry = open_registry(store, model_name)
    production = registry.alias().version
    origin = production_origin(registry, production)
    rows: list[dict[str, Any]] = []
    for version in registry.versions():
        check = registry.verify(version)
        manifest = check.manifest
        decision = manifest.decision if manifest else None
        rows.append({
            "version": version,
            "production": version == production,
            # how production came to this version (action "override": `keel models promote`)
            "production_origin": origin if version == production else None,
            "registered_at": manifest.registered_at if manifest else None,
            "passed_gate": decision.passed if decision else None,
            "decision": decision_status(decision) if decision else None,
            "override": decision.override.to_dict() if decision and decision.override else None,
            "data_version": manifest.data.data_version if manifest else None,
            "metrics": manifest.metrics if manifest else {},
            # the metrics its gate judged (all of them for a gate without rules): what a person
            # scans a list for; --json and `models show` have every metric
            "gated": [m for m in (decision.thresholds if decision else {})
                      if manifest and m in manifest.metrics],
            **damage_json(check),
        })
    if as_json:
        for row in rows:
            del row["gated"]
        echo_json({"model": registry.model, "production_version": production, "versions": rows})
        return
    say(f"Model {registry.model!r} in {registry.store.uri}")
    for row in rows:
        mark = "*" if row["production"] else " "
        if row["registered_at"] is None:
            say(f"{mark} v{row['version']:<4} DAMAGED   manifest unreadable")
        else:
            shown = row.pop("gated") or list(row["metrics"])
            metrics = "  ".join(f"{k} {fmt(row['metrics'][k])}" for k in shown)
            state = "DAMAGED  " if row["damaged"] else ""
            say(f"{mark} v{row['version']:<4} {state}{row['registered_at']}  "
                f"{row['decision']:<8}  data {row['data_version'][:12]}  {metrics}")
        if row["override"] is not None:
            say(f"        override at run time: {row['override']['reason']}")
        if row["production_origin"] and row["production_origin"]["action"] == OVERRIDE:
            came = row["production_origin"]
            by = f" by {came['by']}" if came["by"] else ""
            say(f"        production by manual override (keel models promote) at {came['at']}"
                f"{by}: {came['reason']}")
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
@click.option("--deploy", "namespace", default="", metavar="NAMESPACE",
              help="Also serve the version from KServe in NAMESPACE (as keel deploy does): "
                   "production moves only once it is deployed.")
@click.option("--serving-store", default=None, metavar="URI",
              help="With --deploy: the store as KServe reads it [default: --store].")
@click.option("--kubeconfig", default=None, type=click.Path(dir_okay=False),
              help="With --deploy: kubeconfig file [default: in a pod its service account, "
                   "else KUBECONFIG or ~/.kube/config].")
@click.option("--context", default=None, help="With --deploy: kubeconfig context.")
@mirror_options
@json_option
@debug_option()
def rollback(store: str, model_name: str | None, to: int | None, reason: str, force: bool,
             namespace: str, serving_store: str | None, kubeconfig: str | None,
             context: str | None, mlflow_uri: str, model_registry_uri: str, as_json: bool,
             debug: bool) -> None:
    """Move production back to the previous production version (or to --to N).

    With production.json missing, --to N restores it. Configured mirrors follow the move. With
    --deploy NAMESPACE the rollback is a deployment: the version is smoke-tested and served
    from KServe first, and production moves only if that succeeded.
    """
    registry = open_registry(store, model_name)
    deployed: dict[str, Any] = {}

    def deploy_first(version: int) -> None:
        from keel.deploy import DeployFailed, deploy_stored
        from keel.images import image
        from keel.kube import KubeClient, load_config
        from keel.settings import checked

        result = deploy_stored(
            store, registry.model, version, namespace=checked("deploy_namespace", namespace),
            image=image("serve"), serving_store=serving_store,
            client=KubeClient(load_config(kubeconfig, context)),
            log=lambda line: say(f"keel: {line}", err=True))
        if not result.deployed:
            raise DeployFailed(f"Production of {registry.model!r} was not moved: version "
                               f"{version} was not deployed: {result.reason}")
        deployed.update(result.to_dict())

    event = registry.rollback(to=to, reason=reason, force=force,
                              before_move=deploy_first if namespace else None)
    mirrors = mirror_moves(registry, mlflow_uri, model_registry_uri)
    if as_json:
        echo_json({"model": registry.model, **event, "mirrors": mirrors,
                   **({"deployment": deployed} if deployed else {})})
        return
    if deployed:
        say(f"Model {registry.model!r} version {deployed['version']} is serving at "
            f"{deployed['url']} (InferenceService {deployed['namespace']}/{deployed['name']}).")
    if event["action"] == "restore":
        message = (f"Model {registry.model!r}: production.json restored, production is version "
                   f"{event['to']}.")
    else:
        message = (f"Model {registry.model!r}: production moved from version {event['from']} "
                   f"to version {event['to']}.")
    if event.get("forced"):
        message += f" Forced: {'; '.join(event['forced_because'])}. Reason: {event['reason']}"
    say(message)


# -- diff ----------------------------------------------------------------------------------------
LABEL_WIDTH = 22
VALUE_WIDTH = 38  # column A; a longer value keeps its start and end (JSON has it whole)


def clip(text: str, width: int = VALUE_WIDTH) -> str:
    """``text`` in at most ``width`` characters, its middle replaced by ``...`` if need be."""
    if len(text) <= width:
        return text
    keep = width - 3
    return text[: keep - keep // 3] + "..." + text[len(text) - keep // 3:]


def _names(added: list[str], removed: list[str]) -> str:
    return " ".join([f"+{n}" for n in added] + [f"-{n}" for n in removed])


def diff_rows(diff: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """The side-by-side table of ``keel models diff``: (label, A, B, note); A empty B: a heading."""
    from keel.version_diff import describe_split, searched, spelled, spelled_value

    rows: list[tuple[str, str, str, str]] = []

    def row(label: str, pair: dict[str, Any], show: Any = str, note: str = "") -> None:
        rows.append((label, show(pair["a"]), show(pair["b"]), note))

    def heading(label: str, note: str = "") -> None:
        rows.append((label, "", "", note))

    def count(names: list[str]) -> str:
        return f"{len(names)}"

    data = diff["data"]
    row("registered", {"a": diff["a"]["registered_at"], "b": diff["b"]["registered_at"]})
    heading("data")
    row("  data version", data["data_version"], lambda v: v[:12])
    row("  rows", data["rows"])
    row("  rows used", data["rows_used"])
    row("  source", data["source"])
    row("  format", data["format"])
    if data["columns_added"] or data["columns_removed"]:
        rows.append(("  columns", "", "", _names(data["columns_added"], data["columns_removed"])))
    row("target", diff["target"])
    row("task", diff["task"])
    split = diff["split"]
    rows.append(("split", describe_split(_rule(split["a"])), describe_split(_rule(split["b"])), ""))
    heading("training")
    row("  estimator", diff["estimator"])
    row("  class", diff["estimator_class"])
    row("  encoding", diff["encoding"])
    row("  params set", diff["hyperparameters"], spelled)
    row("  train rows", diff["train_rows"])
    row("  search", diff["search"], searched)
    if diff["estimator_class"]["changed"]:
        heading("  params", "different estimators: not compared one by one")
    for name, pair in diff["params_changed"].items():
        rows.append((f"  {name}", spelled_value(pair["a"]), spelled_value(pair["b"]), "changed"))
    if diff["estimator_class"]["changed"] is False and not diff["params_changed"]:
        heading("  params", "every effective parameter is the same")
    features = diff["features"]
    heading("features")
    row("  numeric", features["numeric"], count,
        _names(features["numeric_added"], features["numeric_removed"]))
    row("  categorical", features["categorical"], count,
        _names(features["categorical_added"], features["categorical_removed"]))
    row("  excluded", diff["excluded_columns"], lambda d: str(len(d)))
    heading("metrics", "B-A, each on its own test split")
    for name, metric in diff["metrics"].items():
        rows.append((f"  {name}", fmt(metric["a"]) if metric["a"] is not None else "-",
                     fmt(metric["b"]) if metric["b"] is not None else "-",
                     _change(metric["change"])))
    same = diff["same_rows"]
    if same is not None:
        heading("same rows", f"B-A, both on {same['rows']} test rows of version "
                             f"{same['scored_by']}'s gate")
        for name in same["b"]:
            old, new = same["a"].get(name), same["b"][name]
            rows.append((f"  {name}", fmt(old) if old is not None else "-", fmt(new),
                         _change(None if old is None else new - old)))
    decision = diff["decision"]
    row("decision", {"a": decision["a"]["status"], "b": decision["b"]["status"]})
    row("baseline", diff["baseline"], lambda v: "none" if v is None else f"version {v}")
    row("keel", diff["keel"])
    row("git commit", diff["git_commit"], lambda v: v[:12] or "unknown")
    row("python", diff["python"])
    row("scikit-learn", diff["scikit_learn"])
    heading("images")
    for stage, pair in diff["images"].items():
        row(f"  {stage}", pair, lambda v: "-" if v is None else v)
    row("run id", diff["run_id"])
    return rows


def _rule(doc: dict[str, Any] | None) -> Any:
    from keel.contracts import SplitRule

    return None if doc is None else SplitRule.from_dict(doc)


def _change(change: float | None) -> str:
    if change is None:
        return ""
    return "same" if change == 0 else f"{change:+.4f}"


def render_diff(diff: dict[str, Any], checks: tuple[VersionCheck, VersionCheck], store: str,
                production: int | None) -> None:
    """The human form of ``keel models diff``: what changed, then the table, then damage."""
    a, b = diff["a"]["version"], diff["b"]["version"]

    def name(version: int) -> str:
        return f"version {version}" + (" (production)" if version == production else "")

    say(f"Model {diff['model']!r} in {store}: {name(a)} {'and' if a == b else '->'} {name(b)}")
    say("What changed:")
    if diff["same_version"]:
        say(f"  nothing: both are version {a}")
    for change in diff["changes"]:
        say(f"  {change}")
    if not diff["changes"] and not diff["same_version"]:
        say("  nothing that the manifests record")
    say("")
    table = diff_rows(diff)
    width = max(len(text) for row in table for text in (row[1], row[2]))
    width = min(max(width, len(name(a)), len(name(b))), VALUE_WIDTH)
    say(f"{'':<{LABEL_WIDTH}}{clip(name(a)):<{width}}  {name(b)}")
    for label, old, new, note in table:
        line = f"{label:<{LABEL_WIDTH}}{clip(old, width):<{width}}  "
        if note:  # in its own column: B is kept to the width of A
            line = f"{line}{clip(new, width):<{width}}  {note}"
        else:
            line += new
        say(line.rstrip())
    if diff["same_rows"] is not None and diff["same_rows"]["caveat"]:
        say(f"note: {diff['same_rows']['caveat']}")
    for version, side in ((a, "a"), (b, "b")):
        summary = diff["decision"][side]
        say(f"decision of version {version}: {summary['status']}")
        for reason in summary["reasons"]:
            say(f"  {reason}")
        for note in summary["notes"]:
            say(f"  note: {note}")
        if a == b:
            break
    for check in checks[: 1 if a == b else 2]:
        if check.damaged:
            say(f"DAMAGED: version {check.version} of {diff['model']!r} does not match what was "
                "registered; it will not be loaded, promoted or rolled back to.")
            for damage in check.damage:
                say(f"  {damage.problem}")


@models.command("diff")
@click.argument("a", metavar="A")
@click.argument("b", metavar="B")
@store_option
@model_option
@json_option
@debug_option()
def diff(a: str, b: str, store: str, model_name: str | None, as_json: bool, debug: bool) -> None:
    """Compare two versions: what changed from A to B.

    A and B are version numbers, or 'production'. Data, split rule, estimator and parameters,
    features, metrics (B-A), decisions, baseline, code and images, side by side. Every file of
    both versions is checked against its sha256.
    """
    from keel.registry import DamagedVersion
    from keel.version_diff import diff_manifests

    registry = open_registry(store, model_name)
    production = registry.alias().version
    versions = [registry.resolve(a), registry.resolve(b)]
    checks = tuple(registry.verify(v) for v in versions)  # unknown: an error listing versions
    for check in checks:
        if check.manifest is None:  # the problem names the manifest and how to repair it
            raise DamagedVersion(check.damage[0].problem)
    first, second = (c.manifest for c in checks)
    assert first is not None and second is not None
    result = diff_manifests(first, second)
    for side, check in zip(("a", "b"), checks, strict=True):
        result[side].update(production=check.version == production, **damage_json(check))
    if as_json:
        echo_json({**result, "store": registry.store.uri, "production_version": production})
        return
    render_diff(result, (checks[0], checks[1]), registry.store.uri, production)


# -- promote -------------------------------------------------------------------------------------
@models.command("promote")
@store_option
@model_option
@click.option("--version", type=int, required=True, help="Version to put in production.")
@click.option("--reason", default=None,
              help="Why production is overridden (required), recorded in the event log.")
@mirror_options
@json_option
@debug_option()
def promote(store: str, model_name: str | None, version: int, reason: str | None,
            mlflow_uri: str, model_registry_uri: str, as_json: bool, debug: bool) -> None:
    """Put a version in production by hand, whatever its gate said: a recorded override.

    The event log records the action "override", the reason, who and when. Never moves
    production to a damaged version. Configured mirrors follow the move.
    """
    registry = open_registry(store, model_name)
    event = registry.promote_manually(version, reason)
    if event is not None:
        mirror_moves(registry, mlflow_uri, model_registry_uri)
    if event is None:
        if as_json:
            echo_json({"model": registry.model, "moved": False, "production_version": version})
            return
        say(f"Model {registry.model!r}: version {version} is already in production; nothing "
            "was moved.")
        return
    if as_json:
        echo_json({"model": registry.model, "moved": True, "production_version": event["to"],
                   **event})
        return
    moved = (f"from version {event['from']} to version {event['to']}" if event["from"] is not None
             else f"to version {event['to']}")
    message = f"Model {registry.model!r}: production moved {moved} by manual override."
    if event.get("forced"):
        message += f" Overrode: {'; '.join(event['forced_because'])}."
    say(f"{message} Reason: {event['reason']}")


# -- sync ----------------------------------------------------------------------------------------
@models.command("sync")
@store_option
@model_option
@click.option("--to", "to", type=click.Choice(["mlflow", "kubeflow", "all"]), default="all",
              show_default=True, help="Which mirror to bring up to date.")
@mirror_options
@debug_option()
def sync(store: str, model_name: str | None, to: str, mlflow_uri: str, model_registry_uri: str,
         debug: bool) -> None:
    """Bring a mirror up to date with the store: every version, and production.

    Idempotent: what the mirror already has is left as it is. A mirror that cannot be reached is
    an error here (exit 1): this is the command that repairs it.
    """
    from keel.mirrors import MirrorError, configured_mirrors
    from keel.mirrors import sync as sync_mirror
    from keel.settings import checked

    registry = open_registry(store, model_name)
    mirrors = [m for m in configured_mirrors(checked("mlflow_uri", mlflow_uri),
                                             checked("model_registry_uri", model_registry_uri))
               if to in ("all", m.name)]
    if not mirrors:
        raise MirrorError(
            f"No mirror to sync to: give --mlflow-uri or --model-registry-uri (or set "
            f"MLFLOW_TRACKING_URI or KEEL_MODEL_REGISTRY_URI). Got --to {to} and none set.")
    for mirror in mirrors:
        sync_mirror(mirror, registry, lambda line: say(f"  {line}"))
    say(f"Model {registry.model!r}: {', '.join(m.name for m in mirrors)} up to date with "
        f"{registry.store.uri}.")

"""Promote: move the production alias to the published version when the decision passed.

The version must also have answered its golden rows through Keel's model server (the deploy
stage's smoke test) and, when a deployment was asked for, be what KServe serves: a model that
cannot be served never becomes production, whatever its metrics.

The alias moves by compare-and-swap on the generation the evaluate stage read, so if another run
promoted in between, this run's version stays published but unpromoted and the run fails with a
RegistryConflict, instead of silently replacing a model it was never compared with. Before the
alias moves, the registry reads every file of the version and checks its sha256: a version changed
after publish (a replaced model.joblib) is refused, and production stays where it was. A rejected
candidate is a normal outcome: production stays where it is.
"""

from __future__ import annotations

from keel.contracts import Decision, Deployment, Promotion, Publication
from keel.errors import reports_errors
from keel.registry import Registry
from keel.settings import checked
from keel.storage import open_store


def reason_for(decision: Decision) -> str:
    """Why the alias moves, as the event log records it."""
    if decision.override is not None:
        return decision.override.reason
    if decision.baseline is None:
        return "first model"
    return f"passed the evaluation gate against version {decision.baseline.version}"


def servable(deployment: Deployment | None) -> str:
    """Why the version cannot be production as served; "" when it can (or was not checked)."""
    if deployment is None:
        return ""
    if not deployment.smoke_test.passed:
        return f"the serving smoke test failed: {deployment.smoke_test.reason}"
    if deployment.enabled and not deployment.deployed:
        return f"it was not deployed to KServe: {deployment.reason}"
    return ""


def promote(registry: Registry, version: int, decision: Decision, run_id: str = "",
            deployment: Deployment | None = None) -> Promotion:
    """Move production to ``version`` if ``decision`` passed and it serves; say what happened.

    A damaged version (``DamagedVersion``) or a missing production.json (``MissingAlias``) is an
    error that moves nothing.
    """
    registry.manifest(version)  # the version must be complete before anything points at it
    unservable = servable(deployment) if decision.passed else ""
    if unservable:
        reason = f"not promoted: {unservable}"
    elif decision.passed:
        expected = decision.baseline.generation if decision.baseline else 0
        reason = reason_for(decision)
        registry.move_alias(version, expected_generation=expected, action="promote",
                            reason=reason, run_id=run_id)
    else:
        failed = [f"{c.metric} {c.check}" for c in decision.checks if not c.passed]
        reason = "rejected by the evaluation gate: " + ", ".join(failed)
    return Promotion(model=registry.model, store=registry.store.uri, version=version,
                     promoted=decision.passed and not unservable,
                     production_version=registry.alias().version, reason=reason,
                     deployment=deployment)


@reports_errors
def run(publication_json: str, decision_path: str, run_id: str, mlflow_uri: str = "",
        model_registry_uri: str = "", deployment_path: str = "") -> Promotion:
    """The promote stage: reads the published version, the decision and what deploy found.

    ``deployment_path`` is the deploy stage's record (smoke test and deployment); empty: none.

    Then the version and where production is go to the configured mirrors; a mirror that fails
    is reported in the promotion's ``mirrors``, never an error of the stage.
    """
    from keel.mirrors import configured_mirrors, mirror_version

    published = Publication.from_json(publication_json, origin="the publish output",
                                      stage="promote")
    decision = Decision.read(decision_path, stage="promote")
    deployment = Deployment.read(deployment_path, stage="promote") if deployment_path else None
    mirrors = configured_mirrors(checked("mlflow_uri", mlflow_uri),
                                 checked("model_registry_uri", model_registry_uri))
    registry = Registry(open_store(published.store), published.model)
    promotion = promote(registry, published.version, decision, run_id, deployment)
    if not mirrors:
        return promotion
    return promotion.model_copy(
        update={"mirrors": mirror_version(mirrors, registry, published.version,
                                          promotion.production_version)})

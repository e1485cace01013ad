"""Promote: move the production alias to the published version when the decision passed.

The alias moves by compare-and-swap on the generation the evaluate stage read, so if another run
promoted in between, this run's version stays published but unpromoted and the run fails with a
RegistryConflict, instead of silently replacing a model it was never compared with. Before the
alias moves, the registry reads every file of the version and checks its sha256: a version changed
after publish (a replaced model.joblib) is refused, and production stays where it was. A rejected
candidate is a normal outcome: production stays where it is.
"""

from __future__ import annotations

from keel.contracts import Decision, Promotion, Publication
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


def promote(registry: Registry, version: int, decision: Decision, run_id: str = "") -> Promotion:
    """Move production to ``version`` if ``decision`` passed; say what happened either way.

    A damaged version (``DamagedVersion``) or a missing production.json (``MissingAlias``) is an
    error that moves nothing.
    """
    registry.manifest(version)  # the version must be complete before anything points at it
    if decision.passed:
        expected = decision.baseline.generation if decision.baseline else 0
        reason = reason_for(decision)
        registry.move_alias(version, expected_generation=expected, action="promote",
                            reason=reason, run_id=run_id)
    else:
        failed = [f"{c.metric} {c.check}" for c in decision.checks if not c.passed]
        reason = "rejected by the evaluation gate: " + ", ".join(failed)
    return Promotion(model=registry.model, store=registry.store.uri, version=version,
                     promoted=decision.passed, production_version=registry.alias().version,
                     reason=reason)


@reports_errors
def run(publication_json: str, decision_path: str, run_id: str, mlflow_uri: str = "",
        model_registry_uri: str = "") -> Promotion:
    """The promote stage: reads only the published version (model, store) and the decision.

    Then the version and where production is go to the configured mirrors; a mirror that fails
    is reported in the promotion's ``mirrors``, never an error of the stage.
    """
    from keel.mirrors import configured_mirrors, mirror_version

    published = Publication.from_json(publication_json, origin="the publish output",
                                      stage="promote")
    decision = Decision.read(decision_path, stage="promote")
    mirrors = configured_mirrors(checked("mlflow_uri", mlflow_uri),
                                 checked("model_registry_uri", model_registry_uri))
    registry = Registry(open_store(published.store), published.model)
    promotion = promote(registry, published.version, decision, run_id)
    if not mirrors:
        return promotion
    return promotion.model_copy(
        update={"mirrors": mirror_version(mirrors, registry, published.version,
                                          promotion.production_version)})

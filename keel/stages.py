"""The one list of pipeline stages, in run order.

The image list (``keel.images``, ``images/build.sh``), the pipeline's caching options, the
architecture tests and the compiled-spec tests are all derived from this table, so adding a stage
is one entry here plus its module, component, Dockerfile and README section.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Stage:
    """One stage: a module ``keel.<name>``, a component ``keel.components.<name>``, an image."""

    name: str
    does: str
    #: KFP may reuse an earlier result only when the stage's output depends on its inputs alone;
    #: reading a source URI or the registry, or writing the store, is never cached.
    cacheable: bool
    #: Stages that need no scikit-learn never import it: each stage is its own process.
    uses_scikit_learn: bool


STAGES: tuple[Stage, ...] = (
    Stage("ingest", "reads the source into one Parquet snapshot and its data version",
          cacheable=False, uses_scikit_learn=False),
    Stage("validate", "checks the table and its schema against production, reports",
          cacheable=False, uses_scikit_learn=False),  # reads the production version
    Stage("preprocess", "splits train/test rows stably across runs, writes the feature spec and "
          "plans the search", cacheable=True, uses_scikit_learn=True),
    Stage("tune", "fits one parameter set of a search and scores it on validation rows",
          cacheable=True, uses_scikit_learn=True),
    Stage("train", "fits the scikit-learn Pipeline (feature transformer and estimator) with the "
          "best parameters of the search",
          cacheable=True, uses_scikit_learn=True),
    Stage("evaluate", "scores the candidate and production on the test rows production never "
          "trained on, with intervals and slices, and applies the gate",
          cacheable=False, uses_scikit_learn=True),
    Stage("publish", "writes the immutable model version, its lineage manifest and model card",
          cacheable=False, uses_scikit_learn=False),
    Stage("deploy", "serves the published version on loopback and checks its golden rows; "
          "with a namespace, applies a KServe InferenceService for it, waits, and re-applies the "
          "previous version on failure", cacheable=False, uses_scikit_learn=True),
    Stage("promote", "moves the production alias by compare-and-swap when the decision, the "
          "smoke test and the deployment passed", cacheable=False, uses_scikit_learn=False),
)
STAGE_NAMES: tuple[str, ...] = tuple(stage.name for stage in STAGES)


def stage(name: str) -> Stage:
    """The stage called ``name``; ``ValueError`` naming the known ones otherwise."""
    for candidate in STAGES:
        if candidate.name == name:
            return candidate
    raise ValueError(f"Unknown stage {name!r}; stages are {', '.join(STAGE_NAMES)}.")

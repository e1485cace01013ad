from kfp import dsl

from keel.images import image
from keel.settings import document_settings


@dsl.component(base_image=image("promote"), install_kfp_package=False)
@document_settings
def promote(publication: str, decision: dsl.Input[dsl.Artifact],
            deployment: dsl.Input[dsl.Artifact], run_id: str, mlflow_uri: str = "",
            model_registry_uri: str = "") -> str:
    """Move the production alias to the published version if it passed the gate and serves.

    Args:
        publication: The publish output as JSON (model, store, version).
        decision: The decision record from evaluate.
        deployment: The deploy stage's record: the serving smoke test and the KServe
            deployment (when enabled); a version that failed either is not promoted.
        run_id: The KFP run id, recorded in the alias event.

    Returns:
        JSON promotion: whether production moved, and the production version now.
    """
    from keel.promote import run

    return run(publication, decision.path, run_id, mlflow_uri, model_registry_uri,
               deployment.path).to_json()

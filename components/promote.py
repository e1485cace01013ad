from kfp import dsl

from keel.images import image
from keel.settings import document_settings


@dsl.component(base_image=image("promote"), install_kfp_package=False)
@document_settings
def promote(publication: str, decision: dsl.Input[dsl.Artifact], run_id: str,
            mlflow_uri: str = "", model_registry_uri: str = "") -> str:
    """Move the production alias to the published version if the decision passed.

    Args:
        publication: The publish output as JSON (model, store, version).
        decision: The decision record from evaluate; promotion reads only this.
        run_id: The KFP run id, recorded in the alias event.

    Returns:
        JSON promotion: whether production moved, and the production version now.
    """
    from keel.promote import run

    return run(publication, decision.path, run_id, mlflow_uri, model_registry_uri).to_json()

from kfp import dsl

from keel.images import image
from keel.settings import document_settings


@dsl.component(base_image=image("publish"), install_kfp_package=False)
@document_settings
def publish(
    store: str,
    model_name: str,
    model: dsl.Input[dsl.Model],
    snapshot: dsl.Input[dsl.Dataset],
    schema: dsl.Input[dsl.Artifact],
    feature_spec: dsl.Input[dsl.Artifact],
    record: dsl.Input[dsl.Artifact],
    decision: dsl.Input[dsl.Artifact],
    ingest_info: str,
    run_id: str,
) -> str:
    """Write an immutable model version with its lineage manifest (never moves production).

    Args:
        model: The candidate model directory (model.joblib).
        snapshot: The ingested data, kept content-addressed in the store.
        schema: The schema document from validate.
        feature_spec: The feature spec from preprocess.
        record: The training record from train.
        decision: The decision record from evaluate.
        ingest_info: The ingest result as JSON (data version, rows, source).
        run_id: The KFP run id, recorded in the manifest.

    Returns:
        JSON publication: model, store and the new version number.
    """
    import os

    from keel.publish import run

    return run(store, model_name, os.path.join(model.path, "model.joblib"), snapshot.path,
               schema.path, feature_spec.path, record.path, decision.path, ingest_info,
               run_id).to_json()

from kfp import dsl

from keel.images import image


@dsl.component(base_image=image("register"), install_kfp_package=False)
def register(
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
    """Write an immutable model version with its lineage; move production only on a pass.

    Args:
        store: Registry root: a local folder or gs://bucket/prefix.
        model_name: Registry name of the model.
        model: The candidate model directory (model.joblib).
        snapshot: The ingested data, kept content-addressed in the store.
        schema: The schema document from validate.
        feature_spec: The feature spec from preprocess.
        record: The training record from train.
        decision: The decision record from evaluate.
        ingest_info: The ingest summary as JSON (data version, rows, source).
        run_id: The KFP run id, recorded in the manifest.

    Returns:
        JSON run summary: status, version, production_version, metrics, baseline, decision.
    """
    import os

    from keel.register import run

    return run(store, model_name, os.path.join(model.path, "model.joblib"), snapshot.path,
               schema.path, feature_spec.path, record.path, decision.path, ingest_info, run_id)

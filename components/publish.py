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
    statistics: dsl.Input[dsl.Artifact],
    checks: dsl.Input[dsl.Artifact],
    validation_report: dsl.Input[dsl.HTML],
    feature_spec: dsl.Input[dsl.Artifact],
    split: dsl.Input[dsl.Artifact],
    record: dsl.Input[dsl.Artifact],
    decision: dsl.Input[dsl.Artifact],
    report: dsl.Input[dsl.Artifact],
    ingest_info: str,
    run_id: str,
    model_card: dsl.Output[dsl.HTML],
) -> str:
    """Write an immutable model version with its lineage manifest and model card.

    Never moves production: promote does.

    Args:
        model: The candidate model directory (model.joblib).
        snapshot: The ingested data, kept content-addressed in the store.
        schema: The schema document from validate.
        statistics: The statistics from validate (the next run's reference).
        checks: The data checks from validate (anomalies, drift, leakage).
        validation_report: The validation report (HTML) from validate.
        feature_spec: The feature spec from preprocess.
        split: The split record from preprocess (its rule goes into the manifest).
        record: The training record from train.
        decision: The decision record from evaluate.
        report: The evaluation report from evaluate (the model card's plots).
        ingest_info: The ingest result as JSON (data version, rows, source).
        run_id: The KFP run id, recorded in the manifest.
        model_card: The model card (HTML), also stored in the version folder.

    Returns:
        JSON publication: model, store and the new version number.
    """
    import os

    from keel.publish import run

    return run(store, model_name, os.path.join(model.path, "model.joblib"), snapshot.path,
               schema.path, feature_spec.path, record.path, decision.path, ingest_info,
               run_id, split_path=split.path, report_path=report.path,
               card_out=model_card.path, statistics_path=statistics.path,
               checks_path=checks.path,
               validation_report_path=validation_report.path,
               golden_path=os.path.join(model.path, "golden_rows.json")).to_json()

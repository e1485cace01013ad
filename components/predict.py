from kfp import dsl

from keel.images import image
from keel.settings import document_settings


@dsl.component(base_image=image("predict"), install_kfp_package=False)
@document_settings
def predict(
    snapshot: dsl.Input[dsl.Dataset],
    store: str,
    model_name: str,
    version: int,
    ingest_info: str,
    predictions: dsl.Output[dsl.Dataset],
) -> str:
    """Score an ingested table with a registered model version (sha256-verified), streaming.

    Args:
        snapshot: The table to score, from ingest (one Parquet file).
        version: The model version to score with; 0 for the production version.
        ingest_info: The ingest result (JSON): its data version goes into every output row.
        predictions: Zstd Parquet: every input column, prediction, probability_<class> per class
            (classifiers), model_version and data_version (metadata: model_version,
            data_version, rows).

    Returns:
        JSON prediction result: model, version, data_version, rows, output, columns.
    """
    from keel.predict import run

    result = run(snapshot.path, store, model_name, version, ingest_info, predictions.path)
    predictions.metadata.update(model_version=result.version, data_version=result.data_version,
                                rows=result.rows)
    return result.to_json()

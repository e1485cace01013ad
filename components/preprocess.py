from kfp import dsl

from keel.images import image
from keel.settings import document_settings


@dsl.component(base_image=image("preprocess"), install_kfp_package=False)
@document_settings
def preprocess(
    dataset: dsl.Input[dsl.Dataset],
    schema: dsl.Input[dsl.Artifact],
    test_size: float,
    seed: int,
    encoding: str,
    train: dsl.Output[dsl.Dataset],
    test: dsl.Output[dsl.Dataset],
    feature_spec: dsl.Output[dsl.Artifact],
) -> str:
    """Seeded (stratified for classification) train/test split and the feature transformer spec.

    Args:
        dataset: The validated rows.
        schema: The schema document from validate.
        train: The training split.
        test: The held-out split.
        feature_spec: JSON spec of the feature transformer (columns and encoding).

    Returns:
        JSON split result: train_rows and test_rows.
    """
    from keel.preprocess import run

    return run(dataset.path, schema.path, test_size, seed, encoding, train.path, test.path,
               feature_spec.path).to_json()

from kfp import dsl

from keel.images import image
from keel.settings import document_settings


@dsl.component(base_image=image("preprocess"), install_kfp_package=False)
@document_settings
def preprocess(
    dataset: dsl.Input[dsl.Dataset],
    schema: dsl.Input[dsl.Artifact],
    test_size: float,
    min_test_rows: int,
    split_key: list,
    split_time_column: str,
    split_salt: str,
    encoding: str,
    estimator: str,
    params: str,
    grid: str,
    search_random: int,
    seed: int,
    train: dsl.Output[dsl.Dataset],
    test: dsl.Output[dsl.Dataset],
    feature_spec: dsl.Output[dsl.Artifact],
    split: dsl.Output[dsl.Artifact],
) -> list[str]:
    """Holdout stable across runs (by row hash, key or time), feature spec and search plan.

    Args:
        dataset: The validated rows.
        schema: The schema document from validate.
        train: The training split.
        test: The held-out split.
        feature_spec: JSON spec of the feature transformer (columns and encoding).
        split: JSON split record: rows on each side and the rule, kept with the version.

    Returns:
        The trials to fit, one JSON parameter set each (one item when there is no search).
    """
    from keel.preprocess import run

    return run(dataset.path, schema.path, test_size, encoding, train.path, test.path,
               feature_spec.path, split.path, min_test_rows=min_test_rows, split_key=split_key,
               split_time_column=split_time_column, split_salt=split_salt, estimator=estimator,
               params=params, grid=grid, search_random=search_random, seed=seed)

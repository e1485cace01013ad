from kfp import dsl

from keel.images import image
from keel.settings import document_settings


@dsl.component(base_image=image("tune"), install_kfp_package=False)
@document_settings
def tune(
    train: dsl.Input[dsl.Dataset],
    feature_spec: dsl.Input[dsl.Artifact],
    estimator: str,
    trial: str,
    seed: int,
    validation_size: float,
) -> str:
    """Fit one parameter set of a search on training rows and score it on validation rows.

    Args:
        train: The training split (the test rows are never given to a trial).
        feature_spec: The feature spec from preprocess.
        trial: One item of preprocess's plan: the parameter set to try.

    Returns:
        JSON trial: parameters and validation score ("" when there is no search).
    """
    from keel.tune import run

    return run(train.path, feature_spec.path, estimator, trial, seed, validation_size)

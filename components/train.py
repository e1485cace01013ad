from kfp import dsl

from keel.images import image


@dsl.component(base_image=image("train"), install_kfp_package=False)
def train(
    train: dsl.Input[dsl.Dataset],
    feature_spec: dsl.Input[dsl.Artifact],
    estimator: str,
    params: str,
    seed: int,
    model: dsl.Output[dsl.Model],
    record: dsl.Output[dsl.Artifact],
) -> dict:
    """Fit Pipeline(feature transformer, estimator) and save it as model.joblib.

    Args:
        train: The training split.
        feature_spec: The feature spec from preprocess.
        estimator: linear, random_forest or hist_gradient_boosting.
        params: JSON object of hyperparameters for the scikit-learn estimator.
        seed: random_state of the estimator, unless params sets it.
        model: Directory holding model.joblib, the fitted scikit-learn Pipeline.
        record: JSON training record (estimator, parameters, rows, fit time).

    Returns:
        The training record: estimator class, parameters, rows, fit time.
    """
    import os

    from keel.train import run

    os.makedirs(model.path, exist_ok=True)
    result = run(train.path, feature_spec.path, estimator, params, seed,
                 os.path.join(model.path, "model.joblib"), record.path)
    model.metadata.update(framework="scikit-learn", estimator=result["estimator_class"])
    return result

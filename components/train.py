from kfp import dsl

from keel.images import image
from keel.settings import document_settings


@dsl.component(base_image=image("train"), install_kfp_package=False)
@document_settings
def train(
    train: dsl.Input[dsl.Dataset],
    feature_spec: dsl.Input[dsl.Artifact],
    estimator: str,
    params: str,
    seed: int,
    trials: list[str],
    validation_size: float,
    search_random: int,
    model: dsl.Output[dsl.Model],
    record: dsl.Output[dsl.Artifact],
) -> str:
    """Pick the best trial of a search (if any), fit it on all training rows, save model.joblib.

    Args:
        train: The training split.
        feature_spec: The feature spec from preprocess.
        trials: The trials' results, collected from the search's ParallelFor.
        model: Directory holding model.joblib, the fitted scikit-learn Pipeline, and
            golden_rows.json, rows with the answers the model gave them (the smoke test's).
        record: JSON training record (estimator, parameters, search, rows, fit time).

    Returns:
        JSON training record: estimator class, parameters, search, rows, fit time.
    """
    import os

    from keel.train import run

    os.makedirs(model.path, exist_ok=True)
    result = run(train.path, feature_spec.path, estimator, params, seed,
                 os.path.join(model.path, "model.joblib"), record.path, trials=trials,
                 validation_size=validation_size, search_random=search_random,
                 golden_out=os.path.join(model.path, "golden_rows.json"))
    model.metadata.update(framework="scikit-learn", estimator=result.estimator_class)
    return result.to_json()

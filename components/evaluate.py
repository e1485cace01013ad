from kfp import dsl

from keel.images import image
from keel.settings import document_settings


@dsl.component(base_image=image("evaluate"), install_kfp_package=False)
@document_settings
def evaluate(
    model: dsl.Input[dsl.Model],
    test: dsl.Input[dsl.Dataset],
    feature_spec: dsl.Input[dsl.Artifact],
    schema: dsl.Input[dsl.Artifact],
    store: str,
    model_name: str,
    thresholds: dict,
    override_reason: str,
    allow_target_change: bool,
    metrics: dsl.Output[dsl.Metrics],
    classification_metrics: dsl.Output[dsl.ClassificationMetrics],
    decision: dsl.Output[dsl.Artifact],
) -> bool:
    """Score the candidate and the production model on the same test split; apply the gate.

    Args:
        model: The candidate model directory (model.joblib).
        test: The held-out split.
        feature_spec: The feature spec from preprocess.
        schema: The schema document from validate.
        metrics: The candidate's metrics on the test split.
        classification_metrics: Confusion matrix, and ROC curve for binary targets.
        decision: JSON decision record: every check, the baseline, any override.

    Returns:
        Whether the candidate passed the gate.
    """
    import os

    from keel.evaluate import run

    result = run(os.path.join(model.path, "model.joblib"), test.path, feature_spec.path,
                 schema.path, store, model_name, thresholds, override_reason, decision.path,
                 allow_target_change)
    for name, value in result.metrics.items():
        metrics.log_metric(name, value)
    curves = result.curves or {}
    if "labels" in curves:
        classification_metrics.log_confusion_matrix(curves["labels"], curves["confusion_matrix"])
    if "roc" in curves:
        classification_metrics.log_roc_curve(**curves["roc"])
    return result.decision.passed

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
    replace_default_rule: bool,
    change_bound: str,
    confidence: float,
    bootstrap_rounds: int,
    slices: list,
    min_slice_rows: int,
    min_test_rows: int,
    seed: int,
    metrics: dsl.Output[dsl.Metrics],
    classification_metrics: dsl.Output[dsl.ClassificationMetrics],
    decision: dsl.Output[dsl.Artifact],
    report: dsl.Output[dsl.Artifact],
) -> bool:
    """Score candidate and production on the test rows production never trained on; gate.

    Args:
        model: The candidate model directory (model.joblib).
        test: The held-out split.
        feature_spec: The feature spec from preprocess.
        schema: The schema document from validate.
        metrics: The candidate's metrics on the test split.
        classification_metrics: Confusion matrix, and ROC curve for binary targets.
        decision: JSON decision record: every check, the comparison with its intervals, slices.
        report: JSON evaluation report for the model card: curves, feature importance.

    Returns:
        Whether the candidate passed the gate.
    """
    import os

    from keel.evaluate import run

    result = run(
        os.path.join(model.path, "model.joblib"), test.path, feature_spec.path, schema.path,
        store, model_name, thresholds, override_reason, decision.path, report.path,
        allow_target_change=allow_target_change, replace_default_rule=replace_default_rule,
        change_bound=change_bound, confidence=confidence, bootstrap_rounds=bootstrap_rounds,
        slices=slices, min_slice_rows=min_slice_rows, min_test_rows=min_test_rows, seed=seed)
    for name, value in result.metrics.items():
        metrics.log_metric(name, value)
    if result.report.confusion_matrix is not None:
        classification_metrics.log_confusion_matrix(result.report.labels,
                                                    result.report.confusion_matrix)
    roc = result.report.curves.get("roc")
    if roc is not None:
        classification_metrics.log_roc_curve(roc.x, roc.y, roc.thresholds)
    return result.decision.passed

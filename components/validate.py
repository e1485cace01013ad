from kfp import dsl

from keel.images import image
from keel.settings import document_settings


@dsl.component(base_image=image("validate"), install_kfp_package=False)
@document_settings
def validate(
    snapshot: dsl.Input[dsl.Dataset],
    target: str,
    task: str,
    dataset: dsl.Output[dsl.Dataset],
    schema: dsl.Output[dsl.Artifact],
    report: dsl.Output[dsl.Markdown],
) -> str:
    """Infer the schema, drop rows with a missing target, exclude unusable columns, report.

    Args:
        snapshot: The ingested Parquet snapshot.
        dataset: The usable rows (rows with a missing target dropped).
        schema: JSON schema document: column kinds, roles, statistics, task, classes.
        report: The validation report, shown in the dashboard.

    Returns:
        The task that was decided (classification or regression).
    """
    from keel.validate import run

    return run(snapshot.path, target, task, dataset.path, schema.path, report.path).task

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
    statistics: dsl.Output[dsl.Artifact],
    checks: dsl.Output[dsl.Artifact],
    report: dsl.Output[dsl.Markdown],
    report_html: dsl.Output[dsl.HTML],
    test_size: float = 0.2,
    min_test_rows: int = 20,
    min_class_test_rows: int = 5,
    store: str = "",
    model_name: str = "",
    allow_target_change: bool = False,
    split_key: list = [],  # noqa: B006 - KFP reads defaults from the signature
    split_time_column: str = "",
    slices: list = [],  # noqa: B006
    validation_rules: str = "{}",
    severity: list = [],  # noqa: B006
    exclude_columns: list = [],  # noqa: B006
    seed: int = 0,
) -> str:
    """Infer the schema, compute statistics, check the data against production's, report.

    Args:
        snapshot: The ingested Parquet snapshot.
        dataset: The usable rows (rows with a missing target dropped).
        schema: JSON schema document: column kinds, roles, task, classes.
        statistics: JSON statistics of every column (stored with the version: the next run's
            reference).
        checks: JSON data checks: anomalies with their severity, drift, leakage scores.
        report: The validation report, shown in the dashboard.
        report_html: The validation report with histograms, shown in the dashboard.
        store: Registry root whose production version the table is checked against; empty: no
            such check (the component used on its own).
        model_name: Registry name of the model; empty: no check against production.

    Returns:
        The task that was decided (classification or regression).
    """
    from keel.validate import run

    return run(snapshot.path, target, task, dataset.path, schema.path, report.path,
               statistics_out=statistics.path, validation_out=checks.path,
               report_html_out=report_html.path, test_size=test_size,
               min_test_rows=min_test_rows, min_class_test_rows=min_class_test_rows, store=store,
               model_name=model_name, allow_target_change=allow_target_change,
               split_key=split_key, split_time_column=split_time_column, slices=slices,
               validation_rules=validation_rules, severity=severity,
               exclude_columns=exclude_columns, seed=seed).schema.task

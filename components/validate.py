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
    test_size: float = 0.2,
    min_test_rows: int = 20,
    min_class_test_rows: int = 5,
    store: str = "",
    model_name: str = "",
    allow_target_change: bool = False,
    split_key: list = [],  # noqa: B006 - KFP reads defaults from the signature
    split_time_column: str = "",
    slices: list = [],  # noqa: B006
) -> str:
    """Infer the schema, drop unusable rows and columns, check it against production, report.

    Args:
        snapshot: The ingested Parquet snapshot.
        dataset: The usable rows (rows with a missing target dropped).
        schema: JSON schema document: column kinds, roles, statistics, task, classes.
        report: The validation report, shown in the dashboard.
        store: Registry root whose production version the table is checked against; empty: no
            such check (the component used on its own).
        model_name: Registry name of the model; empty: no check against production.

    Returns:
        The task that was decided (classification or regression).
    """
    from keel.validate import run

    return run(snapshot.path, target, task, dataset.path, schema.path, report.path,
               test_size=test_size, min_test_rows=min_test_rows,
               min_class_test_rows=min_class_test_rows, store=store, model_name=model_name,
               allow_target_change=allow_target_change, split_key=split_key,
               split_time_column=split_time_column, slices=slices).task

from kfp import dsl

from keel.images import image
from keel.settings import document_settings


@dsl.component(base_image=image("ingest"), install_kfp_package=False)
@document_settings
def ingest(
    source: str,
    snapshot: dsl.Output[dsl.Dataset],
    source_format: str = "auto",
    source_encoding: str = "utf-8",
) -> str:
    """Read a table (a file: local path or gs://) into one Parquet snapshot and its data version.

    Args:
        snapshot: The table as one zstd Parquet file (metadata: data_version, rows).

    Returns:
        JSON ingest result: source, format, data_version (sha256 of the rows), rows, columns.
    """
    from keel.ingest import ingest as run

    result = run(source, snapshot.path, source_format, source_encoding)
    snapshot.metadata.update(data_version=result.data_version, rows=result.rows)
    return result.to_json()

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
    source_query: str = "",
    source_table: str = "",
    records_key: str = "",
) -> str:
    """Read a table (files, a SQL query, a JSON API) into one Parquet snapshot and its version.

    Args:
        snapshot: The table as one zstd Parquet file (metadata: data_version, rows).

    Returns:
        JSON ingest result: source, format, data_version (sha256 of the rows), rows, columns.
    """
    from keel.ingest import ingest as run
    from keel.sources import SourceOptions

    result = run(source, snapshot.path, source_format, source_encoding,
                 SourceOptions(query=source_query, table=source_table, records_key=records_key))
    snapshot.metadata.update(data_version=result.data_version, rows=result.rows)
    return result.to_json()

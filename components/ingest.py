from kfp import dsl

from keel.images import image


@dsl.component(base_image=image("ingest"), install_kfp_package=False)
def ingest(source: str, snapshot: dsl.Output[dsl.Dataset], source_format: str = "auto") -> str:
    """Read a CSV, Parquet or JSON Lines table (local path or gs://) into one Parquet snapshot.

    Args:
        source: Path or gs:// URI of the table.
        source_format: auto (from the file name), csv, parquet or jsonl.
        snapshot: The table as one zstd Parquet file (metadata: data_version, rows).

    Returns:
        JSON: source, format, data_version (sha256 of the rows), rows and columns.
    """
    from keel.ingest import ingest as run

    result = run(source, snapshot.path, source_format)
    snapshot.metadata.update(data_version=result.data_version, rows=result.rows)
    return result.to_json()

"""The batch prediction pipeline: ingest a table, score it with a registered model version.

Compile with ``keel compile`` (:func:`compile_pipeline`); the committed spec in
``pipelines/compiled/batch_prediction.yaml`` is what users upload to Kubeflow or pass to
``kfp run create``. Neither task is cached: both read fresh state (the source; the registry,
whose production alias moves).
"""

from pathlib import Path

from kfp import compiler, dsl

from keel.components.predict import predict
from keel.pipelines.training import ingest_step
from keel.settings import SETTINGS

COMPILED = Path(__file__).parent / "compiled" / "batch_prediction.yaml"
SUMMARY = ("Score a table with a registered model version (production by default): every row "
           "gets its prediction, class probabilities, model version and data version.")
#: Input descriptions of the parameters that are not run settings (or mean more here).
HELP = {
    "source": "Table to score: a CSV, Parquet or JSON Lines file or a folder of them (a local "
              "path or gs://), a SQLAlchemy URL (with source_query or source_table) or an "
              "https:// JSON API. It must have the model's feature columns; other columns are "
              "carried through to the output.",
    "model_name": "Registry name of the model to score with.",
    "version": "Model version to score with; 0 (the default) for the production version.",
}


def batch_prediction_pipeline(
    source: str,
    store: str,
    model_name: str,
    version: int = 0,
    source_format: str = "auto",
    source_encoding: str = "utf-8",
    source_query: str = "",
    source_table: str = "",
    records_key: str = "",
    source_secret: str = "keel-source",
) -> str:
    ingested = ingest_step(source, source_format, source_encoding, source_query, source_table,
                           records_key, source_secret)
    scored = predict(snapshot=ingested.outputs["snapshot"], store=store, model_name=model_name,
                     version=version, ingest_info=ingested.outputs["Output"])
    scored.set_caching_options(False)
    return scored.outputs["Output"]


def _docstring() -> str:
    import inspect

    lines = [SUMMARY, "", "Args:"]
    for name in inspect.signature(batch_prediction_pipeline).parameters:
        lines.append(f"    {name}: {HELP.get(name) or SETTINGS[name].help}")
    return "\n".join(lines) + "\n"


batch_prediction_pipeline.__doc__ = _docstring()
batch_prediction_pipeline = dsl.pipeline(name="keel-batch-prediction", description=SUMMARY)(
    batch_prediction_pipeline)


def compile_pipeline(path: str | Path = COMPILED) -> Path:
    """Write the pipeline spec (YAML) to ``path``."""
    compiler.Compiler().compile(batch_prediction_pipeline, str(path))
    return Path(path)


if __name__ == "__main__":
    print(compile_pipeline())

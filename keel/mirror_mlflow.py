"""The MLflow mirror: each Keel version as one MLflow run and one registered model version.

Keel's store stays the source of truth; MLflow gets copies so that people who already look at
MLflow see Keel's runs there. For a model ``M`` and version ``N``:

- the experiment ``M`` (created when missing) holds ONE run per version, found again by its tags
  ``keel.model`` = M and ``keel.version`` = N. It carries the estimator, hyperparameters
  (``param.<name>``), seed, split rule, thresholds and search as params; the candidate's metrics,
  the baseline's (``baseline.<metric>``), the interval ends (``interval_low.<metric>``,
  ``interval_high.<metric>``) and the row counts as metrics; the lineage as tags; and the decision
  record (``decision.json``) and model card (``model_card.html``) as artifacts. It ends FINISHED
  only once everything is logged, so a run left RUNNING by a failure is completed by the next
  record, never duplicated;
- the registered model ``M`` holds ONE model version per Keel version (tags ``keel.version``,
  ``keel.store_uri``), and its alias ``production`` follows Keel's production alias.

The model version is a pointer, not a copy of the model: its ``source`` is the version's folder
in the store when that is a remote URI (``gs://...``), which the MLflow server accepts as it is and
never reads; for a local store it is ``runs:/<run id>``, the run of the version, because the
server refuses a local path unless it lies in the run's own artifact folder (its
``_validate_source_run``) and a path on Keel's machine means nothing to the server anyway. Either
way ``keel.store_uri`` names the authoritative copy, the model is stored once, and a model version
can never drift from the file Keel verifies (sha256) before serving. The price: MLflow cannot load
the model (``models:/M@production``); load it with Keel (``keel models show``), or from the store.

Every call is idempotent, so ``keel models sync`` can replay a whole store. MLflow is imported
only when a mirror is made, and its HTTP client is kept to a few retries and a short timeout (the
``MLFLOW_HTTP_REQUEST_*`` variables, unless set by the user), so an unreachable server costs
seconds; any failure is a :class:`~keel.mirrors.MirrorError` naming MLflow, the URI and the step.
"""

from __future__ import annotations

import json
import os
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, ClassVar

from keel.contracts import JsonValue, Manifest
from keel.errors import one_line
from keel.mirrors import Mirror, MirrorError, VersionRecord

if TYPE_CHECKING:
    from mlflow.entities import Run
    from mlflow.entities.model_registry import ModelVersion
    from mlflow.tracking import MlflowClient

PRODUCTION = "production"  # the alias name, as in keel.registry
MODEL_TAG, VERSION_TAG, STORE_TAG = "keel.model", "keel.version", "keel.store_uri"
MAX_PARAM = 6000  # characters of a param value MLflow keeps
#: The client's HTTP settings while Keel calls MLflow (a value the user set wins): 2 retries with
#: a short backoff and a 10 s timeout, so a server that is down is reported in seconds.
HTTP_SETTINGS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0.2",
    # MLflow writes "View run ... at ..." to standard output: Keel's stdout is its summary.
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
}


class MLflowMirror(Mirror):
    """Keel's versions as MLflow runs and registered model versions on one tracking server."""

    name: ClassVar[str] = "mlflow"

    def __init__(self, tracking_uri: str):
        self.uri = tracking_uri
        with self._calls("load the MLflow client (pip install 'keel[mlflow]')"):
            from mlflow.tracking import MlflowClient

            self.client: MlflowClient = MlflowClient(tracking_uri=tracking_uri,
                                                     registry_uri=tracking_uri)

    # -- the Mirror interface ------------------------------------------------------------------
    def record_version(self, record: VersionRecord) -> None:
        """One FINISHED run and one model version for the version (found again, never doubled)."""
        manifest = record.manifest
        what = f"version {manifest.version} of {manifest.model!r}"
        with self._calls(f"find or create the experiment {manifest.model!r}"):
            experiment_id = self._experiment(manifest.model)
        with self._calls(f"find the run of {what}"):
            run = self._find_run(experiment_id, manifest)
        if run is None:
            with self._calls(f"create the run of {what}"):
                run = self.client.create_run(experiment_id, tags=run_tags(record),
                                             run_name=f"{manifest.model}-v{manifest.version}")
        run_id = run.info.run_id
        if run.info.status != "FINISHED":  # new, or left unfinished by a failed record
            with self._calls(f"log the params, metrics and tags of {what} (run {run_id})"):
                self._log(run_id, record)
            with self._calls(f"upload the artifacts of {what} (run {run_id})"):
                self.client.log_text(run_id, manifest.decision.model_dump_json(indent=2) + "\n",
                                     "decision.json")
                if record.model_card is not None:
                    self.client.log_text(run_id, record.model_card, "model_card.html")
            with self._calls(f"finish the run of {what} (run {run_id})"):
                self.client.set_terminated(run_id, "FINISHED")
        with self._calls(f"register {what} as a model version"):
            self._registered_model(manifest.model)
            if self._model_version(manifest.model, manifest.version) is None:
                self.client.create_model_version(
                    manifest.model, model_source(record, run_id), run_id=run_id,
                    tags={VERSION_TAG: str(manifest.version), STORE_TAG: record.version_uri},
                    description=f"Keel version {manifest.version} of {manifest.model!r}: "
                                f"{record.version_uri}",
                    await_creation_for=0)
        if record.production:
            self.set_production(manifest.model, manifest.version)

    def set_production(self, model: str, version: int | None) -> None:
        """Point the alias ``production`` at the model version of Keel version ``version``."""
        what = (f"move the alias {PRODUCTION!r} of {model!r} to version {version}"
                if version is not None else f"remove the alias {PRODUCTION!r} of {model!r}")
        with self._calls(what):
            from mlflow.exceptions import MlflowException

            try:
                aliases = dict(self.client.get_registered_model(model).aliases)
            except MlflowException as exc:
                if exc.error_code != "RESOURCE_DOES_NOT_EXIST" or version is not None:
                    raise
                return  # no registered model: no alias to remove
            if version is None:
                if PRODUCTION in aliases:
                    self.client.delete_registered_model_alias(model, PRODUCTION)
                return
            found = self._model_version(model, version)
            if found is None:
                raise MirrorError(f"MLflow at {self.uri}: could not {what}: it has no model "
                                  f"version of Keel version {version} of {model!r}; record the "
                                  "version first (`keel models sync`).")
            if str(aliases.get(PRODUCTION)) != str(found.version):
                self.client.set_registered_model_alias(model, PRODUCTION, found.version)

    # -- steps -----------------------------------------------------------------------------------
    def _experiment(self, model: str) -> str:
        from mlflow.exceptions import MlflowException

        found = self.client.get_experiment_by_name(model)
        if found is None:
            try:
                return str(self.client.create_experiment(model, tags={MODEL_TAG: model}))
            except MlflowException as exc:  # made by a concurrent record
                if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
                found = self.client.get_experiment_by_name(model)
                if found is None:
                    raise
        if found.lifecycle_stage == "deleted":
            self.client.restore_experiment(found.experiment_id)
        return str(found.experiment_id)

    def _find_run(self, experiment_id: str, manifest: Manifest) -> Run | None:
        runs = self.client.search_runs(
            [experiment_id],
            filter_string=(f"tags.`{MODEL_TAG}` = '{manifest.model}' and "
                           f"tags.`{VERSION_TAG}` = '{manifest.version}'"),
            order_by=["attributes.start_time ASC"], max_results=10)
        return runs[0] if runs else None

    def _log(self, run_id: str, record: VersionRecord) -> None:
        from mlflow.entities import Metric, Param, RunTag

        stamp = registered_millis(record.manifest)  # the same points when logged again
        self.client.log_batch(
            run_id,
            metrics=[Metric(key, value, stamp, 0) for key, value in run_metrics(record.manifest)
                     .items()],
            params=[Param(key, value) for key, value in run_params(record.manifest).items()],
            tags=[RunTag(key, value) for key, value in run_tags(record).items()])

    def _registered_model(self, model: str) -> None:
        from mlflow.exceptions import MlflowException

        try:
            self.client.get_registered_model(model)
            return
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
        try:
            self.client.create_registered_model(
                model, tags={MODEL_TAG: model},
                description="Mirrored from Keel: the store is the source of truth.")
        except MlflowException as exc:  # made by a concurrent record
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise

    def _model_version(self, model: str, version: int) -> ModelVersion | None:
        found = self.client.search_model_versions(
            f"name = '{model}' and tags.`{VERSION_TAG}` = '{version}'")
        return min(found, key=lambda mv: int(mv.version)) if found else None

    @contextmanager
    def _calls(self, what: str) -> Iterator[None]:
        """Short HTTP retries and timeout for MLflow's client; any failure as a MirrorError."""
        saved = {name: os.environ.get(name) for name in HTTP_SETTINGS}
        for name, value in HTTP_SETTINGS.items():
            os.environ.setdefault(name, value)
        try:
            yield
        except MirrorError:
            raise
        except Exception as exc:
            detail = one_line(f"{type(exc).__name__}: {exc}", 200)
            raise MirrorError(f"MLflow at {self.uri}: could not {what}: {detail}") from exc
        finally:
            for name, previous in saved.items():
                if previous is None:
                    os.environ.pop(name, None)


# -- what is recorded ------------------------------------------------------------------------------
def run_params(manifest: Manifest) -> dict[str, str]:
    """The run's params: how the version was trained, split, searched and gated."""
    training, split = manifest.training, manifest.split
    params: dict[str, str] = {
        "estimator": training.estimator,
        "estimator_class": training.estimator_class,
        "seed": str(training.seed),
        "thresholds": json.dumps(manifest.decision.thresholds, sort_keys=True),
    }
    params.update({f"param.{name}": as_text(value)
                   for name, value in manifest.hyperparameters.items()})
    if split is not None:
        params.update({"test_size": str(split.test_size), "split.method": split.method,
                       "split.columns": json.dumps(split.columns), "split.salt": split.salt})
        if split.cutoff is not None:
            params["split.cutoff"] = split.cutoff
    if training.search is not None:
        params.update({"search.method": training.search.method,
                       "search.metric": training.search.metric,
                       "search.candidates": str(len(training.search.candidates))})
    return {key: value[:MAX_PARAM] for key, value in params.items()}


def run_metrics(manifest: Manifest) -> dict[str, float]:
    """The run's metrics: the candidate's, the baseline's, the interval ends and the row counts."""
    decision = manifest.decision
    metrics = dict(manifest.metrics)
    baseline = manifest.baseline.metrics if manifest.baseline is not None else None
    metrics.update({f"baseline.{key}": value for key, value in (baseline or {}).items()})
    if decision.comparison is not None:
        for key, interval in decision.comparison.intervals.items():
            metrics[f"interval_low.{key}"] = interval.low
            metrics[f"interval_high.{key}"] = interval.high
        metrics["comparable_rows"] = float(decision.comparison.rows)
        metrics["excluded_rows"] = float(decision.comparison.excluded)
    metrics["test_rows"] = float(decision.test_rows)
    metrics["train_rows"] = float(manifest.training.train_rows)
    return metrics


def run_tags(record: VersionRecord) -> dict[str, str]:
    """The run's tags: which version, data, code and pipeline run, and what the gate decided."""
    manifest = record.manifest
    decision = manifest.decision
    verdict = ("override" if decision.override is not None
               else "passed" if decision.passed else "rejected")
    return {
        MODEL_TAG: manifest.model,
        VERSION_TAG: str(manifest.version),
        STORE_TAG: record.version_uri,
        "keel.model_uri": record.model_uri,
        "keel.decision": verdict,
        "keel.git_commit": manifest.environment.git_commit,
        "keel.package_version": manifest.environment.keel,
        "keel.data_version": manifest.data.data_version,
        "keel.registered_at": manifest.registered_at,
        "kfp.run_id": manifest.run_id,
    }


def model_source(record: VersionRecord, run_id: str) -> str:
    """The model version's ``source``: the store's folder if remote, else the run (see above)."""
    scheme = urllib.parse.urlparse(record.version_uri).scheme
    if len(scheme) > 1 and scheme != "file":  # gs://, s3://... (not C:\ nor a local path)
        return record.version_uri
    return f"runs:/{run_id}"


def as_text(value: JsonValue) -> str:
    """A param value: text as it is, anything else as JSON (``3``, ``true``, ``null``)."""
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def registered_millis(manifest: Manifest) -> int:
    """When the version was registered, in ms since the epoch (the metrics' timestamp)."""
    from datetime import datetime

    try:
        return int(datetime.fromisoformat(manifest.registered_at).timestamp() * 1000)
    except ValueError:  # not ISO 8601: any fixed point will do
        return 0

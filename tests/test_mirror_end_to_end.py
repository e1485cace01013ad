"""Mirrors end to end through `keel run` and `keel models`, with a real MLflow server.

After two runs and a rollback, MLflow shows two runs with parameters and metrics, two model
versions and the `production` alias on the version Keel's store has in production. With the
server stopped a run still promotes in the store and reports the mirror failure; a later
`keel models sync` repairs the mirror.
"""

from __future__ import annotations

import pytest

from keel.registry import Registry
from keel.storage import open_store

try:
    from mlflow_server import MLflowServer
    from test_cli import SAMPLE, keel, keel_json
    from test_mirror_mlflow import metrics, model_versions, params, production, run_of, runs
except ImportError:  # tests/ imported as a package
    from tests.mlflow_server import MLflowServer
    from tests.test_cli import SAMPLE, keel, keel_json
    from tests.test_mirror_mlflow import (
        metrics,
        model_versions,
        params,
        production,
        run_of,
        runs,
    )

pytestmark = pytest.mark.e2e


def test_runs_versions_and_the_alias_reach_mlflow_and_a_sync_repairs_an_outage(tmp_path):
    (tmp_path / "mlflow").mkdir()
    server = MLflowServer(tmp_path / "mlflow")
    store, work = tmp_path / "store", tmp_path / "work"

    def run(*args: str) -> dict:
        return keel_json("run", "--source", str(SAMPLE), "--target", "Status", "--model",
                         "credit", "--store", str(store), "--mlflow-uri", server.url, *args,
                         work_dir=work)

    try:
        server.start()
        first = run()
        second = run("--seed", "1")
        assert first["mirrors"] == second["mirrors"] == {"mlflow": "ok"}
        assert second["production_version"] == 2
        rolled = keel_json("models", "rollback", "--store", str(store), "--model", "credit",
                           "--reason", "test", "--mlflow-uri", server.url, work_dir=work)
        assert rolled["to"] == 1 and rolled["mirrors"] == {"mlflow": "ok"}

        assert len(runs(server, "credit")) == 2
        for version in (1, 2):
            found = run_of(server, "credit", version)
            assert params(found)["estimator"] == "hist_gradient_boosting"
            assert 0.5 < metrics(found)["roc_auc"] <= 1.0
        assert "baseline.roc_auc" in metrics(run_of(server, "credit", 2))
        assert [int(v["version"]) for v in model_versions(server, "credit")] == [1, 2]
        assert production(server, "credit") == "1"  # where the store's alias is

        server.stop()
        third = keel("run", "--source", str(SAMPLE), "--target", "Status", "--model", "credit",
                     "--store", str(store), "--mlflow-uri", server.url, work_dir=work)
        assert third.returncode == 0, third.stderr  # the run finishes and promotes ...
        assert Registry(open_store(str(store)), "credit").alias().version == 3
        line = next(li for li in third.stdout.splitlines() if "mirror" in li)
        assert "mlflow: failed" in line and "keel models sync --to mlflow" in line  # ... says so
        failed_sync = keel("models", "sync", "--to", "mlflow", "--store", str(store), "--model",
                           "credit", "--mlflow-uri", server.url, work_dir=work)
        assert failed_sync.returncode == 1 and "MLflow at" in failed_sync.stderr

        server.start()
        synced = keel("models", "sync", "--to", "mlflow", "--store", str(store), "--model",
                      "credit", "--mlflow-uri", server.url, work_dir=work)
        assert synced.returncode == 0, synced.stderr
        assert "production is version 3" in synced.stdout
        assert len(runs(server, "credit")) == 3
        assert [int(v["version"]) for v in model_versions(server, "credit")] == [1, 2, 3]
        assert production(server, "credit") == "3"
        again = keel("models", "sync", "--store", str(store), "--model", "credit",
                     "--mlflow-uri", server.url, work_dir=work)
        assert again.returncode == 0 and len(runs(server, "credit")) == 3  # idempotent
    finally:
        server.close()

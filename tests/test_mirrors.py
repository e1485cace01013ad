"""How mirrors are wired: recorded after promote, moved after rollback, never costing Keel's record.

The mirrors here are small in-process ``Mirror`` subclasses (Keel's own interface, not an external
service): the real MLflow server and the Model Registry's HTTP boundary are exercised in
test_mirror_mlflow.py, test_mirror_kubeflow.py and test_mirror_end_to_end.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from keel import mirrors, promote
from keel.cli import main
from keel.contracts import Publication
from keel.errors import ParameterError
from keel.mirrors import Mirror, MirrorError, VersionRecord, mirror_safely, sync
from keel.registry import MODEL_FILE, Registry
from keel.settings import check_settings
from keel.storage import LocalStore

try:
    from factories import lineage
except ImportError:  # tests/ imported as a package
    from tests.factories import lineage

MODEL = "credit"


class Recording(Mirror):
    """Keeps what it was told, like a mirror that works; ``down`` makes every call fail."""

    name = "recording"

    def __init__(self, down: bool = False):
        self.versions: dict[int, VersionRecord] = {}
        self.production: int | None = None
        self.down = down

    def record_version(self, record: VersionRecord) -> None:
        if self.down:
            raise MirrorError("recording mirror at http://127.0.0.1:9 is unreachable")
        self.versions[record.manifest.version] = record

    def set_production(self, model: str, version: int | None) -> None:
        if self.down:
            raise ConnectionError("connection refused")
        self.production = version


class Other(Recording):
    name = "other"


@pytest.fixture
def registry(tmp_path) -> Registry:
    registry = Registry(LocalStore(tmp_path / "store"), MODEL)
    (tmp_path / "model.joblib").write_bytes(b"a model")
    (tmp_path / "model_card.html").write_text("<html>card</html>")
    for _ in range(2):
        registry.publish({MODEL_FILE: tmp_path / "model.joblib",
                          "model_card.html": tmp_path / "model_card.html"}, lineage())
    return registry


@pytest.fixture
def decision_file(tmp_path) -> Path:
    path = tmp_path / "decision.json"
    lineage().decision.write(path)  # a passed first-run decision
    return path


def use(monkeypatch, *given: Mirror) -> None:
    monkeypatch.setattr(mirrors, "configured_mirrors", lambda *a: list(given))


def test_a_failing_mirror_is_one_line_of_status_never_an_error():
    status = mirror_safely(Recording(down=True), lambda m: m.record_version(None))
    assert status == ("failed: MirrorError: recording mirror at http://127.0.0.1:9 is "
                      "unreachable")
    assert mirror_safely(Recording(), lambda m: None) == "ok"


def test_promote_records_the_version_and_production_in_every_mirror(registry, decision_file,
                                                                    monkeypatch):
    working, broken = Recording(), Other(down=True)
    use(monkeypatch, working, broken)
    publication = Publication(model=MODEL, store=registry.store.uri, version=2)

    promotion = promote.run(publication.to_json(), str(decision_file), "run-7")

    assert promotion.promoted and registry.alias().version == 2  # Keel's record is whole
    assert promotion.mirrors == {
        "recording": "ok",
        "other": "failed: MirrorError: recording mirror at http://127.0.0.1:9 is unreachable"}
    record = working.versions[2]
    assert record.production and working.production == 2
    assert record.model_card == "<html>card</html>"
    assert record.version_uri.endswith("registry/credit/versions/2")
    assert record.model_uri.endswith("registry/credit/versions/2/model.joblib")
    assert record.manifest == registry.manifest(2)


def test_a_mirror_down_during_promote_is_reported_and_production_still_moves(
        registry, decision_file, monkeypatch):
    use(monkeypatch, Recording(down=True))
    publication = Publication(model=MODEL, store=registry.store.uri, version=1)
    promotion = promote.run(publication.to_json(), str(decision_file), "run-1")
    assert registry.alias().version == 1 and promotion.production_version == 1
    assert promotion.mirrors["recording"].startswith("failed: MirrorError: recording mirror")


def test_sync_replays_every_version_and_production_idempotently(registry):
    registry.move_alias(1, expected_generation=0, action="promote", reason="test")
    mirror, lines = Recording(), []
    sync(mirror, registry, lines.append)
    sync(mirror, registry, lines.append)
    assert sorted(mirror.versions) == [1, 2] and mirror.production == 1
    assert [r.production for r in (mirror.versions[1], mirror.versions[2])] == [True, False]
    assert lines[:3] == ["recording: version 1 recorded", "recording: version 2 recorded",
                         "recording: production is version 1"]
    with pytest.raises(MirrorError):
        sync(Recording(down=True), registry, lines.append)


def test_rollback_and_manual_promote_move_the_mirrors_too(registry, monkeypatch):
    for version in (1, 2):
        registry.move_alias(version, expected_generation=registry.alias().generation,
                            action="promote", reason="test")
    mirror = Recording()
    use(monkeypatch, mirror)
    runner = CliRunner()
    result = runner.invoke(main, ["models", "rollback", "--store", registry.store.uri, "--json"])
    assert result.exit_code == 0, result.output
    assert mirror.production == 1
    assert json.loads(result.stdout.strip().splitlines()[-1])["mirrors"] == {"recording": "ok"}
    result = runner.invoke(main, ["models", "promote", "--store", registry.store.uri,
                                  "--version", "2", "--reason", "by hand"])
    assert result.exit_code == 0, result.output
    assert mirror.production == 2

    use(monkeypatch, Recording(down=True))
    result = runner.invoke(main, ["models", "rollback", "--store", registry.store.uri])
    assert result.exit_code == 0, result.output  # the store moved: that is what counts
    assert registry.alias().version == 1
    assert "keel: mirror recording failed: ConnectionError: connection refused; run `keel " \
           "models sync --to recording` later" in result.stderr


def test_sync_without_a_mirror_is_an_error_naming_what_to_give(registry, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("KEEL_MODEL_REGISTRY_URI", raising=False)
    result = CliRunner().invoke(main, ["models", "sync", "--store", registry.store.uri])
    assert result.exit_code == 1
    assert "No mirror to sync to: give --mlflow-uri or --model-registry-uri" in result.stderr


@pytest.mark.parametrize(("name", "value"), [
    ("mlflow_uri", "ftp://host"), ("mlflow_uri", " http://x"), ("mlflow_uri", 3),
    ("model_registry_uri", "model-registry:8080"), ("model_registry_uri", "http:// x"),
])
def test_mirror_locations_are_checked_before_any_stage(name, value):
    with pytest.raises(ParameterError, match=f"'{name}' parameter of promote"):
        check_settings({"source": "data/credit.csv", "target": "Status", "store": "/tmp/s",
                        name: value})
    good = {"mlflow_uri": "http://127.0.0.1:5000", "model_registry_uri": "https://mr:8443"}
    assert check_settings({"source": "data/credit.csv", "target": "Status", "store": "/tmp/s",
                           **good})["mlflow_uri"] == "http://127.0.0.1:5000"


def test_a_mirror_that_cannot_be_set_up_is_reported_like_any_failure(monkeypatch):
    def missing(uri):
        raise MirrorError(f"MLflow at {uri}: could not load the MLflow client")

    monkeypatch.setattr(mirrors, "_mlflow", missing)
    monkeypatch.setenv("KEEL_MODEL_REGISTRY_URI", "ftp://nowhere")
    found = mirrors.configured_mirrors("http://127.0.0.1:5000")
    assert [m.name for m in found] == ["mlflow", "kubeflow"]
    assert mirror_safely(found[0], lambda m: m.set_production("credit", 1)) == (
        "failed: MirrorError: MLflow at http://127.0.0.1:5000: could not load the MLflow client")
    assert mirror_safely(found[1], lambda m: m.set_production("credit", 1)).startswith(
        "failed: MirrorError:")

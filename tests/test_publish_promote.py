"""publish and promote, the two stages between "this version exists" and "this is production".

The artifacts come from the real stages (ingest ... evaluate, called without KFP) on a small table,
so what publish and promote read is exactly what the pipeline hands them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from keel import promote, publish
from keel.contracts import ContractError, Decision, Publication, SplitResult
from keel.errors import RegistryConflict
from keel.registry import Registry
from keel.stages import STAGE_NAMES
from keel.storage import open_store

try:
    from factories import delete, overwrite, publish_stages, state
    from factories import run_stages as stages_into
except ImportError:  # tests/ imported as a package
    from tests.factories import delete, overwrite, publish_stages, state
    from tests.factories import run_stages as stages_into

MODEL = "churn"


def run_stages(folder: Path, store: str, thresholds: dict | None = None) -> dict[str, str]:
    """ingest -> validate -> preprocess -> train -> evaluate; the artifact paths by name."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"age": rng.integers(18, 80, 300).astype(float),
                          "city": rng.choice(["a", "b", "c"], 300)})
    frame["churn"] = np.where(frame.age + rng.normal(0, 10, 300) > 50, "yes", "no")
    frame.to_csv(folder / "table.csv", index=False)
    return stages_into(folder, folder / "table.csv", store, MODEL, "churn",
                       thresholds=thresholds, bootstrap_rounds=100)


def publish_from(p: dict[str, str], store: str, run_id: str = "run-1") -> Publication:
    return publish_stages(p, store, MODEL, run_id)


def test_publish_writes_a_version_and_never_moves_production(store_uri, tmp_path):
    p = run_stages(tmp_path / "a", store_uri)
    published = publish_from(p, store_uri)
    registry = Registry(open_store(store_uri), MODEL)
    assert (published.model, published.version) == (MODEL, 1)
    assert published.store == registry.store.uri
    assert registry.versions() == [1]
    assert registry.alias().version is None and registry.events() == []

    manifest = registry.manifest(1)
    assert manifest.decision == Decision.read(p["decision.json"])
    assert manifest.data.rows == 300 and manifest.data.rows_used == 300
    assert manifest.data.snapshot.endswith(f"data/{manifest.data.data_version}/snapshot.parquet")
    assert registry.store.exists(f"data/{manifest.data.data_version}/snapshot.parquet")
    assert set(manifest.environment.images) == set(STAGE_NAMES)
    assert manifest.environment.git_commit and manifest.environment.scikit_learn
    assert manifest.training.estimator == "linear" and manifest.run_id == "run-1"
    assert set(manifest.files) == {"model.joblib", "schema.json", "feature_spec.json",
                                   "model_card.html", "statistics.json",
                                   "validation_report.html", "golden_rows.json"}
    assert manifest.validation is not None and manifest.validation.reference_version is None
    assert manifest.split == SplitResult.read(p["split.json"]).rule
    assert manifest.split.method == "hash" and manifest.split.columns == ["age", "churn", "city"]
    card = registry.store.read_bytes("registry/churn/versions/1/model_card.html").decode()
    assert card == Path(p["model_card.html"]).read_text() and "churn" in card


def test_a_passed_decision_moves_the_alias(store_uri, tmp_path):
    p = run_stages(tmp_path / "a", store_uri)
    promotion = promote.run(publish_from(p, store_uri).to_json(), p["decision.json"], "run-1")
    registry = Registry(open_store(store_uri), MODEL)
    assert promotion.promoted and promotion.production_version == 1
    assert promotion.reason == "first model"
    assert registry.alias().version == 1
    [event] = registry.events()
    assert (event["action"], event["to"], event["run_id"]) == ("promote", 1, "run-1")

    # The second run is compared with version 1 and (same data, same seed) is no worse.
    q = run_stages(tmp_path / "b", store_uri)
    second = promote.run(publish_from(q, store_uri, "run-2").to_json(), q["decision.json"], "r2")
    assert second.promoted and second.production_version == 2
    assert second.reason == "passed the evaluation gate against version 1"


def test_a_failed_decision_leaves_production_where_it_was(store_uri, tmp_path):
    p = run_stages(tmp_path / "a", store_uri)
    promote.run(publish_from(p, store_uri).to_json(), p["decision.json"], "run-1")
    q = run_stages(tmp_path / "b", store_uri, thresholds={"roc_auc": {"min_absolute_change": 0.5}})
    assert not Decision.read(q["decision.json"]).passed
    promotion = promote.run(publish_from(q, store_uri, "run-2").to_json(), q["decision.json"],
                            "run-2")
    registry = Registry(open_store(store_uri), MODEL)
    assert not promotion.promoted
    assert (promotion.version, promotion.production_version) == (2, 1)
    assert "roc_auc absolute_change" in promotion.reason
    assert registry.versions() == [1, 2] and registry.alias().version == 1
    assert len(registry.events()) == 1


def test_a_conflict_leaves_the_published_version_unpromoted(store_uri, tmp_path):
    first = run_stages(tmp_path / "a", store_uri)
    promote.run(publish_from(first, store_uri).to_json(), first["decision.json"], "run-1")
    # This run evaluates against production version 1 ...
    late = run_stages(tmp_path / "b", store_uri)
    # ... while another run promotes its own version in between.
    other = run_stages(tmp_path / "c", store_uri)
    promote.run(publish_from(other, store_uri, "other").to_json(), other["decision.json"], "other")
    registry = Registry(open_store(store_uri), MODEL)
    assert registry.alias().version == 2

    published = publish_from(late, store_uri, "late")
    with pytest.raises(RegistryConflict, match="version 3 was registered but not promoted"):
        promote.run(published.to_json(), late["decision.json"], "late")
    assert registry.versions() == [1, 2, 3]  # published, and kept
    assert registry.alias().version == 2
    assert [e["to"] for e in registry.events()] == [1, 2]


def test_promote_refuses_a_damaged_decision_record_and_moves_nothing(store_uri, tmp_path):
    p = run_stages(tmp_path / "a", store_uri)
    published = publish_from(p, store_uri)
    doc = json.loads(Path(p["decision.json"]).read_text())
    doc["passed"] = "yes"
    Path(p["decision.json"]).write_text(json.dumps(doc))
    with pytest.raises(ContractError) as info:
        promote.run(published.to_json(), p["decision.json"], "run-1")
    assert "decision record" in str(info.value) and p["decision.json"] in str(info.value)
    assert "'passed'" in str(info.value) and str(info.value).startswith("[promote] ")
    assert Registry(open_store(store_uri), MODEL).alias().version is None


def test_stage_images_follow_the_image_publish_runs_in(monkeypatch):
    monkeypatch.setenv("KEEL_IMAGE", "europe-docker.pkg.dev/acme/ml/publish:0.1.0")
    images = publish.stage_images()
    assert set(images) == set(STAGE_NAMES)
    assert images["train"] == "europe-docker.pkg.dev/acme/ml/train:0.1.0"


def test_stage_images_outside_an_image_are_the_compiled_names(monkeypatch):
    monkeypatch.delenv("KEEL_IMAGE", raising=False)
    monkeypatch.setenv("KEEL_IMAGE_REGISTRY", "registry.example/team")
    assert publish.stage_images()["ingest"] == "registry.example/team/ingest:0.1.0"


def test_git_commit_prefers_the_one_baked_into_the_image(monkeypatch):
    monkeypatch.setenv("KEEL_GIT_COMMIT", "abc123")
    assert publish.git_commit() == "abc123"
    monkeypatch.delenv("KEEL_GIT_COMMIT")
    commit = publish.git_commit()  # from this checkout
    assert commit == "unknown" or len(commit.removesuffix("-dirty")) == 40


# -- damage: promote and evaluate refuse it, and change nothing ----------------------------------



def other_pickle(folder: Path) -> bytes:
    """A valid, loadable model file that is not the registered one."""
    import joblib
    from sklearn.dummy import DummyClassifier

    path = folder / "other.joblib"
    joblib.dump(DummyClassifier().fit([[0], [1]], ["no", "yes"]), path)
    return path.read_bytes()


def test_promote_refuses_a_version_whose_model_was_replaced_after_publish(store_uri, tmp_path):
    from keel.registry import DamagedVersion

    first = run_stages(tmp_path / "a", store_uri)
    promote.run(publish_from(first, store_uri).to_json(), first["decision.json"], "run-1")
    second = run_stages(tmp_path / "b", store_uri)
    published = publish_from(second, store_uri, "run-2")
    registry = Registry(open_store(store_uri), MODEL)
    key = f"registry/{MODEL}/versions/2/model.joblib"
    overwrite(registry.store, key, other_pickle(tmp_path))  # between publish and promote
    before = state(registry.store)

    with pytest.raises(DamagedVersion) as info:
        promote.run(published.to_json(), second["decision.json"], "run-2")
    message = str(info.value)
    assert message.startswith("[registry] Version 2 of 'churn' is damaged, so production was "
                              "not moved to it.")
    assert registry.store.url(key) in message and "from a backup" in message
    assert "keel models rollback --model churn --to N" in message
    assert state(registry.store) == before
    assert registry.alias().version == 1 and len(registry.events()) == 1


def test_a_deleted_production_alias_stops_the_next_run_and_rollback_restores_it(store_uri,
                                                                                tmp_path):
    from keel.registry import MissingAlias

    first = run_stages(tmp_path / "a", store_uri)
    promote.run(publish_from(first, store_uri).to_json(), first["decision.json"], "run-1")
    registry = Registry(open_store(store_uri), MODEL)
    delete(registry.store, f"registry/{MODEL}/aliases/production.json")
    before = state(registry.store)

    # Not "first model": evaluate stops, so nothing is published or promoted unchecked.
    with pytest.raises(MissingAlias, match="production.json of 'churn' is missing; its "
                                           "last event put version 1 in production.*--to 1"):
        run_stages(tmp_path / "b", store_uri)
    # A first-run decision made before the deletion cannot recreate the alias either.
    with pytest.raises(MissingAlias):
        promote.promote(registry, 1, Decision.read(first["decision.json"]), "late")
    assert state(registry.store) == before

    event = registry.rollback(to=1, reason="restore production.json")
    assert (event["action"], event["to"]) == ("restore", 1)
    third = run_stages(tmp_path / "c", store_uri)  # compared with version 1 again
    assert Decision.read(third["decision.json"]).baseline.version == 1


@pytest.mark.parametrize("damage", ["manifest", "alias", "model missing", "model replaced"])
def test_evaluate_stops_on_a_damaged_production_model(store_uri, tmp_path, damage):
    """Damage is an error of the run, never a baseline that "could not be scored"."""
    from keel.errors import KeelError

    first = run_stages(tmp_path / "a", store_uri)
    promote.run(publish_from(first, store_uri).to_json(), first["decision.json"], "run-1")
    registry = Registry(open_store(store_uri), MODEL)
    root = f"registry/{MODEL}"
    if damage == "manifest":
        key, expected = f"{root}/versions/1/manifest.json", "not valid JSON"
        overwrite(registry.store, key, b'{"model": "churn", "vers')
    elif damage == "alias":
        key, expected = f"{root}/aliases/production.json", "not valid JSON"
        overwrite(registry.store, key, b"{")
    elif damage == "model missing":
        key, expected = f"{root}/versions/1/model.joblib", "is missing"
        delete(registry.store, key)
    else:
        key, expected = f"{root}/versions/1/model.joblib", "changed after registration"
        overwrite(registry.store, key, other_pickle(tmp_path))
    before = state(registry.store)
    with pytest.raises(KeelError, match=expected) as info:
        run_stages(tmp_path / "b", store_uri)
    assert registry.store.url(key) in str(info.value)
    assert not Path(tmp_path / "b" / "decision.json").exists()  # no decision was written
    assert state(registry.store) == before

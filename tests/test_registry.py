"""keel.registry on a local folder and on gs:// (fake-gcs-server): versions, integrity, aliases.

The concurrency tests use real processes (spawned), because LocalStore relies on flock and on
exclusive hard links, which threads of one process would not exercise the same way.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import queue
import time
from pathlib import Path

import pytest

import keel.storage
from keel.contracts import SCHEMA_VERSION, ContractError, Manifest
from keel.errors import IntegrityError, ParameterError, RegistryConflict, RegistryError
from keel.registry import (
    MANIFEST_FILE,
    MODEL_FILE,
    DamagedVersion,
    MissingAlias,
    Registry,
    UnknownVersion,
)
from keel.storage import DamagedObject, LocalStore, open_store

try:
    from factories import STORE_0_1_0, delete, lineage, overwrite, state
except ImportError:  # tests/ imported as a package
    from tests.factories import STORE_0_1_0, delete, lineage, overwrite, state

MODEL = "credit"


# -- helpers ---------------------------------------------------------------------------------------
def _fit(labels: list[int]):
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    x = np.arange(20, dtype=float).reshape(10, 2)
    return LogisticRegression().fit(x, labels)


@pytest.fixture(scope="session")
def model_files(tmp_path_factory) -> dict[str, Path]:
    """Two tiny fitted LogisticRegressions saved with joblib, plus a schema file."""
    import joblib

    folder = tmp_path_factory.mktemp("models")
    files = {}
    for name, labels in {"good": [0] * 5 + [1] * 5, "other": [1] * 5 + [0] * 5}.items():
        files[name] = folder / f"{name}.joblib"
        joblib.dump(_fit(labels), files[name])
    files["schema"] = folder / "schema.json"
    files["schema"].write_text('{"columns": ["a", "b"]}\n')
    return files


def publish(registry: Registry, model_files, **changes) -> int:
    return registry.publish(
        {MODEL_FILE: model_files["good"], "schema.json": model_files["schema"]},
        lineage(metrics={"roc_auc": 0.9}, **changes),
    ).version


def promote(registry: Registry, version: int, action: str = "promote") -> dict:
    return registry.move_alias(version, expected_generation=registry.alias().generation,
                               action=action, reason=f"test {action} {version}")



def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()




def rejected_lineage(**changes) -> object:
    """A lineage whose decision record failed the gate (version 2 of the Keel 0.1.0 store)."""
    recorded = Manifest.from_json(
        (STORE_0_1_0 / "registry" / "credit" / "versions" / "2" / "manifest.json").read_bytes())
    assert recorded.decision.passed is False
    return lineage(metrics={"roc_auc": 0.8}, decision=recorded.decision,
                   baseline=recorded.baseline, **changes)


def publish_rejected(registry: Registry, model_files) -> int:
    return registry.publish(
        {MODEL_FILE: model_files["good"], "schema.json": model_files["schema"]},
        rejected_lineage(),
    ).version


def key_of(version: int, name: str = MODEL_FILE) -> str:
    return f"registry/{MODEL}/versions/{version}/{name}"


@pytest.fixture
def registry(store_uri) -> Registry:
    return Registry(open_store(store_uri), MODEL)


# -- versions --------------------------------------------------------------------------------------
def test_model_name_is_checked(tmp_path):
    with pytest.raises(ParameterError, match="'Bad Name'"):
        Registry(LocalStore(tmp_path), "Bad Name")


def test_publish_numbers_versions_from_one(registry, model_files):
    assert registry.versions() == []
    assert [publish(registry, model_files) for _ in range(3)] == [1, 2, 3]
    assert registry.versions() == [1, 2, 3]
    manifest = registry.manifest(2)
    assert manifest.model == MODEL and manifest.version == 2
    assert manifest.metrics == {"roc_auc": 0.9}
    assert manifest.registered_at
    assert manifest.schema_version == SCHEMA_VERSION


def test_manifest_records_the_sha256_of_every_file(registry, model_files):
    version = publish(registry, model_files)
    files = registry.manifest(version).to_dict()["files"]
    assert files == {
        MODEL_FILE: {"sha256": sha256(model_files["good"].read_bytes())},
        "schema.json": {"sha256": sha256(model_files["schema"].read_bytes())},
    }
    for name in files:  # and the stored objects are those bytes
        stored = registry.store.read_bytes(f"registry/{MODEL}/versions/{version}/{name}")
        assert sha256(stored) == files[name]["sha256"]


def test_a_version_without_manifest_is_invisible_and_its_number_is_skipped(registry, model_files):
    assert publish(registry, model_files) == 1
    # A run that crashed after uploading its model but before its manifest (the commit point).
    registry.store.create(f"registry/{MODEL}/versions/2/{MODEL_FILE}", b"half written")
    assert registry.versions() == [1]
    with pytest.raises(RegistryError, match="no version 2.*Versions: 1"):
        registry.manifest(2)
    with pytest.raises(RegistryError, match="no version 2"):
        promote(registry, 2)
    assert registry.alias().version is None
    assert publish(registry, model_files) == 3
    assert registry.versions() == [1, 3]
    assert registry.store.read_bytes(f"registry/{MODEL}/versions/2/{MODEL_FILE}") == b"half written"


def test_publish_retries_when_its_listing_was_stale(registry, model_files):
    """Another run claimed the number between our listing and our create: take the next one."""
    assert publish(registry, model_files) == 1
    real_list = registry.store.list
    calls = []

    def stale_list(prefix):
        calls.append(prefix)
        return [] if len(calls) == 1 else real_list(prefix)  # the first listing misses version 1

    registry.store.list = stale_list
    assert publish(registry, model_files, run_id="second") == 2
    assert len(calls) >= 2
    registry.store.list = real_list
    assert registry.manifest(1).run_id != "second"  # version 1 untouched
    assert registry.manifest(2).run_id == "second"


def test_load_model_returns_the_fitted_model(registry, model_files):
    import numpy as np

    version = publish(registry, model_files)
    model = registry.load_model(version)
    x = np.arange(20, dtype=float).reshape(10, 2)
    assert model.predict(x).tolist() == _fit([0] * 5 + [1] * 5).predict(x).tolist()


def test_tampered_model_is_refused(registry, model_files, tmp_path):
    version = publish(registry, model_files)
    key = f"registry/{MODEL}/versions/{version}/{MODEL_FILE}"
    # A perfectly loadable model, but not the registered one: only the sha256 check can tell.
    tampered = model_files["other"].read_bytes()
    overwrite(registry.store, key, tampered)

    with pytest.raises(IntegrityError) as info:
        registry.load_model(version)
    message = str(info.value)
    assert message.startswith("[registry] ")
    assert registry.store.url(key) in message
    assert sha256(tampered) in message
    assert sha256(model_files["good"].read_bytes()) in message
    assert "changed after registration" in message and "will not be loaded" in message

    dest = tmp_path / "copy.joblib"
    with pytest.raises(IntegrityError):
        registry.download_verified(version, MODEL_FILE, dest)
    assert not dest.exists()  # the unverified bytes are not left behind
    # An intact file of the same version still downloads.
    assert registry.download_verified(version, "schema.json", tmp_path / "s.json").read_bytes() == (
        model_files["schema"].read_bytes())
    with pytest.raises(RegistryError, match="no file 'nope'"):
        registry.download_verified(version, "nope", tmp_path / "nope")


def test_a_bad_lineage_claims_no_version_number(registry, model_files):
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        registry.publish({MODEL_FILE: model_files["good"]}, {"metrics": {}})  # not a Lineage
    assert registry.store.list(f"registry/{MODEL}") == []


def test_a_manifest_that_is_not_json_is_an_error_naming_the_file(registry, model_files):
    version = publish(registry, model_files)
    key = f"registry/{MODEL}/versions/{version}/manifest.json"
    overwrite(registry.store, key, b'{"model": "credit", "version": ')
    with pytest.raises(DamagedObject, match="is not valid JSON") as info:
        registry.manifest(version)
    assert registry.store.url(key) in str(info.value)
    assert "Restore it from a backup" in str(info.value)


def test_a_manifest_with_bad_fields_is_an_error_naming_the_file_and_the_repair(registry,
                                                                               model_files):
    version = publish(registry, model_files)
    key = f"registry/{MODEL}/versions/{version}/manifest.json"
    overwrite(registry.store, key, b'{"model": "credit", "version": 1}')
    with pytest.raises(ContractError, match="version manifest") as info:
        registry.manifest(version)
    message = str(info.value)
    assert registry.store.url(key) in message
    assert message.startswith("[registry] ")
    assert "restore it from a backup (or your bucket's object versions)" in message


def test_a_manifest_from_a_newer_keel_says_upgrade_not_restore(registry, model_files):
    import json

    version = publish(registry, model_files)
    key = f"registry/{MODEL}/versions/{version}/manifest.json"
    doc = json.loads(registry.store.read_bytes(key))
    overwrite(registry.store, key, json.dumps({**doc, "schema_version": 99}).encode())
    with pytest.raises(ContractError, match="upgrade Keel") as info:
        registry.manifest(version)
    assert "restore it" not in str(info.value)


def test_manifests_written_by_keel_0_1_0_still_read(tmp_path):
    import shutil

    try:
        from factories import STORE_0_1_0
    except ImportError:
        from tests.factories import STORE_0_1_0
    shutil.copytree(STORE_0_1_0, tmp_path / "store")
    registry = Registry(LocalStore(tmp_path / "store"), "credit")
    assert registry.versions() == [1, 2]
    first, second = registry.manifest(1), registry.manifest(2)
    assert first.schema_version == second.schema_version == 1
    assert first.baseline is None and second.baseline is not None
    assert second.baseline.version == 1 and second.decision.passed is False
    assert second.decision.checks[0].metric == "roc_auc"
    assert second.excluded_columns == {}  # not recorded by 0.1.0: the default
    assert registry.alias().version == 1


# -- aliases and events ----------------------------------------------------------------------------
def test_each_alias_move_writes_one_event(registry, model_files):
    v1, v2 = publish(registry, model_files), publish(registry, model_files)
    assert registry.alias().version is None and registry.alias().generation == 0
    event = promote(registry, v1)
    assert event["from"] is None and event["to"] == v1 and event["action"] == "promote"
    assert registry.alias().version == v1
    assert registry.alias().doc["generation"] == 1
    promote(registry, v2)
    events = registry.events()
    assert [(e["action"], e["from"], e["to"]) for e in events] == [
        ("promote", None, v1), ("promote", v1, v2)]
    assert events[1]["reason"] == f"test promote {v2}" and events[1]["alias"] == "production"
    assert registry.alias().doc["generation"] == 2


def test_move_alias_with_a_stale_generation_is_refused(registry, model_files):
    v1, v2, v3 = (publish(registry, model_files) for _ in range(3))
    promote(registry, v1)
    read_by_this_run = registry.alias().generation
    promote(registry, v2)  # another run promoted in between
    with pytest.raises(RegistryConflict) as info:
        registry.move_alias(v3, expected_generation=read_by_this_run, action="promote",
                            reason="better")
    message = str(info.value)
    assert "moved by another run" in message
    assert f"now points at version {v2}" in message
    assert f"version {v3} was registered but not promoted" in message
    assert registry.alias().version == v2
    assert len(registry.events()) == 2  # no event for the refused move


def test_rollback_goes_to_the_newest_earlier_production_version(registry, model_files):
    for _ in range(4):
        publish(registry, model_files)
    promote(registry, 1)
    promote(registry, 2)  # version 3 is registered but never promoted (rejected by the gate)
    promote(registry, 4)

    event = registry.rollback()
    assert (event["action"], event["from"], event["to"]) == ("rollback", 4, 2)
    assert event["reason"] == "rollback from version 4"
    assert registry.alias().version == 2
    assert registry.rollback(reason="bad model")["to"] == 1
    assert registry.events()[-1]["reason"] == "bad model"
    with pytest.raises(RegistryError, match="no production version before 1.*--to N"):
        registry.rollback()
    assert registry.alias().version == 1

    with pytest.raises(RegistryError, match="newer than production version 1.*--force"):
        registry.rollback(to=3)  # forward: not a rollback without --force
    forward = registry.rollback(to=3, force=True, reason="undo the rollbacks")
    assert (forward["to"], forward["forced"], forward["reason"]) == (3, True, "undo the rollbacks")
    assert forward["forced_because"] == [
        "version 3 is newer than production version 1 (a roll forward)"]
    assert registry.alias().version == 3
    with pytest.raises(RegistryError, match="already in production"):
        registry.rollback(to=3)
    with pytest.raises(RegistryError, match="no version 9"):
        registry.rollback(to=9)
    assert registry.alias().version == 3
    assert [e["action"] for e in registry.events()] == ["promote"] * 3 + ["rollback"] * 3


def test_rollback_skips_a_version_that_was_rolled_back_away_from(registry, model_files):
    for _ in range(4):
        publish(registry, model_files)
    promote(registry, 1)
    promote(registry, 2)
    promote(registry, 3)
    assert registry.rollback()["to"] == 2  # 3 was bad
    promote(registry, 4)
    assert registry.rollback()["to"] == 2  # not back to the bad 3
    assert registry.rollback(to=3, force=True, reason="3 is fine")["to"] == 3  # named explicitly
    assert registry.rollback()["to"] == 2


def test_rollback_needs_an_earlier_production_version(registry, model_files):
    publish(registry, model_files)
    with pytest.raises(RegistryError, match="no production version to roll back"):
        registry.rollback()
    promote(registry, 1)
    with pytest.raises(RegistryError, match="no production version before 1"):
        registry.rollback()
    assert registry.alias().version == 1
    assert len(registry.events()) == 1


# -- verify: the damage of a version -------------------------------------------------------------
def test_verify_finds_nothing_wrong_with_an_intact_version(registry, model_files):
    version = publish(registry, model_files)
    check = registry.verify(version)
    assert (check.version, check.damaged, check.damage) == (version, False, ())
    assert check.manifest == registry.manifest(version)


def test_verify_finds_a_replaced_model_file(registry, model_files):
    version = publish(registry, model_files)
    tampered = model_files["other"].read_bytes()  # a valid pickle: only the sha256 can tell
    overwrite(registry.store, key_of(version), tampered)
    check = registry.verify(version)
    [damage] = check.damage  # schema.json is intact
    assert damage.file == MODEL_FILE and damage.url == registry.store.url(key_of(version))
    assert damage.problem.startswith(registry.store.url(key_of(version)))
    assert sha256(tampered) in damage.problem
    assert sha256(model_files["good"].read_bytes()) in damage.problem
    assert damage.to_dict() == {"file": MODEL_FILE, "object": damage.url,
                                "problem": damage.problem}
    assert check.manifest is not None


def test_verify_finds_a_missing_file(registry, model_files):
    version = publish(registry, model_files)
    delete(registry.store, key_of(version, "schema.json"))
    [damage] = registry.verify(version).damage
    assert damage.file == "schema.json" and "is missing" in damage.problem
    assert registry.store.url(key_of(version, "schema.json")) in damage.problem


@pytest.mark.parametrize("content, expected", [
    (b'{"model": "cred', "is not valid JSON"),
    (b'{"model": "credit"}', "version manifest"),
])
def test_verify_reports_an_unreadable_manifest(registry, model_files, content, expected):
    version = publish(registry, model_files)
    overwrite(registry.store, key_of(version, MANIFEST_FILE), content)
    check = registry.verify(version)
    assert check.manifest is None
    [damage] = check.damage
    assert damage.file == MANIFEST_FILE and expected in damage.problem
    assert registry.store.url(key_of(version, MANIFEST_FILE)) in damage.problem


def test_verify_reports_a_manifest_copied_from_another_version(registry, model_files):
    publish(registry, model_files)
    publish(registry, model_files)
    overwrite(registry.store, key_of(2, MANIFEST_FILE),
              registry.store.read_bytes(key_of(1, MANIFEST_FILE)))
    [damage] = registry.verify(2).damage
    assert "records model 'credit' version 1, not 'credit' version 2" in damage.problem


@pytest.mark.parametrize("version", [0, -1, 9])
def test_verify_of_a_version_that_does_not_exist_is_an_error_listing_versions(registry,
                                                                             model_files, version):
    publish(registry, model_files)
    with pytest.raises(UnknownVersion, match=f"no version {version} .*Versions: 1\\."):
        registry.verify(version)


def test_a_model_file_that_is_missing_is_an_error_saying_how_to_repair(registry, model_files):
    version = publish(registry, model_files)
    delete(registry.store, key_of(version))
    with pytest.raises(DamagedVersion, match="is missing.*from a backup.*rollback --model credit"):
        registry.load_model(version)


def test_a_model_file_that_cannot_be_unpickled_is_an_error_not_a_result(registry, tmp_path):
    garbage = tmp_path / "model.joblib"
    garbage.write_bytes(b"not a pickle at all")  # registered like this: its sha256 matches
    registry.publish({MODEL_FILE: garbage}, lineage())
    assert not registry.verify(1).damaged
    with pytest.raises(RegistryError, match="matches its recorded sha256 but cannot be loaded"):
        registry.load_model(1)


# -- production never moves to a damaged version ---------------------------------------------------
@pytest.mark.parametrize("damage", ["replaced", "missing", "manifest"])
def test_no_move_points_production_at_a_damaged_version(registry, model_files, damage):
    for _ in range(3):
        publish(registry, model_files)
    promote(registry, 1)
    promote(registry, 2)
    promote(registry, 3)
    if damage == "replaced":
        overwrite(registry.store, key_of(2), model_files["other"].read_bytes())
    elif damage == "missing":
        delete(registry.store, key_of(2))
    else:
        overwrite(registry.store, key_of(2, MANIFEST_FILE), b"{")
    before = state(registry.store)

    for attempt in (lambda: registry.rollback(),  # the previous production version is 2
                    lambda: registry.rollback(to=2, reason="r"),
                    lambda: registry.rollback(to=2, force=True, reason="even forced"),
                    lambda: promote(registry, 2)):
        with pytest.raises(DamagedVersion) as info:
            attempt()
        message = str(info.value)
        assert message.startswith(
            "[registry] Version 2 of 'credit' is damaged, so production was not moved to it.")
        assert registry.store.url(key_of(2, MANIFEST_FILE if damage == "manifest" else MODEL_FILE)
                                  ) in message
        assert "from a backup (or your bucket's object versions)" in message
        assert message.endswith("`keel models rollback --model credit --to N --reason TEXT`.")
        assert state(registry.store) == before  # byte-for-byte unchanged
    assert registry.alias().version == 3
    assert registry.rollback(to=1, reason="2 is damaged")["to"] == 1  # an intact one still works


# -- a missing or damaged production.json ----------------------------------------------------------
def test_a_missing_alias_with_events_is_damage_not_a_first_run(registry, model_files):
    for _ in range(3):
        publish(registry, model_files)
    promote(registry, 1)
    promote(registry, 2)
    alias_key = f"registry/{MODEL}/aliases/production.json"
    delete(registry.store, alias_key)
    before = state(registry.store)

    with pytest.raises(MissingAlias) as info:
        registry.alias()
    message = str(info.value)
    # What and which version first: a one-line error shortened in the middle keeps them.
    assert message.startswith("[registry] production.json of 'credit' is missing; its last "
                              "event put version 2 in production. Restore it: `keel models "
                              "rollback --model credit --to 2 --reason 'restore production.json' "
                              f"--store {registry.store.uri}`.")
    assert f"Missing: {registry.store.url(alias_key)}; last event: " in message
    assert registry.store.list(f"registry/{MODEL}/events")[-1] in message
    # Nothing else can create it behind the event log's back, nor roll back without a target.
    with pytest.raises(MissingAlias):
        registry.move_alias(3, expected_generation=0, action="promote", reason="first model")
    with pytest.raises(MissingAlias):
        registry.rollback()
    assert state(registry.store) == before

    event = registry.rollback(to=2, reason="production.json was deleted")
    assert (event["action"], event["from"], event["to"]) == ("restore", None, 2)
    assert event["forced"] is False and event["reason"] == "production.json was deleted"
    assert registry.alias().version == 2 and registry.alias().doc["action"] == "restore"
    assert [e["action"] for e in registry.events()] == ["promote", "promote", "restore"]
    assert registry.rollback()["to"] == 1  # the history still counts after the restore


def test_a_restore_to_another_version_follows_the_rollback_rules(registry, model_files):
    for _ in range(3):
        publish(registry, model_files)
    promote(registry, 1)
    promote(registry, 2)
    delete(registry.store, f"registry/{MODEL}/aliases/production.json")
    before = state(registry.store)
    with pytest.raises(RegistryError, match="newer than the last recorded production version 2"):
        registry.rollback(to=3)
    assert state(registry.store) == before
    assert registry.rollback(to=1)["action"] == "restore"  # back is fine
    assert registry.alias().version == 1


def test_without_any_event_a_missing_alias_is_a_first_run(registry, model_files):
    publish(registry, model_files)
    assert registry.alias().version is None  # registered, never promoted


@pytest.mark.parametrize("content, expected", [
    (b'{"version": 2, "gener', "is not valid JSON"),
    (b'{"version": "two", "generation": 3}', "does not name a version"),
])
def test_a_damaged_alias_is_an_error_naming_it(registry, model_files, content, expected):
    publish(registry, model_files)
    publish(registry, model_files)
    promote(registry, 1)
    promote(registry, 2)
    alias_key = f"registry/{MODEL}/aliases/production.json"
    overwrite(registry.store, alias_key, content)
    before = state(registry.store)
    for attempt in (registry.alias, registry.rollback, lambda: registry.rollback(to=1),
                    lambda: registry.move_alias(1, expected_generation=2, action="promote",
                                                reason="r")):
        with pytest.raises(DamagedObject, match=expected) as info:
            attempt()
        assert registry.store.url(alias_key) in str(info.value)
    assert state(registry.store) == before


@pytest.mark.parametrize("content, expected", [
    (b"{not json", "is not valid JSON"),
    (b'{"action": "promote", "alias": "production", "from": null}', "no valid 'to' field"),
    (b"[1, 2]", "is not a JSON object"),
])
def test_a_damaged_event_is_an_error_naming_it(registry, model_files, content, expected):
    publish(registry, model_files)
    publish(registry, model_files)
    promote(registry, 1)
    promote(registry, 2)
    event_key = registry.store.list(f"registry/{MODEL}/events")[0]
    overwrite(registry.store, event_key, content)
    before = state(registry.store)
    with pytest.raises(DamagedObject, match=expected) as info:
        registry.rollback()
    assert registry.store.url(event_key) in str(info.value)
    with pytest.raises(DamagedObject):
        registry.events()
    assert state(registry.store) == before


# -- rolling back to a rejected version, or forward, needs --force ---------------------------------
def test_rollback_to_a_rejected_version_needs_force_and_a_reason(registry, model_files):
    publish(registry, model_files)
    publish_rejected(registry, model_files)  # version 2, rejected by its gate
    publish(registry, model_files)
    promote(registry, 1)
    promote(registry, 3)
    before = state(registry.store)
    with pytest.raises(RegistryError) as info:
        registry.rollback(to=2)
    message = str(info.value)
    assert "was not moved to version 2" in message
    assert "version 2 was rejected by its evaluation gate (roc_auc absolute_change)" in message
    assert "pass --force with --reason TEXT" in message
    for reason in ("", "   "):
        with pytest.raises(RegistryError, match="--force needs --reason"):
            registry.rollback(to=2, force=True, reason=reason)
    assert state(registry.store) == before

    event = registry.rollback(to=2, force=True, reason="  the new one is worse in the field ")
    assert (event["action"], event["from"], event["to"]) == ("rollback", 3, 2)
    assert event["forced"] is True and event["reason"] == "the new one is worse in the field"
    assert event["forced_because"] == [
        "version 2 was rejected by its evaluation gate (roc_auc absolute_change)"]
    assert registry.events()[-1] == event
    assert registry.alias().doc["forced"] is True


def test_rolling_forward_to_a_rejected_version_names_both_reasons(registry, model_files):
    publish(registry, model_files)
    publish_rejected(registry, model_files)
    promote(registry, 1)
    with pytest.raises(RegistryError, match="rejected by its evaluation gate.*; version 2 is "
                                            "newer than production version 1"):
        registry.rollback(to=2)
    event = registry.rollback(to=2, force=True, reason="testing in production")
    assert len(event["forced_because"]) == 2


def test_force_is_recorded_only_when_it_was_needed(registry, model_files):
    publish(registry, model_files)
    publish(registry, model_files)
    promote(registry, 1)
    promote(registry, 2)
    event = registry.rollback(force=True, reason="no rule to override")
    assert event["to"] == 1 and event["forced"] is False and "forced_because" not in event


# -- concurrency (real processes) ------------------------------------------------------------------
PUBLISHES_PER_WORKER = 3


def _slowed(store, method: str, seconds: float):
    """Widen the window between reading and writing, so that the workers really overlap."""
    real = getattr(store, method)

    def slow(*args, **kwargs):
        result = real(*args, **kwargs)
        time.sleep(seconds)
        return result

    setattr(store, method, slow)
    return store


def _publish_worker(store_uri, writer, model_path, barrier, results) -> None:
    keel.storage._client = None  # a fresh client in this process
    registry = Registry(_slowed(open_store(store_uri), "list", 0.05), MODEL)
    barrier.wait(timeout=60)
    versions = []
    for i in range(PUBLISHES_PER_WORKER):
        manifest = registry.publish({MODEL_FILE: model_path}, lineage(run_id=f"{writer}-{i}"))
        versions.append(manifest.version)
    results.put((writer, versions))


def _promote_worker(store_uri, writer, version, generation, barrier, results) -> None:
    keel.storage._client = None
    registry = Registry(_slowed(open_store(store_uri), "read_document", 0.2), MODEL)
    barrier.wait(timeout=60)
    try:
        registry.move_alias(version, expected_generation=generation, action="promote",
                            reason=writer)
        results.put((writer, "won"))
    except RegistryConflict as exc:
        results.put((writer, f"conflict: {exc}"))


def _run_processes(target, argsets) -> list:
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(len(argsets)), ctx.Queue()
    processes = [ctx.Process(target=target, args=(*args, barrier, results)) for args in argsets]
    for p in processes:
        p.start()
    out = []
    try:
        for _ in processes:
            out.append(results.get(timeout=90))
    except queue.Empty:
        pytest.fail("a worker process did not report (see its stderr above)")
    finally:
        for p in processes:
            p.join(timeout=30)
    assert [p.exitcode for p in processes] == [0] * len(processes)
    return out


def test_concurrent_publishers_get_distinct_versions(store_uri, tmp_path):
    writers = ["w0", "w1", "w2"]
    paths = {}
    for w in writers:  # each writer uploads its own bytes, so an overwrite would show
        paths[w] = tmp_path / f"{w}.joblib"
        paths[w].write_bytes(f"model of {w}".encode() * 100)
    results = dict(_run_processes(_publish_worker, [(store_uri, w, str(paths[w])) for w in writers]))

    claimed = [v for versions in results.values() for v in versions]
    total = len(writers) * PUBLISHES_PER_WORKER
    assert sorted(claimed) == list(range(1, total + 1))
    registry = Registry(open_store(store_uri), MODEL)
    assert registry.versions() == list(range(1, total + 1))
    for writer, versions in results.items():
        for version in versions:
            manifest = registry.manifest(version)
            assert manifest.run_id.startswith(f"{writer}-")
            data = registry.store.read_bytes(f"registry/{MODEL}/versions/{version}/{MODEL_FILE}")
            assert data == paths[writer].read_bytes()
            assert sha256(data) == manifest.files[MODEL_FILE].sha256


def test_concurrent_promotions_from_the_same_generation_one_wins(store_uri, model_files):
    registry = Registry(open_store(store_uri), MODEL)
    for _ in range(3):
        publish(registry, model_files)
    promote(registry, 1)
    generation = registry.alias().generation  # both runs evaluated against version 1

    results = dict(_run_processes(
        _promote_worker, [(store_uri, "run-a", 2, generation), (store_uri, "run-b", 3, generation)]))
    winners = [w for w, outcome in results.items() if outcome == "won"]
    assert len(winners) == 1, results
    loser = "run-b" if winners == ["run-a"] else "run-a"
    winning_version = 2 if winners == ["run-a"] else 3
    assert results[loser].startswith("conflict: [registry] ")
    assert f"now points at version {winning_version}" in results[loser]

    alias = registry.alias()
    assert alias.version == winning_version and alias.doc["reason"] == winners[0]
    assert alias.doc["generation"] == 2
    assert [(e["from"], e["to"]) for e in registry.events()] == [(None, 1), (1, winning_version)]

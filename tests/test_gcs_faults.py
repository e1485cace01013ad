"""gs:// stores over a faulty network: transient failures are retried, a give-up is one clear error,
and the store, read straight from the emulator afterwards, is never inconsistent.

A :class:`FaultProxy` sits between the GCS client and fake-gcs-server. It answers a seeded share of
requests with 503 or 429 or drops the connection, before or after the emulator did the work; rules
aim the worst case (a write that happened but whose response was lost, so the client's retry meets
its own object and gets 412) at the registry's commit points: the version claim, the manifest and
the alias swap.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import keel.storage
from keel.errors import RegistryConflict
from keel.registry import MANIFEST_FILE, MODEL_FILE, Registry
from keel.storage import RETRY_DEADLINE_ENV, GCSStore, StorageUnavailable, open_store

try:
    from factories import lineage
    from fault_proxy import RANDOM_FAULTS, Fault, FaultProxy, Plan, Rule
except ImportError:  # tests/ imported as a package
    from tests.factories import lineage
    from tests.fault_proxy import RANDOM_FAULTS, Fault, FaultProxy, Plan, Rule

pytestmark = pytest.mark.gcs

MODEL = "credit"
PREFIX = "store"
SEED = 6  # the random faults are the same on every run
CREDIT = Path(__file__).resolve().parents[1] / "data" / "credit.csv"
VERSIONS = f"{PREFIX}/registry/{MODEL}/versions"
ALIAS = f"{PREFIX}/registry/{MODEL}/aliases/production.json"


def upload_of(name: str) -> str:
    """A rule pattern for the upload (create or swap) of object ``name``."""
    return rf"^POST /upload/.* name={name}$"


# -- fixtures ------------------------------------------------------------------------------------
@pytest.fixture
def proxy(gcs_emulator: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[FaultProxy]:
    """The fault proxy, with every GCS client of this process (and its subprocesses) behind it."""
    proxy = FaultProxy(gcs_emulator).start()
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", proxy.url)
    monkeypatch.setattr(keel.storage, "_client", None)  # the cached client talks to the emulator
    yield proxy
    proxy.close()
    assert not proxy.errors, proxy.errors  # a rule's "other writer" failed


@pytest.fixture
def direct(gcs_emulator: str, gcs_bucket: str) -> Any:
    """The test bucket straight from the emulator, never through the proxy: the ground truth."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    client = storage.Client(project="test", credentials=AnonymousCredentials(),
                            client_options={"api_endpoint": gcs_emulator})
    return client.bucket(gcs_bucket)


@pytest.fixture
def uri(gcs_bucket: str) -> str:
    return f"gs://{gcs_bucket}/{PREFIX}"


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    """The files of a version; every version has the same bytes, so only a token tells writes apart."""
    model, schema = tmp_path / MODEL_FILE, tmp_path / "schema.json"
    model.write_bytes(b"the very same model bytes\n" * 200)
    schema.write_text('{"columns": ["a", "b"]}\n')
    return {MODEL_FILE: model, "schema.json": schema}


# -- helpers -------------------------------------------------------------------------------------
def registry_on(bucket: Any) -> Registry:
    """A registry whose store reads and writes ``bucket`` through that bucket's own client."""
    store = GCSStore(f"gs://{bucket.name}/{PREFIX}")
    store.bucket = bucket
    return Registry(store, MODEL)


def objects(bucket: Any) -> dict[str, tuple[Any, ...]]:
    return {b.name: (b.md5_hash, b.generation) for b in bucket.list_blobs()}


def promote(registry: Registry, version: int) -> dict[str, Any]:
    return registry.move_alias(version, expected_generation=registry.alias().generation,
                               action="promote", reason=f"test promote {version}")


def assert_consistent(bucket: Any) -> dict[int, dict[str, Any]]:
    """Check the registry as stored (read from the emulator); return the complete versions' manifests.

    A version counts only with its manifest; a manifest's files all exist with their sha256 and
    nothing else sits beside them; a number is one run's; the alias and the events name complete
    versions.
    """
    folders: dict[int, set[str]] = defaultdict(set)
    for blob in bucket.list_blobs(prefix=f"{VERSIONS}/"):
        number, _, name = blob.name[len(VERSIONS) + 1:].partition("/")
        folders[int(number)].add(name)
    manifests = {}
    for number, names in sorted(folders.items()):
        if MANIFEST_FILE not in names:
            continue  # a claimed number whose run did not finish: invisible
        manifest = json.loads(bucket.blob(f"{VERSIONS}/{number}/{MANIFEST_FILE}").download_as_bytes())
        assert (manifest["model"], manifest["version"]) == (MODEL, number)
        assert set(manifest["files"]) == names - {MANIFEST_FILE}, number
        for name, entry in manifest["files"].items():
            data = bucket.blob(f"{VERSIONS}/{number}/{name}").download_as_bytes()
            assert hashlib.sha256(data).hexdigest() == entry["sha256"], (number, name)
        manifests[number] = manifest
    registry = registry_on(bucket)
    assert registry.versions() == sorted(manifests)
    run_ids = [m["run_id"] for m in manifests.values()]
    assert len(set(run_ids)) == len(run_ids), run_ids  # no number published twice
    alias = bucket.get_blob(ALIAS)
    if alias is not None:
        assert json.loads(alias.download_as_bytes())["version"] in manifests
    for event in registry.events():
        assert event["to"] in manifests
    return manifests


def run_keel(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).parent / "keel"
    command = [str(script)] if script.exists() else [
        sys.executable, "-c", "import sys; from keel.cli import main; sys.argv[0] = 'keel'; main()"]
    return subprocess.run([*command, *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The run failed the way a user should see it: exit 1, one ``keel: error:`` line, no traceback."""
    assert result.returncode == 1, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("keel: error:")]
    assert len(errors) == 1, result.stderr[-3000:]
    assert result.stderr.rstrip("\n").splitlines()[-1] == errors[0]
    assert "Traceback" not in result.stderr
    return errors[0]


# -- lost responses ------------------------------------------------------------------------------
def test_a_write_whose_response_was_lost_is_not_a_conflict(proxy: FaultProxy, direct: Any,
                                                           uri: str, files: dict[str, Path]) -> None:
    """The emulator did the write, the client never heard: its retry's 412 is its own success."""
    commit_points = [f"{VERSIONS}/1/{MODEL_FILE}", f"{VERSIONS}/1/schema.json",
                     f"{VERSIONS}/1/{MANIFEST_FILE}", f"{VERSIONS}/2/{MODEL_FILE}",
                     f"{VERSIONS}/2/{MANIFEST_FILE}", f"{PREFIX}/registry/{MODEL}/events/.*"]
    rules = [Rule(upload_of(name), Fault.DROP_RESPONSE, times=2 if "events" in name else 1)
             for name in commit_points]
    proxy.use(Plan(rules=[*rules, Rule(upload_of(ALIAS), Fault.DROP_RESPONSE, times=2)]))
    registry = Registry(open_store(uri), MODEL)

    first = registry.publish(files, lineage(run_id="first")).version
    promote(registry, first)  # the swap from "absent" (generation 0)
    second = registry.publish(files, lineage(run_id="second")).version
    promote(registry, second)  # the swap from a real generation

    assert (first, second) == (1, 2)  # no number skipped by a "conflict" with itself
    assert all(rule.hits == rule.times for rule in proxy.plan.rules)  # every write was hit
    assert proxy.counts[Fault.DROP_RESPONSE] == 9
    manifests = assert_consistent(direct)
    assert {v: m["run_id"] for v, m in manifests.items()} == {1: "first", 2: "second"}
    alias = registry_on(direct).alias()
    assert alias.version == 2 and alias.doc is not None and alias.doc["generation"] == 2
    assert [(e["from"], e["to"]) for e in registry_on(direct).events()] == [(None, 1), (1, 2)]


def test_another_writers_identical_object_is_still_a_conflict(proxy: FaultProxy, direct: Any,
                                                              uri: str, files: dict[str, Path]) -> None:
    """Our claim of version 1 is lost on the way; meanwhile another run publishes the same bytes
    as version 1. Equal content must not pass for ours: we take version 2."""
    other = registry_on(direct)
    proxy.use(Plan(rules=[Rule(upload_of(f"{VERSIONS}/1/{MODEL_FILE}"), Fault.DROP_REQUEST,
                               before=lambda: other.publish(files, lineage(run_id="other")))]))
    registry = Registry(open_store(uri), MODEL)

    assert registry.publish(files, lineage(run_id="ours")).version == 2
    manifests = assert_consistent(direct)
    assert {v: m["run_id"] for v, m in manifests.items()} == {1: "other", 2: "ours"}

    # Same for a bare create: identical bytes already there from another writer is a conflict.
    key = "blobs/same.bin"
    proxy.use(Plan(rules=[Rule(upload_of(f"{PREFIX}/{key}"), Fault.DROP_REQUEST, before=lambda: (
        direct.blob(f"{PREFIX}/{key}").upload_from_string(b"same", if_generation_match=0)))]))
    with pytest.raises(RegistryConflict, match="another writer"):
        registry.store.create(key, b"same")


def test_an_alias_moved_by_another_run_meanwhile_is_still_a_conflict(
        proxy: FaultProxy, direct: Any, uri: str, files: dict[str, Path]) -> None:
    """Our alias swap is lost on the way and another run promotes in between: we must not win."""
    registry = Registry(open_store(uri), MODEL)
    for run_id in ("a", "b", "c"):
        registry.publish(files, lineage(run_id=run_id))
    promote(registry, 1)
    read_by_us = registry.alias().generation
    proxy.use(Plan(rules=[Rule(upload_of(ALIAS), Fault.DROP_REQUEST,
                               before=lambda: promote(registry_on(direct), 2))]))

    with pytest.raises(RegistryConflict, match="now points at version 2"):
        registry.move_alias(3, expected_generation=read_by_us, action="promote", reason="ours")
    assert registry_on(direct).alias().version == 2
    assert [e["to"] for e in registry_on(direct).events()] == [1, 2]
    assert_consistent(direct)


# -- random faults -------------------------------------------------------------------------------
def test_registry_workflow_under_random_faults(proxy: FaultProxy, direct: Any, uri: str,
                                               files: dict[str, Path], tmp_path: Path) -> None:
    """A fifth of all requests fail (seeded): every operation still completes, by retrying."""
    proxy.use(Plan(seed=SEED, share=0.2))
    registry = Registry(open_store(uri), MODEL)

    versions = [registry.publish(files, lineage(run_id=f"run-{i}")).version for i in range(4)]
    for version in (1, 2, 4):
        promote(registry, version)
    assert registry.rollback()["to"] == 2
    assert registry.rollback()["to"] == 1
    assert registry.versions() == [1, 2, 3, 4]
    assert registry.manifest(4).run_id == "run-3"
    copy = registry.download_verified(4, MODEL_FILE, tmp_path / "copy")
    assert copy.read_bytes() == files[MODEL_FILE].read_bytes()

    assert versions == [1, 2, 3, 4]
    assert all(proxy.counts[fault] for fault in RANDOM_FAULTS), proxy.counts
    assert proxy.faulted(r"^POST /upload/", Fault.DROP_RESPONSE)  # a lost write was retried
    manifests = assert_consistent(direct)
    assert [manifests[v]["run_id"] for v in versions] == ["run-0", "run-1", "run-2", "run-3"]
    alias = registry_on(direct).alias()
    assert alias.version == 1 and alias.doc is not None and alias.doc["generation"] == 5
    assert [(e["action"], e["to"]) for e in registry_on(direct).events()] == [
        ("promote", 1), ("promote", 2), ("promote", 4), ("rollback", 2), ("rollback", 1)]


def test_concurrent_publishers_under_random_faults(proxy: FaultProxy, direct: Any,
                                                   files: dict[str, Path]) -> None:
    """Three writers with identical bytes, each with its own client: every number is one writer's."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    proxy.use(Plan(seed=SEED, share=0.25))
    writers, per_writer = ["w0", "w1", "w2"], 3
    barrier = threading.Barrier(len(writers))
    results: dict[str, list[int]] = {}
    failures: list[BaseException] = []

    def work(writer: str) -> None:
        try:
            client = storage.Client(project="test", credentials=AnonymousCredentials(),
                                    client_options={"api_endpoint": proxy.url})
            registry = registry_on(client.bucket(direct.name))
            barrier.wait(timeout=30)
            results[writer] = [registry.publish(files, lineage(run_id=f"{writer}-{i}")).version
                               for i in range(per_writer)]
        except BaseException as exc:  # reported by the main thread
            failures.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in writers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not failures, failures
    claimed = sorted(v for versions in results.values() for v in versions)
    assert claimed == list(range(1, len(writers) * per_writer + 1))
    manifests = assert_consistent(direct)
    for writer, versions in results.items():
        assert all(manifests[v]["run_id"].startswith(f"{writer}-") for v in versions)


# -- giving up -----------------------------------------------------------------------------------
@pytest.mark.parametrize("fault", RANDOM_FAULTS, ids=lambda f: f.name.lower())
def test_an_outage_is_one_clear_error_and_changes_nothing(
        proxy: FaultProxy, direct: Any, uri: str, files: dict[str, Path],
        monkeypatch: pytest.MonkeyPatch, fault: Fault) -> None:
    """When GCS keeps failing past the retry deadline, the caller gets one StorageUnavailable line."""
    monkeypatch.setenv(RETRY_DEADLINE_ENV, "0.5")  # production waits a minute, not this test
    registry = Registry(open_store(uri), MODEL)
    registry.publish(files, lineage(run_id="before"))
    promote(registry, 1)
    before = objects(direct)
    proxy.use(Plan(outage=fault))

    operations: list[Callable[[], object]] = [
        lambda: registry.publish(files, lineage(run_id="during")), lambda: promote(registry, 1)]
    for operation in operations:
        with pytest.raises(StorageUnavailable) as info:
            operation()
        message = str(info.value)
        assert message.startswith(f"[storage] Google Cloud Storage kept failing on {uri}/")
        assert "\n" not in message and "0.5 s of retries" in message
    store = open_store(uri)
    with pytest.raises(StorageUnavailable, match="nothing was changed"):
        store.read_bytes("registry/anything.json")  # a read says so, not "a write may have..."
    assert objects(direct) == before
    # a write may indeed have happened: a dropped response hides the emulator's success
    with pytest.raises(StorageUnavailable, match="a write may or may not have happened"):
        store.create("registry/anything.json", b"{}")


def test_an_outage_during_publish_leaves_an_invisible_version(
        proxy: FaultProxy, direct: Any, uri: str, files: dict[str, Path],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """GCS goes down right at the manifest (the commit point): the half version is never counted."""
    monkeypatch.setenv(RETRY_DEADLINE_ENV, "0.5")
    plan = Plan()
    plan.rules.append(Rule(upload_of(f"{VERSIONS}/1/{MANIFEST_FILE}"), Fault.UNAVAILABLE,
                           before=lambda: setattr(plan, "outage", Fault.UNAVAILABLE)))
    proxy.use(plan)
    registry = Registry(open_store(uri), MODEL)

    with pytest.raises(StorageUnavailable, match=f"{VERSIONS.removeprefix(PREFIX)}/1/manifest.json"):
        registry.publish(files, lineage(run_id="interrupted"))
    assert direct.get_blob(f"{VERSIONS}/1/{MODEL_FILE}") is not None  # the number was claimed
    assert assert_consistent(direct) == {}

    plan.outage = None  # GCS is back: the next run takes the next number
    assert registry.publish(files, lineage(run_id="next")).version == 2
    assert list(assert_consistent(direct)) == [2]


# -- the whole run -------------------------------------------------------------------------------
def test_keel_run_through_a_faulty_network(proxy: FaultProxy, direct: Any, uri: str,
                                           tmp_path: Path) -> None:
    """`keel run` (its stages are subprocesses, all behind the proxy) completes despite the faults."""
    direct.blob("in/credit.csv").upload_from_filename(str(CREDIT))
    rules = [Rule(upload_of(f"{VERSIONS}/1/{MODEL_FILE}"), Fault.DROP_RESPONSE),
             Rule(upload_of(f"{VERSIONS}/1/{MANIFEST_FILE}"), Fault.DROP_RESPONSE),
             Rule(upload_of(ALIAS), Fault.DROP_RESPONSE)]
    proxy.use(Plan(seed=SEED, share=0.2, rules=rules))

    result = run_keel("run", "--source", f"gs://{direct.name}/in/credit.csv", "--target", "Status",
                  "--store", uri, "--work-dir", str(tmp_path / "work"), "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert (summary["status"], summary["version"], summary["production_version"]) == (
        "promoted", 1, 1)
    assert all(rule.hits == 1 for rule in rules)
    assert all(proxy.counts[fault] for fault in RANDOM_FAULTS), proxy.counts
    assert list(assert_consistent(direct)) == [1]
    assert registry_on(direct).alias().version == 1


def test_keel_run_during_an_outage_fails_with_one_line(proxy: FaultProxy, direct: Any, uri: str,
                                                       tmp_path: Path) -> None:
    """GCS goes down at the manifest write of `keel run`: exit 1, one error line, nothing counted."""
    plan = Plan(seed=SEED, share=0.1)
    plan.rules.append(Rule(upload_of(f"{VERSIONS}/1/{MANIFEST_FILE}"), Fault.UNAVAILABLE,
                           before=lambda: setattr(plan, "outage", Fault.DROP_REQUEST)))
    proxy.use(plan)

    result = run_keel("run", "--source", str(CREDIT), "--target", "Status", "--store", uri,
                  "--work-dir", str(tmp_path / "work"), "--json", env={RETRY_DEADLINE_ENV: "1"})
    line = one_error_line(result)
    assert plan.rules[0].hits == 1, result.stderr[-3000:]  # it failed where it was meant to
    assert line.startswith("keel: error: [storage] Google Cloud Storage kept failing on "), line
    assert result.stdout.strip() == ""
    assert assert_consistent(direct) == {}
    assert direct.get_blob(ALIAS) is None

"""keel.storage: the same behaviour for a local folder and for gs://bucket/prefix (fake-gcs-server)."""

from __future__ import annotations

import pytest

import keel.storage
from keel.errors import ParameterError, RegistryConflict
from keel.storage import GCSStore, LocalStore, ObjectNotFound, open_binary, open_store

DOC = "registry/m/aliases/production.json"


@pytest.fixture
def store(store_uri):
    return open_store(store_uri)


def test_open_store_picks_the_backend(store_uri):
    store = open_store(store_uri)
    expected = GCSStore if store_uri.startswith("gs://") else LocalStore
    assert type(store) is expected
    assert store.uri == store_uri
    assert store.url("a/b.json") == f"{store_uri}/a/b.json"


@pytest.mark.parametrize("uri", ["s3://bucket/prefix", "http://example.com/x", "file:///tmp/x",
                                 "gs://", "gs:///prefix"])
def test_open_store_rejects_other_schemes(uri):
    with pytest.raises(ParameterError) as info:
        open_store(uri)
    assert repr(uri) in str(info.value)


def test_create_is_create_only(store):
    store.create("a/one.txt", b"first")
    with pytest.raises(RegistryConflict, match="a/one.txt"):
        store.create("a/one.txt", b"second")
    assert store.read_bytes("a/one.txt") == b"first"
    assert store.exists("a/one.txt")
    assert not store.exists("a/two.txt")
    assert store.list("a") == ["a/one.txt"]  # no leftover temporary file


def test_create_from_file(store, tmp_path):
    first, second = tmp_path / "first.bin", tmp_path / "second.bin"
    first.write_bytes(bytes(range(256)) * 10)
    second.write_bytes(b"other")
    store.create_from_file("blobs/x.bin", first)
    assert store.read_bytes("blobs/x.bin") == first.read_bytes()
    with pytest.raises(RegistryConflict):
        store.create_from_file("blobs/x.bin", second)
    assert store.read_bytes("blobs/x.bin") == first.read_bytes()
    out = tmp_path / "out.bin"
    store.download("blobs/x.bin", out)
    assert out.read_bytes() == first.read_bytes()


def test_json_round_trip(store):
    store.create_json("doc.json", {"b": [1, 2], "a": "x"})
    assert store.read_json("doc.json") == {"a": "x", "b": [1, 2]}


def test_missing_keys_raise_object_not_found(store, tmp_path):
    with pytest.raises(ObjectNotFound, match="nothing/here.bin"):
        store.read_bytes("nothing/here.bin")
    with pytest.raises(ObjectNotFound, match="nothing/here.bin"):
        store.download("nothing/here.bin", tmp_path / "dest.bin")
    assert not (tmp_path / "dest.bin").exists()
    assert ObjectNotFound("x").stage == "storage"


def test_list_is_recursive_sorted_and_bounded_by_prefix(store, store_uri):
    for key in ["a/b/2.txt", "a/b/1.txt", "a/b/c/3.txt", "a/bc/x.txt", "a/b.txt", "z.txt"]:
        store.create(key, key.encode())
    # A sibling store whose root shares the string prefix must not leak into this one.
    open_store(store_uri + "2").create("a/b/9.txt", b"other store")
    expected = ["a/b/1.txt", "a/b/2.txt", "a/b/c/3.txt"]
    assert store.list("a/b") == expected
    assert store.list("a/b/") == expected
    assert store.list("a/bc") == ["a/bc/x.txt"]
    assert store.list("missing") == []
    assert store.list("") == ["a/b.txt", *expected, "a/bc/x.txt", "z.txt"]


def test_read_document_missing(store):
    assert store.read_document(DOC) == (None, 0)


def test_swap_document_compare_and_swap(store):
    store.swap_document(DOC, {"version": 1}, 0)
    doc, gen1 = store.read_document(DOC)
    assert doc == {"version": 1, "generation": 1}
    assert gen1 != 0

    with pytest.raises(RegistryConflict):  # generation 0 means "absent": it exists now
        store.swap_document(DOC, {"version": 9}, 0)
    store.swap_document(DOC, {"version": 2}, gen1)
    doc, gen2 = store.read_document(DOC)
    assert doc == {"version": 2, "generation": 2}
    assert gen2 != gen1

    with pytest.raises(RegistryConflict, match="production.json"):
        store.swap_document(DOC, {"version": 3}, gen1)  # stale
    assert store.read_document(DOC) == ({"version": 2, "generation": 2}, gen2)

    store.swap_document(DOC, {"version": 3}, gen2)
    doc, _ = store.read_document(DOC)
    assert doc == {"version": 3, "generation": 3}  # the field counts moves
    assert store.list("registry/m/aliases") == [DOC]  # no lock or temporary files listed


def test_swap_document_with_a_made_up_generation_conflicts(store):
    with pytest.raises(RegistryConflict):
        store.swap_document(DOC, {"version": 1}, 7)
    assert store.read_document(DOC) == (None, 0)


def test_open_binary_local(tmp_path):
    path = tmp_path / "in.csv"
    path.write_bytes(b"a,b\n1,2\n")
    with open_binary(str(path)) as f:
        assert f.read() == b"a,b\n1,2\n"
    with pytest.raises(ObjectNotFound, match="missing.csv"):
        open_binary(str(tmp_path / "missing.csv"))
    with pytest.raises(ObjectNotFound):
        open_binary(str(tmp_path))  # a folder is not a file


def test_local_create_leaves_no_temporary_files(tmp_path):
    store = LocalStore(tmp_path)
    store.create("k/v.txt", b"1")
    with pytest.raises(RegistryConflict):
        store.create("k/v.txt", b"2")
    assert sorted(p.name for p in (tmp_path / "k").iterdir()) == ["v.txt"]


# -- GCS only -------------------------------------------------------------------------------------
@pytest.mark.gcs
def test_gcs_client_is_anonymous_and_talks_to_the_emulator(gcs_emulator):
    from google.auth.credentials import AnonymousCredentials

    keel.storage._client = None
    client = keel.storage.gcs_client()
    assert client is keel.storage.gcs_client()
    assert isinstance(client._credentials, AnonymousCredentials)
    assert client._connection.API_BASE_URL == gcs_emulator


@pytest.mark.gcs
def test_open_binary_gcs(gcs_bucket):
    from google.cloud import storage

    storage.Client().bucket(gcs_bucket).blob("in/data.csv").upload_from_string(b"x\n1\n")
    with open_binary(f"gs://{gcs_bucket}/in/data.csv") as f:
        assert f.read() == b"x\n1\n"
    with pytest.raises(ObjectNotFound, match="missing.csv"):
        open_binary(f"gs://{gcs_bucket}/in/missing.csv")
    with pytest.raises(ObjectNotFound):
        open_binary("gs://keel-no-such-bucket/in/data.csv")


@pytest.mark.gcs
def test_gcs_read_document_returns_the_object_generation(gcs_bucket):
    from google.cloud import storage

    store = GCSStore(f"gs://{gcs_bucket}/p")
    store.swap_document("doc.json", {"v": 1}, 0)
    blob = storage.Client().bucket(gcs_bucket).get_blob("p/doc.json")
    _, generation = store.read_document("doc.json")
    assert generation == blob.generation
    assert blob.content_type == "application/json"


@pytest.mark.gcs
def test_gcs_store_at_the_bucket_root(gcs_bucket):
    store = open_store(f"gs://{gcs_bucket}")
    assert store.uri == f"gs://{gcs_bucket}"
    store.create("x/1.txt", b"1")
    store.create("y.txt", b"2")
    assert store.read_bytes("x/1.txt") == b"1"
    assert store.list("x") == ["x/1.txt"]
    assert store.list("") == ["x/1.txt", "y.txt"]


def test_missing_credentials_are_one_clear_error(tmp_path, monkeypatch):
    # A key file that does not exist fails inside google.auth at once, with no network lookup.
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "absent-key.json"))
    monkeypatch.setattr(keel.storage, "_client", None)
    with pytest.raises(ParameterError) as caught:
        open_store("gs://bucket/prefix")
    message = str(caught.value)
    assert message.startswith("[storage] gs:// paths need Google Cloud credentials")
    assert "absent-key.json" in message and "GOOGLE_APPLICATION_CREDENTIALS" in message


@pytest.mark.gcs
def test_refused_access_is_one_clear_error(gcs_bucket):
    # The emulator has no permissions to refuse, so the refusal is raised where GCS would.
    from google.api_core.exceptions import Forbidden

    store = GCSStore(f"gs://{gcs_bucket}/p")
    with pytest.raises(ParameterError) as caught, store._translate("registry/m/x.json"):
        raise Forbidden("caller does not have storage.objects.create access")
    message = str(caught.value)
    assert f"gs://{gcs_bucket}/p/registry/m/x.json" in message
    assert "storage.objects.create" in message and repr(gcs_bucket) in message

"""Shared test helpers: valid contract objects (made from a real manifest that Keel 0.1.0 wrote),
and ways to damage a store behind the registry's back and to see that nothing changed."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from keel.contracts import Lineage, Manifest
from keel.storage import LocalStore, Store

STORE_0_1_0 = Path(__file__).parent / "data" / "store-0.1.0"
MANIFEST_0_1_0 = STORE_0_1_0 / "registry" / "credit" / "versions" / "1" / "manifest.json"


def lineage(**changes: Any) -> Lineage:
    """The lineage of version 1 of the bundled sample, with ``changes`` applied."""
    recorded = Manifest.from_json(MANIFEST_0_1_0.read_bytes())
    fields = {name: getattr(recorded, name) for name in Lineage.model_fields}
    fields["schema_version"] = Lineage.model_fields["schema_version"].default
    return Lineage(**{**fields, **changes})


def overwrite(store: Any, key: str, data: bytes) -> None:
    """Replace an object behind the registry's back (what tampering or bit rot would do)."""
    if isinstance(store, LocalStore):
        (store.root / key).write_bytes(data)
    else:
        store.bucket.blob(store._name(key)).upload_from_string(data)


def delete(store: Any, key: str) -> None:
    """Remove an object behind the registry's back."""
    if isinstance(store, LocalStore):
        (store.root / key).unlink()
    else:
        store.bucket.blob(store._name(key)).delete()


def state(store: Store | Any) -> dict[str, str]:
    """Every object of the store with its content hash (and GCS generation): "unchanged" is equality.

    Locally this includes hidden files (lock files) and folders, so nothing a failed command
    creates can hide.
    """
    if isinstance(store, LocalStore):
        if not store.root.exists():
            return {}
        return {str(p.relative_to(store.root)):
                hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
                for p in sorted(store.root.rglob("*"))}
    return {b.name: f"{b.md5_hash}@{b.generation}"
            for b in store.bucket.list_blobs(prefix=f"{store.prefix}/")}


@pytest.fixture(autouse=True)
def one_thread():
    """OpenMP threads fighting over 2 shared cores make HistGradientBoosting 100x slower.

    Autouse in the modules that import it (test_train, test_search), which fit many models.
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        yield

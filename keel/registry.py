"""The versioned model registry (layout and semantics in DESIGN.md, "The store").

- ``registry/<model>/versions/<N>/`` holds immutable files; ``manifest.json`` is written last and is
  the commit point: a version without it is invisible (a crash leaves no half version).
- Version numbers are claimed by the create-only write of the version's first file, so two runs
  never get the same number.
- ``aliases/production.json`` moves by compare-and-swap on its generation, so of two runs that
  evaluated against the same production model only one can promote; every move is an event.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from keel.contracts import FileDigest, Lineage, Manifest
from keel.errors import IntegrityError, ParameterError, RegistryConflict, RegistryError
from keel.storage import Store

MODEL_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
PRODUCTION = "production"
MODEL_FILE = "model.joblib"
MANIFEST_FILE = "manifest.json"


def now() -> str:
    """The current UTC time, to the second, ISO 8601."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def sha256_file(path: str | os.PathLike[str]) -> str:
    """The sha256 of a local file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_model_name(name: str, stage: str | None = None) -> str:
    """A registry name that is also a safe folder and object name."""
    if not isinstance(name, str) or not MODEL_NAME.fullmatch(name):
        raise ParameterError(
            "The 'model' parameter must be 1-63 lowercase letters, digits, '.', '_' or '-', "
            f"starting with a letter or digit. Got {name!r}.",
            stage=stage,
        )
    return name


@dataclass(frozen=True)
class Alias:
    """Where an alias points, and the generation to quote when moving it."""

    version: int | None
    generation: int
    doc: dict[str, Any] | None


class Registry:
    """The versions, aliases and events of one model in a store."""

    def __init__(self, store: Store, model: str):
        self.store = store
        self.model = check_model_name(model)
        self.root = f"registry/{self.model}"

    # -- reading ---------------------------------------------------------------------------
    def _version_key(self, version: int, name: str) -> str:
        return f"{self.root}/versions/{version}/{name}"

    def _numbers(self, filename: str | None = None) -> list[int]:
        numbers = set()
        for key in self.store.list(f"{self.root}/versions"):
            number, _, name = key[len(self.root) + len("/versions/") :].partition("/")
            if number.isdigit() and (filename is None or name == filename):
                numbers.add(int(number))
        return sorted(numbers)

    def versions(self) -> list[int]:
        """Complete versions only (those whose manifest exists), ascending."""
        return self._numbers(MANIFEST_FILE)

    def manifest(self, version: int) -> Manifest:
        """The manifest of a complete version; a ContractError naming the file if it is damaged."""
        key = self._version_key(version, MANIFEST_FILE)
        if not self.store.exists(key):
            known = ", ".join(map(str, self.versions())) or "none"
            raise RegistryError(
                f"Model {self.model!r} has no version {version} in {self.store.uri}. "
                f"Versions: {known}."
            )
        return Manifest.from_json(self.store.read_bytes(key), origin=self.store.url(key),
                                  stage="registry")

    def alias(self, name: str = PRODUCTION) -> Alias:
        """Where the alias points now (version None when it was never set)."""
        doc, generation = self.store.read_document(f"{self.root}/aliases/{name}.json")
        return Alias(version=doc["version"] if doc else None, generation=generation, doc=doc)

    def events(self) -> list[dict[str, Any]]:
        """Every promotion and rollback, oldest first."""
        return [self.store.read_json(k) for k in self.store.list(f"{self.root}/events")]

    def download_verified(self, version: int, name: str, dest: str | os.PathLike[str]) -> Path:
        """Download one file of a version and check it against the manifest's sha256."""
        expected = self.manifest(version).files.get(name)
        if expected is None:
            raise RegistryError(f"Version {version} of {self.model!r} has no file {name!r}.")
        dest = Path(dest)
        self.store.download(self._version_key(version, name), dest)
        actual = sha256_file(dest)
        if actual != expected.sha256:
            dest.unlink()
            raise IntegrityError(
                f"{self.store.url(self._version_key(version, name))} has sha256 {actual}, but its "
                f"manifest recorded {expected.sha256}; the file was changed after registration "
                "and will not be loaded. Restore it from a backup, or move production to another "
                "version with `keel models rollback --to N`."
            )
        return dest

    def load_model(self, version: int) -> Any:
        """The fitted pipeline of a version, verified against its manifest before unpickling."""
        import joblib

        with tempfile.TemporaryDirectory(prefix="keel-model-") as tmp:
            path = self.download_verified(version, MODEL_FILE, Path(tmp) / MODEL_FILE)
            return joblib.load(path)

    # -- writing ---------------------------------------------------------------------------
    def store_snapshot(self, snapshot_path: str | os.PathLike[str], data_version: str) -> str:
        """Keep the data a version was trained on, content-addressed (written once, then reused).

        Snapshots sit beside the registry (``data/<data version>/``), shared by every model
        trained on the same rows; returns the snapshot's URI for the manifest.
        """
        key = f"data/{data_version}/snapshot.parquet"
        if not self.store.exists(key):
            try:
                self.store.create_from_file(key, snapshot_path)
            except RegistryConflict:
                pass  # the same content was stored by a concurrent run
        return self.store.url(key)

    def publish(self, files: dict[str, str | os.PathLike[str]], lineage: Lineage) -> Manifest:
        """Register a new immutable version: claim a number, upload files, write the manifest.

        ``files`` maps file names to local paths; the first one claims the number.
        """
        hashes = {name: FileDigest(sha256=sha256_file(path)) for name, path in files.items()}
        # Made (and so checked) before a number is claimed: a bad record costs no version.
        draft = Manifest(**dict(lineage), model=self.model, version=1, files=hashes,
                         registered_at=now())
        names = list(files)
        for _attempt in range(100):
            claimed = self._numbers()
            version = (claimed[-1] if claimed else 0) + 1
            try:
                self.store.create_from_file(self._version_key(version, names[0]), files[names[0]])
            except RegistryConflict:
                continue  # another run claimed this number first; take the next one
            break
        else:
            raise RegistryConflict(f"Could not claim a version number for {self.model!r}.")
        for name in names[1:]:
            self.store.create_from_file(self._version_key(version, name), files[name])
        manifest = draft.model_copy(update={"version": version, "registered_at": now()})
        self.store.create(self._version_key(version, MANIFEST_FILE),
                          (manifest.model_dump_json(indent=2) + "\n").encode())
        return manifest

    def move_alias(
        self,
        version: int,
        *,
        expected_generation: int,
        action: str,
        reason: str,
        run_id: str = "",
        name: str = PRODUCTION,
    ) -> dict[str, Any]:
        """Point an alias at a complete version, if nobody moved it since ``expected_generation``."""
        self.manifest(version)  # must be complete
        current = self.alias(name)
        key = f"{self.root}/aliases/{name}.json"
        doc = {"version": version, "reason": reason, "action": action, "updated_at": now(),
               "run_id": run_id}
        try:
            self.store.swap_document(key, doc, expected_generation)
        except RegistryConflict:
            latest = self.alias(name)
            raise RegistryConflict(
                f"The {name!r} alias of {self.model!r} was moved by another run (it now points at "
                f"version {latest.version}) after this run read it; version {version} was "
                "registered but not promoted. Run again to compare against the new production model."
            ) from None
        event = {"action": action, "alias": name, "from": current.version, "to": version,
                 "reason": reason, "run_id": run_id, "at": doc["updated_at"]}
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        self.store.create_json(f"{self.root}/events/{stamp}-{uuid.uuid4().hex[:8]}.json", event)
        return event

    def rollback(self, to: int | None = None, reason: str = "") -> dict[str, Any]:
        """Move production back to the newest earlier production version, or to ``to``."""
        current = self.alias()
        if current.version is None:
            raise RegistryError(f"Model {self.model!r} has no production version to roll back.")
        if to is None:
            ever, rolled_back = set(), set()
            for event in self.events():
                if event["alias"] != PRODUCTION:
                    continue
                ever.add(event["to"])
                rolled_back.discard(event["to"])
                if event["action"] == "rollback" and (event["from"] or 0) > event["to"]:
                    rolled_back.add(event["from"])  # rolled back away from: not a target
            earlier = {v for v in ever - rolled_back if v < current.version}
            if not earlier:
                raise RegistryError(
                    f"Model {self.model!r} has no production version before {current.version}; "
                    "name one with --to N."
                )
            to = max(earlier)
        if to == current.version:
            raise RegistryError(f"Version {to} of {self.model!r} is already in production.")
        return self.move_alias(
            to,
            expected_generation=current.generation,
            action="rollback",
            reason=reason or f"rollback from version {current.version}",
        )

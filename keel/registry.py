"""The versioned model registry (layout and semantics in DESIGN.md, "The store").

- ``registry/<model>/versions/<N>/`` holds immutable files; ``manifest.json`` is written last and is
  the commit point: a version without it is invisible (a crash leaves no half version).
- Version numbers are claimed by the create-only write of the version's first file, so two runs
  never get the same number.
- ``aliases/production.json`` moves by compare-and-swap on its generation, so of two runs that
  evaluated against the same production model only one can promote; every move is an event.
- Damage is never papered over: the alias never moves to a version whose files fail their sha256
  check, and a missing alias whose moves are in the event log is an error, not a first run.
"""

from __future__ import annotations

import getpass
import hashlib
import os
import re
import shlex
import socket
import tempfile
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from keel.contracts import (
    SCHEMA_VERSION,
    ContractError,
    Decision,
    FileDigest,
    Lineage,
    Manifest,
)
from keel.errors import IntegrityError, KeelError, ParameterError, RegistryConflict, RegistryError
from keel.storage import DamagedObject, ObjectNotFound, Store

MODEL_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
PRODUCTION = "production"
MODEL_FILE = "model.joblib"
MANIFEST_FILE = "manifest.json"
MODEL_CARD_FILE = "model_card.html"  # written by publish
# Event actions: promote.py writes "promote"; `keel models rollback` writes "rollback" (or
# "restore" when production.json was missing); `keel models promote` writes "override".
ROLLBACK, RESTORE, OVERRIDE = "rollback", "restore", "override"
RESTORE_FROM_BACKUP = "restore it from a backup (or your bucket's object versions)"


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


def who() -> str:
    """``user@host`` of the person running a command, for the events of manual moves."""
    try:
        user = getpass.getuser()
    except (OSError, KeyError):  # no login name and no passwd entry (some containers)
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def check_model_name(name: str, stage: str | None = None) -> str:
    """A registry name that is also a safe folder and object name."""
    if not isinstance(name, str) or not MODEL_NAME.fullmatch(name):
        raise ParameterError(
            "The 'model' parameter must be 1-63 lowercase letters, digits, '.', '_' or '-', "
            f"starting with a letter or digit. Got {name!r}.",
            stage=stage,
        )
    return name


def model_names(store: Store) -> list[str]:
    """The models a store holds (a name with any object below ``registry/<name>/``)."""
    names = set()
    for key in store.list("registry"):
        parts = key.split("/")
        if len(parts) >= 3:
            names.add(parts[1])
    return sorted(names)


class UnknownVersion(RegistryError):
    """A version number that the model does not have (no ``manifest.json``): not damage."""


class DamagedVersion(RegistryError):
    """A version whose manifest or files do not match what was registered."""


class MissingAlias(RegistryError):
    """An alias document that is gone although the event log records moves of it."""


@dataclass(frozen=True)
class Alias:
    """Where an alias points, and the generation to quote when moving it."""

    version: int | None
    generation: int
    doc: dict[str, Any] | None


@dataclass(frozen=True)
class Damage:
    """One damaged object of a version: the file, its URI, and a sentence naming what is wrong."""

    file: str
    url: str
    problem: str

    def to_dict(self) -> dict[str, str]:
        """The JSON form ``keel models list/show --json`` print."""
        return {"file": self.file, "object": self.url, "problem": self.problem}


@dataclass(frozen=True)
class VersionCheck:
    """What :meth:`Registry.verify` found: the manifest (None if unreadable) and every damage."""

    version: int
    manifest: Manifest | None
    damage: tuple[Damage, ...] = field(default=())

    @property
    def damaged(self) -> bool:
        """Whether anything is wrong with the version."""
        return bool(self.damage)


def repair_hint(model: str) -> str:
    """How to get out of damage: the file back, or production onto another version.

    Ends the message, so it survives a one-line error shortened in the middle.
    """
    return ("Restore the file from a backup (or your bucket's object versions), or move "
            f"production to another version: `keel models rollback --model {model} --to N "
            "--reason TEXT`.")


class Registry:
    """The versions, aliases and events of one model in a store."""

    def __init__(self, store: Store, model: str):
        self.store = store
        self.model = check_model_name(model)
        self.root = f"registry/{self.model}"

    # -- reading ---------------------------------------------------------------------------
    def _version_key(self, version: int, name: str) -> str:
        return f"{self.root}/versions/{version}/{name}"

    def _alias_key(self, name: str) -> str:
        return f"{self.root}/aliases/{name}.json"

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

    def unknown_version(self, version: int) -> UnknownVersion:
        """The error for a version number the model does not have, listing those it has."""
        known = ", ".join(map(str, self.versions())) or "none"
        return UnknownVersion(
            f"Model {self.model!r} has no version {version} in {self.store.uri}. Versions: {known}."
        )

    def manifest(self, version: int) -> Manifest:
        """The manifest of a complete version; a damaged one is an error naming the file."""
        key = self._version_key(version, MANIFEST_FILE)
        try:
            if version < 1:
                raise ObjectNotFound(key)
            data = self.store.read_bytes(key)
        except ObjectNotFound:
            raise self.unknown_version(version) from None
        doc = self.store.parse_json(key, data)  # corrupt JSON: DamagedObject naming the object
        try:
            return Manifest.from_json(data, origin=self.store.url(key), stage="registry")
        except ContractError as exc:
            found = doc.get("schema_version") if isinstance(doc, dict) else None
            if isinstance(found, int) and found > SCHEMA_VERSION:
                raise  # not damage: a newer Keel wrote it, and the message says to upgrade
            raise ContractError(f"{exc.args[0]} It does not read as the manifest Keel registered: "
                                f"{RESTORE_FROM_BACKUP}.", stage="registry") from None

    def verify(self, version: int) -> VersionCheck:
        """Every problem of a version: an unreadable manifest, a missing file, a wrong sha256.

        Reads every file of the version once, through the store; an unknown version number is
        an :class:`UnknownVersion` error, not damage.
        """
        try:
            manifest = self.manifest(version)
        except UnknownVersion:
            raise
        except KeelError as exc:  # DamagedObject (not JSON) or ContractError (not a manifest)
            key = self._version_key(version, MANIFEST_FILE)
            return VersionCheck(version, None, (Damage(MANIFEST_FILE, self.store.url(key),
                                                       str(exc.args[0])),))
        damage: list[Damage] = []
        url = self.store.url(self._version_key(version, MANIFEST_FILE))
        if (manifest.model, manifest.version) != (self.model, version):
            damage.append(Damage(MANIFEST_FILE, url, (
                f"{url} records model {manifest.model!r} version {manifest.version}, not "
                f"{self.model!r} version {version}: it was copied or changed after registration."
            )))
        if MODEL_FILE not in manifest.files:
            damage.append(Damage(MODEL_FILE, self.store.url(self._version_key(version, MODEL_FILE)),
                                 f"{url} lists no {MODEL_FILE}, so there is no model to serve."))
        for name, expected in manifest.files.items():
            key = self._version_key(version, name)
            try:
                actual = self._stored_sha256(key)
            except ObjectNotFound:
                damage.append(Damage(name, self.store.url(key), self._missing(key, expected)))
                continue
            if actual != expected.sha256:
                damage.append(Damage(name, self.store.url(key),
                                     self._mismatch(key, actual, expected)))
        return VersionCheck(version, manifest, tuple(damage))

    def _stored_sha256(self, key: str) -> str:
        """The sha256 of a stored object: one read through the store (its retries included)."""
        with tempfile.TemporaryDirectory(prefix="keel-verify-") as tmp:
            copy = Path(tmp) / "object"
            self.store.download(key, copy)
            return sha256_file(copy)

    def _missing(self, key: str, expected: FileDigest) -> str:
        return (f"{self.store.url(key)} is missing; its manifest recorded it with sha256 "
                f"{expected.sha256}.")

    def _mismatch(self, key: str, actual: str, expected: FileDigest) -> str:
        return (f"{self.store.url(key)} has sha256 {actual}, but its manifest recorded "
                f"{expected.sha256}; the file was changed after registration.")

    def _read_alias(self, name: str) -> Alias:
        """The alias document as stored (version None when absent), checked for shape."""
        key = self._alias_key(name)
        doc, generation = self.store.read_document(key)
        if doc is None:
            return Alias(version=None, generation=generation, doc=None)
        version = doc.get("version")
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise DamagedObject(
                f"{self.store.url(key)} does not name a version (got {version!r}); it was damaged "
                f"after Keel wrote it: {RESTORE_FROM_BACKUP}.", stage="registry")
        return Alias(version=version, generation=generation, doc=doc)

    def alias(self, name: str = PRODUCTION) -> Alias:
        """Where the alias points now; version None only when it was never set.

        A missing alias document whose moves are in the event log is damage, never a first run:
        a :class:`MissingAlias` that says which version the last event put there and how to
        restore it.
        """
        current = self._read_alias(name)
        if current.version is None:
            last = self._last_move(name)
            if last is not None:
                raise MissingAlias(self._missing_alias_message(name, *last))
        return current

    def _missing_alias_message(self, name: str, key: str, event: dict[str, Any]) -> str:
        # What and which version first, then the command: a shortened line keeps its start.
        command = shlex.join(["keel", "models", "rollback", "--model", self.model, "--to",
                              str(event["to"]), "--reason", f"restore {name}.json", "--store",
                              self.store.uri])
        return (
            f"{name}.json of {self.model!r} is missing; its last event put version "
            f"{event['to']} in {name}. Restore it: `{command}`. It was deleted or lost; "
            f"until it is restored nothing is scored against {name} or promoted (a backup, or "
            f"your bucket's object versions, also has it). Missing: "
            f"{self.store.url(self._alias_key(name))}; last event: {self.store.url(key)} (a "
            f"{event['action']} at {event.get('at', 'an unknown time')})."
        )

    def _event(self, key: str) -> dict[str, Any]:
        """One event record, checked: a damaged one is an error naming the object."""
        event = self.store.read_json(key)
        problem = None
        if not isinstance(event, dict):
            problem = "is not a JSON object"
        else:
            for field_name, ok in (
                ("action", isinstance(event.get("action"), str)),
                ("alias", isinstance(event.get("alias"), str)),
                ("to", _is_version(event.get("to"))),
                ("from", event.get("from") is None or _is_version(event.get("from"))),
            ):
                if not ok:
                    problem = f"has no valid {field_name!r} field (got {event.get(field_name)!r})"
                    break
        if problem is not None:
            raise DamagedObject(f"{self.store.url(key)} {problem}; the event was damaged after "
                                f"Keel wrote it: {RESTORE_FROM_BACKUP}.", stage="registry")
        return dict(event)

    def events(self) -> list[dict[str, Any]]:
        """Every promotion, rollback and restore, oldest first."""
        return [self._event(k) for k in self.store.list(f"{self.root}/events")]

    def _last_move(self, name: str) -> tuple[str, dict[str, Any]] | None:
        """The newest event that moved alias ``name`` (key and record), reading from the end."""
        for key in reversed(self.store.list(f"{self.root}/events")):
            event = self._event(key)
            if event["alias"] == name:
                return key, event
        return None

    def download_verified(self, version: int, name: str, dest: str | os.PathLike[str],
                          manifest: Manifest | None = None) -> Path:
        """Download one file of a version and check it against the manifest's sha256."""
        manifest = manifest or self.manifest(version)
        expected = manifest.files.get(name)
        key = self._version_key(version, name)
        if expected is None and name == MODEL_FILE:
            raise DamagedVersion(f"Version {version} of {self.model!r} has no file {name!r}: its "
                                 f"manifest does not list it. {repair_hint(self.model)}")
        if expected is None:
            raise RegistryError(f"Version {version} of {self.model!r} has no file {name!r}.")
        dest = Path(dest)
        try:
            self.store.download(key, dest)
        except ObjectNotFound:
            raise DamagedVersion(f"Version {version} of {self.model!r} is damaged: "
                                 f"{self._missing(key, expected)} {repair_hint(self.model)}") from None
        actual = sha256_file(dest)
        if actual != expected.sha256:
            dest.unlink()
            raise IntegrityError(
                f"{self._mismatch(key, actual, expected)} It will not be loaded. "
                f"{repair_hint(self.model)}"
            )
        return dest

    def load_model(self, version: int) -> Any:
        """The fitted pipeline of a version, verified against its manifest before unpickling.

        A file that matches its sha256 but cannot be unpickled here (another scikit-learn, a
        missing module) is a :class:`RegistryError` saying so: never a model that "could not
        be scored".
        """
        import joblib
        import sklearn

        manifest = self.manifest(version)
        with tempfile.TemporaryDirectory(prefix="keel-model-") as tmp:
            path = self.download_verified(version, MODEL_FILE, Path(tmp) / MODEL_FILE, manifest)
            try:
                return joblib.load(path)
            except Exception as exc:
                env = manifest.environment
                raise RegistryError(
                    f"{self.store.url(self._version_key(version, MODEL_FILE))} matches its "
                    f"recorded sha256 but cannot be loaded here ({type(exc).__name__}: {exc}). It "
                    f"was saved with scikit-learn {env.scikit_learn} on Python {env.python}; this "
                    f"is scikit-learn {sklearn.__version__}. Run Keel with the versions it was "
                    "saved with, or move production to another version with `keel models "
                    "rollback --to N --reason TEXT`."
                ) from exc

    def version_key(self, version: int, name: str) -> str:
        """The store key of one file of a version."""
        return self._version_key(version, name)

    def file_url(self, version: int, name: str) -> str:
        """The URI of one file of a version (for people: the model card, the manifest)."""
        return self.store.url(self._version_key(version, name))

    # -- writing ---------------------------------------------------------------------------
    @staticmethod
    def snapshot_key(data_version: str) -> str:
        """Where the snapshot of a data version is kept, beside the registry (shared by models)."""
        return f"data/{data_version}/snapshot.parquet"

    def store_snapshot(self, snapshot_path: str | os.PathLike[str], data_version: str) -> str:
        """Keep the data a version was trained on, content-addressed (written once, then reused).

        Snapshots sit beside the registry (``data/<data version>/``), shared by every model
        trained on the same rows; returns the snapshot's URI for the manifest.
        """
        key = self.snapshot_key(data_version)
        if not self.store.exists(key):
            try:
                self.store.create_from_file(key, snapshot_path)
            except RegistryConflict:
                pass  # the same content was stored by a concurrent run
        return self.store.url(key)

    def publish(
        self, files: dict[str, str | os.PathLike[str]], lineage: Lineage,
        numbered: Callable[[int], dict[str, str | os.PathLike[str]]] | None = None,
    ) -> Manifest:
        """Register a new immutable version: claim a number, upload files, write the manifest.

        ``files`` maps file names to local paths; the first one claims the number.
        ``numbered(version)`` makes more files once the number is known (the model card shows
        it); they are uploaded and hashed like the others, before the manifest.
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
        late = numbered(version) if numbered is not None else {}
        for name in [*names[1:], *late]:
            self.store.create_from_file(self._version_key(version, name),
                                        files[name] if name in files else late[name])
        hashes.update({name: FileDigest(sha256=sha256_file(path)) for name, path in late.items()})
        manifest = draft.model_copy(update={"version": version, "registered_at": now(),
                                            "files": hashes})
        self.store.create(self._version_key(version, MANIFEST_FILE),
                          (manifest.model_dump_json(indent=2) + "\n").encode())
        return manifest

    def refuse_damaged(self, check: VersionCheck, name: str = PRODUCTION) -> None:
        """Raise :class:`DamagedVersion` (what is damaged, how to repair) if ``check`` found any."""
        if check.damaged:
            raise DamagedVersion(
                f"Version {check.version} of {self.model!r} is damaged, so {name} was not moved to "
                f"it. {' '.join(d.problem for d in check.damage)} {repair_hint(self.model)}"
            )

    def move_alias(
        self,
        version: int,
        *,
        expected_generation: int,
        action: str,
        reason: str,
        run_id: str = "",
        name: str = PRODUCTION,
        forced: Sequence[str] = (),
    ) -> dict[str, Any]:
        """Point an alias at a verified version, if nobody moved it since ``expected_generation``.

        Every file of the version is read and checked against its sha256 first: an alias never
        points at a damaged version. Only a ``restore`` may recreate an alias whose moves are
        in the event log; ``forced`` lists the rules an explicit ``--force`` overrode.
        """
        current = self._read_alias(name) if action == RESTORE else self.alias(name)
        check = self.verify(version)
        self.refuse_damaged(check, name)
        return self._move(version, current, expected_generation=expected_generation,
                          action=action, reason=reason, run_id=run_id, name=name, forced=forced)

    def _move(self, version: int, current: Alias, *, expected_generation: int, action: str,
              reason: str, run_id: str, name: str, forced: Sequence[str], by: str = ""
              ) -> dict[str, Any]:
        """Swap the alias document and log the event (the version is already verified).

        ``by`` (``user@host``) names who moved it by hand; a run is named by ``run_id``.
        """
        key = self._alias_key(name)
        doc: dict[str, Any] = {"version": version, "reason": reason, "action": action,
                               "updated_at": now(), "run_id": run_id, "forced": bool(forced)}
        if by:
            doc["by"] = by
        try:
            self.store.swap_document(key, doc, expected_generation)
        except RegistryConflict:
            latest = self._read_alias(name)
            moved = (f"The {name!r} alias of {self.model!r} was moved by another run (it now "
                     f"points at version {latest.version})")
            if by:  # a command run by hand: nothing was registered
                raise RegistryConflict(
                    f"{moved} after this command read it, so it was not moved to version "
                    f"{version}. Check `keel models list`, then run the command again if you "
                    "still want it.") from None
            raise RegistryConflict(
                f"{moved} after this run read it; version {version} was registered but not "
                "promoted. Run again to compare against the new production model."
            ) from None
        event: dict[str, Any] = {
            "action": action, "alias": name, "from": current.version, "to": version,
            "reason": reason, "run_id": run_id, "at": doc["updated_at"], "forced": bool(forced)}
        if by:
            event["by"] = by
        if forced:
            event["forced_because"] = list(forced)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        self.store.create_json(f"{self.root}/events/{stamp}-{uuid.uuid4().hex[:8]}.json", event)
        return event

    def rollback(self, to: int | None = None, reason: str = "", force: bool = False,
                 before_move: Callable[[int], None] | None = None) -> dict[str, Any]:
        """Move production back to the newest earlier production version, or to ``to``.

        Refused for a damaged version (always), and for a version its gate rejected or one
        newer than production unless ``force`` with a ``reason``: the event records both. With
        production.json missing, ``to`` restores it (action ``restore``). ``before_move`` is
        called with the target once every check passed and before the alias moves (a rollback
        that is a deployment deploys there): if it raises, production does not move.
        """
        if force and not reason.strip():
            raise RegistryError("--force needs --reason TEXT saying why; the event log records it.")
        current = self._read_alias(PRODUCTION)
        reference = current.version
        if current.version is None:
            last = self._last_move(PRODUCTION)
            if last is None:
                raise RegistryError(f"Model {self.model!r} has no production version to roll back.")
            if to is None:
                raise MissingAlias(self._missing_alias_message(PRODUCTION, *last))
            reference = last[1]["to"]  # the version the last event put in production
        elif to is None:
            to = self._previous_production(current.version)
        elif to == current.version:
            raise RegistryError(f"Version {to} of {self.model!r} is already in production.")
        check = self.verify(to)  # an unknown version is an UnknownVersion error
        self.refuse_damaged(check)
        decision = check.manifest.decision if check.manifest else None  # None: refused above
        needs_force = []
        if decision is not None and not decision.passed:
            failed = ", ".join(_failed(decision))
            needs_force.append(f"version {to} was rejected by its evaluation gate ({failed})")
        if reference is not None and to > reference:
            what = ("production version" if current.version is not None else
                    "the last recorded production version")
            needs_force.append(f"version {to} is newer than {what} {reference} (a roll forward)")
        if needs_force and not force:
            raise RegistryError(
                f"Production of {self.model!r} was not moved to version {to}: "
                f"{'; '.join(needs_force)}. To do it anyway, pass --force with --reason TEXT "
                "(the event records both)."
            )
        if before_move is not None:
            before_move(to)
        restoring = current.version is None
        default = (f"restore {PRODUCTION}.json (missing; the last event put version {reference} "
                   "in production)" if restoring else f"rollback from version {current.version}")
        return self._move(
            to, current,
            expected_generation=current.generation,
            action=RESTORE if restoring else ROLLBACK,
            reason=reason.strip() or default,
            run_id="",
            name=PRODUCTION,
            forced=needs_force,
            by=who(),
        )

    def promote_manually(self, version: int, reason: str | None) -> dict[str, Any] | None:
        """Move production to ``version`` by hand, whatever its gate decided: a recorded override.

        ``reason`` is required. The alias moves by compare-and-swap like every move, never to a
        damaged version; the event (action ``override``) records the reason, who and when, and
        in ``forced_because`` the gate rejection it overrode, if any. Returns None, moving
        nothing, when ``version`` is already in production. A missing production.json whose
        moves are in the event log is a :class:`MissingAlias` error (``rollback --to`` restores it).
        """
        text = (reason or "").strip()
        if not text:
            got = "no --reason" if reason is None else f"--reason {reason!r}"
            raise RegistryError(
                f"A manual promotion needs --reason TEXT saying why production is overridden (the "
                f"event log records it); got {got}.")
        current = self.alias()
        if current.version == version:
            return None
        check = self.verify(version)  # an unknown version is an UnknownVersion error
        self.refuse_damaged(check)
        decision = check.manifest.decision if check.manifest else None  # None: refused above
        overridden = []
        if decision is not None and not decision.passed:
            overridden.append(f"version {version} was rejected by its evaluation gate "
                              f"({', '.join(_failed(decision))})")
        return self._move(version, current, expected_generation=current.generation,
                          action=OVERRIDE, reason=text, run_id="", name=PRODUCTION,
                          forced=overridden, by=who())

    def resolve(self, version: int | str) -> int:
        """A version number, or ``production`` for the version production points at now."""
        if version == PRODUCTION:
            current = self.alias().version
            if current is None:
                known = ", ".join(map(str, self.versions())) or "none"
                raise RegistryError(f"Model {self.model!r} has no production version; name a "
                                    f"version number instead (versions: {known}).")
            return current
        if isinstance(version, int):
            return version
        if not version.strip().lstrip("-").isdigit():
            raise ParameterError(f"A version must be a number or {PRODUCTION!r}; got {version!r}.",
                                 stage="registry")
        return int(version)

    def _previous_production(self, version: int) -> int:
        """The newest version before ``version`` that was in production and not rolled back from."""
        ever: set[int] = set()
        rolled_back: set[int] = set()
        for event in self.events():
            if event["alias"] != PRODUCTION:
                continue
            ever.add(event["to"])
            rolled_back.discard(event["to"])
            if event["action"] == ROLLBACK and (event["from"] or 0) > event["to"]:
                rolled_back.add(event["from"])  # rolled back away from: not a target
        earlier = {v for v in ever - rolled_back if v < version}
        if not earlier:
            raise RegistryError(
                f"Model {self.model!r} has no production version before {version}; "
                "name one with --to N."
            )
        return max(earlier)


def _is_version(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _failed(decision: Decision) -> list[str]:
    """``metric check`` of every check a decision failed."""
    return [f"{c.metric} {c.check}" for c in decision.checks if not c.passed]

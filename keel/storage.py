"""One place that knows local folders and ``gs://`` URIs.

A :class:`Store` is a flat key space under a root (a folder, or ``gs://bucket/prefix``). It offers
exactly the primitives the registry needs to never lose or half-write anything:

- ``create``: create-only write (exclusive hard link locally, ``if_generation_match=0`` on GCS), so
  two writers can never both create the same key and nothing is silently overwritten;
- ``read_document`` / ``swap_document``: compare-and-swap of a small JSON document through a
  generation token (a counter under ``flock`` locally, the object generation on GCS).
"""

from __future__ import annotations

import abc
import contextlib
import fcntl
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from typing_extensions import override

from keel.errors import KeelError, ParameterError, RegistryConflict


class ObjectNotFound(KeelError):
    """A key or URI that should exist does not."""

    stage = "storage"


class DamagedObject(KeelError):
    """A stored document cannot be read as what Keel wrote (corrupt JSON, missing fields)."""

    stage = "storage"


def is_gcs(uri: str) -> bool:
    """Whether ``uri`` names Google Cloud Storage."""
    return uri.startswith("gs://")


def split_gcs(uri: str, stage: str | None = None) -> tuple[str, str]:
    """``gs://bucket/a/b`` -> ``("bucket", "a/b")``."""
    rest = uri[len("gs://") :]
    bucket, _, prefix = rest.partition("/")
    if not bucket:
        raise ParameterError(
            f"A gs:// URI must name a bucket, like gs://bucket/prefix. Got {uri!r}.", stage=stage
        )
    return bucket, prefix.strip("/")


_client: Any = None


def gcs_client() -> Any:
    """A shared client; honours STORAGE_EMULATOR_HOST (anonymous credentials) like gcloud does."""
    global _client
    if _client is None:
        from google.auth.exceptions import DefaultCredentialsError
        from google.cloud import storage

        try:
            _client = storage.Client()
        except DefaultCredentialsError as exc:
            raise ParameterError(
                "gs:// paths need Google Cloud credentials: run `gcloud auth "
                "application-default login`, or set GOOGLE_APPLICATION_CREDENTIALS to a service "
                f"account key file. Got: {str(exc).splitlines()[0]}",
                stage="storage",
            ) from None
    return _client


def check_store_uri(uri: str) -> str:
    """A local folder or ``gs://bucket/prefix``; any other scheme is refused, not made a folder."""
    if is_gcs(uri):
        split_gcs(uri, stage="publish")
    elif "://" in uri:
        raise ParameterError(
            "The 'store' parameter must be a local folder or a gs://bucket/prefix URI; the "
            f"scheme {uri.split('://', 1)[0] + '://'!r} is not supported. Got {uri!r}.",
            stage="publish",
        )
    return uri


def open_store(uri: str) -> Store:
    """The store at ``uri``: a :class:`GCSStore` for ``gs://``, else a :class:`LocalStore`."""
    if is_gcs(check_store_uri(uri)):
        return GCSStore(uri)
    return LocalStore(uri)


def open_binary(uri: str) -> IO[bytes]:
    """Open a source file (local path or ``gs://``) for streaming reads."""
    if is_gcs(uri):
        from google.api_core.exceptions import NotFound

        bucket, name = split_gcs(uri)
        blob = gcs_client().bucket(bucket).blob(name)
        try:
            blob.reload()
        except NotFound:
            raise ObjectNotFound(f"{uri} does not exist.") from None
        stream: IO[bytes] = blob.open("rb")
        return stream
    path = Path(uri)
    if not path.is_file():
        raise ObjectNotFound(f"{uri} does not exist or is not a file.")
    return path.open("rb")


class Store(abc.ABC):
    """Key/value access to a registry root. Keys use ``/`` separators."""

    uri: str

    def url(self, key: str) -> str:
        """The full URI of ``key``, for messages and manifests."""
        return f"{self.uri.rstrip('/')}/{key}"

    @abc.abstractmethod
    def read_bytes(self, key: str) -> bytes:
        """The content of ``key``; :class:`ObjectNotFound` when absent."""

    @abc.abstractmethod
    def exists(self, key: str) -> bool:
        """Whether ``key`` exists."""

    @abc.abstractmethod
    def list(self, prefix: str) -> list[str]:
        """Keys below ``prefix`` (recursively), sorted."""

    @abc.abstractmethod
    def create(self, key: str, data: bytes) -> None:
        """Write ``key`` only if it does not exist yet; else raise :class:`RegistryConflict`."""

    @abc.abstractmethod
    def create_from_file(self, key: str, path: str | os.PathLike[str]) -> None:
        """:meth:`create` from a local file, streamed."""

    @abc.abstractmethod
    def download(self, key: str, path: str | os.PathLike[str]) -> None:
        """Copy ``key`` to a local file; :class:`ObjectNotFound` when absent."""

    @abc.abstractmethod
    def read_document(self, key: str) -> tuple[dict[str, Any] | None, int]:
        """The JSON document at ``key`` and its generation token (``(None, 0)`` when absent)."""

    @abc.abstractmethod
    def swap_document(self, key: str, doc: dict[str, Any], generation: int) -> None:
        """Replace the document only if its generation is still ``generation`` (0: absent)."""

    def read_json(self, key: str) -> Any:
        """The JSON document at ``key``; a damaged one is a :class:`DamagedObject` naming it."""
        return self.parse_json(key, self.read_bytes(key))

    def parse_json(self, key: str, data: bytes) -> Any:
        """``data`` (the content of ``key``) as JSON, or an error that names the object."""
        try:
            return json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise DamagedObject(
                f"{self.url(key)} is not valid JSON ({exc}); it was damaged after Keel wrote it. "
                "Restore it from a backup (or your bucket's object versions)."
            ) from None

    def create_json(self, key: str, doc: Any) -> None:
        """:meth:`create` of a JSON document."""
        self.create(key, dump_json(doc))


def dump_json(doc: Any) -> bytes:
    """Indented, sorted JSON: stable bytes for the same document."""
    return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()


def _flush_to_disk(path: Path) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


class LocalStore(Store):
    """A store in a local folder: exclusive hard links and ``flock``-guarded swaps."""

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root).expanduser().absolute()
        self.uri = str(self.root)

    def _path(self, key: str) -> Path:
        return self.root / key

    @override
    def read_bytes(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise ObjectNotFound(f"{self.url(key)} does not exist.") from None

    @override
    def exists(self, key: str) -> bool:
        return self._path(key).exists()

    @override
    def list(self, prefix: str) -> list[str]:
        base = self._path(prefix)
        if not base.is_dir():
            return []
        keys = [
            p.relative_to(self.root).as_posix()
            for p in base.rglob("*")
            if p.is_file() and not p.name.startswith(".")
        ]
        return sorted(keys)

    @contextlib.contextmanager
    def _staged(self, key: str) -> Iterator[Path]:
        """A temporary file beside ``key`` (same filesystem, so link/rename are atomic)."""
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        os.close(fd)
        try:
            yield Path(tmp)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)

    def _link_exclusive(self, tmp: Path, key: str) -> None:
        _flush_to_disk(tmp)  # the name appears only once the content is durable
        try:
            os.link(tmp, self._path(key))
        except FileExistsError:
            raise RegistryConflict(
                f"{self.url(key)} already exists; it was created by another writer and is "
                "never overwritten."
            ) from None

    @override
    def create(self, key: str, data: bytes) -> None:
        with self._staged(key) as tmp:
            tmp.write_bytes(data)
            self._link_exclusive(tmp, key)

    @override
    def create_from_file(self, key: str, path: str | os.PathLike[str]) -> None:
        with self._staged(key) as tmp:
            shutil.copyfile(path, tmp)
            self._link_exclusive(tmp, key)

    @override
    def download(self, key: str, path: str | os.PathLike[str]) -> None:
        try:
            shutil.copyfile(self._path(key), path)
        except FileNotFoundError:
            raise ObjectNotFound(f"{self.url(key)} does not exist.") from None

    @override
    def read_document(self, key: str) -> tuple[dict[str, Any] | None, int]:
        try:
            data = self._path(key).read_bytes()
        except FileNotFoundError:
            return None, 0
        doc = self.parse_json(key, data)
        if not isinstance(doc, dict) or not isinstance(doc.get("generation"), int):
            raise DamagedObject(f"{self.url(key)} has no generation counter; it was damaged "
                                "after Keel wrote it.")
        return doc, doc["generation"]

    @override
    def swap_document(self, key: str, doc: dict[str, Any], generation: int) -> None:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        lock = target.parent / f".{target.name}.lock"
        with open(lock, "a") as lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
            _, current = self.read_document(key)
            if current != generation:
                raise RegistryConflict(
                    f"{self.url(key)} changed while this run was working "
                    f"(expected generation {generation}, found {current})."
                )
            with self._staged(key) as tmp:
                tmp.write_bytes(dump_json({**doc, "generation": generation + 1}))
                _flush_to_disk(tmp)
                os.replace(tmp, target)


RETRY_DEADLINE_ENV = "KEEL_GCS_RETRY_DEADLINE"
DEFAULT_RETRY_DEADLINE = 60.0
"""Seconds a GCS call keeps retrying transient failures (429, 5xx, dropped connections).

Half the client library's 120 s: a Keel run is a batch job (Kubeflow can retry the whole step),
and a minute of consecutive failures is an outage worth reporting rather than waiting out.
"""
WRITE_TOKEN = "keel-write-token"  # object metadata naming the one write that created an object


class StorageUnavailable(KeelError):
    """GCS kept failing with transient errors until the retry deadline passed."""

    stage = "storage"


def retry_deadline() -> float:
    """The retry deadline in seconds: ``KEEL_GCS_RETRY_DEADLINE``, else 60."""
    value = os.environ.get(RETRY_DEADLINE_ENV, "")
    if not value:
        return DEFAULT_RETRY_DEADLINE
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds < float("inf"):
        raise ParameterError(
            f"{RETRY_DEADLINE_ENV} must be a positive number of seconds. Got {value!r}.",
            stage="storage",
        )
    return seconds


class GCSStore(Store):
    """A store under ``gs://bucket/prefix``: generation preconditions on every write.

    Every call retries transient failures with jittered exponential backoff (0.25 s doubling up
    to 8 s) until :func:`retry_deadline`. Writes are retried too, which is safe only because each
    carries a generation precondition; but when an attempt succeeded and its response was lost,
    the retry meets its own object and gets 412. So every write tags its object with a token of
    its own (metadata ``keel-write-token``), and a 412 whose object carries this write's token is
    this write's success, never another writer's (whose bytes may well be identical).
    """

    def __init__(self, uri: str):
        from google.cloud.storage.retry import DEFAULT_RETRY

        self.bucket_name, self.prefix = split_gcs(uri)
        self.uri = f"gs://{self.bucket_name}" + (f"/{self.prefix}" if self.prefix else "")
        self.bucket = gcs_client().bucket(self.bucket_name)
        self.deadline = retry_deadline()
        self.retry = DEFAULT_RETRY.with_delay(initial=0.25, maximum=8.0, multiplier=2.0).with_timeout(
            self.deadline)

    def _name(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _blob(self, key: str) -> Any:
        return self.bucket.blob(self._name(key))

    @contextlib.contextmanager
    def _translate(self, key: str, *, writing: bool = False) -> Iterator[None]:
        from google.api_core.exceptions import Forbidden, NotFound, PreconditionFailed, RetryError
        from google.cloud.storage.retry import _should_retry  # the predicate self.retry uses

        try:
            yield
        except Forbidden as exc:
            raise ParameterError(
                f"Access to {self.url(key)} was refused: the credentials in use need read and "
                f"write access to bucket {self.bucket_name!r}. Got: {exc.message}",
                stage="storage",
            ) from None
        except PreconditionFailed:
            raise RegistryConflict(
                f"{self.url(key)} was changed or created by another writer first; "
                "nothing was overwritten."
            ) from None
        except NotFound:
            raise ObjectNotFound(f"{self.url(key)} does not exist.") from None
        except Exception as exc:
            if not (isinstance(exc, RetryError) or _should_retry(exc)):
                raise
            cause = exc.cause if isinstance(exc, RetryError) and exc.cause is not None else exc
            raise StorageUnavailable(
                f"Google Cloud Storage kept failing on {self.url(key)} ({type(cause).__name__} "
                f"for {self.deadline:g} s of retries); "
                + ("a write may or may not have happened, but the registry stays consistent."
                   if writing else "nothing was changed.") + " Run again later."
            ) from None

    def _write(self, key: str, upload: Callable[[Any], object]) -> None:
        """Run ``upload(blob)``, a write with a generation precondition; a 412 on its own object is ok.

        ``upload`` must pass ``if_generation_match`` and ``retry=self.retry``.
        """
        from google.api_core.exceptions import PreconditionFailed

        token = uuid.uuid4().hex
        blob = self._blob(key)
        blob.metadata = {WRITE_TOKEN: token}
        with self._translate(key, writing=True):
            try:
                upload(blob)
            except PreconditionFailed:
                if not self._written_by(key, token):
                    raise
                # An earlier attempt of this very write succeeded; only its response was lost.

    def _written_by(self, key: str, token: str) -> bool:
        """Whether the object now at ``key`` was created by the write holding ``token``.

        If another writer replaced an alias document right after this write's lost success, the
        token is gone and the write reports a conflict: production did move on, past this write.
        """
        current = self.bucket.get_blob(self._name(key), retry=self.retry)
        return current is not None and (current.metadata or {}).get(WRITE_TOKEN) == token

    @override
    def read_bytes(self, key: str) -> bytes:
        with self._translate(key):
            return bytes(self._blob(key).download_as_bytes(retry=self.retry))

    @override
    def exists(self, key: str) -> bool:
        with self._translate(key):
            return bool(self._blob(key).exists(retry=self.retry))

    @override
    def list(self, prefix: str) -> list[str]:
        full = self._name(prefix.strip("/")).rstrip("/")
        full = f"{full}/" if full else ""  # a store at the bucket root lists the whole bucket
        strip = len(self.prefix) + 1 if self.prefix else 0
        with self._translate(prefix):
            blobs = self.bucket.list_blobs(prefix=full, retry=self.retry)
            return sorted(b.name[strip:] for b in blobs)

    @override
    def create(self, key: str, data: bytes) -> None:
        self._write(key, lambda blob: blob.upload_from_string(
            data, if_generation_match=0, retry=self.retry))

    @override
    def create_from_file(self, key: str, path: str | os.PathLike[str]) -> None:
        self._write(key, lambda blob: blob.upload_from_filename(
            str(path), if_generation_match=0, retry=self.retry))

    @override
    def download(self, key: str, path: str | os.PathLike[str]) -> None:
        with self._translate(key):
            self._blob(key).download_to_filename(str(path), retry=self.retry)

    @override
    def read_document(self, key: str) -> tuple[dict[str, Any] | None, int]:
        blob = self._blob(key)
        try:
            with self._translate(key):
                data = blob.download_as_bytes(retry=self.retry)
        except ObjectNotFound:
            return None, 0
        doc = self.parse_json(key, data)
        if not isinstance(doc, dict):
            raise DamagedObject(f"{self.url(key)} is not a JSON object; it was damaged after "
                                "Keel wrote it.")
        return doc, int(blob.generation)

    @override
    def swap_document(self, key: str, doc: dict[str, Any], generation: int) -> None:
        previous, _ = self.read_document(key) if generation else (None, 0)
        counter = int(previous["generation"]) + 1 if previous else 1
        data = dump_json({**doc, "generation": counter})
        self._write(key, lambda blob: blob.upload_from_string(
            data, content_type="application/json", if_generation_match=generation,
            retry=self.retry))

"""Mirrors: copies of Keel's runs and versions in the tools teams already look at.

The store stays the source of truth (immutable versions, the alias moved by compare-and-swap).
A mirror gets each published version and every move of production, and must be idempotent: the
same version recorded twice is one record, so ``keel models sync`` can replay the whole store.
A mirror that fails never blocks or undoes Keel's own record: :func:`mirror_safely` turns its
error into one line of status.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from keel.contracts import Manifest
from keel.errors import KeelError, shorten

if TYPE_CHECKING:
    from keel.registry import Registry

MLFLOW_URI_ENV = "MLFLOW_TRACKING_URI"
MODEL_REGISTRY_URI_ENV = "KEEL_MODEL_REGISTRY_URI"


class MirrorError(KeelError):
    """A mirror could not be reached or refused a record (Keel's own record is unaffected)."""

    stage = "mirror"


@dataclass(frozen=True)
class VersionRecord:
    """What a mirror is given for one version: its manifest and where its files are."""

    manifest: Manifest
    version_uri: str  # the version's folder in the store (``.../versions/N``)
    model_uri: str  # ``.../versions/N/model.joblib``
    model_card: str | None  # the HTML of ``model_card.html`` (None for versions without one)
    production: bool  # whether this version is production now


class Mirror(ABC):
    """One mirror (MLflow, Kubeflow Model Registry): idempotent records of versions and alias."""

    name: ClassVar[str]

    @abstractmethod
    def record_version(self, record: VersionRecord) -> None:
        """Make sure the version exists in the mirror (create it once; never a duplicate)."""

    @abstractmethod
    def set_production(self, model: str, version: int | None) -> None:
        """Point the mirror's production marker at ``version`` (None: no production version)."""


class Unavailable(Mirror):
    """A configured mirror that could not even be set up (its client missing, a bad URL).

    It fails every call with the reason, so the run reports it like any mirror failure.
    """

    def __init__(self, name: str, error: Exception):
        self.name = name  # type: ignore[misc]  # per instance: which mirror this stands for
        self.error = error

    def record_version(self, record: VersionRecord) -> None:
        """Fail with the reason the mirror could not be set up."""
        raise self.error

    def set_production(self, model: str, version: int | None) -> None:
        """Fail with the reason the mirror could not be set up."""
        raise self.error


def _mlflow(uri: str) -> Mirror:
    from keel.mirror_mlflow import MLflowMirror

    return MLflowMirror(uri)


def _model_registry(uri: str) -> Mirror:
    from keel.mirror_kubeflow import ModelRegistryMirror

    return ModelRegistryMirror(uri)


def configured_mirrors(mlflow_uri: str = "", model_registry_uri: str = "") -> list[Mirror]:
    """The mirrors this run writes to: given URIs, else the environment, else none.

    Never raises: a mirror that cannot be set up is an :class:`Unavailable` one.
    """
    mirrors: list[Mirror] = []
    for name, uri, make in (
        ("mlflow", mlflow_uri or os.environ.get(MLFLOW_URI_ENV, ""), _mlflow),
        ("kubeflow", model_registry_uri or os.environ.get(MODEL_REGISTRY_URI_ENV, ""),
         _model_registry),
    ):
        if uri:
            try:
                mirrors.append(make(uri))
            except Exception as exc:  # the client missing, a bad URL: reported per run
                mirrors.append(Unavailable(name, exc))
    return mirrors


def mirror_safely(mirror: Mirror, action: Callable[[Mirror], None]) -> str:
    """Run ``action`` on ``mirror``: "ok", or one line saying why it failed (never raises)."""
    try:
        action(mirror)
    except Exception as exc:  # a mirror must never cost Keel its own record
        detail = exc.args[0] if isinstance(exc, KeelError) and exc.args else str(exc)
        return shorten(f"failed: {type(exc).__name__}: {detail}", 300)
    return "ok"


def version_record(registry: Registry, version: int, production: int | None) -> VersionRecord:
    """The record of one stored version, as every mirror gets it."""
    from keel.registry import MODEL_CARD_FILE, MODEL_FILE

    manifest = registry.manifest(version)
    card = None
    if MODEL_CARD_FILE in manifest.files:
        card = registry.store.read_bytes(registry.version_key(version, MODEL_CARD_FILE)).decode()
    return VersionRecord(
        manifest=manifest,
        version_uri=registry.file_url(version, "").rstrip("/"),
        model_uri=registry.file_url(version, MODEL_FILE),
        model_card=card,
        production=version == production,
    )


def mirror_version(mirrors: list[Mirror], registry: Registry, version: int,
                   production: int | None) -> dict[str, str]:
    """Record ``version`` and ``production`` (where promote left it) in every mirror.

    Reading the version for the mirrors happens inside each mirror's safe call too: after the
    alias has moved, nothing here may fail the run.
    """
    def both(mirror: Mirror) -> None:
        mirror.record_version(version_record(registry, version, production))
        mirror.set_production(registry.model, production)

    return {mirror.name: mirror_safely(mirror, both) for mirror in mirrors}


def mirror_production(mirrors: list[Mirror], registry: Registry) -> dict[str, str]:
    """Move every mirror's production marker to where the store's alias is now."""
    production = registry.alias().version
    return {mirror.name: mirror_safely(
        mirror, lambda m: m.set_production(registry.model, production)) for mirror in mirrors}


def sync(mirror: Mirror, registry: Registry, progress: Callable[[str], None]) -> None:
    """Bring ``mirror`` up to date with the store: every version, then production (idempotent).

    Raises the mirror's error: a sync is the explicit repair, so a failure is the command's.
    """
    production = registry.alias().version
    for version in registry.versions():
        mirror.record_version(version_record(registry, version, production))
        progress(f"{mirror.name}: version {version} recorded")
    mirror.set_production(registry.model, production)
    progress(f"{mirror.name}: production is version {production}")

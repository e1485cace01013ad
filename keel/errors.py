"""Typed errors: every failure a user can cause names the stage, what was expected and what arrived.

The CLI turns a ``KeelError`` into one readable line and a non-zero exit code; anything else is a
bug and keeps its traceback.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")


class KeelError(Exception):
    """Base class of the errors a user can cause and fix."""

    stage: str = "keel"

    def __init__(self, message: str, *, stage: str | None = None):
        super().__init__(message)
        if stage is not None:
            self.stage = stage

    def __str__(self) -> str:
        return f"[{self.stage}] {self.args[0]}"


class SourceError(KeelError):
    """The source table cannot be found, read or parsed."""

    stage = "ingest"


class SchemaError(KeelError):
    """A column is missing, or has a type the stage cannot use."""

    stage = "validate"


class DataValidationError(KeelError):
    """The data breaks a rule: empty table, a single class, no usable feature..."""

    stage = "validate"


class ParameterError(KeelError):
    """A setting (estimator, hyperparameter, threshold, URI...) is not valid."""


class RegistryError(KeelError):
    """The model registry is missing something or is inconsistent."""

    stage = "registry"


class RegistryConflict(RegistryError):
    """Another writer claimed the same object first (a lost generation precondition)."""


class IntegrityError(RegistryError):
    """A stored file does not match the sha256 its manifest recorded."""


ERROR_FILE_ENV = "KEEL_ERROR_FILE"


def reports_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Let a stage entry point hand its error to the process that launched it.

    A stage runs in a subprocess (kfp.local) or a pod; when KEEL_ERROR_FILE is set, the error's
    class, stage and message are written there as JSON before it propagates, so ``keel run``
    can print one readable line instead of a subprocess traceback. Errors that are not a
    KeelError (bugs, or cases Keel does not handle yet) are reported as unexpected, under the
    stage module's name.
    """
    module_stage = func.__module__.rpartition(".")[2]

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except Exception as exc:
            path = os.environ.get(ERROR_FILE_ENV)
            if path:
                expected = isinstance(exc, KeelError)
                message = exc.args[0] if expected and exc.args else str(exc)
                stage = exc.stage if isinstance(exc, KeelError) else module_stage
                with open(path, "w") as f:
                    json.dump({"type": type(exc).__name__, "stage": stage,
                               "message": message, "unexpected": not expected}, f)
            raise

    return wrapper


def from_report(report: dict[str, Any], log: str = "") -> KeelError:
    """Rebuild the error a stage reported through KEEL_ERROR_FILE."""
    if report.get("unexpected"):
        where = f"; the traceback is in {log}" if log else ""
        return KeelError(
            f"unexpected {report['type']}: {report['message']} (a bug in Keel, or a case it does "
            f"not handle yet{where})",
            stage=report["stage"],
        )
    cls = next((c for c in _all_subclasses(KeelError) if c.__name__ == report["type"]), KeelError)
    return cls(str(report["message"]), stage=str(report["stage"]))


def _all_subclasses(cls: type[KeelError]) -> list[type[KeelError]]:
    found: list[type[KeelError]] = []
    for sub in cls.__subclasses__():
        found += [sub, *_all_subclasses(sub)]
    return found

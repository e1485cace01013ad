"""Typed errors: every failure a user can cause names the stage, what was expected and what arrived.

The CLI turns a ``KeelError`` into one line (:func:`error_line`) and exit status 1; anything else
is a bug, reported as an ``unexpected`` line (its traceback in the log, or with ``--debug``).
Messages quote data and file names, so a line is made safe for a terminal here, in one place:
control characters are shown escaped and a long message is shortened keeping its start and end.
"""

from __future__ import annotations

import functools
import json
import os
import re
import signal
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")

MAX_LINE = 300  # characters in one error line, prefix included
LINE_PREFIX = "keel: error: "
MAX_UNEXPECTED = 120  # characters of a bug's own message inside its "unexpected" line

# C0 and C1 controls (ESC, CR, LF, NUL, DEL, CSI...), line and paragraph separators, bidi
# overrides, and lone surrogates (undecodable bytes of a file name): none reaches a terminal raw.
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u200e\u200f\u2028-\u202e\u2066-\u2069\ud800-\udfff]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    char = match[0]
    code = ord(char)
    return _NAMED.get(char) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


def printable(text: str) -> str:
    r"""``text`` with every control character shown escaped (``\x1b``, ``\n``): one safe line."""
    return _UNPRINTABLE.sub(_escape, text)


def shorten(text: str, limit: int = MAX_LINE) -> str:
    """``text`` in at most ``limit`` characters: its start and end, and how much was cut between.

    The start says what failed and the end often where (a path, a log file), so both are kept.
    """
    if len(text) <= limit:
        return text
    widest = f" [... {len(text)} characters cut ...] "  # the marker can only be shorter
    keep = max(limit - len(widest), 0)
    head = keep * 2 // 3
    tail = keep - head
    marker = f" [... {len(text) - keep} characters cut ...] "
    return text[:head] + marker + (text[len(text) - tail:] if tail else "")


def one_line(text: str, limit: int = MAX_LINE) -> str:
    """Escaped, then shortened: what may be printed of a message from data or the file system."""
    return shorten(printable(text), limit)


def error_line(error: BaseException) -> str:
    """The one line the CLI prints for an error: ``keel: error: [stage] message``."""
    return one_line(f"{LINE_PREFIX}{error}")


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived during a command.

    A BaseException, like KeyboardInterrupt, so that no ``except Exception`` (in Keel or in
    kfp.local) mistakes it for a failed stage and carries on.
    """

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_status(self) -> int:
        """128 + the signal number, as a shell reports a process that a signal ended (130, 143)."""
        return 128 + self.signum


MAX_DETAILS = 40  # lines of detail an error may carry (each shortened like the error line)


class KeelError(Exception):
    """Base class of the errors a user can cause and fix.

    ``details`` are lines the CLI prints before the error's own line: what a stage found that
    does not fit in one line (every column a data check stopped the run for, with its numbers).
    """

    stage: str = "keel"

    def __init__(self, message: str, *, stage: str | None = None,
                 details: tuple[str, ...] | list[str] = ()):
        super().__init__(message)
        if stage is not None:
            self.stage = stage
        self.details = tuple(one_line(str(line)) for line in list(details)[:MAX_DETAILS])

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
                               "message": message, "unexpected": not expected,
                               "details": list(getattr(exc, "details", ()))}, f)
            raise

    return wrapper


def unexpected(type_name: str, message: str, stage: str, where: str) -> KeelError:
    """The error for a bug (not a KeelError): its type and message, shortened, then where to look.

    The bug's own message is bounded first so that ``where`` (the log or ``--debug``) survives
    the line's shortening.
    """
    return KeelError(
        f"unexpected {one_line(type_name, 60)}: {one_line(message, MAX_UNEXPECTED)} (a bug in "
        f"Keel, or a case it does not handle yet; {where})",
        stage=stage,
    )


def from_report(report: dict[str, Any], log: str = "") -> KeelError:
    """Rebuild the error a stage reported through KEEL_ERROR_FILE, bounded to one safe line.

    The report comes from another process and quotes data, so its stage and message are escaped
    and shortened here: the line the CLI prints from it fits in :data:`MAX_LINE`.
    """
    stage = one_line(str(report.get("stage", "keel")), 40)
    message = str(report.get("message", ""))
    if report.get("unexpected"):
        where = f"the traceback is in {printable(log)}" if log else "run with --debug to see it"
        return unexpected(str(report.get("type", "error")), message, stage, where)
    cls = next((c for c in _all_subclasses(KeelError) if c.__name__ == report.get("type")),
               KeelError)
    room = MAX_LINE - len(f"{LINE_PREFIX}[{stage}] ")
    details = report.get("details")
    lines = [str(line) for line in details] if isinstance(details, list) else []
    return cls(one_line(message, room), stage=stage, details=lines)


def _all_subclasses(cls: type[KeelError]) -> list[type[KeelError]]:
    found: list[type[KeelError]] = []
    for sub in cls.__subclasses__():
        found += [sub, *_all_subclasses(sub)]
    return found

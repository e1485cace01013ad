"""Kubeflow environments: env files (``manifests/env/*.yaml``), compiling for one, KFP's API.

An env file says where runs go (the KFP endpoint, namespace, experiment, pipeline name, service
account), which registry the stage images come from, the run's parameters, the schedule, and each
stage's pod settings (resources, node selector, tolerations, image pull secrets, secrets as
environment variables). Defaults live in those files: the code's default is to set nothing, so the
committed ``pipelines/compiled/*.yaml`` stay cluster-independent.

Compiling for an environment happens in a subprocess, because the components fix their image
when ``keel.components`` is imported (``keel.images`` reads KEEL_IMAGE_REGISTRY then); the pod
settings reach every task through :func:`pod_settings`, which the pipelines call on each task and
which does nothing outside such a compile.

Upload, submit and schedule go through ``kfp.Client``; their requests are plain dictionaries
first, so ``--dry-run`` prints exactly what would be sent without contacting any server.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import io
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from keel.errors import KeelError, ParameterError
from keel.settings import SETTINGS
from keel.stages import STAGE_NAMES

if TYPE_CHECKING:
    import kfp

T = TypeVar("T")
DEFAULT = "default"  # the stage entry every other stage starts from
STAGE_KEYS = (DEFAULT, *STAGE_NAMES)
#: Environment variables read for authentication, never options: a token in argv would show in
#: ``ps`` and shell history. KF_PIPELINES_SA_TOKEN_PATH is kfp's own (a projected token file).
TOKEN_ENV = "KF_PIPELINES_TOKEN"
COOKIES_ENV = "KF_PIPELINES_COOKIES"
SA_TOKEN_PATH_ENV = "KF_PIPELINES_SA_TOKEN_PATH"
HEALTHZ = "/apis/v2beta1/healthz"
CONNECT_TIMEOUT = 10.0  # seconds to reach the KFP endpoint before saying it is unreachable
READ_TIMEOUT = 60.0
#: KFP's API server refuses a recurring run's max_concurrency outside this range.
MAX_CONCURRENCY = 10
NEWEST = "newest"  # the pipeline version a run uses when none is named
CRON_DESCRIPTORS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight",
                    "@hourly")

_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")  # RFC 1123 subdomain (objects)
_NAMESPACE = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")  # RFC 1123 label
_CPU = re.compile(r"([0-9]*[.])?[0-9]+m?")  # as kfp's set_cpu_request checks it
_MEMORY = re.compile(r"[0-9]+(E|Ei|P|Pi|T|Ti|G|Gi|M|Mi|K|Ki)?")  # as kfp's set_memory_request
_LABEL = re.compile(r"([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}"
                    r"[A-Za-z0-9])?")
_LABEL_VALUE = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?")
_SECRET_KEY = re.compile(r"[-._a-zA-Z0-9]+")
_ENV_VAR = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_HOST = re.compile(r"https?://[^\s/]+(/\S*)?")


class EnvFileError(ParameterError):
    """An env file is missing, not YAML, or has a key or value Keel cannot use."""

    stage = "cluster"


class ClusterError(KeelError):
    """The KFP API could not be reached, or refused a request."""

    stage = "cluster"


# -- the environment --------------------------------------------------------------------------
@dataclass(frozen=True)
class Toleration:
    """One Kubernetes toleration, as kfp-kubernetes ``add_toleration`` takes it."""

    key: str | None = None
    operator: str | None = None
    value: str | None = None
    effect: str | None = None
    toleration_seconds: int | None = None


@dataclass(frozen=True)
class PodSettings:
    """What one stage's pods get; ``None`` or empty means "not set" (Kubernetes' default)."""

    cpu_request: str | None = None
    cpu_limit: str | None = None
    memory_request: str | None = None
    memory_limit: str | None = None
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: tuple[Toleration, ...] = ()
    image_pull_secrets: tuple[str, ...] = ()
    #: Secret name -> {key in the Secret: environment variable}; names only, never values.
    secret_env: dict[str, dict[str, str]] = field(default_factory=dict)

    def over(self, base: PodSettings, given: frozenset[str]) -> PodSettings:
        """These settings on top of ``base``: each key given here replaces base's whole value."""
        return dataclasses.replace(base, **{k: getattr(self, k) for k in given})

    def to_dict(self) -> dict[str, Any]:
        """JSON form (handed to the compiling subprocess)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> PodSettings:
        """The inverse of :meth:`to_dict`."""
        return cls(**{**doc, "tolerations": tuple(Toleration(**t) for t in doc["tolerations"]),
                      "image_pull_secrets": tuple(doc["image_pull_secrets"])})


@dataclass(frozen=True)
class Target:
    """Where requests go: the KFP endpoint and the names runs are created under."""

    host: str
    namespace: str  # "" for a single-user (standalone) Kubeflow Pipelines
    experiment: str
    pipeline: str
    service_account: str  # "" for KFP's default account


@dataclass(frozen=True)
class Schedule:
    """A recurring run's trigger (KFP cron: six fields, seconds first) and limits."""

    cron: str
    catchup: bool
    max_concurrency: int


@dataclass(frozen=True)
class Environment:
    """One env file, validated."""

    path: Path
    target: Target
    image_registry: str
    parameters: dict[str, Any]
    schedule: Schedule | None
    stages: dict[str, PodSettings]  # every stage's effective settings (default merged in)

    @property
    def name(self) -> str:
        """The file's stem (``dev`` for ``manifests/env/dev.yaml``): names runs and build dirs."""
        return self.path.stem


# -- reading and checking an env file ---------------------------------------------------------
class _Checker:
    """Type and value checks that name the file, the key, what was expected and what arrived."""

    def __init__(self, path: Path | str):
        self.path = path  # the file, or the option a value came from

    def fail(self, where: str, expected: str, got: Any) -> EnvFileError:
        """The error for key ``where``."""
        return EnvFileError(f"{self.path}: {where}: expected {expected}; got {_shown(got)}.")

    def mapping(self, where: str, value: Any, keys: tuple[str, ...],
                required: tuple[str, ...] = ()) -> dict[str, Any]:
        """A mapping with only ``keys`` (and every ``required`` one)."""
        if not isinstance(value, dict):
            raise self.fail(where, f"a mapping with keys {', '.join(keys)}", value)
        for key in value:
            if key not in keys:
                raise self.unknown(f"{where}.{key}" if where else str(key), key, keys)
        for key in required:
            if key not in value:
                raise EnvFileError(f"{self.path}: {_join(where, key)}: missing; it is required.")
        return value

    def unknown(self, where: str, key: Any, known: tuple[str, ...] | list[str]) -> EnvFileError:
        """An unknown key, with the closest known ones."""
        close = difflib.get_close_matches(str(key), list(known), n=3, cutoff=0.6) or [
            k for k in known if str(key) and k.startswith(str(key))]
        hint = f" (did you mean {' or '.join(close)}?)" if close else ""
        expected = (f"one of {', '.join(known)}" if len(known) <= 12 else
                    "a parameter of the training pipeline (keel run --help lists them)")
        return EnvFileError(f"{self.path}: {where}: unknown key{hint}; expected {expected}.")

    def text(self, where: str, value: Any, pattern: re.Pattern[str] | None = None,
             expected: str = "a string", empty: bool = False) -> str:
        """A string; matching ``pattern`` unless empty (when ``empty`` allows it)."""
        if not isinstance(value, str) or (not empty and not value.strip()):
            raise self.fail(where, expected if not empty else f"{expected}, or \"\"", value)
        if pattern is not None and value and not pattern.fullmatch(value):
            raise self.fail(where, expected, value)
        return value

    def quantity(self, where: str, value: Any, pattern: re.Pattern[str], expected: str) -> str:
        """A Kubernetes quantity (numbers are taken as written: 2 is "2")."""
        if isinstance(value, int | float) and not isinstance(value, bool):
            value = str(value)
        return self.text(where, value, pattern, expected)


def _shown(value: Any) -> str:
    text = repr(value)
    kind = type(value).__name__ if value is not None else "nothing"
    return f"{text[:80]}{'...' if len(text) > 80 else ''} ({kind})"


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _read_yaml(path: Path) -> Any:
    """The file's YAML document; an error naming the line for bad YAML or a repeated key."""
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise EnvFileError(f"{path}: cannot read the env file ({reason}).") from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        _refuse_repeated_keys(path, root)
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise EnvFileError(f"{path}: not valid YAML{where}: {problem}.") from None


def _refuse_repeated_keys(path: Path, node: Any) -> None:
    """PyYAML keeps the last of two equal keys silently; a second ``train:`` is a mistake."""
    import yaml

    if isinstance(node, yaml.MappingNode):
        seen: set[Any] = set()
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode):
                if key.value in seen:
                    raise EnvFileError(f"{path}: line {key.start_mark.line + 1}: the key "
                                       f"{key.value!r} appears twice in the same mapping.")
                seen.add(key.value)
            _refuse_repeated_keys(path, value)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _refuse_repeated_keys(path, item)


TOP_KEYS = ("kfp", "image_registry", "parameters", "schedule", "stages")
KFP_KEYS = ("host", "namespace", "experiment", "pipeline", "service_account")
SCHEDULE_KEYS = ("cron", "catchup", "max_concurrency")
STAGE_FIELDS = tuple(f.name for f in dataclasses.fields(PodSettings))
TOLERATION_KEYS = tuple(f.name for f in dataclasses.fields(Toleration))


def load_environment(path: str | Path) -> Environment:
    """Read and check an env file: every key known, every value of the type and form it needs."""
    path = Path(path)
    check = _Checker(path)
    doc = _read_yaml(path)
    if doc is None:
        doc = {}
    top = check.mapping("", doc, TOP_KEYS, required=("kfp", "image_registry"))
    kfp_doc = check.mapping("kfp", top["kfp"], KFP_KEYS,
                            required=("host", "experiment", "pipeline"))
    target = Target(
        host=check_host(check, "kfp.host", kfp_doc["host"]),
        namespace=check.text("kfp.namespace", kfp_doc.get("namespace", ""), _NAMESPACE,
                             "a Kubernetes namespace (lowercase letters, digits, '-')",
                             empty=True),
        experiment=check.text("kfp.experiment", kfp_doc["experiment"],
                              expected="an experiment name"),
        pipeline=check.text("kfp.pipeline", kfp_doc["pipeline"], expected="a pipeline name"),
        service_account=check.text("kfp.service_account", kfp_doc.get("service_account", ""),
                                   _NAME, "a ServiceAccount name (lowercase letters, digits, "
                                   "'-', '.')", empty=True),
    )
    registry = check.text("image_registry", top["image_registry"],
                          re.compile(r"[^\s:@]+(:[0-9]+)?(/[^\s:@]+)*"),
                          "an image registry and path, as in europe-docker.pkg.dev/PROJECT/keel")
    parameters = _parameters(check, top.get("parameters") or {})
    schedule = _schedule(check, top["schedule"]) if top.get("schedule") is not None else None
    stages = _stages(check, top.get("stages") or {})
    return Environment(path, target, registry.rstrip("/"), parameters, schedule, stages)


def check_host(check: _Checker, where: str, value: Any) -> str:
    """An http:// or https:// endpoint, without a trailing slash."""
    return check.text(where, value, _HOST, "an http:// or https:// URL of the KFP API "
                      "(e.g. http://127.0.0.1:8888)").rstrip("/")


def _parameters(check: _Checker, doc: Any) -> dict[str, Any]:
    if not isinstance(doc, dict):
        raise check.fail("parameters", "a mapping of the training pipeline's parameters", doc)
    for name, value in doc.items():
        if name not in SETTINGS:
            raise check.unknown(f"parameters.{name}", name, list(SETTINGS))
        setting = SETTINGS[name]
        if not _is_type(value, setting.type):
            raise check.fail(f"parameters.{name}",
                             f"{_type_name(setting.type)} (the pipeline parameter's type)", value)
    return dict(doc)


def _is_type(value: Any, kind: type) -> bool:
    if kind is bool:
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if kind is float:
        return isinstance(value, int | float)
    return isinstance(value, kind)


def _type_name(kind: type) -> str:
    return {str: "a string", int: "an integer", float: "a number", bool: "true or false",
            list: "a list", dict: "a mapping"}.get(kind, kind.__name__)


def _schedule(check: _Checker, doc: Any) -> Schedule:
    doc = check.mapping("schedule", doc, SCHEDULE_KEYS, required=("cron",))
    catchup = doc.get("catchup", False)
    if not isinstance(catchup, bool):
        raise check.fail("schedule.catchup", "true or false", catchup)
    return Schedule(check_cron(doc["cron"], check), catchup,
                    check_max_concurrency(doc.get("max_concurrency", 1), check))


def check_cron(value: Any, check: _Checker | None = None, where: str = "schedule.cron") -> str:
    """A cron expression as KFP reads it: six fields, seconds first, or a descriptor (@weekly)."""
    expected = ("a KFP cron expression: six fields with seconds first, e.g. \"0 0 6 * * 1\" for "
                "06:00 every Monday, or @weekly")
    if isinstance(value, str) and (value.strip() in CRON_DESCRIPTORS
                                   or len(value.split()) == 6):
        return value.strip()
    if isinstance(value, str) and len(value.split()) == 5:
        expected += " (a five-field cron lacks the seconds: prefix it with \"0 \")"
    if check is None:
        raise ParameterError(f"--cron: expected {expected}; got {_shown(value)}.",
                             stage="cluster")
    raise check.fail(where, expected, value)


def check_max_concurrency(value: Any, check: _Checker | None = None) -> int:
    """How many runs of a schedule may run at once: 1 to 10, KFP's range."""
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_CONCURRENCY:
        return value
    expected = f"a whole number from 1 to {MAX_CONCURRENCY} (KFP's range)"
    if check is None:
        raise ParameterError(f"--max-concurrency: expected {expected}; got {_shown(value)}.",
                             stage="cluster")
    raise check.fail("schedule.max_concurrency", expected, value)


def _stages(check: _Checker, doc: Any) -> dict[str, PodSettings]:
    if not isinstance(doc, dict):
        raise check.fail("stages", f"a mapping of stage name ({', '.join(STAGE_KEYS)}) to pod "
                                   "settings", doc)
    given: dict[str, tuple[PodSettings, frozenset[str]]] = {}
    for name, entry in doc.items():
        if name not in STAGE_KEYS:
            raise check.fail(f"stages.{name}", f"a stage name ({', '.join(STAGE_KEYS)})", name)
        given[name] = _pod_settings(check, f"stages.{name}", entry if entry is not None else {})
    base = given[DEFAULT][0] if DEFAULT in given else PodSettings()
    stages = {DEFAULT: base}
    for name in STAGE_NAMES:
        own, keys = given.get(name, (PodSettings(), frozenset()))
        stages[name] = own.over(base, keys)
        _check_request_under_limit(check, name, stages[name])
    _check_request_under_limit(check, DEFAULT, base)
    return stages


def _pod_settings(check: _Checker, where: str, doc: Any) -> tuple[PodSettings, frozenset[str]]:
    doc = check.mapping(where, doc, STAGE_FIELDS)
    values: dict[str, Any] = {}
    for key in ("cpu_request", "cpu_limit"):
        if key in doc:
            values[key] = check.quantity(f"{where}.{key}", doc[key], _CPU,
                                         "a CPU quantity: \"2\", \"0.5\" or \"500m\"")
    for key in ("memory_request", "memory_limit"):
        if key in doc:
            values[key] = check.quantity(f"{where}.{key}", doc[key], _MEMORY,
                                         "a memory quantity: \"512Mi\", \"4Gi\", \"1G\"")
    if "node_selector" in doc:
        selector = doc["node_selector"]
        if not isinstance(selector, dict):
            raise check.fail(f"{where}.node_selector", "a mapping of node label to value",
                             selector)
        for label, value in selector.items():
            check.text(f"{where}.node_selector", label, _LABEL, "a node label key")
            check.text(f"{where}.node_selector.{label}", value, _LABEL_VALUE,
                       "a label value as a string (quote true, false and numbers)", empty=True)
        values["node_selector"] = dict(selector)
    if "tolerations" in doc:
        items = doc["tolerations"]
        if not isinstance(items, list):
            raise check.fail(f"{where}.tolerations", "a list of tolerations", items)
        values["tolerations"] = tuple(_toleration(check, f"{where}.tolerations[{i}]", item)
                                      for i, item in enumerate(items))
    if "image_pull_secrets" in doc:
        names = doc["image_pull_secrets"]
        if not isinstance(names, list):
            raise check.fail(f"{where}.image_pull_secrets", "a list of Secret names", names)
        values["image_pull_secrets"] = tuple(
            check.text(f"{where}.image_pull_secrets[{i}]", n, _NAME, "a Secret name")
            for i, n in enumerate(names))
    if "secret_env" in doc:
        values["secret_env"] = _secret_env(check, f"{where}.secret_env", doc["secret_env"])
    return PodSettings(**values), frozenset(doc)


def _toleration(check: _Checker, where: str, doc: Any) -> Toleration:
    doc = check.mapping(where, doc, TOLERATION_KEYS)
    values: dict[str, Any] = {}
    for key in ("key", "value"):
        if key in doc:
            values[key] = check.text(f"{where}.{key}", doc[key], expected="a string",
                                     empty=True)
    if "operator" in doc:
        values["operator"] = _one_of(check, f"{where}.operator", doc["operator"],
                                     ("Equal", "Exists"))
    if "effect" in doc:
        values["effect"] = _one_of(check, f"{where}.effect", doc["effect"],
                                   ("NoSchedule", "PreferNoSchedule", "NoExecute"))
    if "toleration_seconds" in doc:
        seconds = doc["toleration_seconds"]
        if not isinstance(seconds, int) or isinstance(seconds, bool) or seconds < 0:
            raise check.fail(f"{where}.toleration_seconds", "a whole number of seconds", seconds)
        values["toleration_seconds"] = seconds
    toleration = Toleration(**values)
    if toleration.operator == "Exists" and toleration.value:
        raise check.fail(f"{where}.value", "no value with operator Exists", toleration.value)
    if not toleration.key and toleration.operator != "Exists":
        raise check.fail(f"{where}.operator",
                         "Exists when there is no key (a toleration of every taint)",
                         toleration.operator)
    return toleration


def _one_of(check: _Checker, where: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise check.fail(where, f"one of {', '.join(choices)}", value)
    return str(value)


def _secret_env(check: _Checker, where: str, doc: Any) -> dict[str, dict[str, str]]:
    if not isinstance(doc, dict):
        raise check.fail(where, "a mapping of Secret name to {key in the Secret: environment "
                                "variable}", doc)
    found: dict[str, dict[str, str]] = {}
    for secret, keys in doc.items():
        check.text(where, secret, _NAME, "a Secret name (lowercase letters, digits, '-', '.')")
        if not isinstance(keys, dict) or not keys:
            raise check.fail(f"{where}.{secret}",
                             "a mapping of key in the Secret to environment variable", keys)
        for key, variable in keys.items():
            check.text(f"{where}.{secret}", key, _SECRET_KEY, "a key of the Secret")
            check.text(f"{where}.{secret}.{key}", variable, _ENV_VAR,
                       "an environment variable name (letters, digits, '_')")
        found[secret] = dict(keys)
    return found


_UNITS = {"": 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18,
          "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}


def _cpu_value(text: str) -> float:
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)


def _memory_value(text: str) -> int:
    number = re.match(r"[0-9]+", text)
    assert number is not None  # checked against _MEMORY already
    return int(number[0]) * _UNITS[text[number.end():]]


def _check_request_under_limit(check: _Checker, stage: str, settings: PodSettings) -> None:
    """Kubernetes refuses a pod whose request is above its limit: say so before compiling."""
    pairs = (("cpu", settings.cpu_request, settings.cpu_limit, _cpu_value),
             ("memory", settings.memory_request, settings.memory_limit, _memory_value))
    for what, request, limit, value in pairs:
        if request is not None and limit is not None and value(request) > value(limit):
            raise check.fail(f"stages.{stage}.{what}_request",
                             f"at most the stage's {what}_limit {limit!r} (default's, unless "
                             "the stage sets its own); Kubernetes refuses a request above its "
                             "limit", request)


# -- what a run gets ---------------------------------------------------------------------------
def override(environment: Environment, **given: str | None) -> Target:
    """The env file's target with the options and environment variables given (None: keep)."""
    target = environment.target
    changes = {k: v for k, v in given.items() if v is not None}
    if "host" in changes:
        changes["host"] = check_host(_Checker("--host (or KFP_HOST)"), "host",
                                     changes["host"])
    for key in ("experiment", "pipeline"):
        if key in changes and not changes[key].strip():
            raise ParameterError(f"--{key}: expected a name; got an empty one.", stage="cluster")
    if changes.get("namespace"):
        _Checker("--namespace (or KFP_NAMESPACE)").text(
            "namespace", changes["namespace"], _NAMESPACE, "a Kubernetes namespace")
    if changes.get("service_account"):
        _Checker("--service-account (or KFP_SERVICE_ACCOUNT)").text(
            "service account", changes["service_account"], _NAME, "a ServiceAccount name")
    return dataclasses.replace(target, **changes)


def parse_param(text: str) -> tuple[str, Any]:
    """``--param name=value``: the value in the type of the pipeline parameter ``name``."""
    name, equals, raw = text.partition("=")
    name = name.strip()
    if not equals:
        raise ParameterError(f"--param {text!r}: expected NAME=VALUE.", stage="cluster")
    if name not in SETTINGS:
        close = difflib.get_close_matches(name, list(SETTINGS), n=3, cutoff=0.6)
        hint = f"did you mean {' or '.join(close)}? " if close else ""
        raise ParameterError(f"--param {text!r}: {name!r} is not a parameter of the training "
                             f"pipeline; {hint}keel run --help lists them.", stage="cluster")
    kind = SETTINGS[name].type
    try:
        if kind is str:
            value: Any = raw
        elif kind is bool:
            value = {"true": True, "false": False}[raw.strip().lower()]
        elif kind in (list, dict):
            value = json.loads(raw)
        else:
            value = kind(raw)
    except (ValueError, KeyError):
        value = None
    if value is None or not _is_type(value, kind):
        written = "true or false" if kind is bool else (
            f"{_type_name(kind)} in JSON" if kind in (list, dict) else _type_name(kind))
        raise ParameterError(f"--param {text!r}: {name} takes {written}; got {raw!r}.",
                             stage="cluster")
    return name, value


def run_parameters(environment: Environment, params: tuple[str, ...]) -> dict[str, Any]:
    """The env file's parameters with ``--param`` on top, checked as ``keel run`` checks them."""
    from keel.settings import check_settings

    values = dict(environment.parameters)
    values.update(parse_param(text) for text in params)
    try:
        check_settings(values)
    except KeelError as exc:  # a ParameterError, or a source plug-in's refusal of its URI
        raise ParameterError(f"The run's parameters (parameters: in {environment.path}, then "
                             f"--param) are not valid: {exc.args[0]}", stage="cluster") from None
    return values


# -- compiling for an environment ---------------------------------------------------------------
#: Each stage's settings while compiling for an environment; None (set nothing) otherwise.
_COMPILING: ContextVar[dict[str, PodSettings] | None] = ContextVar("keel_pod_settings",
                                                                   default=None)
_COMPILE = ("import sys; from keel.cluster import compile_in_this_process; "
            "compile_in_this_process(sys.argv[1], sys.argv[2])")


def compile_for(environment: Environment, output: Path) -> Path:
    """Compile the training pipeline with the environment's images and pod settings.

    In a new interpreter with KEEL_IMAGE_REGISTRY set: the components fix their image when
    imported, so this process's (already imported, or default) images cannot serve.
    """
    output = output.expanduser().absolute()
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EnvFileError(f"Cannot create {output.parent} for the compiled spec "
                           f"({exc.strerror or exc}).") from None
    settings = json.dumps({name: s.to_dict() for name, s in environment.stages.items()})
    env = {**os.environ, "KEEL_IMAGE_REGISTRY": environment.image_registry}
    result = subprocess.run([sys.executable, "-c", _COMPILE, settings, str(output)], env=env,
                            capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        raise ClusterError(f"Compiling the training pipeline for {environment.path} failed: "
                           f"{lines[-1] if lines else f'exit status {result.returncode}'}")
    return output


def compile_in_this_process(settings_json: str, output: str) -> None:
    """The compiling subprocess's work: set the stages' settings, compile, write ``output``."""
    settings = {name: PodSettings.from_dict(doc) for name, doc in json.loads(settings_json).items()}
    token = _COMPILING.set(settings)
    try:
        from keel.pipelines.training import compile_pipeline

        compile_pipeline(output)
    finally:
        _COMPILING.reset(token)


def pod_settings(task: T, stage: str) -> T:
    """Give ``task`` the pod settings of ``stage`` when compiling for an environment.

    The pipelines call this on every task. Outside :func:`compile_for` nothing is set, so the
    committed specs name no node, resource or secret of any cluster.
    """
    stages = _COMPILING.get()
    if stages is None:
        return task
    settings = stages.get(stage, stages[DEFAULT])
    from kfp import kubernetes

    kfp_task: Any = task
    if settings.cpu_request is not None:
        kfp_task.set_cpu_request(settings.cpu_request)
    if settings.cpu_limit is not None:
        kfp_task.set_cpu_limit(settings.cpu_limit)
    if settings.memory_request is not None:
        kfp_task.set_memory_request(settings.memory_request)
    if settings.memory_limit is not None:
        kfp_task.set_memory_limit(settings.memory_limit)
    for label, value in settings.node_selector.items():
        kubernetes.add_node_selector(task, label_key=label, label_value=value)
    for toleration in settings.tolerations:
        kubernetes.add_toleration(task, **dataclasses.asdict(toleration))
    if settings.image_pull_secrets:
        kubernetes.set_image_pull_secrets(task, list(settings.image_pull_secrets))
    for secret, keys in settings.secret_env.items():
        kubernetes.use_secret_as_env(task, secret_name=secret, secret_key_to_env=keys)
    return task


# -- requests ----------------------------------------------------------------------------------
def version_name() -> str:
    """A new pipeline version's name: package version, git commit (12), UTC time."""
    from keel import __version__
    from keel.publish import git_commit

    commit = git_commit()
    short = commit[:12] + ("-dirty" if commit.endswith("-dirty") else "")
    return f"{__version__}-{short}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"


def upload_request(target: Target, package: Path, version: str) -> dict[str, Any]:
    """What ``upload`` sends: the package as a new version of the target's pipeline."""
    return {"action": "upload", "host": target.host, "namespace": target.namespace,
            "pipeline": target.pipeline, "pipeline_version": version, "package": str(package)}


def run_request(environment: Environment, target: Target, parameters: dict[str, Any],
                package: Path | None, version: str | None, name: str) -> dict[str, Any]:
    """What ``submit`` sends: one run in the experiment, as the service account."""
    return {"action": "submit", "host": target.host, "namespace": target.namespace,
            "experiment": target.experiment, "run_name": name,
            "pipeline": None if package else target.pipeline,
            "pipeline_version": None if package else (version or NEWEST),
            "package": str(package) if package else None,
            "parameters": parameters, "service_account": target.service_account,
            "env_file": str(environment.path)}


def schedule_request(environment: Environment, target: Target, parameters: dict[str, Any],
                     package: Path | None, version: str | None, name: str, schedule: Schedule,
                     replace: bool) -> dict[str, Any]:
    """What ``schedule`` sends: a recurring run with its trigger and limits."""
    request = run_request(environment, target, parameters, package, version, name)
    request.pop("run_name")
    return {**request, "action": "schedule", "recurring_run": name, "cron": schedule.cron,
            "catchup": schedule.catchup, "max_concurrency": schedule.max_concurrency,
            "replace": replace}


# -- talking to KFP ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Credentials:
    """What kfp.Client authenticates with, from the environment (never from argv)."""

    token: str | None
    cookies: str | None
    sa_token_path: str | None

    @classmethod
    def from_environment(cls) -> Credentials:
        """KF_PIPELINES_TOKEN, KF_PIPELINES_COOKIES, KF_PIPELINES_SA_TOKEN_PATH."""
        return cls(os.environ.get(TOKEN_ENV) or None, os.environ.get(COOKIES_ENV) or None,
                   os.environ.get(SA_TOKEN_PATH_ENV) or None)

    def headers(self) -> dict[str, str]:
        """The headers kfp.Client will send: for the reachability check."""
        headers = {}
        token = self.token
        if token is None and self.sa_token_path:
            try:
                token = Path(self.sa_token_path).read_text().strip()
            except OSError as exc:
                raise ClusterError(f"Cannot read the token file {self.sa_token_path} "
                                   f"({SA_TOKEN_PATH_ENV}): {exc.strerror or exc}.") from None
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if self.cookies:
            headers["Cookie"] = self.cookies
        return headers


_AUTH_HINT = (f"pass a token in {TOKEN_ENV} (e.g. the output of `kubectl create token`, or "
              f"`gcloud auth print-access-token` behind IAP) or a session cookie in {COOKIES_ENV} "
              "(e.g. authservice_session=...)")


def check_reachable(host: str, credentials: Credentials, action: str) -> None:
    """One GET of KFP's healthz with a timeout, before kfp.Client.

    kfp.Client waits without a timeout for a silent host, and retries a refused healthz five
    times, five seconds apart: this says at once what is wrong and where.
    """
    import requests

    url = host + HEALTHZ
    try:
        reply = requests.get(url, headers=credentials.headers(), allow_redirects=False,
                             timeout=(CONNECT_TIMEOUT, READ_TIMEOUT))
    except requests.RequestException as exc:
        raise ClusterError(
            f"Cannot reach the KFP API at {host} to {action}: {_reason(exc)}. Check kfp.host "
            "(or KFP_HOST), and that the port-forward runs (kubectl port-forward -n kubeflow "
            "svc/ml-pipeline-ui 8888:80).") from None
    if reply.is_redirect:
        raise ClusterError(f"The KFP API at {host} redirected {HEALTHZ} to "
                           f"{reply.headers.get('Location', '?')} (a login page) when trying to "
                           f"{action}: {_AUTH_HINT}.")
    if reply.status_code in (401, 403):
        raise ClusterError(f"The KFP API at {host} refused the credentials (HTTP "
                           f"{reply.status_code}) when trying to {action}: {_AUTH_HINT}.")
    if reply.status_code != 200:
        raise ClusterError(f"The KFP API at {host} answered HTTP {reply.status_code} to "
                           f"{HEALTHZ} when trying to {action}: is it a Kubeflow Pipelines v2 "
                           "endpoint (behind the Kubeflow dashboard, https://HOST/pipeline)?")
    try:
        reply.json()
    except ValueError:
        raise ClusterError(f"The KFP API at {host} answered {HEALTHZ} with something that is not "
                           f"JSON when trying to {action}: is it a Kubeflow Pipelines v2 "
                           "endpoint (behind the Kubeflow dashboard, https://HOST/pipeline)?"
                           ) from None


def _reason(exc: BaseException) -> str:
    """The root cause of a connection failure, in a few words ("Connection refused")."""
    text = str(exc)
    found = re.search(r"\[Errno -?\d+\] ([^'\")\]]+)", text)
    if found:
        return found[1].strip()
    if "timed out" in text.lower() or "timeout" in type(exc).__name__.lower():
        return f"no answer within {CONNECT_TIMEOUT:.0f} s"
    return type(exc).__name__


@contextlib.contextmanager
def attempt(host: str, action: str) -> Iterator[None]:
    """Turn kfp.Client's failures into one line naming the host and what was attempted.

    kfp prints links ("Experiment details: ...") to standard output: they are dropped, so that
    standard output stays the command's own result (which names the run's link itself).
    """
    import importlib

    from urllib3.exceptions import HTTPError

    # kfp's REST client (a dependency of kfp) publishes no type information
    ApiException: Any = importlib.import_module("kfp_server_api").ApiException

    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    except ApiException as exc:
        raise ClusterError(f"The KFP API at {host} refused to {action}: HTTP {exc.status} "
                           f"{exc.reason or ''}".rstrip() + f": {_api_message(exc.body)}"
                           ) from None
    except (HTTPError, OSError) as exc:
        raise ClusterError(f"Lost the KFP API at {host} while trying to {action}: "
                           f"{_reason(exc)}.") from None
    except (ValueError, TimeoutError) as exc:  # kfp.Client's own checks (several pipelines...)
        raise ClusterError(f"Could not {action} at {host}: {exc}") from None


def _api_message(body: Any) -> str:
    """KFP's error body ``{"error", "code", "message", "details"}``: its message."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body or "")
    try:
        doc = json.loads(text)
    except ValueError:
        return text.strip()[:200] or "no message"
    if isinstance(doc, dict):
        return str(doc.get("message") or doc.get("error") or text)[:300]
    return text[:200]


def connect(target: Target, credentials: Credentials, action: str) -> kfp.Client:
    """A kfp.Client for the target, after checking the endpoint answers."""
    import warnings

    import kfp

    check_reachable(target.host, credentials, action)
    options: dict[str, Any] = {"host": target.host, "existing_token": credentials.token,
                               "cookies": credentials.cookies}
    if target.namespace:
        options["namespace"] = target.namespace
    if credentials.token is None and credentials.sa_token_path:
        from kfp.client.set_volume_credentials import (
            ServiceAccountTokenVolumeCredentials,
        )

        options["credentials"] = ServiceAccountTokenVolumeCredentials(credentials.sa_token_path)
    with warnings.catch_warnings(), attempt(target.host, action):
        warnings.simplefilter("ignore", FutureWarning)  # "only works with KFP 2.0.0-beta.2+"
        return kfp.Client(**options)


def _equals(key: str, value: str) -> str:
    return json.dumps({"predicates": [{"operation": "EQUALS", "key": key, "stringValue": value}]})


def find_pipeline(client: kfp.Client, target: Target) -> str | None:
    """The id of the target's pipeline (in its namespace when it has one), or None."""
    with attempt(target.host, f"look up pipeline {target.pipeline!r}"):
        found = client.list_pipelines(filter=_equals("display_name", target.pipeline),
                                      namespace=target.namespace or None, page_size=2)
    pipelines = found.pipelines or []
    if len(pipelines) > 1:
        raise ClusterError(f"KFP at {target.host} holds several pipelines named "
                           f"{target.pipeline!r}; delete the extra ones or name another pipeline "
                           "in the env file.")
    return str(pipelines[0].pipeline_id) if pipelines else None


def upload_version(client: kfp.Client, target: Target, package: Path, version: str,
           description: str) -> dict[str, Any]:
    """Create the pipeline if absent, then upload ``package`` as its version ``version``.

    The pipeline is created empty so that its first version is named like every other one.
    """
    pipeline_id = find_pipeline(client, target)
    created = pipeline_id is None
    if pipeline_id is None:
        with attempt(target.host, f"create pipeline {target.pipeline!r}"):
            pipeline = client.pipelines.pipeline_service_create_pipeline(
                pipeline=client.api_models.V2beta1Pipeline(
                    display_name=target.pipeline, description=description,
                    namespace=target.namespace or None))
        pipeline_id = str(pipeline.pipeline_id)
    with attempt(target.host, f"upload version {version!r} of pipeline {target.pipeline!r}"):
        uploaded = client.upload_pipeline_version(str(package), version, pipeline_id=pipeline_id,
                                                  description=description)
    return {"pipeline": target.pipeline, "pipeline_id": pipeline_id, "created_pipeline": created,
            "pipeline_version": version,
            "pipeline_version_id": str(uploaded.pipeline_version_id)}


def resolve_version(client: kfp.Client, target: Target, version: str | None) -> tuple[str, str, str]:
    """(pipeline id, version id, version name) of ``version``, or of the newest version."""
    pipeline_id = find_pipeline(client, target)
    where = f"in namespace {target.namespace!r} " if target.namespace else ""
    if pipeline_id is None:
        raise ClusterError(f"KFP at {target.host} has no pipeline {target.pipeline!r} {where}"
                           "to run: upload it first (keel cluster upload --env ...), or pass "
                           "--package.")
    with attempt(target.host, f"list the versions of pipeline {target.pipeline!r}"):
        if version is None:
            found = client.list_pipeline_versions(pipeline_id, page_size=1,
                                                  sort_by="created_at desc")
        else:
            found = client.list_pipeline_versions(pipeline_id, page_size=2,
                                                  filter=_equals("display_name", version))
    versions = found.pipeline_versions or []
    if not versions:
        what = f"no version named {version!r}" if version else "no version"
        raise ClusterError(f"Pipeline {target.pipeline!r} at {target.host} has {what}: upload "
                           "one first (keel cluster upload --env ...).")
    chosen = versions[0]
    return pipeline_id, str(chosen.pipeline_version_id), str(chosen.display_name)


def experiment_id(client: kfp.Client, target: Target, description: str) -> str:
    """The target's experiment, created if absent."""
    with attempt(target.host, f"find or create experiment {target.experiment!r}"):
        experiment = client.create_experiment(target.experiment, description=description,
                                              namespace=target.namespace or None)
    return str(experiment.experiment_id)


def _pipeline_reference(client: kfp.Client, target: Target, package: Path | None,
                        version: str | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(kfp.Client arguments, what to report) for a package or an uploaded version."""
    if package is not None:
        return {"pipeline_package_path": str(package)}, {"package": str(package)}
    pipeline_id, version_id, name = resolve_version(client, target, version)
    return ({"pipeline_id": pipeline_id, "version_id": version_id},
            {"pipeline_id": pipeline_id, "pipeline_version": name,
             "pipeline_version_id": version_id})


def create_run(client: kfp.Client, target: Target, request: dict[str, Any], package: Path | None,
           version: str | None, description: str) -> dict[str, Any]:
    """Create one run: the request of :func:`run_request`."""
    reference, report = _pipeline_reference(client, target, package, version)
    experiment = experiment_id(client, target, description)
    with attempt(target.host, f"create run {request['run_name']!r}"):
        run = client.run_pipeline(experiment, request["run_name"], params=request["parameters"],
                                  service_account=target.service_account or None, **reference)
    return {**request, **report, "experiment_id": experiment, "run_id": str(run.run_id),
            "url": f"{target.host}/#/runs/details/{run.run_id}"}


def create_schedule(client: kfp.Client, target: Target, request: dict[str, Any], package: Path | None,
             version: str | None, description: str) -> dict[str, Any]:
    """Create a recurring run: the request of :func:`schedule_request`.

    A second schedule of the same name would train twice as often: an existing one is refused,
    or with ``replace`` deleted once the new one exists (so a failure never leaves none).
    """
    reference, report = _pipeline_reference(client, target, package, version)
    experiment = experiment_id(client, target, description)
    name = request["recurring_run"]
    with attempt(target.host, f"list the recurring runs of experiment {target.experiment!r}"):
        listed = client.list_recurring_runs(experiment_id=experiment, page_size=100,
                                            filter=_equals("display_name", name))
    existing = [r for r in (listed.recurring_runs or []) if r.display_name == name]
    if existing and not request["replace"]:
        raise ClusterError(f"Experiment {target.experiment!r} at {target.host} already has the "
                           f"recurring run {name!r} (id {existing[0].recurring_run_id}); pass "
                           "--replace to replace it, or --name for another one.")
    with attempt(target.host, f"create recurring run {name!r}"):
        created = client.create_recurring_run(
            experiment, name, description=description, cron_expression=request["cron"],
            max_concurrency=request["max_concurrency"], no_catchup=not request["catchup"],
            params=request["parameters"], service_account=target.service_account or None,
            enabled=True, **reference)
    for old in existing:
        with attempt(target.host, f"delete the replaced recurring run {old.recurring_run_id}"):
            client.delete_recurring_run(old.recurring_run_id)
    return {**request, **report, "experiment_id": experiment,
            "recurring_run_id": str(created.recurring_run_id),
            "replaced": [str(old.recurring_run_id) for old in existing]}

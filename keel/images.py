"""The one source of image names and contents: ``<registry>/<name>:<package version>``.

Tags are never ``latest``. Set KEEL_IMAGE_REGISTRY when compiling for a cluster whose images live
in your own registry; ``make images`` builds them locally under the default, ``localhost/keel``.
After ``images/build.sh --push``, KEEL_IMAGE_DIGESTS names the file of pushed digests it wrote,
and the compiled spec then pins each image by digest.

Each image is the shared base plus only what its own code imports: the packages below, pinned at
the versions of requirements.lock (``images/lock.py`` writes ``images/locks/<name>.txt``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from keel import __version__
from keel.stages import STAGES

DEFAULT_REGISTRY = "localhost/keel"
REGISTRY_ENV = "KEEL_IMAGE_REGISTRY"
DIGESTS_ENV = "KEEL_IMAGE_DIGESTS"

#: What every image holds: KFP's executor (kfp) and what every stage imports through Keel's
#: contracts, storage and tables. The versions come from requirements.lock.
BASE_PACKAGES: tuple[str, ...] = ("kfp", "google-cloud-storage", "numpy", "pandas", "pyarrow",
                                  "pydantic", "pyyaml", "requests", "click")
SCIKIT_LEARN = "scikit-learn"
SOURCES = ("sqlalchemy", "psycopg[binary]")  # database drivers: only where a source is read


@dataclass(frozen=True)
class Image:
    """One image on the base: its name, what it does, the packages it adds, its main module."""

    name: str
    does: str
    packages: tuple[str, ...]
    module: str  # imported when the image is built: a missing package fails the build


def _stage_packages(name: str) -> tuple[str, ...]:
    extra = {
        "ingest": SOURCES,
        "validate": ("datasketches", "jinja2"),  # statistics sketches; the HTML report
        "publish": ("jinja2",),  # the model card
        "deploy": ("jsonschema",),  # manifests checked against KServe's CRD schemas
    }.get(name, ())
    uses = next(stage for stage in STAGES if stage.name == name).uses_scikit_learn
    return ((SCIKIT_LEARN,) if uses else ()) + extra


#: Every image built on the base: the training stages, the batch pipeline's predict stage, and
#: serve (Keel's model server, the image of the KServe ServingRuntime).
IMAGES: tuple[Image, ...] = (
    *(Image(stage.name, stage.does, _stage_packages(stage.name), f"keel.{stage.name}")
      for stage in STAGES),
    Image("predict", "scores a table with a registered model version (batch prediction)",
          (SCIKIT_LEARN, *SOURCES), "keel.predict"),
    Image("serve", "Keel's model server (KServe V1 and V2 protocols), the image of the "
          "keel-sklearn ServingRuntime", (SCIKIT_LEARN,), "keel.serving"),
)
IMAGE_NAMES: tuple[str, ...] = tuple(each.name for each in IMAGES)


def image_spec(name: str) -> Image:
    """The :class:`Image` called ``name``; ``ValueError`` naming the known ones otherwise."""
    for each in IMAGES:
        if each.name == name:
            return each
    raise ValueError(f"Unknown image {name!r}; images are {', '.join(IMAGE_NAMES)}.")


def image(name: str) -> str:
    """The reference of image ``name`` (or ``base``): by digest once pushed, else by tag."""
    if name not in IMAGE_NAMES and name != "base":
        raise ValueError(f"Unknown stage {name!r}; stages are {', '.join(IMAGE_NAMES)}.")
    registry = os.environ.get(REGISTRY_ENV, DEFAULT_REGISTRY).rstrip("/")
    tag = f"{registry}/{name}:{__version__}"
    digests_file = os.environ.get(DIGESTS_ENV, "")
    if not digests_file:
        return tag
    digests = _digests(digests_file)
    if tag not in digests:
        raise ValueError(f"{DIGESTS_ENV}={digests_file} has no digest for {tag}: push it with "
                         "`images/build.sh --push` (same KEEL_IMAGE_REGISTRY), or unset "
                         f"{DIGESTS_ENV} to compile with tags.")
    return f"{registry}/{name}@{digests[tag]}"


def _digests(path: str) -> dict[str, str]:
    """``{tag: sha256:...}`` from the file ``images/build.sh --push`` writes."""
    try:
        loaded = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"Cannot read {DIGESTS_ENV}={path}: {exc}") from None
    if not isinstance(loaded, dict) or not all(
            isinstance(value, str) and value.startswith("sha256:") for value in loaded.values()):
        raise ValueError(f"{DIGESTS_ENV}={path} must map each tag to a 'sha256:...' digest.")
    return loaded

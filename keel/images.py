"""The one source of image names: ``<registry>/<stage>:<package version>``, never ``latest``.

Set KEEL_IMAGE_REGISTRY when compiling for a cluster whose images live in your own registry;
``make images`` builds them locally under the default, ``localhost/keel``.
"""

from __future__ import annotations

import os

from keel import __version__
from keel.stages import STAGE_NAMES

DEFAULT_REGISTRY = "localhost/keel"
#: Every image built on the base: the training stages, the batch pipeline's predict stage, and
#: serve (Keel's model server, the image of the KServe ServingRuntime).
IMAGE_NAMES: tuple[str, ...] = (*STAGE_NAMES, "predict", "serve")


def image(stage: str) -> str:
    """The image reference of ``stage`` (or of ``base``, the image every stage builds on)."""
    if stage not in IMAGE_NAMES and stage != "base":
        raise ValueError(f"Unknown stage {stage!r}; stages are {', '.join(IMAGE_NAMES)}.")
    registry = os.environ.get("KEEL_IMAGE_REGISTRY", DEFAULT_REGISTRY).rstrip("/")
    return f"{registry}/{stage}:{__version__}"

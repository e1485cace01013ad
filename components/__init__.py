"""Thin KFP components, one per stage: artifact paths in, one call to the stage logic, outputs out.

Each runs in its own image (``keel.images``) with Keel preinstalled, so nothing is pip-installed
when a container starts (``install_kfp_package=False``). The settings a component takes are
described once, in ``keel.settings`` (``document_settings`` copies their help into the docstring).
"""

from keel.components.deploy import deploy
from keel.components.evaluate import evaluate
from keel.components.ingest import ingest
from keel.components.preprocess import preprocess
from keel.components.promote import promote
from keel.components.publish import publish
from keel.components.train import train
from keel.components.tune import tune
from keel.components.validate import validate

__all__ = ["ingest", "validate", "preprocess", "tune", "train", "evaluate", "publish", "deploy",
           "promote"]

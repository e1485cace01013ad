"""Keel: a Kubeflow Pipelines component set for tabular scikit-learn models."""

__version__ = "0.1.0"

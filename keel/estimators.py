"""The estimators Keel can train, as one table: adding one is one entry here plus its tests.

Each entry names its scikit-learn class per task and what the feature transformer must do for it
(preferred categorical encoding, whether it takes missing values and categories natively), Keel's
defaults where scikit-learn's do not suit unattended weekly runs, and a default search space for
hyperparameter search. Parameters are checked against the class's signature and its declared
constraints before any data is read.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from importlib import import_module
from typing import Any, Literal

from keel.errors import ParameterError

TASKS = ("classification", "regression")


@dataclass(frozen=True)
class Estimator:
    """One trainable model family."""

    name: str
    classes: dict[str, str]  # task -> dotted scikit-learn class
    encoding: Literal["onehot", "ordinal"]  # preferred categorical encoding for "auto"
    scales_numbers: bool  # needs imputed, standardised numeric inputs (linear models)
    native_missing: bool  # takes NaN in numeric inputs as they are
    native_categorical: bool  # takes ordinal-coded categories as categories (categorical_features)
    defaults: dict[str, dict[str, Any]] = field(default_factory=dict)  # task -> parameters
    #: task -> parameter -> candidate values, for hyperparameter search
    search_space: dict[str, dict[str, list[Any]]] = field(default_factory=dict)

    def estimator_class(self, task: str) -> type:
        """The scikit-learn class for ``task``, imported on first use."""
        module, _, name = self.classes[task].rpartition(".")
        cls: type = getattr(import_module(module), name)
        return cls


ESTIMATORS: dict[str, Estimator] = {
    entry.name: entry
    for entry in (
        Estimator(
            name="linear",
            classes={"classification": "sklearn.linear_model.LogisticRegression",
                     "regression": "sklearn.linear_model.Ridge"},
            encoding="onehot", scales_numbers=True, native_missing=False,
            native_categorical=False,
            defaults={"classification": {"max_iter": 2000}},
            search_space={"classification": {"C": [0.01, 0.1, 1.0, 10.0]},
                          "regression": {"alpha": [0.1, 1.0, 10.0, 100.0]}},
        ),
        Estimator(
            name="random_forest",
            classes={"classification": "sklearn.ensemble.RandomForestClassifier",
                     "regression": "sklearn.ensemble.RandomForestRegressor"},
            encoding="ordinal", scales_numbers=False, native_missing=True,
            native_categorical=False,
            search_space=dict.fromkeys(TASKS, {"n_estimators": [100, 300],
                                                "max_depth": [None, 8, 16],
                                                "min_samples_leaf": [1, 5]}),
        ),
        Estimator(
            name="hist_gradient_boosting",
            classes={"classification": "sklearn.ensemble.HistGradientBoostingClassifier",
                     "regression": "sklearn.ensemble.HistGradientBoostingRegressor"},
            encoding="ordinal", scales_numbers=False, native_missing=True,
            native_categorical=True,
            search_space=dict.fromkeys(TASKS, {"learning_rate": [0.03, 0.1, 0.3],
                                                "max_depth": [None, 4, 8],
                                                "l2_regularization": [0.0, 1.0]}),
        ),
    )
}
DEFAULT_ESTIMATOR = "hist_gradient_boosting"


def get_estimator(name: str, stage: str = "train") -> Estimator:
    """The table entry called ``name``; a ParameterError listing the known ones otherwise."""
    try:
        return ESTIMATORS[name]
    except (KeyError, TypeError):
        raise ParameterError(
            f"The 'estimator' parameter of {stage} must be one of {', '.join(ESTIMATORS)}. "
            f"Got {name!r}.",
            stage=stage,
        ) from None


def check_declared_constraints(model: Any) -> None:
    """Check a model's parameters against scikit-learn's declared constraints, without data.

    scikit-learn checks ``_parameter_constraints`` only when ``fit`` starts, through the private
    ``_validate_params``: this is the one place Keel calls it (a test pins what it catches), so
    that a bad ``--param`` fails before any stage runs instead of minutes into training.
    """
    try:
        model._validate_params()
    except (ValueError, TypeError) as exc:
        raise ParameterError(str(exc), stage="train") from None


class UnknownParameter(ParameterError):
    """A hyperparameter the estimator's class does not take at all."""


def make_estimator(name: str, task: str, params: dict[str, Any], seed: int) -> Any:
    """The unfitted estimator for ``task``, its parameters checked by name and by constraint."""
    entry = get_estimator(name)
    cls = entry.estimator_class(task)
    accepted = list(inspect.signature(cls).parameters)
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise UnknownParameter(
            f"{cls.__name__} has no parameter {', '.join(map(repr, unknown))}. "
            f"Its parameters are: {', '.join(accepted)}.",
            stage="train",
        )
    full = {**entry.defaults.get(task, {}), **params}
    if "random_state" in accepted and "random_state" not in params:
        full["random_state"] = int(seed)
    model = cls(**full)
    check_declared_constraints(model)
    return model


def check_params(name: str, task: str, params: dict[str, Any]) -> None:
    """Check hyperparameters before any data is read; ``task="auto"`` checks each task's class.

    With the task not yet known, a parameter must suit at least one task's class (say
    ``class_weight``, which only classifiers take); train checks it again once the task is known.
    """
    tasks = TASKS if task == "auto" else (task,)
    errors: list[ParameterError] = []
    for candidate in tasks:
        try:
            make_estimator(name, candidate, params, seed=0)
        except ParameterError as exc:
            errors.append(exc)
    if len(errors) == len(tasks):
        # Where one task's class knows every name, its complaint about a value is the useful one.
        errors.sort(key=lambda error: isinstance(error, UnknownParameter))
        raise errors[0]

"""Hyperparameter search: a grid or a seeded random sample, scored on validation rows only.

The pipeline plans the trials (:func:`plan`, one JSON item per parameter set), runs one
:func:`run_trial` per item (``dsl.ParallelFor``: pods on a cluster, subprocesses locally), and train
picks the best on validation data (:func:`choose`) and fits it on all training rows. A trial is
given the training rows and the feature spec only: it carves its validation rows from the training
rows with the run's seed, so every trial of a run is scored on the same rows and none sees a test
row.

This module is imported by the settings table (the ``--grid`` option and the checks that run
before any stage): it imports neither the data stack nor pydantic until a trial really runs.
"""

from __future__ import annotations

import itertools
import json
import math
import random
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from keel.errors import KeelError, ParameterError, one_line, reports_errors, shorten
from keel.estimators import TASKS, UnknownParameter, check_params, get_estimator

if TYPE_CHECKING:
    import pandas as pd

    from keel.contracts import FeatureSpec, Search, Trial

MAX_TRIALS = 256
METHODS = ("grid", "random", "none")
STAGE = "train"  # the stage error messages name: hyperparameters are train's
TRIAL_STAGE = "tune"  # the pipeline task that runs one trial


class SearchError(KeelError):
    """No trial of a search could be fitted and scored, or the trials do not fit together."""

    stage = STAGE


# -- the CLI form -------------------------------------------------------------------------------
def _grid_form(item: str, why: str) -> ParameterError:
    return ParameterError(
        "A --grid must look like NAME=V1,V2, for example max_depth=3,5,8, or NAME=[JSON list], "
        f'for example class_weight=[null,"balanced"] ({why}). Got {item!r}.',
        stage=STAGE,
    )


def grid_from_cli(items: tuple[str, ...]) -> dict[str, list[Any]]:
    """``("max_depth=3,5", "learning_rate=0.05,0.1")`` -> ``{"max_depth": [3, 5], ...}``.

    Each value is read as ``--param`` reads one (``5`` an int, ``0.1`` a float, ``none``, ``true``);
    a JSON list after ``=`` is taken as the list of values. The same name twice adds its values.
    """
    from keel.settings import parse_param_value

    grid: dict[str, list[Any]] = {}
    for item in items:
        name, sep, text = item.partition("=")
        name = name.strip()
        if not sep:
            raise _grid_form(item, "'=' is missing")
        if not name:
            raise _grid_form(item, "the name is missing")
        if text.strip().startswith("["):
            try:
                values = json.loads(text)
            except ValueError as exc:
                raise _grid_form(item, f"the list is not valid JSON: {exc}") from None
            if not isinstance(values, list):
                raise _grid_form(item, "a value starting with '[' must be one JSON list")
            if not values:
                raise _grid_form(item, "the list is empty")
        else:
            parts = [part.strip() for part in text.split(",")]
            if not all(parts):
                raise _grid_form(item, "a value is empty")
            values = [parse_param_value(part) for part in parts]
        grid.setdefault(name, []).extend(values)
    return grid


# -- checks before any stage --------------------------------------------------------------------
def _fail(expected: str, got: Any) -> ParameterError:
    return ParameterError(f"The 'grid' parameter of {STAGE} must be {expected}. Got {got!r}.",
                          stage=STAGE)


def _shown(name: str, value: Any) -> str:
    return f"{name}={json.dumps(value)}"


def _size(grid: Mapping[str, Sequence[Any]]) -> int:
    return math.prod(len(values) for values in grid.values())


def _dimensions(grid: Mapping[str, Sequence[Any]]) -> str:
    return " x ".join(str(len(values)) for values in grid.values())


def _check_value(estimator: str, task: str, params: dict[str, Any], name: str, value: Any,
                 from_mapping: bool) -> Any:
    """The value as the estimator takes it, or a ParameterError naming the grid, name and value."""
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        raise ParameterError(
            f"The 'grid' parameter of {STAGE} lists {name}={value!r}, which is not a JSON value "
            "(null, true/false, a finite number, a string, a list or an object).",
            stage=STAGE,
        ) from None
    try:
        check_params(estimator, task, {**params, name: value})
        return value
    except UnknownParameter as exc:
        raise ParameterError(
            f"The 'grid' parameter of {STAGE} lists {_shown(name, value)}: {exc.args[0]}",
            stage=STAGE,
        ) from None
    except ParameterError as exc:
        error = exc
    # A grid handed over as a mapping went through KFP, which makes every number a float: a
    # whole float the estimator refuses is the int the user wrote when the int is accepted.
    if from_mapping and isinstance(value, float) and value.is_integer():
        try:
            check_params(estimator, task, {**params, name: int(value)})
            return int(value)
        except ParameterError:
            pass
    raise ParameterError(
        f"The 'grid' parameter of {STAGE} lists {_shown(name, value)}, which the estimator "
        f"refuses: {error.args[0]}",
        stage=STAGE,
    ) from None


def check_grid(grid: Any, estimator: str, task: str, params: dict[str, Any], *,
               search_random: Any = 0) -> dict[str, list[Any]]:
    """The grid as the trials use it: parameter name -> distinct values, names sorted.

    ``grid`` is a mapping or its JSON text (``""`` is no grid). Every value is checked with the
    base ``params`` for ``estimator`` and ``task`` (``auto``: as :func:`check_params` does). A
    mapping's whole floats are turned back into the ints KFP made floats of, where the estimator
    refuses the float; JSON text keeps its types as written (1 and 1.0 stay different). The
    product may exceed :data:`MAX_TRIALS` only when ``search_random`` samples from it.
    """
    from_mapping = not isinstance(grid, str)
    if isinstance(grid, str):
        try:
            grid = json.loads(grid) if grid.strip() else {}
        except ValueError as exc:
            raise _fail(f"a JSON object of parameter name to list of values ({exc})", grid) \
                from None
    if not isinstance(grid, Mapping):
        raise _fail("a mapping of parameter name to a list of values", grid)
    checked_grid: dict[str, list[Any]] = {}
    for name in sorted(grid, key=str):
        values = grid[name]
        if not isinstance(name, str) or not name.strip():
            raise _fail("a mapping whose keys are parameter names", name)
        if not isinstance(values, list | tuple) or not values:
            raise ParameterError(
                f"The 'grid' parameter of {STAGE} must map each parameter name to a non-empty "
                f"list of values. Got {name}={values!r}.",
                stage=STAGE,
            )
        if name in params:
            raise ParameterError(
                f"The 'grid' parameter of {STAGE} and the 'params' parameter both set {name!r} "
                f"(params: {json.dumps(params[name])}, grid: {json.dumps(values)}): give it in "
                "one of them.",
                stage=STAGE,
            )
        seen: set[str] = set()
        checked_values = []
        for value in values:
            value = _check_value(estimator, task, params, name, value, from_mapping)
            key = json.dumps(value, sort_keys=True)  # 1, 1.0 and true stay different
            if key in seen:
                raise ParameterError(
                    f"The 'grid' parameter of {STAGE} lists {name}={key} twice: give each value "
                    "once.",
                    stage=STAGE,
                )
            seen.add(key)
            checked_values.append(value)
        checked_grid[name] = checked_values
    size = _size(checked_grid)
    sampling = isinstance(search_random, int | float) and not isinstance(search_random, bool) \
        and search_random > 0
    if size > MAX_TRIALS and not sampling:
        raise ParameterError(
            f"The 'grid' parameter of {STAGE} makes {size} parameter sets "
            f"({_dimensions(checked_grid)}), more than the {MAX_TRIALS} trials a search may run: "
            "give fewer values, or sample some of them with search_random (--search-random N).",
            stage=STAGE,
        )
    return checked_grid


def _default_space(estimator: str, task: str, params: Mapping[str, Any]) -> dict[str, list[Any]]:
    """The estimator table's search space for ``task``, less the names ``params`` fixes."""
    entry = get_estimator(estimator)
    space = entry.search_space.get(task)
    if not space:
        raise ParameterError(
            f"The estimator {entry.name} has no default search space for {task}: give the "
            "values to sample from with the 'grid' parameter (--grid NAME=V1,V2).",
            stage=STAGE,
        )
    free = {name: list(space[name]) for name in sorted(space) if name not in params}
    if not free:
        raise ParameterError(
            f"Every parameter of the default search space of {entry.name} for {task} "
            f"({', '.join(sorted(space))}) is set by the 'params' parameter: nothing is left to "
            "search; give the values to try with the 'grid' parameter (--grid NAME=V1,V2).",
            stage=STAGE,
        )
    return free


def sample_size(n: Any) -> int:
    """``search_random`` as a number of parameter sets: a whole number from 0 to MAX_TRIALS.

    KFP hands ints to a component as floats: 3.0 is 3, 3.5 is refused.
    """
    if isinstance(n, bool) or not isinstance(n, int | float) or not math.isfinite(n) \
            or n != int(n) or n < 0:
        raise ParameterError(
            f"The 'search_random' parameter of {STAGE} must be a whole number of parameter sets "
            f"to sample, 0 or more. Got {n!r}.",
            stage=STAGE,
        )
    if n > MAX_TRIALS:
        raise ParameterError(
            f"The 'search_random' parameter of {STAGE} must be at most {MAX_TRIALS}, the trials "
            f"a search may run. Got {int(n)}.",
            stage=STAGE,
        )
    return int(n)


def check_search_random(n: Any, grid: dict[str, list[Any]], estimator: str, task: str, *,
                        params: Mapping[str, Any] | None = None) -> int:
    """The number of parameter sets to sample (0: no random search), checked against the space.

    With a grid, ``n`` may not exceed its product; without, the estimator's default search space
    for ``task`` (both tasks for ``auto``), less the names ``params`` sets, is sampled from.
    """
    count = sample_size(n)
    if count == 0:
        return 0
    if grid:
        spaces = {"the grid": grid}
    else:
        tasks = TASKS if task == "auto" else (task,)
        spaces = {f"the default search space of {estimator} for {t}":
                  _default_space(estimator, t, params or {}) for t in tasks}
    for what, space in spaces.items():
        size = _size(space)
        if count > size:
            raise ParameterError(
                f"The 'search_random' parameter of {STAGE} asks for {count} distinct parameter "
                f"sets, but {what} has only {size} ({_dimensions(space)}: "
                f"{', '.join(space)}): ask for {size} or fewer"
                + (", or leave search_random at 0 to try the whole grid." if grid else "."),
                stage=STAGE,
            )
    return count


# -- planning -------------------------------------------------------------------------------------
def _point(space: dict[str, list[Any]], index: int) -> dict[str, Any]:
    """The ``index``-th point of the product, in itertools.product order (last name fastest)."""
    point: dict[str, Any] = {}
    for name in reversed(space):
        index, position = divmod(index, len(space[name]))
        point[name] = space[name][position]
    return {name: point[name] for name in space}


def plan(estimator: str, task: str, params: dict[str, Any], grid: dict[str, list[Any]],
         search_random: int, seed: int) -> list[str]:
    """The trial items, as JSON: ``{"index": i, "params": {...}, "method": ...}``.

    No grid and no random search: one ``"none"`` item with ``params`` (nothing to search). A grid:
    its whole product (names sorted, the last one varying fastest). ``search_random`` N: N
    distinct points drawn with ``seed`` from the grid, or from the estimator's default search space
    for ``task`` when there is no grid, in product order. Every item's parameters are ``params``
    and the point; the same arguments always give the same items.
    """
    from keel.settings import checked

    grid = check_grid(grid, estimator, task, params, search_random=search_random)
    count = check_search_random(search_random, grid, estimator, task, params=params)
    seed = checked("seed", seed)
    points: list[dict[str, Any]]
    if not grid and not count:
        points, method = [{}], "none"
    elif not count:
        points, method = [dict(zip(grid, values, strict=True))
                          for values in itertools.product(*grid.values())], "grid"
    else:
        if grid:
            space = grid
        elif task in TASKS:
            space = _default_space(estimator, task, params)
        else:
            raise ValueError(f"plan needs the task of the data to sample the default search "
                             f"space, one of {', '.join(TASKS)}; got {task!r}")
        rng = random.Random(seed)
        size = _size(space)
        chosen: set[int] = set()
        while len(chosen) < count:  # count <= size: checked above
            chosen.add(rng.randrange(size))
        points, method = [_point(space, index) for index in sorted(chosen)], "random"
    return [json.dumps({"index": i, "params": {**params, **point}, "method": method},
                       allow_nan=False)
            for i, point in enumerate(points)]


# -- one trial ----------------------------------------------------------------------------------
def _read_item(item: str) -> tuple[int, dict[str, Any], str]:
    try:
        doc = json.loads(item)
    except ValueError:
        doc = None
    if not isinstance(doc, dict) or set(doc) != {"index", "params", "method"} \
            or not isinstance(doc["index"], int) or isinstance(doc["index"], bool) \
            or doc["index"] < 0 or not isinstance(doc["params"], dict) \
            or doc["method"] not in METHODS:
        raise KeelError(
            "A trial item must be the JSON object {\"index\": N, \"params\": {...}, \"method\": "
            f"\"grid\", \"random\" or \"none\"}} that the search plan made. Got {item!r}.",
            stage=TRIAL_STAGE,
        )
    return doc["index"], doc["params"], doc["method"]


def validation_split(frame: pd.DataFrame, spec: FeatureSpec, validation_size: float,
                     seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The training rows a trial fits on, and the validation rows it is scored on.

    Seeded (the same rows for every trial of a run) and stratified by the target for
    classification, so every class is on both sides.
    """
    from sklearn.model_selection import train_test_split

    stratify = frame[spec.target] if spec.task == "classification" else None
    try:
        fit, validation = train_test_split(frame, test_size=validation_size, random_state=seed,
                                           stratify=stratify)
    except ValueError as exc:
        raise KeelError(
            f"Cannot carve validation rows from {len(frame)} training rows with "
            f"validation_size={validation_size}: {exc}",
            stage=TRIAL_STAGE,
        ) from None
    return fit, validation


def _error_line(exc: Exception) -> str:
    message = exc.args[0] if isinstance(exc, KeelError) and exc.args else str(exc)
    return one_line(f"{type(exc).__name__}: {message}")


@reports_errors
def run_trial(train_path: str, spec_path: str, estimator: str, item: str, seed: int,
              validation_size: float) -> str:
    """Fit one planned parameter set and score it on validation rows; the Trial as JSON.

    A ``"none"`` item (no search) returns ``""`` at once. A fit or scoring failure is a trial
    with no score and its error, not an exception: the other trials still count.
    """
    index, params, method = _read_item(item)
    if method == "none":
        return ""
    import pandas as pd

    from keel.contracts import FeatureSpec, Trial
    from keel.metrics import metrics_of, predict, primary_metric
    from keel.settings import checked
    from keel.train import train

    estimator = get_estimator(checked("estimator", estimator)).name
    validation_size = checked("validation_size", validation_size)
    seed = checked("seed", seed)
    spec = FeatureSpec.read(spec_path, stage=TRIAL_STAGE)
    frame = pd.read_parquet(train_path)
    fit_rows, validation = validation_split(frame, spec, validation_size, seed)
    classes = int(frame[spec.target].nunique()) if spec.task == "classification" else 0
    metric = primary_metric(spec.task, classes)
    score: float | None = None
    error: str | None = None
    started = time.perf_counter()
    fit_seconds = 0.0
    try:
        model, _ = train(fit_rows, spec, estimator, params, seed)
        fit_seconds = time.perf_counter() - started
        score = metrics_of(predict(model, validation, spec), [metric]).get(metric)
        if score is None:
            error = f"{metric} is not defined on the {len(validation)} validation rows"
    except Exception as exc:  # one parameter set failing is a result, not a failed run
        error = _error_line(exc)
        fit_seconds = fit_seconds or time.perf_counter() - started
    return Trial(index=index, params=params, metric=metric, score=score, error=error,
                 fit_seconds=round(fit_seconds, 3), validation_rows=len(validation)).to_json()


# -- choosing -----------------------------------------------------------------------------------
MAX_LISTED = 5  # trial errors a "no trial scored" message lists


def choose(trials: list[Trial], method: str, validation_size: float) -> Search:
    """The search record: every trial by index, and the best scored one (ties: lowest index).

    Higher is better for the metrics in :data:`keel.metrics.HIGHER_IS_BETTER`, lower otherwise.
    A :class:`SearchError` lists the trials' errors when none could be scored.
    """
    from keel.contracts import Search
    from keel.metrics import HIGHER_IS_BETTER
    from keel.settings import checked

    if method not in ("grid", "random"):
        raise ValueError(f"a search's method is grid or random, not {method!r}")
    kind: Literal["grid", "random"] = "grid" if method == "grid" else "random"
    validation_size = checked("validation_size", validation_size)
    if not trials:
        raise SearchError("The search has no trial to choose from.")
    candidates = sorted(trials, key=lambda trial: trial.index)
    indexes = [trial.index for trial in candidates]
    metrics = sorted({trial.metric for trial in candidates})
    if len(set(indexes)) != len(indexes) or len(metrics) != 1:
        raise SearchError(
            f"The search's trials do not belong together: indexes {indexes}, metrics "
            f"{', '.join(metrics)} (each trial of a search has its own index and the same metric)."
        )
    metric = metrics[0]
    higher = metric in HIGHER_IS_BETTER
    scored = [(position, trial.score) for position, trial in enumerate(candidates)
              if trial.score is not None]
    if not scored:
        listed = "; ".join(f"#{trial.index} {shorten(json.dumps(trial.params), 60)}: "
                           f"{shorten(trial.error or 'no score', 100).rstrip('.')}"
                           for trial in candidates[:MAX_LISTED])
        more = f"; and {len(candidates) - MAX_LISTED} more" if len(candidates) > MAX_LISTED else ""
        raise SearchError(f"No trial of the search could be fitted and scored on {metric} "
                          f"({len(candidates)} tried): {listed}{more}.")
    # min over (-score or score, position): the best score, and the lowest index among equals
    best = min(scored, key=lambda pair: (-pair[1] if higher else pair[1], pair[0]))[0]
    return Search(metric=metric, higher_is_better=higher, method=kind,
                  validation_size=validation_size, candidates=candidates, best=best)

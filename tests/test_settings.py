"""The one table of run settings: it generates the CLI, matches the pipeline, checks values once."""

from __future__ import annotations

import inspect
import json
import math
import subprocess
import sys

import click
import pandas as pd
import pytest
import yaml

from keel.cli import run as run_command
from keel.errors import ParameterError
from keel.pipelines.training import COMPILED, training_pipeline
from keel.settings import (
    DEFAULTS,
    REQUIRED,
    SAME,
    SETTINGS,
    check_settings,
    checked,
    default_model_name,
    params_from_cli,
    thresholds_from_cli,
)

SIGNATURE = inspect.signature(training_pipeline.pipeline_func).parameters
GOOD = {"source": "/data/t.csv", "target": "y", "store": "/tmp/keel-store"}


def cli_option(name: str) -> click.Option:
    return next(p for p in run_command.params if p.name == name)


# -- the table and what is generated from it ------------------------------------------------------
def test_the_pipeline_signature_is_the_table():
    assert list(SIGNATURE) == list(SETTINGS)
    for name, setting in SETTINGS.items():
        parameter = SIGNATURE[name]
        assert parameter.annotation in (setting.type, setting.type.__name__), name
        if setting.default is REQUIRED:
            assert parameter.default is inspect.Parameter.empty, name
        else:
            assert parameter.default == setting.default, name


def test_the_compiled_pipeline_describes_each_input_with_the_table_help():
    spec = next(yaml.safe_load_all(COMPILED.read_text()))  # then the Kubernetes platform spec
    inputs = spec["root"]["inputDefinitions"]["parameters"]
    for name, setting in SETTINGS.items():
        assert " ".join(inputs[name]["description"].split()) == setting.help, name


@pytest.mark.parametrize("name", list(SETTINGS))
def test_each_setting_is_a_keel_run_option(name):
    setting = SETTINGS[name]
    option = cli_option(name)
    assert setting.cli_flag in option.opts
    assert option.help == (setting.cli_help or setting.help)
    if setting.choices:
        assert list(option.type.choices) == list(setting.choices)
    if setting.from_cli:
        assert option.multiple
    elif setting.default is REQUIRED and setting.cli_default is SAME:
        assert option.required
    else:
        expected = setting.default if setting.cli_default is SAME else setting.cli_default
        assert option.default == expected


def test_keel_run_has_no_option_outside_the_table_but_its_own_five():
    names = {p.name for p in run_command.params}
    assert names - set(SETTINGS) == {"work_dir", "as_json", "debug", "fail_on_reject", "runner"}


def test_components_describe_their_settings_with_the_table_help():
    from keel import components

    for stage in components.__all__:
        spec = getattr(components, stage).component_spec
        for name, entry in spec.inputs.items():
            if name in SETTINGS and not (stage == "validate" and name in ("store", "model_name")):
                assert entry.description == SETTINGS[name].help, (stage, name)
            if name in SETTINGS and entry.optional and name in DEFAULTS \
                    and not (stage == "validate" and name in ("store", "model_name")):
                # a component's defaults are literals (KFP copies its source): the table's values
                assert entry.default == DEFAULTS[name], (stage, name)


def test_choices_come_from_the_estimator_and_format_tables():
    from keel.estimators import DEFAULT_ESTIMATOR, ESTIMATORS
    from keel.sources import FORMAT_NAMES

    assert SETTINGS["estimator"].choices == tuple(ESTIMATORS)
    assert SETTINGS["estimator"].default == DEFAULT_ESTIMATOR
    assert SETTINGS["source_format"].choices == ("auto", *FORMAT_NAMES)


# -- constraints ----------------------------------------------------------------------------------
def test_good_settings_come_back_as_the_stages_use_them():
    values = check_settings({**GOOD, "params": '{"max_depth": 3}', "seed": 3.0,
                             "thresholds": {"roc_auc": {"lower": 1}}})
    assert values["params"] == {"max_depth": 3}
    assert values["seed"] == 3 and isinstance(values["seed"], int)  # KFP sends ints as floats
    assert values["thresholds"] == {"roc_auc": {"lower": 1.0}}
    assert values["test_size"] == DEFAULTS["test_size"]


BAD = {
    # case: (settings, stage, words the message must contain)
    "missing target": ({"target": None}, "run", ["target"]),
    "unknown setting": ({"depth": 3}, "run", ["'depth'"]),
    "empty target": ({"target": " "}, "validate", ["'target'", "non-empty"]),
    "unknown task": ({"task": "ranking"}, "validate", ["'task'", "'ranking'", "regression"]),
    "unknown estimator": ({"estimator": "xgboost"}, "train", ["'xgboost'", "linear"]),
    "params not JSON": ({"params": "{max_depth: 3}"}, "train", ["'params'", "JSON object"]),
    "params not an object": ({"params": "[3]"}, "train", ["'params'", "JSON object"]),
    "params wrong value": ({"params": '{"max_depth": "abc"}'}, "train", ["'max_depth'", "'abc'"]),
    "params unknown name": ({"params": '{"depth": 3}'}, "train", ["'depth'", "max_depth"]),
    "params of the other estimator": ({"estimator": "linear", "params": '{"max_depth": 3}'},
                                      "train", ["'max_depth'", "LogisticRegression"]),
    "params of the other task": ({"task": "regression", "params": '{"class_weight": "balanced"}'},
                                 "train", ["'class_weight'", "Regressor"]),
    "nan test size": ({"test_size": math.nan}, "preprocess", ["'test_size'", "nan"]),
    "inf test size": ({"test_size": math.inf}, "preprocess", ["'test_size'", "inf"]),
    "test size 1": ({"test_size": 1.0}, "preprocess", ["'test_size'", "between 0 and 1"]),
    "test size text": ({"test_size": "0.2"}, "preprocess", ["'test_size'", "'0.2'"]),
    "test size bool": ({"test_size": True}, "preprocess", ["'test_size'", "True"]),
    "fractional seed": ({"seed": 2.5}, "preprocess", ["'seed'", "2.5"]),
    "huge seed": ({"seed": 2**40}, "preprocess", ["'seed'"]),
    "unknown encoding": ({"encoding": "hash"}, "preprocess", ["'encoding'", "onehot"]),
    "unknown metric": ({"thresholds": {"auc": {"lower": 0.7}}}, "evaluate", ["unknown metric"]),
    "metric of the other task": ({"task": "regression", "thresholds": {"roc_auc": {"lower": 0.7}}},
                                 "evaluate", ["'roc_auc'", "regression does not compute"]),
    "infinite threshold": ({"thresholds": {"rmse": {"upper": math.inf}}}, "evaluate",
                           ["finite number"]),
    "unknown rule": ({"thresholds": {"rmse": {"max": 1}}}, "evaluate", ["'rmse'", "lower, upper"]),
    "threshold that cannot pass": ({"thresholds": {"roc_auc": {"lower": 1.5}}}, "evaluate",
                                   ["'roc_auc'", "never pass", "[0, 1]"]),
    "negative upper error": ({"thresholds": {"rmse": {"upper": -1}}}, "evaluate",
                             ["'rmse'", "never pass"]),
    "unknown source scheme": ({"source": "s3://b/t.csv"}, "ingest", ["'s3://'", "gs://"]),
    "unknown store scheme": ({"store": "s3://b/keel"}, "publish", ["'s3://'", "gs://"]),
    "gs store without bucket": ({"store": "gs:///keel"}, "publish", ["bucket"]),
    "bad model name": ({"model_name": "Credit Model"}, "publish", ["'model'", "'Credit Model'"]),
    "model name with newline": ({"model_name": "credit\n"}, "publish", ["'model'"]),
    "unknown format": ({"source_format": "xlsx"}, "ingest", ["'source_format'", "parquet"]),
    "empty split key": ({"split_key": [""]}, "preprocess", ["'split_key'", "column names"]),
    "split key twice": ({"split_key": ["a", "a"]}, "preprocess", ["'split_key'", "distinct"]),
    "key and time": ({"split_key": ["a"], "split_time_column": "t"}, "preprocess",
                     ["'split_time_column'", "not both", "'t'"]),
    "empty salt": ({"split_salt": ""}, "preprocess", ["'split_salt'", "non-empty"]),
    "grid not JSON": ({"grid": "{max_depth: [3]}"}, "train", ["grid"]),
    "grid of an unknown parameter": ({"grid": '{"depth": [3, 5]}'}, "train", ["'depth'"]),
    "grid and params": ({"grid": '{"max_depth": [3, 5]}', "params": '{"max_depth": 4}'},
                        "train", ["'grid'", "'params'", "both set"]),
    "random search beyond the grid": ({"grid": '{"max_depth": [3, 5]}', "search_random": 3},
                                      "train", ["'search_random'", "only 2"]),
    "fractional random search": ({"search_random": 2.5}, "train", ["'search_random'", "2.5"]),
    "validation size 1": ({"validation_size": 1.0}, "train", ["'validation_size'"]),
    "confidence 1": ({"confidence": 1.0}, "evaluate", ["'confidence'"]),
    "negative rounds": ({"bootstrap_rounds": -5}, "evaluate", ["'bootstrap_rounds'", "-5"]),
    "interval without rounds": ({"change_bound": "interval", "bootstrap_rounds": 0}, "evaluate",
                                ["'change_bound'", "bootstrap_rounds is 0"]),
    "unknown change bound": ({"change_bound": "lower"}, "evaluate", ["'change_bound'",
                                                                     "interval"]),
    "slice rule without slices": ({"thresholds": {"roc_auc": {"max_slice_drop": 0.1}}},
                                  "evaluate", ["max_slice_drop", "slices"]),
    "negative slice drop": ({"thresholds": {"roc_auc": {"max_slice_drop": -0.1}},
                             "slices": ["Home"]}, "evaluate", ["0 or more"]),
    "slices not a list": ({"slices": "Home"}, "evaluate", ["'slices'", "list"]),
    "deploying a model KServe cannot name": ({"model_name": "9credit", "deploy_namespace": "ml"},
                                             "deploy", ["'9credit'", "InferenceService"]),
    "deploying a model name too long": ({"model_name": "c" * 46, "deploy_namespace": "ml"},
                                        "deploy", ["at most 45"]),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_settings_are_refused_with_the_stage_the_setting_and_what_arrived(case):
    changes, stage, words = BAD[case]
    with pytest.raises(ParameterError) as info:
        check_settings({**GOOD, **changes})
    message = str(info.value)
    assert message.startswith(f"[{stage}] "), message
    for word in words:
        assert word in message, message
    assert len(message) < 600  # one readable line, however big the input


def test_a_model_name_kserve_cannot_take_is_fine_without_deployment():
    assert check_settings({**GOOD, "model_name": "9credit"})["model_name"] == "9credit"


def test_the_stages_check_with_the_same_code():
    """A run submitted straight to Kubeflow gets the same error from the stage itself."""
    from keel.contracts import TableSchema
    from keel.split import make_rule

    with pytest.raises(ParameterError) as before:
        check_settings({**GOOD, "test_size": math.nan})
    schema = TableSchema.read("tests/data/store-0.1.0/registry/credit/versions/1/schema.json")
    with pytest.raises(ParameterError) as in_stage:
        make_rule(pd.DataFrame({"Status": ["a", "b"] * 5}), schema, math.nan)
    assert str(in_stage.value) == str(before.value)
    assert checked("seed", 7.0) == 7


# -- the CLI forms --------------------------------------------------------------------------------
def test_params_from_the_command_line_become_a_json_object():
    assert json.loads(params_from_cli(("max_depth=5", "learning_rate=0.1", "early_stopping=false",
                                       "max_leaf_nodes=none", "categorical_features=[0, 2]",
                                       "loss=log_loss"))) == {
        "max_depth": 5, "learning_rate": 0.1, "early_stopping": False, "max_leaf_nodes": None,
        "categorical_features": [0, 2], "loss": "log_loss"}
    # 1 and 1.0 stay different: scikit-learn reads max_features=1 as a count, 1.0 as a share.
    assert json.loads(params_from_cli(("max_features=1",)))["max_features"] == 1
    assert isinstance(json.loads(params_from_cli(("max_features=1.0",)))["max_features"], float)
    with pytest.raises(ParameterError, match="name=value"):
        params_from_cli(("max_depth",))


def test_thresholds_from_the_command_line():
    assert thresholds_from_cli(("roc_auc.lower=0.7", "roc_auc.min_relative_change=0.01")) == {
        "roc_auc": {"lower": 0.7, "min_relative_change": 0.01}}
    for bad in ("roc_auc=0.7", "roc_auc.lower", "roc_auc.lower=high", "roc_auc.lower=nan"):
        with pytest.raises(ParameterError, match="METRIC.RULE=NUMBER"):
            thresholds_from_cli((bad,))


@pytest.mark.parametrize(("source", "name"), [
    ("data/credit.csv", "credit"), ("gs://b/tables/Sales 2026.parquet", "sales-2026"),
    ("t.csv.gz", "t"), ("/", "model"), ("https://api.example.com/v1/loans?page=1", "loans"),
    ("postgresql://keel@127.0.0.1:5432/credit", "credit"), ("gs://b/exports/2026-11/", "2026-11"),
])
def test_default_model_name(source, name):
    assert default_model_name(source) == name


def test_no_parameters_need_no_scikit_learn_to_check():
    """`keel run` checks --param before any stage; with none given it must not pay sklearn's import."""
    code = ("import sys; from keel.settings import checked; "
            "assert checked('params', '{}', estimator='hist_gradient_boosting') == {}; "
            "print('sklearn' in sys.modules); "
            "checked('params', '{\"max_depth\": 3}', estimator='hist_gradient_boosting'); "
            "print('sklearn' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "True"]

"""validate.run against a real registry: a model name keeps its target, task and classes (issue 6).

The production version is published and promoted through keel.registry in a tmp folder (and, for
the ``store_uri`` tests, on the gs:// emulator too); its ``schema.json`` is a schema document
validate wrote, so the classes are read back the way a real run's are.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from keel.contracts import TableSchema
from keel.errors import IntegrityError, ParameterError, RegistryError, SchemaError
from keel.registry import MODEL_FILE, Registry
from keel.storage import open_store
from keel.validate import Production, read_production, run, target_change, validate

try:
    from factories import STORE_0_1_0, lineage
except ImportError:  # tests/ imported as a package
    from tests.factories import STORE_0_1_0, lineage

MODEL = "credit"
ROWS = 120  # 24 test rows at test_size 0.2, 12 per class: the default size rules pass
ADVICE = "Use a new --model name, or pass --allow-target-change if the change is intended."


def customers(status: list[Any] | None = None) -> pd.DataFrame:
    """A table with a classification target (status), a regression one (price) and a 0-3 score."""
    rows = len(status) if status is not None else ROWS
    return pd.DataFrame({
        "income": np.linspace(100.0, 700.0, rows),
        "home": (["rent", "owner", "parents"] * rows)[:rows],
        "status": status if status is not None else ["good", "bad"] * (rows // 2),
        "price": np.linspace(1.5, 99.5, rows),
        "score": np.arange(rows) % 4,
    })


def with_status(counts: dict[Any, int]) -> pd.DataFrame:
    return customers([label for label, count in counts.items() for _ in range(count)])


def schema_of(folder: Path, frame: pd.DataFrame, target: str, task: str = "auto",
              classes: list[Any] | None = None) -> Path:
    """The schema.json validate writes for ``frame`` (``classes`` replaced when given)."""
    folder.mkdir(parents=True, exist_ok=True)
    snapshot = folder / "snapshot.parquet"
    frame.to_parquet(snapshot, index=False)
    schema = validate(str(snapshot), target, task, str(folder / "valid.parquet"),
                      min_test_rows=0, min_class_test_rows=0)
    if classes is not None:
        schema = schema.model_copy(update={"classes": classes})
    path = folder / "schema.json"
    schema.write(path)
    return path


def register(store: str, folder: Path, frame: pd.DataFrame, target: str, task: str = "auto", *,
             promote: bool = True, classes: list[Any] | None = None) -> int:
    """Publish a version trained (as its lineage says) on ``target``; promote it unless told."""
    schema_path = schema_of(folder, frame, target, task, classes)
    recorded = TableSchema.read(schema_path)
    model = folder / MODEL_FILE
    model.write_bytes(b"a stand-in: validate never loads the model, it reads schema.json")
    registry = Registry(open_store(store), MODEL)
    version = registry.publish({MODEL_FILE: model, "schema.json": schema_path},
                               lineage(target=recorded.target, task=recorded.task)).version
    if promote:
        registry.move_alias(version, expected_generation=registry.alias().generation,
                            action="promote", reason=f"test promote {version}")
    return version


def validate_run(folder: Path, frame: pd.DataFrame, target: str, store: str,
                 model_name: str = MODEL, **settings: Any) -> tuple[TableSchema, str]:
    """validate.run as the pipeline calls it; the schema and the report it wrote."""
    folder.mkdir(parents=True, exist_ok=True)
    snapshot = folder / "snapshot.parquet"
    frame.to_parquet(snapshot, index=False)
    outs = [str(folder / name) for name in ("dataset.parquet", "schema.json", "report.md")]
    # these tests change what a model predicts; its features may differ too (data checks: warn)
    settings.setdefault("severity", ["production_feature_missing=warning"])
    validated = run(str(snapshot), target,
                    "auto" if "task" not in settings else settings.pop("task"),
                    *outs, store=store, model_name=model_name, **settings)
    return validated.schema, (folder / "report.md").read_text()


def refused(folder: Path, frame: pd.DataFrame, target: str, store: str, **settings: Any) -> str:
    """The one-line SchemaError validate.run refuses with; nothing is written."""
    with pytest.raises(SchemaError) as caught:
        validate_run(folder, frame, target, store, **settings)
    message = str(caught.value)
    assert caught.value.stage == "validate" and message.startswith("[validate] ")
    assert "\n" not in message and len(message) <= 300, (len(message), message)
    assert message.endswith(ADVICE)
    assert not any((folder / name).exists()
                   for name in ("dataset.parquet", "schema.json", "report.md"))
    return message


# -- first run, same model, changed model (local folder and gs://) -------------------------------
def test_a_first_run_compares_nothing(store_uri, tmp_path):
    schema, report = validate_run(tmp_path / "run", customers(), "price", store_uri)
    assert schema.task == "regression"
    assert "- production: none yet (a first run), nothing compared\n" in report


def test_the_same_target_task_and_classes_pass(store_uri, tmp_path):
    assert register(store_uri, tmp_path / "v1", customers(), "status") == 1
    schema, report = validate_run(tmp_path / "run", customers(), "status", store_uri)
    assert schema.classes == ["bad", "good"]
    assert ("- production: version 1 of model 'credit' predicts the same target, task and "
            "classes\n") in report


def test_a_regression_target_under_a_classifier_is_refused(store_uri, tmp_path):
    register(store_uri, tmp_path / "v1", customers(), "status")
    message = refused(tmp_path / "run", customers(), "price", store_uri)
    assert message == (
        "[validate] Production version 1 of model 'credit' predicts 'status' (classification, 2 "
        "classes); this run would predict 'price' (regression). " + ADVICE)


def test_allow_target_change_lets_the_run_through_and_the_report_says_so(store_uri, tmp_path):
    register(store_uri, tmp_path / "v1", customers(), "status")
    schema, report = validate_run(tmp_path / "run", customers(), "price", store_uri,
                                  allow_target_change=True)
    assert schema.target == "price" and schema.task == "regression"
    assert ("- **target changed** (allowed by --allow-target-change): production version 1 of "
            "model 'credit' predicts 'status' (classification, 2 classes); this run would "
            "predict 'price' (regression)\n") in report
    assert TableSchema.read(tmp_path / "run" / "schema.json") == schema


# -- what counts as a change -------------------------------------------------------------------
def test_a_classifier_target_under_a_regression_model_is_refused(tmp_path):
    store = str(tmp_path / "store")
    register(store, tmp_path / "v1", customers(), "price")
    message = refused(tmp_path / "run", customers(), "status", store)
    assert ("predicts 'price' (regression); this run would predict 'status' (classification, 2 "
            "classes).") in message


def test_the_same_target_with_another_task_is_refused(tmp_path):
    store = str(tmp_path / "store")
    register(store, tmp_path / "v1", customers(), "score", task="regression")
    message = refused(tmp_path / "run", customers(), "score", store)  # auto: 4 integer classes
    assert ("predicts 'score' (regression); this run would predict 'score' (classification, 4 "
            "classes).") in message
    schema, _ = validate_run(tmp_path / "again", customers(), "score", store, task="regression")
    assert schema.task == "regression"


def test_a_new_class_is_refused_naming_it(tmp_path):
    store = str(tmp_path / "store")
    register(store, tmp_path / "v1", customers(), "status")
    frame = with_status({"good": 60, "bad": 50, "fraud": 30})
    message = refused(tmp_path / "run", frame, "status", store)
    assert message == (
        "[validate] Production version 1 of model 'credit' predicts 'status' (classification, 2 "
        "classes); this run's classes: new 'fraud'. " + ADVICE)


def test_a_class_that_disappears_is_refused_naming_it(tmp_path):
    store = str(tmp_path / "store")
    register(store, tmp_path / "v1", with_status({"good": 60, "bad": 50, "fraud": 30}), "status")
    message = refused(tmp_path / "run", customers(), "status", store)
    assert "predicts 'status' (classification, 3 classes); this run's classes: without " \
           "'fraud'." in message


def test_classes_appearing_and_disappearing_are_both_named(tmp_path):
    store = str(tmp_path / "store")
    register(store, tmp_path / "v1", with_status({"good": 60, "bad": 50, "fraud": 30}), "status")
    frame = with_status({"good": 60, "bad": 50, "late": 30, "early": 30})
    message = refused(tmp_path / "run", frame, "status", store)
    assert "this run's classes: new 'early', 'late', without 'fraud'." in message


def test_thousands_of_changed_classes_give_a_short_line(tmp_path):
    store = str(tmp_path / "store")
    many = [f"class-{i:05d}" for i in range(5000)]
    register(store, tmp_path / "v1", customers(), "status", classes=many)
    message = refused(tmp_path / "run", customers(), "status", store)
    assert "(classification, 5000 classes); this run's classes: new 'bad', 'good', without " \
           "'class-00000' ... and 4999 more. Use" in message

    other = str(tmp_path / "other")
    register(other, tmp_path / "w1", customers(), "status")
    frame = customers([f"class-{i:05d}" for i in range(5000)] * 2)
    message = refused(tmp_path / "run2", frame, "status", other, min_class_test_rows=0)
    assert "this run's classes: new 'class-00000' ... and 4999 more, without 'bad', 'good'. " \
           "Use" in message


def test_long_names_and_thousands_of_classes_on_both_sides_give_a_short_line(tmp_path):
    store = str(tmp_path / "store")
    target = "the column this model predicts " * 20
    before = [f"{'a former class with a long name ' * 10}{i}" for i in range(5000)]
    after = [f"{'a newer class with a long name ' * 10}{i}" for i in range(5000)]
    frame = customers(after[:60] * 2).rename(columns={"status": target})
    register(store, tmp_path / "v1", frame, target, classes=before)
    message = refused(tmp_path / "run", frame, target, store, min_class_test_rows=0)
    assert message.startswith(
        "[validate] Production version 1 of model 'credit' predicts 'the column this mode... "
        "(classification, 5000 classes); this run's classes: new 'a newer class... ... and 59 "
        "more, without 'a former cl... ... and 4999 more. Use")


def test_production_is_the_alias_not_the_newest_version(tmp_path):
    store = str(tmp_path / "store")
    register(store, tmp_path / "v1", customers(), "status")
    assert register(store, tmp_path / "v2", customers(), "price", promote=False) == 2
    validate_run(tmp_path / "run", customers(), "status", store)
    message = refused(tmp_path / "run2", customers(), "price", store)
    assert message.startswith("[validate] Production version 1 of model 'credit' predicts 'status'")


def test_another_model_name_is_a_first_run(tmp_path):
    store = str(tmp_path / "store")
    register(store, tmp_path / "v1", customers(), "status")
    _, report = validate_run(tmp_path / "run", customers(), "price", store, model_name="prices")
    assert "none yet (a first run)" in report


def test_read_production_reads_target_task_and_classes(tmp_path):
    store = str(tmp_path / "store")
    assert read_production(store, MODEL) is None
    register(store, tmp_path / "v1", customers([0, 1, 2] * 40), "status")
    found = read_production(store, MODEL)
    assert found is not None
    assert (found.model, found.version, found.target, found.task, found.classes) == (
        MODEL, 1, "status", "classification", [0, 1, 2])
    assert found.schema is None and found.statistics is None  # only with reference=True


def production(target: str = "status", task: Any = "classification",
               classes: list[Any] | None = None) -> Production:
    return Production(model=MODEL, version=3, target=target, task=task, classes=classes)


def schema(tmp_path: Path, status: list[Any]) -> TableSchema:
    return TableSchema.read(schema_of(tmp_path, customers(status), "status"))


def test_integral_floats_are_the_same_classes_as_ints_but_bools_are_not(tmp_path):
    as_floats = schema(tmp_path / "f", [0.0, 1.0] * 60)
    assert as_floats.classes == [0.0, 1.0]
    assert target_change(production(classes=[0, 1]), as_floats) == ""
    as_bools = schema(tmp_path / "b", [False, True] * 60)
    assert target_change(production(classes=[0, 1]), as_bools) == (
        "predicts 'status' (classification, 2 classes); this run's classes: new False, True, "
        "without 0, 1")
    as_text = schema(tmp_path / "t", ["0", "1"] * 60)
    assert "new '0', '1', without 0, 1" in target_change(production(classes=[0, 1]), as_text)


def test_a_long_target_name_is_clipped(tmp_path):
    long_name = "the column we predict " * 40
    frame = customers().rename(columns={"price": long_name})
    store = str(tmp_path / "store")
    register(store, tmp_path / "v1", customers(), "status")
    message = refused(tmp_path / "run", frame, long_name, store)
    assert "this run would predict 'the column we predict the co... (regression)." in message


# -- registry damage propagates; it is never a first run ------------------------------------------
def test_a_deleted_production_alias_is_an_error_not_a_first_run(tmp_path):
    store = str(tmp_path / "store")
    register(store, tmp_path / "v1", customers(), "status")
    (tmp_path / "store" / "registry" / MODEL / "aliases" / "production.json").unlink()
    with pytest.raises(RegistryError, match="production"):
        validate_run(tmp_path / "run", customers(), "price", store)
    assert not (tmp_path / "run" / "dataset.parquet").exists()


def test_a_tampered_schema_file_is_an_integrity_error(tmp_path):
    store = str(tmp_path / "store")
    register(store, tmp_path / "v1", customers(), "status")
    stored = tmp_path / "store" / "registry" / MODEL / "versions" / "1" / "schema.json"
    document = json.loads(stored.read_text())
    stored.write_text(json.dumps({**document, "classes": ["bad", "good", "fraud"]}))
    with pytest.raises(IntegrityError, match="schema.json"):
        validate_run(tmp_path / "run", customers(), "status", store)


def test_a_version_without_a_schema_file_is_a_registry_error(tmp_path):
    store = str(tmp_path / "store")
    registry = Registry(open_store(store), MODEL)
    model = tmp_path / MODEL_FILE
    model.write_bytes(b"stand-in")
    version = registry.publish({MODEL_FILE: model}, lineage()).version
    registry.move_alias(version, expected_generation=0, action="promote", reason="test")
    with pytest.raises(RegistryError, match="schema.json"):
        validate_run(tmp_path / "run", customers(), "status", store)


# -- settings -----------------------------------------------------------------------------------
@pytest.mark.parametrize(("store", "model_name"), [("", MODEL), ("somewhere", "")])
def test_store_and_model_name_go_together(tmp_path, store, model_name):
    with pytest.raises(ParameterError, match="'store' and 'model_name' parameters of validate go "
                                             "together"):
        validate_run(tmp_path / "run", customers(), "status", store, model_name=model_name)


def test_a_bad_model_name_is_a_parameter_error(tmp_path):
    with pytest.raises(ParameterError, match="'Bad Name'"):
        validate_run(tmp_path / "run", customers(), "status", str(tmp_path / "store"),
                     model_name="Bad Name")


def test_the_refusal_reaches_keel_error_file(tmp_path, monkeypatch):
    store = str(tmp_path / "store")
    register(store, tmp_path / "v1", customers(), "status")
    monkeypatch.setenv("KEEL_ERROR_FILE", str(tmp_path / "error.json"))
    with pytest.raises(SchemaError):
        validate_run(tmp_path / "run", customers(), "price", store)
    written = json.loads((tmp_path / "error.json").read_text())
    assert written["type"] == "SchemaError" and written["stage"] == "validate"
    assert "--allow-target-change" in written["message"]


# -- a store Keel 0.1.0 wrote ---------------------------------------------------------------------
def test_a_store_written_by_keel_0_1_0_is_compared_too(tmp_path):
    store = tmp_path / "store"
    shutil.copytree(STORE_0_1_0, store)
    frame = customers().rename(columns={"status": "Status"})
    _, report = validate_run(tmp_path / "run", frame, "Status", str(store))
    assert "version 1 of model 'credit' predicts the same target, task and classes" in report
    message = refused(tmp_path / "run2", frame, "price", str(store))
    assert "predicts 'Status' (classification, 2 classes); this run would predict 'price'" \
           in message


# -- evaluate: an allowed change is not compared with production ----------------------------------
def test_evaluate_does_not_compare_production_after_an_allowed_target_change(tmp_path):
    from keel.evaluate import compare, decide
    from keel.metrics import Predictions

    store = str(tmp_path / "store")
    register(store, tmp_path / "v1", customers(), "status")
    schema = TableSchema.read(schema_of(tmp_path / "now", customers(), "price"))
    registry = Registry(open_store(store), MODEL)
    test = customers().head(10)
    candidate = Predictions(test["price"], test["price"].to_numpy())

    compared = compare(registry, test, schema, candidate, allowed_change=True)
    assert compared is not None and compared.comparison is None
    baseline = compared.baseline
    assert baseline.metrics is None
    assert (baseline.version, baseline.generation) == (1, 1)  # promote still needs the generation
    assert "this run would predict 'price' (regression)" in (baseline.not_compared or "")
    decision = decide({"rmse": 1.0}, baseline, {"rmse": {"min_absolute_change": 0.0}}, 10)
    assert decision.passed and decision.checks == [] and not decision.first_run
    assert "was not compared" in decision.notes[0] and "allow_target_change" in decision.notes[0]

    # Without the permission, production is loaded and scored as usual (here: the stand-in file
    # is no model, so the registry refuses it: damage or garbage is never a gate result).
    with pytest.raises(RegistryError):
        compare(registry, test, schema, candidate, allowed_change=False)

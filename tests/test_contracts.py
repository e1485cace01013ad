"""The typed contracts between stages: JSON round trips, bad artifacts, documents from Keel 0.1.0."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from keel import contracts
from keel.contracts import (
    SCHEMA_VERSION,
    ContractError,
    Decision,
    Document,
    FeatureSpec,
    IngestResult,
    Manifest,
    Promotion,
    RunSummary,
    TableSchema,
)

try:
    from factories import STORE_0_1_0, lineage
except ImportError:  # tests/ imported as a package
    from tests.factories import STORE_0_1_0, lineage

VERSIONS = STORE_0_1_0 / "registry" / "credit" / "versions"
DOCUMENTS_0_1_0 = {
    "manifest.json": Manifest,
    "schema.json": TableSchema,
    "feature_spec.json": FeatureSpec,
}


def document_types() -> list[type[Document]]:
    return [cls for cls in vars(contracts).values()
            if isinstance(cls, type) and issubclass(cls, Document) and cls is not Document]


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("name", list(DOCUMENTS_0_1_0))
def test_documents_written_by_keel_0_1_0_read_as_schema_version_1(version, name):
    cls = DOCUMENTS_0_1_0[name]
    document = cls.read(VERSIONS / str(version) / name)
    assert document.schema_version == 1
    # and nothing of what 0.1.0 wrote is lost or changed in the round trip
    original = json.loads((VERSIONS / str(version) / name).read_text())
    assert_contains(document.to_dict(), original)


def assert_contains(dumped, original, where="") -> None:
    """Every value of ``original`` is in ``dumped`` unchanged (new fields may be added)."""
    if isinstance(original, dict):
        for key, value in original.items():
            assert key in dumped, f"{where}.{key} was dropped"
            assert_contains(dumped[key], value, f"{where}.{key}")
    elif isinstance(original, list):
        assert len(dumped) == len(original), where
        for i, (a, b) in enumerate(zip(dumped, original, strict=True)):
            assert_contains(a, b, f"{where}[{i}]")
    else:
        assert dumped == original and type(dumped) is type(original), where


def test_a_0_1_0_manifest_keeps_its_values():
    manifest = Manifest.read(VERSIONS / "2" / "manifest.json")
    raw = json.loads((VERSIONS / "2" / "manifest.json").read_text())
    assert manifest.version == raw["version"] == 2
    assert manifest.decision.baseline is not None
    assert manifest.decision.baseline.generation == raw["decision"]["baseline"]["generation"]
    assert manifest.metrics == raw["metrics"]
    assert manifest.files["model.joblib"].sha256 == raw["files"]["model.joblib"]["sha256"]
    assert manifest.features.features == raw["features"]["numeric"] + raw["features"]["categorical"]


def test_new_documents_carry_the_current_schema_version():
    made = lineage()
    assert made.schema_version == SCHEMA_VERSION
    assert json.loads(made.to_json())["schema_version"] == SCHEMA_VERSION


def test_round_trip_of_every_kind_of_value(tmp_path):
    made = lineage(run_id="run-7")
    path = tmp_path / "lineage.json"
    made.write(path)
    assert type(made).read(path) == made
    assert type(made).from_json(made.to_json()) == made
    assert type(made).from_dict(made.to_dict()) == made


def test_every_document_type_has_a_name_for_messages():
    names = [cls.artifact for cls in document_types()]
    assert "artifact" not in names  # each overrides the base's placeholder
    assert len(set(names)) == len(names)


def test_a_missing_field_names_the_artifact_the_file_and_the_field(tmp_path):
    doc = json.loads((VERSIONS / "2" / "manifest.json").read_text())
    del doc["decision"]["metrics"]
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(ContractError) as info:
        Manifest.read(path, stage="registry")
    message = str(info.value)
    assert message.startswith("[registry] The version manifest")
    assert str(path) in message and "'decision.metrics' is missing" in message


@pytest.mark.parametrize(("field", "value", "words"), [
    ("rows", "4454", ["'rows'", "valid integer", "'4454'"]),
    ("rows", 4454.0, ["'rows'", "valid integer"]),
    ("rows", -1, ["'rows'", "greater than or equal to 0"]),
    ("data_version", "abc", ["'data_version'", "pattern"]),
    ("columns", "Status", ["'columns'", "valid list"]),
])
def test_a_field_of_the_wrong_type_is_refused_with_what_arrived(field, value, words):
    good = {"source": "t.csv", "format": "csv", "data_version": "0" * 64, "rows": 3,
            "columns": ["a"]}
    with pytest.raises(ContractError) as info:
        IngestResult.from_dict({**good, field: value}, stage="publish")
    message = str(info.value)
    assert message.startswith("[publish] The ingest result is not valid: ")
    for word in words:
        assert word in message


def test_an_unknown_field_is_refused():
    with pytest.raises(ContractError, match="'surprise'.*Extra inputs are not permitted"):
        Promotion.from_dict({"model": "m", "store": "s", "version": 1, "promoted": True,
                             "production_version": 1, "reason": "r", "surprise": 1})


def test_not_json_and_not_an_object_are_clear():
    with pytest.raises(ContractError, match="The decision record is not valid: Invalid JSON"):
        Decision.from_json("{not json")
    with pytest.raises(ContractError, match="The decision record is not valid: "):
        Decision.from_json("[1, 2]")


def test_a_document_from_a_newer_keel_is_refused_as_such():
    doc = lineage().to_dict() | {"schema_version": SCHEMA_VERSION + 1}
    with pytest.raises(ContractError, match="newer Keel .*upgrade Keel"):
        type(lineage()).from_dict(doc)


def test_a_decision_must_agree_with_its_own_checks():
    decision = lineage().decision
    doc = decision.to_dict()
    doc["passed"] = not doc["passed"]  # a record that says "passed" while a check failed
    with pytest.raises(ContractError, match="passed must be true exactly when"):
        Decision.from_dict(doc)
    doc = decision.to_dict() | {"first_run": not decision.first_run}
    with pytest.raises(ContractError, match="first_run"):
        Decision.from_dict(doc)


def test_classes_must_match_the_task():
    schema = TableSchema.read(VERSIONS / "1" / "schema.json")
    with pytest.raises(ContractError, match="classes must be a list for classification"):
        TableSchema.from_dict(schema.to_dict() | {"classes": None})


def test_contracts_are_immutable():
    from pydantic import ValidationError

    spec = FeatureSpec.read(VERSIONS / "1" / "feature_spec.json")
    with pytest.raises(ValidationError):
        spec.target = "other"  # type: ignore[misc]


def test_run_summary_is_built_from_the_manifest_and_the_promotion():
    manifest = Manifest.read(VERSIONS / "2" / "manifest.json")
    promotion = Promotion(model="credit", store="/s", version=2, promoted=False,
                          production_version=1, reason="rejected")
    summary = RunSummary.of(manifest, promotion, log="/l.log")
    assert summary.status == "rejected" and summary.production_version == 1
    assert summary.baseline is not None and summary.baseline.version == 1
    assert summary.decision.checks == manifest.decision.checks
    assert summary.data_version == manifest.data.data_version and summary.rows == 4454
    assert RunSummary.from_json(summary.to_json()) == summary


def test_every_stage_artifact_is_a_document():
    # What flows between stages is typed: each of these is read with .read()/.from_json().
    expected = {"IngestResult", "TableSchema", "FeatureSpec", "SplitResult", "TrainRecord",
                "Decision", "Lineage", "Manifest", "Publication", "Promotion", "RunSummary"}
    assert expected <= {cls.__name__ for cls in document_types()}


def test_fixture_documents_are_the_ones_0_1_0_wrote():
    # Guard against "fixing" the fixture: these have no schema_version, as 0.1.0 wrote them.
    for path in Path(STORE_0_1_0).rglob("*.json"):
        assert "schema_version" not in path.read_text(), path

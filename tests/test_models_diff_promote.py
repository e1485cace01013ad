"""``keel models diff``, ``keel models promote`` (a recorded manual override) and how ``keel models
list`` shows overrides; on real stores, local and gs:// (fake-gcs-server).

Versions are built with the factories (a real Keel 0.1.0 manifest, changed), never by running the
pipeline. Through click's CliRunner on ``keel.cli.main``, the group that turns a KeelError into one
``keel: error:`` line.
"""

from __future__ import annotations

import re
import shutil

import pytest

from keel.contracts import SCHEMA_VERSION, Decision, Manifest, Search, SplitRule, Trial
from keel.errors import RegistryConflict
from keel.registry import MANIFEST_FILE, MODEL_FILE, Registry, who
from keel.storage import LocalStore, open_store

try:
    from factories import STORE_0_1_0, delete, lineage, overwrite, state
    from test_models_cli import (
        keel,
        key_of,
        model_files,  # noqa: F401 - a fixture
        ok_json,
        one_error,
    )
except ImportError:  # tests/ imported as a package
    from tests.factories import STORE_0_1_0, delete, lineage, overwrite, state
    from tests.test_models_cli import (
        keel,
        key_of,
        model_files,  # noqa: F401 - a fixture
        ok_json,
        one_error,
    )

MODEL = "credit"
ALIAS = f"registry/{MODEL}/aliases/production.json"
RECORDED_2 = STORE_0_1_0 / "registry" / MODEL / "versions" / "2" / "manifest.json"


# -- helpers ---------------------------------------------------------------------------------------
def rejected_decision() -> Decision:
    """The decision record of version 2 of the Keel 0.1.0 store: roc_auc absolute_change failed."""
    decision = Manifest.from_json(RECORDED_2.read_bytes()).decision
    assert decision.passed is False
    return decision


def overridden_decision(reason: str = "ship it for the audit") -> Decision:
    """A rejection promoted anyway at run time (``keel run --override-reason``)."""
    doc = rejected_decision().to_dict()
    doc.update(passed=True, override={"reason": reason, "checks_passed": False})
    return Decision.from_dict(doc)


def first_lineage():
    """Version 1: the 0.1.0 sample's lineage with max_depth 3 and two metrics."""
    base = lineage()
    training = base.training.model_copy(update={
        "effective_params": {**base.training.effective_params, "max_depth": 3},
        "params": {"max_depth": 3}})
    return lineage(training=training, hyperparameters={"max_depth": 3},
                   metrics={"accuracy": 0.79, "roc_auc": 0.83})


def second_lineage():
    """Version 2: new rows and a new column, max_depth 5 by a search, a feature swapped, a split
    rule, better roc_auc, rejected by its gate (against version 1), another Keel and image."""
    base = first_lineage()
    data = base.data.model_copy(update={
        "rows": 5012, "rows_used": 5012, "data_version": "ab" * 32,
        "columns": [*base.data.columns, "Region"]})
    search = Search(metric="roc_auc", higher_is_better=True, method="grid", validation_size=0.2,
                    best=1, candidates=[
                        Trial(index=i, params={"max_depth": depth}, metric="roc_auc", score=score,
                              fit_seconds=0.1, validation_rows=700)
                        for i, (depth, score) in enumerate([(3, 0.81), (5, 0.84)])])
    training = base.training.model_copy(update={
        "effective_params": {**base.training.effective_params, "max_depth": 5},
        "params": {"max_depth": 5}, "search": search})
    features = base.features.model_copy(update={
        "numeric": [n for n in base.features.numeric if n != "Price"],
        "categorical": [*base.features.categorical, "Region"]})
    images = {**base.environment.images, "evaluate": "registry.example/keel/evaluate:0.2.0"}
    environment = base.environment.model_copy(update={
        "keel": "0.2.0", "git_commit": "b" * 40, "images": images})
    decision = rejected_decision()
    return lineage(data=data, training=training, features=features, environment=environment,
                   hyperparameters={"max_depth": 5}, metrics={"accuracy": 0.80, "roc_auc": 0.85},
                   split=SplitRule(method="hash", test_size=0.2, columns=["Status", "Age"]),
                   decision=decision, baseline=decision.baseline)


def publish(registry: Registry, model_files, record) -> int:
    files = {MODEL_FILE: model_files["good"], "schema.json": model_files["schema"]}
    return registry.publish(files, record).version


@pytest.fixture
def changed(tmp_path, model_files) -> Registry:
    """A local store: version 1 (production) and version 2 (changed in every way, rejected)."""
    registry = Registry(LocalStore(tmp_path / "store"), MODEL)
    publish(registry, model_files, first_lineage())
    publish(registry, model_files, second_lineage())
    registry.move_alias(1, expected_generation=0, action="promote", reason="first model")
    return registry


@pytest.fixture
def registry(store_uri, model_files) -> Registry:
    """Versions 1 (passed), 2 (rejected by its gate), 3 (passed); 1 then 3 were production."""
    registry = Registry(open_store(store_uri), MODEL)
    publish(registry, model_files, lineage(metrics={"roc_auc": 0.9}))
    publish(registry, model_files, lineage(metrics={"roc_auc": 0.8}, decision=rejected_decision(),
                                           baseline=rejected_decision().baseline))
    publish(registry, model_files, lineage(metrics={"roc_auc": 0.91}))
    for version in (1, 3):
        registry.move_alias(version, expected_generation=registry.alias().generation,
                            action="promote", reason=f"test {version}")
    return registry


@pytest.fixture
def store_0_1_0(tmp_path) -> Registry:
    """A copy of the store Keel 0.1.0 wrote: version 1 (production) and 2 (rejected)."""
    shutil.copytree(STORE_0_1_0, tmp_path / "store-0.1.0")
    return Registry(LocalStore(tmp_path / "store-0.1.0"), MODEL)


# -- diff ------------------------------------------------------------------------------------------
EXPECTED_CHANGES = [
    "data: 4454 -> 5012 rows (new data version)",
    "columns: added Region",
    "split: not recorded -> hash of 2 columns (test_size 0.2)",
    "params: max_depth 3 -> 5",
    "search: none -> grid search, 2 trials on roc_auc (best max_depth=5, 0.8400)",
    "features: added Region; removed Price",
    "roc_auc 0.8300 -> 0.8500 (+0.0200)",
    "decision: passed -> rejected",
    "keel: 0.1.0 -> 0.2.0",
    "git commit: 7545b6b9e172 -> bbbbbbbbbbbb",
    "images: 1 changed (evaluate)",
]


def test_diff_json_lists_what_changed_and_every_side(changed):
    diff = ok_json(keel(changed, "diff", "1", "2", "--json"))
    assert diff["changes"] == EXPECTED_CHANGES
    assert (diff["a"]["version"], diff["b"]["version"], diff["same_version"]) == (1, 2, False)
    assert (diff["a"]["production"], diff["b"]["production"]) == (True, False)
    assert diff["production_version"] == 1
    assert not diff["a"]["damaged"] and not diff["b"]["damaged"]
    data = diff["data"]
    assert (data["rows"]["a"], data["rows"]["b"], data["rows"]["changed"]) == (4454, 5012, True)
    assert data["data_version"]["b"] == "ab" * 32 and data["data_version"]["changed"]
    assert (data["columns_added"], data["columns_removed"]) == (["Region"], [])
    assert data["source"]["changed"] is False
    assert diff["split"]["a"] is None
    assert diff["split"]["b"]["method"] == "hash" and diff["split"]["b"]["test_size"] == 0.2
    assert diff["params_changed"] == {"max_depth": {"a": 3, "b": 5}}
    assert diff["hyperparameters"] == {"a": {"max_depth": 3}, "b": {"max_depth": 5},
                                       "changed": True}
    assert diff["search"]["a"] is None
    assert diff["search"]["b"] == {"method": "grid", "metric": "roc_auc", "trials": 2,
                                   "best_params": {"max_depth": 5}, "best_score": 0.84}
    features = diff["features"]
    assert (features["numeric_added"], features["numeric_removed"]) == ([], ["Price"])
    assert (features["categorical_added"], features["categorical_removed"]) == (["Region"], [])
    assert diff["metrics"]["roc_auc"]["a"] == 0.83 and diff["metrics"]["roc_auc"]["b"] == 0.85
    assert diff["metrics"]["roc_auc"]["change"] == pytest.approx(0.02)
    assert diff["metrics"]["accuracy"]["change"] == pytest.approx(0.01)
    decision_a, decision_b = diff["decision"]["a"], diff["decision"]["b"]
    assert (decision_a["status"], decision_b["status"]) == ("passed", "rejected")
    assert decision_a["reasons"] == ["first model: the change thresholds did not apply"]
    assert decision_b["reasons"] == [
        "roc_auc absolute_change: 0.8327 vs required 0.9610 -> fail"]
    assert (diff["baseline"]["a"], diff["baseline"]["b"]) == (None, 1)
    assert (diff["keel"]["a"], diff["keel"]["b"]) == ("0.1.0", "0.2.0")
    assert diff["git_commit"]["b"] == "b" * 40
    assert diff["images"]["evaluate"]["changed"] and not diff["images"]["ingest"]["changed"]
    # Version 2's gate re-scored version 1 on its own test rows: the fair comparison, with
    # its caveat (no comparison record: rows version 1 trained on may be among them).
    same = diff["same_rows"]
    assert (same["scored_by"], same["rows"]) == (2, 891)
    assert same["a"]["roc_auc"] == pytest.approx(0.9610246513944224)
    assert same["b"] == {"accuracy": 0.80, "roc_auc": 0.85}
    assert "may be optimistic" in same["caveat"]


def test_diff_the_other_way_round_reverses_every_change(changed):
    diff = ok_json(keel(changed, "diff", "2", "1", "--json"))
    assert diff["changes"][:2] == ["data: 5012 -> 4454 rows (new data version)",
                                   "columns: removed Region"]
    assert "params: max_depth 5 -> 3" in diff["changes"]
    assert "roc_auc 0.8500 -> 0.8300 (-0.0200)" in diff["changes"]
    assert diff["metrics"]["roc_auc"]["change"] == pytest.approx(-0.02)
    assert diff["same_rows"]["scored_by"] == 2
    assert diff["same_rows"]["a"] == {"accuracy": 0.80, "roc_auc": 0.85}


def test_diff_human_output_is_an_aligned_table_under_what_changed(changed):
    result = keel(changed, "diff", "1", "2")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == (f"Model 'credit' in {changed.store.uri}: version 1 (production) -> "
                        "version 2")
    assert lines[1] == "What changed:"
    assert lines[2:2 + len(EXPECTED_CHANGES)] == [f"  {c}" for c in EXPECTED_CHANGES]
    start = next(i for i, line in enumerate(lines) if line.strip().startswith("version 1 ("))
    assert lines[start - 1] == ""  # the list of changes ends, the table starts
    header, table = lines[start], lines[start + 1:]
    col_a, col_b = header.index("version 1"), header.index("version 2")

    def row(label: str) -> str:
        return next(line for line in table if line.startswith(f"{label} "))

    for label, a, b in [("  rows", "4454", "5012"), ("  data version", "80ddb2d4db66",
                                                       "abababababab"),
                        ("  max_depth", "3", "5"), ("  accuracy", "0.7900", "0.8000"),
                        ("  roc_auc", "0.8300", "0.8500"), ("decision", "passed", "rejected"),
                        ("baseline", "none", "version 1"), ("keel", "0.1.0", "0.2.0"),
                        ("  evaluate", "localhost/keel/evaluate:0.1.0",
                         "registry.example/keel/evaluate:0.2.0")]:
        line = row(label)
        assert line[col_a:].startswith(a + " "), line
        assert line[col_b:].startswith(b), line
    assert row("  roc_auc").endswith("+0.0200") and row("  accuracy").endswith("+0.0100")
    assert row("  categorical").endswith("+Region") and row("  numeric").endswith("-Price")
    assert row("split")[col_b:] == "hash of 2 columns (test_size 0.2)"
    assert row("  search")[col_b:] == "grid search, 2 trials on roc_auc (best max_depth=5, 0.8400)"
    assert "decision of version 2: rejected" in lines
    assert "  roc_auc absolute_change: 0.8327 vs required 0.9610 -> fail" in lines
    assert "DAMAGED" not in result.stdout


def test_diff_accepts_production_for_either_version(changed):
    by_number = ok_json(keel(changed, "diff", "1", "2", "--json"))
    assert ok_json(keel(changed, "diff", "production", "2", "--json")) == by_number
    reverse = ok_json(keel(changed, "diff", "2", "production", "--json"))
    assert (reverse["a"]["version"], reverse["b"]["version"]) == (2, 1)


def test_diff_of_a_version_with_itself_says_nothing_changed(changed):
    diff = ok_json(keel(changed, "diff", "2", "2", "--json"))
    assert diff["same_version"] is True and diff["changes"] == []
    assert all(m["change"] == 0 for m in diff["metrics"].values())
    assert not any(pair["changed"] for pair in diff["data"].values() if isinstance(pair, dict))
    human = keel(changed, "diff", "production", "1")
    assert human.exit_code == 0, human.output
    lines = human.stdout.splitlines()
    assert lines[:3] == [
        f"Model 'credit' in {changed.store.uri}: version 1 (production) and version 1 "
        "(production)", "What changed:", "  nothing: both are version 1"]
    assert lines.count("decision of version 1: passed") == 1


@pytest.mark.parametrize(("args", "expected"), [
    (["1", "9"], "has no version 9 in {uri}. Versions: 1, 2."),
    (["9", "1"], "has no version 9 in {uri}. Versions: 1, 2."),
    (["0", "2"], "has no version 0 in {uri}. Versions: 1, 2."),
    (["latest", "2"], "A version must be a number or 'production'; got 'latest'."),
    (["1", "v2"], "A version must be a number or 'production'; got 'v2'."),
])
def test_diff_of_a_version_that_does_not_exist_is_one_error_line(changed, args, expected):
    before = state(changed.store)
    error = one_error(keel(changed, "diff", *args))
    assert error.endswith(expected.format(uri=changed.store.uri)), error
    assert state(changed.store) == before


def test_diff_with_production_when_there_is_none_says_so(tmp_path, model_files):
    registry = Registry(LocalStore(tmp_path / "store"), MODEL)
    publish(registry, model_files, lineage())
    error = one_error(keel(registry, "diff", "production", "1"))
    assert error == ("keel: error: [registry] Model 'credit' has no production version; name a "
                     "version number instead (versions: 1).")


def test_diff_of_a_version_with_an_unreadable_manifest_is_one_error_line(changed):
    url = changed.store.url(key_of(2, MANIFEST_FILE))
    overwrite(changed.store, key_of(2, MANIFEST_FILE), b'{"model": "credit", "ver')
    error = one_error(keel(changed, "diff", "1", "2"))
    assert error.startswith(f"keel: error: [registry] {url}")


def test_diff_marks_a_damaged_version(changed, model_files):
    overwrite(changed.store, key_of(2), model_files["other"].read_bytes())
    diff = ok_json(keel(changed, "diff", "1", "2", "--json"))
    assert diff["a"]["damaged"] is False and diff["b"]["damaged"] is True
    assert diff["b"]["damage"][0]["file"] == MODEL_FILE
    assert diff["changes"] == EXPECTED_CHANGES  # the manifest still reads
    human = keel(changed, "diff", "1", "2")
    assert "DAMAGED: version 2 of 'credit' does not match what was registered" in human.stdout
    assert "DAMAGED: version 1" not in human.stdout


def test_diff_of_the_versions_keel_0_1_0_wrote(store_0_1_0):
    diff = ok_json(keel(store_0_1_0, "diff", "1", "2", "--json"))
    assert diff["changes"] == ["params: random_state 0 -> 1",
                               "roc_auc 0.8338 -> 0.8327 (-0.0011)",
                               "decision: passed -> rejected"]
    assert (diff["a"]["schema_version"], diff["b"]["schema_version"]) == (1, 1)
    assert diff["split"] == {"a": None, "b": None, "changed": False}
    assert diff["search"] == {"a": None, "b": None, "changed": False}
    assert diff["images"]["register"] == {"a": "localhost/keel/register:0.1.0",
                                          "b": "localhost/keel/register:0.1.0", "changed": False}
    assert diff["same_rows"]["scored_by"] == 2 and diff["same_rows"]["rows"] == 891
    human = keel(store_0_1_0, "diff", "1", "production")
    assert human.exit_code == 0, human.output
    assert "  nothing: both are version 1" in human.stdout


def test_diff_of_a_0_1_0_version_and_a_new_one(store_0_1_0, model_files):
    new = publish(store_0_1_0, model_files, second_lineage())
    assert new == 3
    diff = ok_json(keel(store_0_1_0, "diff", "2", "3", "--json"))
    assert (diff["a"]["schema_version"], diff["b"]["schema_version"]) == (1, SCHEMA_VERSION)
    assert diff["split"]["a"] is None and diff["split"]["b"]["columns"] == ["Status", "Age"]
    assert diff["search"]["a"] is None and diff["search"]["b"]["best_params"] == {"max_depth": 5}
    assert "split: not recorded -> hash of 2 columns (test_size 0.2)" in diff["changes"]
    assert "roc_auc 0.8327 -> 0.8500 (+0.0173)" in diff["changes"]
    assert "images: 1 changed (evaluate)" in diff["changes"]
    assert diff["decision"]["a"]["status"] == diff["decision"]["b"]["status"] == "rejected"
    assert diff["same_rows"] is None  # version 3's baseline is version 1, not 2
    human = keel(store_0_1_0, "diff", "2", "3")
    assert human.exit_code == 0, human.output
    assert re.search(r"^split +not recorded +hash of 2 columns \(test_size 0\.2\)$",
                     human.stdout, re.M)


# -- promote: a recorded manual override -----------------------------------------------------------
def test_promote_moves_production_to_a_rejected_version_and_records_the_override(registry):
    result = keel(registry, "promote", "--version", "2", "--reason", "the gate's data was bad")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == (
        "Model 'credit': production moved from version 3 to version 2 by manual override. "
        "Overrode: version 2 was rejected by its evaluation gate (roc_auc absolute_change). "
        "Reason: the gate's data was bad")
    reread = Registry(open_store(registry.store.uri), MODEL)
    assert reread.alias().version == 2
    assert reread.alias().doc["action"] == "override"
    event = reread.events()[-1]
    assert {k: event[k] for k in ("action", "alias", "from", "to", "reason", "forced", "by")} == {
        "action": "override", "alias": "production", "from": 3, "to": 2,
        "reason": "the gate's data was bad", "forced": True, "by": who()}
    assert event["forced_because"] == [
        "version 2 was rejected by its evaluation gate (roc_auc absolute_change)"]
    assert event["at"] and len(reread.events()) == 3

    listed = ok_json(keel(registry, "list", "--json"))
    assert listed["production_version"] == 2
    row = listed["versions"][1]
    assert row["production"] is True and row["decision"] == "rejected"
    assert row["production_origin"] == {"action": "override", "reason": "the gate's data was bad",
                                        "at": event["at"], "by": who()}
    assert listed["versions"][2]["production_origin"] is None
    human = keel(registry, "list").stdout.splitlines()
    at = human.index(next(line for line in human if line.startswith("* v2 ")))
    assert "rejected" in human[at]
    assert human[at + 1] == (f"        production by manual override (keel models promote) at "
                             f"{event['at']} by {who()}: the gate's data was bad")

    # the override is a production move like any other: rollback follows its usual rule (the
    # newest earlier production version) and records who
    back = ok_json(keel(registry, "rollback", "--json"))
    assert (back["action"], back["from"], back["to"], back["by"]) == ("rollback", 2, 1, who())
    assert ok_json(keel(registry, "list", "--json"))["versions"][0]["production_origin"][
        "action"] == "rollback"


def test_promote_of_a_version_that_passed_overrides_nothing(registry):
    event = ok_json(keel(registry, "promote", "--version", "1", "--reason", "3 drifts", "--json"))
    assert (event["moved"], event["production_version"], event["action"], event["from"],
            event["to"], event["forced"]) == (True, 1, "override", 3, 1, False)
    assert "forced_because" not in event
    human = keel(registry, "promote", "--version", "3", "--reason", "back")
    assert human.stdout.strip() == (
        "Model 'credit': production moved from version 1 to version 3 by manual override. "
        "Reason: back")


@pytest.mark.parametrize(("reason", "got"), [(None, "got no --reason"), ("", "got --reason ''"),
                                             ("  \t", "got --reason '  \\t'")])
def test_promote_needs_a_reason(registry, reason, got):
    before = state(registry.store)
    args = ["promote", "--version", "2"] + ([] if reason is None else ["--reason", reason])
    error = one_error(keel(registry, *args))
    assert error == ("keel: error: [registry] A manual promotion needs --reason TEXT saying why "
                     f"production is overridden (the event log records it); {got}.")
    assert state(registry.store) == before


def test_promote_of_the_production_version_is_a_no_op(registry):
    before = state(registry.store)
    result = keel(registry, "promote", "--version", "3", "--reason", "already")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == (
        "Model 'credit': version 3 is already in production; nothing was moved.")
    assert ok_json(keel(registry, "promote", "--version", "3", "--reason", "x", "--json")) == {
        "model": "credit", "moved": False, "production_version": 3}
    assert state(registry.store) == before


@pytest.mark.parametrize("version", ["0", "9"])
def test_promote_of_a_version_that_does_not_exist_lists_the_versions(registry, version):
    before = state(registry.store)
    error = one_error(keel(registry, "promote", "--version", version, "--reason", "r"))
    assert error == (f"keel: error: [registry] Model 'credit' has no version {version} in "
                     f"{registry.store.uri}. Versions: 1, 2, 3.")
    assert state(registry.store) == before


@pytest.mark.parametrize("damage", ["replaced", "missing"])
def test_promote_refuses_a_damaged_version_as_rollback_does(registry, model_files, damage):
    if damage == "replaced":
        overwrite(registry.store, key_of(2), model_files["other"].read_bytes())
    else:
        delete(registry.store, key_of(2))
    before = state(registry.store)
    error = one_error(keel(registry, "promote", "--version", "2", "--reason", "urgent"))
    assert error.startswith("keel: error: [registry] Version 2 of 'credit' is damaged, so "
                            "production was not moved to it.")
    assert error.endswith("`keel models rollback --model credit --to N --reason TEXT`.")
    assert state(registry.store) == before


def test_promote_with_production_json_missing_says_how_to_restore_it(registry):
    delete(registry.store, ALIAS)
    before = state(registry.store)
    error = one_error(keel(registry, "promote", "--version", "2", "--reason", "r"))
    assert error.startswith(
        "keel: error: [registry] production.json of 'credit' is missing; its last event put "
        "version 3 in production. Restore it: `keel models rollback --model credit --to 3")
    assert state(registry.store) == before


def test_promote_can_set_the_first_production_version(tmp_path, model_files):
    registry = Registry(LocalStore(tmp_path / "store"), MODEL)
    publish(registry, model_files, lineage())
    result = keel(registry, "promote", "--version", "1", "--reason", "bootstrap")
    assert result.stdout.strip() == (
        "Model 'credit': production moved to version 1 by manual override. Reason: bootstrap")
    assert registry.alias().version == 1
    assert [(e["action"], e["from"], e["to"]) for e in registry.events()] == [
        ("override", None, 1)]


def test_promote_loses_a_race_without_moving_or_logging(registry, monkeypatch):
    real_verify = registry.verify

    def verify_while_a_run_promotes(version):
        check = real_verify(version)
        other = Registry(registry.store, MODEL)  # another run promotes version 1 meanwhile
        other.move_alias(1, expected_generation=other.alias().generation, action="promote",
                         reason="a run")
        return check

    monkeypatch.setattr(registry, "verify", verify_while_a_run_promotes)
    with pytest.raises(RegistryConflict) as info:
        registry.promote_manually(2, "override")
    assert str(info.value) == (
        "[registry] The 'production' alias of 'credit' was moved by another run (it now points "
        "at version 1) after this command read it, so it was not moved to version 2. Check "
        "`keel models list`, then run the command again if you still want it.")
    assert registry.alias().version == 1
    assert [e["action"] for e in registry.events()] == ["promote"] * 3


# -- list: overrides shown as overrides ------------------------------------------------------------
def test_list_shows_a_run_time_override_as_an_override(tmp_path, model_files):
    registry = Registry(LocalStore(tmp_path / "store"), MODEL)
    publish(registry, model_files, lineage())
    publish(registry, model_files, lineage(decision=overridden_decision(),
                                           baseline=rejected_decision().baseline))
    publish(registry, model_files, lineage(decision=rejected_decision(),
                                           baseline=rejected_decision().baseline))
    listed = ok_json(keel(registry, "list", "--json"))
    assert [(v["decision"], v["passed_gate"], v["override"]) for v in listed["versions"]] == [
        ("passed", True, None),
        ("override", True, {"reason": "ship it for the audit", "checks_passed": False}),
        ("rejected", False, None)]
    human = keel(registry, "list").stdout.splitlines()
    assert re.match(r"^  v1 +\S+ +passed +data ", human[1]), human[1]
    assert re.match(r"^  v2 +\S+ +override +data ", human[2]), human[2]
    assert human[3] == "        override at run time: ship it for the audit"
    assert re.match(r"^  v3 +\S+ +rejected +data ", human[4]), human[4]
    # the same reason in diff
    diff = ok_json(keel(registry, "diff", "1", "2", "--json"))
    assert diff["decision"]["b"]["status"] == "override"
    assert diff["decision"]["b"]["override_reason"] == "ship it for the audit"
    assert diff["decision"]["b"]["reasons"] == [
        "override: ship it for the audit",
        "roc_auc absolute_change: 0.8327 vs required 0.9610 -> fail"]
    assert "decision: passed -> override" in diff["changes"]


def test_list_of_a_production_promoted_by_a_run_shows_no_override(registry):
    listed = ok_json(keel(registry, "list", "--json"))
    origin = listed["versions"][2]["production_origin"]
    assert (origin["action"], origin["reason"], origin["by"]) == ("promote", "test 3", None)
    assert "manual override" not in keel(registry, "list").stdout



def test_list_shows_the_metrics_the_gate_judged_and_json_every_metric(tmp_path):
    registry = Registry(LocalStore(tmp_path / "store"), MODEL)
    (tmp_path / "model.joblib").write_bytes(b"a model")
    registry.publish({MODEL_FILE: tmp_path / "model.joblib"}, lineage())  # gate on roc_auc
    human = keel(registry, "list")
    assert human.exit_code == 0
    assert "roc_auc 0.8338" in human.stdout and "accuracy" not in human.stdout
    listed = ok_json(keel(registry, "list", "--json"))
    assert set(listed["versions"][0]["metrics"]) == {
        "accuracy", "balanced_accuracy", "f1_macro", "log_loss", "roc_auc"}
    assert "gated" not in listed["versions"][0]

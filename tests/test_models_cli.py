"""``keel models list/show/rollback`` on damaged registries, local and gs:// (fake-gcs-server).

Through click's CliRunner on ``keel.cli.main`` (the group that turns a KeelError into one
``keel: error:`` line), and once through the installed ``keel`` entry point.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from keel.cli import main
from keel.contracts import Manifest
from keel.registry import MANIFEST_FILE, MODEL_FILE, Registry
from keel.storage import open_store

try:
    from factories import STORE_0_1_0, delete, lineage, overwrite, state
except ImportError:  # tests/ imported as a package
    from tests.factories import STORE_0_1_0, delete, lineage, overwrite, state

MODEL = "credit"
KEEL = str(Path(sys.executable).with_name("keel"))


# -- helpers ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def model_files(tmp_path_factory) -> dict[str, Path]:
    """Two different fitted models (valid pickles) and a schema file."""
    import joblib
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    folder = tmp_path_factory.mktemp("models")
    x = np.arange(20, dtype=float).reshape(10, 2)
    files = {}
    for name, labels in {"good": [0] * 5 + [1] * 5, "other": [1] * 5 + [0] * 5}.items():
        files[name] = folder / f"{name}.joblib"
        joblib.dump(LogisticRegression().fit(x, labels), files[name])
    files["schema"] = folder / "schema.json"
    files["schema"].write_text('{"columns": ["a", "b"]}\n')
    return files


def rejected_lineage():
    recorded = Manifest.from_json(
        (STORE_0_1_0 / "registry" / "credit" / "versions" / "2" / "manifest.json").read_bytes())
    return lineage(metrics={"roc_auc": 0.8}, decision=recorded.decision,
                   baseline=recorded.baseline)


@pytest.fixture
def registry(store_uri, model_files) -> Registry:
    """Versions 1 (passed), 2 (rejected by its gate), 3 (passed); 1 then 3 were production."""
    registry = Registry(open_store(store_uri), MODEL)
    files = {MODEL_FILE: model_files["good"], "schema.json": model_files["schema"]}
    registry.publish(files, lineage(metrics={"roc_auc": 0.9}))
    registry.publish(files, rejected_lineage())
    registry.publish(files, lineage(metrics={"roc_auc": 0.91}))
    for version in (1, 3):
        registry.move_alias(version, expected_generation=registry.alias().generation,
                            action="promote", reason=f"test {version}")
    return registry


def keel(registry: Registry, *args: str) -> Result:
    """``keel models ARGS --store <the registry's store>``, in this process."""
    return CliRunner().invoke(main, ["models", *args, "--store", registry.store.uri])


def ok_json(result: Result) -> dict:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout.strip().splitlines()[-1])


def one_error(result: Result) -> str:
    """The single ``keel: error:`` line of a failed command (and nothing else on stderr)."""
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("keel: error: ["), result.stderr
    assert result.stdout == ""
    return lines[0]


def key_of(version: int, name: str = MODEL_FILE) -> str:
    return f"registry/{MODEL}/versions/{version}/{name}"


ALIAS = f"registry/{MODEL}/aliases/production.json"





# -- healthy ---------------------------------------------------------------------------------------
def test_list_and_show_of_intact_versions(registry):
    listed = ok_json(keel(registry, "list", "--json"))
    assert listed["production_version"] == 3
    assert [(v["version"], v["production"], v["passed_gate"], v["damaged"], v["damage"])
            for v in listed["versions"]] == [(1, False, True, False, []),
                                             (2, False, False, False, []),
                                             (3, True, True, False, [])]
    human = keel(registry, "list")
    assert human.exit_code == 0 and "DAMAGED" not in human.stdout
    assert "* v3" in human.stdout and "rejected" in human.stdout

    shown = ok_json(keel(registry, "show", "--json"))
    assert (shown["version"], shown["damaged"], shown["damage"]) == (3, False, [])
    human = keel(registry, "show", "--version", "1")
    assert human.exit_code == 0
    assert human.stdout.rstrip().splitlines()[-1] == (
        "intact: all 2 files match the sha256 recorded in the manifest.")


# -- damaged versions: shown, never moved to -------------------------------------------------------
@pytest.mark.parametrize("damage", ["replaced", "missing"])
def test_a_damaged_model_file_is_marked_by_list_and_show(registry, model_files, damage):
    url = registry.store.url(key_of(3))
    if damage == "replaced":  # a different, perfectly loadable pickle
        overwrite(registry.store, key_of(3), model_files["other"].read_bytes())
        expected = "changed after registration"
    else:
        delete(registry.store, key_of(3))
        expected = "is missing"

    listed = ok_json(keel(registry, "list", "--json"))
    row = listed["versions"][2]
    assert (row["version"], row["production"], row["damaged"]) == (3, True, True)
    [found] = row["damage"]
    assert found["file"] == MODEL_FILE and found["object"] == url
    assert expected in found["problem"] and url in found["problem"]
    assert not listed["versions"][0]["damaged"] and not listed["versions"][1]["damaged"]

    human = keel(registry, "list")
    assert human.exit_code == 0
    assert "* v3    DAMAGED" in human.stdout
    assert f"damaged: {found['problem']}" in human.stdout
    assert "PRODUCTION (version 3) IS DAMAGED" in human.stdout
    assert "keel models rollback --model credit --to N" in human.stdout

    shown = ok_json(keel(registry, "show", "--version", "3", "--json"))
    assert shown["damaged"] is True and shown["damage"] == row["damage"]
    human = keel(registry, "show")  # production
    assert human.exit_code == 0
    assert "DAMAGED: version 3 of 'credit' does not match what was registered" in human.stdout
    assert found["problem"] in human.stdout


def test_rollback_refuses_a_damaged_version_and_changes_nothing(registry, model_files):
    overwrite(registry.store, key_of(1), model_files["other"].read_bytes())
    before = state(registry.store)
    for args in (["rollback"], ["rollback", "--to", "1", "--reason", "r"],
                 ["rollback", "--to", "1", "--force", "--reason", "even forced"]):
        error = one_error(keel(registry, *args))
        # The full message (object, sha256s) is tested in test_registry; a long line may be
        # shortened in the middle, so what matters is at its start and end.
        assert error.startswith("keel: error: [registry] Version 1 of 'credit' is damaged, so "
                                "production was not moved to it.")
        assert error.endswith("`keel models rollback --model credit --to N --reason TEXT`.")
        assert state(registry.store) == before


def test_a_corrupt_manifest_is_marked_by_list_and_one_error_line_for_show(registry):
    url = registry.store.url(key_of(2, MANIFEST_FILE))
    overwrite(registry.store, key_of(2, MANIFEST_FILE), b'{"model": "credit", "ver')
    listed = ok_json(keel(registry, "list", "--json"))
    row = listed["versions"][1]
    assert row["damaged"] is True and row["registered_at"] is None
    assert row["damage"][0]["file"] == MANIFEST_FILE and url in row["damage"][0]["problem"]
    human = keel(registry, "list")
    assert "  v2    DAMAGED   manifest unreadable" in human.stdout

    error = one_error(keel(registry, "show", "--version", "2"))
    assert error.startswith(f"keel: error: [registry] {url}")
    assert error.endswith("Restore it from a backup (or your bucket's object versions).")
    error = one_error(keel(registry, "rollback", "--to", "2", "--force", "--reason", "r"))
    assert error.startswith("keel: error: [registry] Version 2 of 'credit' is damaged")


# -- production.json damaged or missing ------------------------------------------------------------
@pytest.mark.parametrize("command", [["list"], ["list", "--json"], ["show"], ["rollback"],
                                     ["rollback", "--to", "1"]])
def test_a_corrupt_production_alias_is_one_error_line_naming_it(registry, command):
    overwrite(registry.store, ALIAS, b'{"version": 3, "generation"')
    before = state(registry.store)
    error = one_error(keel(registry, *command))
    assert registry.store.url(ALIAS) in error and "not valid JSON" in error
    assert state(registry.store) == before


def test_a_corrupt_event_is_one_error_line_naming_it(registry):
    event_key = registry.store.list(f"registry/{MODEL}/events")[0]
    overwrite(registry.store, event_key, b"{")
    error = one_error(keel(registry, "rollback"))
    assert registry.store.url(event_key) in error


def test_a_deleted_production_alias_is_an_error_until_rollback_restores_it(registry):
    delete(registry.store, ALIAS)
    before = state(registry.store)
    for command in (["list"], ["show"], ["rollback"]):
        error = one_error(keel(registry, *command))
        assert error.startswith(
            "keel: error: [registry] production.json of 'credit' is missing; its last event put "
            "version 3 in production. Restore it: `keel models rollback --model credit --to 3")
    assert state(registry.store) == before

    restored = ok_json(keel(registry, "rollback", "--to", "3", "--reason", "lost", "--json"))
    assert (restored["action"], restored["from"], restored["to"]) == ("restore", None, 3)
    assert ok_json(keel(registry, "list", "--json"))["production_version"] == 3
    human = keel(registry, "rollback", "--to", "1")  # history intact: a normal rollback again
    assert human.stdout.strip() == (
        "Model 'credit': production moved from version 3 to version 1.")


def test_rollback_restores_a_deleted_alias_with_a_human_message(registry):
    delete(registry.store, ALIAS)
    result = keel(registry, "rollback", "--to", "1")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == (
        "Model 'credit': production.json restored, production is version 1.")


# -- rejected and forward targets need --force -----------------------------------------------------
def test_rollback_to_a_rejected_version_needs_force_and_a_reason(registry):
    before = state(registry.store)
    error = one_error(keel(registry, "rollback", "--to", "2"))
    assert "version 2 was rejected by its evaluation gate (roc_auc absolute_change)" in error
    assert error.endswith("pass --force with --reason TEXT (the event records both).")
    error = one_error(keel(registry, "rollback", "--to", "2", "--force"))
    assert "--force needs --reason" in error
    assert state(registry.store) == before

    event = ok_json(keel(registry, "rollback", "--to", "2", "--force", "--reason", "field data",
                         "--json"))
    assert (event["from"], event["to"], event["forced"], event["reason"]) == (
        3, 2, True, "field data")
    assert event["forced_because"] == [
        "version 2 was rejected by its evaluation gate (roc_auc absolute_change)"]
    assert Registry(registry.store, MODEL).events()[-1]["forced"] is True


def test_rollback_forward_needs_force_and_a_reason(registry):
    assert ok_json(keel(registry, "rollback", "--json"))["to"] == 1
    before = state(registry.store)
    error = one_error(keel(registry, "rollback", "--to", "3"))
    assert "version 3 is newer than production version 1 (a roll forward)" in error
    assert error.endswith("pass --force with --reason TEXT (the event records both).")
    assert state(registry.store) == before
    result = keel(registry, "rollback", "--to", "3", "--force", "--reason", "1 was fine after all")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == (
        "Model 'credit': production moved from version 1 to version 3. Forced: version 3 is "
        "newer than production version 1 (a roll forward). Reason: 1 was fine after all")


# -- versions and models that do not exist ---------------------------------------------------------
@pytest.mark.parametrize("version", ["0", "-1", "9"])
def test_show_of_a_version_that_does_not_exist_lists_the_versions(registry, version):
    error = one_error(keel(registry, "show", "--version", version))
    assert f"has no version {version} " in error and "Versions: 1, 2, 3." in error
    error = one_error(keel(registry, "rollback", "--to", version))
    assert f"has no version {version} " in error and "Versions: 1, 2, 3." in error


@pytest.mark.parametrize("command", [["list"], ["show"], ["rollback"]])
def test_an_unknown_model_name_lists_the_models_in_the_store(registry, model_files, command):
    Registry(registry.store, "churn").publish({MODEL_FILE: model_files["good"]}, lineage())
    before = state(registry.store)
    error = one_error(keel(registry, *command, "--model", "credti"))
    assert error == (f"keel: error: [registry] The store {registry.store.uri} has no model "
                     "'credti'; it holds churn, credit.")
    assert state(registry.store) == before


def test_an_empty_store_says_it_holds_no_models(store_uri):
    runner = CliRunner()
    error = one_error(runner.invoke(main, ["models", "list", "--store", store_uri]))
    assert "holds 0 models (none); name one with --model" in error
    error = one_error(runner.invoke(main, ["models", "show", "--store", store_uri, "--model",
                                           "credit"]))
    assert "has no model 'credit'; it holds no models." in error


# -- through the installed entry point -------------------------------------------------------------
def test_the_keel_command_prints_one_error_line_for_a_corrupt_alias(registry):
    overwrite(registry.store, ALIAS, b"not json")
    result = subprocess.run([KEEL, "models", "list", "--store", registry.store.uri],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert result.stderr.startswith("keel: error: [storage] ") and registry.store.url(ALIAS) in (
        result.stderr)

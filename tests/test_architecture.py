"""Rules of the architecture that a refactoring could silently break (DESIGN.md)."""

import json
import subprocess
import sys

import pytest

from keel.stages import STAGE_NAMES, STAGES


def imported_after(module: str) -> set[str]:
    code = (f"import json, sys; import {module}; "
            "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(json.loads(out.stdout))


@pytest.mark.parametrize("stage", STAGE_NAMES)
def test_stage_logic_never_imports_kfp(stage):
    assert "kfp" not in imported_after(f"keel.{stage}")


@pytest.mark.parametrize("stage", [s.name for s in STAGES if not s.uses_scikit_learn])
def test_stages_without_scikit_learn_never_import_it(stage):
    # Each stage is its own process: importing scikit-learn costs every run about a second.
    for module in (f"keel.{stage}", f"keel.components.{stage}"):
        assert "sklearn" not in imported_after(module), module


def test_the_command_line_starts_without_the_data_stack():
    # `keel --help`, `keel models list`: the settings table and contracts must stay cheap.
    loaded = imported_after("keel.cli")
    assert not loaded & {"sklearn", "pandas", "pyarrow", "kfp", "numpy"}, loaded


@pytest.mark.parametrize("stage", STAGE_NAMES)
def test_every_stage_has_its_module_component_and_run_entry_point(stage):
    import importlib

    module = importlib.import_module(f"keel.{stage}")
    component = getattr(importlib.import_module("keel.components"), stage)
    assert component.component_spec.name == stage
    assert callable(getattr(module, "run", None) or getattr(module, stage, None))


@pytest.mark.parametrize("module", ["keel.data_checks", "keel.statistics",
                                    "keel.validation_report", "keel.source_sql",
                                    "keel.source_http"])
def test_what_ingest_and_validate_load_later_never_imports_scikit_learn(module):
    # validate imports its checks and ingest its source plug-ins only when they run
    assert "sklearn" not in imported_after(module), module

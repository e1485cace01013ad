"""Rules of the architecture that a refactoring could silently break (DESIGN.md)."""

import json
import subprocess
import sys

import pytest

STAGE_MODULES = ["ingest", "validate", "preprocess", "train", "evaluate", "register"]


def imported_after(module: str) -> set[str]:
    code = (f"import json, sys; import {module}; "
            "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(json.loads(out.stdout))


@pytest.mark.parametrize("stage", STAGE_MODULES)
def test_stage_logic_never_imports_kfp(stage):
    assert "kfp" not in imported_after(f"keel.{stage}")


@pytest.mark.parametrize("stage", ["ingest", "validate"])
def test_ingest_and_validate_never_import_scikit_learn(stage):
    # Each stage is its own process: importing scikit-learn costs every run about a second.
    for module in (f"keel.{stage}", f"keel.components.{stage}"):
        assert "sklearn" not in imported_after(module), module

"""Valid contract objects for tests, made from a real manifest that Keel 0.1.0 wrote."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from keel.contracts import Lineage, Manifest

STORE_0_1_0 = Path(__file__).parent / "data" / "store-0.1.0"
MANIFEST_0_1_0 = STORE_0_1_0 / "registry" / "credit" / "versions" / "1" / "manifest.json"


def lineage(**changes: Any) -> Lineage:
    """The lineage of version 1 of the bundled sample, with ``changes`` applied."""
    recorded = Manifest.from_json(MANIFEST_0_1_0.read_bytes())
    fields = {name: getattr(recorded, name) for name in Lineage.model_fields}
    fields["schema_version"] = Lineage.model_fields["schema_version"].default
    return Lineage(**{**fields, **changes})

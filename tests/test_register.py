"""Lineage pieces of the register stage (the stage itself runs end to end in test_cli.py)."""

from keel import register
from keel.images import STAGES


def test_stage_images_follow_the_image_register_runs_in(monkeypatch):
    monkeypatch.setenv("KEEL_IMAGE", "europe-docker.pkg.dev/acme/ml/register:0.1.0")
    images = register.stage_images()
    assert set(images) == set(STAGES)
    assert images["train"] == "europe-docker.pkg.dev/acme/ml/train:0.1.0"


def test_stage_images_outside_an_image_are_the_compiled_names(monkeypatch):
    monkeypatch.delenv("KEEL_IMAGE", raising=False)
    monkeypatch.setenv("KEEL_IMAGE_REGISTRY", "registry.example/team")
    assert register.stage_images()["ingest"] == "registry.example/team/ingest:0.1.0"


def test_git_commit_prefers_the_one_baked_into_the_image(monkeypatch):
    monkeypatch.setenv("KEEL_GIT_COMMIT", "abc123")
    assert register.git_commit() == "abc123"
    monkeypatch.delenv("KEEL_GIT_COMMIT")
    commit = register.git_commit()  # from this checkout
    assert commit == "unknown" or len(commit.removesuffix("-dirty")) == 40

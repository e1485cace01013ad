"""Keel's images, built from this checkout, running the pipeline for real (``make test-containers``).

Every stage runs in its own image through kfp.local's DockerRunner against podman's Docker API
(``podman system service``, started here), with ``gs://`` on the test session's GCS emulator,
which the containers reach on the host's loopback (``network_mode=host``). The images must have
been built first: ``make test-containers`` runs images/build.sh before these tests.
Not part of ``make test`` (marker ``containers``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

import keel
from keel.images import IMAGE_NAMES, IMAGES, image
from keel.stages import STAGE_NAMES

try:
    from gcs_emulator import free_port
except ImportError:  # tests/ imported as a package
    from tests.gcs_emulator import free_port

pytestmark = [pytest.mark.containers, pytest.mark.gcs]

REPO = Path(__file__).resolve().parents[1]
CREDIT = REPO / "data" / "credit.csv"
CONTAINERS_CONF = REPO / "images" / "containers.conf"
HOST_ENV = {"CONTAINERS_CONF": str(CONTAINERS_CONF)}


def podman(*args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
    done = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **HOST_ENV})
    if check:
        assert done.returncode == 0, f"podman {' '.join(args)}:\n{done.stderr[-3000:]}"
    return done


def keel_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    script = Path(sys.executable).parent / "keel"
    return subprocess.run([str(script), *args], capture_output=True, text=True, timeout=900,
                          env={**os.environ, **env})


@pytest.fixture(scope="module", autouse=True)
def default_registry() -> Iterator[None]:
    """The images are built under the default registry and tag (images/build.sh)."""
    saved = {name: os.environ.pop(name, None) for name in ("KEEL_IMAGE_REGISTRY",
                                                           "KEEL_IMAGE_DIGESTS")}
    yield
    os.environ.update({name: value for name, value in saved.items() if value is not None})


@pytest.fixture(scope="module")
def built() -> None:
    if shutil.which("podman") is None:
        pytest.fail("podman is missing: run `make test-containers`, which installs it", False)
    missing = [image(name) for name in ("base", *IMAGE_NAMES)
               if podman("image", "exists", image(name), check=False).returncode != 0]
    assert not missing, f"images not built: {missing}; run `make test-containers` (or make images)"


@pytest.fixture(scope="module")
def engine(built: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """podman's Docker-compatible API on a socket of this test session; its DOCKER_HOST."""
    socket = tmp_path_factory.mktemp("podman") / "podman.sock"
    service = subprocess.Popen(["podman", "system", "service", "--time=0", f"unix://{socket}"],
                               env={**os.environ, **HOST_ENV}, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not socket.exists():
        assert service.poll() is None, f"podman system service failed: {service.stderr.read()}"
        assert time.monotonic() < deadline, "podman system service did not open its socket"
        time.sleep(0.1)
    try:
        yield f"unix://{socket}"
    finally:
        service.send_signal(signal.SIGTERM)
        try:
            service.wait(timeout=20)
        except subprocess.TimeoutExpired:
            service.kill()
            service.wait()


@pytest.fixture
def bucket(gcs_bucket: str):
    from google.cloud import storage

    bucket = storage.Client().bucket(gcs_bucket)
    bucket.blob("in/credit.csv").upload_from_filename(str(CREDIT))
    return bucket


def run_in_containers(bucket, engine: str, work: Path, *extra: str, source: str = "in/credit.csv"
                      ) -> subprocess.CompletedProcess:
    return keel_cli(
        "run", "--runner", "docker", "--source", f"gs://{bucket.name}/{source}",
        "--target", "Status", "--store", f"gs://{bucket.name}/store", "--work-dir", str(work),
        "--json", *extra, env={"DOCKER_HOST": engine})


# -- the pipeline, every stage in its own image --------------------------------------------------
def test_training_pipeline_runs_with_every_stage_in_its_own_image(bucket, engine, tmp_path):
    from keel.registry import Registry
    from keel.storage import open_store

    ran = run_in_containers(bucket, engine, tmp_path / "work")
    assert ran.returncode == 0, ran.stderr[-4000:]
    summary = json.loads(ran.stdout.strip().splitlines()[-1])
    assert (summary["status"], summary["version"]) == ("promoted", 1)
    for stage in STAGE_NAMES:
        assert re.search(rf"^  {stage} +success \(", ran.stderr, re.M), ran.stderr
    log = Path(summary["log"]).read_text()
    # Every task started its own image; none ran as a host subprocess.
    for stage in STAGE_NAMES:
        assert f"Running image {image(stage)!r}" in log, f"{stage} did not run in {image(stage)}"

    manifest = Registry(open_store(f"gs://{bucket.name}/store"), "credit").manifest(1)
    environment = manifest.environment
    assert environment.ran_in_image == image("publish")  # publish ran in its own image
    assert environment.images == {stage: image(stage) for stage in STAGE_NAMES}
    labels = json.loads(podman("image", "inspect", image("publish")).stdout)[0]["Labels"]
    assert environment.git_commit == labels["org.opencontainers.image.revision"] != "unknown"
    assert environment.keel == keel.__version__
    assert environment.scikit_learn == manifest.training.scikit_learn != ""  # train's, not publish's


def test_a_stage_failing_in_its_container_fails_the_run_with_its_own_error(bucket, engine,
                                                                           tmp_path):
    """kfp 2.17.3 reads a removed podman container's failure as SUCCESS: Keel must not."""
    ran = run_in_containers(bucket, engine, tmp_path / "work", source="in/missing.csv")
    assert ran.returncode == 1, ran.stdout + ran.stderr
    assert "ingest" in ran.stderr and "missing.csv" in ran.stderr, ran.stderr[-3000:]
    assert "Traceback" not in ran.stderr
    log = re.sub(r"\x1b\[[0-9;]*m", "", next((tmp_path / "work" / "logs").glob("*.log")).read_text())
    assert "Task 'ingest' finished with status FAILURE" in log
    assert "Task 'ingest' finished with status SUCCESS" not in log
    assert not list(bucket.list_blobs(prefix="store/")), "a failed run stored something"


def test_run_names_the_missing_images(bucket, engine, tmp_path):
    ran = keel_cli("run", "--runner", "docker", "--source", f"gs://{bucket.name}/in/credit.csv",
                   "--target", "Status", "--store", f"gs://{bucket.name}/store",
                   "--work-dir", str(tmp_path / "work"),
                   env={"DOCKER_HOST": engine, "KEEL_IMAGE_REGISTRY": "localhost/nowhere"})
    assert ran.returncode == 1
    assert "lacks 9 stage image(s): localhost/nowhere/ingest:" in ran.stderr
    assert "make images" in ran.stderr


# -- the serving and batch images ----------------------------------------------------------------
@pytest.fixture(scope="module")
def version_folder(engine, tmp_path_factory: pytest.TempPathFactory, gcs_emulator: str):
    """A registered version (trained in the containers) copied to a folder the images can read."""
    from google.cloud import storage

    from keel.registry import MANIFEST_FILE, Registry
    from keel.storage import open_store

    name = f"keel-test-{uuid.uuid4().hex[:12]}"
    bucket = storage.Client().create_bucket(name)
    bucket.blob("in/credit.csv").upload_from_filename(str(CREDIT))
    ran = run_in_containers(bucket, engine, tmp_path_factory.mktemp("work"))
    assert ran.returncode == 0, ran.stderr[-4000:]
    registry = Registry(open_store(f"gs://{name}/store"), "credit")
    folder = tmp_path_factory.mktemp("version")
    folder.chmod(0o755)
    for file in registry.manifest(1).files:
        registry.download_verified(1, file, folder / file)
    (folder / MANIFEST_FILE).write_bytes(
        registry.store.read_bytes(registry.version_key(1, MANIFEST_FILE)))
    for path in folder.iterdir():
        path.chmod(0o644)
    return {"folder": folder, "bucket": name}


def test_serve_image_serves_a_version_folder(version_folder):
    port = free_port()
    name = f"keel-serve-{uuid.uuid4().hex[:8]}"
    podman("run", "-d", "--name", name, "--network", "host",
           "-v", f"{version_folder['folder']}:/mnt/models:ro", image("serve"),
           "keel", "serve", "--model-dir", "/mnt/models", "--model", "credit",
           "--host", "127.0.0.1", "--port", str(port))
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(f"{url}/v2/health/ready", timeout=2).ok:
                    break
            except requests.ConnectionError:
                pass
            state = podman("inspect", "--format", "{{.State.Running}}", name).stdout.strip()
            assert state == "true", podman("logs", name).stderr[-3000:]
            assert time.monotonic() < deadline, "the serve image never became ready"
            time.sleep(0.5)
        row = {"Seniority": 9, "Home": "rent", "Time": 60, "Age": 30, "Marital": "married",
               "Records": "no", "Job": "fixed", "Expenses": 73, "Income": 129, "Assets": 0,
               "Debt": 0, "Amount": 800, "Price": 846}
        answer = requests.post(f"{url}/v1/models/credit:predict", json={"instances": [row]},
                               timeout=30)
        assert answer.status_code == 200, answer.text
        assert answer.json()["predictions"][0] in ("good", "bad")
        bad = requests.post(f"{url}/v1/models/credit:predict",
                            json={"instances": [{"Seniority": "x"}]}, timeout=30)
        assert bad.status_code == 400
    finally:
        podman("rm", "-f", name, check=False)


def test_predict_image_scores_a_table_from_the_store(version_folder, tmp_path):
    out = tmp_path / "out"
    out.mkdir(mode=0o777)
    out.chmod(0o777)
    bucket = version_folder["bucket"]
    ran = podman("run", "--rm", "--network", "host",
                 "-e", f"STORAGE_EMULATOR_HOST={os.environ['STORAGE_EMULATOR_HOST']}",
                 "-v", f"{out}:/out", image("predict"),
                 "keel", "predict", "--store", f"gs://{bucket}/store",
                 "--source", f"gs://{bucket}/in/credit.csv", "--output", "/out/scores.parquet",
                 check=False)
    assert ran.returncode == 0, ran.stdout[-2000:] + ran.stderr[-3000:]
    import pyarrow.parquet as pq

    table = pq.read_table(out / "scores.parquet")
    assert table.num_rows == 4454
    assert {"prediction", "model_version", "data_version"} <= set(table.column_names)


# -- what is (and is not) in the images ----------------------------------------------------------
@pytest.mark.parametrize("each", IMAGES, ids=lambda i: i.name)
def test_each_image_holds_only_its_own_packages(built, each):
    has_sklearn = "scikit-learn" in each.packages
    has_sql = "sqlalchemy" in each.packages
    probe = ("import importlib.util as u; "
             "print(u.find_spec('sklearn') is not None, u.find_spec('sqlalchemy') is not None)")
    ran = podman("run", "--rm", "--network", "host", image(each.name), "python3", "-c", probe)
    assert ran.stdout.split() == [str(has_sklearn), str(has_sql)]


@pytest.mark.parametrize("name", ["base", *IMAGE_NAMES])
def test_images_carry_no_build_leftovers_and_run_as_uid_1000(built, name):
    script = ("import os; print(os.getuid()); "
              "leftovers = [p for p in ('/etc/pip.conf', '/run/host-ca.crt', '/run/secrets/ca', "
              "'/src', '/staging', '/root/.cache/pip') if os.path.lexists(p)]; "
              "apt = [f for f in os.listdir('/var/cache/apt')] + "
              "[f for f in os.listdir('/var/lib/apt/lists')]; print(leftovers, apt)")
    ran = podman("run", "--rm", "--network", "host", image(name), "python3", "-c", script)
    assert ran.stdout.split("\n", 1)[0] == "1000"
    assert ran.stdout.split("\n")[1] == "[] []", ran.stdout


@pytest.mark.parametrize("each", IMAGES, ids=lambda i: i.name)
def test_images_are_labelled_with_version_commit_and_what_they_do(built, each):
    inspected = json.loads(podman("image", "inspect", image(each.name)).stdout)[0]
    labels = inspected["Labels"]
    assert labels["org.opencontainers.image.title"] == f"keel-{each.name}"
    assert labels["org.opencontainers.image.version"] == keel.__version__
    assert labels["org.opencontainers.image.description"] == f"Keel {each.name}: {each.does}"
    assert labels["org.opencontainers.image.base.name"] == image("base")
    commit = labels["org.opencontainers.image.revision"]
    assert len(commit.removesuffix("-dirty")) == 40
    assert ":latest" not in image(each.name)

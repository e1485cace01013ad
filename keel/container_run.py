"""Running the local pipeline with every stage in its own image (``keel run --runner docker``).

kfp.local's DockerRunner starts each task's container through the Docker API, which Docker
and podman (``podman system service``) both serve. What Keel adds to it:

- **A failed stage fails the run.** kfp 2.17.3 starts containers with ``auto_remove=True``; on
  podman the container is gone before its exit status is read, and the resulting 404 is taken
  as exit code 0, so a stage that raised is logged SUCCESS (kubeflow/pipelines #13332, fixed
  after 2.17.3). :func:`run_container` keeps the container until its status is read, then
  removes it.
- **The stage's own error.** The error file (KEEL_ERROR_FILE) lives in the pipeline root, which
  kfp mounts into each container at the same path, so a stage's KeelError reaches the terminal
  as one line, as with the subprocess runner.
- **The host's services.** Containers share the host's network (``network_mode=host``), so a
  store or emulator on 127.0.0.1 is reachable, and they get the host's Keel and Cloud Storage
  settings (:data:`PASSED_ENV`), never other variables.
- **Files the image's user can write.** The images run as uid 1000; while the run lasts, what
  kfp creates on the host for the stages (the pipeline root's folders) is made writable by it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

from keel.errors import KeelError
from keel.images import image
from keel.stages import STAGE_NAMES

#: Host environment variables a stage container gets (prefixes end with ``_``).
PASSED_ENV: tuple[str, ...] = ("KEEL_", "STORAGE_EMULATOR_HOST", "GCSFS_",
                               "GOOGLE_CLOUD_PROJECT", "NO_PROXY", "no_proxy")
#: Set in the images themselves: the host's value would be wrong inside.
NOT_PASSED: frozenset[str] = frozenset({"KEEL_IMAGE", "KEEL_GIT_COMMIT", "KEEL_IMAGE_DIGESTS",
                                        "KEEL_IMAGE_REGISTRY"})


def container_environment(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The variables of ``environ`` (the host's) that a stage container gets."""
    source = os.environ if environ is None else environ
    return {name: value for name, value in sorted(source.items())
            if name not in NOT_PASSED and any(
                name == wanted or (wanted.endswith("_") and name.startswith(wanted))
                for wanted in PASSED_ENV)}


def docker_client() -> Any:
    """A Docker API client (DOCKER_HOST, or the default socket); a KeelError if none answers."""
    try:
        import docker  # type: ignore[import-untyped]  # no stubs; used through Any
    except ImportError:
        raise KeelError("--runner docker needs the Python package `docker`: "
                        "pip install 'keel[containers]'.", stage="run") from None
    try:
        client = docker.from_env()
        client.ping()
    except Exception as exc:  # docker raises DockerException, requests' and OSError's kinds
        where = os.environ.get("DOCKER_HOST", "the default Docker socket")
        raise KeelError(
            f"--runner docker found no container engine at {where} ({type(exc).__name__}). "
            "Start one (`podman system service`, images/README.md) and set DOCKER_HOST.",
            stage="run") from None
    return client


def check_images(client: Any, names: tuple[str, ...] = STAGE_NAMES) -> None:
    """A KeelError naming every stage image the engine does not have (kfp would pull them)."""
    have: set[str] = set()
    for each in client.images.list():
        have.update(each.tags)
        have.update(each.attrs.get("RepoDigests") or [])
    missing = [image(name) for name in names if image(name) not in have]
    if missing:
        raise KeelError(
            f"The container engine lacks {len(missing)} stage image(s): {', '.join(missing)}. "
            "Build them with `make images` (images/build.sh), with the same "
            "KEEL_IMAGE_REGISTRY.", stage="run")


def run_container(client: Any, image: str, command: list[str], volumes: dict[str, Any],
                  **run_args: Any) -> int:
    """Kfp 2.17.3's ``run_docker_container``, reading the exit status before removing it."""
    run_args.pop("auto_remove", None)
    print(f"Running image {image!r}\n")  # kfp prints "Found image" from the function replaced
    container = client.containers.run(image=image, command=command, detach=True, stdout=True,
                                      stderr=True, volumes=volumes, **run_args)
    try:
        for chunk in container.logs(stream=True, follow=True):
            print(chunk.decode(errors="backslashreplace"), end="")
        status = container.wait()
        return int(status.get("StatusCode", 1))
    except BaseException:
        with contextlib.suppress(Exception):
            container.kill()
        raise
    finally:
        with contextlib.suppress(Exception):
            container.remove(force=True)


@contextlib.contextmanager
def stages_in_containers() -> Iterator[None]:
    """For the duration, kfp.local runs containers through :func:`run_container`.

    Also sets the umask to 0, so that the folders kfp makes on the host for the stages' outputs
    are writable by the images' user (uid 1000).
    """
    from kfp.local import docker_task_handler

    original = docker_task_handler.run_docker_container
    docker_task_handler.run_docker_container = run_container
    umask = os.umask(0)
    try:
        yield
    finally:
        os.umask(umask)
        docker_task_handler.run_docker_container = original


"""``keel serve``: serve a registered version with Keel's model server (KServe V1 and V2 protocols).

The same code the serving image runs (:mod:`keel.serving`): the version's files are checked
against their sha256 before the model is loaded, so a damaged version never starts serving.
Serves until Ctrl-C or SIGTERM, then stops cleanly (exit status 0). The data stack is imported only
when the command runs, so ``keel --help`` stays fast.
"""

from __future__ import annotations

import signal
from types import FrameType
from typing import TYPE_CHECKING, Any

import click

from keel.settings import SETTINGS

if TYPE_CHECKING:
    from keel.serving import ModelServer

DEBUG = "keel.debug"  # the key keel.cli's --debug uses in click's ctx.meta


def _remember_debug(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
    ctx.meta[DEBUG] = ctx.meta.get(DEBUG, False) or value
    return value


def _stop(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # serve_forever returns through it, like Ctrl-C


@click.command("serve")
@click.option("--store", default=SETTINGS["store"].cli_default, show_default=True,
              help=SETTINGS["store"].help)
@click.option("--model", "model_name", help="Model name [default: the only model in the store].")
@click.option("--version", type=int, help="Version to serve [default: production].")
@click.option("--model-dir", type=click.Path(file_okay=False), default=None,
              help="Serve the version folder at this path instead of reading the store (what "
                   "the KServe runtime does with /mnt/models: its manifest.json checks the "
                   "files; --model renames the served model).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (0.0.0.0: every interface).")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535),
              help="Port to listen on (0: any free port).")
@click.option("--debug", is_flag=True, help="Show tracebacks.", callback=_remember_debug,
              is_eager=True)
@click.pass_context
def serve(ctx: click.Context, store: str, model_name: str | None, version: int | None,
          model_dir: str | None, host: str, port: int, debug: bool) -> None:
    """Serve a model version over HTTP (KServe V1 and V2 protocols) until Ctrl-C.

    V1: POST /v1/models/M:predict with {"instances": [{column: value, ...}, ...]}; add
    "parameters": {"probabilities": true} for class probabilities. V2: POST
    /v2/models/M/infer with one input per column and "parameters": {"content_type": "pd"}.
    Health: GET /v2/health/live, /v2/health/ready.
    """
    from keel.cli import fail, say
    from keel.errors import KeelError

    try:
        server = (_start_folder(model_dir, model_name, host, port) if model_dir else
                  _start(store, model_name, version, host, port))
    except KeelError as exc:
        fail(ctx, exc, exc)
        return
    served = server.served
    name = served.name
    url = f"http://{host}:{server.server_address[1]}"
    say(f"Serving model {name!r} version {served.version} at {url} "
        f"(V1 /v1/models/{name}:predict, V2 /v2/models/{name}/infer)")
    previous: Any = None
    try:
        previous = signal.signal(signal.SIGTERM, _stop)
    except ValueError:  # not the main thread (a test runner): Ctrl-C only
        previous = None
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    say(f"Stopped serving model {name!r}.", err=True)


def _start(store: str, model_name: str | None, version: int | None, host: str, port: int
           ) -> ModelServer:
    from keel.models_cli import open_registry
    from keel.serving import load_version, make_server

    registry = open_registry(store, model_name)
    served = load_version(store, registry.model, version)
    return make_server(served, host, port)


def _start_folder(folder: str, model_name: str | None, host: str, port: int) -> ModelServer:
    from pathlib import Path

    from keel.contracts import Manifest
    from keel.errors import RegistryError
    from keel.serving import load_folder, make_server

    manifest_path = Path(folder) / "manifest.json"
    if not manifest_path.is_file():
        raise RegistryError(f"{folder} holds no manifest.json: --model-dir must be a version "
                            "folder of the store (registry/MODEL/versions/N).", stage="serving")
    import dataclasses

    served = load_folder(folder, Manifest.read(manifest_path, stage="serving"))
    if model_name:
        served = dataclasses.replace(served, name=model_name)
    return make_server(served, host, port)

"""``keel deploy``: serve a registered version with KServe, or print what would be applied.

``--dry-run`` prints the ServingRuntime and the InferenceService (YAML, checked against
KServe's CRD schemas) without contacting a cluster. Otherwise the version is smoke-tested on
loopback, applied with server-side apply, waited for, smoke-tested at its endpoint, and on any
failure the previous version is re-applied (exit status 1). Rolling back is a deploy of the
previous version: ``keel deploy --version N``. The cluster comes from the pod's service account
or the kubeconfig (``--kubeconfig``, ``KUBECONFIG``, ``~/.kube/config``).
"""

from __future__ import annotations

from typing import Any

import click

from keel.settings import DEPLOYMENT_MODES, SETTINGS

SERVICE_ACCOUNT = SETTINGS["serving_account"].default


@click.command("deploy")
@click.option("--store", default=SETTINGS["store"].cli_default, show_default=True,
              help=SETTINGS["store"].help)
@click.option("--model", "model_name", help="Model name [default: the only model in the store].")
@click.option("--version", default="production", show_default=True,
              help="Version number to deploy, or 'production'.")
@click.option("--namespace", required=True, help="Namespace of the InferenceService.")
@click.option("--image", default=None,
              help="Keel's serving image [default: keel.images.image('serve'), "
                   "KEEL_IMAGE_REGISTRY/serve:<version>].")
@click.option("--serving-store", default=None, metavar="URI",
              help="The store as KServe's storage initializer reads it [default: --store, "
                   "which must then be gs://].")
@click.option("--service-account", default=SERVICE_ACCOUNT, show_default=True,
              help="Service account of the predictor pods (it reads the store).")
@click.option("--replicas", type=click.IntRange(0), default=1, show_default=True,
              help="Minimum replicas (0: scale to zero, Serverless only).")
@click.option("--max-replicas", type=click.IntRange(1), default=None,
              help="Maximum replicas [default: --replicas, at least 1].")
@click.option("--deployment-mode", type=click.Choice(DEPLOYMENT_MODES), default="Serverless",
              show_default=True, help="KServe's deployment mode (Knative or plain Deployment).")
@click.option("--timeout", type=click.FloatRange(min=1), default=600.0, show_default=True,
              help="Seconds to wait for the new version to serve before rolling back.")
@click.option("--kubeconfig", default=None, type=click.Path(dir_okay=False),
              help="Kubeconfig file [default: in a pod its service account, else KUBECONFIG "
                   "or ~/.kube/config].")
@click.option("--context", default=None, help="Kubeconfig context [default: the current one].")
@click.option("--dry-run", is_flag=True,
              help="Print the manifests (YAML) that would be applied; contact no cluster.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
def deploy_command(store: str, model_name: str | None, version: str, namespace: str,
                   image: str | None, serving_store: str | None, service_account: str,
                   replicas: int, max_replicas: int | None, deployment_mode: str, timeout: float,
                   kubeconfig: str | None, context: str | None, dry_run: bool, as_json: bool,
                   debug: bool) -> None:
    """Deploy a model version to KServe, rolling back to the previous one if it fails.

    With --dry-run, print the ServingRuntime and InferenceService it would apply.
    """
    from keel.cli import echo_json, say
    from keel.deploy import DeployFailed, check_options, dry_run_manifests
    from keel.images import image as image_of
    from keel.models_cli import open_registry

    check_options(namespace=namespace, service_account=service_account,
                  image=image or image_of("serve"), serving_store=serving_store)
    registry = open_registry(store, model_name)
    number = registry.resolve(version)
    options: dict[str, Any] = {"namespace": namespace, "image": image or image_of("serve"),
               "serving_store": serving_store, "service_account": service_account,
               "min_replicas": replicas, "max_replicas": max_replicas or max(replicas, 1),
               "deployment_mode": deployment_mode}
    if dry_run:
        text = dry_run_manifests(store, registry.model, number, **options)
        if as_json:
            import yaml

            echo_json({"model": registry.model, "version": number, "dry_run": True,
                       "manifests": [d for d in yaml.safe_load_all(text) if d]})
        else:
            click.echo(text, nl=False)
        return

    from keel.deploy import deploy_stored
    from keel.kube import KubeClient, load_config

    result = deploy_stored(store, registry.model, number,
                           client=KubeClient(load_config(kubeconfig, context)), timeout=timeout,
                           log=lambda line: say(f"keel: {line}", err=True), **options)
    if as_json:
        echo_json(result.to_dict())
    elif result.deployed:
        say(f"Model {registry.model!r} version {number} is serving at {result.url} "
            f"(InferenceService {namespace}/{result.name}, revision {result.revision}).")
    if not result.deployed:
        raise DeployFailed(f"Version {number} of {registry.model!r} was not deployed: "
                           f"{result.reason}")

from kfp import dsl

from keel.images import image
from keel.settings import document_settings


@dsl.component(base_image=image("deploy"), install_kfp_package=False)
@document_settings
def deploy(
    publication: str,
    decision: dsl.Input[dsl.Artifact],
    deployment: dsl.Output[dsl.Artifact],
    deploy_namespace: str = "",
    serving_account: str = "keel-serving",
    serving_replicas: int = 1,
    deployment_mode: str = "Serverless",
    deploy_timeout: int = 600,
) -> bool:
    """Smoke-test the published version in Keel's model server; deploy it to KServe if asked.

    Args:
        publication: The publish output as JSON (model, store, version).
        decision: The decision record from evaluate: only a version that passed is deployed.
        deployment: JSON record: the smoke test (golden rows, latency) and the deployment
            (InferenceService, revision, URL, the previous version, a rollback).

    Returns:
        Whether the version served its golden rows correctly (and was deployed when asked).
    """
    from keel.deploy import run

    return run(publication, decision.path, deployment.path, namespace=deploy_namespace,
               service_account=serving_account, replicas=serving_replicas,
               mode=deployment_mode, timeout=deploy_timeout).smoke_test.passed

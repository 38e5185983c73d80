"""The sentiment model's lifecycle as a Kubeflow pipeline: train -> evaluate -> publish to the team's model store ->
compile for Inferentia -> register in the team's MLflow registry and point the `canary` alias at the new version.

The canary itself moves through the platform's config: the team sets the workload's `registry.version` to the
version the alias names and a `canary.weight`, and `pulumi up` rolls it out (docs/app-teams/registry.md).

    .venv-pipelines/bin/python examples/pipelines/sentiment_lifecycle.py   # rewrites sentiment_lifecycle.yaml

Steps run the sentiment service's own entrypoints (examples/sentiment-service) and the registry's image; each
names its image by tag, its requests and memory limit, and the pool it runs on.
"""

import sys
from pathlib import Path

from kfp import compiler, dsl, kubernetes

HERE = Path(__file__).resolve().parent
OUTPUT = HERE / "sentiment_lifecycle.yaml"

# The images the stacks ship (built from examples/sentiment-service) and the registry's (infra/config/registry.py).
SERVICE_IMAGE = "111122223333.dkr.ecr.us-west-2.amazonaws.com/sentiment-service:1.1.0-cuda"
NEURON_IMAGE = "111122223333.dkr.ecr.us-west-2.amazonaws.com/sentiment-service:1.0.0-neuronx"
MLFLOW_IMAGE = "ghcr.io/mlflow/mlflow:v3.17.0-full"

# The team's claims: its dataset, its checkpoints and its model store (`model-store`, from the platform; on an S3
# store the run mounts its writable `model-store-publish` and passes store_backend=s3).
DATA, CHECKPOINTS, STORE = "/data", "/checkpoints", "/models"
RUN_AS = 10001
# Each accelerator pool's node label and taint (infra/lib/accelerators.py).
POOL_LABEL = "ml-platform.io/pool"
TAINTS = {"nvidia": "nvidia.com/gpu", "neuron": "aws.amazon.com/neuron"}
# The Neuron target the service runs on (its instance family, which picks the compiler) and the compile's
# footprint there (infra/lib/headroom.py: COMPILE_*).
NEURON_TARGET = "inf2"
COMPILE = {"cpu": "2", "memory": "8Gi", "cores": 1}


@dsl.container_component
def train(epochs: int, candidate: str):
    """Fine-tunes into <checkpoints>/<candidate>/final, resuming from its last checkpoint after a retry."""
    return dsl.ContainerSpec(
        image=SERVICE_IMAGE,
        command=["sh", "-c", 'CHECKPOINT_DIR="$0" exec python -m trainer.finetune --epochs "$1"'],
        args=[dsl.ConcatPlaceholder([CHECKPOINTS, "/", candidate]), epochs],
    )


@dsl.container_component
def evaluate(candidate: str, min_accuracy: float, metrics: dsl.OutputPath(str)):
    """Fails below the minimum accuracy: nothing after it runs."""
    return dsl.ContainerSpec(
        image=SERVICE_IMAGE,
        command=["python", "-m", "trainer.evaluate"],
        args=["--model-dir", dsl.ConcatPlaceholder([CHECKPOINTS, "/", candidate, "/final"]), "--data-dir", DATA, "--min-accuracy", min_accuracy, "--metrics", metrics],
    )


@dsl.container_component
def publish(candidate: str, model: str, version: str, backend: str):
    """Publishes the evaluated candidate as model@version (immutable; the same content again is a no-op), by the
    store's protocol (`efs` or `s3`)."""
    return dsl.ContainerSpec(
        image=SERVICE_IMAGE,
        command=["python", "-m", "modelstore", "publish"],
        args=[
            "--store", STORE, "--model", model, "--version", version, "--backend", backend,
            "--source", dsl.ConcatPlaceholder([CHECKPOINTS, "/", candidate, "/final"]),
            "--origin", dsl.ConcatPlaceholder(["pipelineRun=", dsl.PIPELINE_JOB_ID_PLACEHOLDER]),
        ],
    )


@dsl.container_component
def compile_for_neuron(model: str, version: str, backend: str):
    """Adds the Neuron artifact to the published version (the store records it in the version's manifest)."""
    return dsl.ContainerSpec(
        image=NEURON_IMAGE,
        command=["python", "-m", "modelstore", "compile"],
        args=["--store", STORE, "--model", model, "--version", version, "--target", NEURON_TARGET, "--backend", backend],
    )


@dsl.container_component
def register(tracking_uri: str, model: str, version: str, alias: str, metrics: str, registry_version: dsl.OutputPath(str)):
    """Registers the store version in the team's registry and moves the alias to it."""
    return dsl.ContainerSpec(
        image=MLFLOW_IMAGE,
        command=["python", "-c", (HERE / "register.py").read_text()],
        args=[
            "--tracking-uri", tracking_uri, "--store-dir", dsl.ConcatPlaceholder([STORE, "/", model, "/", version]),
            "--model", model, "--store-version", version, "--alias", alias, "--metrics-json", metrics, "--version-out", registry_version,
        ],
    )


def _placed(task: dsl.PipelineTask, cpu: str, memory: str, pool: str = "cpu", accelerators: int = 0, family: str = "", mesh: bool = False) -> dsl.PipelineTask:
    """Requests, memory limit = request, no CPU limit; the pool's node selector and exactly its taint; the team's
    restricted pod security; a sidecar only for a step that calls a mesh service."""
    task.set_cpu_request(cpu).set_memory_request(memory).set_memory_limit(memory)
    kubernetes.add_node_selector(task, POOL_LABEL, pool)
    if family:
        kubernetes.add_node_selector(task, "karpenter.k8s.aws/instance-family", family)
    if pool in TAINTS:
        task.set_accelerator_type(TAINTS[pool]).set_accelerator_limit(accelerators)
        kubernetes.add_toleration(task, key=TAINTS[pool], operator="Equal", value="true", effect="NoSchedule")
    kubernetes.set_security_context(task, run_as_user=RUN_AS, run_as_group=RUN_AS, run_as_non_root=True)
    kubernetes.empty_dir_mount(task, volume_name="tmp", mount_path="/tmp", size_limit="1Gi")
    kubernetes.add_pod_label(task, "sidecar.istio.io/inject", "true" if mesh else "false")
    return task


@dsl.pipeline(name="sentiment-lifecycle", description="Train, evaluate, publish, compile for Inferentia and register the sentiment model; the canary alias names the new version.")
def sentiment_lifecycle(
    registry_uri: str,
    model: str = "sentiment",
    version: str = "2",
    epochs: int = 3,
    min_accuracy: float = 0.85,
    alias: str = "canary",
    data_claim: str = "sentiment-finetune-data",
    checkpoints_claim: str = "sentiment-finetune-checkpoints",
    store_claim: str = "model-store",
    store_backend: str = "efs",
):
    # The candidate lives in <checkpoints>/<version>/ until it is evaluated and published.
    trained = _placed(train(epochs=epochs, candidate=version), "4", "16Gi", "nvidia", 1).set_display_name("train")
    trained.set_env_variable("DATA_DIR", DATA)
    kubernetes.mount_pvc(trained, data_claim, DATA)
    kubernetes.mount_pvc(trained, checkpoints_claim, CHECKPOINTS)
    # A preempted run resumes from its checkpoint.
    trained.set_retry(2)

    evaluated = _placed(evaluate(candidate=version, min_accuracy=min_accuracy), "2", "8Gi").after(trained).set_display_name("evaluate")
    kubernetes.mount_pvc(evaluated, data_claim, DATA)
    kubernetes.mount_pvc(evaluated, checkpoints_claim, CHECKPOINTS)

    published = _placed(publish(candidate=version, model=model, version=version, backend=store_backend), "1", "4Gi").after(evaluated).set_display_name("publish")
    kubernetes.mount_pvc(published, checkpoints_claim, CHECKPOINTS)
    kubernetes.mount_pvc(published, store_claim, STORE)

    compiled = _placed(
        compile_for_neuron(model=model, version=version, backend=store_backend), COMPILE["cpu"], COMPILE["memory"], "neuron", COMPILE["cores"], NEURON_TARGET
    ).after(published).set_display_name("compile-for-inferentia")
    kubernetes.mount_pvc(compiled, store_claim, STORE)

    registered = _placed(
        register(tracking_uri=registry_uri, model=model, version=version, alias=alias, metrics=evaluated.outputs["metrics"]), "500m", "1Gi", mesh=True
    ).after(compiled).set_display_name("register-and-promote")
    # Its calls to the registry go through the mesh: the registry admits the team's namespace by its mTLS identity.
    kubernetes.mount_pvc(registered, store_claim, STORE)
    # Every step's output is in the store or the registry, not in the pipeline's cache.
    for task in (trained, evaluated, published, compiled, registered):
        task.set_caching_options(False)


def main(argv: list[str]) -> int:
    out = Path(argv[0]) if argv else OUTPUT
    compiler.Compiler().compile(sentiment_lifecycle, str(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

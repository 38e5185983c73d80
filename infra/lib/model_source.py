"""Where a served model comes from when it is a registered version: an init container fetches `models:/NAME/VERSION`
(or `models:/NAME@ALIAS`) from the team's MLflow registry into the pod's model volume before the server starts.

Shared by every serving path (the hand-built Deployments, KServe): they mount `volume`, run `init_container` first
and point the server at `model_dir`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import pulumi._types as pulumi_types
import pulumi_kubernetes as k8s

from infra.config.registry import RegistryRef
from infra.lib.conventions import MODEL_STORE_PATH, registry_url

core = k8s.core.v1

VOLUME = "registry-model"
# The fetch runs in Python and streams files to disk: a small, fixed footprint whatever the model's size.
FETCH_RESOURCES = core.ResourceRequirementsArgs(requests={"cpu": "250m", "memory": "512Mi"}, limits={"memory": "512Mi"})


@dataclass(frozen=True)
class ModelSource:
    init_container: core.ContainerArgs
    volume: core.VolumeArgs
    mount: core.VolumeMountArgs  # read-only, for the serving container
    model_dir: str  # MODEL_DIR for the serving container


def as_manifest(value: Any) -> Any:
    """A typed Args value as the plain manifest the engine sends (camelCase keys, no unset fields), for custom
    resources such as KServe's InferenceService, whose spec is a plain dict."""
    if pulumi_types.is_input_type(type(value)):
        return {k: as_manifest(v) for k, v in pulumi_types.input_type_to_dict(value).items()}
    if isinstance(value, (list, tuple)):
        return [as_manifest(v) for v in value]
    if isinstance(value, dict):
        return {k: as_manifest(v) for k, v in value.items()}
    return value


def registered(ref: Optional[RegistryRef]) -> Optional[dict[str, Any]]:
    """A registry reference as the stack outputs show it."""
    return {"model": ref.model, "version": ref.version, "alias": ref.alias} if ref else None


def model_dir(ref: RegistryRef, mount_path: str = MODEL_STORE_PATH) -> str:
    return f"{mount_path}/{ref.model}/{ref.selector}"


def registry_model_source(ref: RegistryRef, team: str, image: str, mount_path: str = MODEL_STORE_PATH) -> ModelSource:
    """The init container, its volume (sized by the reference) and the read-only mount for the server.

    `image` carries the MLflow client (the registry's own image). The pod's traffic to the registry goes through its
    mesh sidecar, which Istio starts before init containers (native sidecars, Istio 1.27 and later), so the
    registry's authorization policy sees the pod's namespace. Until the server answers the client retries, and the
    kubelet restarts the init container: the pod becomes ready once its version is fetched."""
    directory = model_dir(ref, mount_path)
    container = core.ContainerArgs(
        name="fetch-model",
        image=image,
        command=["mlflow", "artifacts", "download", "--artifact-uri", ref.uri, "--dst-path", directory],
        env=[
            core.EnvVarArgs(name="MLFLOW_TRACKING_URI", value=registry_url(team)),
            core.EnvVarArgs(name="HOME", value="/tmp"),
        ],
        resources=FETCH_RESOURCES,
        security_context=core.SecurityContextArgs(
            allow_privilege_escalation=False, read_only_root_filesystem=True, run_as_non_root=True, capabilities=core.CapabilitiesArgs(drop=["ALL"])
        ),
        volume_mounts=[core.VolumeMountArgs(name=VOLUME, mount_path=mount_path), core.VolumeMountArgs(name="tmp", mount_path="/tmp")],
    )
    # Node-local scratch holding one version: a pod fetches its own copy, nothing outlives it.
    volume = core.VolumeArgs(name=VOLUME, empty_dir=core.EmptyDirVolumeSourceArgs(size_limit=f"{ref.size_gib}Gi"))
    return ModelSource(container, volume, core.VolumeMountArgs(name=VOLUME, mount_path=mount_path, read_only=True), directory)

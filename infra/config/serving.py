"""Serving settings: which path serves the classic models (KServe InferenceServices or hand-built Deployments),
KServe's controller and the runtimes that serve each model format."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import AfterValidator, Field

from infra.config.base import Model
from infra.config.pins import PINS


@dataclass(frozen=True)
class Runtime:
    """How the platform serves a model format on KServe: a custom predictor running the team's serving image (the
    model-store protocol of examples/sentiment-service), on the pools whose accelerators the format runs on."""

    accelerators: tuple[str, ...]
    description: str


# The model formats the platform has a runtime for. KServe's own ClusterServingRuntimes (kserve-runtime-configs) are
# not installed: they read a storageUri, while the platform's models sit in the team's store, waited for and (for
# Neuron) compiled by the platform's lifecycle jobs, which the team's image speaks to.
RUNTIMES: dict[str, Runtime] = {
    "huggingface": Runtime(("cpu", "nvidia"), "a Hugging Face transformers model, served by the team's image on CPU or NVIDIA GPUs"),
    "neuron": Runtime(("neuron",), "a model compiled for Neuron by the platform's compile job, served by the team's image on Inferentia/Trainium"),
}


def _has_runtime(value: str) -> str:
    if value not in RUNTIMES:
        known = "; ".join(f"{name}: {r.description}" for name, r in sorted(RUNTIMES.items()))
        raise ValueError(f"no serving runtime on this platform for model format {value!r}; formats with one: {known}")
    return value


# A model format the platform has a runtime for (RUNTIMES).
ModelFormat = Annotated[str, AfterValidator(_has_runtime)]


def model_format_for(accelerator: str) -> str:
    """The format a workload serves when it names none: what its accelerator runs."""
    return "neuron" if accelerator == "neuron" else "huggingface"


Version = Annotated[str, Field(pattern=r"^v\d+\.\d+\.\d+$")]


class ServingConfig(Model):
    """`mode: kserve` serves every serving workload as KServe InferenceServices (Standard mode, no Knative) and installs
    KServe with cert-manager; `deployment` keeps the hand-built Deployment, Service and autoscaler per version."""

    mode: Literal["kserve", "deployment"] = "kserve"
    kserve_version: Version = PINS["kserve"]
    cert_manager_version: Version = PINS["cert-manager"]

    @property
    def kserve(self) -> bool:
        return self.mode == "kserve"

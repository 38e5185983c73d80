"""Model registry settings: one MLflow tracking server and model registry per team, and how a served model names
a registered version."""
from __future__ import annotations

import re
from typing import Annotated, Optional

from pydantic import AfterValidator, Field, model_validator

from infra.config.base import CpuQuantity, ImageRef, Model

# MLflow's official image with its extras (MySQL driver, boto3): the plain tag ships MLflow alone (docker/README.md
# upstream; the -full variant exists from 3.9.0 on).
MLFLOW_IMAGE = "ghcr.io/mlflow/mlflow:v3.17.0-full"

# Registered model names the platform accepts: they become a directory and part of a label value.
RegisteredModelName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,39}$")]


def _alias(value: str) -> str:
    # MLflow reserves `latest` and version-like aliases (v1, v2, ...): they would shadow versions.
    if value == "latest" or re.fullmatch(r"v\d+", value):
        raise ValueError(f"{value!r} is reserved by MLflow (latest, v<number>); pick another alias")
    return value


ModelAlias = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]{0,39}$"), AfterValidator(_alias)]


class RegistryRef(Model):
    """A registered model version, by number or by alias; fetched from the team's registry when a pod starts."""

    model: RegisteredModelName
    version: Optional[Annotated[int, Field(ge=1)]] = None
    # Resolved when each pod starts: moving the alias changes what new pods load, not the running ones.
    alias: Optional[ModelAlias] = None
    # The pod's model volume the version is downloaded into.
    size_gib: Annotated[int, Field(ge=1, le=200)] = 10

    @model_validator(mode="after")
    def _one_selector(self) -> "RegistryRef":
        if (self.version is None) == (self.alias is None):
            raise ValueError(
                f"version: registry model {self.model!r} needs exactly one of version (a number) or alias; a name alone does not say which version to serve"
            )
        return self

    @property
    def uri(self) -> str:
        """MLflow's URI of the version: models:/NAME/VERSION or models:/NAME@ALIAS."""
        return f"models:/{self.model}/{self.version}" if self.version is not None else f"models:/{self.model}@{self.alias}"

    @property
    def selector(self) -> str:
        return f"v{self.version}" if self.version is not None else self.alias

    @property
    def key(self) -> str:
        return f"{self.model}@registry:{self.selector}"


class RegistryResources(Model):
    cpu: CpuQuantity = "500m"
    memory_gib: Annotated[float, Field(gt=0, le=64)] = 2


class RegistryConfig(Model):
    enabled: bool = True
    image: ImageRef = MLFLOW_IMAGE
    # Servers per team; two or more spread over zones and keep serving through a node drain.
    replicas: Annotated[int, Field(ge=1, le=10)] = 1
    # The server's worker processes (uvicorn): each holds a database connection pool.
    workers: Annotated[int, Field(ge=1, le=16)] = 2
    resources: RegistryResources = RegistryResources()
    # Overwritten or deleted artifacts stay recoverable this long in the versioned bucket.
    noncurrent_version_days: Annotated[int, Field(ge=1, le=3650)] = 90
    # Pulumi refuses to delete the protected artifact bucket and its key; unprotected, a destroy empties and deletes them.
    protect: bool = False

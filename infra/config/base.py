"""The base every settings module builds on: the model class, the error, and value types several capabilities share."""
from __future__ import annotations

import ipaddress
from typing import Annotated, Literal

import pulumi
from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel


PROJECT = "ml-platform"

# CloudWatch Logs accepts only these retention periods.
LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653)


class ConfigError(pulumi.RunError):
    """Invalid configuration; the message names the key path, the bad value and what is allowed."""


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, alias_generator=to_camel, populate_by_name=True)


def _ipv4_network(value: str) -> str:
    try:
        net = ipaddress.IPv4Network(value, strict=True)
    except ValueError:
        raise ValueError("expected an IPv4 CIDR with no host bits set, like 10.0.0.0/16") from None
    return str(net)


Cidr = Annotated[str, AfterValidator(_ipv4_network)]

RetentionDays = Literal[LOG_RETENTION_DAYS]  # type: ignore[valid-type]

IamRoleArn = Annotated[str, Field(pattern=r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+$")]

AddonVersion = Annotated[str, Field(pattern=r"^v\d+\.\d+\.\d+-eksbuild\.\d+$")]


class Tags(Model):
    owner: Annotated[str, Field(min_length=1, max_length=128)]
    cost_center: Annotated[str, Field(min_length=1, max_length=128)]
    extra: dict[str, str] = {}


Quantity = Annotated[str, Field(pattern=r"^\d+(\.\d+)?(m|Ki|Mi|Gi|Ti)?$")]

Duration = Annotated[str, Field(pattern=r"^(([0-9]+(s|m|h))+|Never)$")]


class HelmChart(Model):
    version: Annotated[str, Field(pattern=r"^v?\d+\.\d+\.\d+$")]


DnsLabel = Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")]


def _pinned_image(value: str) -> str:
    repository, sep, tag = value.rpartition(":")
    if "@sha256:" in value:
        return value
    if not sep or "/" in tag or not repository:
        raise ValueError("expected an image pinned by tag or digest, like registry/name:1.2.3")
    if tag == "latest":
        raise ValueError("the tag 'latest' moves; pin a version tag or a digest")
    return value


# An image pinned by tag (not `latest`) or by digest.
ImageRef = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9./_:@-]*[A-Za-z0-9._-]$"), AfterValidator(_pinned_image)]

CpuQuantity = Annotated[str, Field(pattern=r"^(\d+m|\d+(\.\d+)?)$")]

"""Platform-wide encryption keys: the customer-managed key every CloudWatch log group is encrypted with."""
from __future__ import annotations

from dataclasses import dataclass

import pulumi

from infra.config import PlatformConfig
from infra.lib.kms import cloudwatch_logs_use, encryption_key


@dataclass(frozen=True)
class EncryptionArgs:
    config: PlatformConfig


class Encryption(pulumi.ComponentResource):
    logs_key_arn: pulumi.Output[str]

    def __init__(self, name: str, args: EncryptionArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("ml-platform:encryption:Encryption", name, None, opts)
        cfg = args.config
        logs_key = encryption_key(
            f"{name}-logs",
            alias=f"{cfg.cluster_name}-logs",
            description=f"CloudWatch Logs encryption for {cfg.cluster_name} (control plane, flow logs, container logs)",
            tags=cfg.tags_for(f"{cfg.cluster_name}-logs"),
            parent=self,
            service_use=[cloudwatch_logs_use(cfg.region)],
        )
        self.logs_key_arn = logs_key.arn
        self.register_outputs({"logsKeyArn": self.logs_key_arn})

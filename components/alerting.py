"""Alerts that page: Alertmanager routes per severity and per team, inhibition, a dead man's switch.

Credentials (PagerDuty routing keys, Slack and webhook URLs) are Pulumi secrets that reach the cluster only
as Kubernetes Secrets: Alertmanager reads them from mounted files, so its configuration (in the chart's
values, see Observability) holds none.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from infra.config import AlertReceiver, PlatformConfig
from infra.lib.alertmanager import CREDENTIALS_SECRET, TEAM_CONFIG_LABEL

PLATFORM_LABELS = {"app.kubernetes.io/part-of": "ml-platform"}


def team_alertmanager_config(receiver: AlertReceiver, secret_name: str) -> dict[str, Any]:
    """A team namespace's route: the operator limits it to alerts from that namespace."""
    selector = {"name": secret_name, "key": "credential"}
    if receiver.kind == "pagerduty":
        target = {"pagerdutyConfigs": [{"routingKey": selector, "severity": "{{ .CommonLabels.severity }}", "sendResolved": True}]}
    elif receiver.kind == "slack":
        target = {"slackConfigs": [{"apiURL": selector, "channel": receiver.slack_channel, "sendResolved": True}]}
    else:
        target = {"webhookConfigs": [{"urlSecret": selector, "sendResolved": True}]}
    return {
        "route": {"receiver": receiver.name, "groupBy": ["alertname", "workload"]},
        "receivers": [{"name": receiver.name, **target}],
    }


@dataclass(frozen=True)
class AlertingArgs:
    config: PlatformConfig
    provider: k8s.Provider
    monitoring_namespace: k8s.core.v1.Namespace
    # The release that installs the AlertmanagerConfig CRD and runs Alertmanager.
    monitoring_release: pulumi.Resource
    team_namespaces: dict[str, pulumi.Resource]


class Alerting(pulumi.ComponentResource):
    def __init__(self, name: str, args: AlertingArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("ml-platform:alerting:Alerting", name, None, opts)
        cfg = args.config
        credentials = {k: v.get_secret_value() for k, v in cfg.alerting_secrets.items()}
        namespace = args.monitoring_namespace.metadata.name
        k8s_opts = lambda *deps: pulumi.ResourceOptions(parent=self, provider=args.provider, depends_on=list(deps))  # noqa: E731

        k8s.core.v1.Secret(
            f"{name}-credentials",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=CREDENTIALS_SECRET, namespace=namespace, labels=PLATFORM_LABELS),
            type="Opaque",
            string_data={k: pulumi.Output.secret(v) for k, v in sorted(credentials.items())},
            opts=k8s_opts(args.monitoring_namespace),
        )
        receivers = {r.name: r for r in cfg.alerting.receivers}
        for team in cfg.teams:
            if not team.alert_receiver:
                continue
            receiver, team_ns = receivers[team.alert_receiver], args.team_namespaces[team.name]
            secret_name = f"alertmanager-{receiver.name}"
            labels = {**PLATFORM_LABELS, "ml-platform.io/team": team.name}
            secret = k8s.core.v1.Secret(
                f"{name}-{team.name}-credential",
                metadata=k8s.meta.v1.ObjectMetaArgs(name=secret_name, namespace=team.name, labels=labels),
                type="Opaque",
                string_data={"credential": pulumi.Output.secret(credentials[receiver.name])},
                opts=k8s_opts(team_ns),
            )
            k8s.apiextensions.CustomResource(
                f"{name}-{team.name}",
                api_version="monitoring.coreos.com/v1alpha1",
                kind="AlertmanagerConfig",
                metadata=k8s.meta.v1.ObjectMetaArgs(name="team-alerts", namespace=team.name, labels={**labels, **TEAM_CONFIG_LABEL}),
                spec=team_alertmanager_config(receiver, secret_name),
                opts=k8s_opts(team_ns, secret, args.monitoring_release),
            )
        self.register_outputs({})

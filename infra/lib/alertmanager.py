"""Alertmanager's platform-wide configuration, rendered from the settings: kube-prometheus-stack runs it, the alerting component adds team routes."""
from __future__ import annotations

from typing import Any

from infra.config import AlertingConfig, AlertReceiver

CREDENTIALS_SECRET = "alertmanager-receivers"
# kube-prometheus-stack mounts each Secret named in alertmanagerSpec.secrets here.
CREDENTIALS_DIR = f"/etc/alertmanager/secrets/{CREDENTIALS_SECRET}"
TEAM_CONFIG_LABEL = {"ml-platform.io/alerting": "team"}
# Alerts are grouped, and warnings inhibited, per workload of a namespace.
WORKLOAD_LABELS = ["namespace", "workload"]


def _receiver(r: AlertReceiver, credential_file: str) -> dict[str, Any]:
    if r.kind == "pagerduty":
        return {"name": r.name, "pagerduty_configs": [{"routing_key_file": credential_file, "severity": "{{ .CommonLabels.severity }}", "send_resolved": True}]}
    if r.kind == "slack":
        return {"name": r.name, "slack_configs": [{"api_url_file": credential_file, "channel": r.slack_channel, "send_resolved": True}]}
    return {"name": r.name, "webhook_configs": [{"url_file": credential_file, "send_resolved": True}]}


def alertmanager_config(alerting: AlertingConfig) -> dict[str, Any]:
    """The platform-wide configuration: criticals page, warnings go to chat, the Watchdog feeds the dead man's switch.
    It names credential files only, so it can live in the chart's values, reviewable in every diff."""
    routes = [
        {
            "receiver": alerting.watchdog.receiver or "null",
            "matchers": ['alertname = "Watchdog"'],
            "group_wait": "0s",
            "repeat_interval": alerting.watchdog.repeat_interval,
        },
        # kube-prometheus-stack's helper alert that only exists to inhibit info-level noise.
        {"receiver": "null", "matchers": ['alertname = "InfoInhibitor"']},
    ]
    for severity in ("critical", "warning"):
        receiver = getattr(alerting.routes, severity)
        if receiver:
            routes.append({"receiver": receiver, "matchers": [f'severity = "{severity}"']})
    config = {
        "route": {
            "receiver": "null",
            "group_by": ["alertname", *WORKLOAD_LABELS],
            "group_wait": "30s",
            "group_interval": "5m",
            "repeat_interval": "4h",
            "routes": routes,
        },
        # A critical alert of a workload silences its warnings; node-level criticals (no workload) silence nothing.
        "inhibit_rules": [
            {
                "source_matchers": ['severity = "critical"', 'workload =~ ".+"'],
                "target_matchers": ['severity = "warning"'],
                "equal": WORKLOAD_LABELS,
            }
        ],
        "receivers": [{"name": "null"}] + [_receiver(r, f"{CREDENTIALS_DIR}/{r.name}") for r in alerting.receivers],
    }
    return config

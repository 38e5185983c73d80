"""Alert routing settings: receivers, routes per severity, the dead man's switch."""
from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal, Optional

from pydantic import Field, model_validator

from infra.config.base import DnsLabel, Model

if TYPE_CHECKING:  # for the annotation only
    from infra.config.tenancy import TeamConfig


class AlertReceiver(Model):
    """Where alerts go. Its credential (PagerDuty Events API v2 routing key, or an https webhook URL for slack and
    webhook) is the secret `alertingSecrets.<name>`, never a plain config value."""

    name: DnsLabel
    kind: Literal["pagerduty", "slack", "webhook"]
    slack_channel: Optional[Annotated[str, Field(pattern=r"^#[-a-z0-9_]+$")]] = None

    @model_validator(mode="after")
    def _channel(self) -> "AlertReceiver":
        if (self.kind == "slack") != (self.slack_channel is not None):
            raise ValueError("slackChannel is required for kind slack and only for it")
        return self


class AlertRoutes(Model):
    """The receiver for each severity; without one, alerts of that severity stay in Alertmanager's UI."""

    critical: Optional[DnsLabel] = None
    warning: Optional[DnsLabel] = None


class Watchdog(Model):
    """The always-firing Watchdog alert, sent to a dead man's switch that pages when the heartbeat stops."""

    receiver: Optional[DnsLabel] = None
    repeat_interval: Annotated[str, Field(pattern=r"^[0-9]+[mh]$")] = "5m"


class AlertingConfig(Model):
    receivers: list[AlertReceiver] = []
    routes: AlertRoutes = AlertRoutes()
    watchdog: Watchdog = Watchdog()

    def receiver_references(self, teams: list[TeamConfig]) -> dict[str, str]:
        """Key path -> receiver name, for every place that names a receiver."""
        refs = {f"alerting.routes.{k}": v for k, v in (("critical", self.routes.critical), ("warning", self.routes.warning)) if v}
        if self.watchdog.receiver:
            refs["alerting.watchdog.receiver"] = self.watchdog.receiver
        refs.update({f"teams[{i}].alertReceiver": t.alert_receiver for i, t in enumerate(teams) if t.alert_receiver})
        return refs

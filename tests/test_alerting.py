"""Alertmanager receivers, routes per severity and team, inhibition and the dead man's switch."""
from __future__ import annotations

import copy

import pytest
import yaml

from infra.config import ConfigError, parse
from infra.lib.alertmanager import CREDENTIALS_DIR, alertmanager_config
from infra.synth import SynthConfigError, read_stack_file
from tests.conftest import ROOT, lean, synth_of
from tests.test_config import SECRET_KEYS, stack_raw


def am_config(stack: str) -> dict:
    return synth_of(stack).release("kube-prometheus-stack")["inputs"]["values"]["alertmanager"]["config"]


def routes_by_matcher(config: dict) -> dict[str, dict]:
    return {r["matchers"][0]: r for r in config["route"]["routes"]}


def test_prod_pages_on_critical_and_staging_chats_on_warning():
    prod, staging = routes_by_matcher(am_config("prod")), routes_by_matcher(am_config("staging"))
    assert prod['severity = "critical"']["receiver"] == "oncall" and 'severity = "warning"' not in prod
    assert staging['severity = "warning"']["receiver"] == "ml-chat" and 'severity = "critical"' not in staging
    receivers = {r["name"]: r for r in am_config("prod")["receivers"]}
    assert receivers["oncall"]["pagerduty_configs"] == [
        {"routing_key_file": f"{CREDENTIALS_DIR}/oncall", "severity": "{{ .CommonLabels.severity }}", "send_resolved": True}
    ]
    slack = {r["name"]: r for r in am_config("staging")["receivers"]}["ml-chat"]["slack_configs"][0]
    assert slack["api_url_file"] == f"{CREDENTIALS_DIR}/ml-chat" and slack["channel"] == "#ml-platform-alerts"


def test_dev_without_receivers_sends_nothing_anywhere():
    config = am_config("dev")
    assert config["receivers"] == [{"name": "null"}] and config["route"]["receiver"] == "null"
    assert {r["receiver"] for r in config["route"]["routes"]} == {"null"}


def test_the_configuration_holds_no_credential_only_the_mounted_files(stack):
    values = stack.release("kube-prometheus-stack")["inputs"]["values"]["alertmanager"]
    assert values["alertmanagerSpec"]["secrets"] == ["alertmanager-receivers"]
    text = yaml.safe_dump(values["config"])
    assert "placeholder" not in text and "https://" not in text
    assert stack.result.manifests["secret--monitoring--alertmanager-receivers.yaml"]["stringData"] == {
        r["name"]: "[secret]" for r in values["config"]["receivers"] if r["name"] != "null"
    }


def test_warnings_are_inhibited_while_a_critical_alert_of_the_same_workload_fires():
    [rule] = am_config("prod")["inhibit_rules"]
    assert rule["source_matchers"] == ['severity = "critical"', 'workload =~ ".+"']
    assert rule["target_matchers"] == ['severity = "warning"'] and rule["equal"] == ["namespace", "workload"]


def test_watchdog_goes_to_the_dead_mans_switch_when_configured():
    raw = copy.deepcopy(stack_raw("prod"))
    raw["alerting"]["receivers"].append({"name": "heartbeat", "kind": "webhook"})
    raw["alerting"]["watchdog"] = {"receiver": "heartbeat", "repeatInterval": "1m"}
    raw["alertingSecrets"]["heartbeat"] = "https://hc-ping.example/uuid"
    config = alertmanager_config(parse(raw, SECRET_KEYS).alerting)
    watchdog = routes_by_matcher(config)['alertname = "Watchdog"']
    assert watchdog["receiver"] == "heartbeat" and watchdog["repeat_interval"] == "1m"
    assert config["route"]["routes"][0] is not None and config["route"]["routes"][0]["matchers"] == ['alertname = "Watchdog"'], "first, so nothing swallows it"
    assert {r["name"]: r for r in config["receivers"]}["heartbeat"]["webhook_configs"] == [{"url_file": f"{CREDENTIALS_DIR}/heartbeat", "send_resolved": True}]


def test_a_teams_receiver_gets_its_namespace_alerts(tmp_path):
    from infra.synth import synthesize
    from tests.schemas import validate

    doc = yaml.safe_load((ROOT / "stacks" / "Pulumi.staging.yaml").read_text())
    lean(doc["config"])["ml-platform:teams"][0]["alertReceiver"] = "ml-chat"
    stack_file = tmp_path / "Pulumi.staging.yaml"
    stack_file.write_text(yaml.safe_dump(doc))
    result = synthesize("staging", stack_file)
    config = result.manifests["alertmanagerconfig--nlp--team-alerts.yaml"]
    validate(config)
    assert config["metadata"]["labels"]["ml-platform.io/alerting"] == "team"
    assert config["spec"]["route"] == {"receiver": "ml-chat", "groupBy": ["alertname", "workload"]}
    assert config["spec"]["receivers"][0]["slackConfigs"][0]["apiURL"] == {"name": "alertmanager-ml-chat", "key": "credential"}
    assert result.manifests["secret--nlp--alertmanager-ml-chat.yaml"]["stringData"] == {"credential": "[secret]"}
    selector = next(r for r in result.resources if r["type"] == "kubernetes:helm.sh/v3:Release" and r["inputs"]["name"] == "kube-prometheus-stack")
    assert selector["inputs"]["values"]["alertmanager"]["alertmanagerSpec"]["alertmanagerConfigSelector"] == {"matchLabels": {"ml-platform.io/alerting": "team"}}


def config_error(mutate, secret_keys=SECRET_KEYS) -> str:
    raw = copy.deepcopy(stack_raw("prod"))
    raw["alertingSecrets"]["oncall"] = "0123456789abcdef0123456789abcdef"
    mutate(raw)
    with pytest.raises(ConfigError) as exc:
        parse(raw, secret_keys)
    return str(exc.value)


@pytest.mark.parametrize(
    "mutate, secret_keys, expected",
    [
        (lambda r: None, (), "ml-platform:alertingSecrets holds routing keys and webhook URLs but is not a secret in the stack file"),
        (lambda r: r["alerting"]["routes"].update(critical="on-call"), SECRET_KEYS, "ml-platform:alerting.routes.critical 'on-call' is not one of the receivers: ['oncall']"),
        (lambda r: r["teams"][0].update(alertReceiver="nlp-chat"), SECRET_KEYS, "ml-platform:teams[0].alertReceiver 'nlp-chat' is not one of the receivers"),
        (lambda r: r["alerting"]["receivers"].append({"name": "chat", "kind": "slack", "slackChannel": "#ml"}) or r["alertingSecrets"].update(chat="http://hooks.slack.example/x"),
         SECRET_KEYS, "ml-platform:alertingSecrets.chat must be an https:// URL for a slack receiver (value not shown)"),
        (lambda r: r["alertingSecrets"].clear(), SECRET_KEYS, "alertingSecrets has no credential for receivers ['oncall']"),
        (lambda r: r["alertingSecrets"].update(pager="x"), SECRET_KEYS, "alertingSecrets has entries for unknown receivers ['pager']"),
        (lambda r: r["alerting"]["receivers"].append({"name": "chat", "kind": "slack"}), SECRET_KEYS, "slackChannel is required for kind slack"),
    ],
)
def test_bad_alerting_config_names_the_key(mutate, secret_keys, expected):
    message = config_error(mutate, secret_keys)
    assert expected in message
    assert "0123456789abcdef" not in message and "hooks.slack.example" not in message


def test_a_plain_credential_in_the_stack_file_is_refused(tmp_path):
    doc = yaml.safe_load((ROOT / "stacks" / "Pulumi.prod.yaml").read_text())
    doc["config"]["ml-platform:alertingSecrets"] = {"oncall": "0123456789abcdef0123456789abcdef"}
    stack_file = tmp_path / "Pulumi.prod.yaml"
    stack_file.write_text(yaml.safe_dump(doc))
    with pytest.raises(SynthConfigError, match=r"ml-platform:alertingSecrets.oncall must be a secret: pulumi config set --secret --path"):
        read_stack_file(stack_file)

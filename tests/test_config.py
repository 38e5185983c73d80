"""Config validation: every bad input is one message naming the key, the value and what is allowed."""
from __future__ import annotations

import copy
import ipaddress
from pathlib import Path

import pytest
import yaml

from infra.config import ConfigError, NetworkConfig, parse, plan_subnets

ROOT = Path(__file__).resolve().parent.parent


SECRET_KEYS = {"ml-platform:alertingSecrets", "ml-platform:gitopsRepoTokens"}


def stack_raw(stack: str = "prod") -> dict:
    """The stack file's ml-platform config, with the receivers' credentials the operator would set as secrets."""
    doc = yaml.safe_load((ROOT / "stacks" / f"Pulumi.{stack}.yaml").read_text())["config"]
    raw = {k.split(":", 1)[1]: v for k, v in doc.items() if k.startswith("ml-platform:")}
    raw["region"] = doc["aws:region"]
    receivers = raw.get("alerting", {}).get("receivers", [])
    raw["alertingSecrets"] = {r["name"]: "0" * 32 if r["kind"] == "pagerduty" else "https://hooks.example/x" for r in receivers}
    private = [team for team, spec in raw.get("gitops", {}).get("teams", {}).items() if spec.get("private")]
    if private:
        raw["gitopsRepoTokens"] = {team: "0" * 40 for team in private}
    return raw


def parse_stack(raw: dict):
    return parse(raw, SECRET_KEYS)


def error_of(mutate, stack: str = "prod") -> str:
    """The configuration error of a stack's file changed by `mutate`."""
    raw = copy.deepcopy(stack_raw(stack))
    mutate(raw)
    return error_of_raw(raw)


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_shipped_stacks_are_valid(stack):
    cfg = parse_stack(stack_raw(stack))
    assert cfg.environment == stack


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda r: r["network"].update(cidr="10.0.0.0/33"), 'ml-platform:network.cidr: "10.0.0.0/33" is not allowed: expected an IPv4 CIDR'),
        (lambda r: r["network"].update(cidr="10.0.0.1/16"), 'ml-platform:network.cidr: "10.0.0.1/16" is not allowed'),
        (lambda r: r["network"].update(azCount=1), "ml-platform:network.azCount: 1 is not allowed: Input should be greater than or equal to 2"),
        (lambda r: r["network"].update(azCount=7), "ml-platform:network.azCount: 7 is not allowed: Input should be less than or equal to 6"),
        (lambda r: r["network"].update(natGateway="perAz"), "ml-platform:network.natGateway: unknown key"),
        (lambda r: r["network"].update(natGateways="two"), "ml-platform:network.natGateways: \"two\" is not allowed: Input should be 'single' or 'perAz'"),
        (lambda r: r["network"].update(cidr="10.0.0.0/18"), "ml-platform:network.cidr 10.0.0.0/18 is too small for 3 private /19 and 3 public /24 subnets"),
        (lambda r: r["network"].update(cidr="10.0.0.0/22"), "ml-platform:network.privateSubnetPrefix /19 must be longer than the VPC CIDR /22"),
        (lambda r: r["network"].update(cidr="172.20.0.0/16"), "ml-platform:cluster.serviceIpv4Cidr 172.20.0.0/16 overlaps network.cidr 172.20.0.0/16"),
        (lambda r: r["cluster"].update(kubernetesVersion="1.29"), "ml-platform:cluster.kubernetesVersion: \"1.29\" is not allowed: Input should be '1.32', '1.33', '1.34' or '1.35'"),
        (lambda r: r["cluster"].update(access={"adminRoleArns": []}), "ml-platform:cluster.access.adminRoleArns is empty and clusterCreatorAdmin is false"),
        (lambda r: r["cluster"]["access"].update(adminRoleArns=["platform-admin"]), "ml-platform:cluster.access.adminRoleArns[0]: \"platform-admin\" is not allowed"),
        (lambda r: r["cluster"].update(endpoint={"publicAccess": True}), "ml-platform:cluster.endpoint.publicAccess is on but publicAccessCidrs is empty"),
        (lambda r: r["cluster"].update(endpoint={"privateAccess": False}), "ml-platform:cluster.endpoint.privateAccess: false is not allowed"),
        (lambda r: r["cluster"].update(logRetentionDays=45), "ml-platform:cluster.logRetentionDays: 45 is not allowed"),
        (lambda r: r["cluster"].update(kubernetesVersion="1.33"), "ml-platform:cluster.addons.kubeProxy v1.35.0-eksbuild.2 is for Kubernetes 1.35 but kubernetesVersion is 1.33"),
        (lambda r: r["cluster"]["systemNodeGroup"].update(minSize=5), "ml-platform:cluster.systemNodeGroup.minSize <= desiredSize <= maxSize must hold, got 5, 3, 6"),
        (lambda r: r["cluster"].update(addons={"coredns": "latest"}), "ml-platform:cluster.addons.coredns: \"latest\" is not allowed"),
        (lambda r: r.update(tags={"owner": "x"}), "ml-platform:tags.costCenter: required key is missing"),
        (lambda r: r.update(clutser={}), "ml-platform:clutser: unknown key"),
    ],
)
def test_bad_config_names_the_key(mutate, expected):
    message = error_of(mutate)
    assert expected in message
    assert message.count("\n") == 1, f"one error, one line: {message}"


def test_every_error_is_reported_each_on_its_own_line():
    def two_mistakes(raw):
        raw["network"].update(azCount=9, natGateway="perAz")

    lines = error_of(two_mistakes).splitlines()[1:]
    assert [line.split(":")[1].strip().split(" ")[0] for line in lines] == ["network.azCount", "network.natGateway"]


@pytest.mark.parametrize("cidr, azs", [("10.0.0.0/16", 2), ("10.0.0.0/16", 3), ("10.0.0.0/16", 6), ("192.168.0.0/16", 4)])
def test_planned_subnets_are_disjoint_and_inside_the_vpc(cidr, azs):
    private, public = plan_subnets(NetworkConfig(cidr=cidr, azCount=azs))
    nets = [ipaddress.IPv4Network(n) for n in private + public]
    vpc = ipaddress.IPv4Network(cidr)
    assert len(private) == len(public) == azs
    assert all(n.subnet_of(vpc) for n in nets)
    assert not any(a.overlaps(b) for i, a in enumerate(nets) for b in nets[i + 1 :])
    assert {n.prefixlen for n in nets[:azs]} == {19} and {n.prefixlen for n in nets[azs:]} == {24}


def test_an_unknown_key_never_echoes_its_value():
    """A mistyped secret key (say alertWebhookUrl set with --secret) must not print the secret."""
    message = error_of(lambda r: r.update(alertWebhookUrl="https://hooks.example.com/services/T000/B000/s3cr3t"))
    assert "ml-platform:alertWebhookUrl: unknown key" in message
    assert "s3cr3t" not in message


def test_every_semantic_mistake_is_reported_in_one_report():
    """Cross-capability checks (quota, model stores, rollout, alerting) report all their problems together."""
    raw = stack_raw("staging")
    for mistake in (
        lambda: raw["teams"][0]["quota"].update(nvidiaGpus=1),
        lambda: raw["storage"].update(modelStores={}),
        lambda: raw["alertingSecrets"].pop(next(iter(raw["alertingSecrets"]))),
        lambda: raw["network"].update(cidr="172.20.0.0/16"),
    ):
        mistake()
    lines = error_of_raw(raw).splitlines()[1:]
    keys = [line.strip().split(" ")[0].removeprefix("ml-platform:") for line in lines]
    assert "cluster.serviceIpv4Cidr" in keys
    assert "teams[0].quota.nvidiaGpus" in keys
    assert any(k.startswith("workloads[") for k in keys), "the model-store problems name their workloads"
    assert "alertingSecrets" in keys
    assert all(line.startswith("  ml-platform:") for line in lines)


def test_accelerator_quota_is_summed_over_the_team():
    """Two workloads that each fit the team's GPU quota alone, but not side by side, are refused."""
    raw = stack_raw("staging")
    quota = raw["teams"][0]["quota"]["nvidiaGpus"]
    parse_stack(raw)  # the shipped stack fits
    raw["workloads"][2]["workers"] = quota - 1  # alone it fits; with the serving and fine-tuning pods it does not
    message = error_of_raw(raw)
    assert f"ml-platform:teams[0].quota.nvidiaGpus {quota} is below what team 'nlp' needs at most" in message
    assert f"workloads[2] (sentiment-ddp) {quota - 1} pods x 1 + llm.workloads[0] (assistant) 6 pods x 1 = " in message


def error_of_raw(raw: dict) -> str:
    with pytest.raises(ConfigError) as exc:
        parse_stack(raw)
    return str(exc.value)

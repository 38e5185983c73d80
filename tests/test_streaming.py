"""Streaming ingestion: the MSK cluster's access and placement, the teams' exact grants, bad input, the policy rule."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml

from components.streaming import resource_arn, team_policy
from infra.config import ConfigError
from tests.conftest import ROOT, Synth
from tests.test_config import parse_stack, stack_raw
from tests.test_policies import broken, violations

SERVERLESS = "aws:msk/serverlessCluster:ServerlessCluster"
PROVISIONED = "aws:msk/cluster:Cluster"
CLUSTER_ARN = "arn:aws:kafka:us-west-2:111122223333:cluster/ml-stream/abcd-1"


@pytest.fixture(scope="module")
def provisioned(tmp_path_factory) -> Synth:
    """staging with a provisioned cluster instead of Serverless."""
    from infra.synth import synthesize

    doc = yaml.safe_load((ROOT / "stacks" / "Pulumi.staging.yaml").read_text())
    doc["config"]["ml-platform:streaming"]["mode"] = "provisioned"
    path = Path(tmp_path_factory.mktemp("provisioned")) / "Pulumi.staging.yaml"
    path.write_text(yaml.safe_dump(doc))
    return Synth(synthesize("staging", path))


def test_staging_runs_serverless_with_iam_in_the_private_subnets(staging):
    msk = staging.one(SERVERLESS)["inputs"]
    assert msk["clientAuthentication"] == {"sasl": {"iam": {"enabled": True}}}
    private = {r["outputs"]["id"] for r in staging.of_type("aws:ec2/subnet:Subnet") if "private" in r["name"]}
    assert set(msk["vpcConfigs"][0]["subnetIds"]) == private and len(private) >= 2


def test_only_the_nodes_reach_the_brokers_on_the_iam_port(staging):
    group = staging.one("aws:ec2/securityGroup:SecurityGroup", "streaming-brokers")
    assert group["inputs"]["egress"] == [] and not group["inputs"].get("ingress")
    rule = staging.one("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule", "streaming-from-nodes")["inputs"]
    eks = staging.one("aws:eks/cluster:Cluster")["outputs"]
    assert rule["referencedSecurityGroupId"] == eks["vpcConfig"]["clusterSecurityGroupId"]
    assert (rule["fromPort"], rule["toPort"], rule["securityGroupId"]) == (9098, 9098, group["outputs"]["id"])
    assert "cidrIpv4" not in rule


def test_msk_is_created_beside_the_eks_cluster(staging):
    msk, eks = staging.one(SERVERLESS), staging.one("aws:eks/cluster:Cluster")
    assert not staging.depends_transitively(msk, eks)


def test_the_team_role_grants_exactly_its_topics_and_groups(staging):
    cluster_arn = staging.one(SERVERLESS)["outputs"]["arn"]
    policy = json.loads(staging.one("aws:iam/policy:Policy", "streaming-nlp")["inputs"]["policy"])
    by_sid = {s["Sid"]: s for s in policy["Statement"]}
    assert by_sid["Connect"]["Resource"] == cluster_arn
    assert by_sid["TeamTopics"]["Resource"] == [resource_arn(cluster_arn, "topic", "nlp.raw-text")]
    assert by_sid["TeamGroups"]["Resource"] == [resource_arn(cluster_arn, "group", "nlp.data-prep")]
    assert all(a.startswith("kafka-cluster:") and "*" not in a for s in policy["Statement"] for a in s["Action"])
    topic = staging.one("aws:msk/topic:Topic")["inputs"]
    assert (topic["name"], topic["partitionCount"], json.loads(topic["configs"])["retention.ms"]) == ("nlp.raw-text", 6, str(72 * 3600 * 1000))
    association = staging.one("aws:eks/podIdentityAssociation:PodIdentityAssociation", "streaming-nlp")["inputs"]
    assert (association["namespace"], association["serviceAccount"]) == ("nlp", "kafka-client")


def test_topic_and_group_arns_follow_the_msk_format():
    assert resource_arn(CLUSTER_ARN, "topic", "a.b") == "arn:aws:kafka:us-west-2:111122223333:topic/ml-stream/abcd-1/a.b"
    doc = json.loads(team_policy(CLUSTER_ARN, ["t.x"], []))
    assert [s["Sid"] for s in doc["Statement"]] == ["Connect", "TeamTopics"]


def test_a_provisioned_cluster_is_encrypted_logged_and_grows_its_storage(provisioned):
    msk = provisioned.one(PROVISIONED)["inputs"]
    assert msk["clientAuthentication"]["sasl"]["iam"] is True and msk["clientAuthentication"]["unauthenticated"] is False
    transit = msk["encryptionInfo"]["encryptionInTransit"]
    assert (transit["clientBroker"], transit["inCluster"]) == ("TLS", True)
    key = provisioned.one("aws:kms/key:Key", "streaming-data")
    assert msk["encryptionInfo"]["encryptionAtRestKmsKeyArn"] == key["outputs"]["arn"]
    assert "kafka.us-west-2.amazonaws.com" in key["inputs"]["policy"]
    logs = msk["loggingInfo"]["brokerLogs"]["cloudwatchLogs"]
    assert logs["enabled"] and logs["logGroup"] == "/ml-platform/ml-platform-staging/msk"
    assert msk["numberOfBrokerNodes"] == 3 and len(msk["brokerNodeGroupInfo"]["clientSubnets"]) == 3
    target = provisioned.one("aws:appautoscaling/target:Target")["inputs"]
    assert (target["scalableDimension"], target["maxCapacity"], target["resourceId"]) == ("kafka:broker-storage:VolumeSize", 1000, provisioned.one(PROVISIONED)["outputs"]["arn"])
    policy = provisioned.one("aws:appautoscaling/policy:Policy")["inputs"]["targetTrackingScalingPolicyConfiguration"]
    assert policy["predefinedMetricSpecification"]["predefinedMetricType"] == "KafkaBrokerStorageUtilization" and policy["disableScaleIn"] is True
    assert provisioned.result.mandatory_violations == []


def test_msk_is_in_the_cost_ceiling(staging, provisioned):
    assert staging.result.cost["fixed"]["msk-serverless"] == {"detail": "one cluster with 6 partition(s)", "hourlyUsd": pytest.approx(0.75 + 6 * 0.0015)}
    item = provisioned.result.cost["fixed"]["msk-cluster"]
    assert item["hourlyUsd"] == pytest.approx(3 * (0.204 + 1000 * 0.10 / 730), abs=1e-3)


def test_msk_has_a_typical_create_time(staging):
    assert SERVERLESS not in staging.result.critical_path["unknownTypes"]


def _streaming(mutate):
    raw = copy.deepcopy(stack_raw("staging"))
    mutate(raw["streaming"])
    with pytest.raises(ConfigError) as exc:
        parse_stack(raw)
    return str(exc.value)


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda s: s["teams"]["nlp"]["topics"][0].update(name="raw text"), 'ml-platform:streaming.teams.nlp.topics[0].name: "raw text" is not allowed'),
        (lambda s: s["teams"]["nlp"]["topics"][0].update(name=".."), "ml-platform:streaming.teams.nlp.topics[0].name: \"..\" is not allowed: '.' and '..' are not valid Kafka names"),
        (lambda s: s["teams"]["nlp"]["topics"][0].update(partitions=0), "ml-platform:streaming.teams.nlp.topics[0].partitions: 0 is not allowed"),
        (lambda s: s["teams"]["nlp"]["topics"][0].update(partitions=121), "ml-platform:streaming.teams.nlp.topics[0].partitions: 121 is not allowed"),
        (lambda s: s["teams"]["nlp"]["topics"][0].update(retentionHours=0), "ml-platform:streaming.teams.nlp.topics[0].retentionHours: 0 is not allowed"),
        (lambda s: s["teams"]["nlp"]["topics"][0].update(retentionHours=9000), "ml-platform:streaming.teams.nlp.topics[0].retentionHours: 9000 is not allowed"),
        (lambda s: s["teams"].update(vision=s["teams"]["nlp"]), "ml-platform:streaming.teams.vision: 'vision' is not one of the teams: ['nlp']"),
        (lambda s: s.update(enabled=False), "ml-platform:streaming.teams lists topics but streaming.enabled is false"),
        (lambda s: s.update(mode="kraft"), "ml-platform:streaming.mode: \"kraft\" is not allowed"),
        (lambda s: s.update(provisioned={"volumeGib": 500, "maxVolumeGib": 100}), "ml-platform:streaming.provisioned.maxVolumeGib 100 is below volumeGib 500"),
    ],
)
def test_bad_streaming_input_names_the_key(mutate, expected):
    assert expected in _streaming(mutate)


def test_the_synth_exits_2_on_a_bad_topic(tmp_path, capsys):
    from infra import synth

    text = (ROOT / "stacks" / "Pulumi.staging.yaml").read_text().replace("name: raw-text", "name: raw/text")
    (tmp_path / "Pulumi.staging.yaml").write_text(text)
    assert synth.main(["--stack", "staging", "--config", str(tmp_path / "Pulumi.staging.yaml"), "--out", str(tmp_path / "out")]) == 2
    assert 'ml-platform:streaming.teams.nlp.topics[0].name: "raw/text" is not allowed' in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "type_, mutate, expected",
    [
        (SERVERLESS, lambda p: p.update(clientAuthentication={"sasl": {"iam": {"enabled": False}}}), "does not enable IAM access control"),
        (PROVISIONED, lambda p: p["clientAuthentication"].update(unauthenticated=True), "allows unauthenticated clients"),
        (PROVISIONED, lambda p: p.pop("clientAuthentication"), "allows unauthenticated clients"),
        (PROVISIONED, lambda p: p["encryptionInfo"]["encryptionInTransit"].update(clientBroker="TLS_PLAINTEXT"), "accepts plaintext clients"),
        (PROVISIONED, lambda p: p["encryptionInfo"]["encryptionInTransit"].update(inCluster=False), "replicate in plaintext"),
    ],
)
def test_the_policy_refuses_open_or_plaintext_msk(provisioned, type_, mutate, expected):
    import tests.conftest as conftest

    stack = "staging"
    if type_ == PROVISIONED:
        conftest._cache["staging-provisioned"] = provisioned
        stack = "staging-provisioned"
    assert violations("msk-authenticated-encrypted", conftest.synth_of(stack).resources, "staging") == []
    found = violations("msk-authenticated-encrypted", broken(stack, type_, lambda r: mutate(r["inputs"])), "staging")
    assert found and all(v["enforcement"] == "mandatory" for v in found) and any(expected in v["message"] for v in found)


def test_brokers_spread_over_two_or_three_zones():
    from infra.config.streaming import broker_zones

    assert [broker_zones("us-east-1", n) for n in (2, 3, 6)] == [2, 3, 3]
    assert broker_zones("us-west-1", 3) == 2

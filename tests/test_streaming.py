"""Streaming ingestion: the MSK cluster's access and placement, the teams' exact grants, bad input, the policy rule."""
from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import pytest
import yaml

from components.streaming import resource_arn, team_policy
from infra.config import ConfigError
from tests.conftest import ROOT, Synth, lean
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
    lean(doc["config"])["ml-platform:streaming"]["mode"] = "provisioned"
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
        (lambda s: s["teams"]["nlp"]["dataPrep"].update(topic="clicks"), "dataPrep.topic 'clicks' is not one of the team's topics ['raw-text']"),
        (lambda s: s["teams"]["nlp"]["dataPrep"].update(consumerGroup="other"), "dataPrep.consumerGroup 'other' is not one of consumerGroups ['data-prep']"),
        (lambda s: s["teams"]["nlp"]["dataPrep"].update(maxReplicas=7), "dataPrep.maxReplicas 7 is over topic raw-text's 6 partitions"),
        (lambda s: s["teams"]["nlp"]["dataPrep"].update(minReplicas=4, maxReplicas=3), "dataPrep.minReplicas 4 is over maxReplicas 3"),
        (lambda s: s["teams"]["nlp"]["dataPrep"].update(image="data-prep:latest"), "ml-platform:streaming.teams.nlp.dataPrep.image"),
        (lambda s: s["teams"]["nlp"]["dataPrep"].update(outputClaim="model-store"),
         "ml-platform:streaming.teams.nlp.dataPrep.outputClaim 'model-store' is no data claim of the team's training workloads: "
         "['sentiment-ddp-data', 'sentiment-finetune-data']"),
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


# -- the data-prep consumer (examples/data-prep) -------------------------------------------------------------------
DATA_PREP = "streaming-nlp-data-prep"


def test_staging_runs_the_data_prep_consumer_as_the_teams_kafka_client(staging):
    deployment = staging.one("kubernetes:apps/v1:Deployment", DATA_PREP)
    assert deployment["inputs"]["metadata"]["namespace"] == "nlp"
    template = deployment["inputs"]["spec"]["template"]
    pod = template["spec"]
    assert pod["serviceAccountName"] == "kafka-client" and pod["nodeSelector"] == {"ml-platform.io/pool": "cpu"}
    [c] = pod["containers"]
    env = {e["name"]: e["value"] for e in c["env"]}
    assert env["TOPIC"] == "nlp.raw-text" and env["GROUP_ID"] == "nlp.data-prep"
    assert env["BOOTSTRAP_SERVERS"] == staging.result.outputs["streaming"]["bootstrapBrokers"]
    assert c["resources"]["limits"] == {"memory": c["resources"]["requests"]["memory"]}
    assert c["readinessProbe"]["httpGet"]["path"] == c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    # It writes where the fine-tuning job reads its data.
    claims = [v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"] if "persistentVolumeClaim" in v]
    assert claims == ["sentiment-finetune-data"]
    # The sidecar agent merges /metrics on the port the annotation names.
    assert template["metadata"]["annotations"]["prometheus.io/port"] == str(c["ports"][0]["containerPort"])
    # It starts after its topic, its credentials and the CPU pool exist; the deploy does not wait for its pods.
    for dep in (staging.one("aws:msk/topic:Topic"), staging.one("aws:eks/podIdentityAssociation:PodIdentityAssociation", "streaming-nlp"),
                staging.one("kubernetes:karpenter.sh/v1:NodePool", "karpenter-cpu-pool"), staging.one("kubernetes:core/v1:ServiceAccount", "streaming-nlp")):
        assert staging.depends_on(deployment, dep), dep["name"]
    assert deployment["inputs"]["metadata"]["annotations"] == {"pulumi.com/skipAwait": "true"}


def test_the_consumer_scales_on_its_lag_between_one_and_the_partitions_and_leaves_one_at_a_time(staging):
    hpa = staging.one("kubernetes:autoscaling/v2:HorizontalPodAutoscaler", DATA_PREP)
    spec = hpa["inputs"]["spec"]
    assert (spec["minReplicas"], spec["maxReplicas"]) == (1, 6)
    assert spec["metrics"] == [{"type": "Pods", "pods": {"metric": {"name": "kafka_consumer_lag"}, "target": {"type": "AverageValue", "averageValue": "5000"}}}]
    assert staging.depends_on(hpa, staging.release("prometheus-adapter"))
    pdb = staging.one("kubernetes:policy/v1:PodDisruptionBudget", DATA_PREP)["inputs"]["spec"]
    assert pdb == {"maxUnavailable": 1, "selector": {"matchLabels": {"app": "data-prep"}}}


def test_the_lag_the_example_exports_is_the_metric_the_adapter_serves(staging):
    import importlib.util

    spec = importlib.util.spec_from_file_location("dataprep_example", ROOT / "examples" / "data-prep" / "dataprep.py")
    example = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = example  # its dataclasses look their module up there
    spec.loader.exec_module(example)
    metrics = example.Metrics("nlp.data-prep")
    metrics.set_lag({("nlp.raw-text", 0): 3})
    [family] = [f for f in metrics.registry.collect() if f.name == "kafka_consumer_lag"]
    rules = staging.release("prometheus-adapter")["inputs"]["values"]["rules"]["custom"]
    [rule] = [r for r in rules if r["name"]["as"] == "kafka_consumer_lag"]
    assert rule["seriesQuery"].startswith(family.name + "{")


def test_kafka_clients_may_reach_the_brokers_and_the_pod_identity_agent(staging):
    policy = staging.one("kubernetes:networking.k8s.io/v1:NetworkPolicy", "streaming-nlp-kafka-egress")["inputs"]
    pod_labels = staging.one("kubernetes:apps/v1:Deployment", DATA_PREP)["inputs"]["spec"]["template"]["metadata"]["labels"]
    assert policy["metadata"]["namespace"] == "nlp"
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()
    to = {(rule["to"][0]["ipBlock"]["cidr"], rule["ports"][0]["port"]) for rule in policy["spec"]["egress"]}
    vpc = staging.one("aws:ec2/vpc:Vpc")["inputs"]["cidrBlock"]
    assert to == {(vpc, 9098), ("169.254.170.23/32", 80)}


def test_a_lag_dashboard_panel(staging):
    board = staging.one("kubernetes:core/v1:ConfigMap", "streaming-dashboard")["inputs"]
    assert board["metadata"]["labels"]["grafana_dashboard"] == "1"
    panels = json.loads(board["data"]["ml-streaming.json"])["panels"]
    assert any("kafka_consumer_lag" in p["targets"][0]["expr"] and "consumer_group" in p["targets"][0]["expr"] for p in panels)


def test_the_team_quota_leaves_room_for_the_consumers():
    from infra.lib import headroom
    from tests.test_config import parse_stack

    cfg = parse_stack(copy.deepcopy(stack_raw("staging")))
    [team] = [t for t in cfg.teams if t.name == "nlp"]
    without = copy.deepcopy(stack_raw("staging"))
    del without["streaming"]["teams"]["nlp"]["dataPrep"]
    base = headroom.outside_queue(parse_stack(without), team)
    # Six consumers and one rolling out, each 250m and 512Mi plus the sidecar's 100m and 128Mi.
    assert headroom.outside_queue(cfg, team)["cpu"] - base["cpu"] == 7 * 350
    assert headroom.outside_queue(cfg, team)["memory"] - base["memory"] == 7 * 640


def test_the_stack_outputs_name_the_brokers_and_each_teams_topics(staging, dev, prod):
    out = staging.result.outputs["streaming"]
    assert out["bootstrapBrokers"] == staging.one(SERVERLESS)["outputs"]["bootstrapBrokersSaslIam"]
    assert out["teams"] == {"nlp": {"namespace": "nlp", "topics": ["nlp.raw-text"], "consumerGroups": ["nlp.data-prep"], "serviceAccount": "kafka-client"}}
    # No MSK, no key (never a null).
    assert "streaming" not in dev.result.outputs and "streaming" not in prod.result.outputs

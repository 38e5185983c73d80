"""The ML layer's database and the operator that brings its credentials into the cluster: access, encryption,
protection per environment, the exact IAM grant, the graph's order, cost, and bad input."""
from __future__ import annotations

import copy
import json

import pytest

from components.secrets import reader_policy
from infra.config import ConfigError
from infra.lib.conventions import DATABASE_CLIENT_LABEL, DATABASE_SECRET_STORE
from infra.lib.upstream import crd_documents
from tests.schemas import validate
from tests.test_config import parse_stack, stack_raw

CLUSTER = "aws:rds/cluster:Cluster"
INSTANCE = "aws:rds/clusterInstance:ClusterInstance"


def test_aurora_is_private_encrypted_and_its_password_never_in_state(stack):
    db = stack.one(CLUSTER)
    inputs = db["inputs"]
    assert inputs["engine"] == "aurora-mysql" and inputs["engineMode"] == "provisioned"
    assert inputs["manageMasterUserPassword"] is True and "masterPassword" not in inputs
    assert inputs["storageEncrypted"] is True and inputs["kmsKeyId"].startswith("arn:aws:kms:")
    assert inputs["masterUserSecretKmsKeyId"]
    assert sorted(inputs["enabledCloudwatchLogsExports"]) == ["error", "slowquery"]
    for instance in stack.of_type(INSTANCE):
        assert instance["inputs"]["instanceClass"] == "db.serverless"
        assert instance["inputs"]["publiclyAccessible"] is False
    private = {r["outputs"]["id"] for r in stack.of_type("aws:ec2/subnet:Subnet") if "private" in r["name"]}
    assert set(stack.one("aws:rds/subnetGroup:SubnetGroup")["inputs"]["subnetIds"]) == private


def test_only_the_nodes_reach_mysql(stack):
    group = stack.one("aws:ec2/securityGroup:SecurityGroup", "database-clients")
    assert group["inputs"].get("ingress", []) == [] and group["inputs"]["egress"] == []
    rule = stack.one("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule", "database-from-nodes")["inputs"]
    eks = stack.one("aws:eks/cluster:Cluster")
    assert rule["referencedSecurityGroupId"] == eks["outputs"]["vpcConfig"]["clusterSecurityGroupId"]
    assert (rule["fromPort"], rule["toPort"], rule["ipProtocol"]) == (3306, 3306, "tcp")


def test_prod_keeps_its_database_and_dev_may_drop_it(prod, dev):
    kept = prod.one(CLUSTER)["inputs"]
    assert kept["deletionProtection"] is True and kept["skipFinalSnapshot"] is False
    # Named per cluster's life: a re-created cluster's final snapshot does not collide with the one its predecessor left.
    suffix = prod.one("random:index/randomId:RandomId")
    assert kept["finalSnapshotIdentifier"] == f"{kept['clusterIdentifier']}-final-{suffix['outputs']['hex']}"
    assert suffix["urn"] in prod.one(CLUSTER)["dependencies"] and not dev.of_type("random:index/randomId:RandomId")
    assert kept["backupRetentionPeriod"] == 14 and len(prod.of_type(INSTANCE)) == 2
    assert prod.one(CLUSTER)["urn"] in prod.result.protected
    assert dev.one(CLUSTER)["inputs"]["skipFinalSnapshot"] is True


def test_database_creation_runs_beside_the_control_plane(stack):
    eks = stack.one("aws:eks/cluster:Cluster")
    for resource in [stack.one(CLUSTER), *stack.of_type(INSTANCE)]:
        assert not stack.depends_transitively(resource, eks), resource["name"]


def test_the_operator_reads_the_master_secret_only():
    doc = json.loads(reader_policy(["arn:aws:secretsmanager:us-east-1:111122223333:secret:rds!cluster-1"], ["arn:aws:kms:us-east-1:111122223333:key/k"], "us-east-1"))
    read, decrypt = doc["Statement"]
    assert read["Resource"] == ["arn:aws:secretsmanager:us-east-1:111122223333:secret:rds!cluster-1"]
    assert sorted(read["Action"]) == ["secretsmanager:DescribeSecret", "secretsmanager:GetSecretValue"]
    assert decrypt["Condition"] == {"StringEquals": {"kms:ViaService": "secretsmanager.us-east-1.amazonaws.com"}}


def test_the_operator_policy_names_the_clusters_own_secret(stack):
    secret = stack.one(CLUSTER)["outputs"]["masterUserSecrets"][0]["secretArn"]
    policy = json.loads(stack.one("aws:iam/policy:Policy", "secret-sync")["inputs"]["policy"])
    assert policy["Statement"][0]["Resource"] == [secret]


def test_store_admits_labelled_namespaces_only_and_waits_for_the_operator(stack):
    store = stack.one("kubernetes:external-secrets.io/v1:ClusterSecretStore")
    validate({"apiVersion": "external-secrets.io/v1", "kind": "ClusterSecretStore", **store["inputs"]})
    assert store["inputs"]["metadata"]["name"] == DATABASE_SECRET_STORE
    assert store["inputs"]["spec"]["conditions"] == [{"namespaceSelector": {"matchLabels": {DATABASE_CLIENT_LABEL: "true"}}}]
    assert stack.depends_on(store, stack.release("external-secrets"))


def test_operator_crds_are_the_vendored_bundle_applied_before_the_release(stack):
    release = stack.release("external-secrets")
    bundle = stack.one("kubernetes:yaml/v2:ConfigFile", "secret-sync-crds")
    assert bundle["inputs"]["file"] == "schemas/crds/external-secrets/bundle.yaml" and stack.depends_on(release, bundle)
    # Each object the provider applies from it, with the cluster's provider, as the engine records them.
    crds = [r for r in stack.of_type("kubernetes:apiextensions.k8s.io/v1:CustomResourceDefinition") if r["parent"] == bundle["urn"]]
    assert {c["inputs"]["metadata"]["name"] for c in crds} == {d["metadata"]["name"] for d in crd_documents("external-secrets")}
    assert {c["provider"] for c in crds} == {release["provider"]}
    assert release["inputs"]["values"]["installCRDs"] is False


def test_aurora_is_in_the_ceiling_at_its_maximum_capacity(prod):
    assert prod.result.cost["fixed"]["aurora-database"]["hourlyUsd"] == pytest.approx(2 * 8 * 0.12)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda db: db.update(deletionProtection=False), "database.deletionProtection is false in prod"),
        (lambda db: db.update(skipFinalSnapshot=True), "database.skipFinalSnapshot is true in prod"),
        (lambda db: db.update(minCapacity=0.3), "0.3 is not a multiple of 0.5 ACU"),
        (lambda db: db.update(minCapacity=8, maxCapacity=4), "maxCapacity 4 is below 8"),
        (lambda db: db.update(maxCapacity=300), "database.maxCapacity"),
        (lambda db: db.update(instances=4), "database.instances"),
    ],
)
def test_bad_database_settings_name_the_key(mutate, message):
    raw = copy.deepcopy(stack_raw("prod"))
    mutate(raw["database"])
    with pytest.raises(ConfigError) as exc:
        parse_stack(raw)
    assert message in str(exc.value)

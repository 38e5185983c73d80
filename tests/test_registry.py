"""The model registry: one MLflow server per team on the general pool, its artifacts in an encrypted, versioned,
private, TLS-only bucket reached through the team's own Pod Identity role, only the team's namespace admitted; and
served models that name a registered version."""
from __future__ import annotations

import copy
import json

import pytest

from components.registry import allowed_hosts, database_name
from components.workloads import serving_pod_spec
from infra.config import ConfigError, MLFLOW_IMAGE
from tests.test_config import error_of_raw, parse_stack, stack_raw
from tests.test_policies import broken, unprotect, violations

REGISTRY = "urn:pulumi:{stack}::ml-platform::ml-platform:registry:Registry"


def teams_of(stack) -> list[str]:
    return sorted(stack.result.outputs["teams"])


def test_each_team_gets_its_server_and_its_tracking_uri(stack):
    m = stack.result.manifests
    for team in teams_of(stack):
        service = f"mlflow-{team}"
        assert m[f"deployment--mlflow--{service}.yaml"]["spec"]["template"]["metadata"]["labels"]["ml-platform.io/team"] == team
        assert m[f"service--mlflow--{service}.yaml"]["spec"]["ports"] == [{"name": "http", "port": 5000, "protocol": "TCP", "targetPort": "http"}]
        assert stack.result.outputs["teams"][team]["registry"] == {"trackingUri": f"http://{service}.mlflow.svc.cluster.local:5000"}


def test_the_artifact_bucket_is_encrypted_versioned_private_and_tls_only(stack):
    bucket = stack.one("aws:s3/bucket:Bucket", "registry-artifacts")
    key = stack.one("aws:kms/key:Key", "registry-artifacts")
    of = lambda t: stack.one(f"aws:s3/{t}", "registry-artifacts")["inputs"]  # noqa: E731
    assert all(of(r)["bucket"] == bucket["outputs"]["id"] for r in ("bucketVersioning:BucketVersioning", "bucketPolicy:BucketPolicy", "bucketPublicAccessBlock:BucketPublicAccessBlock"))
    sse = of("bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration")["rules"][0]
    assert sse["applyServerSideEncryptionByDefault"] == {"sseAlgorithm": "aws:kms", "kmsMasterKeyId": key["outputs"]["arn"]} and sse["bucketKeyEnabled"]
    assert key["inputs"]["enableKeyRotation"]
    assert of("bucketVersioning:BucketVersioning")["versioningConfiguration"]["status"] == "Enabled"
    block = of("bucketPublicAccessBlock:BucketPublicAccessBlock")
    assert all(block[k] for k in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets"))
    deny = json.loads(of("bucketPolicy:BucketPolicy")["policy"])["Statement"]
    assert deny == [{
        "Sid": "DenyInsecureTransport", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
        "Resource": [bucket["outputs"]["arn"], bucket["outputs"]["arn"] + "/*"], "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }]
    lifecycle = stack.one("aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration", "registry-artifacts")
    assert stack.depends_on(lifecycle, stack.one("aws:s3/bucketVersioning:BucketVersioning", "registry-artifacts"))


def test_each_server_reaches_only_its_teams_prefix_through_pod_identity(stack):
    bucket_arn = stack.one("aws:s3/bucket:Bucket", "registry-artifacts")["outputs"]["arn"]
    key_arn = stack.one("aws:kms/key:Key", "registry-artifacts")["outputs"]["arn"]
    for team in teams_of(stack):
        statements = {s["Sid"]: s for s in json.loads(stack.one("aws:iam/policy:Policy", f"registry-{team}")["inputs"]["policy"])["Statement"]}
        assert statements["TeamObjects"]["Resource"] == f"{bucket_arn}/{team}/*"
        assert statements["ListTeamPrefix"]["Condition"] == {"StringLike": {"s3:prefix": [f"{team}/*", team]}}
        assert statements["BucketKeyThroughS3"]["Resource"] == key_arn
        association = stack.one("aws:eks/podIdentityAssociation:PodIdentityAssociation", f"registry-{team}")["inputs"]
        assert (association["namespace"], association["serviceAccount"]) == ("mlflow", f"mlflow-{team}")
        assert association["roleArn"] == stack.one("aws:iam/role:Role", f"registry-{team}")["outputs"]["arn"]
        args = stack.result.manifests[f"deployment--mlflow--mlflow-{team}.yaml"]["spec"]["template"]["spec"]["containers"][0]["args"]
        destination = args[args.index("--artifacts-destination") + 1]
        assert destination == f"s3://{stack.one('aws:s3/bucket:Bucket', 'registry-artifacts')['outputs']['bucket']}/{team}"
        assert "--serve-artifacts" in args


def test_the_server_runs_restricted_on_the_general_pool_and_is_not_awaited(stack):
    for team in teams_of(stack):
        manifest = stack.result.manifests[f"deployment--mlflow--mlflow-{team}.yaml"]
        assert manifest["metadata"]["annotations"]["pulumi.com/skipAwait"] == "true"
        pod = manifest["spec"]["template"]["spec"]
        assert pod["nodeSelector"] == {"ml-platform.io/pool": "cpu"} and "tolerations" not in pod
        assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for container in pod["initContainers"] + pod["containers"]:
            assert container["image"] == MLFLOW_IMAGE
            r = container["resources"]
            assert set(r["limits"]) == {"memory"} and r["limits"]["memory"] == r["requests"]["memory"] and r["requests"]["cpu"]
            assert container["securityContext"] == {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}, "readOnlyRootFilesystem": True, "runAsNonRoot": True}
            env = {e["name"]: e for e in container["env"]}
            # The password reaches the pod from the synced secret only, never as a value in the spec.
            assert env["DB_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "mlflow-database", "key": "password"}
            assert env["MLFLOW_BACKEND_STORE_URI"]["value"].startswith("mysql+pymysql://$(DB_USERNAME):$(DB_PASSWORD)@$(DB_HOST):")
            assert env["DB_NAME"]["value"] == database_name(team)
        server = pod["containers"][0]
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert server[probe]["httpGet"]["path"] == "/health"
            # The server checks Host headers; the probe's is one it accepts.
            assert server[probe]["httpGet"]["httpHeaders"] == [{"name": "Host", "value": "localhost"}]
        assert "localhost:5000" in allowed_hosts(team).split(",") and f"mlflow-{team}.mlflow.svc.cluster.local:5000" in allowed_hosts(team).split(",")
        deployment = stack.one("kubernetes:apps/v1:Deployment", f"registry-{team}")
        assert stack.depends_on(deployment, stack.one("kubernetes:karpenter.sh/v1:NodePool", "karpenter-cpu-pool"))
        assert stack.depends_on(deployment, stack.release("istiod"))
        assert stack.depends_on(deployment, stack.one("aws:eks/podIdentityAssociation:PodIdentityAssociation", f"registry-{team}"))
        # The credentials are synced (and the database exists) before the servers start.
        assert stack.depends_on(deployment, stack.one("kubernetes:external-secrets.io/v1:ExternalSecret", "mlflow-mlflow-database"))
        assert all(stack.depends_on(deployment, i) for i in stack.of_type("aws:rds/clusterInstance:ClusterInstance"))


def test_the_database_credentials_reach_the_registry_namespace_only(stack):
    m = stack.result.manifests
    assert m["namespace--cluster--mlflow.yaml"]["metadata"]["labels"]["ml-platform.io/database-client"] == "true"
    external = m["externalsecret--mlflow--mlflow-database.yaml"]["spec"]
    assert external["target"]["name"] == "mlflow-database" and sorted(d["secretKey"] for d in external["data"]) == ["password", "username"]
    host = stack.one("aws:rds/cluster:Cluster")["outputs"]["endpoint"]
    for team in teams_of(stack):
        env = {e["name"]: e.get("value") for e in m[f"deployment--mlflow--mlflow-{team}.yaml"]["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert env["DB_HOST"] == host
        # No team namespace may read the master credentials.
        assert "ml-platform.io/database-client" not in m[f"namespace--cluster--{team}.yaml"]["metadata"]["labels"]


def test_only_the_teams_namespace_reaches_its_server(stack):
    m = stack.result.manifests
    assert m["namespace--cluster--mlflow.yaml"]["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for team in teams_of(stack):
        policy = m[f"authorizationpolicy--mlflow--mlflow-{team}.yaml"]["spec"]
        assert policy == {
            "selector": {"matchLabels": {"app.kubernetes.io/instance": f"mlflow-{team}"}},
            "action": "ALLOW",
            "rules": [{"from": [{"source": {"namespaces": [team]}}], "to": [{"operation": {"ports": ["5000"]}}]}],
        }
        egress = m[f"networkpolicy--{team}--allow-model-registry.yaml"]["spec"]["egress"][0]
        assert egress["to"][0]["podSelector"]["matchLabels"] == {"app.kubernetes.io/instance": f"mlflow-{team}"}
        assert egress["ports"] == [{"protocol": "TCP", "port": 5000}]
    assert "default-deny" in {k.split("--")[2][:-5] for k in m if k.startswith("networkpolicy--mlflow--")}


# -- served models that name a registered version ----------------------------------------------------------------------
def serving_raw(**changes) -> dict:
    raw = copy.deepcopy(stack_raw("staging"))
    raw["workloads"][0].update(changes)
    return raw


def test_a_registry_reference_is_fetched_into_the_pods_model_volume():
    raw = serving_raw(canary={"weight": 10, "stable": {"registry": {"model": "sentiment", "version": 3}}}, registry={"model": "sentiment", "alias": "canary", "sizeGib": 4})
    raw["workloads"][0].pop("model")
    w = parse_stack(raw).workloads[0]
    stable, canary = w.tracks()
    assert (stable.registry.uri, canary.registry.uri) == ("models:/sentiment/3", "models:/sentiment@canary")
    spec = serving_pod_spec(w, canary, w.name, registry_image=MLFLOW_IMAGE)
    fetch = spec.init_containers[0]
    assert fetch.image == MLFLOW_IMAGE
    assert fetch.command == ["mlflow", "artifacts", "download", "--artifact-uri", "models:/sentiment@canary", "--dst-path", "/models/sentiment/canary"]
    assert {"name": "MLFLOW_TRACKING_URI", "value": "http://mlflow-nlp.mlflow.svc.cluster.local:5000"} in [{"name": e.name, "value": e.value} for e in fetch.env]
    volume = next(v for v in spec.volumes if v.name == "registry-model")
    assert volume.empty_dir.size_limit == "4Gi"
    model = spec.containers[0]
    assert any(m.name == "registry-model" and m.read_only for m in model.volume_mounts)
    assert {"name": "MODEL_DIR", "value": "/models/sentiment/canary"} in [{"name": e.name, "value": e.value} for e in model.env]


def error_of(mutate) -> str:
    raw = serving_raw()
    mutate(raw["workloads"][0])
    return error_of_raw(raw)


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda w: w.update(registry={"model": "sentiment"}),
         "ml-platform:workloads[0].registry.version: registry model 'sentiment' needs exactly one of version (a number) or alias"),
        (lambda w: w.update(registry={"model": "sentiment", "version": 2, "alias": "canary"}), "needs exactly one of version (a number) or alias"),
        (lambda w: w.update(registry={"model": "sentiment", "alias": "latest"}), "'latest' is reserved by MLflow"),
        (lambda w: w.update(registry={"model": "sentiment", "version": 0}), "ml-platform:workloads[0].registry.version"),
        (lambda w: w.update(registry={"model": "sentiment", "version": 2}), "model (a store path) and registry (a registered version) both name what to serve; set one"),
        (lambda w: w["canary"]["stable"].update(model={"name": "m", "version": "1"}, registry={"model": "m", "version": 1}), "canary.stable: model and registry both name"),
    ],
)
def test_a_bad_registry_reference_is_one_clear_error(mutate, expected):
    assert expected in error_of(mutate)


def test_the_registry_needs_the_database():
    raw = serving_raw()
    raw["database"] = {"enabled": False}
    with pytest.raises(ConfigError) as exc:
        parse_stack(raw)
    assert "registry.enabled needs database.enabled" in str(exc.value)


def test_a_registry_reference_needs_the_registry():
    raw = serving_raw(registry={"model": "sentiment", "version": 2})
    raw["workloads"][0].pop("model")
    raw["registry"] = {"enabled": False}
    with pytest.raises(ConfigError) as exc:
        parse_stack(raw)
    assert "workloads[0].registry models:/sentiment/2: registry.enabled is false, so team 'nlp' has no registry to fetch it from" in str(exc.value)


def test_prod_keeps_the_artifact_bucket_through_a_destroy(prod, staging):
    bucket = prod.one("aws:s3/bucket:Bucket", "registry-artifacts")
    assert bucket["urn"] in prod.result.protected and bucket["inputs"]["forceDestroy"] is False
    # Unprotected (staging), a destroy empties the versioned bucket instead of failing on it.
    assert staging.one("aws:s3/bucket:Bucket", "registry-artifacts")["inputs"]["forceDestroy"] is True
    found = violations("stateful-storage-protected", broken("prod", "aws:s3/bucket:Bucket", unprotect))
    assert [v["message"] for v in found] == ["bucket is not protected; a destroy would delete it with the artifacts it holds"]

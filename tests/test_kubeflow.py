"""Kubeflow Pipelines: settings, the objects rendered from the vendored manifests, storage, access and isolation."""
from __future__ import annotations

import pytest

from tests.test_config import error_of


def _enable(raw: dict, **pipelines) -> None:
    raw["kubeflow"] = {"enabled": True, "pipelines": {"enabled": True, **pipelines}}


@pytest.mark.parametrize(
    "pipelines, expected",
    [
        ({}, "ml-platform:kubeflow.pipelines.artifacts is required when pipelines are enabled"),
        ({"artifacts": {"bucketName": "Bad_Name"}}, "ml-platform:kubeflow.pipelines.artifacts.bucketName: \"Bad_Name\" is not allowed: an S3 bucket name is 3 to 63"),
        ({"artifacts": {"bucketName": "a.b.c"}}, "bucketName: \"a.b.c\" is not allowed: use a bucket name without dots"),
        ({"artifacts": {"bucketName": "x-s3alias"}}, "does not end with '-s3alias'"),
        (
            {"artifacts": {"bucketName": "kfp-art"}, "teams": {"nlp": {"pipelineRoot": "s3://other/nlp/x"}}},
            "ml-platform:kubeflow.pipelines.teams.nlp.pipelineRoot 's3://other/nlp/x' is outside the team's prefix s3://kfp-art/nlp/",
        ),
        (
            {"artifacts": {"bucketName": "kfp-art"}, "teams": {"nlp": {"pipelineRoot": "s3://kfp-art/nlp/../cv/"}}},
            "teams.nlp.pipelineRoot 's3://kfp-art/nlp/../cv/' is outside the team's prefix",
        ),
        ({"artifacts": {"bucketName": "kfp-art"}, "teams": {"ghost": {}}}, "ml-platform:kubeflow.pipelines.teams.ghost: 'ghost' is not one of the teams"),
        ({"artifacts": {"bucketName": "kfp-art"}, "ui": {"mode": "oidc"}}, "ml-platform:kubeflow.pipelines.ui.issuer is required with mode oidc"),
        (
            {"artifacts": {"bucketName": "kfp-art"}, "ui": {"mode": "oidc", "issuer": "https://id.example"}},
            "ml-platform:kubeflow.pipelines.ui.audiences is required with mode oidc",
        ),
    ],
)
def test_bad_pipelines_settings_name_the_key(pipelines, expected):
    assert expected in error_of(lambda raw: _enable(raw, **pipelines))


def test_pipelines_need_the_database():
    def mutate(raw):
        _enable(raw, artifacts={"bucketName": "kfp-art"})
        raw["database"] = {**raw.get("database", {}), "enabled": False}
    assert "ml-platform:kubeflow.pipelines.enabled needs database.enabled" in error_of(mutate)


# --- the objects rendered from the vendored manifests ------------------------------------------------------------

import json  # noqa: E402

import yaml  # noqa: E402

from components import pipelines  # noqa: E402
from infra.offline.policy_check import check  # noqa: E402
from tests.iam_eval import decide  # noqa: E402

COMPONENT = "ml-platform:pipelines:Pipelines"
SETTINGS = pipelines.Settings(region="us-west-2", bucket="kfp-art", db_host="db.example", db_port=3306, gateway_principal="cluster.local/ns/gw/sa/gw")


def objects() -> list[dict]:
    return pipelines.platform_objects(SETTINGS)


def by_name(kind: str, name: str) -> dict:
    [found] = [o for o in objects() if o["kind"] == kind and o["metadata"]["name"] == name]
    return found


def test_the_vendored_manifests_are_the_pinned_release_and_parsed_once():
    assert pipelines.upstream_objects() is pipelines.upstream_objects()
    images = {c["image"] for o in pipelines.upstream_objects() if o["kind"] == "Deployment" for c in o["spec"]["template"]["spec"]["containers"]}
    assert "ghcr.io/kubeflow/kfp-api-server:2.17.0" in images and "quay.io/argoproj/workflow-controller:v4.0.5" in images


def test_only_the_in_cluster_database_object_store_profile_controller_and_v1_cache_are_left_out():
    left = {(o["kind"], o["metadata"]["name"]): pipelines.left_out(o) for o in pipelines.upstream_objects() if pipelines.left_out(o)}
    names = {n for _, n in left}
    assert {"mysql", "seaweedfs", "mlpipeline-minio-artifact", "metacontroller", "kubeflow-pipelines-profile-controller", "cache-server", "cache-deployer-deployment"} <= names
    kept = objects()
    assert len(kept) + len(left) == len(pipelines.upstream_objects())
    # Nothing kept points at what is left out: no MinIO keys, no in-cluster database or object store.
    text = json.dumps(kept, default=str)
    for gone in ("mlpipeline-minio-artifact", "seaweedfs.kubeflow", '"mysqlHost": "mysql"'):
        assert gone not in text, gone
    assert not [o for o in kept if o["kind"] in ("Secret", "PersistentVolumeClaim", "StatefulSet", "VirtualService", "DestinationRule")]


def test_servers_use_aurora_and_s3_through_pod_identity():
    config = by_name("ConfigMap", "pipeline-install-config")["data"]
    assert (config["mysqlHost"], config["mysqlPort"], config["bucketName"]) == ("db.example", "3306", "kfp-art")
    # Step containers run as a non-root user: the team namespaces enforce Pod Security restricted.
    assert config["defaultSecurityContextRunAsNonRoot"] == "true" and config["defaultSecurityContextRunAsUser"] == "1000"
    [api] = by_name("Deployment", "ml-pipeline")["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in api["env"]}
    assert env["OBJECTSTORECONFIG_HOST"] == "s3.us-west-2.amazonaws.com" and env["OBJECTSTORECONFIG_SECURE"] == "true"
    assert env["OBJECTSTORECONFIG_REGION"] == "us-west-2" and env["OBJECTSTORECONFIG_PIPELINEPATH"] == "_kfp/pipelines"
    assert not {"OBJECTSTORECONFIG_ACCESSKEY", "OBJECTSTORECONFIG_SECRETACCESSKEY", "OBJECTSTORECONFIG_PORT"} & set(env)
    # Every server reads the database credentials from the Secret the ExternalSecret keeps.
    refs = {e["valueFrom"]["secretKeyRef"]["name"] for o in objects() if o["kind"] == "Deployment"
            for c in o["spec"]["template"]["spec"]["containers"] for e in c.get("env", []) if "secretKeyRef" in (e.get("valueFrom") or {})}
    assert refs == {pipelines.DB_SECRET}


def test_argo_archives_logs_under_the_team_prefix_with_the_pods_own_credentials():
    data = by_name("ConfigMap", "workflow-controller-configmap")["data"]
    repo = yaml.safe_load(data["artifactRepository"])["s3"]
    assert repo["useSDKCreds"] is True and repo["insecure"] is False and repo["bucket"] == "kfp-art"
    assert repo["keyFormat"].startswith("{{workflow.namespace}}/") and "accessKeySecret" not in repo
    assert yaml.safe_load(data["metricsConfig"])["secure"] is False
    metric = yaml.safe_load(data["workflowDefaults"])["spec"]["metrics"]["prometheus"][0]
    assert metric["histogram"]["value"] == "{{workflow.duration}}"
    # The dashboard reads what the controller emits (argo_workflows_ + the metric's name).
    exprs = [t["expr"] for p in pipelines.dashboard()["panels"] for t in p["targets"]]
    assert any(f"argo_workflows_{metric['name']}_bucket" in e for e in exprs) and any("argo_workflows_gauge" in e for e in exprs)


def test_every_container_has_requests_and_a_memory_limit_equal_to_them():
    for o in objects():
        if o["kind"] != "Deployment":
            continue
        spec = o["spec"]["template"]["spec"]
        for c in spec["containers"] + spec.get("initContainers", []):
            res = c["resources"]
            assert res["limits"] == {"memory": res["requests"]["memory"]} and res["requests"]["cpu"], (o["metadata"]["name"], c["name"])
            assert ":" in c["image"] and not c["image"].endswith(":latest")


def test_the_ui_takes_the_user_header_only_from_the_platform_gateway():
    rules = by_name("AuthorizationPolicy", "ml-pipeline-ui")["spec"]["rules"]
    assert {"from": [{"source": {"principals": ["cluster.local/ns/gw/sa/gw"]}}]} in rules
    assert "istio-ingressgateway-service-account" not in json.dumps(rules)


def test_the_gateway_principal_is_the_gateway_charts_service_account(prod):
    [account] = [r for r in prod.result.rendered if r["type"] == "kubernetes:core/v1:ServiceAccount" and r["name"].startswith("istio-ingressgateway/")]
    ns, name = account["inputs"]["metadata"]["namespace"], account["inputs"]["metadata"]["name"]
    # Upstream's policies are security.istio.io/v1beta1.
    [policy] = [r for r in prod.of_type("kubernetes:security.istio.io/v1beta1:AuthorizationPolicy") if r["inputs"]["metadata"]["name"] == "ml-pipeline-ui"]
    assert {"from": [{"source": {"principals": [f"cluster.local/ns/{ns}/sa/{name}"]}}]} in policy["inputs"]["spec"]["rules"]


def _pipelines_resources(synth) -> list[dict]:
    """The component's objects: its own, and those its ConfigGroups apply."""
    component = next(r for r in synth.resources if r["type"] == COMPONENT)
    groups = {r["urn"] for r in synth.resources if r["parent"] == component["urn"] and r["type"] == "kubernetes:yaml/v2:ConfigGroup"}
    return [r for r in synth.resources if r["custom"] and (r["parent"] == component["urn"] or r["parent"] in groups)]


def test_every_upstream_object_is_its_own_resource_and_servers_wait_for_crds_database_and_capacity(prod):
    # Applied by ConfigGroups: each object is still its own resource, created after the group's dependencies.
    created = {(r["inputs"].get("kind") or r["type"].rsplit(":", 1)[1], r["inputs"]["metadata"]["name"], r["inputs"]["metadata"].get("namespace"))
               for r in _pipelines_resources(prod) if r["type"].startswith("kubernetes:")}
    for o in objects():
        assert (o["kind"], o["metadata"]["name"], o["metadata"].get("namespace")) in created, o["metadata"]["name"]
    crds = [r for r in _pipelines_resources(prod) if r["type"] == "kubernetes:apiextensions.k8s.io/v1:CustomResourceDefinition"]
    assert len(crds) == 10
    pool = prod.one("kubernetes:karpenter.sh/v1:NodePool", "karpenter-cpu-pool")
    deployments = [r for r in _pipelines_resources(prod) if r["type"] == "kubernetes:apps/v1:Deployment"]
    assert len(deployments) == 10
    for d in deployments:
        assert all(prod.depends_transitively(d, crd) for crd in crds) and prod.depends_transitively(d, pool), d["name"]
        assert not (d["inputs"]["spec"]["template"]["spec"].get("nodeSelector") or {}).get("ml-platform.io/role"), "not on the system nodes"
    # Only the servers that read the database wait for its credentials.
    [credentials] = [r for r in _pipelines_resources(prod) if r["type"].endswith(":ExternalSecret")]
    assert {d["inputs"]["metadata"]["name"] for d in deployments if prod.depends_transitively(d, credentials)} == {
        d["inputs"]["metadata"]["name"] for d in deployments if pipelines.needs_database(d["inputs"])}
    # CRDs wait for nothing but the provider: they are not serialised behind the namespace or the database.
    for crd in crds:
        assert not [u for u in crd["dependencies"] if u in prod.by_urn and prod.by_urn[u]["type"].startswith("kubernetes:core")]


def test_each_team_namespace_is_a_kfp_namespace_with_its_own_root_role_and_users(prod):
    cfg = prod.result.outputs
    root = cfg["teams"]["nlp"]["pipelines"]["pipelineRoot"]
    assert root == "s3://ml-platform-prod-pipelines-111122223333/nlp/runs"
    [launcher] = [r for r in prod.of_type("kubernetes:core/v1:ConfigMap") if r["inputs"]["metadata"] == {**r["inputs"]["metadata"], "name": "kfp-launcher", "namespace": "nlp"}]
    assert launcher["inputs"]["data"]["defaultPipelineRoot"] == root
    providers = yaml.safe_load(launcher["inputs"]["data"]["providers"])["s3"]["default"]
    assert providers["credentials"] == {"fromEnv": True} and providers["region"] == "us-east-1"
    [edit] = [r for r in prod.of_type("kubernetes:rbac.authorization.k8s.io/v1:RoleBinding") if r["inputs"]["metadata"]["name"] == "kubeflow-pipelines-edit"]
    assert edit["inputs"]["metadata"]["namespace"] == "nlp" and edit["inputs"]["roleRef"]["kind"] == "ClusterRole"
    assert {"kind": "User", "name": "nlp-lead@example.com", "apiGroup": "rbac.authorization.k8s.io"} in edit["inputs"]["subjects"]
    [association] = [r for r in prod.of_type("aws:eks/podIdentityAssociation:PodIdentityAssociation") if r["inputs"]["namespace"] == "nlp"
                     and r["inputs"]["serviceAccount"] == "default-editor"]
    assert association


def test_a_teams_role_reaches_only_its_own_prefix(prod):
    bucket = "arn:aws:s3:::ml-platform-prod-pipelines-111122223333"
    [policy] = [r for r in prod.of_type("aws:iam/policy:Policy") if r["name"] == "pipelines-nlp-runner"]
    doc = policy["inputs"]["policy"]
    assert decide(doc, "s3:PutObject", f"{bucket}/nlp/runs/x", {}) == "Allow"
    assert decide(doc, "s3:GetObject", f"{bucket}/other/runs/x", {}) == "ImplicitDeny"
    assert decide(doc, "s3:GetObject", f"{bucket}/_kfp/pipelines/x", {}) == "ImplicitDeny"
    assert decide(doc, "s3:ListBucket", bucket, {"s3:prefix": "nlp/runs/"}) == "Allow"
    assert decide(doc, "s3:ListBucket", bucket, {"s3:prefix": "other/"}) == "ImplicitDeny"
    assert decide(doc, "s3:ListBucket", bucket, {}) == "ImplicitDeny"


def test_the_bucket_is_private_encrypted_versioned_tls_only_and_expires_old_runs(prod):
    bucket = prod.one("aws:s3/bucket:Bucket", "pipelines-artifacts")
    assert bucket["inputs"]["forceDestroy"] is False
    block = prod.one("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock", "pipelines-artifacts")["inputs"]
    assert all(block[k] for k in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets"))
    [rule] = prod.one("aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration", "pipelines-artifacts")["inputs"]["rules"]
    assert rule["applyServerSideEncryptionByDefault"]["sseAlgorithm"] == "aws:kms" and rule["bucketKeyEnabled"]
    assert prod.one("aws:s3/bucketVersioning:BucketVersioning", "pipelines-artifacts")["inputs"]["versioningConfiguration"]["status"] == "Enabled"
    [life] = prod.one("aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration", "pipelines-artifacts")["inputs"]["rules"]
    assert life["expiration"]["days"] == 90 and life["noncurrentVersionExpiration"]["noncurrentDays"] == 30
    doc = prod.one("aws:s3/bucketPolicy:BucketPolicy", "pipelines-artifacts")["inputs"]["policy"]
    arn = "arn:aws:s3:::ml-platform-prod-pipelines-111122223333"
    assert decide(doc, "s3:GetObject", f"{arn}/nlp/x", {"aws:SecureTransport": "false"}) == "ExplicitDeny"
    assert decide(doc, "s3:GetObject", f"{arn}/nlp/x", {"aws:SecureTransport": "true"}) == "ImplicitDeny"


def test_the_ui_is_routed_only_with_a_token_from_the_configured_issuer(prod, dev):
    [route] = [r for r in prod.of_type("kubernetes:gateway.networking.k8s.io/v1:HTTPRoute") if r["inputs"]["metadata"]["name"] == "ml-pipeline-ui"]
    assert route["inputs"]["metadata"]["namespace"] == "kubeflow"
    assert route["inputs"]["spec"]["rules"][0]["backendRefs"] == [{"name": "ml-pipeline-ui", "port": 80}]
    [jwt] = prod.of_type("kubernetes:security.istio.io/v1:RequestAuthentication")
    [rule] = jwt["inputs"]["spec"]["jwtRules"]
    assert rule["issuer"] == "https://idp.example.com/realms/ml-platform" and rule["audiences"] == ["kubeflow-pipelines"]
    assert rule["outputClaimToHeaders"] == [{"header": "kubeflow-userid", "claim": "email"}]
    [deny] = [r for r in prod.of_type("kubernetes:security.istio.io/v1:AuthorizationPolicy") if r["inputs"]["metadata"]["name"] == "kubeflow-pipelines-require-jwt"]
    assert deny["inputs"]["spec"]["action"] == "DENY"
    assert {"source": {"notRequestPrincipals": ["*"]}} in deny["inputs"]["spec"]["rules"][0]["from"]
    assert jwt["inputs"]["spec"]["selector"] == deny["inputs"]["spec"]["selector"] == {"matchLabels": {"istio": "ingressgateway"}}
    # The route opens once the token is checked and required.
    assert prod.depends_on(route, jwt) and prod.depends_on(route, deny)
    assert prod.result.outputs["pipelines"]["endpoint"].endswith("/pipeline")
    # Port-forward only: nothing routed, no endpoint key.
    assert not [r for r in dev.of_type("kubernetes:gateway.networking.k8s.io/v1:HTTPRoute") if r["inputs"]["metadata"]["namespace"] == "kubeflow"]
    assert "endpoint" not in dev.result.outputs["pipelines"] and dev.result.outputs["pipelines"]["namespace"] == "kubeflow"


def test_the_servers_metrics_are_merged_into_the_sidecar_endpoint_the_platform_scrapes(prod):
    for name, port in pipelines.METRICS_PORTS.items():
        [d] = [r for r in _pipelines_resources(prod) if r["type"] == "kubernetes:apps/v1:Deployment" and r["inputs"]["metadata"]["name"] == name]
        annotations = d["inputs"]["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true" and annotations["prometheus.io/port"] == str(port)
    namespace = next(r for r in prod.of_type("kubernetes:core/v1:Namespace") if r["inputs"]["metadata"]["name"] == "kubeflow")
    assert namespace["inputs"]["metadata"]["labels"]["istio-injection"] == "enabled"
    [board] = [r for r in prod.of_type("kubernetes:core/v1:ConfigMap") if r["inputs"]["metadata"]["name"] == "dashboard-ml-pipelines"]
    assert board["inputs"]["metadata"]["labels"]["grafana_dashboard"] == "1"


def _record(type_: str, name: str, inputs: dict, deps: tuple[str, ...] = ()) -> dict:
    return {"urn": f"urn:pulumi:prod::ml-platform::{type_}::{name}", "type": type_, "name": name, "parent": None, "custom": True,
            "provider": None, "dependencies": list(deps), "property_dependencies": {}, "inputs": inputs, "outputs": inputs}


def _found(rule: str, records: list[dict], stack: str = "prod") -> list[str]:
    return [v["message"] for v in check(records, stack)["violations"] if v["policy"] == rule]


def test_databases_and_buckets_must_be_private_and_encrypted():
    bucket = _record("aws:s3/bucket:Bucket", "b", {"bucket": "b"})
    assert len(_found("data-stores-private-encrypted", [bucket])) == 2
    public = _record("aws:s3/bucketPolicy:BucketPolicy", "p", {"policy": json.dumps({"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": "*"}]})})
    assert _found("data-stores-private-encrypted", [public]) == ["bucket policy allows everyone without a condition"]
    cluster = _record("aws:rds/cluster:Cluster", "c", {"storageEncrypted": False, "deletionProtection": True})
    instance = _record("aws:rds/clusterInstance:ClusterInstance", "i", {"publiclyAccessible": True})
    assert sorted(_found("data-stores-private-encrypted", [cluster, instance])) == [
        "database instance has a public endpoint (publiclyAccessible)", "database storage is not encrypted (storageEncrypted)"]


def test_prod_refuses_a_database_without_deletion_protection():
    cluster = _record("aws:rds/cluster:Cluster", "c", {"storageEncrypted": True, "deletionProtection": False})
    for stack, level in (("prod", "mandatory"), ("staging", "advisory")):
        [v] = [v for v in check([cluster], stack)["violations"] if v["policy"] == "data-stores-deletion-protected"]
        assert v["enforcement"] == level
    assert not [v for v in check([cluster], "dev")["violations"] if v["policy"] == "data-stores-deletion-protected"]


def test_a_controller_keeps_its_api_token_only_with_a_stated_reason():
    deployment = {"metadata": {"name": "c", "namespace": "kubeflow"}, "spec": {"template": {"metadata": {}, "spec": {"containers": []}}}}
    record = _record("kubernetes:apps/v1:Deployment", "c", deployment)
    assert _found("service-account-token-not-mounted", [record]) == ["pod mounts a service account token"]
    deployment["spec"]["template"]["metadata"]["annotations"] = {"ml-platform.io/api-token-reason": "watches Workflows"}
    assert _found("service-account-token-not-mounted", [record]) == []
    # Every KFP server either has no token or says why it needs one.
    for o in objects():
        if o["kind"] == "Deployment":
            pod = o["spec"]["template"]
            assert pod["spec"].get("automountServiceAccountToken") is False or pod["metadata"]["annotations"].get("ml-platform.io/api-token-reason"), o["metadata"]["name"]


def test_servers_waiting_for_the_database_credentials_are_not_awaited_the_others_are(prod):
    # External Secrets writes the credentials Secret when it syncs, outside the graph's order.
    skipped = {(o["kind"], o["metadata"]["name"]) for o in objects() if (o["metadata"].get("annotations") or {}).get("pulumi.com/skipAwait") == "true"}
    assert skipped == {("Deployment", n) for n in ("ml-pipeline", "metadata-grpc-deployment", "metadata-writer", "ml-pipeline-persistenceagent",
                                                  "ml-pipeline-scheduledworkflow")} | {("Service", "ml-pipeline"), ("Service", "metadata-grpc-service")}
    [secret] = [r for r in prod.resources if r["type"] == "kubernetes:external-secrets.io/v1:ExternalSecret"
                and r["inputs"]["metadata"]["namespace"] == "kubeflow" and r["inputs"]["metadata"]["name"] == pipelines.DB_SECRET]
    assert secret["inputs"]["spec"]["target"]["name"] == pipelines.DB_SECRET
    for d in [r for r in _pipelines_resources(prod) if r["type"] == "kubernetes:apps/v1:Deployment"]:
        name = d["inputs"]["metadata"]["name"]
        assert prod.depends_on(d, secret) == (("Deployment", name) in skipped), name

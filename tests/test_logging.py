"""Centralized logs: Fluent Bit on every node, a log group per team, the OpenSearch domain, and its role mappings."""
from __future__ import annotations

import datetime
import http.server
import json
import re
import threading
import urllib.parse

import pytest
import yaml

from components.logging import BUFFER_DIR, NAMESPACE, SERVICE_ACCOUNT, log_group_names, retry_limit
from infra.lib import opensearch_security
from infra.config import LOG_RETENTION_DAYS
from tests.conftest import ROOT, STACKS, synth_of
from tests.iam_eval import decide
from tests.test_config import error_of, parse_stack, stack_raw


# The Fluent Bit the pinned chart ships (its appVersion), vendored for what the configuration relies on.
FLUENT_BIT_APP = next(e["version"] for e in yaml.safe_load((ROOT / "schemas/SOURCES.yaml").read_text()) if e.get("dependency-of") == "fluent-bit")


def sections(text: str) -> list[dict[str, str]]:
    """Fluent Bit's classic format: `[KIND]` then indented `key value` lines."""
    found: list[dict[str, str]] = []
    for line in text.splitlines():
        if re.fullmatch(r"\[[A-Z]+\]", line):
            found.append({"_kind": line[1:-1]})
        elif line.strip():
            assert line.startswith("    ") and found, f"not a key of a section: {line!r}"
            key, value = line.strip().split(None, 1)
            found[-1][key] = value
    return found


def fluent_bit(stack: str) -> dict:
    return synth_of(stack).release("fluent-bit")["inputs"]


def outputs_of(stack: str) -> list[dict[str, str]]:
    return sections(fluent_bit(stack)["values"]["config"]["outputs"])


def matches(output: dict[str, str], tag: str) -> bool:
    """How Fluent Bit routes a tag: `Match` is a wildcard pattern, `Match_Regex` a regular expression."""
    if "Match_Regex" in output:
        return re.search(output["Match_Regex"], tag) is not None
    return re.fullmatch(re.escape(output["Match"]).replace(r"\*", ".*"), tag) is not None


@pytest.mark.parametrize("stack", STACKS)
def test_every_record_reaches_exactly_one_log_group_of_its_namespace(stack):
    cfg = parse_stack(stack_raw(stack))
    groups = log_group_names(cfg.cluster_name, [t.name for t in cfg.teams])
    cloudwatch = [o for o in outputs_of(stack) if o["Name"] == "cloudwatch_logs"]
    rewrite = [f for f in sections(fluent_bit(stack)["values"]["config"]["filters"]) if f["Name"] == "rewrite_tag"]
    pattern = rewrite[0]["Rule"].split()[1] if rewrite else None

    def tag_of(namespace: str) -> str:
        # The rewrite_tag rule re-emits team records as team.<namespace>; the rest keep the tail input's tag.
        if pattern and re.search(pattern, namespace):
            return f"team.{namespace}"
        return f"kube.var.log.containers.pod-0_{namespace}_main-0123.log"

    for namespace in [*(t.name for t in cfg.teams), "kube-system", "monitoring", NAMESPACE]:
        reached = [o["log_group_name"] for o in cloudwatch if matches(o, tag_of(namespace))]
        assert reached == [groups.get(namespace, groups["platform"])], namespace
    assert [o["log_group_name"] for o in cloudwatch if matches(o, "host.kubelet.service")] == [groups["platform"]]


@pytest.mark.parametrize("stack", STACKS)
def test_log_groups_are_the_stacks_encrypted_with_the_logs_key_and_its_retention(stack):
    cfg = parse_stack(stack_raw(stack))
    s = synth_of(stack)
    key = s.one("aws:kms/key:Key", "encryption-logs")
    wanted = set(log_group_names(cfg.cluster_name, [t.name for t in cfg.teams]).values())
    groups = {r["inputs"]["name"]: r for r in s.of_type("aws:cloudwatch/logGroup:LogGroup") if r["inputs"]["name"] in wanted}
    assert set(groups) == wanted
    for group in groups.values():
        assert group["inputs"]["kmsKeyId"] == key["outputs"]["arn"]
        assert group["inputs"]["retentionInDays"] == cfg.logging.retention_days
    # Fluent Bit never creates groups: unencrypted ones with no retention would appear.
    assert {o["auto_create_group"] for o in outputs_of(stack) if o["Name"] == "cloudwatch_logs"} == {"Off"}


def shortest_retry_wait(base: int, cap: int, attempt: int) -> int:
    """The least Fluent Bit waits before a retry, from its scheduler's source: uniform(base, min(cap, base * 2^n)) + 1."""
    source = (ROOT / "schemas/upstream/fluent-bit" / FLUENT_BIT_APP / "src/flb_scheduler.c").read_text()
    jitter = source.split("static int backoff_full_jitter(", 1)[1].split("\n}", 1)[0]
    assert "temp = xmin(cap, base * ipow(2, n));" in jitter and "return random_uniform(base, temp);" in jitter
    assert "seconds += 1;" in source.split("int flb_sched_request_create(", 1)[1]
    return base + 1


@pytest.mark.parametrize("stack", STACKS)
def test_fluent_bit_runs_on_every_node_with_a_disk_buffer_and_bounded_retries(stack):
    cfg = parse_stack(stack_raw(stack))
    values = fluent_bit(stack)["values"]
    assert values["tolerations"] == [{"operator": "Exists"}]
    [service] = sections(values["config"]["service"])
    assert service["storage.path"] == BUFFER_DIR
    keys = (ROOT / "schemas/upstream/fluent-bit" / FLUENT_BIT_APP / "include/fluent-bit/flb_config.h").read_text()
    assert '"scheduler.base"' in keys and '"scheduler.cap"' in keys
    base, cap = int(service["scheduler.base"]), int(service["scheduler.cap"])
    assert all(i["storage.type"] == "filesystem" for i in sections(values["config"]["inputs"]))
    for output in outputs_of(stack):
        # A number: a chunk a sink refuses for good is given up on (and LogRecordsDropped fires), not retried forever.
        limit = int(output["Retry_Limit"])
        assert limit == retry_limit(cfg.logging)
        # Even at the shortest waits, the retries span the outage the disk buffer is sized for.
        assert sum(shortest_retry_wait(base, cap, n) for n in range(1, limit + 1)) >= cfg.logging.outage_tolerance_minutes * 60
        assert limit * (cap + 1) <= 12 * 3600
        assert output["storage.total_limit_size"] == f"{cfg.logging.buffer_mib}M"
    # The journal input reads the node's journal only with the node's machine-id beside it.
    assert {m["mountPath"] for m in values["daemonSetVolumeMounts"]} == {"/var/log", "/etc/machine-id", BUFFER_DIR.rsplit("/", 1)[0]}
    assert values["securityContext"]["capabilities"] == {"drop": ["ALL"]} and values["securityContext"]["allowPrivilegeEscalation"] is False


def test_the_buffer_holds_the_configured_outage_at_the_configured_rate():
    cfg = parse_stack(stack_raw("prod"))
    assert cfg.logging.outage_tolerance_minutes == 120
    assert cfg.logging.buffer_mib * 1024 >= 120 * 60 * cfg.logging.node_log_rate_kib_per_second


@pytest.mark.parametrize("stack", STACKS)
def test_fluent_bit_may_write_only_to_its_own_log_groups(stack):
    s = synth_of(stack)
    cfg = parse_stack(stack_raw(stack))
    association = s.one("aws:eks/podIdentityAssociation:PodIdentityAssociation", "logging-fluent-bit")
    assert (association["inputs"]["namespace"], association["inputs"]["serviceAccount"]) == (NAMESPACE, SERVICE_ACCOUNT)
    assert fluent_bit(stack)["values"]["serviceAccount"]["name"] == SERVICE_ACCOUNT
    policy = s.one("aws:iam/policy:Policy", "logging-fluent-bit")["inputs"]["policy"]
    arns = {r["inputs"]["name"]: r["outputs"]["arn"] for r in s.of_type("aws:cloudwatch/logGroup:LogGroup")}
    team_group = arns[log_group_names(cfg.cluster_name, [cfg.teams[0].name])[cfg.teams[0].name]]
    assert decide(policy, "logs:PutLogEvents", f"{team_group}:log-stream:node-a.b", {}) == "Allow"
    control_plane = next(arn for name, arn in arns.items() if name.startswith("/aws/eks/"))
    assert decide(policy, "logs:PutLogEvents", f"{control_plane}:log-stream:x", {}) == "ImplicitDeny"
    assert decide(policy, "logs:CreateLogGroup", f"{team_group}:*", {}) == "ImplicitDeny"


def test_prod_ships_to_an_opensearch_domain_hardened_as_the_issue_asks(prod):
    domain = prod.one("aws:opensearch/domain:Domain")["inputs"]
    cfg = parse_stack(stack_raw("prod"))
    key = prod.one("aws:kms/key:Key", "logging-search")
    assert domain["encryptAtRest"] == {"enabled": True, "kmsKeyId": key["outputs"]["arn"]}
    assert domain["nodeToNodeEncryption"] == {"enabled": True}
    assert domain["domainEndpointOptions"] == {"enforceHttps": True, "tlsSecurityPolicy": "Policy-Min-TLS-1-2-PFS-2023-10"}
    security = domain["advancedSecurityOptions"]
    assert security["enabled"] is True and security["internalUserDatabaseEnabled"] is False
    cluster = domain["clusterConfig"]
    assert cluster["zoneAwarenessEnabled"] and cluster["zoneAwarenessConfig"] == {"availabilityZoneCount": 3}
    assert cluster["dedicatedMasterEnabled"] and cluster["dedicatedMasterCount"] == 3
    subnets = domain["vpcOptions"]["subnetIds"]
    private = [r["outputs"]["id"] for r in prod.of_type("aws:ec2/subnet:Subnet") if "private" in r["name"]]
    assert len(set(subnets)) == 3 and set(subnets) <= set(private)
    group = prod.one("aws:ec2/securityGroup:SecurityGroup", "logging-search")["inputs"]
    assert [(r["fromPort"], r["toPort"], r["cidrBlocks"]) for r in group["ingress"]] == [(443, 443, [cfg.network.cidr])]
    assert {o["logType"] for o in domain["logPublishingOptions"]} == {"ES_APPLICATION_LOGS", "AUDIT_LOGS"}
    search = [o for o in outputs_of("prod") if o["Name"] == "opensearch"]
    assert len(search) == 1 and search[0]["Host"] == prod.one("aws:opensearch/domain:Domain")["outputs"]["endpoint"]
    assert search[0]["AWS_Auth"] == "On" and search[0]["tls"] == "On" and search[0]["Port"] == "443"


def test_only_fluent_bit_the_admin_role_and_the_mapping_job_reach_the_domain(prod):
    cfg = parse_stack(stack_raw("prod"))
    domain = prod.one("aws:opensearch/domain:Domain")
    policy = json.loads(prod.one("aws:opensearch/domainPolicy:DomainPolicy")["inputs"]["accessPolicies"])
    roles = {r["name"]: r["outputs"]["arn"] for r in prod.of_type("aws:iam/role:Role")}
    allowed = {roles["logging-fluent-bit"], roles["logging-search-security"], cfg.logging.open_search.admin_role_arn}
    [statement] = policy["Statement"]
    assert set(statement["Principal"]["AWS"]) == allowed
    assert statement["Resource"] == f"{domain['outputs']['arn']}/*"
    assert domain["inputs"]["advancedSecurityOptions"]["masterUserOptions"]["masterUserArn"] == roles["logging-search-security"]


def test_the_mapping_job_runs_after_the_domain_and_fluent_bit_only_waits_for_the_domain(prod):
    job = prod.one("kubernetes:batch/v1:Job", "logging-search-security")
    domain = prod.one("aws:opensearch/domain:Domain")
    # The domain refuses the master role until its access policy is in place.
    assert prod.depends_on(job, domain) and prod.depends_on(job, prod.one("aws:opensearch/domainPolicy:DomainPolicy"))
    # Refused writes are retried from the disk buffer: the release need not wait for the mappings (a shorter deploy).
    release = prod.release("fluent-bit")
    assert not prod.depends_transitively(release, job) and release["inputs"]["values"]["config"]["outputs"].count(domain["outputs"]["endpoint"]) == 1
    env = {e["name"]: e["value"] for e in job["inputs"]["spec"]["template"]["spec"]["containers"][0]["env"]}
    roles = {r["name"]: r["outputs"]["arn"] for r in prod.of_type("aws:iam/role:Role")}
    assert env["WRITER_ROLE_ARN"] == roles["logging-fluent-bit"]
    assert env["ADMIN_ROLE_ARNS"].split(",") == [roles["logging-search-security"], parse_stack(stack_raw("prod")).logging.open_search.admin_role_arn]


def test_dev_and_staging_ship_to_cloudwatch_only(dev, staging):
    for s in (dev, staging):
        assert s.of_type("aws:opensearch/domain:Domain") == []
        assert [o for o in outputs_of(s.result.outputs["environment"]) if o["Name"] == "opensearch"] == []
    assert synth_of("dev").result.outputs["logging"].keys().isdisjoint({"searchEndpoint", "dashboardsUrl"})


def test_logs_alert_when_records_are_dropped_or_retried(prod):
    rules = prod.one("kubernetes:monitoring.coreos.com/v1:PrometheusRule", "logging-alerts")["inputs"]["spec"]["groups"][0]["rules"]
    by_name = {r["alert"]: r for r in rules}
    assert "fluentbit_output_dropped_records_total" in by_name["LogRecordsDropped"]["expr"] and by_name["LogRecordsDropped"]["labels"]["severity"] == "critical"
    assert "fluentbit_output_retries_total" in by_name["LogOutputRetrying"]["expr"]


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda r: r["logging"].update(retentionDays=45), "ml-platform:logging.retentionDays: 45 is not allowed"),
        (lambda r: r["logging"]["openSearch"].update(zoneCount=1, instanceCount=1), "logging.openSearch.zoneCount 1 in prod"),
        (lambda r: r["network"].update(azCount=2), "logging.openSearch.zoneCount 3 exceeds the stack's 2 availability zones"),
        (lambda r: r["logging"]["openSearch"].pop("adminRoleArn"), "openSearch.adminRoleArn is required when openSearch.enabled"),
        (lambda r: r["logging"]["openSearch"].update(instanceCount=4), "openSearch.instanceCount 4 must be a multiple of zoneCount 3"),
    ],
)
def test_bad_logging_config_is_refused_naming_the_key(mutate, expected):
    assert expected in error_of(mutate)


def test_retention_accepts_exactly_cloudwatchs_values():
    for days in (LOG_RETENTION_DAYS[0], LOG_RETENTION_DAYS[-1]):
        raw = stack_raw("dev")
        raw.setdefault("logging", {})["retentionDays"] = days
        assert parse_stack(raw).logging.retention_days == days


# The role-mapping script, against botocore's signer and a loopback server standing in for the domain.


CREDENTIALS = {"access_key": "AKIDEXAMPLE", "secret_key": "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "token": "session-token"}


def botocore_authorization(method: str, url: str, body: bytes, headers: dict[str, str], now: datetime.datetime) -> str:
    from unittest import mock

    import botocore.auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    request = AWSRequest(method=method, url=url, data=body, headers={k: v for k, v in headers.items() if k in ("content-type", "host")})
    signer = botocore.auth.SigV4Auth(Credentials(CREDENTIALS["access_key"], CREDENTIALS["secret_key"], CREDENTIALS["token"]), "es", "us-east-1")
    with mock.patch.object(botocore.auth, "get_current_datetime", lambda: now.replace(tzinfo=None)):
        signer.add_auth(request)
    return request.headers["Authorization"]


@pytest.mark.parametrize(
    "method, path, body",
    [
        ("PUT", "/_plugins/_security/api/rolesmapping/all_access", b'{"backend_roles": []}'),
        ("GET", "/_plugins/_security/api/rolesmapping/all_access", b""),
        ("PATCH", "/_plugins/_security/api/rolesmapping/all_access", b'[{"op": "add", "path": "/backend_roles/-", "value": "x"}]'),
        ("PUT", "/_plugins/_ism/policies/ml-platform-retention?if_seq_no=7&if_primary_term=1", b"{}"),
        ("POST", "/_plugins/_ism/add/ml-platform-*", b'{"policy_id": "p"}'),
    ],
)
def test_the_signature_is_the_one_botocore_computes(method, path, body):
    now = datetime.datetime(2026, 11, 30, 12, 0, 0, tzinfo=datetime.timezone.utc)
    url = f"https://vpc-logs-abc.us-east-1.es.amazonaws.com{path}"
    headers = opensearch_security.signed_headers(method, url, body, "us-east-1", CREDENTIALS, now)
    assert headers["authorization"] == botocore_authorization(method, url, body, headers, now)


# OpenSearch's own OpenAPI description of the calls the Job makes (vendored); the index template API lives in its
# indices namespace (232 kB, not vendored).
API = {
    name: yaml.safe_load((ROOT / "schemas/upstream/opensearch-api-specification/main/spec/namespaces" / f"{name}.yaml").read_text())["paths"]
    for name in ("security", "ism")
}
NOT_VENDORED = {"/_index_template/{name}": {"put"}}


def documented(method: str, path: str) -> bool:
    for paths in [*API.values(), NOT_VENDORED]:
        for template, operations in paths.items():
            pattern = re.sub(r"\\\{\w+\\\}", "[^/]+", re.escape(template))
            if re.fullmatch(pattern, path) and method.lower() in operations:
                return True
    return False


def apply_patch(document: dict, operations: list[dict]) -> dict:
    """RFC 6902 `add`, which is all the Job may send: a member is set, `-` appends to an array."""
    for op in operations:
        assert op["op"] == "add", op
        *parents, last = op["path"].lstrip("/").split("/")
        target = document
        for key in parents:
            target = target[key]
        if isinstance(target, list):
            target.append(op["value"]) if last == "-" else target.insert(int(last), op["value"])
        else:
            target[last] = op["value"]
    return document


class FakeDomain(http.server.BaseHTTPRequestHandler):
    """A domain with fine-grained access control as the Job sees it: role mappings (with what AWS and an operator
    put there), the ISM policy store with its optimistic concurrency, SigV4 checked against botocore."""

    state: dict = {}
    calls: list = []

    def _answer(self, status: int, body: dict | None = None) -> None:
        data = json.dumps(body or {}).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _handle(self, method: str) -> None:
        if self.path == "/credentials":  # the Pod Identity agent
            ok = self.headers["Authorization"] == "agent-token"
            return self._answer(200 if ok else 403, {"AccessKeyId": CREDENTIALS["access_key"], "SecretAccessKey": CREDENTIALS["secret_key"], "Token": CREDENTIALS["token"]})
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        now = datetime.datetime.strptime(self.headers["x-amz-date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.timezone.utc)
        url = f"http://{self.headers['Host']}{self.path}"
        signed = self.headers["Authorization"] == botocore_authorization(method, url, body, {"content-type": self.headers["Content-Type"], "host": self.headers["Host"]}, now)
        path, _, query = self.path.partition("?")
        assert signed and documented(method, path), (method, self.path)
        payload = json.loads(body) if body else None
        self.calls.append((method, self.path, payload))
        mappings, policies = self.state["rolesmapping"], self.state["policies"]
        if m := re.fullmatch(r"/_plugins/_security/api/rolesmapping/(\w+)", path):
            role = m[1]
            if method == "GET":
                return self._answer(200, {role: mappings[role]}) if role in mappings else self._answer(404, {"status": "NOT_FOUND"})
            if method == "PUT":
                mappings[role] = payload
            else:
                if role not in mappings:
                    return self._answer(404)
                apply_patch(mappings[role], payload)
            return self._answer(200, {"status": "OK"})
        if m := re.fullmatch(r"/_plugins/_ism/policies/([\w-]+)", path):
            name, current = m[1], policies.get(m[1])
            if method == "GET":
                return self._answer(200, current) if current else self._answer(404)
            params = dict(urllib.parse.parse_qsl(query))
            if current and params != {"if_seq_no": str(current["_seq_no"]), "if_primary_term": str(current["_primary_term"])}:
                return self._answer(409, {"error": "version_conflict_engine_exception"})
            stored = json.loads(json.dumps(payload["policy"]))
            for t in stored["ism_template"]:
                t["last_updated_time"] = 1764000000000
            policies[name] = {"_id": name, "_seq_no": (current or {"_seq_no": -1})["_seq_no"] + 1, "_primary_term": 1,
                              "policy": {"policy_id": name, "last_updated_time": 1764000000000, "schema_version": 21, **stored}}
            return self._answer(201 if not current else 200, policies[name])
        if path.startswith("/_plugins/_security/api/roles/"):
            self.state.setdefault("roles", {})[path.rsplit("/", 1)[1]] = payload
            return self._answer(200, {"status": "OK"})
        if path.startswith("/_index_template/"):
            self.state["templates"][path.rsplit("/", 1)[1]] = payload
            return self._answer(200, {"acknowledged": True})
        if path.startswith("/_plugins/_ism/add/"):
            return self._answer(200, {"updated_indices": 0, "failures": False, "failed_indices": []})
        self._answer(400)

    def do_GET(self):
        self._handle("GET")

    def do_PUT(self):
        self._handle("PUT")

    def do_PATCH(self):
        self._handle("PATCH")

    def do_POST(self):
        self._handle("POST")

    def log_message(self, *args):
        pass


WRITER = "arn:aws:iam::123456789012:role/fluent-bit"
ADMINS = ["arn:aws:iam::123456789012:role/security", "arn:aws:iam::123456789012:role/admin"]
OPERATOR = "arn:aws:iam::123456789012:role/on-call-readers"


def run_job(tmp_path, monkeypatch, state: dict, retention_days: int = 14) -> list:
    FakeDomain.state, FakeDomain.calls = state, []
    server = http.server.HTTPServer(("127.0.0.1", 0), FakeDomain)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}"
    (tmp_path / "token").write_text("agent-token\n")
    for key, value in {
        "DOMAIN_URL": base,
        "AWS_REGION": "us-east-1",
        "WRITER_ROLE_ARN": WRITER,
        "ADMIN_ROLE_ARNS": ",".join(ADMINS),
        "INDEX_PREFIX": "ml-platform",
        "RETENTION_DAYS": str(retention_days),
        "REPLICAS": "1",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI": f"{base}/credentials",
        "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE": str(tmp_path / "token"),
    }.items():
        monkeypatch.setenv(key, value)
    try:
        opensearch_security.main()
    finally:
        server.shutdown()
        server.server_close()
    return FakeDomain.calls


def test_the_job_adds_its_role_mappings_and_keeps_the_operators(tmp_path, monkeypatch):
    """A domain as AWS creates it (the master role in all_access) where an operator has added a reader's role and a
    user: the Job adds what the platform needs and removes nothing, and a second run changes nothing."""
    master = "arn:aws:iam::123456789012:role/security"
    state = {
        "rolesmapping": {
            "all_access": {"backend_roles": [master, OPERATOR], "hosts": [], "users": ["alice"], "reserved": False},
            "security_manager": {"backend_roles": [master], "hosts": [], "users": [], "reserved": False},
            "readall": {"backend_roles": [OPERATOR], "hosts": [], "users": []},
        },
        "policies": {},
        "templates": {},
    }
    calls = run_job(tmp_path, monkeypatch, state)
    mappings = state["rolesmapping"]
    assert mappings["all_access"] == {"backend_roles": [master, OPERATOR, ADMINS[1]], "hosts": [], "users": ["alice"], "reserved": False}
    assert mappings["security_manager"]["backend_roles"] == ADMINS
    assert mappings[opensearch_security.WRITER_ROLE] == {"backend_roles": [WRITER]}
    assert mappings["readall"] == {"backend_roles": [OPERATOR], "hosts": [], "users": []}
    # Shared mappings are patched, never written whole.
    assert not [c for c in calls if c[0] == "PUT" and c[1].endswith(("/all_access", "/security_manager"))]
    before = json.loads(json.dumps(state))
    again = run_job(tmp_path, monkeypatch, state)
    assert state == before
    assert [(m, p) for m, p, _ in again if m in ("PATCH", "PUT") and "rolesmapping" in p or "_ism/policies" in p and m == "PUT"] == []


def test_the_job_installs_the_template_and_the_retention_policy(tmp_path, monkeypatch):
    state = {"rolesmapping": {}, "policies": {}, "templates": {}}
    run_job(tmp_path, monkeypatch, state)
    [template] = state["templates"].values()
    assert template["index_patterns"] == ["ml-platform-*"]
    properties = template["template"]["mappings"]["properties"]
    assert properties[opensearch_security.APP_KEY] == {"type": "flat_object"}
    assert template["template"]["settings"]["index"]["number_of_replicas"] == 1
    [policy] = state["policies"].values()
    states = {s["name"]: s for s in policy["policy"]["states"]}
    assert states["hot"]["transitions"] == [{"state_name": "delete", "conditions": {"min_index_age": "14d"}}]
    assert states["delete"]["actions"] == [{"delete": {}}]
    assert [t["index_patterns"] for t in policy["policy"]["ism_template"]] == [["ml-platform-*"]]


def test_a_changed_retention_replaces_the_policy_at_the_version_read(tmp_path, monkeypatch):
    state = {"rolesmapping": {}, "policies": {}, "templates": {}}
    run_job(tmp_path, monkeypatch, state)
    calls = run_job(tmp_path, monkeypatch, state, retention_days=30)
    [policy] = state["policies"].values()
    assert policy["_seq_no"] == 1
    assert policy["policy"]["states"][0]["transitions"][0]["conditions"] == {"min_index_age": "30d"}
    assert [p for m, p, _ in calls if m == "PUT" and "_ism" in p] == ["/_plugins/_ism/policies/ml-platform-retention?if_seq_no=0&if_primary_term=1"]


@pytest.mark.parametrize(
    "current, patch",
    [
        (None, None),
        ({"backend_roles": ["a"], "users": ["u"]}, [{"op": "add", "path": "/backend_roles/-", "value": "b"}]),
        ({"users": ["u"]}, [{"op": "add", "path": "/backend_roles", "value": ["a", "b"]}]),
        ({"backend_roles": ["b", "a"]}, []),
    ],
)
def test_a_mapping_gets_only_what_it_lacks(current, patch):
    assert opensearch_security.mapping_patch(current, ["a", "b"]) == patch


def test_the_index_prefix_fluent_bit_writes_is_the_one_the_writer_role_may_write(prod):
    [search] = [o for o in outputs_of("prod") if o["Name"] == "opensearch"]
    pattern = opensearch_security.writer_role(search["Logstash_Prefix"])["index_permissions"][0]["index_patterns"][0]
    # Logstash_Format names daily indices <prefix>-YYYY.MM.DD; the template and the retention policy cover them.
    index = f"{search['Logstash_Prefix']}-2026.11.30"
    assert re.fullmatch(pattern.replace("*", ".*"), index)
    for patterns in (opensearch_security.index_template(search["Logstash_Prefix"], 1)["index_patterns"],
                     opensearch_security.retention_policy(search["Logstash_Prefix"], 14)["policy"]["ism_template"][0]["index_patterns"]):
        assert [p for p in patterns if re.fullmatch(p.replace("*", ".*"), index)]


def test_app_fields_are_nested_under_the_key_the_template_maps(prod):
    """Fluent Bit's kubernetes filter puts the parsed line under Merge_Log_Key (an option of the pinned version's
    filter); the template maps that key as one flat_object, so apps' fields never collide."""
    source = (ROOT / "schemas/upstream/fluent-bit" / FLUENT_BIT_APP / "plugins/filter_kubernetes/kubernetes.c").read_text()
    assert '"merge_log_key"' in source
    [kubernetes] = [f for f in sections(fluent_bit("prod")["values"]["config"]["filters"]) if f["Name"] == "kubernetes"]
    assert kubernetes["Merge_Log"] == "On" and kubernetes["Merge_Log_Key"] == opensearch_security.APP_KEY
    mapping = opensearch_security.index_template("ml-platform", 1)["template"]["mappings"]["properties"]
    assert mapping[kubernetes["Merge_Log_Key"]] == {"type": "flat_object"}


def test_the_job_is_told_the_retention_and_replicas_of_the_domain(prod):
    cfg = parse_stack(stack_raw("prod"))
    job = prod.one("kubernetes:batch/v1:Job", "logging-search-security")
    env = {e["name"]: e["value"] for e in job["inputs"]["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["RETENTION_DAYS"] == str(cfg.logging.open_search.retention_days)
    assert env["REPLICAS"] == "1" and cfg.logging.open_search.instance_count > 1


def test_a_refusal_while_the_access_policy_propagates_is_retried(monkeypatch):
    """403 until the domain's access policy admits the master role, then 200; a 404 is an answer; any other 4xx is final."""
    import io
    import urllib.error

    answers = [403, 200]

    class Response(io.BytesIO):
        status = 200

    def urlopen(request, timeout):
        code = answers.pop(0)
        if code != 200:
            raise urllib.error.HTTPError(request.full_url, code, "Forbidden", {}, io.BytesIO(b"{}"))
        return Response(b"{}")

    monkeypatch.setattr(opensearch_security.urllib.request, "urlopen", urlopen)
    monkeypatch.setattr(opensearch_security.time, "sleep", lambda seconds: None)
    lines: list[str] = []
    assert opensearch_security.request("PUT", "https://domain/_plugins/_security/api/rolesmapping/x", {}, "us-east-1", lambda: CREDENTIALS, lines.append) == (200, {})
    assert answers == [] and "403, retry 1/" in lines[0] and lines[1].endswith(": 200")
    answers[:] = [404]
    assert opensearch_security.request("GET", "https://domain/x", None, "us-east-1", lambda: CREDENTIALS, lines.append) == (404, {})
    answers[:] = [400]
    with pytest.raises(SystemExit, match="400"):
        opensearch_security.request("PUT", "https://domain/x", {}, "us-east-1", lambda: CREDENTIALS, lines.append)

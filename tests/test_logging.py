"""Centralized logs: Fluent Bit on every node, a log group per team, the OpenSearch domain, and its role mappings."""
from __future__ import annotations

import datetime
import http.server
import json
import re
import threading

import pytest

from components.logging import BUFFER_DIR, NAMESPACE, SERVICE_ACCOUNT, log_group_names
from infra.lib import opensearch_security
from infra.config import LOG_RETENTION_DAYS
from tests.conftest import STACKS, synth_of
from tests.iam_eval import decide
from tests.test_config import error_of, parse_stack, stack_raw


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


@pytest.mark.parametrize("stack", STACKS)
def test_fluent_bit_runs_on_every_node_with_a_disk_buffer_and_unlimited_retries(stack):
    cfg = parse_stack(stack_raw(stack))
    values = fluent_bit(stack)["values"]
    assert values["tolerations"] == [{"operator": "Exists"}]
    assert sections(values["config"]["service"])[0]["storage.path"] == BUFFER_DIR
    assert all(i["storage.type"] == "filesystem" for i in sections(values["config"]["inputs"]))
    for output in outputs_of(stack):
        assert output["Retry_Limit"] == "False"
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


def test_the_signature_is_the_one_botocore_computes():
    now = datetime.datetime(2026, 11, 30, 12, 0, 0, tzinfo=datetime.timezone.utc)
    url, body = "https://vpc-logs-abc.us-east-1.es.amazonaws.com/_plugins/_security/api/rolesmapping/all_access", b'{"backend_roles": []}'
    headers = opensearch_security.signed_headers("PUT", url, body, "us-east-1", CREDENTIALS, now)
    assert headers["authorization"] == botocore_authorization("PUT", url, body, headers, now)


def test_the_job_maps_the_roles_through_signed_puts(tmp_path, monkeypatch):
    received: list[tuple[str, dict, bool]] = []

    class Domain(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # the Pod Identity agent
            ok = self.headers["Authorization"] == "agent-token"
            body = json.dumps({"AccessKeyId": CREDENTIALS["access_key"], "SecretAccessKey": CREDENTIALS["secret_key"], "Token": CREDENTIALS["token"]})
            self.send_response(200 if ok else 403)
            self.end_headers()
            self.wfile.write(body.encode())

        def do_PUT(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            now = datetime.datetime.strptime(self.headers["x-amz-date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.timezone.utc)
            url = f"http://{self.headers['Host']}{self.path}"
            signed = self.headers["Authorization"] == botocore_authorization("PUT", url, body, {"content-type": self.headers["Content-Type"], "host": self.headers["Host"]}, now)
            received.append((self.path, json.loads(body), signed))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Domain)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}"
    (tmp_path / "token").write_text("agent-token\n")
    for key, value in {
        "DOMAIN_URL": base,
        "AWS_REGION": "us-east-1",
        "WRITER_ROLE_ARN": "arn:aws:iam::123456789012:role/fluent-bit",
        "ADMIN_ROLE_ARNS": "arn:aws:iam::123456789012:role/security,arn:aws:iam::123456789012:role/admin",
        "INDEX_PREFIX": "ml-platform",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI": f"{base}/credentials",
        "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE": str(tmp_path / "token"),
    }.items():
        monkeypatch.setenv(key, value)
    try:
        opensearch_security.main()
    finally:
        server.shutdown()
    assert all(signed for _, _, signed in received)
    by_path = {path: body for path, body, _ in received}
    writer = opensearch_security.WRITER_ROLE
    assert by_path[f"/_plugins/_security/api/rolesmapping/{writer}"] == {"backend_roles": ["arn:aws:iam::123456789012:role/fluent-bit"]}
    assert by_path[f"/_plugins/_security/api/roles/{writer}"]["index_permissions"][0]["index_patterns"] == ["ml-platform-*"]
    admins = ["arn:aws:iam::123456789012:role/security", "arn:aws:iam::123456789012:role/admin"]
    assert by_path["/_plugins/_security/api/rolesmapping/all_access"] == {"backend_roles": admins}
    assert by_path["/_plugins/_security/api/rolesmapping/security_manager"] == {"backend_roles": admins}


def test_the_index_prefix_fluent_bit_writes_is_the_one_the_writer_role_may_write(prod):
    [search] = [o for o in outputs_of("prod") if o["Name"] == "opensearch"]
    documents = dict(opensearch_security.security_documents("w", ["a"], search["Logstash_Prefix"]))
    pattern = documents[f"/_plugins/_security/api/roles/{opensearch_security.WRITER_ROLE}"]["index_permissions"][0]["index_patterns"][0]
    # Logstash_Format names daily indices <prefix>-YYYY.MM.DD.
    assert re.fullmatch(pattern.replace("*", ".*"), f"{search['Logstash_Prefix']}-2026.11.30")


def test_a_refusal_while_the_access_policy_propagates_is_retried(monkeypatch):
    """403 until the domain's access policy admits the master role, then 200; any other 4xx is final."""
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
    opensearch_security.put("https://domain/_plugins/_security/api/rolesmapping/x", {}, "us-east-1", lambda: CREDENTIALS, lines.append)
    assert answers == [] and "403, retry 1/" in lines[0] and lines[1].endswith(": 200")
    answers[:] = [400]
    with pytest.raises(SystemExit, match="400"):
        opensearch_security.put("https://domain/x", {}, "us-east-1", lambda: CREDENTIALS, lines.append)

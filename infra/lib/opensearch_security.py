"""Maps IAM roles to OpenSearch roles on a domain with fine-grained access control, as its master role.

Runs in-cluster as a Job (see components/logging.py) with only Python's standard library, so the image is a
plain pinned Python. AWS has no control-plane API for these mappings: without them the domain refuses every
write from Fluent Bit. The Job also installs the log indices' template and their retention (ISM) policy. Role
mappings are shared with operators: the Job adds the backend roles the platform needs and removes nothing; every
step reads first, so a re-run converges and changes nothing.

Environment: DOMAIN_URL (https://<endpoint>), AWS_REGION, WRITER_ROLE_ARN, ADMIN_ROLE_ARNS (comma-separated),
INDEX_PREFIX, RETENTION_DAYS, REPLICAS; credentials from EKS Pod Identity (AWS_CONTAINER_CREDENTIALS_FULL_URI and
AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE, which the Pod Identity webhook sets).
"""
from __future__ import annotations

import datetime
import hashlib
import hmac
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Callable

WRITER_ROLE = "ml_platform_log_writer"
# Where Fluent Bit nests each app's parsed JSON log line (components/logging.py, Merge_Log_Key).
APP_KEY = "app"
RETRIES = 8
# The longest the retries of one PUT wait in all (exponential backoff, capped at 30 s).
RETRY_SECONDS = sum(min(30, 2**attempt) for attempt in range(1, RETRIES + 1))


def pod_identity_credentials() -> dict[str, str]:
    with open(os.environ["AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"]) as f:
        token = f.read().strip()
    request = urllib.request.Request(os.environ["AWS_CONTAINER_CREDENTIALS_FULL_URI"], headers={"Authorization": token})
    with urllib.request.urlopen(request, timeout=10) as response:
        body = json.load(response)
    return {"access_key": body["AccessKeyId"], "secret_key": body["SecretAccessKey"], "token": body["Token"]}


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode(), hashlib.sha256).digest()


def signed_headers(method: str, url: str, body: bytes, region: str, credentials: dict[str, str], now: datetime.datetime) -> dict[str, str]:
    """AWS Signature Version 4 for the `es` service."""
    parsed = urllib.parse.urlsplit(url)
    amz_date, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    payload_hash = hashlib.sha256(body).hexdigest()
    headers = {"host": parsed.netloc, "x-amz-date": amz_date, "x-amz-security-token": credentials["token"], "content-type": "application/json"}
    names = ";".join(sorted(headers))
    canonical = "\n".join([
        method,
        urllib.parse.quote(parsed.path or "/", safe="/-_.~"),
        "&".join(
            f"{urllib.parse.quote(k, safe='-_.~')}={urllib.parse.quote(v, safe='-_.~')}"
            for k, v in sorted(urllib.parse.parse_qsl(parsed.query, keep_blank_values=True))
        ),
        "".join(f"{k}:{headers[k]}\n" for k in sorted(headers)),
        names,
        payload_hash,
    ])
    scope = f"{day}/{region}/es/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = _hmac(_hmac(_hmac(_hmac(f"AWS4{credentials['secret_key']}".encode(), day), region), "es"), "aws4_request")
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    authorization = f"AWS4-HMAC-SHA256 Credential={credentials['access_key']}/{scope}, SignedHeaders={names}, Signature={signature}"
    return {**headers, "authorization": authorization}


def writer_role(index_prefix: str) -> dict[str, Any]:
    """Fluent Bit's role: bulk writes into the log indices, which it creates daily. The role is the platform's own,
    so the Job writes it whole."""
    return {
        "cluster_permissions": ["cluster_monitor", "cluster_composite_ops"],
        "index_permissions": [{"index_patterns": [f"{index_prefix}-*"], "allowed_actions": ["crud", "create_index"]}],
    }


def wanted_mappings(writer_role_arn: str, admin_role_arns: list[str]) -> dict[str, list[str]]:
    """Backend roles the platform needs in each role mapping. Mappings are shared with operators: these are added,
    never written over (an operator's own backend roles, users and hosts stay)."""
    return {WRITER_ROLE: [writer_role_arn], "all_access": admin_role_arns, "security_manager": admin_role_arns}


def mapping_patch(current: dict[str, Any] | None, wanted: list[str]) -> list[dict[str, Any]] | None:
    """The JSON Patch (RFC 6902) that adds what is missing to an existing mapping: [] when nothing is, None when the
    mapping does not exist (it is created instead)."""
    if current is None:
        return None
    if "backend_roles" not in current:
        return [{"op": "add", "path": "/backend_roles", "value": list(wanted)}]
    return [{"op": "add", "path": "/backend_roles/-", "value": arn} for arn in wanted if arn not in current["backend_roles"]]


def index_template(index_prefix: str, replicas: int) -> dict[str, Any]:
    """Every daily log index: each app's parsed JSON is one flat_object field under APP_KEY (no per-app mapping, so no
    type conflict between apps and no field explosion), as are the pods' labels and annotations."""
    return {
        "index_patterns": [f"{index_prefix}-*"],
        "priority": 100,
        "template": {
            "settings": {"index": {"number_of_replicas": replicas}},
            "mappings": {
                "properties": {
                    "@timestamp": {"type": "date"},
                    "log": {"type": "text"},
                    "stream": {"type": "keyword"},
                    APP_KEY: {"type": "flat_object"},
                    "kubernetes": {
                        "properties": {
                            "namespace_name": {"type": "keyword"},
                            "pod_name": {"type": "keyword"},
                            "container_name": {"type": "keyword"},
                            "host": {"type": "keyword"},
                            "labels": {"type": "flat_object"},
                            "annotations": {"type": "flat_object"},
                        }
                    },
                }
            },
        },
    }


def retention_policy(index_prefix: str, retention_days: int) -> dict[str, Any]:
    """ISM: every log index is deleted `retention_days` after it was created; new indices get the policy on creation."""
    return {
        "policy": {
            "description": f"Deletes {index_prefix}-* log indices {retention_days} days after creation",
            "default_state": "hot",
            "states": [
                {"name": "hot", "actions": [], "transitions": [{"state_name": "delete", "conditions": {"min_index_age": f"{retention_days}d"}}]},
                {"name": "delete", "actions": [{"delete": {}}], "transitions": []},
            ],
            "ism_template": [{"index_patterns": [f"{index_prefix}-*"], "priority": 100}],
        }
    }


def _same_policy(current: dict[str, Any], wanted: dict[str, Any]) -> bool:
    """The stored policy carries fields of its own (ids, timestamps): compare what the platform sets."""
    strip = lambda templates: [{k: v for k, v in t.items() if k != "last_updated_time"} for t in templates or []]  # noqa: E731
    return all(
        (strip(current.get(k)) == strip(v)) if k == "ism_template" else current.get(k) == v
        for k, v in wanted["policy"].items()
    )


Call = Callable[[str, str, Any], tuple[int, Any]]


def converge(call: Call, writer_role_arn: str, admin_role_arns: list[str], index_prefix: str, retention_days: int, replicas: int,
             log: Callable[[str], None]) -> None:
    """Brings the domain to what the platform needs, changing nothing else; a second run changes nothing."""
    call("PUT", f"/_plugins/_security/api/roles/{WRITER_ROLE}", writer_role(index_prefix))
    for role, arns in wanted_mappings(writer_role_arn, admin_role_arns).items():
        path = f"/_plugins/_security/api/rolesmapping/{role}"
        status, body = call("GET", path, None)
        patch = mapping_patch(body.get(role) if status == 200 else None, arns)
        if patch is None:
            call("PUT", path, {"backend_roles": arns})
        elif patch:
            call("PATCH", path, patch)
        else:
            log(f"{path}: already maps {', '.join(arns)}")
    call("PUT", f"/_index_template/{index_prefix}", index_template(index_prefix, replicas))
    policy, path = retention_policy(index_prefix, retention_days), f"/_plugins/_ism/policies/{index_prefix}-retention"
    status, body = call("GET", path, None)
    if status == 404:
        call("PUT", path, policy)
    elif not _same_policy(body.get("policy", {}), policy):
        # An existing policy is replaced only at the version read (optimistic concurrency).
        call("PUT", f"{path}?if_seq_no={body['_seq_no']}&if_primary_term={body['_primary_term']}", policy)
    else:
        log(f"{path}: unchanged")
    # Indices created before the policy existed (Fluent Bit does not wait for this Job) get it too; indices that
    # already have one are reported as failures and keep theirs.
    call("POST", f"/_plugins/_ism/add/{index_prefix}-*", {"policy_id": f"{index_prefix}-retention"})


def request(method: str, url: str, body: Any, region: str, credentials: Callable[[], dict[str, str]], log: Callable[[str], None]) -> tuple[int, Any]:
    """One signed call, retried while the domain settles. Returns (status, parsed body); a 404 is an answer."""
    data = b"" if body is None else json.dumps(body).encode()
    path = urllib.parse.urlsplit(url).path
    for attempt in range(1, RETRIES + 1):
        headers = signed_headers(method, url, data, region, credentials(), datetime.datetime.now(datetime.timezone.utc))
        try:
            req = urllib.request.Request(url, data=data if body is not None else None, headers=headers, method=method)
            with urllib.request.urlopen(req, timeout=30) as response:
                log(f"{method} {path}: {response.status}")
                return response.status, json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                log(f"{method} {path}: 404")
                return 404, json.loads(exc.read() or b"{}")
            # 403 while the domain's access policy propagates, 429 throttling, 5xx the domain settling: retried.
            # Any other 4xx is a mistake no retry fixes.
            if exc.code < 500 and exc.code not in (403, 429):
                raise SystemExit(f"{method} {url}: {exc.code} {exc.read().decode(errors='replace')}")
            reason = f"{exc.code}"
        except urllib.error.URLError as exc:
            reason = str(exc.reason)
        log(f"{method} {path}: {reason}, retry {attempt}/{RETRIES}")
        time.sleep(min(30, 2**attempt))
    raise SystemExit(f"{method} {url}: gave up after {RETRIES} attempts")


def main() -> None:
    base = os.environ["DOMAIN_URL"].rstrip("/")
    region = os.environ["AWS_REGION"]
    admins = [a for a in os.environ["ADMIN_ROLE_ARNS"].split(",") if a]
    log = lambda line: print(line, flush=True)  # noqa: E731
    call: Call = lambda method, path, body: request(method, base + path, body, region, pod_identity_credentials, log)  # noqa: E731
    converge(
        call, os.environ["WRITER_ROLE_ARN"], admins, os.environ["INDEX_PREFIX"], int(os.environ["RETENTION_DAYS"]), int(os.environ["REPLICAS"]), log
    )
    log("role mappings, index template and retention policy in place")


if __name__ == "__main__":
    sys.exit(main())

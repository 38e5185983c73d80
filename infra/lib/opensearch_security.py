"""Maps IAM roles to OpenSearch roles on a domain with fine-grained access control, as its master role.

Runs in-cluster as a Job (see components/logging.py) with only Python's standard library, so the image is a
plain pinned Python. AWS has no control-plane API for these mappings: without them the domain refuses every
write from Fluent Bit. Every call is an idempotent PUT, so a re-run converges.

Environment: DOMAIN_URL (https://<endpoint>), AWS_REGION, WRITER_ROLE_ARN, ADMIN_ROLE_ARNS (comma-separated),
INDEX_PREFIX; credentials from EKS Pod Identity (AWS_CONTAINER_CREDENTIALS_FULL_URI and
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
        parsed.query,
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


def security_documents(writer_role_arn: str, admin_role_arns: list[str], index_prefix: str) -> list[tuple[str, dict[str, Any]]]:
    """(path, body) of each PUT: a write-only role for Fluent Bit's indices and the admins' full access."""
    return [
        (
            f"/_plugins/_security/api/roles/{WRITER_ROLE}",
            {
                "cluster_permissions": ["cluster_monitor", "cluster_composite_ops", "indices:admin/template/*"],
                "index_permissions": [{"index_patterns": [f"{index_prefix}-*"], "allowed_actions": ["crud", "create_index"]}],
            },
        ),
        (f"/_plugins/_security/api/rolesmapping/{WRITER_ROLE}", {"backend_roles": [writer_role_arn]}),
        (f"/_plugins/_security/api/rolesmapping/all_access", {"backend_roles": admin_role_arns}),
        (f"/_plugins/_security/api/rolesmapping/security_manager", {"backend_roles": admin_role_arns}),
    ]


def put(url: str, body: dict[str, Any], region: str, credentials: Callable[[], dict[str, str]], log: Callable[[str], None]) -> None:
    data = json.dumps(body).encode()
    for attempt in range(1, RETRIES + 1):
        headers = signed_headers("PUT", url, data, region, credentials(), datetime.datetime.now(datetime.timezone.utc))
        try:
            with urllib.request.urlopen(urllib.request.Request(url, data=data, headers=headers, method="PUT"), timeout=30) as response:
                log(f"PUT {urllib.parse.urlsplit(url).path}: {response.status}")
                return
        except urllib.error.HTTPError as exc:
            # 403 while the domain's access policy propagates, 429 throttling, 5xx the domain settling: retried.
            # Any other 4xx is a mistake no retry fixes.
            if exc.code < 500 and exc.code not in (403, 429):
                raise SystemExit(f"PUT {url}: {exc.code} {exc.read().decode(errors='replace')}")
            reason = f"{exc.code}"
        except urllib.error.URLError as exc:
            reason = str(exc.reason)
        log(f"PUT {urllib.parse.urlsplit(url).path}: {reason}, retry {attempt}/{RETRIES}")
        time.sleep(min(30, 2**attempt))
    raise SystemExit(f"PUT {url}: gave up after {RETRIES} attempts")


def main() -> None:
    base = os.environ["DOMAIN_URL"].rstrip("/")
    admins = [a for a in os.environ["ADMIN_ROLE_ARNS"].split(",") if a]
    log = lambda line: print(line, flush=True)  # noqa: E731
    for path, body in security_documents(os.environ["WRITER_ROLE_ARN"], admins, os.environ["INDEX_PREFIX"]):
        put(base + path, body, os.environ["AWS_REGION"], pod_identity_credentials, log)
    log("role mappings in place")


if __name__ == "__main__":
    sys.exit(main())

"""checkov over every stack: Terraform checks on the AWS resources (as a plan), Kubernetes checks on the manifests.

Only the findings documented in policies/checkov-exceptions.yaml may remain, and each documented one must
still occur, so the list never outlives its reasons.
"""
from __future__ import annotations

import fnmatch
import json
import os
import subprocess

import pytest
import yaml

from tests.conftest import ROOT, STACKS, synth_of
from tests.tfplan import plan

CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"
EXCEPTIONS = yaml.safe_load((ROOT / "policies" / "checkov-exceptions.yaml").read_text())
FRAMEWORKS = {"terraform_plan": "terraform", "kubernetes": "kubernetes"}


@pytest.fixture(scope="module")
def findings(tmp_path_factory) -> list[dict]:
    assert CHECKOV.exists(), "checkov has its own virtualenv: run ./setup"
    root = tmp_path_factory.mktemp("checkov")
    checked: set[str] = set()
    for stack in STACKS:
        result = synth_of(stack).result
        (root / f"{stack}.tfplan.json").write_text(json.dumps(plan(result.resources)))
        manifests = root / stack
        manifests.mkdir()
        for name, body in result.manifests.items():
            text = json.dumps(body, sort_keys=True)
            # No checkov Kubernetes check reads a CRD (they are most of the bytes), and an object the same in several
            # stacks is checked once: its findings name the object, not the stack.
            if body.get("kind") == "CustomResourceDefinition" or text in checked:
                continue
            checked.add(text)
            (manifests / f"{name.removesuffix('.yaml')}.json").write_text(text)
    # Offline: no guideline download, no update check.
    env = {**os.environ, "BC_SKIP_MAPPING": "TRUE", "CKV_SKIP_PACKAGE_UPDATE_CHECK": "true"}
    proc = subprocess.run(
        [str(CHECKOV), "-d", str(root), "--framework", *FRAMEWORKS, "--skip-download", "--quiet", "--compact", "-o", "json"],
        cwd=root, env=env, capture_output=True, text=True, timeout=300,
    )
    reports = json.loads(proc.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    assert {r["check_type"] for r in reports} == set(FRAMEWORKS), proc.stderr[-2000:]
    assert all(r["summary"]["parsing_errors"] == 0 for r in reports)
    return [
        {"framework": FRAMEWORKS[r["check_type"]], "check": f["check_id"], "resource": f["resource"], "file": f["file_path"], "name": f["check_name"]}
        for r in reports
        for f in r["results"]["failed_checks"]
    ]


def _exception_for(finding: dict):
    entry = EXCEPTIONS[finding["framework"]].get(finding["check"])
    if entry and any(fnmatch.fnmatchcase(finding["resource"], pattern) for pattern in entry["resources"]):
        return entry
    return None


def test_every_finding_is_a_documented_exception(findings):
    unexplained = [f"{f['check']} {f['name']}: {f['resource']} ({f['file']})" for f in findings if not _exception_for(f)]
    assert unexplained == []


def test_every_documented_exception_is_still_needed(findings):
    for framework, entries in EXCEPTIONS.items():
        for check, entry in entries.items():
            assert entry["kind"] in ("rendering", "accepted") and entry["reason"], check
            assert any(f["framework"] == framework and f["check"] == check and _exception_for(f) for f in findings), f"{check} no longer occurs"


def test_the_rendered_plan_covers_every_aws_resource():
    from tests.tfplan import terraform_type

    for stack in STACKS:
        records = synth_of(stack).resources
        rendered = [r["type"] for r in plan(records)["planned_values"]["root_module"]["resources"]]
        aws = [terraform_type(r["type"]) for r in records if r["type"].startswith("aws:") and r["custom"]]
        assert sorted(rendered) == sorted(aws) and all(t.startswith("aws_") for t in rendered)


def test_each_check_has_one_entry():
    """YAML keeps the last of two equal keys: a second entry for a check would silently drop the first one's resources."""
    import re

    text = (ROOT / "policies" / "checkov-exceptions.yaml").read_text()
    for section in re.split(r"(?m)^(?:terraform|kubernetes):\n", text)[1:]:
        keys = re.findall(r"(?m)^  (\S+):$", section)
        assert len(keys) == len(set(keys)), sorted({k for k in keys if keys.count(k) > 1})

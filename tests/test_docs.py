"""The README's policy table is the pack: same rules, same levels per environment."""
from __future__ import annotations

import re

from infra.policy_check import enforcement_levels
from policies.rules import RULES
from tests.conftest import ROOT


def test_readme_documents_every_rule_with_its_levels():
    readme = (ROOT / "README.md").read_text()
    rows = dict(
        (m.group(1), (m.group(2), tuple(x.strip() for x in m.group(3).split("|"))))
        for m in re.finditer(r"^\| `([a-z0-9-]+)` \| (.+?) \| ((?:advisory|mandatory|disabled) \| (?:advisory|mandatory|disabled) \| (?:advisory|mandatory|disabled)) \|$", readme, re.M)
    )
    levels = {e: enforcement_levels(e) for e in ("dev", "staging", "prod")}
    assert set(rows) == {r.name for r in RULES}
    for rule in RULES:
        description, per_env = rows[rule.name]
        assert description == rule.description, rule.name
        assert per_env == tuple(levels[e][rule.name].value for e in ("dev", "staging", "prod")), rule.name


def test_the_pack_has_at_least_thirty_rules():
    assert len(RULES) >= 30 and len({r.name for r in RULES}) == len(RULES)

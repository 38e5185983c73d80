"""The README's generated parts are current: the policy table is the pack, with its levels per environment."""
from __future__ import annotations

from infra.offline.docs import policy_table
from policies.rules import RULES
from tests.conftest import ROOT


def test_readme_policy_table_is_the_pack():
    assert policy_table() in (ROOT / "README.md").read_text(), "regenerate it: .venv/bin/python -m infra.offline.docs"


def test_the_pack_has_at_least_thirty_rules():
    assert len(RULES) >= 30 and len({r.name for r in RULES}) == len(RULES)

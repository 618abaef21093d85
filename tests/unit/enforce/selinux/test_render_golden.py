"""The CIL module for each fixture policy (fixture facts and files, tests/unit/enforce/selinux/
helpers.py), compared with tests/unit/enforce/selinux/golden/.

Regenerate after an intended change: KARMOR_UPDATE_GOLDEN=1 .venv/bin/pytest tests/unit/enforce/selinux
and read the diff. test_compile.py builds modules like these against the installed policy.
"""

from __future__ import annotations

import pytest

from karmor_host.enforce.selinux.render import plan
from tests.unit.enforce.fixtures import check_golden
from tests.unit.enforce.selinux.helpers import FIXTURES, GOLDEN, facts, fixture_ruleset, inventory_for


def test_every_fixture_has_a_golden():
    assert FIXTURES, "no fixture policies"
    assert sorted(p.stem for p in GOLDEN.glob("*.cil")) == FIXTURES


@pytest.mark.parametrize("name", FIXTURES)
def test_render_matches_golden(name):
    rs = fixture_ruleset(name)
    text = plan(rs, facts(), inventory_for(rs)).cil
    check_golden(text, GOLDEN / f"{name}.cil")


@pytest.mark.parametrize("name", FIXTURES)
def test_render_is_deterministic(name):
    rs = fixture_ruleset(name)
    assert plan(rs, facts(), inventory_for(rs)) == plan(fixture_ruleset(name), facts(), inventory_for(rs))

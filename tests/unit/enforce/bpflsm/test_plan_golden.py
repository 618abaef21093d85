"""The plan (map contents) of each fixture policy, compared with golden/<fixture>.plan.

Regenerate after an intended change: KARMOR_UPDATE_GOLDEN=1 .venv/bin/pytest tests/unit/enforce/bpflsm
and read the diff.
"""

from __future__ import annotations

import pytest

from karmor_host.enforce.bpflsm.plan import plan
from tests.unit.enforce.bpflsm.helpers import DATA, GOLDEN, PROTECT, fixture_ruleset, resolve
from tests.unit.enforce.fixtures import check_golden

FIXTURES = sorted(p.stem for p in DATA.glob("*.yaml"))


def test_every_fixture_has_a_golden():
    assert FIXTURES, "no fixture policies"
    assert sorted(p.stem for p in GOLDEN.glob("*.plan")) == FIXTURES


@pytest.mark.parametrize("name", FIXTURES)
def test_plan_matches_golden(name):
    text = "\n".join(plan(fixture_ruleset(name), resolve, PROTECT).render()) + "\n"
    check_golden(text, GOLDEN / f"{name}.plan")


@pytest.mark.parametrize("name", FIXTURES)
def test_plan_is_deterministic(name):
    assert plan(fixture_ruleset(name), resolve, PROTECT).render() == plan(fixture_ruleset(name), resolve, PROTECT).render()


@pytest.mark.parametrize("name", FIXTURES)
def test_every_rule_has_a_status(name):
    rs = fixture_ruleset(name)
    p = plan(rs, resolve, PROTECT)
    assert [s.rule_id for s in p.statuses] == [r.id for r in rs.rules]
    for s in p.statuses:
        assert s.mode in ("enforced", "audit-only", "monitor", "pending")
        assert (s.by == "BPFLSM") == (s.mode == "enforced")
        if s.mode != "enforced":
            assert s.reason, s

"""Rendered profiles for each fixture policy, compared with tests/unit/enforce/apparmor/golden/,
and every golden checked by the real apparmor_parser (-Q: parse and compile, no kernel load).

Regenerate after an intended change: KARMOR_UPDATE_GOLDEN=1 .venv/bin/pytest tests/unit/enforce/apparmor
and read the diff.
"""

from __future__ import annotations

import pytest

from karmor_host.enforce.apparmor.render import render
from tests.unit.enforce.apparmor.helpers import DATA, GOLDEN, fixture_ruleset, parser_check
from tests.unit.enforce.fixtures import check_golden

FIXTURES = sorted(p.stem for p in DATA.glob("*.yaml"))


def test_every_fixture_has_a_golden():
    assert FIXTURES, "no fixture policies"
    assert sorted(p.stem for p in GOLDEN.glob("*.apparmor")) == FIXTURES


@pytest.mark.parametrize("name", FIXTURES)
def test_render_matches_golden(name):
    text = render(fixture_ruleset(name)).text()
    check_golden(text, GOLDEN / f"{name}.apparmor")


@pytest.mark.parametrize("name", FIXTURES)
def test_golden_is_accepted_by_apparmor_parser(name, tmp_path):
    proc = parser_check((GOLDEN / f"{name}.apparmor").read_text(), tmp_path)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("name", FIXTURES)
def test_render_is_deterministic(name):
    assert render(fixture_ruleset(name)) == render(fixture_ruleset(name))

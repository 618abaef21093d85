"""Rendered profiles for each fixture policy, compared with tests/unit/enforce/apparmor/golden/,
and every golden checked by the real apparmor_parser (-Q: parse and compile, no kernel load).

Regenerate after an intended change: KARMOR_UPDATE_GOLDEN=1 .venv/bin/pytest tests/unit/enforce/apparmor
and read the diff.
"""

from __future__ import annotations

import os

import pytest

from karmor_host.enforce.apparmor.render import render
from tests.unit.enforce.apparmor.helpers import DATA, GOLDEN, fixture_ruleset, parser_check

FIXTURES = sorted(p.stem for p in DATA.glob("*.yaml"))


def test_every_fixture_has_a_golden():
    assert FIXTURES, "no fixture policies"
    assert sorted(p.stem for p in GOLDEN.glob("*.apparmor")) == FIXTURES


@pytest.mark.parametrize("name", FIXTURES)
def test_render_matches_golden(name):
    text = render(fixture_ruleset(name)).text()
    golden = GOLDEN / f"{name}.apparmor"
    if os.environ.get("KARMOR_UPDATE_GOLDEN"):
        golden.write_text(text)
    assert text == golden.read_text(), f"{golden} differs; KARMOR_UPDATE_GOLDEN=1 rewrites it"


@pytest.mark.parametrize("name", FIXTURES)
def test_golden_is_accepted_by_apparmor_parser(name, tmp_path):
    proc = parser_check((GOLDEN / f"{name}.apparmor").read_text(), tmp_path)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("name", FIXTURES)
def test_render_is_deterministic(name):
    assert render(fixture_ruleset(name)) == render(fixture_ruleset(name))

"""Rule sets from the fixture policies, compiled the same way on every machine."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from karmor_host.policy.ruleset import RuleSet
from tests.unit.enforce import fixtures
from tests.unit.enforce.fixtures import IDENTITY, policy, ruleset_of  # noqa: F401 - the tests' names

HERE = Path(__file__).parent
DATA = HERE / "data"
GOLDEN = HERE / "golden"
PARSER = shutil.which("apparmor_parser", path="/usr/sbin:/sbin:/usr/bin:/bin") or "/usr/sbin/apparmor_parser"


def fixture_ruleset(name: str) -> RuleSet:
    return fixtures.fixture_ruleset(DATA, name)


def parser_check(text: str, tmp: Path) -> subprocess.CompletedProcess[str]:
    """apparmor_parser -Q (no kernel load, no cache) on `text`: works without AppArmor in the
    running kernel."""
    path = tmp / "profiles"
    path.write_text(text)
    return subprocess.run([PARSER, "-Q", "-K", str(path)], capture_output=True, text=True, timeout=120)

"""Rule sets from the fixture policies and a deterministic stand-in for the kernel's view of
directories, so plans are the same on every machine."""

from __future__ import annotations

import zlib
from pathlib import Path

from karmor_host.enforce.bpflsm.plan import Protection
from karmor_host.policy.ruleset import RuleSet
from tests.unit.enforce import fixtures
from tests.unit.enforce.fixtures import HEAD, ruleset_of  # noqa: F401 - the tests' names

HERE = Path(__file__).parent
DATA = HERE / "data"
GOLDEN = HERE / "golden"
DEV = 8 << 20 | 1  # what the kernel would call sda1


def resolve(directory: str) -> tuple[int, int] | None:
    """A directory's (dev, ino): stable numbers from its path; nothing under /missing/."""
    if directory.startswith("/missing/"):
        return None
    return DEV, zlib.crc32(directory.rstrip("/").encode() or b"/") & 0xFFFFFF


def ino(directory: str) -> int:
    ident = resolve(directory)
    assert ident is not None
    return ident[1]


def fixture_ruleset(name: str) -> RuleSet:
    return fixtures.fixture_ruleset(DATA, name)


PROTECT = Protection(programs=("/usr/bin/python3.11",), files=("/etc/karmor/karmor-host.yaml",),
                     dirs=("/etc/karmor/policies/", "/usr/lib/python3/dist-packages/"))

"""Fixture rule sets, policy facts and file inventories: the same on every machine.

The fixture inventory stands in for a scan: every path a rule set wants exists as a regular file
on a labelled file system, with a context that depends on where it is, except for the
conventions below. Directories hold `a.conf`, and `sub/b.conf` one level down.
  /missing/...        does not exist
  /srv/9p/...         on a file system without labels
  /usr/bin, /usr/sbin bin_t (sshd: sshd_exec_t)      /etc  etc_t      elsewhere var_t
"""

from __future__ import annotations

import json
from pathlib import Path

from karmor_host.enforce.selinux.facts import MISSING, Inode, Inventory, PolicyFacts, Tree, Wanted
from karmor_host.enforce.selinux.render import wanted
from karmor_host.policy.ruleset import Category, Posture, RuleSet
from tests.unit.enforce import fixtures
from tests.unit.enforce.fixtures import HEAD, IDENTITY, policy  # noqa: F401 - the tests' names

HERE = Path(__file__).parent
DATA = HERE / "data"
GOLDEN = HERE / "golden"
FIXTURES = sorted(p.stem for p in DATA.glob("*.yaml"))


def facts() -> PolicyFacts:
    return PolicyFacts.from_json(json.loads((DATA / "facts.json").read_text()))


def fixture_ruleset(name: str) -> RuleSet:
    return fixtures.fixture_ruleset(DATA, name)


def ruleset_of(body: str, postures: dict[Category, Posture] | None = None, name: str = "p") -> RuleSet:
    """The rule set of one host policy named `name` with `body` under its spec."""
    return fixtures.ruleset_of(policy(name, body), postures)


def context_of(path: str) -> str:
    if path.startswith("/usr/sbin/sshd"):
        t = "sshd_exec_t"
    elif path.startswith(("/usr/bin/", "/usr/sbin/")):
        t = "bin_t"
    elif path.startswith("/etc/"):
        t = "etc_t"
    else:
        t = "var_t"
    return f"system_u:object_r:{t}:s0"


def node(path: str, kind: str = "file", ino: int = 0) -> Inode:
    if path.startswith("/missing/"):
        return Inode(path, MISSING)
    ino = ino or 1
    if path.startswith("/srv/9p/"):
        return Inode(path, kind, "system_u:object_r:unlabeled_t:s0", False, "9p on / keeps no SELinux labels", 1, ino)
    return Inode(path, kind, context_of(path), True, "", 1, ino)


def inventory(want: Wanted, inodes: dict[str, int] | None = None) -> Inventory:
    """The fixture inventory for `want`; `inodes` pins inode numbers (default: stable per path
    within one run, which is all the goldens need since they do not show them)."""
    pins = inodes or {}
    nodes: dict[str, Inode] = {}
    trees: dict[tuple[str, bool], Tree] = {}
    counter = iter(range(100, 10_000))

    def add(path: str, kind: str = "file") -> None:
        nodes[path] = node(path, kind, pins.get(path) or next(counter))

    for p in sorted(want.paths):
        add(p)
    for d, rec in sorted(want.trees):
        top = d.rstrip("/")
        add(top, "dir")
        if nodes[top].kind == MISSING:
            continue
        paths = [f"{top}/a.conf", f"{top}/sub"] + ([f"{top}/sub/b.conf"] if rec else [])
        for p in paths:
            add(p, "dir" if p.endswith("/sub") else "file")
        trees[(d, rec)] = Tree(d, rec, tuple(paths))
    return Inventory(nodes, trees)


def inventory_for(rs: RuleSet) -> Inventory:
    return inventory(wanted(rs))

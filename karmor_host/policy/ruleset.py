"""The enforcer-neutral rule set: the contract between the policy compiler and every consumer.

The compiler (policy/compile.py) produces a RuleSet from validated policies; enforcers
(enforce/*) and the alert matcher (alerts/match.py) consume it. Everything here is plain,
frozen data so it can be rendered, diffed, golden-tested and shipped to another thread.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class Action(str, Enum):
    ALLOW = "Allow"
    AUDIT = "Audit"
    BLOCK = "Block"


class Operation(str, Enum):
    """KubeArmor's Operation enumeration (alert field `Operation`)."""

    PROCESS = "Process"
    FILE = "File"
    NETWORK = "Network"
    CAPABILITIES = "Capabilities"
    SYSCALL = "Syscall"


class TargetKind(str, Enum):
    PATH = "path"  # exact file (canonical absolute path)
    DIR = "dir"  # directory, canonical, always ends with "/"; `recursive` says how deep
    PATTERN = "pattern"  # glob (fnmatch-style, `*` does not cross "/", `**` does)
    EXECNAME = "execname"  # bare executable name, matched against the basename
    PROTOCOL = "protocol"  # lower-case protocol name: tcp, udp, icmp, icmpv6, raw, ...
    CAPABILITY = "capability"  # lower-case capability name without cap_: net_raw, ...
    SYSCALL = "syscall"  # x86_64 syscall name: unlink, ...


class Category(str, Enum):
    """Whitelist categories: an Allow rule turns its whole category into a whitelist."""

    FILE = "file"  # process and file rules together, as in KubeArmor
    NETWORK = "network"
    CAPABILITIES = "capabilities"


class Posture(str, Enum):
    AUDIT = "audit"
    BLOCK = "block"


def category_of(op: Operation) -> Category | None:
    if op in (Operation.PROCESS, Operation.FILE):
        return Category.FILE
    if op is Operation.NETWORK:
        return Category.NETWORK
    if op is Operation.CAPABILITIES:
        return Category.CAPABILITIES
    return None  # syscall rules are audit-only and never form a whitelist


@dataclass(frozen=True)
class Source:
    """A fromSource entry: the acting program (for exec: the parent's executable)."""

    path: str  # canonical absolute path; for a directory it ends with "/"
    original: str  # as written in the policy, kept for messages
    is_dir: bool = False
    recursive: bool = False


@dataclass(frozen=True)
class Rule:
    id: int  # stable: same policy text => same id, across reloads and restarts
    policy: str  # metadata.name
    file: str  # policy file it came from
    line: int  # line of the rule in that file
    operation: Operation
    kind: TargetKind
    target: str  # canonical form (see TargetKind)
    original: str  # target as written, for messages ("/bin/ls" when target is "/usr/bin/ls")
    action: Action
    severity: int  # 1..10
    tags: tuple[str, ...] = ()
    message: str = ""
    sources: tuple[Source, ...] = ()  # empty: applies to every process
    recursive: bool = False  # DIR targets
    read_only: bool = False  # file rules: reads allowed, writes denied
    owner_only: bool = False  # only the owner of the file may access/exec it
    syscall: str = ""  # syscalls.matchPaths rules: which syscall this path rule audits

    @property
    def category(self) -> Category | None:
        return category_of(self.operation)


@dataclass(frozen=True)
class PolicyInfo:
    """What the compiler knows about one policy, for apply reports and `status`."""

    name: str
    file: str
    applies: bool  # nodeSelector matched this host
    reason: str = ""  # why not, when applies is False
    rule_ids: tuple[int, ...] = ()


@dataclass(frozen=True)
class Conflict:
    """Two rules with the same target and scope but different actions; `kept` won."""

    kept: int
    dropped: int
    reason: str


@dataclass(frozen=True)
class RuleSet:
    rules: tuple[Rule, ...] = ()
    postures: dict[Category, Posture] = field(
        default_factory=lambda: {c: Posture.AUDIT for c in Category}
    )
    whitelists: frozenset[Category] = frozenset()  # categories that hold at least one Allow rule
    policies: tuple[PolicyInfo, ...] = ()
    conflicts: tuple[Conflict, ...] = ()

    def by_id(self) -> dict[int, Rule]:
        return {r.id: r for r in self.rules}

"""Event x RuleSet -> Decisions: which policies an event violates, and with what Action.

A Matcher is compiled once per RuleSet into lookup tables, so the cost of one event does
not grow with the number of rules:
  operation -> fromSource scope (none | exact exe | directory) -> target index
  target index: exact-path dict, per-directory dicts found by walking the path's parents,
  a trie of glob components (glob.GlobIndex), and name dicts (execname, protocol,
  capability, syscall).
Only the candidates found there are checked against the rule's conditions (readOnly,
ownerOnly). The semantics are documented in docs/alerts.md ("Matching").
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar, Union

from karmor_host.alerts import names
from karmor_host.alerts.glob import GlobIndex
from karmor_host.alerts.record import DEFAULT_POSTURE
from karmor_host.kernel.events import Event, EventKind
from karmor_host.policy.ruleset import (
    Action,
    Category,
    Operation,
    Posture,
    Rule,
    RuleSet,
    TargetKind,
    category_of,
)

AUDIT = "Audit"
BLOCK = "Block"
AUDIT_BLOCK = "Audit (Block)"  # a Block rule the enforcer cannot enforce
AUDIT_ALLOW = "Audit (Allow)"  # a whitelist (Allow rules + block posture) it cannot enforce

# Whether the active enforcer stops what this rule denies (rule None: a category's
# default posture). A plain bool answers for every rule.
CanBlock = Union[bool, Callable[[Union[Rule, None], Category], bool]]
# Whether the enforcer raises the alert for this rule itself (None: a category's default
# posture), from its own kernel events; the matcher then leaves that decision to it.
Handled = Callable[[Union[Rule, None], Category], bool]

_PROTOCOL_ALL = "all"
_BY_TYPE = {
    names.SOCK_RAW: "raw",
    names.SOCK_STREAM: "stream",
    names.SOCK_DGRAM: "dgram",
    names.SOCK_SEQPACKET: "seqpacket",
    names.SOCK_RDM: "rdm",
}


@dataclass(frozen=True, slots=True)
class Decision:
    rule: Rule | None  # None: DefaultPosture
    action: str  # Audit | Block | Audit (Block) | Audit (Allow)
    policy_name: str
    operation: Operation
    enforced: bool  # True only when the enforcer itself stops this (Action "Block")


def parents(path: str) -> Iterator[str]:
    """`/a/b/c` -> `/a/b/`, `/a/`, `/`: the directories holding a path, nearest first."""
    end = len(path)
    while True:
        end = path.rfind("/", 0, end)
        if end < 0:
            return
        yield path[: end + 1]


def protocol_names(event: Event) -> list[str]:
    """The policy protocol names a socket satisfies (see docs/alerts.md, "Protocols")."""
    fam, typ, proto = event.family, event.sock_type & names.SOCK_TYPE_MASK, event.protocol
    out = [_PROTOCOL_ALL]
    inet = fam in (names.AF_INET, names.AF_INET6)
    if inet:
        if proto == names.IPPROTO_TCP or (typ == names.SOCK_STREAM and proto in (0, names.IPPROTO_MPTCP)):
            out.append("tcp")
        if proto == names.IPPROTO_UDP or (typ == names.SOCK_DGRAM and proto == 0):
            out.append("udp")
        if proto == names.IPPROTO_SCTP:
            out.append("sctp")
        if fam == names.AF_INET and proto == names.IPPROTO_ICMP:
            out.append("icmp")  # SOCK_RAW, or SOCK_DGRAM "ping" sockets
        if fam == names.AF_INET6 and proto == names.IPPROTO_ICMPV6:
            out.append("icmpv6")
    if typ == names.SOCK_DCCP or (inet and proto == names.IPPROTO_DCCP):
        out.append("dccp")
    if fam == names.AF_PACKET or typ == names.SOCK_PACKET:
        out.append("packet")
    if typ in _BY_TYPE:
        out.append(_BY_TYPE[typ])  # any address family, like AppArmor's `network stream,`
    return out


@dataclass
class _Targets:
    """The rules of one fromSource scope, indexed by target."""

    exact: dict[str, list[Rule]] = field(default_factory=dict)
    direct: dict[str, list[Rule]] = field(default_factory=dict)  # non-recursive dirs
    recursive: dict[str, list[Rule]] = field(default_factory=dict)
    patterns: GlobIndex[Rule] = field(default_factory=GlobIndex)
    names: dict[str, list[Rule]] = field(default_factory=dict)

    def add(self, rule: Rule) -> None:
        kind, target = rule.kind, rule.target
        if kind is TargetKind.PATH:
            self.exact.setdefault(target, []).append(rule)
        elif kind is TargetKind.DIR:
            table = self.recursive if rule.recursive else self.direct
            table.setdefault(target, []).append(rule)
        elif kind is TargetKind.PATTERN:
            self.patterns.add(target, rule)
        elif kind is TargetKind.CAPABILITY:
            key = target.lower()
            self.names.setdefault(key[4:] if key.startswith("cap_") else key, []).append(rule)
        elif kind is TargetKind.PROTOCOL:
            self.names.setdefault(target.lower(), []).append(rule)
        else:  # EXECNAME, SYSCALL: exact names
            self.names.setdefault(target, []).append(rule)

    def lookup(self, path: str, keys: Iterable[str]) -> Iterator[Rule]:
        for key in keys:
            yield from self.names.get(key, ())
        if not path:
            return
        yield from self.exact.get(path, ())
        if self.direct or self.recursive:
            for depth, parent in enumerate(parents(path)):
                if depth == 0:
                    yield from self.direct.get(parent, ())
                yield from self.recursive.get(parent, ())
        if self.patterns:
            yield from self.patterns.lookup(path)


T = TypeVar("T")


class _SourceMap(Generic[T]):
    """Something per fromSource scope: everyone, one executable, or a directory of them."""

    def __init__(self, factory: Callable[[], T]) -> None:
        self._factory = factory
        self.everyone: T | None = None
        self.exact: dict[str, T] = {}
        self.direct: dict[str, T] = {}  # non-recursive source directory: direct children
        self.recursive: dict[str, T] = {}

    def slots_for(self, rule: Rule) -> list[T]:
        """The entries for the rule's scopes, created on first use."""
        if not rule.sources:
            if self.everyone is None:
                self.everyone = self._factory()
            return [self.everyone]
        out = []
        for src in rule.sources:
            table = (self.recursive if src.recursive else self.direct) if src.is_dir else self.exact
            if src.path not in table:
                table[src.path] = self._factory()
            out.append(table[src.path])
        return out

    def find(self, source: str) -> Iterator[T]:
        if self.everyone is not None:
            yield self.everyone
        if not source:
            return  # an unknown executable is in no fromSource scope
        hit = self.exact.get(source)
        if hit is not None:
            yield hit
        if self.direct or self.recursive:
            for depth, parent in enumerate(parents(source)):
                if depth == 0 and parent in self.direct:
                    yield self.direct[parent]
                if parent in self.recursive:
                    yield self.recursive[parent]

    def __len__(self) -> int:
        return (self.everyone is not None) + len(self.exact) + len(self.direct) + len(self.recursive)


class _Lookup(Protocol):
    def lookup(self, path: str, keys: Iterable[str]) -> Iterator[Rule]: ...


def _is_owner(event: Event) -> bool:
    # file_uid -1 means the monitor could not tell: ownership is then not proven.
    return event.file_uid >= 0 and event.uid == event.file_uid


def _conditions_hold(rule: Rule, event: Event) -> bool:
    """The access stays inside what readOnly/ownerOnly permit."""
    if rule.read_only and event.kind is EventKind.OPEN and names.is_write_open(event.flags):
        return False
    if rule.owner_only and not _is_owner(event):
        return False
    return True


def _restricted(rule: Rule) -> bool:
    return rule.read_only or rule.owner_only


_OPERATION_OF: dict[EventKind, Operation] = {
    EventKind.EXEC: Operation.PROCESS,
    EventKind.OPEN: Operation.FILE,
    EventKind.SOCKET: Operation.NETWORK,
    EventKind.ACCEPT: Operation.NETWORK,
    EventKind.CAPABLE: Operation.CAPABILITIES,
    EventKind.SYSCALL: Operation.SYSCALL,
}
_ACTION_RANK = {BLOCK: 0, AUDIT_BLOCK: 0, AUDIT: 1}


class Matcher:
    """Compiled once per RuleSet; `match` is safe to call from one thread at a time."""

    def __init__(
        self, ruleset: RuleSet, enforcer_can_block: CanBlock = False, handled_by_enforcer: Handled | None = None
    ) -> None:
        self.ruleset = ruleset
        self._can_block = enforcer_can_block
        self._handled = handled_by_enforcer
        self._scopes: dict[Operation, _SourceMap[_Targets]] = {}
        self._syscall_paths: dict[str, _SourceMap[_Targets]] = {}  # syscalls.matchPaths by syscall
        self._confined: dict[Category, _SourceMap[bool]] = {}  # who an Allow whitelist confines
        self.rules_checked = 0  # candidates examined: shows that lookups stay narrow
        for rule in ruleset.rules:
            self._add(rule)

    def _add(self, rule: Rule) -> None:
        if rule.operation is Operation.SYSCALL and rule.kind in (TargetKind.PATH, TargetKind.DIR):
            scope = self._syscall_paths.setdefault(rule.syscall, _SourceMap(_Targets))
        else:
            scope = self._scopes.setdefault(rule.operation, _SourceMap(_Targets))
        for targets in scope.slots_for(rule):
            targets.add(rule)
        category = rule.category
        if rule.action is Action.ALLOW and category in self.ruleset.whitelists:
            self._confined.setdefault(category, _SourceMap(lambda: True)).slots_for(rule)

    @property
    def can_block(self) -> CanBlock:
        return self._can_block

    @property
    def handled_by_enforcer(self) -> Handled | None:
        return self._handled

    def index_sizes(self) -> dict[str, int]:
        """Scope tables per operation (fromSource scopes, plus the everyone scope)."""
        sizes = {op.value: len(m) for op, m in self._scopes.items()}
        sizes["SyscallPaths"] = sum(len(m) for m in self._syscall_paths.values())
        return sizes

    def match(self, event: Event) -> list[Decision]:
        op = _OPERATION_OF.get(event.kind)
        if op is None:
            return []  # FORK, EXIT, CONNECT, BIND: telemetry only
        source = event.parent_exe if event.kind is EventKind.EXEC else event.exe
        path = event.path if op in (Operation.PROCESS, Operation.FILE, Operation.SYSCALL) else ""
        if len(path) > 1:
            path = path.rstrip("/")
        keys: Iterable[str]
        if op is Operation.PROCESS:
            keys = (path.rsplit("/", 1)[-1],)  # execname
        elif op is Operation.NETWORK:
            keys = protocol_names(event)
        elif op is Operation.CAPABILITIES:
            keys = (names.CAPABILITIES.get(event.capability, str(event.capability)),)
        elif op is Operation.SYSCALL:
            keys = (event.syscall,)
        else:
            keys = ()

        tables: list[_Lookup] = []
        scope = self._scopes.get(op)
        if scope is not None:
            tables.extend(scope.find(source))
        by_path = self._syscall_paths.get(event.syscall) if op is Operation.SYSCALL else None
        if by_path is not None:
            tables.extend(_PathOnly(t) for t in by_path.find(source))

        allowed = False
        hits: dict[int, Rule] = {}
        for table in tables:
            for rule in table.lookup(path, keys):
                self.rules_checked += 1
                if rule.action is Action.ALLOW:
                    allowed = allowed or _conditions_hold(rule, event)
                elif not _restricted(rule) or not _conditions_hold(rule, event):
                    hits[rule.id] = rule
        if not hits and not self._confined:
            return []  # the common case: nothing matched and no whitelist to fall out of
        return self._decide(op, source, hits.values(), allowed)

    def _decide(self, op: Operation, source: str, hits: Iterable[Rule], allowed: bool) -> list[Decision]:
        category = category_of(op)
        # what the enforcer reports itself is not reported twice; it still counts for `denied`
        handled = self._handled if category is not None else None
        best: dict[str, Decision] = {}
        denied = False
        for rule in sorted(hits, key=lambda r: r.id):
            decision = self._rule_decision(rule, op)
            denied = denied or decision.action in (BLOCK, AUDIT_BLOCK)
            if handled is not None and handled(rule, category):
                continue
            kept = best.get(rule.policy)
            if kept is None or _ACTION_RANK[decision.action] < _ACTION_RANK[kept.action]:
                best[rule.policy] = decision  # one alert per policy: its strongest rule
        out = sorted(best.values(), key=lambda d: (_ACTION_RANK[d.action], d.policy_name))
        if category is not None and not allowed and not denied and self._confines(category, source):
            if handled is None or not handled(None, category):
                out.append(self._posture_decision(category, op))
        return out

    def _blocks(self, rule: Rule | None, category: Category | None) -> bool:
        if isinstance(self._can_block, bool):
            return self._can_block
        return category is not None and self._can_block(rule, category)

    def _rule_decision(self, rule: Rule, op: Operation) -> Decision:
        if rule.action is Action.BLOCK and op is not Operation.SYSCALL:
            if self._blocks(rule, rule.category):
                return Decision(rule, BLOCK, rule.policy, op, True)
            return Decision(rule, AUDIT_BLOCK, rule.policy, op, False)
        return Decision(rule, AUDIT, rule.policy, op, False)  # syscall rules are always Audit

    def _posture_decision(self, category: Category, op: Operation) -> Decision:
        if self.ruleset.postures.get(category, Posture.AUDIT) is Posture.BLOCK:
            if self._blocks(None, category):
                return Decision(None, BLOCK, DEFAULT_POSTURE, op, True)
            return Decision(None, AUDIT_ALLOW, DEFAULT_POSTURE, op, False)
        return Decision(None, AUDIT, DEFAULT_POSTURE, op, False)

    def _confines(self, category: Category, source: str) -> bool:
        confined = self._confined.get(category)
        return confined is not None and next(confined.find(source), None) is not None


class _PathOnly:
    """A syscalls.matchPaths table: the syscall already chose it, so only the path counts."""

    __slots__ = ("_targets",)

    def __init__(self, targets: _Targets) -> None:
        self._targets = targets

    def lookup(self, path: str, keys: Iterable[str]) -> Iterator[Rule]:
        return self._targets.lookup(path, ())

"""RuleSet -> the contents of the BPF-LSM maps for one bank. Pure: no kernel, no filesystem.

The only outside knowledge is `resolve(directory) -> (dev, ino) | None`, the identity the
kernel sees for a directory (the backend asks the kernel itself; tests pass a table), so the
plan is golden-tested on any machine (tests/unit/enforce/bpflsm/).

How rules become keys (bpf/include/lsm.h):
- path target: (op, scope, holding directory's dev/ino, name) in lsm_files;
- execname: (op, scope, 0, 0, name) in lsm_files;
- dir target: (op, scope, directory's dev/ino) in lsm_dirs, RECURSIVE for recursive rules;
- protocol / capability: (op, scope, code) in lsm_codes;
- scope 0 is "everyone"; each distinct fromSource entry gets a scope id (1, 2, ... in sorted
  order) and a key in lsm_srcs (executable: directory + name) or lsm_srcdirs (directory).
Each key holds up to abi.REFS rules (rule id, action, readOnly/ownerOnly/recursive).

What cannot be put in the kernel is said in the report, never dropped silently: matchPatterns
and syscall rules stay with the eBPF monitor; a path whose directory does not exist yet is
"pending" (re-resolved by refresh); a whitelist with an Allow rule the kernel does not hold
keeps its default posture with the monitor, because the kernel would deny what that rule
allows.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from karmor_host.enforce.base import RuleStatus
from karmor_host.enforce.bpflsm import abi
from karmor_host.policy.names import CAPABILITIES
from karmor_host.policy.ruleset import (
    Action,
    Category,
    Operation,
    Posture,
    Rule,
    RuleSet,
    Source,
    TargetKind,
)

BY = "BPFLSM"
MONITOR = "eBPF Monitor"

Resolver = Callable[[str], "tuple[int, int] | None"]

_OP = {
    Operation.PROCESS: abi.Op.PROCESS,
    Operation.FILE: abi.Op.FILE,
    Operation.NETWORK: abi.Op.NETWORK,
    Operation.CAPABILITIES: abi.Op.CAPABILITIES,
}
_CATEGORY_OPS = {
    Category.FILE: (abi.Op.PROCESS, abi.Op.FILE),
    Category.NETWORK: (abi.Op.NETWORK,),
    Category.CAPABILITIES: (abi.Op.CAPABILITIES,),
}
_CATEGORY_BIT = {
    Category.FILE: abi.CAT_FILE,
    Category.NETWORK: abi.CAT_NETWORK,
    Category.CAPABILITIES: abi.CAT_CAPABILITIES,
}
_ACTION = {Action.ALLOW: abi.Action.ALLOW, Action.AUDIT: abi.Action.AUDIT, Action.BLOCK: abi.Action.BLOCK}

# keys without the bank: (op, scope, dev, ino, name) / (op, scope, dev, ino) / (op, scope, code)
FileKey = tuple[int, int, int, int, str]
DirKey = tuple[int, int, int, int]
CodeKey = tuple[int, int, int]


@dataclass(frozen=True, order=True)
class Ref:
    rule_id: int
    action: int  # abi.Action
    flags: int = 0  # abi.RECURSIVE | READ_ONLY | OWNER_ONLY


@dataclass(frozen=True)
class Protection:
    """The agent's own files: no rule may stop the agent from starting or reading its
    policies, so a denial of reading (or executing) these becomes an audit."""

    programs: tuple[str, ...] = ()  # executables: the agent's interpreter
    files: tuple[str, ...] = ()  # read: its configuration file
    dirs: tuple[str, ...] = ()  # read, recursively: its code, the policy directory

    def covers(self, rule: Rule) -> list[str]:
        """The protected paths a rule's target reaches (for the report). Directories end in /."""
        if rule.kind not in (TargetKind.PATH, TargetKind.DIR):
            return []
        paths = self.programs if rule.operation is Operation.PROCESS else (*self.files, *self.dirs)
        t = rule.target
        out = []
        for p in paths:
            if p.endswith("/") and t.startswith(p):  # the rule's target is inside a protected dir
                out.append(p)
            elif rule.kind is TargetKind.PATH and t == p:
                out.append(p)
            elif rule.kind is TargetKind.DIR and p.startswith(t) and (rule.recursive or "/" not in p[len(t):].rstrip("/")):
                out.append(p)
        return out


@dataclass
class BankPlan:
    """Everything one bank holds, plus how each rule is handled."""

    files: dict[FileKey, list[Ref]] = field(default_factory=dict)
    dirs: dict[DirKey, list[Ref]] = field(default_factory=dict)
    codes: dict[CodeKey, list[Ref]] = field(default_factory=dict)
    srcs: dict[tuple[int, int, str], tuple[int, int]] = field(default_factory=dict)  # -> (scope, confine)
    srcdirs: dict[tuple[int, int], list[tuple[int, int]]] = field(default_factory=dict)  # -> [direct, recursive]
    flags: int = 0  # abi.C_*
    op_flags: list[int] = field(default_factory=lambda: [0] * len(abi.Op))
    scopes: dict[Source, int] = field(default_factory=dict)
    kernel_rules: frozenset[int] = frozenset()  # rules the kernel enforces (and reports)
    kernel_postures: frozenset[Category] = frozenset()  # whitelists whose posture the kernel applies
    statuses: tuple[RuleStatus, ...] = ()
    notes: tuple[str, ...] = ()
    pending: tuple[str, ...] = ()  # paths that did not resolve: refresh retries them

    def entries(self) -> int:
        return len(self.files) + len(self.dirs) + len(self.codes) + len(self.srcs) + len(self.srcdirs)

    def render(self) -> list[str]:
        """A stable text form (golden files, debugging)."""
        out = [f"cfg flags={self.flags:#x} op_flags=" + ",".join(f"{f:#x}" for f in self.op_flags)]
        out += [f"scope {sid} {_source_text(src)}" for src, sid in sorted(self.scopes.items(), key=lambda x: x[1])]
        for key, refs in sorted(self.files.items()):
            out.append(f"file op={key[0]} scope={key[1]} dir={key[2]}:{key[3]} name={key[4]!r} -> {_refs_text(refs)}")
        for key, refs in sorted(self.dirs.items()):
            out.append(f"dir op={key[0]} scope={key[1]} dir={key[2]}:{key[3]} -> {_refs_text(refs)}")
        for key, refs in sorted(self.codes.items()):
            out.append(f"code op={key[0]} scope={key[1]} code={key[2]} -> {_refs_text(refs)}")
        for key, (scope, confine) in sorted(self.srcs.items()):
            out.append(f"src dir={key[0]}:{key[1]} name={key[2]!r} -> scope={scope} confine={confine:#x}")
        for key, (direct, rec) in sorted(self.srcdirs.items()):
            out.append(f"srcdir dir={key[0]}:{key[1]} -> direct={direct} recursive={rec}")
        out += [f"rule {s.rule_id} {s.policy} {s.mode} by={s.by}" + (f" ({s.reason})" if s.reason else "")
                for s in sorted(self.statuses, key=lambda s: (s.policy, s.rule_id))]
        out += [f"note {n}" for n in self.notes]
        out += [f"pending {p}" for p in self.pending]
        return out


def _source_text(src: Source) -> str:
    kind = ("recursive dir" if src.recursive else "dir") if src.is_dir else "path"
    return f"{kind} {src.path}"


def _refs_text(refs: list[Ref]) -> str:
    return " ".join(f"{r.rule_id}:{abi.Action(r.action).name}:{r.flags:#x}" for r in refs)


def _action_of(rule: Rule) -> int:
    return _ACTION[rule.action]


def _flags(rule: Rule) -> int:
    f = 0
    if rule.kind is TargetKind.DIR and rule.recursive:
        f |= abi.RECURSIVE
    if rule.read_only:
        f |= abi.READ_ONLY
    if rule.owner_only:
        f |= abi.OWNER_ONLY
    return f


def _split(path: str) -> tuple[str, str]:
    """'/usr/bin/ls' -> ('/usr/bin/', 'ls')."""
    head, name = posixpath.split(path.rstrip("/"))
    return (head if head.endswith("/") else head + "/"), name


def _code(rule: Rule) -> int | None:
    if rule.kind is TargetKind.PROTOCOL:
        try:
            return abi.Proto[rule.target.upper()].value
        except KeyError:
            return None
    name = rule.target.lower().removeprefix("cap_")
    return CAPABILITIES.get(name)


class _Builder:
    def __init__(self, ruleset: RuleSet, resolve: Resolver, protect: Protection) -> None:
        self.rs = ruleset
        self.resolve_dir = resolve
        self.protect = protect
        self.plan = BankPlan()
        self.statuses: dict[int, RuleStatus] = {}
        self.notes: list[str] = []
        self.pending: set[str] = set()
        self.kernel: set[int] = set()
        self._cache: dict[str, tuple[int, int] | None] = {}

    def resolve(self, directory: str) -> tuple[int, int] | None:
        if directory not in self._cache:
            self._cache[directory] = self.resolve_dir(directory)
        return self._cache[directory]

    # -- scopes ------------------------------------------------------------------------

    def scope_ids(self) -> None:
        sources = sorted({s for r in self.rs.rules for s in r.sources if r.category is not None},
                         key=lambda s: (s.path, s.is_dir, s.recursive))
        self.plan.scopes = {s: i + 1 for i, s in enumerate(sources)}

    # -- rules -------------------------------------------------------------------------

    def status(self, rule: Rule, mode: str, by: str, reason: str = "") -> None:
        self.statuses[rule.id] = RuleStatus(rule.id, rule.policy, mode, by, reason)

    def add_rule(self, rule: Rule) -> None:
        op = _OP.get(rule.operation)
        if op is None:
            self.status(rule, "monitor", MONITOR, "syscall rules are audited by the eBPF monitor")
            return
        if rule.kind is TargetKind.PATTERN:
            how = "audited" if rule.action is Action.AUDIT else f"reported as Audit ({rule.action.value})"
            self.status(rule, "audit-only", MONITOR,
                        f"audit only on BPF-LSM: matchPatterns are not enforced in the kernel; {how} by the eBPF monitor")
            return
        scopes = [self.plan.scopes[s] for s in rule.sources] if rule.sources else [0]
        ref = Ref(rule.id, _action_of(rule), _flags(rule))
        if rule.kind is TargetKind.PATH:
            directory, name = _split(rule.target)
            ident = self.resolve(directory)
            if ident is None:
                self.pending.add(directory)
                self.status(rule, "pending", MONITOR,
                            f"{directory} does not exist yet; enforced once it does (re-checked every rescan)")
                return
            keys = [(op, s, ident[0], ident[1], name) for s in scopes]
            table = self.plan.files
        elif rule.kind is TargetKind.EXECNAME:
            keys = [(op, s, 0, 0, rule.target) for s in scopes]
            table = self.plan.files
        elif rule.kind is TargetKind.DIR:
            ident = self.resolve(rule.target)
            if ident is None:
                self.pending.add(rule.target)
                self.status(rule, "pending", MONITOR,
                            f"{rule.target} does not exist yet; enforced once it does (re-checked every rescan)")
                return
            keys = [(op, s, ident[0], ident[1]) for s in scopes]
            table = self.plan.dirs
        else:
            code = _code(rule)
            if code is None:
                self.status(rule, "audit-only", MONITOR, f"no kernel code for {rule.target!r}")
                return
            keys = [(op, s, code) for s in scopes]
            table = self.plan.codes
        # one slot of each file/dir key stays free for the agent's PROTECT marker
        room = abi.REFS - 1 if table is not self.plan.codes else abi.REFS
        full = [k for k in keys if len(table.get(k, ())) >= room]
        if full:
            self.status(rule, "audit-only", MONITOR,
                        f"more than {abi.REFS} rules share this target and scope; reported by the eBPF monitor")
            return
        for k in keys:
            table.setdefault(k, []).append(ref)
        self.kernel.add(rule.id)
        reason = ""
        covered = self.protect.covers(rule) if rule.action is not Action.AUDIT else []
        if covered:
            reason = "never denies the agent's own files: " + ", ".join(covered)
        self.status(rule, "enforced", BY, reason)

    # -- sources -----------------------------------------------------------------------

    def add_sources(self, confine: dict[Source, int]) -> None:
        for src, sid in self.plan.scopes.items():
            bits = confine.get(src, 0)
            if src.is_dir:
                ident = self.resolve(src.path)
                if ident is None:
                    self.pending.add(src.path)
                    continue
                slot = self.plan.srcdirs.setdefault(ident, [(0, 0), (0, 0)])
                slot[1 if src.recursive else 0] = (sid, bits)
            else:
                directory, name = _split(src.path)
                ident = self.resolve(directory)
                if ident is None:
                    self.pending.add(directory)
                    continue
                self.plan.srcs[(ident[0], ident[1], name)] = (sid, bits)

    # -- whitelists ----------------------------------------------------------------------

    def whitelists(self) -> dict[Source, int]:
        """Sets the confine flags of each kernel-enforced whitelist; returns the per-source bits."""
        per_source: dict[Source, int] = {}
        kernel_postures = set()
        for cat in sorted(self.rs.whitelists, key=lambda c: c.value):
            allows = [r for r in self.rs.rules if r.category is cat and r.action is Action.ALLOW]
            missing = [r for r in allows if r.id not in self.kernel]
            posture = self.rs.postures.get(cat, Posture.AUDIT)
            if missing:
                ids = ", ".join(str(r.id) for r in missing[:5])
                self.notes.append(
                    f"{cat.value} whitelist: default posture ({posture.value}) applied by the eBPF monitor, "
                    f"not the kernel: Allow rule(s) {ids} are not in the kernel, which would deny what they allow"
                )
                # the whole whitelist stays with the monitor; its Allow rules mean nothing in the kernel
                self.withdraw({r.id for r in allows if r.id in self.kernel}, cat)
                continue
            kernel_postures.add(cat)
            everyone = any(not r.sources for r in allows)
            for op in _CATEGORY_OPS[cat]:
                f = abi.F_CONFINE_ALL if everyone else abi.F_CONFINE_SCOPED
                if posture is Posture.BLOCK:
                    f |= abi.F_POSTURE_BLOCK
                self.plan.op_flags[op] |= f
            if not everyone:
                for r in allows:
                    for s in r.sources:
                        per_source[s] = per_source.get(s, 0) | _CATEGORY_BIT[cat]
        self.plan.kernel_postures = frozenset(kernel_postures)
        return per_source

    def withdraw(self, ids: set[int], cat: Category) -> None:
        for table in (self.plan.files, self.plan.dirs, self.plan.codes):
            for key in list(table):
                table[key] = [r for r in table[key] if r.rule_id not in ids]
                if not table[key]:
                    del table[key]
        self.kernel -= ids
        for rid in ids:
            old = self.statuses[rid]
            self.statuses[rid] = RuleStatus(rid, old.policy, "audit-only", MONITOR,
                                            f"the {cat.value} whitelist is applied by the eBPF monitor (see notes)")

    # -- the agent's own files -----------------------------------------------------------

    def protections(self) -> None:
        """PROTECT markers for everyone (scope 0), where some kernel rule could deny."""
        can_deny = {op: False for op in abi.Op}
        for r in self.rs.rules:
            if r.id in self.kernel and r.action is Action.BLOCK:
                can_deny[_OP[r.operation]] = True
        for op in abi.Op:
            if self.plan.op_flags[op] & abi.F_POSTURE_BLOCK:
                can_deny[op] = True
        marker = Ref(0, abi.Action.PROTECT, 0)
        if can_deny[abi.Op.PROCESS]:
            for path in self.protect.programs:
                self._protect_file(abi.Op.PROCESS, path, marker)
        if can_deny[abi.Op.FILE]:
            for path in self.protect.files:
                self._protect_file(abi.Op.FILE, path, marker)
            for d in self.protect.dirs:
                ident = self.resolve(d if d.endswith("/") else d + "/")
                if ident is not None:
                    self.plan.dirs.setdefault((abi.Op.FILE, 0, ident[0], ident[1]), []).insert(
                        0, Ref(0, abi.Action.PROTECT, abi.RECURSIVE))
                    # the directory itself (opening it to list it) is held by its parent
                    self._protect_file(abi.Op.FILE, d.rstrip("/"), marker)

    def _protect_file(self, op: int, path: str, marker: Ref) -> None:
        directory, name = _split(path)
        ident = self.resolve(directory)
        if ident is not None and name:
            self.plan.files.setdefault((op, 0, ident[0], ident[1], name), []).insert(0, marker)

    # -- flags -------------------------------------------------------------------------

    def flags(self) -> None:
        p = self.plan
        for table, bit in ((p.files, abi.F_FILES), (p.dirs, abi.F_DIRS), (p.codes, 0)):
            for key in table:
                op, scope = key[0], key[1]
                p.op_flags[op] |= abi.F_GLOBAL if scope == 0 else abi.F_SCOPED
                if table is p.files and key[2] == 0 and key[3] == 0:
                    p.op_flags[op] |= abi.F_NAMES
                else:
                    p.op_flags[op] |= bit
        if p.srcs:
            p.flags |= abi.C_SOURCES
        if p.srcdirs:
            p.flags |= abi.C_SOURCE_DIRS
        for table in (p.files, p.dirs, p.codes):
            assert all(len(refs) <= abi.REFS for refs in table.values()), "a key holds too many rules"


def plan(ruleset: RuleSet, resolve: Resolver, protect: Protection = Protection()) -> BankPlan:
    """The contents of one bank for `ruleset`."""
    b = _Builder(ruleset, resolve, protect)
    b.scope_ids()
    for rule in ruleset.rules:
        b.add_rule(rule)
    confine = b.whitelists()
    b.add_sources(confine)
    b.protections()
    b.flags()
    p = b.plan
    p.kernel_rules = frozenset(b.kernel)
    p.statuses = tuple(b.statuses[r.id] for r in ruleset.rules)
    p.notes = tuple(b.notes)
    p.pending = tuple(sorted(b.pending))
    return p


# -- encoding for the maps ----------------------------------------------------------------


def _refs_value(refs: Iterable[Ref]) -> bytes:
    v = abi.Refs()
    refs = list(refs)[: abi.REFS]
    v.count = len(refs)
    for i, r in enumerate(refs):
        v.ref[i] = abi.Ref(r.rule_id, r.action, r.flags)
    return bytes(v)


def _name_bytes(name: str) -> tuple[bytes, int]:
    raw = name.encode("utf-8", "surrogateescape")
    return raw[: abi.NAME - 1], min(len(raw), 0xFFFF)


def file_key(bank: int, op: int, scope: int, dev: int, ino: int, name: str) -> bytes:
    raw, length = _name_bytes(name)
    return bytes(abi.FileKey(bank=bank, op=op, name_len=length, scope=scope, dev=dev, ino=ino, name=raw))


def dir_key(bank: int, op: int, scope: int, dev: int, ino: int) -> bytes:
    return bytes(abi.DirKey(bank=bank, op=op, scope=scope, dev=dev, ino=ino))


def code_key(bank: int, op: int, scope: int, code: int) -> bytes:
    return bytes(abi.CodeKey(bank=bank, op=op, code=code, scope=scope))


def encode(p: BankPlan, bank: int) -> dict[str, list[tuple[bytes, bytes]]]:
    """Map name -> [(key, value)] for `bank`."""
    return {
        "lsm_files": [(file_key(bank, *k), _refs_value(v)) for k, v in sorted(p.files.items())],
        "lsm_dirs": [(dir_key(bank, *k), _refs_value(v)) for k, v in sorted(p.dirs.items())],
        "lsm_codes": [(code_key(bank, *k), _refs_value(v)) for k, v in sorted(p.codes.items())],
        "lsm_srcs": [
            (file_key(bank, 0, 0, k[0], k[1], k[2]), bytes(abi.Scope(scope, confine)))
            for k, (scope, confine) in sorted(p.srcs.items())
        ],
        "lsm_srcdirs": [
            (dir_key(bank, 0, 0, k[0], k[1]), bytes(abi.SrcDir(abi.Scope(*d), abi.Scope(*r))))
            for k, (d, r) in sorted(p.srcdirs.items())
        ],
    }


def cfg_value(p: BankPlan, generation: int) -> bytes:
    c = abi.Cfg(generation=generation, flags=p.flags)
    for i, f in enumerate(p.op_flags):
        c.op_flags[i] = f
    return bytes(c)

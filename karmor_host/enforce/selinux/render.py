"""RuleSet + facts -> one CIL module, the labels it needs, rule statuses and an AVC index. Pure.

The design (docs/selinux.md has the why):
- **Denials are constraints.** SELinux allow rules only add; a module cannot take away what an
  unconfined domain's attribute rules grant. A `constrain` statement can: it denies a permission
  whenever its expression is false, for every domain, whatever the allow rules say. Each Block
  rule becomes one constraint over the types of its targets (and, with fromSource, the domain
  of its source programs); an enforced whitelist becomes a constraint that denies everything
  but the allowed types, classes or capabilities.
- **Labelled files keep their meaning.** A protected file (or a fromSource program) gets a type
  of its own so that constraints can name it. That type is a *clone* of the file's original type:
  same attributes, same roles, and a copy of every rule that names the original type directly.
  Whoever could use the file before can still do so; only karmor's constraints differ. One type
  per (original type, set of rules covering the file).
- **fromSource programs run in a domain of their own.** On exec of its relabelled binary from an
  unconfined domain, a program enters `karmor_s_<h>_t`, a clone of the policy's unconfined
  domain; the programs it starts enter `karmor_c_<h>_t` (another clone), so they are not held to
  rules that name their parent.
- Audit rules and what SELinux cannot express stay with the eBPF monitor; each such rule gets a
  status line saying why.
Output is deterministic: sorted, content-hashed names, golden-tested.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field

from karmor_host.enforce.base import RuleStatus
from karmor_host.enforce.selinux.facts import (
    AV_KINDS,
    MISSING,
    Inode,
    Inventory,
    PolicyFacts,
    TeRule,
    TypeInfo,
    Wanted,
)
from karmor_host.policy.ruleset import Action, Category, Operation, Posture, Rule, RuleSet, TargetKind

MODULE = "karmor"
PREFIX = "karmor_"
SELINUX = "SELinux"
MONITOR = "eBPF Monitor"
ALL_TYPES = "karmor_types"  # every karmor object and exec type
ALL_DOMAINS = "karmor_domains"
CHILD_ENTRY = "karmor_child_entry"  # what a fromSource program's children may be started from
UNLABELED = "unlabeled_t"  # never an entrypoint (a base policy neverallow)
INHERITED = "karmor_inherited_exec"  # exec types the unconfined domains' attributes transition from
MAX_TREE = 5000  # files a directory rule may relabel; more and it stays with the monitor

FILE_CLASSES = ("file", "chr_file", "blk_file", "sock_file", "fifo_file")
READ_PERMS = ("open", "read")
WRITE_PERMS = ("write", "append", "create")
CAP_CLASSES = (("capability", "cap_userns"), ("capability2", "cap2_userns"))
AGENT_PERF = ("cpu", "kernel", "open", "read", "tracepoint", "write")
AUDITED = "audited by SELinux (auditallow): one granted AVC record per use"
AUDITED_POSTURE = Category.CAPABILITIES  # the audit posture SELinux reports (see _audited_by_selinux)
SELF_ONLY = frozenset({"capability", "capability2", "cap_userns", "cap2_userns", "process2"})
CAPABILITY2 = ("mac_override", "mac_admin", "syslog", "wake_alarm", "block_suspend", "audit_read",
               "perfmon", "bpf", "checkpoint_restore")
# Policy protocol -> socket classes (what the kernel calls a socket of that protocol with the
# extended_socket_class policy capability), and how exact that is.
PROTOCOLS: dict[str, tuple[str, ...]] = {
    "tcp": ("tcp_socket",),
    "udp": ("udp_socket",),
    "icmp": ("icmp_socket", "rawip_socket"),
    "icmpv6": ("icmp_socket", "rawip_socket"),
    "raw": ("rawip_socket", "packet_socket"),
    "sctp": ("sctp_socket",),
    "dccp": ("dccp_socket",),
    "packet": ("packet_socket",),
    "stream": ("tcp_socket", "unix_stream_socket", "sctp_socket"),
    "dgram": ("udp_socket", "unix_dgram_socket", "icmp_socket"),
}
PROTOCOL_NOTES = {
    "tcp": "as tcp_socket: raw sockets with IPPROTO_TCP are rawip_socket and not covered",
    "udp": "as udp_socket: raw sockets with IPPROTO_UDP are rawip_socket and not covered",
    "icmp": ("as icmp_socket and rawip_socket: SELinux does not see a raw socket's protocol, so this also "
             "covers the program's other raw IP sockets and ICMPv6"),
    "icmpv6": ("as icmp_socket and rawip_socket: SELinux does not see a raw socket's protocol, so this also "
               "covers the program's other raw IP sockets and IPv4 ICMP"),
    "raw": "as rawip_socket and packet_socket: raw netlink sockets have classes of their own and are not covered",
    "stream": ("as tcp_socket, unix_stream_socket and sctp_socket: AF_UNIX seqpacket sockets are "
               "unix_stream_socket too; stream sockets of other families are not covered"),
    "dgram": "as udp_socket, unix_dgram_socket and icmp_socket: datagram sockets of other families are not covered",
    "all": "as every socket class of the policy",
}
NO_PROTOCOL = ("SELinux socket classes do not separate {protocol} sockets from others "
               "(AF_UNIX seqpacket sockets are unix_stream_socket; RDM sockets belong to their family's class)")
_FILECON_KIND = {"file": "file", "dir": "dir", "lnk_file": "symlink", "chr_file": "char",
                 "blk_file": "block", "sock_file": "socket", "fifo_file": "pipe"}


def h(*parts: str, size: int = 5) -> str:
    return hashlib.blake2b("\0".join(parts).encode(), digest_size=size).hexdigest()


# --- what is expressible --------------------------------------------------------------------

def _audited_by_selinux(rule: Rule) -> bool:
    """Audit rules SELinux reports itself: capabilities of fromSource programs. An auditallow
    rule on the program's domain logs each use precisely, and the eBPF monitor sees
    capabilities only from Linux 6.14 on (capability/cap_capable). Other Audit rules are the
    monitor's: auditing a file would mean relabelling it, for nothing it does not see."""
    return rule.action is Action.AUDIT and rule.operation is Operation.CAPABILITIES and bool(rule.sources)


def why_not(rule: Rule) -> str:
    """Why SELinux cannot express `rule` whatever the files and policy ("" when it can)."""
    if rule.operation is Operation.SYSCALL:
        return "syscall rules are audit-only: the eBPF monitor reports them"
    if rule.kind is TargetKind.PATTERN:
        return ("SELinux decides on labels, not paths: a pattern also names files that do not exist yet, "
                "and a new file takes its directory's label, not one chosen by its name")
    if rule.kind is TargetKind.EXECNAME:
        return "SELinux decides on labels, not names: a bare program name matches a binary anywhere"
    if rule.owner_only:
        return "SELinux constraints cannot compare a process's user with a file's owner (ownerOnly)"
    if any(s.is_dir for s in rule.sources):
        return "a fromSource directory has no binary of its own to label"
    if rule.operation is Operation.NETWORK:
        proto = rule.target.lower()
        if proto != "all" and proto not in PROTOCOLS:
            return NO_PROTOCOL.format(protocol=proto)
    return ""


def wanted(ruleset: RuleSet) -> Wanted:
    """The files the backend must scan before `plan` can decide: targets and fromSource programs
    of every rule SELinux might enforce."""
    paths: set[str] = set()
    trees: set[tuple[str, bool]] = set()
    for r in ruleset.rules:
        if (r.action is Action.AUDIT and not _audited_by_selinux(r)) or why_not(r) \
                or (r.action is Action.ALLOW and not r.sources):
            continue  # (a host-wide whitelist is never SELinux's: see plan)
        if r.operation in (Operation.FILE, Operation.PROCESS):
            if r.kind is TargetKind.PATH:
                paths.add(r.target)
            elif r.kind is TargetKind.DIR:
                trees.add((r.target, r.recursive))
        paths.update(s.path for s in r.sources)
    return Wanted(frozenset(paths), frozenset(trees))


# --- the plan ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Label:
    path: str
    kind: str
    original: str  # the original context, restored when the module goes
    context: str  # what karmor sets
    type: str  # karmor type
    dev: int = 0
    ino: int = 0


@dataclass(frozen=True)
class Denial:
    """One way a constraint can deny, for attributing AVC records to rules."""

    perms: frozenset[str]
    rule_id: int  # 0: a category's default posture (PolicyName DefaultPosture)
    operation: Operation
    category: Category | None


@dataclass(frozen=True)
class Index:
    """AVC (scontext type, tcontext type, class, permission) -> the rule that denied it."""

    denials: dict[tuple[str, str, str], tuple[Denial, ...]] = field(default_factory=dict)  # "*": any
    audits: dict[tuple[str, str, str], tuple[Denial, ...]] = field(default_factory=dict)  # auditallow
    sources: dict[str, str] = field(default_factory=dict)  # domain -> the fromSource program
    children: frozenset[str] = frozenset()  # child domains (their parent is the source)
    files: dict[str, tuple[tuple[str, int], ...]] = field(default_factory=dict)  # type -> (path, ino)

    def lookup(self, stype: str, ttype: str, tclass: str, perm: str, granted: bool = False) -> Denial | None:
        """The rule whose constraint denied this (granted: whose auditallow audited it)."""
        table = self.audits if granted else self.denials
        for key in ((stype, ttype, tclass), (stype, "*", tclass), ("*", ttype, tclass), ("*", "*", tclass)):
            for d in table.get(key, ()):
                if perm in d.perms:
                    return d
        return None


@dataclass(frozen=True)
class Plan:
    cil: str
    labels: tuple[Label, ...]
    rules: tuple[RuleStatus, ...]  # one line per rule of the rule set, in its order
    whitelists: frozenset[Category]  # whitelists SELinux enforces (posture block)
    index: Index
    notes: tuple[str, ...] = ()
    paths: dict[int, tuple[str, ...]] = field(default_factory=dict)  # rule id -> files it needs labelled
    support: bool = False  # the module grants the agent's domain what its monitor needs
    audited: frozenset[Category] = frozenset()  # categories whose audit posture SELinux reports

    @property
    def needed(self) -> bool:
        """Whether the module has anything to install."""
        return bool(self.reported()) or self.support

    def reported(self) -> frozenset[int]:
        """Rule ids whose alerts come from SELinux's own AVC records."""
        return frozenset(s.rule_id for s in self.rules if s.by == SELINUX and s.mode == "enforced")

    def text(self) -> str:
        return self.cil

    def digest(self) -> str:
        """A checksum of what the module says, comments left out: a new reason in a comment is
        no reason to rebuild the policy."""
        body = "\n".join(line.split("  ; ", 1)[0] for line in self.cil.splitlines()
                         if line.strip() and not line.lstrip().startswith(";"))
        return hashlib.sha256(body.encode()).hexdigest()


@dataclass
class _Type:
    name: str
    original: str
    keys: frozenset[str]
    inodes: list[Inode]
    source: str = ""  # set when this is a fromSource program's exec type


class _Scope:
    """A fromSource program: its domains."""

    def __init__(self, path: str) -> None:
        self.path = path
        tag = h(path)
        self.domain = f"{PREFIX}s_{tag}_t"
        self.child = f"{PREFIX}c_{tag}_t"
        self.exec_type = ""


def _target_key(rule: Rule) -> str:
    if rule.kind is TargetKind.DIR:
        return f"dir:{rule.target}:{'r' if rule.recursive else 'd'}"
    return f"path:{rule.target}"


def _key_attr(key: str) -> str:
    return f"{PREFIX}k_{h(key)}"


def _target_inodes(rule: Rule, inv: Inventory) -> tuple[list[Inode], str]:
    """The inodes a file/process rule covers, or why they cannot all be labelled."""
    if rule.kind is TargetKind.PATH:
        inode = inv.get(rule.target)
        return ([inode], _unlabelable(inode))
    tree = inv.trees.get((rule.target, rule.recursive))
    top = inv.get(rule.target.rstrip("/") or "/")
    if tree is None or top.kind == MISSING:
        return [], f"{rule.target} does not exist: there is nothing to label"
    if tree.truncated or len(tree.paths) > MAX_TREE:
        return [], f"{rule.target} holds more than {MAX_TREE} files: too many to relabel"
    inodes = [top]
    for p in tree.paths:
        node = inv.get(p)
        if node.kind == "dir" and not rule.recursive:
            continue  # a subdirectory's contents are not covered
        if node.kind == "lnk_file":
            continue  # symlinks are followed: their targets decide
        inodes.append(node)
    for node in inodes:
        why = _unlabelable(node)
        if why:
            return [], why
    return inodes, ""


def _unlabelable(inode: Inode) -> str:
    if inode.kind == MISSING:
        return f"{inode.path} does not exist: there is nothing to label (applied again when policies change)"
    if not inode.labelable:
        return f"cannot label {inode.path}: {inode.why or 'its file system keeps no SELinux labels'}"
    if not inode.type:
        return f"cannot label {inode.path}: its current context is unknown"
    if inode.type == UNLABELED:
        return f"cannot label {inode.path}: its file system gives it no label (unlabeled_t)"
    return ""


def _source_problem(path: str, inv: Inventory, facts: PolicyFacts) -> str:
    inode = inv.get(path)
    why = _unlabelable(inode)
    if why:
        return f"fromSource {why}"
    if inode.kind != "file":
        return f"fromSource {path} is not a regular file"
    if not facts.reference or facts.reference not in facts.types:
        return "this policy has no unconfined domain to model fromSource programs on"
    info = facts.type(inode.type)
    owners = sorted({f"{r.result} (from {r.source})" for r in info.rules
                     if r.kind == "typetransition" and r.tclass == "process" and r.target == inode.type
                     and not r.filename and r.source in facts.unconfined and r.result not in facts.unconfined})
    if owners:
        # (a transition from one unconfined domain to another, init_t -> initrc_t for instance,
        # is replaced by karmor's own without confining anything less)
        return (f"fromSource {path} ({inode.type}) runs in a confined domain when unconfined domains start it: "
                f"{', '.join(owners[:3])}{' ...' if len(owners) > 3 else ''}; relabelling it would take it out "
                "of that domain")
    return ""


def _inherited(facts: PolicyFacts) -> list[str]:
    """Exec types the reference domain (and so its copies) already starts other domains from."""
    ref = facts.type(facts.reference)
    return sorted({r.target for r in ref.rules if r.kind == "typetransition" and r.tclass == "process"
                   and r.source == ref.name and not r.filename})


def _protected(path: str, protected: tuple[str, ...]) -> str:
    for p in protected:
        if path == p or (p.endswith("/") and path.startswith(p)):
            return p
    return ""


def plan(ruleset: RuleSet, facts: PolicyFacts, inv: Inventory, protected: tuple[str, ...] = (),
         agent_domain: str = "") -> Plan:
    """`protected`: files (and directories, ending in /) the agent itself needs; a rule that would
    label one of them is left to the monitor, so that no policy can stop the agent.
    `agent_domain`: the agent's own domain, granted what the eBPF monitor needs (see AGENT_PERF)."""
    # 1. which rules could SELinux enforce, and why not
    reasons: dict[int, str] = {}
    covers: dict[int, list[Inode]] = {}
    for r in ruleset.rules:
        audits = _audited_by_selinux(r)
        why = why_not(r) if r.action is not Action.AUDIT or r.operation is Operation.SYSCALL or audits else ""
        host_wide_allow = r.action is Action.ALLOW and not r.sources  # its whitelist says why
        if not why and (r.action is not Action.AUDIT or audits) and not host_wide_allow:
            why = _dynamic_problem(r, facts, inv, covers)
        if not why and (r.action is not Action.AUDIT or audits) and protected:
            hit = next(((n.path, p) for n in [*covers.get(r.id, ()), *(inv.get(s.path) for s in r.sources)]
                        if (p := _protected(n.path, protected))), None)
            if hit:
                why = f"karmor-host itself needs {hit[0]} (under {hit[1]}): relabelling it could stop the agent"
        reasons[r.id] = why

    # 2. whitelists: all Allow rules of a category expressible, each scoped to fromSource programs
    allows: dict[Category, list[Rule]] = {}
    for r in ruleset.rules:
        if r.action is Action.ALLOW and r.category is not None:
            allows.setdefault(r.category, []).append(r)
    wl_reason: dict[Category, str] = {}
    for c in sorted(ruleset.whitelists, key=lambda c: c.value):
        if ruleset.postures.get(c) is not Posture.BLOCK and c is not AUDITED_POSTURE:
            continue
        bad = next((r for r in allows.get(c, ()) if reasons[r.id]), None)
        glob = next((r for r in allows.get(c, ()) if not r.sources), None)
        if glob is not None:
            wl_reason[c] = (f"rule {glob.id} allows without fromSource, which makes every process a whitelist "
                            "subject: an SELinux constraint would then also hold the kernel's threads, init and "
                            "the agent itself to it")
        elif bad is not None:
            wl_reason[c] = f"rule {bad.id} ({bad.target}): {reasons[bad.id]}"
        else:
            wl_reason[c] = ""
    ok = {c for c, why in wl_reason.items() if not why}
    enforced_wl = frozenset(c for c in ok if ruleset.postures.get(c) is Posture.BLOCK)
    audited_wl = frozenset(c for c in ok if ruleset.postures.get(c) is not Posture.BLOCK)

    expressed = [r for r in ruleset.rules if not reasons[r.id] and (
        r.action is Action.BLOCK or (r.action is Action.ALLOW and r.category in ok)
        or (r.action is Action.AUDIT and _audited_by_selinux(r)))]

    # 3. types: one per (original type, keys) of every labelled inode
    scopes = {p: _Scope(p) for p in sorted({s.path for r in expressed for s in r.sources})}
    keys_of: dict[str, set[str]] = {}
    node_of: dict[str, Inode] = {}
    for r in expressed:
        if r.operation in (Operation.FILE, Operation.PROCESS):
            for node in covers[r.id]:
                keys_of.setdefault(node.path, set()).add(_target_key(r))
                node_of[node.path] = node
    for path in scopes:
        keys_of.setdefault(path, set()).add(f"src:{path}")
        node_of[path] = inv.get(path)
    # hard links: one inode, one label
    by_inode: dict[tuple[int, int], list[str]] = {}
    for path, node in node_of.items():
        if node.ino:
            by_inode.setdefault((node.dev, node.ino), []).append(path)
    for paths in by_inode.values():
        union = set().union(*(keys_of[p] for p in paths))
        for p in paths:
            keys_of[p] = union
    types: dict[str, _Type] = {}
    type_of: dict[str, str] = {}
    for path in sorted(keys_of):
        node = node_of[path]
        keys = frozenset(keys_of[path])
        name = f"{PREFIX}{h(node.type, *sorted(keys))}_t"
        t = types.setdefault(name, _Type(name, node.type, keys, []))
        t.inodes.append(node)
        type_of[path] = name
        src = next((k[4:] for k in sorted(keys) if k.startswith("src:")), "")
        if src:
            t.source = src
            scopes[src].exec_type = name
    key_types: dict[str, list[str]] = {}
    for t in types.values():
        for k in t.keys:
            key_types.setdefault(k, []).append(t.name)

    # 4. the module
    w = _Writer(facts)
    ctx = _Ctx(facts, scopes, types, key_types, w)
    notes = _notes(ruleset, facts, scopes)
    w.head(ruleset, reasons, wl_reason, notes, {r.id for r in expressed})
    ctx.declare()
    support = ctx.agent_support(agent_domain)
    denials: dict[tuple[str, str, str], list[Denial]] = {}
    audits: dict[tuple[str, str, str], list[Denial]] = {}
    for r in expressed:
        if r.action is Action.BLOCK:
            ctx.block(r, denials)
        elif r.action is Action.AUDIT:
            ctx.audit(r, audits)
    for c in sorted(ok, key=lambda c: c.value):
        for path in sorted({s.path for r in allows[c] for s in r.sources}):
            mine = [r for r in allows[c] if any(s.path == path for s in r.sources)]
            if c in enforced_wl:
                ctx.whitelist(c, scopes[path], mine, denials)
            else:
                ctx.audit_whitelist(c, scopes[path], mine, audits)

    labels = tuple(
        Label(p, node_of[p].kind, node_of[p].context, _with_type(node_of[p].context, type_of[p]), type_of[p],
              node_of[p].dev, node_of[p].ino)
        for p in sorted(type_of)
    )
    files: dict[str, list[tuple[str, int]]] = {}
    for lab in labels:
        files.setdefault(lab.type, []).append((lab.path, lab.ino))
    index = Index(
        denials={k: tuple(v) for k, v in sorted(denials.items())},
        audits={k: tuple(v) for k, v in sorted(audits.items())},
        sources={**{s.domain: s.path for s in scopes.values()}, **{s.child: s.path for s in scopes.values()}},
        children=frozenset(s.child for s in scopes.values()),
        files={k: tuple(v) for k, v in sorted(files.items())},
    )
    statuses = tuple(_status(r, reasons[r.id], r in expressed, ruleset, wl_reason) for r in ruleset.rules)
    notes += [f"the {c.value} audit posture of fromSource programs is audited by SELinux (auditallow)"
              for c in sorted(audited_wl, key=lambda c: c.value)]
    paths = {r.id: tuple(sorted({n.path for n in covers.get(r.id, ())} | {s.path for s in r.sources}))
             for r in expressed}
    return Plan(w.text(), labels, statuses, enforced_wl, index, tuple(notes), paths, support, audited_wl)


def _dynamic_problem(r: Rule, facts: PolicyFacts, inv: Inventory, covers: dict[int, list[Inode]]) -> str:
    """What stops this rule on this host: labels that cannot be set, a missing class."""
    for s in r.sources:
        why = _source_problem(s.path, inv, facts)
        if why:
            return why
    op = r.operation
    if op in (Operation.FILE, Operation.PROCESS):
        nodes, why = _target_inodes(r, inv)
        covers[r.id] = nodes
        return why
    if op is Operation.NETWORK:
        classes = _protocol_classes(r.target.lower(), facts)
        if not classes:
            return NO_PROTOCOL.format(protocol=r.target.lower())
        return ""
    if op is Operation.CAPABILITIES:
        cls, perm = _capability(r.target)
        if perm not in facts.classes.get(cls, ()):
            return f"this policy has no {cls} permission {perm}"
    return ""


def _protocol_classes(proto: str, facts: PolicyFacts) -> tuple[str, ...]:
    if proto == "all":
        return tuple(sorted(c for c in facts.classes if c.endswith("socket")))
    ext = "extended_socket_class" in facts.polcaps
    names = PROTOCOLS.get(proto, ())
    if not ext:
        # Without the capability, SCTP, ICMP and DCCP sockets are rawip_socket (or dccp_socket).
        names = tuple(n for n in names if n not in ("icmp_socket", "sctp_socket"))
    return tuple(n for n in names if facts.has_class(n))


def _capability(name: str) -> tuple[str, str]:
    cap = name.lower().removeprefix("cap_")
    return ("capability2" if cap in CAPABILITY2 else "capability"), cap


def _with_type(context: str, new_type: str) -> str:
    parts = context.split(":", 3)
    parts[2] = new_type
    return ":".join(parts)


def _notes(rs: RuleSet, facts: PolicyFacts, scopes: dict[str, _Scope]) -> list[str]:
    notes = []
    if scopes:
        notes.append(
            f"fromSource programs are confined when an unconfined domain ({facts.transition_from}) starts "
            "them from now on; running copies keep their domain until they are started again, and "
            "programs started by confined domains keep those domains")
    return notes


def _status(rule: Rule, reason: str, expressed: bool, rs: RuleSet, wl_reason: dict[Category, str]) -> RuleStatus:
    if expressed:
        note = PROTOCOL_NOTES.get(rule.target.lower(), "") if rule.operation is Operation.NETWORK else ""
        if rule.action is Action.AUDIT:
            note = AUDITED
        elif rule.action is Action.ALLOW and rs.postures.get(rule.category) is not Posture.BLOCK:
            note = "the audit posture: SELinux audits what the whitelist misses (auditallow)"
        return RuleStatus(rule.id, rule.policy, "enforced", SELINUX, note)
    if rule.action is Action.BLOCK:
        return RuleStatus(rule.id, rule.policy, "audit-only", MONITOR, f"{reason}; reported as Audit (Block)")
    if rule.action is Action.AUDIT:
        return RuleStatus(rule.id, rule.policy, "monitor", MONITOR,
                          reason or "Audit rules are reported by the eBPF monitor (no relabelling for them)")
    category = rule.category
    if category is not None and rs.postures.get(category) is not Posture.BLOCK:
        return RuleStatus(rule.id, rule.policy, "monitor", MONITOR,
                          "default posture audit: the eBPF monitor reports what the whitelist misses")
    why = reason or (wl_reason.get(category, "") if category else "")
    return RuleStatus(rule.id, rule.policy, "audit-only", MONITOR,
                      f"the {category.value if category else ''} whitelist cannot be enforced: {why}; "
                      "misses are reported as Audit (Allow)")


# --- CIL ----------------------------------------------------------------------------------------

def _q(path: str) -> str:
    return '"' + path.replace('"', '\\"') + '"'


def _regex(path: str) -> str:
    """An exact path as a file_contexts regular expression."""
    out = []
    for ch in path:
        out.append("\\" + ch if ch in ".^$*+?()[]{}|\\" else ch)
    return "".join(out)


def _perms(perms: Iterable[str]) -> str:
    return "(" + " ".join(sorted(set(perms))) + ")"


def _cond_expr(tokens: tuple[str, ...]) -> str:
    """Postfix boolean condition -> CIL expression."""
    ops = {"&&": "and", "||": "or", "^": "xor", "==": "eq", "!=": "neq"}
    stack: list[str] = []
    for tok in tokens:
        if tok == "!":
            stack.append(f"(not {stack.pop()})")
        elif tok in ops:
            b, a = stack.pop(), stack.pop()
            stack.append(f"({ops[tok]} {a} {b})")
        else:
            stack.append(tok)
    if len(stack) != 1:
        raise ValueError(f"malformed condition {tokens!r}")
    return stack[0]


class _Writer:
    def __init__(self, facts: PolicyFacts) -> None:
        self.facts = facts
        self.lines: list[str] = []
        self.optionals: dict[tuple[str, ...], list[str]] = {}

    def out(self, *lines: str) -> None:
        self.lines.extend(lines)

    def optional(self, needs: Iterable[str], stmt: str) -> None:
        """A statement that names types, attributes or roles of other modules: kept in an
        optional block, so that removing that module does not break this one."""
        key = tuple(sorted(set(needs)))
        if key:
            self.optionals.setdefault(key, []).append(stmt)
        else:
            self.out(stmt)

    def head(self, rs: RuleSet, reasons: dict[int, str], wl: dict[Category, str], notes: list[str],
             expressed: set[int]) -> None:
        self.out(
            f"; Generated by karmor-host (SELinux enforcer) for policy '{self.facts.name}'. Installed with",
            f"; `semodule -i` as module {MODULE}; comments name rule ids. Do not edit.",
        )
        self.out(*(f"; note: {n}" for n in notes))
        others = [(r, reasons[r.id]) for r in rs.rules
                  if r.id not in expressed and (reasons[r.id] or r.action is Action.AUDIT)]
        if others:
            self.out(f"; {len(others)} rule(s) are not in this module (the eBPF monitor reports them):")
            for r, why in others:
                self.out(f";   {r.id} {r.policy}: {r.action.value} {r.operation.value} {r.target}: "
                         f"{why or 'Audit rules are reported by the eBPF monitor'}")
        for c, why in sorted(wl.items(), key=lambda kv: kv[0].value):
            if why:
                self.out(f"; the {c.value} whitelist is not enforced here: {why}")

    def text(self) -> str:
        out = list(self.lines)
        if self.optionals:
            out.append("")
            out.append("; --- rules copied from the original types, each kept only while what it names exists")
            for n, (needs, stmts) in enumerate(sorted(self.optionals.items())):
                out.append(f"(optional {PREFIX}o{n}  ; {' '.join(needs)}")
                out.extend(f"    {s}" for s in stmts)
                out.append(")")
        return "\n".join(out) + "\n"


class _Ctx:
    def __init__(self, facts: PolicyFacts, scopes: dict[str, _Scope], types: dict[str, _Type],
                 key_types: dict[str, list[str]], w: _Writer) -> None:
        self.facts = facts
        self.scopes = scopes
        self.types = types
        self.key_types = key_types
        self.w = w
        self.ours: set[str] = set(types) | {s.domain for s in scopes.values()} | {s.child for s in scopes.values()}
        self.file_classes = tuple(c for c in FILE_CLASSES if facts.has_class(c))

    # --- the agent itself -------------------------------------------------------------------
    def agent_support(self, domain: str) -> bool:
        """The eBPF monitor attaches BPF programs to tracepoints through perf events; refpolicy
        gives even its unconfined domains no `perf_event tracepoint` (Fedora's policy does).
        The module grants the agent's own domain what that takes."""
        have = self.facts.classes.get("perf_event", ())
        perms = [p for p in AGENT_PERF if p in have]
        if not domain or "tracepoint" not in perms:
            return False
        self.w.out("", f"; the agent ({domain}): what its eBPF monitor needs to attach to tracepoints")
        self.w.optional([domain], f"(allow {domain} self (perf_event {_perms(perms)}))")
        return True

    # --- declarations -----------------------------------------------------------------------
    def declare(self) -> None:
        w, f = self.w, self.facts
        w.out("", f"(typeattribute {ALL_TYPES})", f"(typeattribute {ALL_DOMAINS})")
        for t in sorted(self.types.values(), key=lambda t: t.name):
            paths = ", ".join(n.path for n in t.inodes[:3]) + (f" (+{len(t.inodes) - 3})" if len(t.inodes) > 3 else "")
            w.out("", f"; {t.name}: {t.original} for {paths}; covered by {', '.join(sorted(t.keys))}")
            w.out(f"(type {t.name})", f"(roletype object_r {t.name})", f"(typeattributeset {ALL_TYPES} ({t.name}))")
            self.clone(f.type(t.original), t.name, domain=False, exec_of=t.source)
            for node in t.inodes:
                con = self.filecon(node, t.name)
                if con:
                    w.out(con)
            if "filesystem_type" in f.attributes:
                w.out(f"(allow {t.name} filesystem_type (filesystem (associate)))")
        for key, names in sorted(self.key_types.items()):
            if key.startswith("src:"):
                continue
            w.out(f"(typeattribute {_key_attr(key)})  ; {key}",
                  f"(typeattributeset {_key_attr(key)} ({' '.join(sorted(names))}))")
        if self.scopes:
            self.declare_domains()

    def filecon(self, node: Inode, name: str) -> str:
        """A file_contexts entry, so that a relabel (restorecon, fixfiles) keeps the label."""
        parts = node.context.split(":", 3)
        if len(parts) != 4 or parts[3] not in ("s0", "s0-s0") or node.kind not in _FILECON_KIND:
            return ""
        return (f"(filecon {_q(_regex(node.path))} {_FILECON_KIND[node.kind]} "
                f"({parts[0]} object_r {name} ((s0) (s0))))")

    def declare_domains(self) -> None:
        w, f = self.w, self.facts
        ref = f.type(f.reference)
        w.out("", f"; the children of fromSource programs are started from anything that is not a domain, "
                  f"not a karmor type and not already a transition of {f.reference}'s attributes",
              f"(typeattribute {INHERITED})",
              f"(typeattribute {CHILD_ENTRY})",
              f"(typeattributeset {CHILD_ENTRY} (and (not (domain)) (not ({ALL_TYPES} {INHERITED} {UNLABELED}))))")
        for t in _inherited(f):
            w.optional([t], f"(typeattributeset {INHERITED} ({t}))")
        for s in self.scopes.values():
            w.out("", f"; fromSource {s.path}: runs in {s.domain} (a copy of {f.reference}) when an unconfined "
                      f"domain starts it from {s.exec_type}; its children run in {s.child}")
            for d in (s.domain, s.child):
                w.out(f"(type {d})", f"(typeattributeset {ALL_DOMAINS} ({d}))")
                self.clone(ref, d, domain=True)
            w.out(f"(typetransition {f.transition_from} {s.exec_type} process {s.domain})",
                  f"(allow {f.transition_from} {s.domain} (process (transition)))",
                  f"(allow {s.domain} {s.exec_type} (file (entrypoint execute getattr map open read)))",
                  f"(typetransition {s.domain} {CHILD_ENTRY} process {s.child})",
                  f"(allow {s.domain} {s.child} (process (transition)))",
                  f"(allow {s.child} {CHILD_ENTRY} (file (entrypoint)))")
            # files karmor labelled, unless they are fromSource programs: children too
            for t in sorted(self.types.values(), key=lambda t: t.name):
                if not t.source:
                    w.out(f"(typetransition {s.domain} {t.name} process {s.child})",
                          f"(allow {s.child} {t.name} (file (entrypoint)))")

    def clone(self, info: TypeInfo, new: str, *, domain: bool, exec_of: str = "") -> None:
        """Give `new` what `info.name` has: attributes, roles, and the rules naming it."""
        w, f, old = self.w, self.facts, info.name
        for attr in info.attributes:
            if attr in f.attributes:
                w.optional([attr], f"(typeattributeset {attr} ({new}))")
        if domain:
            for role in info.roles:
                w.optional([role], f"(roletype {role} {new})")
        for r in info.rules:
            for stmt, needs in self._copies(r, old, new, bool(exec_of)):
                if r.cond:
                    block = "true" if r.cond_block else "false"
                    stmt = f"(booleanif {_cond_expr(r.cond)} ({block} {stmt}))"
                    needs = needs + [t for t in r.cond if t not in ("!", "&&", "||", "^", "==", "!=")]
                w.optional(needs, stmt)

    def _copies(self, r: TeRule, old: str, new: str, is_exec: bool) -> list[tuple[str, list[str]]]:
        if r.kind == "dontaudit":
            return []  # a copied dontaudit would hide karmor's own denials
        if r.kind not in AV_KINDS and r.tclass == "process" and is_exec and r.target == old \
                and r.source in self.facts.unconfined:
            return []  # karmor decides where a fromSource program goes when unconfined domains start it
        pairs = []
        s_old, t_old = r.source == old, r.target == old
        if s_old and t_old:
            # a rule on itself; the copy gets it on itself, and with the original where a class
            # can have two parties (capability checks are always on oneself)
            pairs = [(new, new)] if r.tclass in SELF_ONLY else [(new, new), (new, old), (old, new)]
        elif s_old:
            pairs = [(new, r.target)]
        elif t_old:
            pairs = [(r.source, new)]
        out = []
        for src, tgt in pairs:
            if r.kind in AV_KINDS:
                perms = set(r.perms)
                if r.tclass == "process" and tgt == new and src != new:
                    perms -= {"transition", "dyntransition"}  # nobody else enters the copy
                if not perms:
                    continue
                stmt = f"({r.kind} {src} {tgt} ({r.tclass} {_perms(perms)}))"
            else:
                result = new if r.result == old else r.result
                name = f" {_q(r.filename)}" if r.filename else ""
                stmt = f"({r.kind} {src} {tgt} {r.tclass}{name} {result})"
                if result == new and src != new and r.tclass == "process":
                    continue
            needs = [n for n in (src, tgt, r.result) if n and n not in self.ours and n != "self"]
            out.append((stmt, needs))
        return out

    # --- constraints ------------------------------------------------------------------------
    def _targets(self, r: Rule) -> str:
        return _key_attr(_target_key(r))

    def block(self, r: Rule, denials: dict[tuple[str, str, str], list[Denial]]) -> None:
        w = self.w
        scopes = [self.scopes[s.path] for s in r.sources]
        w.out("", f"; {r.id} {r.policy}: Block {r.operation.value} {r.target}"
                  + (f" from {', '.join(s.path for s in r.sources)}" if r.sources else " (every domain)")
                  + (" [readOnly]" if r.read_only else "") + f" ({r.file}:{r.line})")
        op = r.operation
        if op in (Operation.FILE, Operation.PROCESS):
            attr = self._targets(r)
            ttypes = self.key_types.get(_target_key(r), [])
            if op is Operation.FILE:
                perms = WRITE_PERMS if r.read_only else READ_PERMS + WRITE_PERMS
                classes = self.file_classes
            else:
                perms, classes = ("execute",), ("file",)
            who = " ".join(s.domain for s in scopes)
            for cls in classes:
                have = [p for p in perms if p in self.facts.classes.get(cls, ())]
                if not have:
                    continue
                cond = f"(eq t2 {attr})" if not scopes else f"(and (eq t1 ({who})) (eq t2 {attr}))"
                w.out(f"(constrain ({cls} {_perms(have)}) (not {cond}))")
                for stype in [s.domain for s in scopes] or ["*"]:
                    for t in ttypes:
                        denials.setdefault((stype, t, cls), []).append(Denial(frozenset(have), r.id, op, r.category))
            if op is Operation.PROCESS:
                # a blocked program that is itself a fromSource program is entered by a transition
                targets = [t for t in ttypes if self.types[t].source]
                for t in targets:
                    dom = self.scopes[self.types[t].source].domain
                    cond = (f"(eq t2 {dom})" if not scopes else f"(and (eq t1 ({who})) (eq t2 {dom}))")
                    w.out(f"(constrain (process (transition)) (not {cond}))")
                    for stype in [s.domain for s in scopes] or ["*"]:
                        denials.setdefault((stype, dom, "process"), []).append(
                            Denial(frozenset({"transition"}), r.id, op, r.category))
            return
        who = " ".join(s.domain for s in scopes)
        if op is Operation.NETWORK:
            for cls in _protocol_classes(r.target.lower(), self.facts):
                w.out(f"(constrain ({cls} (create)) (not (eq t1 ({who}))))")
                for s in scopes:
                    denials.setdefault((s.domain, s.domain, cls), []).append(
                        Denial(frozenset({"create"}), r.id, op, r.category))
        elif op is Operation.CAPABILITIES:
            cls, perm = _capability(r.target)
            for c in (cl for pair in CAP_CLASSES for cl in pair if pair[0] == cls):
                if perm not in self.facts.classes.get(c, ()):
                    continue
                w.out(f"(constrain ({c} ({perm})) (not (eq t1 ({who}))))")
                for s in scopes:
                    denials.setdefault((s.domain, s.domain, c), []).append(
                        Denial(frozenset({perm}), r.id, op, r.category))

    def audit(self, r: Rule, audits: dict[tuple[str, str, str], list[Denial]]) -> None:
        """An Audit rule as auditallow on its source domains (capabilities only, see
        _audited_by_selinux)."""
        cls, perm = _capability(r.target)
        self.w.out("", f"; {r.id} {r.policy}: Audit Capabilities {r.target} from "
                       f"{', '.join(s.path for s in r.sources)} ({r.file}:{r.line})")
        for c in (cl for pair in CAP_CLASSES for cl in pair if pair[0] == cls):
            if perm not in self.facts.classes.get(c, ()):
                continue
            for s in r.sources:
                dom = self.scopes[s.path].domain
                self.w.out(f"(auditallow {dom} self ({c} ({perm})))")
                audits.setdefault((dom, dom, c), []).append(Denial(frozenset({perm}), r.id, r.operation, r.category))

    def audit_whitelist(self, c: Category, scope: _Scope, allows: list[Rule],
                        audits: dict[tuple[str, str, str], list[Denial]]) -> None:
        """A capabilities whitelist with the audit posture: what it does not allow is audited."""
        me = scope.domain
        self.w.out("", f"; {c.value} whitelist of {scope.path} with the audit posture: rules "
                       f"{', '.join(str(r.id) for r in allows)} allowed, everything else audited")
        allowed = {_capability(r.target)[1] for r in allows}
        for base, userns in CAP_CLASSES:
            for cls in (base, userns):
                perms = [p for p in self.facts.classes.get(cls, ()) if p not in allowed]
                if perms:
                    self.w.out(f"(auditallow {me} self ({cls} {_perms(perms)}))")
                    audits.setdefault((me, me, cls), []).append(Denial(frozenset(perms), 0, Operation.CAPABILITIES, c))

    def whitelist(self, c: Category, scope: _Scope, allows: list[Rule],
                  denials: dict[tuple[str, str, str], list[Denial]]) -> None:
        w, f, me = self.w, self.facts, scope.domain
        w.out("", f"; {c.value} whitelist of {scope.path}: only rules "
                  f"{', '.join(str(r.id) for r in allows)} are allowed (posture block)")
        def deny(key: tuple[str, str, str], perms: Iterable[str], op: Operation) -> None:
            denials.setdefault(key, []).append(Denial(frozenset(perms), 0, op, c))
        if c is Category.FILE:
            # the program's own binary: the kernel maps it for the program as it starts
            opened = sorted({self._targets(r) for r in allows} | {scope.exec_type})
            written = sorted({self._targets(r) for r in allows if r.operation is Operation.FILE and not r.read_only})
            run = sorted({self._targets(r) for r in allows if r.operation is Operation.PROCESS})
            # Opening is what a whitelist governs. Reads and writes of files already open are
            # not checked (SELinux revalidates inherited descriptors at exec: a pipe or terminal
            # given to the program must keep working), except writes to regular files, which
            # is how a readOnly Allow rule keeps them read-only.
            for cls in self.file_classes:
                w.out(f"(constrain ({cls} (open)) (or (neq t1 {me}) (eq t2 ({' '.join(opened) or ALL_DOMAINS}))))")
                deny((me, "*", cls), ("open",), Operation.FILE)
            have = [p for p in WRITE_PERMS if p in f.classes.get("file", ())]
            w.out(f"(constrain (file {_perms(have)}) (or (neq t1 {me}) (eq t2 ({' '.join(written) or ALL_DOMAINS}))))")
            deny((me, "*", "file"), have, Operation.FILE)
            runs = " ".join(run) or ALL_DOMAINS
            w.out(f"(constrain (file (entrypoint)) (or (neq t1 {scope.child}) (eq t2 ({runs}))))",
                  f"(constrain (file (execute_no_trans)) (or (neq t1 {me}) (eq t2 ({runs}))))")
            deny((scope.child, "*", "file"), ("entrypoint",), Operation.PROCESS)
            deny((me, "*", "file"), ("execute_no_trans",), Operation.PROCESS)
            ok_domains = [scope.child] + [self.scopes[self.types[t].source].domain
                                          for r in allows if r.operation is Operation.PROCESS
                                          for t in self.key_types.get(_target_key(r), []) if self.types[t].source]
            w.out(f"(constrain (process (transition)) (or (neq t1 {me}) (eq t2 ({' '.join(sorted(set(ok_domains)))}))))")
            deny((me, "*", "process"), ("transition",), Operation.PROCESS)
        elif c is Category.NETWORK:
            allowed = {cls for r in allows for cls in _protocol_classes(r.target.lower(), f)}
            for cls in sorted(x for x in f.classes if x.endswith("socket") and x not in allowed):
                w.out(f"(constrain ({cls} (create)) (neq t1 {me}))")
                deny((me, me, cls), ("create",), Operation.NETWORK)
        elif c is Category.CAPABILITIES:
            allowed = {_capability(r.target)[1] for r in allows}
            for base, userns in CAP_CLASSES:
                for cls in (base, userns):
                    perms = [p for p in f.classes.get(cls, ()) if p not in allowed]
                    if perms:
                        w.out(f"(constrain ({cls} {_perms(perms)}) (neq t1 {me}))")
                        deny((me, me, cls), perms, Operation.CAPABILITIES)

"""RuleSet -> AppArmor profiles (abi 3.0): pure and deterministic, golden-tested.

Profiles (docs/apparmor.md explains the design and its trade-offs):
- `karmor-global`, attached to `/**`: every program started after it is loaded whose executable
  no more specific profile claims. It holds the rules without fromSource.
- `karmor-src-<slug>`, attached to one fromSource executable: that program's own rules plus
  the rules without fromSource (a process is confined by one profile, so it carries both).
Each starts from a base that allows everything (so confining a program changes nothing but
what the rules say); a category whose whitelist AppArmor enforces (Allow rules, posture
block) gets no base grant, only its Allow rules. Block rules become `audit deny` lines, so
every denial is an audit record; Audit rules become `audit` lines. Every rule line follows a
comment naming its rule id, which is what `attribute.py` and a reader of `translate` use.

Children of a confined program go to their own profile (`px`: the best attachment, which is
karmor-global or a karmor-src profile) or, when no karmor profile can take them, run
unconfined (`ux`) -- never inheriting a fromSource profile they do not run.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass

from karmor_host.alerts.names import CAPABILITIES
from karmor_host.enforce.apparmor import aare
from karmor_host.enforce.base import RuleStatus
from karmor_host.policy.ruleset import Action, Category, Operation, Posture, Rule, RuleSet, TargetKind

PREFIX = "karmor"  # every profile we load carries it; anything else is not ours
GLOBAL = "karmor-global"
SOURCE_PREFIX = "karmor-src-"
LOADER_PREFIX = "karmor-loader-"
DEFAULT_LOADER = "/usr/sbin/apparmor_parser"
ABI = "abi <abi/3.0>,"
APPARMOR = "AppArmor"
MONITOR = "eBPF Monitor"
FLAGS = "flags=(attach_disconnected)"

# Base grants, by the category a whitelist restricts (None: always granted).
_BASE: tuple[tuple[Category | None, str], ...] = (
    (Category.FILE, "/{,**} rwlkm,"),
    (Category.FILE, "/** pux,"),
    (Category.NETWORK, "network,"),
    (Category.NETWORK, "unix,"),
    (Category.CAPABILITIES, "capability,"),
    (None, "mount,"),
    (None, "remount,"),
    (None, "umount,"),
    (None, "pivot_root,"),
    (None, "ptrace,"),
    (None, "signal,"),
    (None, "dbus,"),
    # Other profiles may be entered (container runtimes confine their children this way),
    # but not "unconfined": that would walk out of every rule here.
    (None, "change_profile -> **,"),
    (None, "audit deny change_profile -> unconfined,"),
)

ALL_CAPABILITIES = tuple(CAPABILITIES[n] for n in sorted(CAPABILITIES))

# AppArmor on the kernels we target mediates a socket's family and type, not its protocol.
_NETWORK: dict[str, tuple[str, ...]] = {
    "all": ("",),
    "tcp": ("inet stream", "inet6 stream"),
    "udp": ("inet dgram", "inet6 dgram"),
    "raw": ("raw",),
    "stream": ("stream",),
    "dgram": ("dgram",),
    "seqpacket": ("seqpacket",),
    "rdm": ("rdm",),
    "packet": ("packet",),
}
CAPABILITY_NOTE = ("AppArmor records a capability once per profile and CPU until another profile's "
                   "capability record comes between (its duplicate elimination)")
_NETWORK_NOTES = {
    "tcp": "as inet/inet6 stream sockets: also SCTP one-to-one sockets; raw TCP sockets are not covered",
    "udp": "as inet/inet6 dgram sockets: also ICMP ping sockets; raw UDP sockets are not covered",
}
NOT_EXPRESSIBLE_PROTOCOL = (
    "AppArmor mediates a socket's family and type, not its protocol: {protocol} sockets cannot be "
    "told apart from other sockets of their type"
)


@dataclass(frozen=True)
class Profile:
    name: str
    source: str  # the fromSource executable it confines; "" for karmor-global
    attachment: str  # as written in the profile (quoted glob)
    restricted: frozenset[Category]  # whitelisted categories: no base grant
    rule_ids: tuple[int, ...]  # rules with lines in this profile, in line order
    text: str  # the profile block, without the abi line


@dataclass(frozen=True)
class Plan:
    profiles: tuple[Profile, ...]
    rules: tuple[RuleStatus, ...]  # one line per rule of the rule set, in its order
    whitelists: frozenset[Category]  # whitelists AppArmor enforces (posture block)
    notes: tuple[str, ...] = ()
    audited: frozenset[Category] = frozenset()  # whitelists whose misses AppArmor audits (posture audit)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.profiles)

    def profile(self, name: str) -> Profile | None:
        return next((p for p in self.profiles if p.name == name), None)

    def reported(self) -> frozenset[int]:
        """Rule ids whose alerts come from AppArmor's own audit records."""
        return frozenset(s.rule_id for s in self.rules if s.by == APPARMOR)

    def text(self) -> str:
        """One policy file with every profile: what `translate` prints and what is loaded.
        Its head says how each rule AppArmor does not carry is handled instead."""
        head = [
            "# Generated by karmor-host (AppArmor enforcer). Loaded with apparmor_parser from the",
            "# agent's state directory, never installed in /etc/apparmor.d; comments name rule ids.",
        ]
        head += [f"# note: {n}" for n in self.notes]
        others = [s for s in self.rules if s.by != APPARMOR]
        if others:
            head.append(f"# {len(others)} rule(s) not in these profiles:")
            head += [f"#   {s.rule_id} {s.policy}: {s.mode} by {s.by}: {s.reason}" for s in others]
        if not self.profiles:
            head.append("# no profiles: AppArmor carries none of these rules")
        head.append(ABI)
        return "\n".join(head) + "\n" + "".join("\n" + p.text for p in self.profiles)


def why_not(rule: Rule) -> str:
    """Why AppArmor cannot express `rule` ("" when it can)."""
    if rule.operation is Operation.SYSCALL:
        return "syscall rules are audit-only: the eBPF monitor reports them"
    if any(s.is_dir for s in rule.sources):
        return "a fromSource directory cannot be an AppArmor attachment of its own"
    if rule.operation is Operation.NETWORK and rule.target.lower() not in _NETWORK:
        return NOT_EXPRESSIBLE_PROTOCOL.format(protocol=rule.target.lower())
    if rule.action is Action.AUDIT and rule.operation is Operation.NETWORK:
        return ("an AppArmor audit network rule records every send and receive on such sockets, "
                "not only their creation: the eBPF monitor reports this rule")
    if rule.kind is TargetKind.PATTERN and not aare.anchored(rule.target):
        return "the pattern matches no absolute path (it starts with neither / nor **)"
    return ""


def slug(path: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]", "_", path.strip("/").replace("/", ".")) or "root"


def profile_names(sources: Iterable[str]) -> dict[str, str]:
    """Source executable -> profile name; a hash suffix only where two slugs would clash."""
    by_slug: dict[str, list[str]] = {}
    for src in sorted(set(sources)):
        by_slug.setdefault(slug(src), []).append(src)
    out = {}
    for s, paths in by_slug.items():
        for path in paths:
            suffix = "" if len(paths) == 1 else "-" + hashlib.blake2b(path.encode(), digest_size=4).hexdigest()
            out[path] = SOURCE_PREFIX + s + suffix
    return out


def render(ruleset: RuleSet, loader: str = DEFAULT_LOADER) -> Plan:
    """`loader`: the apparmor_parser the agent runs. When karmor-global is whitelisted, the
    parser (started after karmor-global, so attached to it) gets a profile of its own that
    carries the global Block and Audit rules but no whitelist: one that left out what the
    parser needs would otherwise stop every later reload, including the one that fixes it."""
    reasons = {r.id: why_not(r) for r in ruleset.rules}
    allows: dict[Category, list[Rule]] = {}
    for r in ruleset.rules:
        if r.action is Action.ALLOW and r.category is not None:
            allows.setdefault(r.category, []).append(r)
    enforced_wl = frozenset(
        c for c in ruleset.whitelists
        if ruleset.postures.get(c) is Posture.BLOCK and not any(reasons[r.id] for r in allows.get(c, ()))
    )
    # With posture audit, capabilities are the one category whose misses AppArmor can audit
    # exactly: the set of capabilities is finite, so "the rest" is a list of audit lines.
    audited_wl = frozenset(c for c in ruleset.whitelists & {Category.CAPABILITIES}
                           if ruleset.postures.get(c) is not Posture.BLOCK)

    def has_lines(r: Rule) -> bool:
        if reasons[r.id]:
            return False
        return r.action is not Action.ALLOW or r.category in enforced_wl | audited_wl

    def confined(source: str, categories: frozenset[Category]) -> frozenset[Category]:
        return frozenset(
            c for c in categories
            if any(not r.sources or (source and any(s.path == source for s in r.sources)) for r in allows[c])
        )

    def restricted(source: str) -> frozenset[Category]:
        return confined(source, enforced_wl)

    candidates = [r for r in ruleset.rules if has_lines(r)]
    names = profile_names(s.path for r in candidates for s in r.sources)
    scopes = [""] + sorted(names)
    limits = {src: restricted(src) for src in scopes}
    demoted: dict[int, str] = {}
    for r in candidates:
        if r.action is not Action.AUDIT:
            continue
        lands = [""] + sorted(names) if not r.sources else [s.path for s in r.sources]
        tight = [src for src in lands if r.category in limits[src]]
        if tight:
            where = names.get(tight[0], GLOBAL)
            demoted[r.id] = (
                f"in {where} the {r.category.value} whitelist is enforced and an AppArmor audit rule "
                "would also allow what it denies: the eBPF monitor reports this rule"
            )
    expressed = [r for r in candidates if r.id not in demoted]
    names = profile_names(s.path for r in expressed for s in r.sources)

    profiles = []
    notes = []
    if any(not r.sources for r in expressed):
        profiles.append(_profile(GLOBAL, "", [r for r in expressed if not r.sources], limits[""],
                                 audited=confined("", audited_wl)))
        if limits[""] and loader and loader not in names:
            name = LOADER_PREFIX + slug(loader)
            kept = [r for r in expressed if not r.sources and r.action is not Action.ALLOW]
            profiles.append(_profile(name, loader, kept, frozenset(), comment=(
                f"# the profile loader: the global rules without the {GLOBAL} whitelist (see render())")))
            notes.append(f"{name}: {loader} is held to the global Block and Audit rules but not to the "
                         f"whitelist of {GLOBAL}, so that the agent can always load the next rule set")
    spelled: dict[str, set[str]] = {}
    for r in expressed:
        for s in r.sources:
            spelled.setdefault(s.path, set()).add(s.original)
    for src, name in sorted(names.items(), key=lambda kv: kv[1]):
        mine = [r for r in expressed if not r.sources or any(s.path == src for s in r.sources)]
        profiles.append(_profile(name, src, mine, limits[src], sorted(spelled[src] - {src}),
                                 audited=confined(src, audited_wl)))

    lines = tuple(_status(r, reasons[r.id] or demoted.get(r.id, ""), r in expressed, ruleset)
                  for r in ruleset.rules)
    if any(p.source == "" for p in profiles):
        notes.insert(0, f"{GLOBAL} confines every program started from now on that no more specific profile "
                        "claims; programs already running stay unconfined until they are restarted")
    return Plan(tuple(profiles), lines, enforced_wl, tuple(notes), audited_wl)


def _status(rule: Rule, reason: str, expressed: bool, rs: RuleSet) -> RuleStatus:
    if expressed:
        note = _NETWORK_NOTES.get(rule.target.lower(), "") if rule.operation is Operation.NETWORK else ""
        if rule.operation is Operation.CAPABILITIES and rule.action is not Action.BLOCK:
            note = CAPABILITY_NOTE
        if rule.action is Action.ALLOW and rs.postures.get(rule.category) is not Posture.BLOCK:
            note = "default posture audit: AppArmor audits every capability no Allow rule names; " + note
        return RuleStatus(rule.id, rule.policy, "enforced", APPARMOR, note)
    if rule.action is Action.BLOCK:
        return RuleStatus(rule.id, rule.policy, "audit-only", MONITOR, f"{reason}; reported as Audit (Block)")
    if rule.action is Action.AUDIT:
        return RuleStatus(rule.id, rule.policy, "monitor", MONITOR, reason)
    category = rule.category
    if category is not None and rs.postures.get(category) is not Posture.BLOCK and not reason:
        return RuleStatus(rule.id, rule.policy, "monitor", MONITOR,
                          "default posture audit: the eBPF monitor reports what the whitelist misses "
                          "(AppArmor's complain mode would also switch off Block rules)")
    why = reason or next(
        (f"rule {r.id} ({r.target}): {why_not(r)}" for r in rs.rules
         if r.action is Action.ALLOW and r.category is category and why_not(r)), "")
    return RuleStatus(rule.id, rule.policy, "audit-only", MONITOR,
                      f"the {category.value if category else ''} whitelist cannot be enforced: {why}; "
                      "misses are reported as Audit (Allow)")


def _profile(name: str, source: str, rules: list[Rule], restricted: frozenset[Category],
             spellings: Iterable[str] = (), comment: str = "",
             audited: frozenset[Category] = frozenset()) -> Profile:
    attachment = aare.literal(source) if source else "/**"
    body = [f"# fromSource {', '.join(spellings)} is {source} here (symlinks resolved)"] if spellings else []
    if comment:
        body.append(comment)
    body.append(f"profile {name} {attachment} {FLAGS} {{")
    body.append("  # base: allowed unless a rule below says otherwise"
                + (f" (whitelisted, only the Allow rules: {', '.join(sorted(c.value for c in restricted))})"
                   if restricted else ""))
    body.extend(f"  {text}" for category, text in _BASE if category is None or category not in restricted)
    for rule in rules:
        body.append("")
        target = rule.target if rule.original == rule.target else f"{rule.target} (from {rule.original})"
        body.append(f"  # {rule.id} {rule.policy}: {rule.action.value} {rule.operation.value} "
                    f"{target}{_flag_text(rule)} ({rule.file}:{rule.line})")
        body.extend(f"  {text}" for text in rule_lines(rule))
    if Category.CAPABILITIES in audited:
        named = {r.target.lower().removeprefix("cap_") for r in rules
                 if r.operation is Operation.CAPABILITIES and r.action is Action.ALLOW}
        rest = [c for c in ALL_CAPABILITIES if c not in named]
        body.append("")
        body.append("  # default posture audit: the capabilities no Allow rule here names")
        body.extend(f"  audit capability {c}," for c in rest)
    body.append("}")
    return Profile(name, source, attachment, restricted, tuple(r.id for r in rules), "\n".join(body) + "\n")


def _flag_text(rule: Rule) -> str:
    flags = [n for n, on in (("recursive", rule.recursive), ("readOnly", rule.read_only),
                             ("ownerOnly", rule.owner_only)) if on]
    return f" [{','.join(flags)}]" if flags else ""


def rule_lines(rule: Rule) -> list[str]:
    """The AppArmor lines of one expressible rule."""
    head = {Action.BLOCK: "audit deny ", Action.AUDIT: "audit ", Action.ALLOW: ""}[rule.action]
    deny_like = rule.action is not Action.ALLOW  # Block/Audit name the violation; Allow the grant
    op = rule.operation
    if op is Operation.NETWORK:
        return [f"{head}network{' ' + e if e else ''}," for e in _NETWORK[rule.target.lower()]]
    if op is Operation.CAPABILITIES:
        name = rule.target.lower().removeprefix("cap_")
        return [f"{head}capability {name},"]
    if op is Operation.PROCESS:
        globs = aare.exec_globs(rule.kind.value, rule.target, rule.recursive)
        perm = "x" if rule.action is Action.BLOCK else "pux"
        owner = ("other " if deny_like else "owner ") if rule.owner_only else ""
        return [f"{head}{owner}{g} {perm}," for g in globs]
    globs = aare.file_globs(rule.kind.value, rule.target, rule.recursive)
    return [f"{head}{qual}{g} {perm}," for qual, perm in _file_perms(rule, deny_like) for g in globs]


def _file_perms(rule: Rule, deny_like: bool) -> list[tuple[str, str]]:
    """(qualifier, permissions) pairs. Block/Audit: what violates the rule (readOnly: writes;
    ownerOnly: any access by others, and with readOnly the owner's writes too). Allow: what
    it grants (readOnly: reading, mapping and locking)."""
    if not deny_like:
        perms = "rmk" if rule.read_only else "rwlkm"
        return [("owner " if rule.owner_only else "", perms)]
    if rule.owner_only:
        return ([("owner ", "w")] if rule.read_only else []) + [("other ", "rw")]
    return [("", "w" if rule.read_only else "rw")]

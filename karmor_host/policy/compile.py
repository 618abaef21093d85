"""[HostPolicy] + HostIdentity + postures -> RuleSet.

- Inheritance: severity, tags, message and action come from the rule, else its section, else
  the spec; action defaults to Block, severity to 1 (KubeArmor's defaults). Syscall rules are
  always Audit.
- One Rule per target (comma lists and syscall lists expanded), with paths canonicalised.
- Rule ids are content hashes (see `_base_id`), so they survive reloads, restarts and reordering.
- Conflicts (same operation, kind, canonical target, sources, flags and syscall; different
  action) keep one rule: Block over Allow over Audit, as KubeArmor does. Denial wins because a
  policy author who wrote Block for something must not be overruled by another file silently;
  Allow beats Audit because Allow rules define a whitelist and dropping one would change what
  the default posture denies. Equal actions (plain duplicates) keep the first by policy name,
  file and line. Every dropped rule is recorded as a Conflict.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TypeVar

from karmor_host.policy.canon import Canonicalizer, Resolver
from karmor_host.policy.model import HostPolicy, Meta, RuleSpec, Section, SourceSpec
from karmor_host.policy.ruleset import (
    Action, Category, Conflict, Operation, Posture, PolicyInfo, Rule, RuleSet, Source, TargetKind,
)
from karmor_host.policy.selector import HostIdentity, match

DEFAULT_ACTION = Action.BLOCK
DEFAULT_SEVERITY = 1
ID_SPACE = 0x7FFFFFFF  # ids are 31-bit positive: they fit a signed 32-bit field in BPF maps

_RANK = {Action.BLOCK: 0, Action.ALLOW: 1, Action.AUDIT: 2}  # lower wins a conflict
_OP_ORDER = {op: i for i, op in enumerate(Operation)}

ConflictKey = tuple[object, ...]
T = TypeVar("T")


def _first(*values: T | None) -> T | None:
    return next((v for v in values if v is not None), None)


def _inherit(rule: Meta, section: Meta, spec: Meta) -> Meta:
    return Meta(
        severity=_first(rule.severity, section.severity, spec.severity),
        tags=_first(rule.tags, section.tags, spec.tags),
        message=_first(rule.message, section.message, spec.message),
        action=_first(rule.action, section.action, spec.action),
    )


def _sources(specs: tuple[SourceSpec, ...], resolve: Resolver) -> tuple[Source, ...]:
    by_key: dict[tuple[str, bool, bool], Source] = {}
    for s in specs:
        src = Source(resolve(s.path), s.path, s.is_dir, s.recursive)
        by_key.setdefault((src.path, src.is_dir, src.recursive), src)  # /bin/x and /usr/bin/x
    return tuple(by_key[k] for k in sorted(by_key))


def _expand(policy: HostPolicy, section: Section, spec: RuleSpec, resolve: Resolver) -> list[Rule]:
    meta = _inherit(spec.meta, section.meta, policy.meta)
    action = Action.AUDIT if spec.operation is Operation.SYSCALL else (meta.action or DEFAULT_ACTION)
    sources = _sources(spec.sources, resolve)
    rules = []
    for target in spec.targets:
        canonical = resolve(target) if spec.kind in (TargetKind.PATH, TargetKind.DIR) else target
        for syscall in spec.syscalls or ("",):
            rules.append(Rule(
                id=0, policy=policy.name, file=policy.file, line=spec.line,
                operation=spec.operation, kind=spec.kind, target=canonical, original=target,
                action=action,
                severity=meta.severity if meta.severity is not None else DEFAULT_SEVERITY,
                tags=meta.tags or (), message=meta.message or "", sources=sources,
                recursive=spec.recursive, read_only=spec.read_only, owner_only=spec.owner_only,
                syscall=syscall,
            ))
    return rules


def conflict_key(rule: Rule) -> ConflictKey:
    """What makes two rules "the same rule" for conflict purposes (everything but the action
    and the alert attributes)."""
    sources = tuple((s.path, s.is_dir, s.recursive) for s in rule.sources)
    return (rule.operation.value, rule.kind.value, rule.target, sources,
            rule.recursive, rule.read_only, rule.owner_only, rule.syscall)


def _base_id(rule: Rule) -> int:
    """blake2b over the policy name and the conflict key, folded to 1..2^31-1."""
    sources = ";".join(f"{s.path}|{int(s.is_dir)}|{int(s.recursive)}" for s in rule.sources)
    flags = f"{int(rule.recursive)}{int(rule.read_only)}{int(rule.owner_only)}"
    text = "\x1f".join([rule.policy, rule.operation.value, rule.kind.value, rule.target,
                        sources, rule.syscall, flags])
    digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % ID_SPACE + 1


def _order(rule: Rule) -> tuple[object, ...]:
    """Deterministic tie-break that ignores file order: who wins a conflict or an id clash."""
    return (_RANK[rule.action], rule.policy, rule.file, rule.line, rule.original, rule.syscall)


def _assign_ids(drafts: list[Rule]) -> list[Rule]:
    """Hash ids; on a clash the rule later in (hash, _order) probes upwards to a free id."""
    keyed = sorted(((_base_id(r), _order(r), i) for i, r in enumerate(drafts)))
    used: set[int] = set()
    out: list[Rule | None] = [None] * len(drafts)
    for base, _, i in keyed:
        rid = base
        while rid in used:
            rid = rid % ID_SPACE + 1
        used.add(rid)
        out[i] = replace(drafts[i], id=rid)
    return [r for r in out if r is not None]


def _resolve_conflicts(rules: list[Rule]) -> tuple[list[Rule], list[Conflict]]:
    groups: dict[ConflictKey, list[Rule]] = {}
    for r in rules:
        groups.setdefault(conflict_key(r), []).append(r)
    kept: list[Rule] = []
    conflicts: list[Conflict] = []
    for group in groups.values():
        group.sort(key=_order)
        winner = group[0]
        kept.append(winner)
        for loser in group[1:]:
            if loser.action is winner.action:
                why = "duplicate: same target, scope and action; the first by policy name, file and line is kept"
            else:
                why = f"{winner.action.value} wins over {loser.action.value} (Block > Allow > Audit)"
            reason = (f"{loser.policy} ({loser.file}:{loser.line}) and {winner.policy} "
                      f"({winner.file}:{winner.line}) both have a {loser.operation.value} rule "
                      f"for {loser.target}; {why}")
            conflicts.append(Conflict(kept=winner.id, dropped=loser.id, reason=reason))
    return kept, conflicts


def _sort_key(rule: Rule) -> tuple[object, ...]:
    return (rule.policy, rule.file, rule.line, _OP_ORDER[rule.operation], rule.target, rule.syscall, rule.id)


def compile_policies(
    policies: Sequence[HostPolicy],
    identity: HostIdentity,
    postures: Mapping[Category, Posture] | None = None,
    resolve: Resolver | None = None,
) -> RuleSet:
    """Build the rule set for this host. `resolve` canonicalises paths (default: this host's
    filesystem from "/"); pass a Canonicalizer rooted elsewhere, or `str`, to test."""
    resolve = resolve or Canonicalizer("/")
    infos: list[tuple[HostPolicy, bool, str]] = []
    drafts: list[Rule] = []
    for policy in sorted(policies, key=lambda p: (p.name, p.file)):
        m = match(policy.node_selector, identity)
        infos.append((policy, m.applies, m.reason))
        if m.applies:
            for section in policy.sections:
                for spec in section.rules:
                    drafts.extend(_expand(policy, section, spec, resolve))
    rules, conflicts = _resolve_conflicts(_assign_ids(drafts))
    rules.sort(key=_sort_key)
    ids_by_policy: dict[tuple[str, str], list[int]] = {}
    for r in rules:
        ids_by_policy.setdefault((r.policy, r.file), []).append(r.id)
    whitelists = frozenset(
        r.category for r in rules if r.action is Action.ALLOW and r.category is not None
    )
    given = dict(postures or {})
    return RuleSet(
        rules=tuple(rules),
        postures={c: given.get(c, Posture.AUDIT) for c in Category},
        whitelists=whitelists,
        policies=tuple(
            PolicyInfo(p.name, p.file, applies, reason, tuple(sorted(ids_by_policy.get((p.name, p.file), ()))))
            for p, applies, reason in infos
        ),
        conflicts=tuple(sorted(conflicts, key=lambda c: (c.kept, c.dropped))),
    )

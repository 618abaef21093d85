"""[NetworkPolicy] + HostIdentity + network posture -> NetRuleSet.

- Inheritance: severity, tags, message and action come from the rule, else the spec; action
  defaults to Block and severity to 1, as for host policies.
- One NetRule per ingress/egress entry; the firewall plan expands it per IP version and
  protocol. Its id is a content hash of the policy name and the rule's matching fields, so
  it survives reloads and restarts (alerts name rules across a swap).
- Rules are sorted in evaluation order (ruleset.py); there is no conflict resolution because
  the order itself decides: Block before Audit before Allow.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any

from karmor_host.policy.compile import DEFAULT_ACTION, DEFAULT_SEVERITY, ID_SPACE
from karmor_host.policy.model import HostPolicy, Meta
from karmor_host.policy.netpolicy.model import NetRuleSpec, NetworkPolicy
from karmor_host.policy.netpolicy.ruleset import EVALUATION_RANK, NetRule, NetRuleSet
from karmor_host.policy.ruleset import Action, PolicyInfo, Posture
from karmor_host.policy.selector import HostIdentity, match


def network_policies(policies: Iterable[Any]) -> list[NetworkPolicy]:
    return [p for p in policies if isinstance(p, NetworkPolicy)]


def host_policies(policies: Iterable[Any]) -> list[HostPolicy]:
    return [p for p in policies if isinstance(p, HostPolicy)]


def _rule(policy: NetworkPolicy, spec: NetRuleSpec) -> NetRule:
    meta = Meta(
        severity=spec.meta.severity if spec.meta.severity is not None else policy.meta.severity,
        tags=spec.meta.tags if spec.meta.tags is not None else policy.meta.tags,
        message=spec.meta.message if spec.meta.message is not None else policy.meta.message,
        action=spec.meta.action or policy.meta.action,
    )
    return NetRule(
        id=0, policy=policy.name, file=policy.file, line=spec.line, field=spec.field,
        direction=spec.direction, action=meta.action or DEFAULT_ACTION,
        severity=meta.severity if meta.severity is not None else DEFAULT_SEVERITY,
        tags=meta.tags or (), message=meta.message or "",
        peers=spec.peers, ifaces=spec.ifaces, ports=spec.ports,
    )


def _base_id(rule: NetRule) -> int:
    ports = ";".join(f"{p.protocol.value}/{p.port}-{p.end_port}" for p in rule.ports)
    text = "\x1f".join([rule.policy, rule.direction.value, ",".join(rule.peers), ",".join(rule.ifaces),
                        ports, rule.field])
    digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % ID_SPACE + 1


def _order(rule: NetRule) -> tuple[object, ...]:
    return (EVALUATION_RANK[rule.action], rule.policy, rule.file, rule.line, rule.field)


def _assign_ids(drafts: list[NetRule]) -> list[NetRule]:
    """Hash ids; on a clash the later rule in (hash, order) probes upwards to a free id."""
    used: set[int] = set()
    out: list[NetRule] = []
    for base, _, rule in sorted(((_base_id(r), _order(r), r) for r in drafts), key=lambda t: t[:2]):
        rid = base
        while rid in used:
            rid = rid % ID_SPACE + 1
        used.add(rid)
        out.append(replace(rule, id=rid))
    return out


def compile_network(
    policies: Sequence[Any], identity: HostIdentity, posture: Posture = Posture.AUDIT,
) -> NetRuleSet:
    """The network rule set for this host; host policies in `policies` are ignored."""
    infos: list[tuple[NetworkPolicy, bool, str]] = []
    drafts: list[NetRule] = []
    for policy in sorted(network_policies(policies), key=lambda p: (p.name, p.file)):
        m = match(policy.node_selector, identity)
        infos.append((policy, m.applies, m.reason))
        if m.applies:
            drafts.extend(_rule(policy, spec) for spec in policy.rules)
    rules = sorted(_assign_ids(drafts), key=_order)
    ids: dict[tuple[str, str], list[int]] = {}
    for r in rules:
        ids.setdefault((r.policy, r.file), []).append(r.id)
    return NetRuleSet(
        rules=tuple(rules),
        posture=posture,
        whitelists=frozenset(r.direction for r in rules if r.action is Action.ALLOW),
        policies=tuple(
            PolicyInfo(p.name, p.file, applies, reason, tuple(sorted(ids.get((p.name, p.file), ()))))
            for p, applies, reason in infos
        ),
    )

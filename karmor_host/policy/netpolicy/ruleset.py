"""The network rule set: the contract between the network-policy compiler and the firewall.

Beside the host RuleSet (policy/ruleset.py), not inside it: host rules describe programs and
files for the LSM enforcers; these describe packets for the stateful firewall. Plain frozen
data, so the firewall plan can be rendered and golden-tested from it.

Evaluation order is part of the contract (`rules` is sorted by it): Block rules first, then
Audit, then Allow, each by policy name, file and line. The first rule a new flow matches
decides it; a flow no rule matches passes, unless its direction is a whitelist (it has an
Allow rule), where the network default posture decides.
"""

from __future__ import annotations

from dataclasses import dataclass

from karmor_host.policy.netpolicy.model import Direction, PortSpec
from karmor_host.policy.ruleset import Action, PolicyInfo, Posture

EVALUATION_RANK = {Action.BLOCK: 0, Action.AUDIT: 1, Action.ALLOW: 2}


@dataclass(frozen=True)
class NetRule:
    id: int  # stable: same policy text => same id (it names the rule in the kernel's log prefix)
    policy: str
    file: str
    line: int
    field: str  # spec.ingress[0]
    direction: Direction
    action: Action
    severity: int
    tags: tuple[str, ...] = ()
    message: str = ""
    peers: tuple[str, ...] = ()  # CIDRs; empty: any address
    ifaces: tuple[str, ...] = ()  # empty: any interface
    ports: tuple[PortSpec, ...] = ()  # empty: any protocol and port

    @property
    def families(self) -> tuple[int, ...]:
        """The IP versions this rule can match, from its peers and protocols."""
        fams = {6 if ":" in p else 4 for p in self.peers} if self.peers else {4, 6}
        proto_fams = {p.protocol.family for p in self.ports}
        if self.ports and 0 not in proto_fams:
            fams &= proto_fams
        return tuple(sorted(fams))

    def peers_text(self) -> str:
        return ", ".join(self.peers) or "any"

    def ports_text(self) -> str:
        return ", ".join(p.text() for p in self.ports) or "any"


@dataclass(frozen=True)
class NetRuleSet:
    rules: tuple[NetRule, ...] = ()
    posture: Posture = Posture.AUDIT  # defaultPosture.network
    whitelists: frozenset[Direction] = frozenset()  # directions with at least one Allow rule
    policies: tuple[PolicyInfo, ...] = ()

    @property
    def empty(self) -> bool:
        """Nothing to install: the firewall table is removed."""
        return not self.rules

    def by_id(self) -> dict[int, NetRule]:
        return {r.id: r for r in self.rules}

    def alerts_possible(self, direction: Direction) -> bool:
        """Whether any new flow in `direction` can produce an alert (Audit, Block, a whitelist)."""
        return direction in self.whitelists or any(
            r.direction is direction and r.action is not Action.ALLOW for r in self.rules)

    def names_iface(self, name: str, direction: Direction | None = None) -> bool:
        """A rule (of `direction`, or of either) lists this interface."""
        return any(name in r.ifaces for r in self.rules if direction in (None, r.direction))

    def names_port(self, port: int, protocol: str = "TCP") -> bool:
        """A rule lists this port explicitly (in a range of its own or as a single port)."""
        return any(
            p.protocol.value == protocol and p.port is not None and p.port <= port <= (p.last or p.port)
            for r in self.rules for p in r.ports)

"""What the firewall does to one new flow, computed from the NetRuleSet (pure).

The same semantics as the table plan.py builds, written as plain Python: the lock-out guard
asks it about SSH sessions and loopback before anything reaches the kernel, and the tests
hold the kernel's behaviour and this function to the same answers.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from functools import lru_cache

from karmor_host.firewall.plan import verdict_of
from karmor_host.policy.netpolicy.model import Direction, Protocol
from karmor_host.policy.netpolicy.ruleset import NetRule, NetRuleSet
from karmor_host.policy.ruleset import Action, Posture

ND_ICMPV6_TYPES = frozenset({133, 134, 135, 136, 130, 131, 143})  # plan.ND_TYPES by number


@dataclass(frozen=True)
class Flow:
    """The first packet of a flow as the firewall sees it."""

    direction: Direction
    src: str
    dst: str
    protocol: Protocol | None  # None: some other protocol (GRE, ESP, ...)
    dport: int = 0
    iface: str = ""
    icmp_type: int = -1

    @property
    def peer(self) -> str:
        return self.src if self.direction is Direction.INGRESS else self.dst


@dataclass(frozen=True)
class Decision:
    verdict: str  # accept | drop | reject
    rule: NetRule | None = None  # the deciding rule; None for the base rules and the posture
    posture: bool = False  # decided by the default posture (a DefaultPosture alert)
    alert: bool = False  # the kernel logs it (subject to the rate limit)
    why: str = ""


@lru_cache(maxsize=4096)
def _net(cidr: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(cidr)


def _in_peers(addr: str, peers: tuple[str, ...]) -> bool:
    if not peers:
        return True
    ip = ipaddress.ip_address(addr)
    return any(ip.version == _net(p).version and ip in _net(p) for p in peers)


def _in_ports(flow: Flow, rule: NetRule) -> bool:
    if not rule.ports:
        return True
    for spec in rule.ports:
        if spec.protocol is not flow.protocol:
            continue
        if spec.port is None or spec.port <= flow.dport <= (spec.last or spec.port):
            return True
    return False


def matches(rule: NetRule, flow: Flow) -> bool:
    return (rule.direction is flow.direction
            and (not rule.ifaces or flow.iface in rule.ifaces)
            and _in_ports(flow, rule)
            and _in_peers(flow.peer, rule.peers))


def evaluate(rs: NetRuleSet, flow: Flow) -> Decision:
    if flow.iface == "lo" and not rs.names_iface("lo", flow.direction):
        return Decision("accept", why="loopback")
    if flow.protocol is Protocol.ICMPV6 and flow.icmp_type in ND_ICMPV6_TYPES:
        return Decision("accept", why="IPv6 neighbour discovery")
    for rule in rs.rules:  # already in evaluation order
        if matches(rule, flow):
            if rule.action is Action.ALLOW:
                return Decision("accept", rule, why=f"rule {rule.id}")
            return Decision(verdict_of(rule.action, flow.direction), rule, alert=True, why=f"rule {rule.id}")
    if flow.direction in rs.whitelists:
        action = Action.AUDIT if rs.posture is Posture.AUDIT else Action.BLOCK
        return Decision(verdict_of(action, flow.direction), posture=True, alert=True,
                        why=f"default posture {rs.posture.value}")
    return Decision("accept", why="no rule matches and the direction is not a whitelist")

"""A validated KubeArmorNetworkPolicy, as plain frozen data (kubearmor-compat.md section 1b).

validate.py builds these from YAML nodes; compile.py turns them into a NetRuleSet. Values are
normalised: CIDRs in their network form ("10.0.0.0/8"), protocols by their canonical names,
service names resolved to port numbers (the name is kept for messages).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from karmor_host.policy.model import KIND_NETWORK_POLICY, Meta


class Direction(str, Enum):
    INGRESS = "ingress"  # traffic to this host: `from` peers, `iface` is the input interface
    EGRESS = "egress"  # traffic from this host: `to` peers, `iface` is the output interface


class Protocol(str, Enum):
    TCP = "TCP"
    UDP = "UDP"
    ICMP = "ICMP"
    ICMPV6 = "ICMPv6"
    SCTP = "SCTP"

    @property
    def has_ports(self) -> bool:
        return self in (Protocol.TCP, Protocol.UDP, Protocol.SCTP)

    @property
    def family(self) -> int:
        """4 or 6 for protocols of one IP version, 0 for both."""
        return {Protocol.ICMP: 4, Protocol.ICMPV6: 6}.get(self, 0)


PEER_KEY = {Direction.INGRESS: "from", Direction.EGRESS: "to"}


@dataclass(frozen=True)
class PortSpec:
    """One `ports` entry. port None: every port of the protocol (and always for ICMP)."""

    protocol: Protocol
    port: int | None = None
    end_port: int | None = None  # None: the single port; else port..end_port inclusive
    name: str = ""  # the service name as written ("ssh"), "" for a number

    @property
    def last(self) -> int | None:
        return self.end_port if self.end_port is not None else self.port

    def text(self) -> str:
        """`TCP/22 (ssh)`, `UDP/1000-2000`, `ICMP`."""
        if self.port is None:
            return self.protocol.value
        span = str(self.port) if self.end_port in (None, self.port) else f"{self.port}-{self.end_port}"
        return f"{self.protocol.value}/{span}" + (f" ({self.name})" if self.name else "")


@dataclass(frozen=True)
class NetRuleSpec:
    """One `ingress[]` or `egress[]` entry as written (after validation).

    Empty tuples mean "any": no peers = every address, no ifaces = every interface,
    no ports = every protocol and port.
    """

    direction: Direction
    peers: tuple[str, ...]  # normalised CIDRs, IPv4 and IPv6 mixed, in file order
    ifaces: tuple[str, ...]
    ports: tuple[PortSpec, ...]
    field: str  # e.g. spec.ingress[1]
    line: int
    col: int
    meta: Meta = Meta()


@dataclass(frozen=True)
class NetworkPolicy:
    name: str
    file: str
    line: int  # line of the document's first key
    name_line: int
    name_col: int
    node_selector: tuple[tuple[str, str], ...]
    meta: Meta
    rules: tuple[NetRuleSpec, ...]  # ingress entries first, then egress, each in file order

    kind = KIND_NETWORK_POLICY

    @property
    def labels(self) -> dict[str, str]:
        return dict(self.node_selector)

    @property
    def where(self) -> str:
        return f"{self.file}:{self.name_line}:{self.name_col}"

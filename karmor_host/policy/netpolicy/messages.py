"""Messages the KubeArmorNetworkPolicy validator adds to the shared ones (policy/messages.py).

Templates only, compared whole by the tests; the field path in front says where.
"""

from __future__ import annotations

E_NO_DIRECTIONS = "policy has no rules: give at least one of ingress, egress"
E_RULE_NULL = "a rule must be a mapping (an empty mapping {} matches all traffic); got null"
E_PEER_SELECTOR = (
    "{key} selects Kubernetes pods; a host network policy takes ipBlock peers only"
)
W_PEERS_EMPTY = "an empty list matches every address, as leaving out {key} does; assumed any address"
E_CIDR = "must be an IPv4 or IPv6 CIDR such as 10.0.0.0/8 or fd00::/64; got {got} ({why})"
W_CIDR_HOST_BITS = "host bits are set; assumed the network {fixed!r}"
W_CIDR_NO_PREFIX = "no prefix length; assumed the single address {fixed!r}"
E_IFACE = (
    "an interface name is 1 to 15 characters without '/', ':', '*' or spaces"
    " (names are matched exactly); got {got}"
)
E_PROTOCOL = "unknown protocol {got}; expected one of TCP, UDP, ICMP, ICMPv6, SCTP (any case)"
W_PROTOCOL_DEFAULT = "no protocol; assumed TCP, as Kubernetes NetworkPolicy does"
E_PORTS_ENTRY_EMPTY = "a ports entry needs a protocol, a port, or both"
E_PORT = "must be a port number in 1..65535 or a service name from {services}; got {got}"
E_END_PORT = "must be a port number in 1..65535; got {got}"
W_PORT_STRING = "port number is written as a string; assumed the number {value}"
E_SERVICE = "unknown service {got} for {protocol} in {services}{hint}"
W_SERVICE_ALIAS = "service {got!r} is not in {services}; assumed {fixed!r} (port {port})"
E_NO_PORTS = "{protocol} has no ports; remove port and endPort"
E_END_PORT_ALONE = "endPort needs port, the first port of the range"
E_END_PORT_ORDER = "must not be below port ({port}); got {got}"
E_ICMP_FAMILY = (
    "{protocol} is {family} only, but every peer of this rule is {other}: it would match nothing"
)

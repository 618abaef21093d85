"""Network facts through netlink (pyroute2): the host's addresses and the sockets that
already existed when the monitor started (the monitor only sees sockets made after)."""

from __future__ import annotations

import socket
from dataclasses import dataclass

from pyroute2 import DiagSocket, IPRoute

TCP_LISTEN = 10
_STATES = {1: "ESTABLISHED", 2: "SYN_SENT", 3: "SYN_RECV", 4: "FIN_WAIT1", 5: "FIN_WAIT2", 6: "TIME_WAIT",
           7: "CLOSE", 8: "CLOSE_WAIT", 9: "LAST_ACK", 10: "LISTEN", 11: "CLOSING"}


@dataclass(frozen=True)
class HostAddress:
    ifname: str
    family: int
    address: str
    prefixlen: int


@dataclass(frozen=True)
class SocketInfo:
    family: int
    protocol: int  # IPPROTO_TCP / IPPROTO_UDP
    state: str  # TCP state name; UDP sockets report CLOSE or ESTABLISHED (connected)
    saddr: str
    sport: int
    daddr: str
    dport: int
    uid: int
    inode: int


def host_addresses() -> list[HostAddress]:
    with IPRoute() as ip:
        names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in ip.get_links()}
        return [
            HostAddress(names.get(a["index"], ""), a["family"], a.get_attr("IFA_ADDRESS"), a["prefixlen"])
            for a in ip.get_addr()
        ]


def existing_sockets() -> list[SocketInfo]:
    """TCP and UDP sockets over IPv4 and IPv6, from sock_diag."""
    out = []
    with DiagSocket() as diag:
        diag.bind()
        for family in (socket.AF_INET, socket.AF_INET6):
            for proto in (socket.IPPROTO_TCP, socket.IPPROTO_UDP):
                for msg in diag.get_sock_stats(family=family, protocol=proto):
                    out.append(
                        SocketInfo(family, proto, _STATES.get(msg["idiag_state"], str(msg["idiag_state"])),
                                   msg["idiag_src"], msg["idiag_sport"], msg["idiag_dst"], msg["idiag_dport"],
                                   msg["idiag_uid"], msg["idiag_inode"])
                    )
    return out

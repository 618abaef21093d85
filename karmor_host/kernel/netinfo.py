"""Network facts through netlink (pyroute2): the host's addresses, the sockets of this network
namespace (sock_diag) and the processes holding them (/proc/*/fd).

The monitor seeds the listeners that existed before it attached; the firewall finds SSH sessions
for its lock-out guard and the listener an ingress alert names. sock_diag is one netlink
request per address family; any error it answers with (a refused request, a reply that is not
a socket record) is raised as OSError, for the caller to degrade gracefully.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyroute2 import DiagSocket, IPRoute
from pyroute2.netlink.exceptions import NetlinkError

TCP_ESTABLISHED, TCP_LISTEN, UDP_UNCONNECTED = 1, 10, 7  # UDP sockets report TCP state names
ALL_STATES = 0xFFF
SOCK_DIAG_BY_FAMILY = 20  # the netlink message type of a socket record
_STATES = {1: "ESTABLISHED", 2: "SYN_SENT", 3: "SYN_RECV", 4: "FIN_WAIT1", 5: "FIN_WAIT2", 6: "TIME_WAIT",
           7: "CLOSE", 8: "CLOSE_WAIT", 9: "LAST_ACK", 10: "LISTEN", 11: "CLOSING"}
_FIELDS = ("idiag_state", "idiag_src", "idiag_sport", "idiag_dst", "idiag_dport", "idiag_uid", "idiag_inode")


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
    state: int  # TCP state; UDP sockets report CLOSE (unconnected) or ESTABLISHED (connected)
    local: str  # IPv4-mapped IPv6 addresses as plain IPv4
    local_port: int
    peer: str
    peer_port: int
    uid: int
    inode: int

    @property
    def state_name(self) -> str:
        return _STATES.get(self.state, str(self.state))


def host_addresses() -> list[HostAddress]:
    with IPRoute() as ip:
        names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in ip.get_links()}
        return [
            HostAddress(names.get(a["index"], ""), a["family"], a.get_attr("IFA_ADDRESS"), a["prefixlen"])
            for a in ip.get_addr()
        ]


def plain(addr: str) -> str:
    """IPv4-mapped IPv6 (a dual-stack socket's view of an IPv4 peer) as IPv4."""
    ip = ipaddress.ip_address(addr)
    mapped = getattr(ip, "ipv4_mapped", None)
    return str(mapped or ip)


def sockets(protocol: int, states: int = ALL_STATES) -> list[SocketInfo]:
    """IPv4 and IPv6 sockets of `protocol` (IPPROTO_TCP/UDP) in the states of the `states`
    bitmask (1 << TCP_LISTEN, ...). Raises OSError when sock_diag refuses or answers with
    something that is not a socket record (an LSM denying the request, say)."""
    out = []
    with DiagSocket() as diag:
        diag.bind()
        for family in (socket.AF_INET, socket.AF_INET6):
            try:
                msgs = list(diag.get_sock_stats(family=family, protocol=protocol, states=states))
            except NetlinkError as exc:
                raise OSError(exc.code, f"sock_diag refused family {family} protocol {protocol}: "
                                        f"{os.strerror(exc.code)}") from exc
            out.extend(_socket_info(family, protocol, msg) for msg in msgs)
    return out


def _socket_info(family: int, protocol: int, msg: Any) -> SocketInfo:
    """One pyroute2 inet_diag_msg as a SocketInfo; anything else in the reply is an error."""
    header = msg.get("header") or {}
    if header.get("type") != SOCK_DIAG_BY_FAMILY or any(msg.get(f) is None for f in _FIELDS):
        raise OSError(errno.EPROTO, f"sock_diag answered family {family} protocol {protocol} with a message of "
                                    f"type {header.get('type')} that is not a socket record")
    return SocketInfo(family, protocol, msg["idiag_state"], plain(msg["idiag_src"]), msg["idiag_sport"],
                      plain(msg["idiag_dst"]), msg["idiag_dport"], msg["idiag_uid"], msg["idiag_inode"])


def socket_holders(inodes: Iterable[int], proc_root: Path = Path("/proc")) -> dict[int, int]:
    """Socket inode -> the lowest tgid holding a descriptor to it (a forking server's
    parent). Reads every process's fd table once: for start-up and rare lookups, not for a
    hot path."""
    wanted = {f"socket:[{i}]": i for i in inodes}
    holders: dict[int, int] = {}
    if not wanted:
        return holders
    for entry in sorted((e for e in os.scandir(proc_root) if e.name.isdigit()), key=lambda e: int(e.name)):
        try:
            fds = os.scandir(Path(entry.path) / "fd")
        except OSError:
            continue  # gone, or a kernel thread
        with fds:
            for fd in fds:
                try:
                    inode = wanted.get(os.readlink(fd.path))
                except OSError:
                    continue
                if inode is not None:
                    holders.setdefault(inode, int(entry.name))
        if len(holders) == len(wanted):
            break
    return holders

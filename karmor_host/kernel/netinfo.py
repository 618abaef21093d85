"""Network facts through netlink (pyroute2): the host's addresses and the sockets that
already existed when the monitor started (the monitor only sees sockets made after)."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

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


def socket_owners(inodes: Iterable[int], proc_root: Path = Path("/proc")) -> dict[int, int]:
    """Socket inode -> the lowest tgid holding a descriptor to it (a forking server's
    parent). Reads every process's fd table once: for start-up, not for the hot path."""
    wanted = {f"socket:[{i}]": i for i in inodes}
    owners: dict[int, int] = {}
    if not wanted:
        return owners
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
                    owners.setdefault(inode, int(entry.name))
        if len(owners) == len(wanted):
            break
    return owners

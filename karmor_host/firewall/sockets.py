"""The processes behind this network namespace's sockets (kernel/netinfo.py reads sock_diag).

For the lock-out guard (established SSH sessions) and for naming the listening process of an
ingress alert. sock_diag answers for the namespace the agent runs in, which is the one the
firewall table lives in. A socket's process is found by its inode in /proc/*/fd: a scan,
so callers cache, and only alerts (rate-limited) and applies (rare) ask.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from pyroute2 import IPRoute

from karmor_host.firewall.guard import Session
from karmor_host.kernel import netinfo
from karmor_host.kernel.netinfo import TCP_ESTABLISHED, TCP_LISTEN, UDP_UNCONNECTED, SocketInfo

SSH_PORT = 22
SO_NETNS_COOKIE = 71


@dataclass(frozen=True)
class Owner:
    pid: int
    exe: str
    ppid: int = 0
    parent_exe: str = ""
    uid: int = 0


def owners_of_inodes(inodes: set[int], proc: Path = Path("/proc")) -> dict[int, Owner]:
    """Socket inode -> the process holding it open (the lowest pid), in one pass over /proc/*/fd."""
    found: dict[int, Owner] = {}
    for inode, pid in netinfo.socket_holders(inodes, proc).items():
        owner = process(pid, proc)
        if owner is not None:
            found[inode] = owner
    return found


def owner_of_inode(inode: int, proc: Path = Path("/proc")) -> Owner | None:
    return owners_of_inodes({inode}, proc).get(inode)


def process(pid: int, proc: Path = Path("/proc")) -> Owner | None:
    """pid -> Owner from /proc (None when the process is gone)."""
    base = proc / str(pid)
    try:
        exe = os.readlink(base / "exe")
        stat = (base / "stat").read_bytes()
        ppid = int(stat[stat.rindex(b")") + 2:].split()[1])
        uid = (base).stat().st_uid
    except (OSError, ValueError, IndexError):
        return None
    try:
        parent_exe = os.readlink(proc / str(ppid) / "exe")
    except OSError:
        parent_exe = ""
    return Owner(pid, exe.removesuffix(" (deleted)"), ppid, parent_exe, uid)


def listener(protocol: int, port: int, local: str) -> SocketInfo | None:
    """The socket that would receive a new flow to local:port (TCP LISTEN or UDP bound);
    one bound to the exact address wins over a wildcard one."""
    states = (1 << TCP_LISTEN) if protocol == socket.IPPROTO_TCP else ((1 << UDP_UNCONNECTED) | (1 << TCP_ESTABLISHED))
    best = None
    for s in netinfo.sockets(protocol, states):
        if s.local_port != port:
            continue
        if s.local == local:
            return s
        if ipaddress.ip_address(s.local).is_unspecified:
            best = best or s
    return best


def ssh_ports() -> set[int]:
    """22, plus every TCP port a process whose executable is named sshd listens on."""
    listening = [s for s in netinfo.sockets(socket.IPPROTO_TCP, 1 << TCP_LISTEN) if s.local_port != SSH_PORT]
    owners = owners_of_inodes({s.inode for s in listening}) if listening else {}
    ports = {SSH_PORT}
    for s in listening:
        owner = owners.get(s.inode)
        if owner is not None and os.path.basename(owner.exe) == "sshd":
            ports.add(s.local_port)
    return ports


def _route_iface(ip: IPRoute, peer: str, names: dict[int, str]) -> str:
    try:
        routes = ip.route("get", dst=peer)
    except Exception:  # noqa: BLE001 - no route: the session's interface is unknown, not fatal
        return ""
    for r in routes:
        oif = r.get_attr("RTA_OIF")
        if oif:
            return names.get(oif, "")
    return ""


def ssh_sessions() -> list[Session]:
    """Established TCP sessions whose local port is an SSH port, with the interface used."""
    ports = ssh_ports()
    found = [s for s in netinfo.sockets(socket.IPPROTO_TCP, 1 << TCP_ESTABLISHED) if s.local_port in ports]
    if not found:
        return []
    with IPRoute() as ip:
        names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in ip.get_links()}
        return [Session(s.local, s.local_port, s.peer, s.peer_port, _route_iface(ip, s.peer, names))
                for s in found]


def netns_cookie() -> int:
    """The cookie of this network namespace, as bpf_get_netns_cookie() reports it."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        return int.from_bytes(s.getsockopt(socket.SOL_SOCKET, SO_NETNS_COOKIE, 8), "little")

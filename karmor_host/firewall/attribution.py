"""Which process a logged flow belongs to.

Egress: bpf/netattr (cgroup connect4/6, sendmsg4/6 and sockops on the cgroup v2 root) keeps
(netns, destination, protocol, source port) -> process, executable and socket cookie. A
flow is looked up by its exact 4-tuple first (sockops filled in the source port, or the
socket was bound), then by destination alone with source port 0: the last process that
connected there from this namespace. Ingress: the local process listening on the
destination port, found with sock_diag (sockets.py); the sender is on another host.

The attribution says how it was made (Data `attribution=`), so an alert never presents a
guess as a fact.
"""

from __future__ import annotations

import ctypes
import ipaddress
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from karmor_host import log
from karmor_host.firewall import sockets
from karmor_host.firewall.packet import Headers
from karmor_host.kernel.bpfobj import BpfObject
from karmor_host.kernel.btf import Btf

_log = log.get("karmor.firewall.attribution")

OBJECT_NAME = "netattr.bpf.o"
EXE_LEN = 256
F_EXE_TRUNC = 1
COUNTERS = ("recorded", "update_failed", "exe_truncated", "exact")
PROGRAMS = ("karmor_na_connect4", "karmor_na_connect6", "karmor_na_sendmsg4", "karmor_na_sendmsg6",
            "karmor_na_sockops")
LISTENER_CACHE = 256
# A destination-only match names "the last process that connected there": only believable
# while that connect is recent (an exact 4-tuple match is believed at any age).
DESTINATION_MAX_AGE_S = 120.0


class NetattrKey(ctypes.Structure):
    """struct netattr_key (bpf/netattr/netattr.h)."""

    _fields_ = [("netns", ctypes.c_uint64), ("daddr", ctypes.c_uint8 * 16), ("dport", ctypes.c_uint16),
                ("sport", ctypes.c_uint16), ("family", ctypes.c_uint8), ("proto", ctypes.c_uint8),
                ("pad", ctypes.c_uint8 * 2)]


class NetattrOwner(ctypes.Structure):
    """struct netattr_owner (bpf/netattr/netattr.h)."""

    _fields_ = [("ts_ns", ctypes.c_uint64), ("cookie", ctypes.c_uint64), ("tgid", ctypes.c_uint32),
                ("pid", ctypes.c_uint32), ("ppid", ctypes.c_uint32), ("uid", ctypes.c_uint32),
                ("gid", ctypes.c_uint32), ("exe_len", ctypes.c_uint16), ("flags", ctypes.c_uint8),
                ("pad", ctypes.c_uint8), ("comm", ctypes.c_char * 16), ("exe", ctypes.c_char * EXE_LEN)]


MIRRORS: dict[str, type[ctypes.Structure]] = {"netattr_key": NetattrKey, "netattr_owner": NetattrOwner}


def compare(btf: Btf) -> list[str]:
    """Differences between the ctypes mirrors and the object's BTF (empty: they agree)."""
    problems = []
    for name, mirror in MIRRORS.items():
        want = [(m.name, m.offset, m.size) for m in btf.struct_members(name)]
        have = [(f, getattr(mirror, f).offset, getattr(mirror, f).size) for f, *_ in mirror._fields_]
        if want != have or btf.struct_size(name) != ctypes.sizeof(mirror):
            problems.append(f"struct {name}: BTF {want} vs mirror {have}")
    return problems


@dataclass(frozen=True)
class ProcessRef:
    """The process an alert names, and how we know."""

    pid: int = 0
    ppid: int = 0
    uid: int = 0
    exe: str = ""
    parent_exe: str = ""
    how: str = "none"  # connect | destination | listener | none
    note: str = ""  # why not, when how is none

    @property
    def found(self) -> bool:
        return self.how != "none"


def exe_path(raw: bytes, flags: int = 0) -> str:
    """Leaf-first NUL-terminated components -> "/usr/bin/curl" ("…/" in front when cut)."""
    parts = [p.decode(errors="replace") for p in raw.split(b"\0") if p]
    path = "/" + "/".join(reversed(parts))
    return "…" + path if flags & F_EXE_TRUNC else path


def key_bytes(netns: int, h: Headers, sport: int) -> bytes:
    key = NetattrKey(netns=netns, dport=h.dport, sport=sport, proto=h.proto,
                     family=socket.AF_INET if h.version == 4 else socket.AF_INET6)
    packed = ipaddress.ip_address(h.dst).packed
    ctypes.memmove(key.daddr, packed, len(packed))
    return bytes(key)


def entry_age_s(raw: bytes) -> float:
    """Seconds since the hook recorded this entry (both clocks are CLOCK_BOOTTIME)."""
    ts = NetattrOwner.from_buffer_copy(raw[: ctypes.sizeof(NetattrOwner)]).ts_ns
    return (time.clock_gettime_ns(time.CLOCK_BOOTTIME) - ts) / 1e9


def owner_ref(raw: bytes, how: str) -> ProcessRef:
    v = NetattrOwner.from_buffer_copy(raw[: ctypes.sizeof(NetattrOwner)])
    start = NetattrOwner.exe.offset  # the field itself reads as a C string: stops at the first NUL
    walked = raw[start : start + min(v.exe_len, EXE_LEN)]
    exe = exe_path(walked, v.flags) if v.exe_len else v.comm.decode(errors="replace")
    parent = sockets.process(v.ppid)
    return ProcessRef(v.tgid, v.ppid, v.uid, exe, parent.exe if parent else "", how)


class EgressAttribution:
    """The netattr object loaded and attached; lookups for logged egress flows."""

    def __init__(self, object_dir: Path, cgroup_root: Path) -> None:
        self._obj = BpfObject(object_dir / OBJECT_NAME)
        try:
            problems = compare(self._obj.btf())
            if problems:
                raise RuntimeError(f"{OBJECT_NAME} does not match its mirror: {problems}")
            self._obj.load()
            for name in PROGRAMS:
                self._obj.program(name).attach_cgroup(cgroup_root)
            self._flows = self._obj.map("netattr_flows")
            self._counters = self._obj.map("netattr_counters")
        except BaseException:
            self._obj.close()
            raise
        self.netns = sockets.netns_cookie()
        self.lookups = {"connect": 0, "destination": 0, "none": 0}
        _log.info("attribution_attached", cgroup=str(cgroup_root), programs=len(PROGRAMS), netns=self.netns)

    def lookup(self, h: Headers) -> ProcessRef:
        why = f"{h.proto_name} has no ports" if h.version else "not an IP packet"
        if h.version and h.dport:
            why = "no connect or sendmsg to this destination was seen"
            for sport, how in ((h.sport, "connect"), (0, "destination")):
                raw = self._flows.lookup(key_bytes(self.netns, h, sport))
                if raw is None:
                    continue
                age = entry_age_s(raw)
                if how == "destination" and age > DESTINATION_MAX_AGE_S:
                    why = f"the last connect to this destination was {age:.0f} s ago"
                    break  # too old to stand for this flow's sender
                self.lookups[how] += 1
                return owner_ref(raw, how)
        self.lookups["none"] += 1
        return ProcessRef(note=why)

    def counters(self) -> dict[str, int]:
        out = {}
        for i, name in enumerate(COUNTERS):
            values = self._counters.lookup_per_cpu(i.to_bytes(4, "little"))
            out[name] = sum(int.from_bytes(v, "little") for v in values)
        return {**out, **{f"lookup_{k}": v for k, v in self.lookups.items()}}

    def close(self) -> None:
        self._obj.close()


class ListenerAttribution:
    """Ingress: the local process a new flow is for, from its listening socket."""

    def __init__(self) -> None:
        self._owners: dict[int, tuple[float, sockets.Owner | None]] = {}  # inode -> (when, owner)

    def lookup(self, h: Headers) -> ProcessRef:
        if h.proto not in (socket.IPPROTO_TCP, socket.IPPROTO_UDP) or not h.dport:
            return ProcessRef(note=f"{h.proto_name} is not delivered to a listening socket")
        try:
            sock = sockets.listener(h.proto, h.dport, h.dst)
        except OSError as exc:
            return ProcessRef(note=f"sock_diag failed: {exc.strerror}")
        if sock is None:
            return ProcessRef(note=f"nothing listens on {h.proto_name} port {h.dport}")
        owner = self._owner(sock.inode)
        if owner is None:
            return ProcessRef(uid=sock.uid, note=f"the listening socket (inode {sock.inode}) has no visible process")
        return ProcessRef(owner.pid, owner.ppid, sock.uid, owner.exe, owner.parent_exe, "listener")

    def _owner(self, inode: int) -> sockets.Owner | None:
        now = time.monotonic()
        cached = self._owners.get(inode)
        if cached is not None and now - cached[0] < 60:
            return cached[1]
        owner = sockets.owner_of_inode(inode)
        if len(self._owners) >= LISTENER_CACHE:
            self._owners.clear()
        self._owners[inode] = (now, owner)
        return owner

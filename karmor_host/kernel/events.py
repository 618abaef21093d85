"""Decoded kernel events: the contract between the monitor (kernel/monitor.py) and consumers.

The monitor decodes ring-buffer records (layout in bpf/include/karmor.h, mirrored in
kernel/abi.py) into Event objects and fills the process context (exe, parent exe, cwd)
from its user-space process table. The alert matcher and the `trace` command consume them.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class EventKind(IntEnum):
    # values are the ABI: they match enum karmor_event_kind in bpf/include/karmor.h
    EXEC = 1
    FORK = 2
    EXIT = 3
    OPEN = 4
    SOCKET = 5
    CONNECT = 6
    ACCEPT = 7
    BIND = 8
    CAPABLE = 9
    SYSCALL = 10  # an audited syscall (unlink, chown, setuid, ptrace, mount, ...)


@dataclass(slots=True)
class Event:
    kind: EventKind
    ts_ns: int  # wall clock, Unix nanoseconds
    pid: int  # thread id (kernel pid)
    tgid: int  # process id as users know it
    ppid: int  # parent's tgid
    uid: int
    gid: int
    comm: str
    exe: str  # absolute executable path of the acting process ("" if unknown)
    parent_exe: str  # absolute executable path of its parent ("" if unknown)
    cwd: str = ""
    tty: str = ""  # e.g. "pts0"; "" when no controlling terminal
    retval: int = 0  # syscall result: >= 0 success, -errno failure
    # EXEC: the new executable (resolved) and its arguments; OPEN/SYSCALL: the resolved path
    path: str = ""
    argv: tuple[str, ...] = ()
    # OPEN
    flags: int = 0  # open(2) flags
    file_uid: int = -1  # owner uid of the file opened/executed (ownerOnly); -1 unknown
    # SOCKET / CONNECT / ACCEPT / BIND
    family: int = 0  # AF_*
    sock_type: int = 0  # SOCK_*
    protocol: int = 0  # IPPROTO_*
    saddr: str = ""
    sport: int = 0
    daddr: str = ""
    dport: int = 0
    # CAPABLE
    capability: int = -1  # CAP_* number
    # SYSCALL: the syscall's name, e.g. "unlinkat"; EXIT: exit code in retval
    syscall: str = ""
    # SYSCALL: its other arguments, in the syscall's order (bpf/README.md lists them):
    # unlinkat (flags,) chown (uid, gid) fchownat (uid, gid, flags) setuid (uid,)
    # setgid (gid,) ptrace (request, pid) mount (source, fstype, flags) umount2 (flags,)
    sys_args: tuple[int | str, ...] = ()
    # a path or argv was cut to the monitor's bounds (depth, length)
    truncated: bool = False

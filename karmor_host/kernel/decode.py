"""Ring-buffer records -> Event objects. The hot path: one call per record.

Layout in bpf/include/karmor.h (formats derived from abi.py's mirrors). Per record: one
unpack for the header, one for the body, a slice per string present; walked paths and
command names are cached by their raw bytes (the same files and programs recur). The
process context comes from the record when it carries one (and goes into the process
table), else from the table; nothing here reads /proc except a table miss.
"""

from __future__ import annotations

import posixpath
import socket
import struct

from karmor_host.kernel import abi
from karmor_host.kernel.events import Event, EventKind
from karmor_host.kernel.proctable import ProcTable

# header and body in one unpack per kind; the strings follow
_RECORD = {
    int(kind): struct.Struct(abi.struct_format(abi.Hdr) + abi.struct_format(cls)[1:])
    for kind, cls in abi.BODIES.items()
}
_KINDS = {int(k): k for k in EventKind}
SYSCALL_NAMES = {s.value: s.name.lower() for s in abi.Syscall if s.value}
SYSCALL_NAMES[0] = ""
_KIND_OFFSET = abi.Hdr.kind.offset

_W_PATH, _W_AUX, _W_EXE, _W_CWD = (1 << abi.Str.PATH, 1 << abi.Str.AUX, 1 << abi.Str.EXE, 1 << abi.Str.CWD)
_AF_UNIX, _AF_INET, _AF_INET6 = 1, 2, 10
_CACHE_MAX = 16384


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def _addr(family: int, raw: bytes) -> str:
    if family == _AF_INET:
        return socket.inet_ntop(socket.AF_INET, raw[:4])
    if family == _AF_INET6:
        return socket.inet_ntop(socket.AF_INET6, raw)
    return ""


def _unix_path(raw: bytes) -> str:
    if raw[:1] == b"\0":  # abstract namespace, shown as ss(8) does
        return "@" + _text(raw[1:].rstrip(b"\0"))
    return _text(raw.split(b"\0", 1)[0])


def _argv(raw: bytes) -> tuple[str, ...]:
    """NUL-terminated arguments; the last may lack its NUL when the capture was cut."""
    if not raw:
        return ()
    parts = raw.split(b"\0")
    if parts[-1] == b"":
        parts.pop()
    return tuple(_text(p) for p in parts)


def exit_status(code: int) -> int:
    """A raw task exit_code as a shell would report it: the status, or 128 + signal."""
    return 128 + (code & 0x7F) if code & 0x7F else (code >> 8) & 0xFF


class Decoder:
    """Turns records into Events, keeping the process table up to date."""

    def __init__(self, procs: ProcTable) -> None:
        self.procs = procs
        self.wall_offset_ns = 0  # CLOCK_REALTIME - CLOCK_BOOTTIME, refreshed by the caller
        self.decoded = 0
        self.undecodable = 0
        self.truncated = 0
        self.out: list[Event] = []
        self._walked: dict[bytes, str] = {}
        self._comms: dict[bytes, str] = {}

    def take(self) -> list[Event]:
        out, self.out = self.out, []
        return out

    def handle(self, buf: memoryview, off: int, size: int) -> None:
        """The ring reader's per-record callback. A record that does not parse is counted."""
        try:
            self.out.append(self.decode(buf, off, size))
        except (struct.error, ValueError, KeyError, IndexError, OSError):
            self.undecodable += 1
            return
        self.decoded += 1

    def walked(self, raw: bytes) -> str:
        """Components written leaf first, NUL-terminated -> an absolute path."""
        path = self._walked.get(raw)
        if path is None:
            parts = raw.split(b"\0")
            parts.pop()  # after the last NUL
            parts.reverse()
            path = "/" + _text(b"/".join(parts))
            if len(self._walked) >= _CACHE_MAX:
                self._walked.clear()
            self._walked[raw] = path
        return path

    def _comm(self, raw: bytes) -> str:
        comm = _text(raw.split(b"\0", 1)[0])
        if len(self._comms) >= _CACHE_MAX:
            self._comms.clear()
        self._comms[raw] = comm
        return comm

    def decode(self, buf: memoryview, off: int, size: int) -> Event:
        """One record -> Event; raises on a record that does not parse. The hot path: one
        unpack, cache lookups inlined, the common kinds first."""
        layout = _RECORD[buf[off + _KIND_OFFSET]]  # the kind's low byte picks the layout
        fields = layout.unpack_from(buf, off)
        (ts, retval, kind_no, flags, pid, tgid, ppid, uid, gid, comm_raw,
         l0, l1, l2, l3, l4, l5, walked, sys_no) = fields[:18]
        body = fields[18:]
        pos = off + layout.size
        if pos + l0 + l1 + l2 + l3 + l4 + l5 > off + size or kind_no > 0xFF:  # high byte set: not ours
            raise ValueError("record is not what its header says")
        s0 = bytes(buf[pos : pos + l0]) if l0 else b""
        pos += l0
        if l1 or l2:
            s1 = bytes(buf[pos : pos + l1])
            pos += l1
            s2 = bytes(buf[pos : pos + l2])
            pos += l2
        else:
            s1 = s2 = b""

        procs = self.procs
        if flags & abi.F_CTX:
            exe = self.walked(bytes(buf[pos : pos + l3])) if walked & _W_EXE else ""
            pos += l3
            cwd = self.walked(bytes(buf[pos : pos + l4])) if walked & _W_CWD else ""
            pos += l4
            tty = _text(bytes(buf[pos : pos + l5]))
            proc = procs.set_context(tgid, ppid, exe, cwd, tty)
        else:
            proc = procs.by_tgid.get(tgid) or procs.get(tgid)
        parent = procs.by_tgid.get(ppid) or (procs.get(ppid) if ppid else None)
        comm = self._comms.get(comm_raw)
        if comm is None:
            comm = self._comm(comm_raw)

        kind = _KINDS[kind_no]
        event = Event(kind, ts + self.wall_offset_ns, pid, tgid, ppid, uid, gid, comm, proc.exe,
                      parent.exe if parent else "", proc.cwd, proc.tty, retval, syscall=SYSCALL_NAMES[sys_no])
        if flags & abi.F_TRUNC:
            event.truncated = True
            self.truncated += 1
        if kind is EventKind.OPEN:
            event.flags, file_uid = body[0], body[1]
            event.file_uid = -1 if file_uid == 0xFFFFFFFF else file_uid
            if walked & _W_PATH:
                path = self._walked.get(s0)
                event.path = path if path is not None else self.walked(s0)
            else:
                event.path = self._path(s0, 0, s1, walked & _W_AUX, proc.cwd)
        elif kind is EventKind.EXEC:
            event.file_uid = body[0]
            event.path = proc.exe
            event.argv = _argv(s1)
        elif kind is EventKind.CONNECT or kind is EventKind.ACCEPT or kind is EventKind.BIND:
            event.family, event.sock_type, event.protocol, event.sport, event.dport = body[:5]
            if event.family == _AF_UNIX:
                unix = _unix_path(s0) if s0 else ""
                event.path = unix
                if kind is EventKind.BIND:
                    event.saddr = unix
                else:
                    event.daddr = unix
            else:
                event.saddr = _addr(event.family, body[7])
                event.daddr = _addr(event.family, body[8])
        elif kind is EventKind.SOCKET:
            event.family, event.sock_type, event.protocol = body[:3]
        elif kind is EventKind.CAPABLE:
            event.capability = body[0]
        elif kind is EventKind.SYSCALL:
            self._syscall(event, body, s0, walked & _W_PATH, s1, walked & _W_AUX, s2, proc.cwd)
        elif kind is EventKind.FORK:
            child = body[1]
            procs.fork(tgid, child)
            event.pid, event.tgid, event.ppid = body[0], child, tgid
            event.parent_exe = proc.exe
        elif kind is EventKind.EXIT:
            event.retval = exit_status(body[0])
            procs.exit(tgid)
        return event

    def _path(self, raw: bytes, is_walked: int, aux: bytes, aux_walked: int, cwd: str) -> str:
        """A resolved (walked) path as is; a path as passed, joined with its dirfd or the cwd."""
        if is_walked:
            return self.walked(raw)
        path = _text(raw)
        if path and not path.startswith("/"):
            base = self.walked(aux) if aux_walked else cwd
            if base:
                path = posixpath.normpath(posixpath.join(base, path))
        return path

    def _syscall(self, event: Event, body: tuple, s0: bytes, w0: int, s1: bytes, w1: int, s2: bytes, cwd: str) -> None:
        _dirfd, _pad, a0, a1, a2 = body
        name = event.syscall
        if name == "mount":
            event.path = self._path(s0, 0, b"", 0, cwd)
            event.sys_args = (_text(s2), _text(s1), a0)  # source, fstype, flags
            return
        event.path = self._path(s0, w0, s1, w1, cwd) if s0 else ""
        if name in ("unlinkat", "umount2"):
            event.sys_args = (a0,)
        elif name == "chown":
            event.sys_args = (a0, a1)
        elif name == "fchownat":
            event.sys_args = (a0, a1, a2)
        elif name in ("setuid", "setgid"):
            event.sys_args = (a0,)
        elif name == "ptrace":
            event.sys_args = (a0, a1)

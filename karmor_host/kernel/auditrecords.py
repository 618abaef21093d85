"""Where the kernel's audit records come from on a real host, as text lines for an enforcer's
parser (enforce/apparmor/records.py, enforce/selinux/avc.py). Hosts differ in what they run,
so three sources, best first:

- `multicast`: the audit netlink socket's read-only multicast group (AUDIT_NLGRP_READLOG,
  Linux 3.16+, needs CAP_AUDIT_READ). Every record, whether or not auditd runs, and without
  printk's rate limit. Overruns of the socket buffer are counted (ENOBUFS).
- `auditd`: auditd's log (/var/log/audit/audit.log) when the multicast group is refused and
  auditd runs -- then the kernel sends the records to auditd and nowhere else.
- `kmsg`: /dev/kmsg when neither works: without auditd the kernel prints audit records, rate
  limited by printk (`audit: printk limit exceeded` is counted as a loss; so are records the
  ring buffer overwrote before we read them).

Each source reads without blocking and returns the lines an enforcer's RecordFilter keeps.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from collections.abc import Container
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

NETLINK_AUDIT = 9
AUDIT_NLGRP_READLOG = 1
AUDIT_AVC = 1400  # SELinux's AVC records, and AppArmor's since Linux 2.6.x
SO_RCVBUFFORCE = 33  # not in the socket module; root may exceed rmem_max with it
_NLMSG = struct.Struct("=IHHII")
RCVBUF = 8 << 20
AUDITD_LOG = Path("/var/log/audit/audit.log")
AUDITD_PID = Path("/run/auditd.pid")
KMSG = Path("/dev/kmsg")


@dataclass(frozen=True)
class RecordFilter:
    """The records one enforcer reads: their netlink message types, and a text each of them
    carries (kmsg and auditd's log lines have no type number to filter on cheaply)."""

    types: Container[int]
    marker: str  # e.g. `apparmor=` or `avc:`

    def wants(self, text: str) -> bool:
        return self.marker in text


class Source(Protocol):
    name: str
    lost: int  # records known to be lost before we could read them

    def fileno(self) -> int: ...

    def read(self) -> list[str]: ...

    def close(self) -> None: ...


class Multicast:
    name = "multicast"

    def __init__(self, records: RecordFilter) -> None:
        self.lost = 0
        self.records = records
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC,
                             NETLINK_AUDIT)
        try:
            try:
                sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RCVBUF)
            except OSError:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
            sock.bind((0, AUDIT_NLGRP_READLOG))
        except OSError:
            sock.close()
            raise
        self._sock = sock

    def fileno(self) -> int:
        return self._sock.fileno()

    def read(self) -> list[str]:
        lines: list[str] = []
        while True:
            try:
                data = self._sock.recv(1 << 16)
            except BlockingIOError:
                return lines
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:  # the socket buffer overflowed: records dropped
                    self.lost += 1
                    continue
                raise
            lines.extend(split_netlink(data, self.records))

    def close(self) -> None:
        self._sock.close()


def split_netlink(data: bytes, records: RecordFilter) -> list[str]:
    """The texts of the wanted records in one netlink datagram."""
    out = []
    off = 0
    while off + _NLMSG.size <= len(data):
        length, kind, _flags, _seq, _pid = _NLMSG.unpack_from(data, off)
        if length < _NLMSG.size:
            break
        if kind in records.types:
            text = data[off + _NLMSG.size : off + length].rstrip(b"\x00\n").decode("utf-8", "replace")
            if records.wants(text):
                out.append(text)
        off += (length + 3) & ~3
    return out


class Kmsg:
    name = "kmsg"

    def __init__(self, records: RecordFilter, path: Path = KMSG) -> None:
        self.lost = 0
        self.records = records
        self._fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        os.lseek(self._fd, 0, os.SEEK_END)  # only what happens from now on

    def fileno(self) -> int:
        return self._fd

    def read(self) -> list[str]:
        lines = []
        while True:
            try:
                chunk = os.read(self._fd, 8192)  # one record per read
            except BlockingIOError:
                return lines
            except OSError as exc:
                if exc.errno == errno.EPIPE:  # overwritten before we read it
                    self.lost += 1
                    continue
                raise
            if not chunk:
                return lines
            line = kmsg_message(chunk.decode("utf-8", "replace"))
            if "audit: printk limit exceeded" in line or ("audit" in line and "callbacks suppressed" in line):
                self.lost += 1
            elif self.records.wants(line):
                lines.append(line)

    def close(self) -> None:
        os.close(self._fd)


def kmsg_message(record: str) -> str:
    """`6,812,41630504,-;audit: type=1400 ...\\n SUBSYSTEM=...` -> `audit: type=1400 ...`."""
    head, _, rest = record.partition(";")
    return (rest if rest else head).split("\n", 1)[0]


class AuditdLog:
    """Follows auditd's log from its end, across rotation (a new file at the same path)."""

    name = "auditd"

    def __init__(self, records: RecordFilter, path: Path = AUDITD_LOG) -> None:
        self.lost = 0
        self.records = records
        self.path = path
        self._file = open(path, "rb")  # noqa: SIM115 - kept open while following
        self._file.seek(0, os.SEEK_END)
        self._inode = os.fstat(self._file.fileno()).st_ino
        self._partial = b""

    def fileno(self) -> int:
        return self._file.fileno()

    def read(self) -> list[str]:
        data = self._file.read()
        try:
            st = os.stat(self.path)
        except OSError:
            st = None
        if st is not None and (st.st_ino != self._inode or st.st_size < self._file.tell()):
            data += self._file.read()  # the rest of the rotated file, then the new one
            self._file.close()
            self._file = open(self.path, "rb")  # noqa: SIM115
            self._inode = st.st_ino
            data += self._file.read()
        data = self._partial + data
        complete, _, self._partial = data.rpartition(b"\n")
        if not complete:
            return []
        return [line for line in complete.decode("utf-8", "replace").split("\n") if self.records.wants(line)]

    def close(self) -> None:
        self._file.close()


def auditd_running(pid_file: Path = AUDITD_PID) -> bool:
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return False
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip() == "auditd"
    except OSError:
        return False


def open_source(records: RecordFilter, auditd_log: Path = AUDITD_LOG, kmsg: Path = KMSG,
                multicast: type[Multicast] = Multicast) -> tuple[Source, str]:
    """The best source this host offers for `records`, and why it was chosen."""
    try:
        return multicast(records), "audit netlink multicast group"
    except OSError as exc:
        refused = f"audit multicast refused ({os.strerror(exc.errno or 0)})"
    if auditd_running():
        # The kernel hands every record to auditd alone: kmsg would stay silent, so a log we
        # cannot follow is an error, not a reason to fall back.
        try:
            return AuditdLog(records, auditd_log), f"{refused}; auditd runs: following {auditd_log}"
        except OSError as exc:
            raise OSError(exc.errno, f"{refused}; auditd runs but {auditd_log}: {exc.strerror}") from None
    return Kmsg(records, kmsg), f"{refused}; no auditd: reading {kmsg} (printk rate limit applies)"

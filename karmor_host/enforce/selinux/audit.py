"""Where SELinux's AVC records come from, as lines for avc.parse. Best first:

- `netlink`: the audit netlink socket's read-only multicast group (AUDIT_NLGRP_READLOG, needs
  CAP_AUDIT_READ): every record, with or without auditd, and no printk rate limit. Socket
  buffer overruns (ENOBUFS) are counted as losses.
- `auditd`: auditd's log when the group is refused and auditd runs (the kernel then hands
  records to auditd only).
- `kmsg`: /dev/kmsg otherwise: without auditd the kernel prints audit records, rate limited by
  printk; the kernel's "printk limit exceeded" notices and overwritten records count as losses.
Every source reads without blocking and returns the AVC lines that are there.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from pathlib import Path

NETLINK_AUDIT = 9
AUDIT_NLGRP_READLOG = 1
AUDIT_AVC = 1400
_NLMSG = struct.Struct("=IHHII")
RCVBUF = 8 << 20
SO_RCVBUFFORCE = 33
AUDITD_LOG = Path("/var/log/audit/audit.log")
AUDITD_PID = Path("/run/auditd.pid")
KMSG = Path("/dev/kmsg")


class Netlink:
    name = "netlink"

    def __init__(self) -> None:
        self.lost = 0
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
        out: list[str] = []
        while True:
            try:
                data = self._sock.recv(1 << 16)
            except BlockingIOError:
                return out
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:
                    self.lost += 1
                    continue
                raise
            out.extend(avc_payloads(data))

    def close(self) -> None:
        self._sock.close()


def avc_payloads(data: bytes) -> list[str]:
    """The AVC record texts in one netlink datagram."""
    out = []
    off = 0
    while off + _NLMSG.size <= len(data):
        length, kind, _flags, _seq, _pid = _NLMSG.unpack_from(data, off)
        if length < _NLMSG.size:
            break
        if kind == AUDIT_AVC:
            text = data[off + _NLMSG.size: off + length].rstrip(b"\x00\n").decode("utf-8", "replace")
            if "avc:" in text:
                out.append(text)
        off += (length + 3) & ~3
    return out


class Kmsg:
    name = "kmsg"

    def __init__(self, path: Path = KMSG) -> None:
        self.lost = 0
        self._fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        os.lseek(self._fd, 0, os.SEEK_END)

    def fileno(self) -> int:
        return self._fd

    def read(self) -> list[str]:
        out = []
        while True:
            try:
                chunk = os.read(self._fd, 8192)
            except BlockingIOError:
                return out
            except OSError as exc:
                if exc.errno == errno.EPIPE:
                    self.lost += 1
                    continue
                raise
            if not chunk:
                return out
            record = chunk.decode("utf-8", "replace")
            head, _, rest = record.partition(";")
            line = (rest or head).split("\n", 1)[0]
            if "audit: printk limit exceeded" in line:
                self.lost += 1
            elif "avc:" in line:
                out.append(line)

    def close(self) -> None:
        os.close(self._fd)


class AuditdLog:
    """Follows auditd's log from its end, across rotation."""

    name = "auditd"

    def __init__(self, path: Path = AUDITD_LOG) -> None:
        self.lost = 0
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
            self._file.close()
            self._file = open(self.path, "rb")  # noqa: SIM115
            self._inode = st.st_ino
            data += self._file.read()
        data = self._partial + data
        complete, _, self._partial = data.rpartition(b"\n")
        return [line for line in complete.decode("utf-8", "replace").split("\n") if "avc:" in line]

    def close(self) -> None:
        self._file.close()


def auditd_running(pid_file: Path = AUDITD_PID) -> bool:
    try:
        pid = int(pid_file.read_text().strip())
        return Path(f"/proc/{pid}/comm").read_text().strip() == "auditd"
    except (OSError, ValueError):
        return False


def open_source() -> tuple[Netlink | AuditdLog | Kmsg, str]:
    """The best source this host offers, and why it was chosen."""
    try:
        return Netlink(), "audit netlink multicast group"
    except OSError as exc:
        why = f"audit multicast refused ({os.strerror(exc.errno or 0)})"
    if auditd_running() and AUDITD_LOG.is_file():
        return AuditdLog(), f"{why}; auditd runs: following {AUDITD_LOG}"
    return Kmsg(), f"{why}; no auditd: reading the kernel log (rate limited by printk)"

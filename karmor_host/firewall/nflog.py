"""NFLOG over netfilter netlink: the packets our table's `log group` rules send.

No library binds NFLOG for Python (pyroute2 0.7 has no nflog module), so this is the small
part of the protocol we need, on a plain AF_NETLINK socket: bind the group, ask for the
first `snaplen` bytes of each packet, and decode prefix, interfaces, UID, timestamp and
payload. Decoding is pure (decode_messages); NflogSocket owns the socket.

When the reader falls behind, the kernel drops messages and recv fails with ENOBUFS: that is
counted as an overrun, never hidden.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass

NETLINK_NETFILTER = 12
NFNL_SUBSYS_ULOG = 4
NFULNL_MSG_PACKET, NFULNL_MSG_CONFIG = 0, 1
NFULA_CFG_CMD, NFULA_CFG_MODE, NFULA_CFG_NLBUFSIZ, NFULA_CFG_TIMEOUT, NFULA_CFG_QTHRESH = 1, 2, 3, 4, 5
NFULNL_CFG_CMD_BIND, NFULNL_CFG_CMD_UNBIND = 1, 2
NFULNL_COPY_PACKET = 2
NFULA_PACKET_HDR, NFULA_MARK, NFULA_TIMESTAMP = 1, 2, 3
NFULA_IFINDEX_INDEV, NFULA_IFINDEX_OUTDEV = 4, 5
NFULA_PAYLOAD, NFULA_PREFIX, NFULA_UID, NFULA_GID = 9, 10, 11, 14
NLM_F_REQUEST, NLM_F_ACK = 1, 4
NLMSG_ERROR, NLMSG_DONE = 2, 3
NFNETLINK_V0 = 0
_NLMSG = struct.Struct("=IHHII")
_NFGEN = struct.Struct("=BBH")  # family, version, res_id (big-endian group number)


@dataclass(frozen=True)
class LoggedPacket:
    prefix: str
    family: int  # NFPROTO_IPV4 (2) / NFPROTO_IPV6 (10)
    hook: int  # NF_INET_LOCAL_IN (1) / NF_INET_LOCAL_OUT (3)
    indev: int  # ifindex, 0 if none
    outdev: int
    uid: int | None  # the owning socket's UID (locally sent packets only)
    ts_ns: int  # wall clock; the kernel's timestamp when it sent one, else the time read
    payload: bytes


def _attrs(data: bytes) -> Iterator[tuple[int, bytes]]:
    off = 0
    while off + 4 <= len(data):
        length, kind = struct.unpack_from("=HH", data, off)
        if length < 4:
            return
        yield kind & 0x3FFF, data[off + 4 : off + length]  # drop NLA_F_NESTED / byte-order flags
        off += (length + 3) & ~3


def decode_messages(data: bytes, now_ns: int = 0) -> tuple[list[LoggedPacket], int]:
    """One datagram of netlink messages -> (packets, errors reported by the kernel)."""
    packets: list[LoggedPacket] = []
    errors = 0
    off = 0
    while off + _NLMSG.size <= len(data):
        length, msg_type, _flags, _seq, _pid = _NLMSG.unpack_from(data, off)
        if length < _NLMSG.size:
            break
        body = data[off + _NLMSG.size : off + length]
        off += (length + 3) & ~3
        if msg_type == NLMSG_ERROR:
            code = struct.unpack_from("=i", body)[0] if len(body) >= 4 else -1
            errors += code != 0
            continue
        if msg_type != (NFNL_SUBSYS_ULOG << 8 | NFULNL_MSG_PACKET) or len(body) < _NFGEN.size:
            continue
        family = body[0]
        fields = dict(_attrs(body[_NFGEN.size :]))
        hook = fields[NFULA_PACKET_HDR][2] if len(fields.get(NFULA_PACKET_HDR, b"")) >= 3 else 0
        ts_ns = now_ns or time.time_ns()
        if len(fields.get(NFULA_TIMESTAMP, b"")) == 16:
            sec, usec = struct.unpack("!QQ", fields[NFULA_TIMESTAMP])
            ts_ns = sec * 1_000_000_000 + usec * 1000
        uid = struct.unpack("!I", fields[NFULA_UID])[0] if len(fields.get(NFULA_UID, b"")) == 4 else None
        packets.append(LoggedPacket(
            prefix=fields.get(NFULA_PREFIX, b"").split(b"\0", 1)[0].decode(errors="replace"),
            family=family, hook=hook,
            indev=struct.unpack("!I", fields[NFULA_IFINDEX_INDEV])[0] if NFULA_IFINDEX_INDEV in fields else 0,
            outdev=struct.unpack("!I", fields[NFULA_IFINDEX_OUTDEV])[0] if NFULA_IFINDEX_OUTDEV in fields else 0,
            uid=uid, ts_ns=ts_ns, payload=fields.get(NFULA_PAYLOAD, b""),
        ))
    return packets, errors


def _attr(kind: int, value: bytes) -> bytes:
    raw = struct.pack("=HH", 4 + len(value), kind) + value
    return raw + b"\0" * (-len(raw) % 4)


def config_message(group: int, attrs: bytes, seq: int) -> bytes:
    body = _NFGEN.pack(socket.AF_UNSPEC, NFNETLINK_V0, socket.htons(group)) + attrs
    header = _NLMSG.pack(_NLMSG.size + len(body), NFNL_SUBSYS_ULOG << 8 | NFULNL_MSG_CONFIG,
                         NLM_F_REQUEST | NLM_F_ACK, seq, 0)
    return header + body


class NflogSocket:
    """Bound to one NFLOG group in this network namespace; recv() returns decoded packets."""

    def __init__(self, group: int, copy_bytes: int = 256, rcvbuf: int = 4 << 20) -> None:
        self.group = group
        self.overruns = 0  # times the kernel dropped messages because we fell behind
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        try:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            self._sock.bind((0, 0))
            self._configure(_attr(NFULA_CFG_CMD, bytes([NFULNL_CFG_CMD_BIND])), 1)
            mode = struct.pack("!IBx", copy_bytes, NFULNL_COPY_PACKET)
            self._configure(_attr(NFULA_CFG_MODE, mode) + _attr(NFULA_CFG_TIMEOUT, struct.pack("!I", 10)), 2)
        except BaseException:
            self._sock.close()
            raise

    def _configure(self, attrs: bytes, seq: int) -> None:
        self._sock.send(config_message(self.group, attrs, seq))
        data = self._sock.recv(65536)
        length, msg_type = struct.unpack_from("=IH", data)
        if msg_type == NLMSG_ERROR:
            code = struct.unpack_from("=i", data, _NLMSG.size)[0]
            if code:
                raise OSError(-code, f"NFLOG group {self.group}: {os.strerror(-code)}")

    def fileno(self) -> int:
        return self._sock.fileno()

    def recv(self, timeout: float) -> list[LoggedPacket]:
        self._sock.settimeout(timeout)
        try:
            data = self._sock.recv(1 << 17)
        except TimeoutError:
            return []
        except OSError as exc:
            if exc.errno == errno.ENOBUFS:
                self.overruns += 1
                return []
            raise
        return decode_messages(data)[0]

    def close(self) -> None:
        try:
            self._sock.send(config_message(self.group, _attr(NFULA_CFG_CMD, bytes([NFULNL_CFG_CMD_UNBIND])), 3))
        except OSError:
            pass  # closing unbinds anyway
        self._sock.close()

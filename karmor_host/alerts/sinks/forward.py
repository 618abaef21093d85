"""Records to Fluentd / Fluent Bit over the Fluent forward protocol v1, at least once.

Each batch is one PackedForward message, `[tag, <entries>, {"chunk": id, "size": n}]`,
where entries are concatenated msgpack `[EventTime, record]` pairs (EventTime: msgpack
extension 0, seconds and nanoseconds as big-endian u32). The batch counts as delivered
only when the collector answers `{"ack": id}` (Fluentd `in_forward` and Fluent Bit
`in_forward` do so for every message that carries a chunk). The chunk id is derived from
the batch's place in the spool, so a batch sent again after a lost ack carries the same id.

With a shared key, the connection starts with the protocol's handshake: the server sends
`["HELO", {nonce, auth, keepalive}]`, we answer `["PING", hostname, salt,
sha512_hex(salt + hostname + nonce + key), "", ""]` and check that the `PONG` proves the
server knows the key too (`sha512_hex(salt + server_hostname + nonce + key)`). A HELO with
`keepalive: false` means one batch per connection.
"""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import struct
from typing import Any

import msgpack

from karmor_host.alerts.sinks.base import Record
from karmor_host.alerts.sinks.remote import DeliveryError, RemoteSink
from karmor_host.alerts.spool import Batch

DEFAULT_TAG = "karmor.alert"
_EVENT_TIME = struct.Struct(">II")
_MAX_ANSWER = 1 << 20  # nothing the server says to us is larger than this


def event_time(record: Record) -> msgpack.ExtType:
    """Fluent EventTime of a record: Timestamp plus the microseconds of UpdatedTime."""
    seconds = int(record.get("Timestamp") or 0)
    updated = str(record.get("UpdatedTime") or "")
    try:
        nanos = int(updated[20:26]) * 1000 if updated[19:20] == "." else 0
    except ValueError:
        nanos = 0
    return msgpack.ExtType(0, _EVENT_TIME.pack(seconds & 0xFFFFFFFF, nanos))


def entry(record: Record) -> bytes:
    return msgpack.packb([event_time(record), record], use_bin_type=True)


def _bin_header(n: int) -> bytes:
    if n < 1 << 8:
        return b"\xc4" + bytes((n,))
    if n < 1 << 16:
        return b"\xc5" + n.to_bytes(2, "big")
    return b"\xc6" + n.to_bytes(4, "big")


def packed_forward(tag: str, entries: list[bytes] | tuple[bytes, ...], chunk: str) -> bytes:
    """`[tag, bin(entries...), {"chunk": chunk, "size": n}]` without copying entries twice."""
    body = b"".join(entries)
    option = msgpack.packb({"chunk": chunk, "size": len(entries)}, use_bin_type=True)
    return b"\x93" + msgpack.packb(tag, use_bin_type=True) + _bin_header(len(body)) + body + option


def _as_bytes(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    # str on the wire: decoded with surrogateescape, so this gives back the exact bytes
    return str(value or "").encode("utf-8", "surrogateescape")


def _hexdigest(*parts: bytes) -> str:
    h = hashlib.sha512()
    for p in parts:
        h.update(p)
    return h.hexdigest()


class ForwardSink(RemoteSink):
    kind = "forward"

    def __init__(self, *args: Any, tag: str = DEFAULT_TAG, shared_key: bytes = b"",
                 self_hostname: str = "", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.tag = tag
        self._shared_key = shared_key
        self._hostname = self_hostname or socket.gethostname()
        self._keepalive_allowed = True
        self._unpacker: msgpack.Unpacker | None = None

    @property
    def keep_connection(self) -> bool:
        return self._keepalive_allowed

    def encode(self, record: Record) -> bytes:
        return entry(record)

    def _read(self, sock: socket.socket) -> Any:
        assert self._unpacker is not None
        while True:
            try:
                return next(self._unpacker)
            except StopIteration:
                pass
            data = sock.recv(65536)
            if not data:
                raise ConnectionError("the collector closed the connection")
            self._unpacker.feed(data)

    def _handshake(self, sock: socket.socket) -> None:
        self._unpacker = msgpack.Unpacker(raw=False, unicode_errors="surrogateescape",
                                          max_buffer_size=_MAX_ANSWER)
        self._keepalive_allowed = True
        if not self._shared_key:
            return
        helo = self._read(sock)
        if not (isinstance(helo, list) and len(helo) == 2 and helo[0] == "HELO" and isinstance(helo[1], dict)):
            raise DeliveryError(f"expected HELO from the collector, got {str(helo)[:80]!r}")
        options = helo[1]
        if options.get("auth"):
            raise DeliveryError("the collector asks for username/password authentication, which this "
                                "sink does not do; use a shared key only")
        nonce = _as_bytes(options.get("nonce"))
        self._keepalive_allowed = bool(options.get("keepalive", True))
        salt = os.urandom(16).hex().encode()
        host = self._hostname.encode()
        ping = ["PING", self._hostname, salt.decode(), _hexdigest(salt, host, nonce, self._shared_key), "", ""]
        sock.sendall(msgpack.packb(ping, use_bin_type=True))
        pong = self._read(sock)
        if not (isinstance(pong, list) and len(pong) == 5 and pong[0] == "PONG"):
            raise DeliveryError(f"expected PONG from the collector, got {str(pong)[:80]!r}")
        _, ok, reason, server_host, digest = pong
        if not ok:
            raise DeliveryError(f"the collector refused the handshake: {reason}")
        expected = _hexdigest(salt, _as_bytes(server_host), nonce, self._shared_key)
        if _as_bytes(digest).decode("ascii", "replace") != expected:
            raise DeliveryError("the collector's PONG does not prove it knows the shared key")

    def _deliver(self, sock: socket.socket, batch: Batch) -> None:
        chunk = base64.b64encode(batch.id).decode("ascii")
        message = packed_forward(self.tag, batch.payloads, chunk)
        self._written = True  # from here on the collector may have the batch
        sock.sendall(message)
        answer = self._read(sock)
        if not isinstance(answer, dict) or answer.get("ack") != chunk:
            raise DeliveryError(f"expected ack {chunk}, got {str(answer)[:80]!r}")

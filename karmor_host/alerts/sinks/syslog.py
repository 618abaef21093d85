"""Records to a syslog collector (rsyslog, syslog-ng): RFC 5424 over TCP, RFC 6587 framing.

Each record is one RFC 5424 message, octet-counted (`<length> <message>`, RFC 6587 3.4.1)
so that no character inside a record can split it; with TLS this is RFC 5425.

    <PRI>1 <UpdatedTime> <HostName> karmor-host <pid> <Type> <structured data> <message>

- PRI: the configured facility * 8 + the same severity journald gets (docs/alerts.md).
- `format: structured`: every record field as an SD-PARAM of `[karmor@32473 ...]` (32473 is
  the example enterprise number of RFC 5612; the SD-ID is ours to change if we register
  one), the message is the journald one-line summary.
- `format: json`: no structured data (`-`), the message is the record as compact JSON.

Syslog over TCP has no acknowledgement. A batch counts as delivered when the collector's
TCP stack acknowledged every byte of it (SIOCOUTQ drained on an established connection),
so a network failure or a collector that is down loses nothing; what the collector's kernel
accepted and its process never read (a collector killed at that moment) can still be lost.
The forward sink, with its application-level acks, has no such gap.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import struct
import termios
import time
from typing import Any

from karmor_host.alerts.sinks.base import Record
from karmor_host.alerts.sinks.journald import field_value, priority, summary
from karmor_host.alerts.sinks.remote import RemoteSink
from karmor_host.alerts.spool import Batch

FACILITIES = {
    "kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5, "lpr": 6, "news": 7,
    "uucp": 8, "cron": 9, "authpriv": 10, "ftp": 11, "ntp": 12, "security": 13, "console": 14,
    **{f"local{i}": 16 + i for i in range(8)},
}
FORMATS = ("structured", "json")
APP_NAME = "karmor-host"
SD_ID = "karmor@32473"
_TCP_ESTABLISHED, _TCP_CLOSE_WAIT = 1, 8
_SD_ESCAPES = str.maketrans({"\\": "\\\\", '"': '\\"', "]": "\\]"})


def _header(value: Any, limit: int) -> str:
    """An RFC 5424 header field: printable US-ASCII without spaces, or the nil value `-`."""
    text = str(value or "")
    if not (text.isascii() and text.isprintable() and " " not in text):  # the rare slow path
        text = "".join(c if 33 <= ord(c) <= 126 else "_" for c in text)
    return text[:limit] or "-"


_sd_names: dict[str, str] = {}  # record keys are few and fixed: clean each once


def _sd_name(name: str) -> str:
    clean = _sd_names.get(name)
    if clean is None:
        clean = "".join(c for c in name if 33 <= ord(c) <= 126 and c not in '= ]"')[:32] or "_"
        if len(_sd_names) < 1024:
            _sd_names[name] = clean
    return clean


def _sd_value(value: Any) -> str:
    text = value if isinstance(value, str) else field_value(value)
    return text.translate(_SD_ESCAPES) if ('"' in text or "\\" in text or "]" in text) else text


def structured_data(record: Record) -> str:
    params = " ".join(f'{_sd_name(k)}="{_sd_value(v)}"' for k, v in record.items())
    return f"[{SD_ID} {params}]" if params else f"[{SD_ID}]"


def message(record: Record, fmt: str = "structured", facility: int = FACILITIES["auth"],
            procid: int | None = None) -> bytes:
    """One RFC 5424 message (without framing)."""
    pri = facility * 8 + priority(record)
    header = (f"<{pri}>1 {_header(record.get('UpdatedTime'), 32)} {_header(record.get('HostName'), 255)}"
              f" {APP_NAME} {os.getpid() if procid is None else procid} {_header(record.get('Type'), 32)}")
    if fmt == "json":
        body = f"- {json.dumps(record, separators=(',', ':'), ensure_ascii=False)}"
    else:
        body = f"{structured_data(record)} {summary(record)}"
    return f"{header} {body}".encode("utf-8", "replace")


def frame(msg: bytes) -> bytes:
    """RFC 6587 octet counting."""
    return b"%d %s" % (len(msg), msg)


class SyslogSink(RemoteSink):
    kind = "syslog"

    def __init__(self, *args: Any, fmt: str = "structured", facility: str = "auth", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if fmt not in FORMATS:
            raise ValueError(f"format must be one of {FORMATS}, not {fmt!r}")
        self.fmt = fmt
        self.facility = FACILITIES[facility]
        self._pid = os.getpid()

    def encode(self, record: Record) -> bytes:
        return frame(message(record, self.fmt, self.facility, self._pid))

    def _deliver(self, sock: socket.socket, batch: Batch) -> None:
        self._written = True
        sock.sendall(b"".join(batch.payloads))
        _wait_acknowledged(sock, self.send_timeout)


def _wait_acknowledged(sock: socket.socket, timeout: float) -> None:
    """Return once the peer's TCP acknowledged everything we sent; raise if the connection
    broke first (a reset empties the send queue too, so the state is checked as well)."""
    deadline = time.monotonic() + timeout
    pause = 0.0002
    buf = bytearray(4)
    while True:
        fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, buf)  # SIOCOUTQ: unsent + unacked bytes
        state = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0]
        if state not in (_TCP_ESTABLISHED, _TCP_CLOSE_WAIT):
            raise ConnectionError("the connection closed before the collector acknowledged the batch")
        if struct.unpack("i", buf)[0] == 0:
            return
        if time.monotonic() >= deadline:
            raise TimeoutError("the collector did not acknowledge the batch in time")
        time.sleep(pause)
        pause = min(pause * 2, 0.01)

"""Records read back from the journal (python3-systemd's Reader), for `karmor-host logs`.

Each record was written by JournaldSink as one entry with SYSLOG_IDENTIFIER=karmor-host,
KARMOR_* fields and the record itself in KARMOR_RECORD_JSON; filters become journal matches
(same field: OR, different fields: AND), so journald does the filtering.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from karmor_host.alerts.record import ALERT_TYPES, HOST_LOG, SYSTEM_EVENT
from karmor_host.alerts.sinks.journald import IDENTIFIER, RECORD_JSON

TYPES: dict[str, tuple[str, ...]] = {
    "alert": ALERT_TYPES,
    "log": (HOST_LOG,),
    "system": (SYSTEM_EVENT,),
    "all": (*ALERT_TYPES, HOST_LOG, SYSTEM_EVENT),
}
OPERATIONS = ("Process", "File", "Network", "Capabilities", "Syscall", "NetworkFirewall", "AlertThreshold")

_RELATIVE = re.compile(
    r"^-?\s*(\d+)\s*(s|sec|secs|second|seconds|m|min|mins|minute|minutes|h|hour|hours|d|day|days)(\s+ago)?$"
)
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """`2024-06-01 16:39:49`, ISO 8601 (`...T...Z`), `@<unix seconds>`, `10m`, `-2h`,
    `3 days ago`, `today`, `yesterday`, `now`. Times without a zone are local, as in journalctl."""
    now = now or datetime.now(timezone.utc)
    t = text.strip().lower()
    if t == "now":
        return now
    if t in ("today", "yesterday"):
        local = now.astimezone()
        midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
        return midnight - timedelta(days=1) if t == "yesterday" else midnight
    if t.startswith("@"):
        return datetime.fromtimestamp(float(t[1:]), tz=timezone.utc)
    m = _RELATIVE.match(t)
    if m:
        unit = "m" if m.group(2).startswith("mi") else m.group(2)[0]
        return now - timedelta(seconds=int(m.group(1)) * _UNIT_SECONDS[unit])
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"cannot read time {text!r}: use e.g. '2024-06-01 16:39:49', '2024-06-01T16:39:49Z', "
            "'@1717259989', '10m', '2h ago', 'today'"
        ) from None
    return when if when.tzinfo else when.astimezone()  # naive: local time


@dataclass(frozen=True)
class Query:
    policy: str | None = None
    operation: str | None = None
    kind: str = "all"  # key of TYPES
    since: datetime | None = None
    identifier: str = IDENTIFIER


def _default_reader() -> Any:
    from systemd import journal  # python3-systemd

    # Converting every field would cost time and turn KARMOR_RECORD_JSON into nothing else.
    return journal.Reader(converters={})


def open_reader(query: Query, follow: bool = False, factory: Callable[[], Any] = _default_reader) -> Any:
    reader = factory()
    reader.add_match(SYSLOG_IDENTIFIER=query.identifier)
    for record_type in TYPES[query.kind]:
        reader.add_match(KARMOR_TYPE=record_type)  # same field: any of them
    if query.policy:
        reader.add_match(KARMOR_POLICY_NAME=query.policy)
    if query.operation:
        reader.add_match(KARMOR_OPERATION=query.operation)
    if query.since is not None:
        reader.seek_realtime(query.since)
    elif follow:
        reader.seek_tail()
        reader.get_previous()  # position on the last entry, so only new ones follow
    return reader


def _decode(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def entries(reader: Any) -> Iterator[str]:
    """The KARMOR_RECORD_JSON text of each matching entry still unread."""
    while True:
        entry = reader.get_next()
        if not entry:
            return
        raw = entry.get(RECORD_JSON)
        if raw is not None:
            yield _decode(raw)


def follow(reader: Any, poll_seconds: float = 1.0) -> Iterator[str]:
    """Unread entries, then new ones as they arrive (until the caller stops iterating)."""
    while True:
        yield from entries(reader)
        reader.wait(poll_seconds)


def records(reader: Any) -> Iterator[dict[str, Any]]:
    for text in entries(reader):
        yield json.loads(text)

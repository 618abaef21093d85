"""Records to the systemd journal over its native protocol (python3-systemd), one entry each.

Every record field becomes `KARMOR_<UPPER_SNAKE>` (PolicyName -> KARMOR_POLICY_NAME), the
whole record is kept as JSON in KARMOR_RECORD_JSON (what `karmor-host logs --json` prints),
MESSAGE is a one-line summary and PRIORITY follows Severity (table in docs/alerts.md):

    journalctl -t karmor-host KARMOR_POLICY_NAME=block-passwd-read -o json

Also here: JournalLogProcessor, a structlog processor that copies the agent's own log
events to the journal.
"""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Callable, MutableMapping
from typing import Any

from karmor_host import log
from karmor_host.alerts.record import ALERT_TYPES, HOST_LOG, SYSTEM_EVENT
from karmor_host.alerts.sinks.base import CountingSink, Record

IDENTIFIER = "karmor-host"
SOCKET_PATH = "/run/systemd/journal/socket"
RECORD_JSON = "KARMOR_RECORD_JSON"

# syslog priorities
CRIT, ERR, WARNING, NOTICE, INFO, DEBUG = 2, 3, 4, 5, 6, 7

SendV = Callable[..., Any]  # systemd.journal.sendv("FIELD=value", ...)

_OVERRIDES = {"ATags": "ATAGS"}  # KubeArmor's "A" prefix is not a word of its own
_WORD_EDGE = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_NOT_FIELD_CHAR = re.compile(r"[^A-Z0-9_]")
_field_names: dict[tuple[str, str], str] = {}


def journal_field(name: str, prefix: str = "KARMOR_") -> str:
    """`PolicyName` -> `KARMOR_POLICY_NAME`, `HostPPID` -> `KARMOR_HOST_PPID`, `ATags` -> `KARMOR_ATAGS`."""
    key = (prefix, name)
    cached = _field_names.get(key)
    if cached is None:
        snake = _OVERRIDES.get(name) or _WORD_EDGE.sub("_", name).upper()
        cached = (prefix + _NOT_FIELD_CHAR.sub("_", snake))[:64]  # journald's field-name limit
        _field_names[key] = cached
    return cached


def field_value(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, separators=(",", ":"), sort_keys=True)
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def priority(record: Record) -> int:
    """Alerts by Severity (9-10 crit, 7-8 err, 5-6 warning, 3-4 notice, 1-2 info; none, as for
    DefaultPosture: warning); SystemEvent warning; HostLog debug."""
    kind = record.get("Type")
    if kind == HOST_LOG:
        return DEBUG
    if kind not in ALERT_TYPES:
        return WARNING
    try:
        severity = int(record.get("Severity") or 0)
    except ValueError:
        severity = 0
    if severity >= 9:
        return CRIT
    if severity >= 7:
        return ERR
    if severity >= 5 or severity <= 0:
        return WARNING
    if severity >= 3:
        return NOTICE
    return INFO


def summary(record: Record) -> str:
    """`block-passwd-read: Block File /etc/passwd by /usr/bin/cat (pid 123): Permission denied`"""
    kind = record.get("Type")
    if kind == SYSTEM_EVENT:
        text = f"SystemEvent {record.get('Operation', '')}: {record.get('Message', '')}"
    else:
        head = f"{record.get('PolicyName', '')}: {record.get('Action', '')}" if kind != HOST_LOG else "HostLog:"
        text = (
            f"{head} {record.get('Operation', '')} {record.get('Resource', '')}"
            f" by {record.get('Source') or record.get('ProcessName', '')}"
            f" (pid {record.get('PID', '')}): {record.get('Result', '')}"
        )
    return " ".join(text.split())  # one line, whatever argv contained


def journal_fields(record: Record, identifier: str = IDENTIFIER) -> list[str]:
    fields = [
        f"MESSAGE={summary(record)}",
        f"PRIORITY={priority(record)}",
        f"SYSLOG_IDENTIFIER={identifier}",
    ]
    fields += [f"{journal_field(k)}={field_value(v)}" for k, v in record.items()]
    fields.append(f"{RECORD_JSON}={json.dumps(record, separators=(',', ':'), ensure_ascii=False)}")
    return fields


def _default_sendv() -> SendV:
    from systemd import journal  # python3-systemd (Debian package, seen through the venv)

    return journal.sendv


def _is_socket(path: str) -> bool:
    try:
        return stat.S_ISSOCK(os.stat(path).st_mode)
    except OSError:
        return False


class JournaldSink(CountingSink):
    """Sends each record as one journal entry; never raises.

    sd_journal_sendv() reports success when the journal socket does not exist (it "fails
    silently"), so the socket is checked before each send: a record that cannot reach
    journald is counted in `failed`, and the first failure after a good state is logged.
    """

    name = "journald"

    def __init__(
        self,
        telemetry: bool = False,
        identifier: str = IDENTIFIER,
        socket_path: str = SOCKET_PATH,
        sendv: SendV | None = None,
    ) -> None:
        super().__init__(telemetry=telemetry)
        self.identifier = identifier
        self.socket_path = socket_path
        self._sendv = sendv
        self._reported = False  # a failure has been logged and nothing succeeded since
        self._log = log.get("karmor_host.alerts.journald")

    def _write(self, record: Record) -> None:
        if not _is_socket(self.socket_path):
            raise ConnectionError(f"journald socket {self.socket_path} is missing")
        if self._sendv is None:
            self._sendv = _default_sendv()
        self._sendv(*journal_fields(record, self.identifier))
        if self._reported:
            self._reported = False
            self._log.info("journald_reachable", socket=self.socket_path, failed_so_far=self.failed)

    def _failed(self, exc: Exception) -> None:
        if not self._reported:
            self._reported = True
            self._log.error(
                "journald_unreachable",
                socket=self.socket_path,
                error=str(exc) or type(exc).__name__,
                hint="records are counted as failed until journald is back; see `karmor-host status`",
            )


# --- the agent's own logs -----------------------------------------------------------------

_LEVEL_PRIORITY = {"critical": CRIT, "exception": ERR, "error": ERR, "warning": WARNING,
                   "warn": WARNING, "info": INFO, "debug": DEBUG}


class JournalLogProcessor:
    """structlog processor: sends each log event to the journal, then passes it on.

    Put it before the renderer (`processors=[add_log_level, JournalLogProcessor(), renderer]`).
    With `passthrough=False` it drops the event afterwards (journal only). Entries carry
    SYSLOG_IDENTIFIER=karmor-host, PRIORITY from the level, KARMOR_LOG_EVENT=<event name> and
    every key as KARMOR_LOG_<KEY>, so they never mix with records (which have KARMOR_TYPE).
    """

    def __init__(self, identifier: str = IDENTIFIER, passthrough: bool = True,
                 sendv: SendV | None = None, socket_path: str = SOCKET_PATH) -> None:
        self.identifier = identifier
        self.passthrough = passthrough
        self.socket_path = socket_path
        self._sendv = sendv
        self.sent = 0
        self.failed = 0

    def __call__(self, logger: Any, method_name: str, event_dict: MutableMapping[str, Any]) -> Any:
        level = str(event_dict.get("level", method_name)).lower()
        event = str(event_dict.get("event", ""))
        rest = {k: v for k, v in event_dict.items() if k not in ("event", "level", "timestamp")}
        message = " ".join([event, *(f"{k}={field_value(v)}" for k, v in rest.items())])
        fields = [
            f"MESSAGE={message}",
            f"PRIORITY={_LEVEL_PRIORITY.get(level, INFO)}",
            f"SYSLOG_IDENTIFIER={self.identifier}",
            f"KARMOR_LOG_EVENT={event}",
            f"KARMOR_LOG_LEVEL={level}",
        ]
        fields += [f"KARMOR_LOG_{_NOT_FIELD_CHAR.sub('_', k.upper())[:53]}={field_value(v)}"
                   for k, v in rest.items()]
        try:
            if not _is_socket(self.socket_path):
                raise ConnectionError(self.socket_path)
            if self._sendv is None:
                self._sendv = _default_sendv()
            self._sendv(*fields)
            self.sent += 1
        except Exception:  # noqa: BLE001 - logging must never break the caller
            self.failed += 1
        if not self.passthrough:
            import structlog

            raise structlog.DropEvent
        return event_dict

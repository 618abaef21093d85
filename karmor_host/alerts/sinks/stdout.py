"""Records to a stream: JSON lines (the records themselves) or `karmor logs`-style blocks."""

from __future__ import annotations

import json
import sys
from typing import Any, TextIO

from karmor_host.alerts.record import HOST_LOG, MATCHED_HOST_POLICY, MATCHED_NETWORK_POLICY
from karmor_host.alerts.sinks.base import CountingSink, Record

_HEADERS = {MATCHED_HOST_POLICY: "Alert", MATCHED_NETWORK_POLICY: "Alert", HOST_LOG: "Log"}
_NOT_IN_BODY = {"Timestamp", "UpdatedTime", "ATags"}  # in the header, or the same as Tags


def to_json(record: Record) -> str:
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False)


def _text_value(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)


def format_text(record: Record) -> str:
    """One block per record, as `karmor logs` prints them:
    `== Alert / <UpdatedTime> ==` then `Field: value` for every non-empty field."""
    kind = _HEADERS.get(record.get("Type", ""), record.get("Type") or "Record")
    lines = [f"== {kind} / {record.get('UpdatedTime', '')} =="]
    for key, value in record.items():
        if key in _NOT_IN_BODY or value in ("", None, [], {}):
            continue
        lines.append(f"{key}: {_text_value(value)}")
    return "\n".join(lines) + "\n"


class StdoutSink(CountingSink):
    name = "stdout"

    def __init__(self, stream: TextIO | None = None, json_lines: bool = True, telemetry: bool = True) -> None:
        super().__init__(telemetry=telemetry)
        self._stream = stream
        self._json = json_lines

    def _write(self, record: Record) -> None:
        stream = self._stream or sys.stdout
        stream.write(to_json(record) + "\n" if self._json else format_text(record) + "\n")

    def flush(self) -> None:
        try:
            (self._stream or sys.stdout).flush()
        except (OSError, ValueError):
            self.failed += 1  # closed pipe or stream: counted, never raised

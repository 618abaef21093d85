"""The audit records an LSM enforcer (AppArmor, SELinux) reports its kernel's decisions from:
the host's best source (kernel/auditrecords.py), opened at first use, read as lines for the
enforcer's own parser."""

from __future__ import annotations

import select
import time
from dataclasses import dataclass
from typing import Any

from structlog.typing import FilteringBoundLogger

from karmor_host.kernel.auditrecords import RecordFilter, Source, open_source


@dataclass
class AuditFeed:
    records: RecordFilter
    log: FilteringBoundLogger  # the enforcer's logger
    log_event: str  # names the chosen source in the log; a stable key per enforcer
    source: Source | None = None
    reason: str = ""  # why this source: status shows it

    def open(self) -> Source:
        if self.source is None:
            self.source, self.reason = open_source(self.records)
            self.log.info(self.log_event, source=self.source.name, reason=self.reason)
        return self.source

    def wait(self, timeout_ms: int) -> list[str]:
        """The lines that arrive within timeout_ms (or were already waiting)."""
        source = self.open()
        if source.name == "auditd":  # a regular file is always "readable"
            time.sleep(timeout_ms / 1000)
        else:
            select.select([source], [], [], timeout_ms / 1000)
        return source.read()

    def drain(self) -> list[str]:
        """Whatever lines are waiting, without waiting for more."""
        return self.open().read()

    def close(self) -> None:
        if self.source is not None:
            self.source.close()
            self.source = None

    def status(self) -> dict[str, Any]:
        return {
            "audit_source": self.source.name if self.source else "",
            "audit_source_reason": self.reason,
            "lost_records": self.source.lost if self.source else 0,
        }

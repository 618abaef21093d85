"""The Sink protocol: where records go after matching and throttling."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Protocol, runtime_checkable

Record = dict[str, Any]


@runtime_checkable
class Sink(Protocol):
    name: str
    telemetry: bool  # whether HostLog records are sent to it (alerts and SystemEvents always are)
    sent: int
    failed: int

    def emit(self, record: Record) -> None:
        """Deliver one record. Must not raise: count a failure instead."""

    def flush(self) -> None: ...

    def close(self) -> None: ...


class CountingSink(ABC):
    """Shared counters; subclasses implement `_write` and may raise from it."""

    name = "sink"

    def __init__(self, telemetry: bool = False) -> None:
        self.telemetry = telemetry
        self.sent = 0
        self.failed = 0

    def emit(self, record: Record) -> None:
        try:
            self._write(record)
        except Exception as exc:  # noqa: BLE001 - a sink failure must never stop the pipeline
            self.failed += 1
            self._failed(exc)
        else:
            self.sent += 1

    @abstractmethod
    def _write(self, record: Record) -> None:
        """Deliver one record or raise."""

    def _failed(self, exc: Exception) -> None:
        """Hook: report the failure (subclasses log once)."""

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.flush()

    def stats(self) -> dict[str, int]:
        return {"sent": self.sent, "failed": self.failed}

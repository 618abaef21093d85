"""Record sinks: journald (structured fields), stdout (JSON lines or karmor-style text)."""

from karmor_host.alerts.sinks.base import CountingSink, Record, Sink

__all__ = ["CountingSink", "Record", "Sink"]

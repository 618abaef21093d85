"""Fixtures for the remote sink tests: certificates, sinks with fast retries, alert records."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from karmor_host.alerts import record
from karmor_host.alerts.record import HostInfo
from karmor_host.alerts.sinks.base import CountingSink
from karmor_host.alerts.sinks.forward import ForwardSink
from karmor_host.alerts.sinks.remote import RemoteSink
from karmor_host.alerts.spool import Spool
from karmor_host.policy.ruleset import Action
from tests.sinks.certs import Pair, make_ca, make_leaf
from tests.unit.alerts.helpers import file_rule, opened

HOST = HostInfo("default", "web-1", "0123456789abcdef")
RULE = file_rule("/data/", Action.AUDIT, policy="audit-data", recursive=True, tags=("MITRE", "T1005"),
                 message="data read")


def alert(i: int) -> dict[str, Any]:
    """Alert number i: HostPID i tells them apart."""
    return record.alert(opened(f"/data/file-{i}", tgid=i, ppid=1), RULE, HOST, "Audit", record.MONITOR_ENFORCER,
                        "audit-data")


def wait_until(fn: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def free_port() -> int:
    """A loopback port with nothing listening (yet)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ListSink(CountingSink):
    """Stands in for journald: keeps what it was given."""

    def __init__(self, name: str = "journald") -> None:
        super().__init__(telemetry=True)
        self.name = name
        self.records: list[dict] = []

    def _write(self, rec: dict) -> None:
        self.records.append(rec)


@pytest.fixture(scope="session")
def pki(tmp_path_factory) -> dict[str, Pair]:
    d = tmp_path_factory.mktemp("pki")
    ca, other_ca = make_ca(d, "test-ca"), make_ca(d, "other-ca")
    return {
        "ca": ca,
        "other_ca": other_ca,
        "server": make_leaf(d, ca, "server"),
        "client": make_leaf(d, ca, "client"),
        "wrong_name": make_leaf(d, ca, "elsewhere", sans="DNS:collector.example.org"),
    }


@pytest.fixture
def make_sink(tmp_path: Path) -> Iterator[Callable[..., RemoteSink]]:
    made: list[RemoteSink] = []

    def make(port: int, cls: type[RemoteSink] = ForwardSink, *, start: bool = True, **kw: Any) -> RemoteSink:
        spool = Spool(tmp_path / f"spool-{len(made)}", kw.pop("max_bytes", 1 << 27),
                      kw.pop("overflow", "drop_oldest"), segment_bytes=kw.pop("segment_bytes", None))
        kw.setdefault("retry_initial", 0.05)
        kw.setdefault("retry_max", 0.5)
        kw.setdefault("send_timeout", 3.0)
        sink = cls(f"{cls.kind}-{len(made)}", "127.0.0.1", port, spool, **kw)
        made.append(sink)
        if start:
            sink.start()
        return sink

    yield make
    for sink in made:
        sink.close()

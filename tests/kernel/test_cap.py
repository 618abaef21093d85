"""bpf/monitor/cap.bpf.c: capability checks from capability/cap_capable."""

from __future__ import annotations

import os
import socket

import pytest

from karmor_host.kernel import tracefs
from karmor_host.kernel.events import EventKind
from tests.kernel.monitor_helpers import NOBODY, in_child, monitor

pytestmark = pytest.mark.kernel

CAP_NET_RAW = 13


def raw_socket() -> int:
    try:
        socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP).close()
    except PermissionError:
        return 1
    return 0


@pytest.fixture(scope="module")
def mon():
    with monitor("capabilities") as m:
        assert m.unavailable == {}, "this kernel (CI's) has capability/cap_capable"
        yield m


def test_an_allowed_capability_is_reported_once_per_process(mon):
    def twice():
        raw_socket()
        return raw_socket()

    pid, status = in_child(twice)
    assert status == 0
    (ev,) = mon.wait_for(lambda e: e.tgid == pid and e.capability == CAP_NET_RAW)
    assert ev.kind is EventKind.CAPABLE
    assert (ev.retval, ev.uid) == (0, 0)
    assert ev.ppid == os.getpid()
    assert not mon.drain(lambda e: e.tgid == pid and e.capability == CAP_NET_RAW and e.retval == 0, quiet=0.2)


def test_every_denied_capability_is_reported(mon):
    def denied_twice():
        os.setgid(NOBODY)
        os.setuid(NOBODY)
        return raw_socket() + raw_socket()

    pid, status = in_child(denied_twice)
    assert status == 2  # both refused
    denials = mon.wait_for(lambda e: e.tgid == pid and e.capability == CAP_NET_RAW, count=2)
    assert all(e.retval < 0 and e.uid == NOBODY for e in denials)


def test_a_kernel_without_the_tracepoint_is_reported_not_attached(monkeypatch):
    real = tracefs.has_tracepoint
    monkeypatch.setattr(tracefs, "has_tracepoint", lambda cat, name: cat != "capability" and real(cat, name))
    with monitor("capabilities", "process") as m:
        assert "capability/cap_capable" in m.unavailable["capabilities"]
        assert "karmor_cap_capable" not in m.attached
        assert set(m.attached) == {"karmor_exec", "karmor_fork", "karmor_exit"}

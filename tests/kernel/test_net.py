"""Network visibility in both modes: bpf/monitor/sock.bpf.c + tcp.bpf.c ("cgroup", the
default) and bpf/monitor/net.bpf.c + tcp.bpf.c ("syscalls"). Each test states what both
modes report, and where they differ, what each one does."""

from __future__ import annotations

import errno
import os
import select
import socket

import pytest

from karmor_host.kernel.events import EventKind
from tests.kernel.monitor_helpers import in_child, monitor

pytestmark = pytest.mark.kernel


@pytest.fixture(scope="module", params=["cgroup", "syscalls"])
def mon(request):
    with monitor("network", network_hooks=request.param) as m:
        yield m


def kinds(mon, pid, *wanted, count=None):
    return mon.wait_for(lambda e: e.tgid == pid and e.kind in wanted, count=count or len(wanted))


def serve_once(port_w: int) -> int:
    """Child: listen on a loopback port, tell it through the pipe, accept one connection."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    os.write(port_w, server.getsockname()[1].to_bytes(2, "little"))
    server.accept()[0].close()
    return 0


def test_tcp_connect_to_a_loopback_listener_and_its_accept(mon):
    r, w = os.pipe()
    server = os.fork()
    if server == 0:
        os._exit(serve_once(w))
    port = int.from_bytes(os.read(r, 2), "little")
    client, status = in_child(lambda: socket.create_connection(("127.0.0.1", port)).close())
    assert status == 0
    os.waitpid(server, 0)

    sock, conn = kinds(mon, client, EventKind.SOCKET, EventKind.CONNECT)
    assert (sock.family, sock.sock_type, sock.protocol) == (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    assert sock.syscall == "socket" and sock.retval >= 0
    assert conn.retval == 0 and conn.syscall == "connect"
    assert (conn.family, conn.sock_type, conn.protocol) == (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    assert (conn.daddr, conn.dport) == ("127.0.0.1", port)
    assert conn.saddr == "127.0.0.1" and conn.sport > 0

    (acc,) = kinds(mon, server, EventKind.ACCEPT)
    assert acc.retval >= 0
    # cgroup: the handshake completing on the listener; syscalls: the accept call
    assert acc.syscall == ("" if mon.network_hooks == "cgroup" else "accept4")
    assert (acc.saddr, acc.sport) == ("127.0.0.1", port)  # our end
    assert (acc.daddr, acc.dport) == ("127.0.0.1", conn.sport)  # the peer


def test_a_refused_connect_reports_the_address_asked_for(mon):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now

    def connect():
        try:
            socket.create_connection(("127.0.0.1", port))
        except ConnectionRefusedError:
            return 0
        return 1

    pid, status = in_child(connect)
    assert status == 0
    (conn,) = kinds(mon, pid, EventKind.CONNECT)
    assert conn.retval == -errno.ECONNREFUSED
    assert (conn.family, conn.daddr, conn.dport) == (socket.AF_INET, "127.0.0.1", port)


def nonblocking_connect(port: int) -> int:
    """Child: a non-blocking connect, then wait (up to 5 s) for its outcome."""
    c = socket.socket()
    c.setblocking(False)
    try:
        c.connect(("127.0.0.1", port))
    except BlockingIOError:
        pass
    select.select([], [c], [], 5)
    return c.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)


def test_a_non_blocking_connect_completed_during_the_call(mon):
    # on loopback the handshake is done before connect() returns -EINPROGRESS
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    pid, status = in_child(lambda: nonblocking_connect(port))
    server.close()
    assert status == 0
    if mon.network_hooks == "syscalls":  # the call's own result, then the outcome
        attempt, done = kinds(mon, pid, EventKind.CONNECT, count=2)
        assert attempt.retval == -errno.EINPROGRESS
        assert (done.saddr, done.sport) == (attempt.saddr, attempt.sport)
    else:  # cgroup: the outcome only
        (done,) = kinds(mon, pid, EventKind.CONNECT)
    assert (done.retval, done.daddr, done.dport, done.tgid) == (0, "127.0.0.1", port, pid)


def test_a_non_blocking_connect_completed_later_by_the_state_change(mon):
    # The listener's accept queue is full, so the SYN is dropped and retransmitted about
    # a second later from a timer: the handshake then completes outside the process.
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    first = socket.create_connection(("127.0.0.1", port))  # fills the queue (ours: not reported)
    pid = os.fork()
    if pid == 0:
        os._exit(nonblocking_connect(port))
    if mon.network_hooks == "syscalls":
        (attempt,) = kinds(mon, pid, EventKind.CONNECT)
        assert attempt.retval == -errno.EINPROGRESS
    server.accept()[0].close()  # room for the retransmitted SYN
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    (done,) = kinds(mon, pid, EventKind.CONNECT)
    assert (done.retval, done.tgid, done.daddr, done.dport) == (0, pid, "127.0.0.1", port)
    first.close()
    server.close()


def test_a_raw_socket(mon):
    pid, status = in_child(lambda: socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP).close())
    assert status == 0
    (ev,) = kinds(mon, pid, EventKind.SOCKET)
    assert (ev.family, ev.sock_type, ev.protocol) == (socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    assert ev.retval >= 0


def test_bind_and_udp_connect_report_the_kernels_view(mon):
    r, w = os.pipe()

    def act():
        s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        s.bind(("::1", 0))
        os.write(w, s.getsockname()[1].to_bytes(2, "little"))
        s.connect(("::1", 53))

    pid, status = in_child(act)
    assert status == 0
    port = int.from_bytes(os.read(r, 2), "little")
    bind, conn = kinds(mon, pid, EventKind.BIND, EventKind.CONNECT)
    assert bind.retval == 0 and bind.syscall == "bind"
    assert (bind.family, bind.sock_type, bind.protocol) == (socket.AF_INET6, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    assert (bind.saddr, bind.sport) == ("::1", port)  # the port the kernel chose
    assert (conn.retval, conn.family, conn.daddr, conn.dport) == (0, socket.AF_INET6, "::1", 53)


def test_unix_sockets(mon, tmp_path):
    path = str(tmp_path / "sock")
    server = socket.socket(socket.AF_UNIX)
    server.bind(path)
    server.listen()

    def connect():
        c = socket.socket(socket.AF_UNIX)
        c.connect(path)
        c.close()
        try:
            socket.socket(socket.AF_UNIX).connect("\0karmor-test-abstract")
        except ConnectionRefusedError:
            pass
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM).close()  # the marker

    pid, status = in_child(connect)
    server.close()
    assert status == 0
    if mon.network_hooks == "cgroup":  # the cgroup socket hooks are for inet sockets only
        marker = kinds(mon, pid, EventKind.SOCKET)
        assert marker[0].family == socket.AF_INET
        assert not mon.drain(lambda e: e.tgid == pid and e.kind is EventKind.CONNECT, quiet=0.2)
        return
    ok, refused = kinds(mon, pid, EventKind.CONNECT, count=2)
    assert (ok.family, ok.retval, ok.daddr, ok.path) == (socket.AF_UNIX, 0, path, path)
    assert refused.daddr == "@karmor-test-abstract" and refused.retval == -errno.ECONNREFUSED


def test_a_listener_from_before_the_monitor_is_seeded_for_accepts():
    # cgroup mode learns who listens from the LISTEN state change; a server that was
    # already listening is found through sock_diag and /proc when the monitor starts
    port_r, port_w = os.pipe()
    go_r, go_w = os.pipe()
    server = os.fork()
    if server == 0:
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen()
        os.write(port_w, s.getsockname()[1].to_bytes(2, "little"))
        os.read(go_r, 1)
        s.accept()[0].close()
        os._exit(0)
    port = int.from_bytes(os.read(port_r, 2), "little")
    with monitor("network", network_hooks="cgroup") as m:
        assert m.seeded_listeners >= 1
        os.write(go_w, b"x")
        client, status = in_child(lambda: socket.create_connection(("127.0.0.1", port)).close())
        os.waitpid(server, 0)
        (acc,) = m.wait_for(lambda e: e.tgid == server and e.kind is EventKind.ACCEPT)
        assert (acc.sport, acc.daddr, acc.uid, acc.ppid) == (port, "127.0.0.1", 0, os.getpid())
        assert acc.dport > 0 and acc.comm


def test_the_monitor_starts_when_sock_diag_fails(monkeypatch):
    # an LSM refusing sock_diag (seen under SELinux) must cost the seeding, not the agent
    from karmor_host.kernel import netinfo

    def refused(*_a, **_k):
        raise OSError(errno.EACCES, "sock_diag refused family 2 protocol 6: Permission denied")

    monkeypatch.setattr(netinfo, "sockets", refused)
    with monitor("network", network_hooks="cgroup") as m:
        assert m.seeded_listeners == 0
        client, _ = in_child(lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM).close())
        assert kinds(m, client, EventKind.SOCKET)  # and the monitor reports as before

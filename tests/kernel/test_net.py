"""bpf/monitor/net.bpf.c: socket, connect, accept, bind at sys_exit; TCP connect completion."""

from __future__ import annotations

import errno
import os
import select
import socket

import pytest

from karmor_host.kernel.events import EventKind
from tests.kernel.monitor_helpers import in_child, monitor

pytestmark = pytest.mark.kernel


@pytest.fixture(scope="module")
def mon():
    with monitor("network") as m:
        yield m


def kinds(mon, pid, *wanted, count=None):
    return mon.wait_for(lambda e: e.tgid == pid and e.kind in wanted, count=count or len(wanted))


def test_tcp_connect_to_a_loopback_listener_and_its_accept(mon):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    client_port = []

    def connect():
        c = socket.create_connection(("127.0.0.1", port))
        os.write(w, c.getsockname()[1].to_bytes(2, "little"))
        c.close()

    r, w = os.pipe()
    client, status = in_child(connect)
    assert status == 0
    client_port.append(int.from_bytes(os.read(r, 2), "little"))
    acceptor, status = in_child(lambda: server.accept()[0].close())
    assert status == 0
    server.close()

    sock, conn = kinds(mon, client, EventKind.SOCKET, EventKind.CONNECT)
    assert (sock.family, sock.sock_type, sock.protocol) == (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    assert sock.syscall == "socket" and sock.retval >= 0
    assert conn.retval == 0 and conn.syscall == "connect"
    assert (conn.family, conn.sock_type, conn.protocol) == (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    assert (conn.daddr, conn.dport) == ("127.0.0.1", port)
    assert (conn.saddr, conn.sport) == ("127.0.0.1", client_port[0])

    (acc,) = kinds(mon, acceptor, EventKind.ACCEPT)
    assert acc.retval >= 0 and acc.syscall in ("accept", "accept4")
    assert (acc.saddr, acc.sport) == ("127.0.0.1", port)  # our end
    assert (acc.daddr, acc.dport) == ("127.0.0.1", client_port[0])  # the peer


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
    attempt, done = kinds(mon, pid, EventKind.CONNECT, count=2)
    assert attempt.retval == -errno.EINPROGRESS
    assert (done.retval, done.daddr, done.dport, done.tgid) == (0, "127.0.0.1", port, pid)
    assert (done.saddr, done.sport) == (attempt.saddr, attempt.sport)


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
    (attempt,) = kinds(mon, pid, EventKind.CONNECT)
    assert attempt.retval == -errno.EINPROGRESS
    server.accept()[0].close()  # room for the retransmitted SYN
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    (done,) = kinds(mon, pid, EventKind.CONNECT)
    assert (done.retval, done.tgid, done.daddr, done.dport) == (0, pid, "127.0.0.1", port)
    assert done.sport == attempt.sport
    first.close()
    server.close()


def test_a_raw_socket(mon):
    pid, status = in_child(lambda: socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP).close())
    assert status == 0
    (ev,) = kinds(mon, pid, EventKind.SOCKET)
    assert (ev.family, ev.sock_type, ev.protocol) == (socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    assert ev.retval >= 0


def test_bind_reports_the_port_the_kernel_chose(mon):
    r, w = os.pipe()

    def bind():
        s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        s.bind(("::1", 0))
        os.write(w, s.getsockname()[1].to_bytes(2, "little"))

    pid, status = in_child(bind)
    assert status == 0
    port = int.from_bytes(os.read(r, 2), "little")
    (ev,) = kinds(mon, pid, EventKind.BIND)
    assert ev.retval == 0 and ev.syscall == "bind"
    assert (ev.family, ev.sock_type, ev.protocol) == (socket.AF_INET6, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    assert (ev.saddr, ev.sport) == ("::1", port)


def test_a_unix_socket_connect_names_the_socket_path(mon, tmp_path):
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

    pid, status = in_child(connect)
    server.close()
    assert status == 0
    ok, refused = kinds(mon, pid, EventKind.CONNECT, count=2)
    assert (ok.family, ok.retval, ok.daddr, ok.path) == (socket.AF_UNIX, 0, path, path)
    assert refused.daddr == "@karmor-test-abstract" and refused.retval == -errno.ECONNREFUSED

"""kernel/netinfo.py: sockets from sock_diag on this machine, and what a bad reply becomes."""

from __future__ import annotations

import errno
import os
import socket

import pytest
from pyroute2.netlink.exceptions import NetlinkError

from karmor_host.kernel import netinfo


def test_a_listening_socket_of_ours_is_found_with_its_holder() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        inode = os.fstat(s.fileno()).st_ino
        found = [i for i in netinfo.sockets(socket.IPPROTO_TCP, 1 << netinfo.TCP_LISTEN) if i.inode == inode]
        assert [(i.family, i.local, i.local_port, i.state_name, i.uid) for i in found] == [
            (socket.AF_INET, "127.0.0.1", port, "LISTEN", os.getuid())]
        assert netinfo.socket_holders([inode, 1]) == {inode: os.getpid()}  # 1: no such socket
    # a state mask leaves the others out: our closed listener is gone, established ones are not listeners
    assert all(i.state == netinfo.TCP_ESTABLISHED
               for i in netinfo.sockets(socket.IPPROTO_TCP, 1 << netinfo.TCP_ESTABLISHED))


def test_ipv4_mapped_addresses_are_plain_ipv4() -> None:
    assert netinfo.plain("::ffff:10.0.0.1") == "10.0.0.1"
    assert netinfo.plain("fd00::1") == "fd00::1" and netinfo.plain("10.0.0.1") == "10.0.0.1"


class _FakeDiag:
    """A DiagSocket whose reply is given: the real reply of a refused request is what an LSM
    or a missing diag module produces, which this machine does not."""

    def __init__(self, reply: object) -> None:
        self.reply = reply

    def __enter__(self) -> _FakeDiag:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def bind(self) -> None:
        return None

    def get_sock_stats(self, **_: object) -> list[dict]:
        if isinstance(self.reply, Exception):
            raise self.reply
        return self.reply  # type: ignore[return-value]


def test_a_reply_that_is_not_a_socket_record_is_an_oserror_not_a_keyerror(monkeypatch) -> None:
    # an NLMSG_ERROR/DONE left in the reply has a header and none of the socket fields
    monkeypatch.setattr(netinfo, "DiagSocket", lambda: _FakeDiag([{"header": {"type": 2, "error": None}}]))
    with pytest.raises(OSError, match="family 2 protocol 6 with a message of type 2") as info:
        netinfo.sockets(socket.IPPROTO_TCP)
    assert info.value.errno == errno.EPROTO


def test_a_refused_request_is_an_oserror_with_its_errno(monkeypatch) -> None:
    monkeypatch.setattr(netinfo, "DiagSocket", lambda: _FakeDiag(NetlinkError(errno.EACCES)))
    with pytest.raises(OSError, match="sock_diag refused family 2 protocol 17: Permission denied") as info:
        netinfo.sockets(socket.IPPROTO_UDP)
    assert info.value.errno == errno.EACCES

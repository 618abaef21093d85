"""sockets.py on this machine's own /proc: a socket of ours is found by its inode."""

from __future__ import annotations

import os
import socket

from karmor_host.firewall import sockets
from karmor_host.kernel import netinfo


def test_owner_of_a_socket_inode_is_this_process() -> None:
    with socket.socket() as s:
        inode = os.fstat(s.fileno()).st_ino
        owner = sockets.owner_of_inode(inode)
        assert owner is not None and owner.pid == os.getpid()
        assert owner.exe == os.path.realpath(f"/proc/{os.getpid()}/exe")
        assert sockets.owners_of_inodes({inode, 1}) == {inode: owner}  # 1: no such socket


def test_ipv4_mapped_addresses_are_plain_ipv4() -> None:
    assert netinfo.plain("::ffff:10.0.0.1") == "10.0.0.1"
    assert netinfo.plain("fd00::1") == "fd00::1" and netinfo.plain("10.0.0.1") == "10.0.0.1"


def test_process_of_a_missing_pid_is_none(tmp_path) -> None:
    assert sockets.process(4_000_000_000, tmp_path) is None

"""Constant tables: flag decoding, capability numbers, write detection."""

from __future__ import annotations

import os
import socket

import pytest

from karmor_host.alerts import names


@pytest.mark.parametrize(
    "flags, text",
    [
        (os.O_RDONLY, "O_RDONLY"),
        (os.O_RDONLY | os.O_CLOEXEC, "O_RDONLY|O_CLOEXEC"),
        (os.O_WRONLY | os.O_CREAT | os.O_TRUNC, "O_WRONLY|O_CREAT|O_TRUNC"),
        (os.O_RDWR | os.O_APPEND, "O_RDWR|O_APPEND"),
        (os.O_RDONLY | os.O_DIRECTORY | os.O_NONBLOCK, "O_RDONLY|O_NONBLOCK|O_DIRECTORY"),
        (os.O_WRONLY | os.O_SYNC, "O_WRONLY|O_SYNC"),
        (os.O_WRONLY | os.O_DSYNC, "O_WRONLY|O_DSYNC"),
        (os.O_RDWR | os.O_TMPFILE, "O_RDWR|O_TMPFILE"),
        (os.O_PATH, "O_RDONLY|O_PATH"),
        (0o100000000000, "O_RDONLY|0o100000000000"),
    ],
)
def test_open_flags_text(flags, text):
    assert names.open_flags_text(flags) == text


@pytest.mark.parametrize(
    "flags, write",
    [
        (os.O_RDONLY, False),
        (os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW, False),
        (os.O_WRONLY, True),
        (os.O_RDWR, True),
        (os.O_RDONLY | os.O_CREAT, True),
        (os.O_RDONLY | os.O_TRUNC, True),
        (os.O_RDONLY | os.O_APPEND, True),
    ],
)
def test_is_write_open(flags, write):
    assert names.is_write_open(flags) is write


def test_tables_agree_with_python_socket_module():
    # Cross-check a few numbers against the libc headers Python was built with.
    assert names.ADDRESS_FAMILIES[socket.AF_INET] == "AF_INET"
    assert names.ADDRESS_FAMILIES[socket.AF_INET6] == "AF_INET6"
    assert names.ADDRESS_FAMILIES[socket.AF_PACKET] == "AF_PACKET"
    assert names.SOCKET_TYPES[socket.SOCK_RAW] == "SOCK_RAW"
    assert names.IP_PROTOCOLS[socket.IPPROTO_ICMPV6] == "ICMPv6"
    assert names.SOCKET_TYPE_FLAGS == ((socket.SOCK_NONBLOCK, "SOCK_NONBLOCK"),
                                       (socket.SOCK_CLOEXEC, "SOCK_CLOEXEC"))


def test_capabilities():
    assert len(names.CAPABILITIES) == 41
    assert names.capability_name(13) == "CAP_NET_RAW"
    assert names.capability_name(21) == "CAP_SYS_ADMIN"
    assert names.capability_name(63) == "CAP_63"
    assert names.CAPABILITY_NUMBERS["net_bind_service"] == 10
    assert names.CAPABILITY_NUMBERS["checkpoint_restore"] == 40


def test_syscall_symbol():
    assert names.syscall_symbol("openat") == "SYS_OPENAT"

"""attribution.py: the ctypes mirror against the BTF of bpf/.output/netattr.bpf.o, keys, paths."""

from __future__ import annotations

import ctypes
import socket

import pytest

from karmor_host.firewall import attribution as A
from karmor_host.firewall.packet import Headers
from karmor_host.kernel.btf import Btf
from karmor_host.paths import default_bpf_object_dir

OBJECT = default_bpf_object_dir() / A.OBJECT_NAME


@pytest.fixture(scope="module")
def btf():
    assert OBJECT.is_file(), f"{OBJECT} is not built: run `make bpf`"
    with Btf.from_file(OBJECT) as b:
        yield b


def test_mirrors_match_the_object(btf) -> None:
    assert A.compare(btf) == []


def test_a_drifted_mirror_is_named(btf, monkeypatch) -> None:
    class Short(ctypes.Structure):
        _fields_ = [("netns", ctypes.c_uint64)]

    monkeypatch.setitem(A.MIRRORS, "netattr_key", Short)
    (problem,) = A.compare(btf)
    assert problem.startswith("struct netattr_key: BTF")


def test_key_layout() -> None:
    raw = A.key_bytes(7, Headers(4, "10.0.0.1", "10.0.0.2", 6, 40000, 443), 40000)
    key = A.NetattrKey.from_buffer_copy(raw)
    assert (key.netns, key.dport, key.sport, key.family, key.proto) == (7, 443, 40000, socket.AF_INET, 6)
    assert bytes(key.daddr) == bytes([10, 0, 0, 2]) + bytes(12)
    v6 = A.NetattrKey.from_buffer_copy(A.key_bytes(7, Headers(6, "fd00::1", "fd00::2", 17, 1, 53), 0))
    assert v6.family == socket.AF_INET6 and bytes(v6.daddr)[-1] == 2 and v6.sport == 0


def test_exe_path_from_walked_components() -> None:
    assert A.exe_path(b"curl\0bin\0usr\0") == "/usr/bin/curl"
    assert A.exe_path(b"") == "/"
    assert A.exe_path(b"x\0deep\0", A.F_EXE_TRUNC) == "…/deep/x"


def test_owner_record_decoding() -> None:
    v = A.NetattrOwner(tgid=10, pid=11, ppid=0, uid=1000, exe_len=13, comm=b"curl")
    ctypes.memmove(ctypes.addressof(v) + A.NetattrOwner.exe.offset, b"curl\0bin\0usr\0", 13)
    ref = A.owner_ref(bytes(v), "connect")
    assert (ref.pid, ref.uid, ref.exe, ref.how, ref.found) == (10, 1000, "/usr/bin/curl", "connect", True)
    assert not A.ProcessRef(note="x").found


def test_entry_age_uses_the_boot_clock() -> None:
    import time

    now = time.clock_gettime_ns(time.CLOCK_BOOTTIME)
    fresh = bytes(A.NetattrOwner(ts_ns=now - 2_000_000_000))
    stale = bytes(A.NetattrOwner(ts_ns=now - 600_000_000_000))
    assert 1.5 < A.entry_age_s(fresh) < 10 and A.entry_age_s(stale) > A.DESTINATION_MAX_AGE_S

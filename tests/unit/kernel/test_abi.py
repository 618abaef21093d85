"""abi.py's ctypes mirrors against the BTF of the built bpf/.output/monitor.bpf.o."""

from __future__ import annotations

import ctypes
import struct

import pytest

from karmor_host.errors import KernelError
from karmor_host.kernel import abi
from karmor_host.kernel.btf import Btf
from karmor_host.kernel.events import EventKind
from karmor_host.paths import default_bpf_object_dir

OBJECT = default_bpf_object_dir() / "monitor.bpf.o"


@pytest.fixture(scope="module")
def btf():
    assert OBJECT.is_file(), f"{OBJECT} is not built: run `make bpf`"
    with Btf.from_file(OBJECT) as b:
        yield b


def test_the_mirrors_match_the_object(btf):
    assert abi.compare(btf) == []
    abi.verify(btf, abi.ABI_VERSION)


def test_event_kinds_are_the_ones_the_kernel_sends(btf):
    values = btf.enum_values("karmor_event_kind")
    assert {name.removeprefix("KARMOR_EV_"): v for name, v in values.items() if name != "KARMOR_EV_MAX"} == {
        k.name: k.value for k in EventKind
    }


def test_every_record_struct_is_checked(btf):
    for name in abi.STRUCTS:
        assert btf.struct_size(name) == ctypes.sizeof(abi.STRUCTS[name])


def test_a_drifted_mirror_is_named(btf, monkeypatch):
    class Swapped(ctypes.Structure):  # karmor_cap with its fields in the wrong order
        _fields_ = [("_pad", ctypes.c_uint32), ("cap", ctypes.c_int32)]

    monkeypatch.setitem(abi.STRUCTS, "karmor_cap", Swapped)
    problems = abi.compare(btf)
    assert len(problems) == 1 and problems[0].startswith("struct karmor_cap: fields differ")
    with pytest.raises(KernelError, match="karmor_cap"):
        abi.verify(btf, abi.ABI_VERSION)


def test_a_drifted_enum_is_named(btf, monkeypatch):
    prefix, values = abi.ENUMS["karmor_syscall"]
    monkeypatch.setitem(abi.ENUMS, "karmor_syscall", (prefix, {**values, "OPEN": 99}))
    assert [p for p in abi.compare(btf) if p.startswith("enum karmor_syscall")]


def test_another_abi_version_is_refused(btf):
    with pytest.raises(KernelError, match="KARMOR_ABI_VERSION 7"):
        abi.verify(btf, 7)


def test_struct_formats_have_the_ctypes_layout():
    for cls in (abi.Hdr, abi.Exec, abi.Open, abi.Conn, abi.Sys):
        assert struct.calcsize(abi.struct_format(cls)) == ctypes.sizeof(cls)
    assert abi.struct_format(abi.Hdr) == "<QqHHIIIII16s6HHH"

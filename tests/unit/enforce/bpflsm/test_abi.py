"""The ctypes mirror of bpf/include/lsm.h against the BTF the object was compiled with."""

from __future__ import annotations

import ctypes
from pathlib import Path

import pytest

from karmor_host.enforce.bpflsm import abi

OBJECT = Path(__file__).resolve().parents[4] / "bpf" / ".output" / "lsm.bpf.o"


@pytest.fixture(scope="module")
def obj():
    from karmor_host.kernel.bpfobj import BpfObject

    assert OBJECT.is_file(), f"{OBJECT} not built: make bpf"
    with BpfObject(OBJECT) as o:
        yield o


def test_mirror_matches_btf(obj):
    assert abi.compare(obj.btf()) == []


def test_abi_version_matches(obj):
    version = int.from_bytes(obj.get_rodata("karmor_lsm_abi_version"), "little")
    assert version == abi.ABI_VERSION
    abi.verify(obj.btf(), version)


def test_verify_names_every_difference(obj):
    with pytest.raises(Exception) as err:
        abi.verify(obj.btf(), abi.ABI_VERSION + 1)
    assert "KARMOR_LSM_ABI_VERSION" in str(err.value)


def test_sizes_are_the_asserted_ones():
    assert ctypes.sizeof(abi.Event) == 152
    assert ctypes.sizeof(abi.FileKey) == 88
    assert ctypes.sizeof(abi.Refs) == 72
    assert ctypes.sizeof(abi.State) == 32


def test_the_programs_and_maps_the_backend_uses_exist(obj):
    from karmor_host.enforce.bpflsm.backend import RULE_MAPS

    assert {p.section for p in obj.programs.values()} == {
        "lsm/bprm_check_security", "lsm/file_open", "lsm/path_truncate", "lsm/path_unlink",
        "lsm/path_rename", "lsm/socket_create", "lsm/capable",
    }
    for name in (*RULE_MAPS, "lsm_state", "lsm_cfg", "lsm_resolve", "lsm_events", "lsm_drops", "lsm_barrier"):
        assert name in obj.maps, name

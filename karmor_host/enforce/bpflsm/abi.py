"""ctypes mirrors of bpf/include/lsm.h (the BPF-LSM enforcer's maps and events), and their
check against the BTF of bpf/.output/lsm.bpf.o (tests/unit/enforce/bpflsm/test_abi.py and at
every load)."""

from __future__ import annotations

import ctypes
from enum import IntEnum
from typing import TYPE_CHECKING

from karmor_host.kernel import abi as kernel_abi

if TYPE_CHECKING:
    from karmor_host.kernel.btf import Btf

ABI_VERSION = 1

NAME = 64  # KARMOR_LSM_NAME
REFS = 8  # KARMOR_LSM_REFS
HITS = 8  # KARMOR_LSM_HITS
SCOPES = 4  # KARMOR_LSM_SCOPES
DEPTH = 32  # KARMOR_LSM_DEPTH

u8, u16, u32, u64 = ctypes.c_uint8, ctypes.c_uint16, ctypes.c_uint32, ctypes.c_uint64
s32 = ctypes.c_int32


class Op(IntEnum):
    """enum karmor_lsm_op."""

    PROCESS = 0
    FILE = 1
    NETWORK = 2
    CAPABILITIES = 3


class Hook(IntEnum):
    """enum karmor_lsm_hook; alerts name them `lsm=SECURITY_<NAME>`."""

    NONE = 0
    BPRM_CHECK = 1
    FILE_OPEN = 2
    PATH_TRUNCATE = 3
    PATH_UNLINK = 4
    PATH_RENAME = 5
    SOCKET_CREATE = 6
    CAPABLE = 7


class Action(IntEnum):
    """enum karmor_lsm_action (named so in C; values of refs and events)."""

    NONE = 0
    ALLOW = 1
    AUDIT = 2
    BLOCK = 3
    PROTECT = 4  # the agent's own file: never denied a read or exec


class Proto(IntEnum):
    """enum karmor_lsm_proto: the protocol names of network rules."""

    ALL = 0
    TCP = 1
    UDP = 2
    ICMP = 3
    ICMPV6 = 4
    SCTP = 5
    DCCP = 6
    PACKET = 7
    RAW = 8
    STREAM = 9
    DGRAM = 10
    SEQPACKET = 11
    RDM = 12


class Str(IntEnum):
    """enum karmor_lsm_str: the strings after an event, in this order."""

    PATH = 0
    EXE = 1
    PEXE = 2
    CWD = 3
    TTY = 4


STR_COUNT = len(Str)

# karmor_lsm_ref.flags
RECURSIVE, READ_ONLY, OWNER_ONLY = 1 << 0, 1 << 1, 1 << 2
# karmor_lsm_cfg.op_flags
F_GLOBAL, F_SCOPED, F_FILES, F_DIRS = 1 << 0, 1 << 1, 1 << 2, 1 << 3
F_CONFINE_ALL, F_CONFINE_SCOPED, F_POSTURE_BLOCK, F_NAMES = 1 << 4, 1 << 5, 1 << 6, 1 << 7
# karmor_lsm_cfg.flags
C_SOURCES, C_SOURCE_DIRS = 1 << 0, 1 << 1
# scope confine bits
CAT_FILE, CAT_NETWORK, CAT_CAPABILITIES = 1 << 0, 1 << 1, 1 << 2
# event.flags
E_WRITE, E_OWNER, E_TRUNC, E_MORE, E_NOAUDIT, E_PROTECTED = 1 << 0, 1 << 1, 1 << 2, 1 << 3, 1 << 4, 1 << 5


class State(ctypes.Structure):
    _fields_ = [
        ("agent_tgid", u32),
        ("_pad", u32),
        ("agent_start", u64),
        ("bank", u32),
        ("generation", u32),
        ("object_id", u64),
    ]


class Cfg(ctypes.Structure):
    _fields_ = [("generation", u32), ("flags", u32), ("op_flags", u32 * len(Op))]


class Resolve(ctypes.Structure):
    _fields_ = [("tid", u32), ("done", u32), ("dev", u32), ("_pad", u32), ("ino", u64)]


class DirKey(ctypes.Structure):
    _fields_ = [
        ("bank", u8),
        ("op", u8),
        ("_pad", u16),
        ("scope", u32),
        ("dev", u32),
        ("_pad2", u32),
        ("ino", u64),
    ]


class FileKey(ctypes.Structure):
    _fields_ = [
        ("bank", u8),
        ("op", u8),
        ("name_len", u16),
        ("scope", u32),
        ("dev", u32),
        ("_pad", u32),
        ("ino", u64),
        ("name", ctypes.c_char * NAME),
    ]


class CodeKey(ctypes.Structure):
    _fields_ = [("bank", u8), ("op", u8), ("code", u16), ("scope", u32)]


class Ref(ctypes.Structure):
    _fields_ = [("rule_id", u32), ("action", u8), ("flags", u8), ("_pad", u16)]


class Refs(ctypes.Structure):
    _fields_ = [("count", u32), ("_pad", u32), ("ref", Ref * REFS)]


class Scope(ctypes.Structure):
    _fields_ = [("scope", u32), ("confine", u32)]


class SrcDir(ctypes.Structure):
    _fields_ = [("direct", Scope), ("recursive", Scope)]


class Event(ctypes.Structure):
    _fields_ = [
        ("ts_ns", u64),
        ("retval", s32),
        ("hook", u16),
        ("op", u8),
        ("posture", u8),
        ("generation", u32),
        ("flags", u32),
        ("pid", u32),
        ("tgid", u32),
        ("ppid", u32),
        ("uid", u32),
        ("gid", u32),
        ("syscall_nr", s32),
        ("nhits", u32),
        ("rule_id", u32 * HITS),
        ("action", u8 * HITS),
        ("file_uid", u32),
        ("file_mode", u32),
        ("open_flags", u32),
        ("family", s32),
        ("type", s32),
        ("protocol", s32),
        ("cap", s32),
        ("cap_opts", u32),
        ("comm", ctypes.c_char * 16),
        ("str_len", u16 * STR_COUNT),
        ("str_walked", u16),
    ]


STRUCTS: dict[str, type[ctypes.Structure]] = {
    "karmor_lsm_state": State,
    "karmor_lsm_cfg": Cfg,
    "karmor_lsm_resolve": Resolve,
    "karmor_lsm_dir_key": DirKey,
    "karmor_lsm_file_key": FileKey,
    "karmor_lsm_code_key": CodeKey,
    "karmor_lsm_ref": Ref,
    "karmor_lsm_refs": Refs,
    "karmor_lsm_scope": Scope,
    "karmor_lsm_srcdir": SrcDir,
    "karmor_lsm_event": Event,
}

ENUMS: dict[str, tuple[str, dict[str, int]]] = {
    "karmor_lsm_op": ("KARMOR_LSM_OP_", {o.name: o.value for o in Op}),
    "karmor_lsm_hook": ("KARMOR_LSM_HOOK_", {h.name: h.value for h in Hook}),
    "karmor_lsm_action": ("KARMOR_LSM_", {a.name: a.value for a in Action}),
    "karmor_lsm_proto": ("KARMOR_LSM_PROTO_", {p.name: p.value for p in Proto}),
    "karmor_lsm_str": ("KARMOR_LSM_STR_", {s.name: s.value for s in Str}),
}


def compare(btf: Btf) -> list[str]:
    """Every difference between these mirrors and the object's BTF ([] when none)."""
    return kernel_abi.compare(btf, STRUCTS, ENUMS)


def verify(btf: Btf, abi_version: int) -> None:
    """Raises KernelError naming every difference if the object does not match this module."""
    kernel_abi.report(compare(btf), abi_version, ABI_VERSION, "KARMOR_LSM_ABI_VERSION",
                      "lsm.bpf.o does not match karmor_host/enforce/bpflsm/abi.py")

"""ctypes mirrors of bpf/include/karmor.h, and their check against a built object's BTF.

The mirrors are the one Python statement of the layout: the decoder's struct formats are
derived from them (struct_format), and verify() compares them, field by field, and the
enums value by value, with the BTF the BPF object was compiled with, so drift between
the header and this file fails at load time and in tests/unit/kernel/test_abi.py.
"""

from __future__ import annotations

import ctypes
import struct
from collections.abc import Mapping
from enum import IntEnum
from typing import TYPE_CHECKING

from karmor_host.errors import KernelError
from karmor_host.kernel.events import EventKind

if TYPE_CHECKING:
    from karmor_host.kernel.btf import Btf

# A mirror's enums: BTF enum name -> (prefix its enumerators carry, {short name: value}).
EnumMirror = Mapping[str, tuple[str, dict[str, int]]]

ABI_VERSION = 1

u8, u16, u32, u64 = ctypes.c_uint8, ctypes.c_uint16, ctypes.c_uint32, ctypes.c_uint64
s32, s64 = ctypes.c_int32, ctypes.c_int64

NOISE_MAX = 8
NOISE_STR = 32
STR_LIMIT = 4096


class Category(IntEnum):
    """enum karmor_category: visibility categories, the index of the drop counters."""

    PROCESS = 0
    FILE = 1
    NETWORK = 2
    CAPABILITIES = 3
    SYSCALL = 4


class Syscall(IntEnum):
    """enum karmor_syscall (hdr.syscall)."""

    NONE = 0
    OPEN = 1
    OPENAT = 2
    OPENAT2 = 3
    CREAT = 4
    SOCKET = 5
    CONNECT = 6
    ACCEPT = 7
    ACCEPT4 = 8
    BIND = 9
    UNLINK = 10
    UNLINKAT = 11
    RMDIR = 12
    CHOWN = 13
    FCHOWNAT = 14
    SETUID = 15
    SETGID = 16
    PTRACE = 17
    MOUNT = 18
    UMOUNT2 = 19


class Str(IntEnum):
    """enum karmor_str: the strings after a record's body, in this order."""

    PATH = 0
    AUX = 1
    AUX2 = 2
    EXE = 3
    CWD = 4
    TTY = 5


STR_COUNT = len(Str)

# hdr.flags
F_CTX = 1 << 0
F_TRUNC = 1 << 1
F_ASYNC = 1 << 2


class Hdr(ctypes.Structure):
    _fields_ = [
        ("ts_ns", u64),
        ("retval", s64),
        ("kind", u16),
        ("flags", u16),
        ("pid", u32),
        ("tgid", u32),
        ("ppid", u32),
        ("uid", u32),
        ("gid", u32),
        ("comm", ctypes.c_char * 16),
        ("str_len", u16 * STR_COUNT),
        ("str_walked", u16),
        ("syscall", u16),
    ]


class Exec(ctypes.Structure):
    _fields_ = [("file_uid", u32), ("old_pid", u32)]


class Fork(ctypes.Structure):
    _fields_ = [("child_pid", u32), ("child_tgid", u32)]


class Exit(ctypes.Structure):
    _fields_ = [("code", u32), ("_pad", u32)]


class Open(ctypes.Structure):
    _fields_ = [("flags", u32), ("file_uid", u32), ("mode", u32), ("dirfd", s32)]


class Socket(ctypes.Structure):
    _fields_ = [("family", s32), ("type", s32), ("protocol", s32), ("fd", s32)]


class Conn(ctypes.Structure):
    _fields_ = [
        ("family", u16),
        ("type", u16),
        ("protocol", u16),
        ("sport", u16),
        ("dport", u16),
        ("_pad", u16),
        ("fd", s32),
        ("saddr", u8 * 16),
        ("daddr", u8 * 16),
    ]


class Cap(ctypes.Structure):
    _fields_ = [("cap", s32), ("_pad", u32)]


class Sys(ctypes.Structure):
    _fields_ = [("dirfd", s32), ("_pad", u32), ("arg", u64 * 3)]


class NoiseDir(ctypes.Structure):
    _fields_ = [("dev", u64), ("ino", u64)]


class Config(ctypes.Structure):
    """struct karmor_config: the `karmor_cfg` .rodata variable."""

    _fields_ = [
        ("self_tgid", u32),
        ("wakeup_bytes", u32),
        ("noise_dirs", u32),
        ("noise_strs", u32),
        ("noise_dir", NoiseDir * NOISE_MAX),
        ("noise_str_len", u8 * NOISE_MAX),
        ("noise_str", (ctypes.c_char * NOISE_STR) * NOISE_MAX),
    ]


BODIES: dict[EventKind, type[ctypes.Structure]] = {
    EventKind.EXEC: Exec,
    EventKind.FORK: Fork,
    EventKind.EXIT: Exit,
    EventKind.OPEN: Open,
    EventKind.SOCKET: Socket,
    EventKind.CONNECT: Conn,
    EventKind.ACCEPT: Conn,
    EventKind.BIND: Conn,
    EventKind.CAPABLE: Cap,
    EventKind.SYSCALL: Sys,
}

# C struct name -> mirror, for the BTF check
STRUCTS: dict[str, type[ctypes.Structure]] = {
    "karmor_hdr": Hdr,
    "karmor_exec": Exec,
    "karmor_fork": Fork,
    "karmor_exit": Exit,
    "karmor_open": Open,
    "karmor_socket": Socket,
    "karmor_conn": Conn,
    "karmor_cap": Cap,
    "karmor_sys": Sys,
    "karmor_noise_dir": NoiseDir,
    "karmor_config": Config,
}

# C enum name -> (prefix of its constants, {suffix: value}); *_MAX sentinels are skipped
ENUMS: dict[str, tuple[str, dict[str, int]]] = {
    "karmor_event_kind": ("KARMOR_EV_", {k.name: k.value for k in EventKind}),
    "karmor_category": ("KARMOR_CAT_", {c.name: c.value for c in Category}),
    "karmor_syscall": ("KARMOR_SYS_", {s.name: s.value for s in Syscall}),
    "karmor_str": ("KARMOR_STR_", {s.name: s.value for s in Str}),
}

_SCALAR_CODES = {
    ctypes.c_uint8: "B",
    ctypes.c_uint16: "H",
    ctypes.c_uint32: "I",
    ctypes.c_uint64: "Q",
    ctypes.c_int32: "i",
    ctypes.c_int64: "q",
}


def _field_format(ctype) -> str:
    if ctype in _SCALAR_CODES:
        return _SCALAR_CODES[ctype]
    if issubclass(ctype, ctypes.Array):
        elem = ctype._type_
        if elem in (ctypes.c_char, ctypes.c_uint8):
            return f"{ctype._length_}s"  # bytes
        if elem in _SCALAR_CODES:
            return f"{ctype._length_}{_SCALAR_CODES[elem]}"
    raise TypeError(f"no struct format for {ctype}")


def struct_format(cls: type[ctypes.Structure]) -> str:
    """A little-endian struct module format with cls's layout (padding made explicit)."""
    fmt, pos = "<", 0
    for name, ctype in cls._fields_:
        offset = getattr(cls, name).offset
        if offset > pos:
            fmt += f"{offset - pos}x"
        fmt += _field_format(ctype)
        pos = offset + ctypes.sizeof(ctype)
    if ctypes.sizeof(cls) > pos:
        fmt += f"{ctypes.sizeof(cls) - pos}x"
    assert struct.calcsize(fmt) == ctypes.sizeof(cls), (cls, fmt)
    return fmt


def compare(btf: Btf, structs: Mapping[str, type[ctypes.Structure]] | None = None,
            enums: EnumMirror | None = None) -> list[str]:
    """Every difference between ctypes mirrors (this module's by default) and the object's BTF
    ([] when none). Other headers' mirrors (enforce/bpflsm/abi.py) pass their own tables."""
    problems: list[str] = []
    for cname, cls in (STRUCTS if structs is None else structs).items():
        try:
            members = btf.struct_members(cname)
            size = btf.struct_size(cname)
        except KernelError as e:
            problems.append(f"struct {cname}: {e.message}")
            continue
        if size != ctypes.sizeof(cls):
            problems.append(f"struct {cname}: {size} bytes in BTF, {ctypes.sizeof(cls)} in abi.py")
        mirror = [(n, getattr(cls, n).offset, ctypes.sizeof(t)) for n, t in cls._fields_]
        actual = [(m.name, m.offset, m.size) for m in members]
        if mirror != actual:
            problems.append(f"struct {cname}: fields differ: BTF {actual} vs abi.py {mirror}")
    for ename, (prefix, expected) in (ENUMS if enums is None else enums).items():
        try:
            values = btf.enum_values(ename)
        except KernelError as e:
            problems.append(f"enum {ename}: {e.message}")
            continue
        actual_enum = {k.removeprefix(prefix): v for k, v in values.items() if not k.endswith("_MAX")}
        if actual_enum != expected:
            problems.append(f"enum {ename}: BTF {actual_enum} vs Python {expected}")
    return problems


def report(problems: list[str], abi_version: int, expected: int, macro: str, what: str) -> None:
    """Raises KernelError naming every difference, the ABI version first, when there is any.
    `macro` is the header's version macro, `what` names the object and the mirror module."""
    if abi_version != expected:
        problems = [f"object has {macro} {abi_version}, abi.py expects {expected}", *problems]
    if problems:
        raise KernelError(f"{what}: " + "; ".join(problems))


def verify(btf: Btf, abi_version: int) -> None:
    """Raises KernelError naming every difference if the object does not match this module."""
    report(compare(btf), abi_version, ABI_VERSION, "KARMOR_ABI_VERSION",
           "BPF object does not match karmor_host/kernel/abi.py")

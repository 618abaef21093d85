"""Reading BTF type information through libbpf: struct layouts, enum values, data sections.

Used to place load-time configuration into .rodata by variable name and to check that the
ctypes mirrors in abi.py match the structs the BPF object was compiled with.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from pathlib import Path

from karmor_host.errors import KernelError
from karmor_host.kernel import libbpf as L

# BTF_KIND_*
KIND_INT, KIND_PTR, KIND_ARRAY, KIND_STRUCT, KIND_UNION, KIND_ENUM = 1, 2, 3, 4, 5, 6
KIND_TYPEDEF, KIND_VOLATILE, KIND_CONST, KIND_RESTRICT = 8, 9, 10, 11
KIND_VAR, KIND_DATASEC, KIND_TYPE_TAG, KIND_ENUM64 = 14, 15, 18, 19
_MODIFIERS = {KIND_TYPEDEF, KIND_VOLATILE, KIND_CONST, KIND_RESTRICT, KIND_TYPE_TAG}


class _BtfType(ctypes.Structure):
    _fields_ = [("name_off", ctypes.c_uint32), ("info", ctypes.c_uint32), ("size_or_type", ctypes.c_uint32)]


class _BtfMember(ctypes.Structure):
    _fields_ = [("name_off", ctypes.c_uint32), ("type", ctypes.c_uint32), ("offset", ctypes.c_uint32)]


class _BtfEnum(ctypes.Structure):
    _fields_ = [("name_off", ctypes.c_uint32), ("val", ctypes.c_int32)]


class _BtfVarSecinfo(ctypes.Structure):
    _fields_ = [("type", ctypes.c_uint32), ("offset", ctypes.c_uint32), ("size", ctypes.c_uint32)]


@dataclass(frozen=True)
class Member:
    name: str
    offset: int  # bytes
    size: int  # bytes
    bitfield: bool


@dataclass(frozen=True)
class Var:
    name: str
    offset: int  # within the data section
    size: int


class Btf:
    """A BTF blob: parsed from a file (owned) or borrowed from a bpf_object."""

    def __init__(self, ptr: int, owned: bool) -> None:
        self._ptr = ptr
        self._owned = owned

    @classmethod
    def from_file(cls, path: Path) -> Btf:
        ptr = L.check_ptr(L.lib.btf__parse(str(path).encode(), None), f"btf__parse {path}")
        return cls(ptr, owned=True)

    def close(self) -> None:
        if self._owned and self._ptr:
            L.lib.btf__free(self._ptr)
        self._ptr = 0

    def __enter__(self) -> Btf:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- raw access ---------------------------------------------------------------------

    def _type(self, type_id: int) -> _BtfType:
        ptr = L.lib.btf__type_by_id(self._ptr, type_id)
        if not ptr:
            raise KernelError(f"BTF type id {type_id} not found")
        return _BtfType.from_address(ptr)

    def _name(self, off: int) -> str:
        raw = L.lib.btf__name_by_offset(self._ptr, off)
        return raw.decode() if raw else ""

    @staticmethod
    def _kind(t: _BtfType) -> int:
        return (t.info >> 24) & 0x1F

    @staticmethod
    def _vlen(t: _BtfType) -> int:
        return t.info & 0xFFFF

    def _items(self, t: _BtfType, item_cls: type) -> ctypes.Array:
        base = ctypes.addressof(t) + ctypes.sizeof(_BtfType)
        return (item_cls * self._vlen(t)).from_address(base)

    def find(self, name: str, kind: int) -> int:
        type_id = L.lib.btf__find_by_name_kind(self._ptr, name.encode(), kind)
        if type_id < 0:
            raise KernelError(f"BTF has no {name!r} of kind {kind}", -type_id)
        return type_id

    def size_of(self, type_id: int) -> int:
        return L.check(L.lib.btf__resolve_size(self._ptr, type_id), f"btf__resolve_size {type_id}")

    # -- what callers ask ---------------------------------------------------------------

    def struct_size(self, name: str) -> int:
        return self.size_of(self.find(name, KIND_STRUCT))

    def struct_members(self, name: str) -> list[Member]:
        t = self._type(self.find(name, KIND_STRUCT))
        kflag = bool(t.info >> 31)
        members = []
        for m in self._items(t, _BtfMember):
            bits = m.offset & 0xFFFFFF if kflag else m.offset
            bitfield_size = m.offset >> 24 if kflag else 0
            members.append(
                Member(self._name(m.name_off), bits // 8, self.size_of(m.type), bitfield_size != 0 or bits % 8 != 0)
            )
        return members

    def enum_values(self, name: str) -> dict[str, int]:
        t = self._type(self.find(name, KIND_ENUM))
        return {self._name(e.name_off): e.val for e in self._items(t, _BtfEnum)}

    def datasec_vars(self, section: str) -> dict[str, Var]:
        t = self._type(self.find(section, KIND_DATASEC))
        out = {}
        for info in self._items(t, _BtfVarSecinfo):
            name = self._name(self._type(info.type).name_off)
            out[name] = Var(name, info.offset, info.size)
        return out

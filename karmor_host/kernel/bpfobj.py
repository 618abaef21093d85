"""A BPF object file through its life: open -> configure -> load -> attach -> close.

Configuration that must happen before load (map sizes, .rodata variables, which programs
load at all) is refused afterwards with a clear error instead of being silently ignored.
Everything owned here (links, the object) is released by close() or the context manager.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Iterator
from pathlib import Path

from karmor_host import log
from karmor_host.errors import KernelError
from karmor_host.kernel import libbpf as L
from karmor_host.kernel.btf import Btf

_log = log.get("bpfobj")

# enum bpf_map_type values the code branches on
MAP_TYPE_PERCPU_HASH, MAP_TYPE_PERCPU_ARRAY, MAP_TYPE_LRU_PERCPU_HASH = 5, 6, 10
MAP_TYPE_RINGBUF = 27
_PERCPU_TYPES = {MAP_TYPE_PERCPU_HASH, MAP_TYPE_PERCPU_ARRAY, MAP_TYPE_LRU_PERCPU_HASH}

# bpf_map_update_elem flags
BPF_ANY, BPF_NOEXIST, BPF_EXIST = 0, 1, 2


class BpfLink:
    """An attachment; destroying it detaches the program (unless pinned)."""

    def __init__(self, ptr: int, what: str, owner: BpfObject | None = None) -> None:
        self._ptr = ptr
        self.what = what
        self._owner = owner  # the object that destroys it at close, unless destroyed before

    @property
    def fd(self) -> int:
        return L.check(L.lib.bpf_link__fd(self._ptr), f"bpf_link__fd {self.what}")

    def pin(self, path: Path) -> None:
        L.check(L.lib.bpf_link__pin(self._ptr, str(path).encode()), f"pin {self.what} at {path}")

    def unpin(self) -> None:
        L.check(L.lib.bpf_link__unpin(self._ptr), f"unpin {self.what}")

    def destroy(self) -> None:
        if self._ptr:
            L.lib.bpf_link__destroy(self._ptr)
            self._ptr = 0
            if self._owner is not None and self in self._owner._links:
                self._owner._links.remove(self)


VMLINUX_BTF = Path("/sys/kernel/btf/vmlinux")
_prog_info_layout: tuple[int, dict[str, int]] | None = None


def _prog_info() -> tuple[int, dict[str, int]]:
    """struct bpf_prog_info's size and u64 field offsets, from the running kernel's BTF
    (read once): the struct grows with kernels, so its layout is not written down here."""
    global _prog_info_layout
    if _prog_info_layout is None:
        with Btf.from_file(VMLINUX_BTF) as btf:
            members = btf.struct_members("bpf_prog_info")
            size = btf.struct_size("bpf_prog_info")
        _prog_info_layout = (size, {m.name: m.offset for m in members if m.size == 8 and not m.bitfield})
    return _prog_info_layout


class BpfProgram:
    def __init__(self, obj: BpfObject, ptr: int) -> None:
        self._obj = obj
        self._ptr = ptr
        self.name = L.lib.bpf_program__name(ptr).decode()
        self.section = L.lib.bpf_program__section_name(ptr).decode()

    @property
    def autoload(self) -> bool:
        return bool(L.lib.bpf_program__autoload(self._ptr))

    def set_autoload(self, enabled: bool) -> None:
        """Whether the program is loaded at all (before load only)."""
        self._obj._require_unloaded(f"set_autoload({self.name})")
        L.check(L.lib.bpf_program__set_autoload(self._ptr, enabled), f"set_autoload {self.name}")

    @property
    def fd(self) -> int:
        return L.check(L.lib.bpf_program__fd(self._ptr), f"bpf_program__fd {self.name}")

    def info_counters(self) -> dict[str, int]:
        """The kernel's counters for the loaded program: recursion_misses (runs skipped
        because another BPF program was running on that CPU), and run_cnt / run_time_ns
        (only counted while sysctl kernel.bpf_stats_enabled is 1)."""
        size, offsets = _prog_info()
        buf = ctypes.create_string_buffer(size)
        length = L.c_uint32(size)
        L.check(L.lib.bpf_obj_get_info_by_fd(self.fd, buf, ctypes.byref(length)), f"info of {self.name}")
        raw = buf.raw
        return {name: int.from_bytes(raw[offsets[name] : offsets[name] + 8], "little")
                for name in ("recursion_misses", "run_cnt", "run_time_ns") if name in offsets}

    def _link(self, ptr: int | None, how: str) -> BpfLink:
        link = BpfLink(L.check_ptr(ptr, f"attach {self.name} ({how})"), self.name, self._obj)
        self._obj._links.append(link)
        return link

    def attach(self) -> BpfLink:
        """Attach where the section name says (tracepoint/..., lsm/..., raw_tp/...)."""
        return self._link(L.lib.bpf_program__attach(self._ptr), self.section)

    def attach_tracepoint(self, category: str, name: str) -> BpfLink:
        return self._link(
            L.lib.bpf_program__attach_tracepoint(self._ptr, category.encode(), name.encode()),
            f"tracepoint {category}/{name}",
        )

    def attach_cgroup(self, cgroup_dir: Path) -> BpfLink:
        fd = os.open(cgroup_dir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            return self._link(L.lib.bpf_program__attach_cgroup(self._ptr, fd), f"cgroup {cgroup_dir}")
        finally:
            os.close(fd)  # the link holds its own reference to the cgroup

    def attach_lsm(self) -> BpfLink:
        return self._link(L.lib.bpf_program__attach_lsm(self._ptr), "lsm")


class BpfMap:
    def __init__(self, obj: BpfObject, ptr: int) -> None:
        self._obj = obj
        self._ptr = ptr
        self.name = L.lib.bpf_map__name(ptr).decode()

    @property
    def fd(self) -> int:
        return L.check(L.lib.bpf_map__fd(self._ptr), f"bpf_map__fd {self.name}")

    @property
    def type(self) -> int:
        return L.lib.bpf_map__type(self._ptr)

    @property
    def key_size(self) -> int:
        return L.lib.bpf_map__key_size(self._ptr)

    @property
    def value_size(self) -> int:
        return L.lib.bpf_map__value_size(self._ptr)

    @property
    def max_entries(self) -> int:
        return L.lib.bpf_map__max_entries(self._ptr)

    @property
    def per_cpu(self) -> bool:
        return self.type in _PERCPU_TYPES

    def set_max_entries(self, n: int) -> None:
        self._obj._require_unloaded(f"set_max_entries({self.name})")
        L.check(L.lib.bpf_map__set_max_entries(self._ptr, n), f"set_max_entries {self.name}={n}")

    def initial_value(self) -> ctypes.Array:
        """The writable initial contents of a data-section map (.rodata, .data) before load."""
        self._obj._require_unloaded(f"initial_value({self.name})")
        return self._initial_value()

    def _initial_value(self) -> ctypes.Array:
        size = L.c_size_t()
        ptr = L.check_ptr(L.lib.bpf_map__initial_value(self._ptr, ctypes.byref(size)), f"initial value {self.name}")
        return (ctypes.c_ubyte * size.value).from_address(ptr)

    def pin(self, path: Path) -> None:
        L.check(L.lib.bpf_map__pin(self._ptr, str(path).encode()), f"pin map {self.name} at {path}")

    def unpin(self, path: Path) -> None:
        L.check(L.lib.bpf_map__unpin(self._ptr, str(path).encode()), f"unpin map {self.name} at {path}")

    # -- elements: keys and values are bytes; per-CPU values are ncpus slots of 8-byte-rounded size

    def _value_buf_size(self) -> int:
        if self.per_cpu:
            return ((self.value_size + 7) // 8 * 8) * L.num_possible_cpus()
        return self.value_size

    def lookup(self, key: bytes) -> bytes | None:
        value = ctypes.create_string_buffer(self._value_buf_size())
        ret = L.lib.bpf_map__lookup_elem(self._ptr, key, len(key), value, len(value), 0)
        if ret == -2:  # ENOENT
            return None
        L.check(ret, f"lookup in {self.name}")
        return value.raw

    def lookup_per_cpu(self, key: bytes) -> list[bytes]:
        raw = self.lookup(key)
        if raw is None:
            return []
        step = (self.value_size + 7) // 8 * 8
        return [raw[i : i + self.value_size] for i in range(0, len(raw), step)]

    def update(self, key: bytes, value: bytes, flags: int = BPF_ANY) -> None:
        L.check(
            L.lib.bpf_map__update_elem(self._ptr, key, len(key), value, len(value), flags), f"update in {self.name}"
        )

    def delete(self, key: bytes) -> bool:
        ret = L.lib.bpf_map__delete_elem(self._ptr, key, len(key), 0)
        if ret == -2:
            return False
        L.check(ret, f"delete in {self.name}")
        return True

    def keys(self) -> Iterator[bytes]:
        cur: bytes | None = None
        nxt = ctypes.create_string_buffer(self.key_size)
        while True:
            ret = L.lib.bpf_map__get_next_key(self._ptr, cur, nxt, self.key_size)
            if ret == -2:
                return
            L.check(ret, f"get_next_key in {self.name}")
            cur = nxt.raw
            yield cur

    def lookup_batch(self, chunk: int = 256) -> list[tuple[bytes, bytes]]:
        """All entries, `chunk` per syscall (hash maps; kernel 5.6+)."""
        ks, vs = self.key_size, self._value_buf_size()
        keys = ctypes.create_string_buffer(ks * chunk)
        values = ctypes.create_string_buffer(vs * chunk)
        out_batch = ctypes.create_string_buffer(max(ks, 8))
        opts = L.MapBatchOpts(ctypes.sizeof(L.MapBatchOpts), 0, 0)
        in_batch = None
        items: list[tuple[bytes, bytes]] = []
        while True:
            count = L.c_uint32(chunk)
            ret = L.lib.bpf_map_lookup_batch(
                self.fd, in_batch, out_batch, keys, values, ctypes.byref(count), ctypes.byref(opts)
            )
            err = ctypes.get_errno() if ret < 0 else 0
            for i in range(count.value):
                items.append((keys.raw[i * ks : (i + 1) * ks], values.raw[i * vs : (i + 1) * vs]))
            if ret < 0 and err == 2:  # ENOENT: that was the last batch
                return items
            if ret < 0:
                raise KernelError(f"lookup_batch in {self.name}: {os.strerror(err)}", err)
            in_batch = out_batch

    def update_batch(self, pairs: list[tuple[bytes, bytes]], flags: int = BPF_ANY) -> None:
        if not pairs:
            return
        keys = b"".join(k for k, _ in pairs)
        values = b"".join(v for _, v in pairs)
        count = L.c_uint32(len(pairs))
        opts = L.MapBatchOpts(ctypes.sizeof(L.MapBatchOpts), flags, 0)
        ret = L.lib.bpf_map_update_batch(self.fd, keys, values, ctypes.byref(count), ctypes.byref(opts))
        if ret < 0:
            err = ctypes.get_errno()
            raise KernelError(f"update_batch in {self.name} ({count.value} done): {os.strerror(err)}", err)

    def delete_batch(self, keys: list[bytes]) -> None:
        if not keys:
            return
        count = L.c_uint32(len(keys))
        opts = L.MapBatchOpts(ctypes.sizeof(L.MapBatchOpts), 0, 0)
        ret = L.lib.bpf_map_delete_batch(self.fd, b"".join(keys), ctypes.byref(count), ctypes.byref(opts))
        if ret < 0:
            err = ctypes.get_errno()
            raise KernelError(f"delete_batch in {self.name} ({count.value} done): {os.strerror(err)}", err)


class BpfObject:
    """One loadable object file. Use as a context manager, or call close()."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._links: list[BpfLink] = []
        self._loaded = False
        self._ptr = L.check_ptr(L.lib.bpf_object__open_file(str(self.path).encode(), None), f"open {self.path}")
        self._programs = self._collect(L.lib.bpf_object__next_program, BpfProgram)
        self._maps = self._collect(L.lib.bpf_object__next_map, BpfMap)

    def _collect(self, next_fn, cls) -> dict:
        out = {}
        ptr = next_fn(self._ptr, None)
        while ptr:
            item = cls(self, ptr)
            out[item.name] = item
            ptr = next_fn(self._ptr, ptr)
        return out

    def _require_unloaded(self, what: str) -> None:
        if self._loaded:
            raise KernelError(f"{what} must happen before {self.path.name} is loaded")

    @property
    def programs(self) -> dict[str, BpfProgram]:
        return dict(self._programs)

    @property
    def maps(self) -> dict[str, BpfMap]:
        return dict(self._maps)

    def program(self, name: str) -> BpfProgram:
        try:
            return self._programs[name]
        except KeyError:
            raise KernelError(f"{self.path.name} has no program {name!r}") from None

    def map(self, name: str) -> BpfMap:
        """A map by name; data sections by their section name (".rodata", ".bss")."""
        if name in self._maps:
            return self._maps[name]
        ptr = L.lib.bpf_object__find_map_by_name(self._ptr, name.encode())
        if not ptr:
            raise KernelError(f"{self.path.name} has no map {name!r}")
        return BpfMap(self, ptr)

    def btf(self) -> Btf:
        """The object's BTF (valid while the object is open)."""
        return Btf(L.check_ptr(L.lib.bpf_object__btf(self._ptr), f"BTF of {self.path}"), owned=False)

    def set_rodata(self, var: str, value: bytes) -> None:
        """Sets a `const volatile` global before load; the size must match the variable's."""
        self._require_unloaded(f"set_rodata({var})")
        layout = self.btf().datasec_vars(".rodata")
        if var not in layout:
            raise KernelError(f"{self.path.name} has no .rodata variable {var!r}")
        v = layout[var]
        if len(value) != v.size:
            raise KernelError(f".rodata {var} is {v.size} bytes, got {len(value)}")
        data = self.map(".rodata").initial_value()
        ctypes.memmove(ctypes.addressof(data) + v.offset, value, v.size)

    def get_rodata(self, var: str) -> bytes:
        """A `const volatile` global's value as compiled in (before load)."""
        v = self.btf().datasec_vars(".rodata")[var]
        data = self.map(".rodata")._initial_value()
        return bytes(data[v.offset : v.offset + v.size])

    def load(self) -> None:
        L.check(L.lib.bpf_object__load(self._ptr), f"load {self.path}")
        self._loaded = True
        _log.debug("bpf_object_loaded", path=str(self.path),
                   programs=[p.name for p in self._programs.values() if p.autoload])

    def close(self) -> None:
        for link in reversed(list(self._links)):  # destroy() takes each out of the list
            link.destroy()
        if self._ptr:
            L.lib.bpf_object__close(self._ptr)
            self._ptr = 0

    def __enter__(self) -> BpfObject:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def try_load(object_path: Path) -> tuple[bool, int, str]:
    """Whether this kernel loads the object: (ok, errno, message). Nothing stays loaded.

    For capability probes (e.g. lsm_probe.bpf.o). The message adds libbpf's first warning,
    which names the cause; later ones are generic hints (e.g. "raise ulimit -l" for an EPERM
    that lockdown caused).
    """
    with L.capture_messages(L.LIBBPF_WARN, quiet=True) as messages:  # the message carries the cause
        try:
            with BpfObject(Path(object_path)) as obj:
                obj.load()
        except KernelError as e:
            detail = messages[0][1] if messages else ""
            return False, e.errno, f"{e.message}" + (f" ({detail})" if detail else "")
    return True, 0, "loaded"

"""Reading a BPF ring buffer: two interchangeable readers.

- MmapRing maps the ring into this process (as libbpf does) and walks the records in
  Python, handing the decoder (buffer, offset, size) without a copy or a ctypes call per
  record. x86-64 only: it relies on the architecture's ordered loads and stores where C
  uses acquire/release (the BPF side publishes each record with a release store).
- LibbpfRing uses ring_buffer__consume with a ctypes callback per record. Portable, and
  the reference the other is tested against.

docs/performance.md has the measurement that decided the default (see reader="auto").
Both wait with epoll on the map, so wake-ups follow what the BPF side asks for
(BPF_RB_NO_WAKEUP until the wake-up threshold) plus the caller's timeout.
"""

from __future__ import annotations

import ctypes
import mmap
import platform
import select
import struct
from collections.abc import Callable
from typing import Protocol

from karmor_host.errors import KernelError
from karmor_host.kernel import libbpf as L

# (buffer, offset, size) -> None; must not keep a reference to the buffer
Handler = Callable[[memoryview, int, int], None]

BUSY_BIT = 1 << 31
DISCARD_BIT = 1 << 30
HDR_SIZE = 8  # struct bpf_ringbuf_hdr: u32 len (with the bits above), u32 page offset

L.libc.mmap.restype = ctypes.c_void_p
L.libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
L.libc.munmap.restype = ctypes.c_int
L.libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_MAP_FAILED = ctypes.c_void_p(-1).value
_U32 = struct.Struct("<I")


class RingReader(Protocol):
    name: str

    def wait(self, timeout_ms: int) -> None: ...

    def drain(self, handle: Handler, limit: int) -> int: ...

    def close(self) -> None: ...


def _mmap(length: int, prot: int, fd: int, offset: int) -> int:
    addr = L.libc.mmap(None, length, prot, mmap.MAP_SHARED, fd, offset)
    if addr in (None, _MAP_FAILED):
        err = ctypes.get_errno()
        raise KernelError(f"mmap of ring buffer failed: errno {err}", err)
    return addr


class MmapRing:
    """The ring mapped into this process: consumer page (rw), producer page + data (ro)."""

    name = "mmap"

    def __init__(self, map_fd: int, size: int) -> None:
        if platform.machine() not in ("x86_64", "AMD64"):
            raise KernelError(f"the mmap ring reader needs x86-64 ordering, not {platform.machine()}")
        if size & (size - 1):
            raise KernelError(f"ring buffer size {size} is not a power of two")
        self._page = L.page_size()
        self._size = size
        self._mask = size - 1
        self._cons_addr = _mmap(self._page, mmap.PROT_READ | mmap.PROT_WRITE, map_fd, 0)
        # the data area is mapped twice in a row, so a record that wraps reads contiguously
        self._prod_len = self._page + 2 * size
        self._prod_addr = _mmap(self._prod_len, mmap.PROT_READ, map_fd, self._page)
        # aligned 8-byte loads/stores through ctypes are single instructions
        self._cons = ctypes.c_uint64.from_address(self._cons_addr)
        self._prod = ctypes.c_uint64.from_address(self._prod_addr)
        data = (ctypes.c_ubyte * (2 * size)).from_address(self._prod_addr + self._page)
        self._buf = memoryview(data).cast("B")
        self._epoll = select.epoll()
        self._epoll.register(map_fd, select.EPOLLIN)

    def wait(self, timeout_ms: int) -> None:
        if self._cons.value == self._prod.value:  # nothing waiting: sleep until woken or timed out
            self._epoll.poll(max(timeout_ms, 0) / 1000.0)

    def drain(self, handle: Handler, limit: int = 1 << 30) -> int:
        """Hands every committed record to `handle`, oldest first; returns how many."""
        buf, mask = self._buf, self._mask
        cons_var, prod_var = self._cons, self._prod
        unpack = _U32.unpack_from
        cons = cons_var.value
        done = 0
        while done < limit:
            prod = prod_var.value
            if cons >= prod:
                break
            while cons < prod and done < limit:
                pos = cons & mask
                (length,) = unpack(buf, pos)
                if length & BUSY_BIT:
                    cons_var.value = cons
                    return done  # the producer has not committed this one yet
                size = length & ~(BUSY_BIT | DISCARD_BIT)
                if not length & DISCARD_BIT:
                    handle(buf, pos + HDR_SIZE, size)
                cons += (size + HDR_SIZE + 7) & ~7
                done += 1
                if (done & 255) == 0:
                    cons_var.value = cons  # give the producer room during a long drain
            cons_var.value = cons
        return done

    def close(self) -> None:
        if self._cons_addr:
            self._epoll.close()
            self._buf.release()
            L.libc.munmap(self._prod_addr, self._prod_len)
            L.libc.munmap(self._cons_addr, self._page)
            self._cons_addr = 0


class LibbpfRing:
    """libbpf's ring_buffer__consume with a ctypes callback per record."""

    name = "libbpf"

    def __init__(self, map_fd: int, size: int) -> None:
        self._handle: Handler | None = None
        self._error: BaseException | None = None
        self._cb = L.RINGBUF_SAMPLE_FN(self._on_sample)  # kept alive as long as the ring
        self._rb = L.check_ptr(L.lib.ring_buffer__new(map_fd, self._cb, None, None), "ring_buffer__new")
        self._epoll = select.epoll()
        self._epoll.register(L.lib.ring_buffer__epoll_fd(self._rb), select.EPOLLIN)
        self._limit = 0
        self._count = 0

    def _on_sample(self, _ctx: int, data: int, size: int) -> int:
        try:
            view = memoryview((ctypes.c_ubyte * size).from_address(data)).cast("B")
            self._handle(view, 0, size)
        except BaseException as e:  # an exception must not unwind through C
            self._error = e
            return -1
        self._count += 1
        return -1 if self._count >= self._limit else 0

    def wait(self, timeout_ms: int) -> None:
        # the ring's poll reports data that waits, so this returns at once when there is some
        self._epoll.poll(max(timeout_ms, 0) / 1000.0)

    def drain(self, handle: Handler, limit: int = 1 << 30) -> int:
        self._handle, self._limit, self._count, self._error = handle, limit, 0, None
        ret = L.lib.ring_buffer__consume(self._rb)
        if self._error is not None:
            raise self._error
        if ret < 0 and self._count < self._limit:
            L.check(ret, "ring_buffer__consume")
        return self._count

    def close(self) -> None:
        if self._rb:
            self._epoll.close()
            L.lib.ring_buffer__free(self._rb)
            self._rb = 0


READERS: dict[str, type] = {"mmap": MmapRing, "libbpf": LibbpfRing}


def default_reader() -> str:
    return "mmap" if platform.machine() in ("x86_64", "AMD64") else "libbpf"


def open_reader(kind: str, map_fd: int, size: int) -> RingReader:
    if kind == "auto":
        kind = default_reader()
    if kind not in READERS:
        raise KernelError(f"unknown ring reader {kind!r} (choose from {', '.join(READERS)} or auto)")
    return READERS[kind](map_fd, size)

"""ctypes declarations for the parts of libbpf.so.1 (libbpf >= 1.0 semantics) karmor-host uses.

Declarations only, plus the two conversions every caller needs: a failed call becomes a
KernelError carrying errno and libbpf's text, and libbpf's own messages go to structlog
(never to stderr). Functions returning pointers signal failure with NULL + errno; functions
returning int signal it with -errno (libbpf 1.0 "strict" mode, the only mode of 1.x).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from karmor_host import log
from karmor_host.errors import KernelError

_log = log.get("libbpf")

c_void_p = ctypes.c_void_p
c_char_p = ctypes.c_char_p
c_int = ctypes.c_int
c_uint = ctypes.c_uint
c_size_t = ctypes.c_size_t
c_uint32 = ctypes.c_uint32
c_uint64 = ctypes.c_uint64
c_int64 = ctypes.c_int64
c_bool = ctypes.c_bool

lib = ctypes.CDLL("libbpf.so.1", use_errno=True)
libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)

# enum libbpf_print_level
LIBBPF_WARN, LIBBPF_INFO, LIBBPF_DEBUG = 0, 1, 2

# int (*)(enum libbpf_print_level, const char *fmt, va_list ap): on the ABIs we run on a
# va_list parameter is passed as a pointer, which vsnprintf takes back unchanged.
PRINT_FN = ctypes.CFUNCTYPE(c_int, c_int, c_char_p, c_void_p)
# int (*)(void *ctx, void *data, size_t size)
RINGBUF_SAMPLE_FN = ctypes.CFUNCTYPE(c_int, c_void_p, c_void_p, c_size_t)


class MapBatchOpts(ctypes.Structure):
    """struct bpf_map_batch_opts."""

    _fields_ = [("sz", c_size_t), ("elem_flags", c_uint64), ("flags", c_uint64)]


def _declare(name: str, restype, *argtypes) -> None:
    fn = getattr(lib, name)
    fn.restype = restype
    fn.argtypes = list(argtypes)


for _name, _res, _args in [
    ("libbpf_set_print", c_void_p, (PRINT_FN,)),
    ("libbpf_strerror", c_int, (c_int, c_char_p, c_size_t)),
    ("libbpf_num_possible_cpus", c_int, ()),
    # object
    ("bpf_object__open_file", c_void_p, (c_char_p, c_void_p)),
    ("bpf_object__load", c_int, (c_void_p,)),
    ("bpf_object__close", None, (c_void_p,)),
    ("bpf_object__name", c_char_p, (c_void_p,)),
    ("bpf_object__btf", c_void_p, (c_void_p,)),
    ("bpf_object__next_program", c_void_p, (c_void_p, c_void_p)),
    ("bpf_object__next_map", c_void_p, (c_void_p, c_void_p)),
    ("bpf_object__find_program_by_name", c_void_p, (c_void_p, c_char_p)),
    ("bpf_object__find_map_by_name", c_void_p, (c_void_p, c_char_p)),
    # program
    ("bpf_program__name", c_char_p, (c_void_p,)),
    ("bpf_program__section_name", c_char_p, (c_void_p,)),
    ("bpf_program__autoload", c_bool, (c_void_p,)),
    ("bpf_program__set_autoload", c_int, (c_void_p, c_bool)),
    ("bpf_program__fd", c_int, (c_void_p,)),
    ("bpf_program__attach", c_void_p, (c_void_p,)),
    ("bpf_program__attach_tracepoint", c_void_p, (c_void_p, c_char_p, c_char_p)),
    ("bpf_program__attach_cgroup", c_void_p, (c_void_p, c_int)),
    ("bpf_program__attach_lsm", c_void_p, (c_void_p,)),
    ("bpf_obj_get_info_by_fd", c_int, (c_int, c_void_p, ctypes.POINTER(c_uint32))),
    # link
    ("bpf_link__destroy", c_int, (c_void_p,)),
    ("bpf_link__fd", c_int, (c_void_p,)),
    ("bpf_link__pin", c_int, (c_void_p, c_char_p)),
    ("bpf_link__unpin", c_int, (c_void_p,)),
    # map
    ("bpf_map__name", c_char_p, (c_void_p,)),
    ("bpf_map__fd", c_int, (c_void_p,)),
    ("bpf_map__type", c_int, (c_void_p,)),
    ("bpf_map__key_size", c_uint32, (c_void_p,)),
    ("bpf_map__value_size", c_uint32, (c_void_p,)),
    ("bpf_map__max_entries", c_uint32, (c_void_p,)),
    ("bpf_map__set_max_entries", c_int, (c_void_p, c_uint32)),
    ("bpf_map__initial_value", c_void_p, (c_void_p, ctypes.POINTER(c_size_t))),
    ("bpf_map__pin", c_int, (c_void_p, c_char_p)),
    ("bpf_map__unpin", c_int, (c_void_p, c_char_p)),
    ("bpf_map__lookup_elem", c_int, (c_void_p, c_void_p, c_size_t, c_void_p, c_size_t, c_uint64)),
    ("bpf_map__update_elem", c_int, (c_void_p, c_void_p, c_size_t, c_void_p, c_size_t, c_uint64)),
    ("bpf_map__delete_elem", c_int, (c_void_p, c_void_p, c_size_t, c_uint64)),
    ("bpf_map__get_next_key", c_int, (c_void_p, c_void_p, c_void_p, c_size_t)),
    # low-level batch operations on a map fd (kernel 5.6+)
    ("bpf_map_lookup_batch", c_int,
     (c_int, c_void_p, c_void_p, c_void_p, c_void_p, ctypes.POINTER(c_uint32), ctypes.POINTER(MapBatchOpts))),
    ("bpf_map_update_batch", c_int,
     (c_int, c_void_p, c_void_p, ctypes.POINTER(c_uint32), ctypes.POINTER(MapBatchOpts))),
    ("bpf_map_delete_batch", c_int, (c_int, c_void_p, ctypes.POINTER(c_uint32), ctypes.POINTER(MapBatchOpts))),
    # ring buffer
    ("ring_buffer__new", c_void_p, (c_int, RINGBUF_SAMPLE_FN, c_void_p, c_void_p)),
    ("ring_buffer__poll", c_int, (c_void_p, c_int)),
    ("ring_buffer__consume", c_int, (c_void_p,)),
    ("ring_buffer__epoll_fd", c_int, (c_void_p,)),
    ("ring_buffer__free", None, (c_void_p,)),
    # BTF
    ("btf__parse", c_void_p, (c_char_p, c_void_p)),
    ("btf__free", None, (c_void_p,)),
    ("btf__type_cnt", c_uint32, (c_void_p,)),
    ("btf__find_by_name_kind", ctypes.c_int32, (c_void_p, c_char_p, c_uint32)),
    ("btf__type_by_id", c_void_p, (c_void_p, c_uint32)),
    ("btf__resolve_size", c_int64, (c_void_p, c_uint32)),
    ("btf__name_by_offset", c_char_p, (c_void_p, c_uint32)),
]:
    _declare(_name, _res, *_args)

libc.vsnprintf.restype = c_int
libc.vsnprintf.argtypes = [c_char_p, c_size_t, c_char_p, c_void_p]


def strerror(err: int) -> str:
    """libbpf's text for an error code (knows libbpf's own codes beyond errno's)."""
    buf = ctypes.create_string_buffer(256)
    lib.libbpf_strerror(-abs(err), buf, len(buf))
    return buf.value.decode(errors="replace")


def check(ret: int, what: str) -> int:
    """An int-returning libbpf call: negative is -errno."""
    if ret < 0:
        raise KernelError(f"{what}: {strerror(ret)}", -ret)
    return ret


def check_ptr(ptr: int | None, what: str) -> int:
    """A pointer-returning libbpf call: NULL with errno set."""
    if not ptr:
        err = ctypes.get_errno() or 22  # EINVAL when libbpf left errno unset
        raise KernelError(f"{what}: {strerror(err)}", err)
    return ptr


# ---- libbpf's messages -> structlog -------------------------------------------------------

_listeners: list[Callable[[int, str], None]] = []
_listeners_lock = threading.Lock()
_debug_enabled = False
_quiet = threading.local()  # libbpf calls back on the thread that called it
_MSG_MAX = 64 * 1024  # verifier logs arrive as one message


def _on_print(level: int, fmt: bytes, args: int) -> int:
    if level == LIBBPF_DEBUG and not _debug_enabled:
        return 0  # formatting debug text nobody reads costs more than the call itself
    buf = ctypes.create_string_buffer(_MSG_MAX)
    libc.vsnprintf(buf, _MSG_MAX, fmt, args)
    text = buf.value.decode(errors="replace").rstrip("\n")
    if getattr(_quiet, "depth", 0):
        _log.debug("libbpf_message", text=text)
    elif level == LIBBPF_WARN:
        _log.warning("libbpf_message", text=text)
    elif level == LIBBPF_INFO:
        _log.info("libbpf_message", text=text)
    else:
        _log.debug("libbpf_message", text=text)
    with _listeners_lock:
        listeners = list(_listeners)
    for fn in listeners:
        fn(level, text)
    return 0


_print_cb = PRINT_FN(_on_print)  # module-level: libbpf keeps the pointer forever
lib.libbpf_set_print(_print_cb)


def set_debug(enabled: bool) -> None:
    """Format and log libbpf's debug messages (verbose: every relocation, every map)."""
    global _debug_enabled
    _debug_enabled = enabled


@contextmanager
def capture_messages(min_level: int = LIBBPF_INFO, quiet: bool = False) -> Iterator[list[tuple[int, str]]]:
    """Collects libbpf's messages at `min_level` or more severe while the block runs.
    `quiet`: this thread's messages are logged at debug level only, for an expected failure
    (a probe) whose cause the caller reports itself."""
    seen: list[tuple[int, str]] = []

    def listener(level: int, text: str) -> None:
        if level <= min_level:
            seen.append((level, text))

    with _listeners_lock:
        _listeners.append(listener)
    _quiet.depth = getattr(_quiet, "depth", 0) + int(quiet)
    try:
        yield seen
    finally:
        _quiet.depth -= int(quiet)
        with _listeners_lock:
            _listeners.remove(listener)


def num_possible_cpus() -> int:
    return check(lib.libbpf_num_possible_cpus(), "libbpf_num_possible_cpus")


def page_size() -> int:
    return os.sysconf("SC_PAGE_SIZE")

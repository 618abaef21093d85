"""tracefs: where tracepoints are listed, and libbpf finds their ids to attach programs.

Bare containers and minimal hosts may not have it mounted; the monitor mounts it (root)
rather than failing to attach, and asks it whether a tracepoint exists on this kernel.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from pathlib import Path

from karmor_host import log
from karmor_host.errors import KernelError

_log = log.get("tracefs")

TRACEFS = Path("/sys/kernel/tracing")
# libbpf looks here first when it exists (debugfs with tracefs automounted inside)
DEBUGFS_TRACING = Path("/sys/kernel/debug/tracing")


def events_dir() -> Path | None:
    for base in (DEBUGFS_TRACING, TRACEFS):
        if (base / "events").is_dir():
            return base / "events"
    return None


def ensure_mounted() -> Path:
    """The tracefs events directory, mounting tracefs on /sys/kernel/tracing if needed."""
    found = events_dir()
    if found is not None:
        return found
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    if libc.mount(b"tracefs", str(TRACEFS).encode(), b"tracefs", 0, None) != 0:
        err = ctypes.get_errno()
        raise KernelError(f"tracefs is not mounted and mounting it on {TRACEFS} failed: {os.strerror(err)}", err)
    _log.info("tracefs_mounted", path=str(TRACEFS))
    return TRACEFS / "events"


def has_tracepoint(category: str, name: str) -> bool:
    base = events_dir()
    return base is not None and (base / category / name).is_dir()

"""The root of the cgroup v2 hierarchy, where the monitor's cgroup socket hooks attach:
programs attached there run for every process in every cgroup below it."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from pathlib import Path

from karmor_host import log
from karmor_host.errors import KernelError

_log = log.get("cgroup")

# Where we mount cgroup2 ourselves when nothing has (some v1-only hosts, bare containers).
PRIVATE_MOUNT = Path("/run/karmor/cgroup2")


def find_cgroup2(mounts: Path = Path("/proc/self/mounts")) -> Path | None:
    """The first cgroup2 mount point (pure v2: /sys/fs/cgroup; hybrid: .../unified)."""
    for line in mounts.read_text().splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[2] == "cgroup2":
            return Path(fields[1].replace("\\040", " "))
    return None


def cgroup2_root() -> Path:
    """A cgroup2 mount of the hierarchy's root, mounting one privately if there is none."""
    found = find_cgroup2()
    if found is not None:
        return found
    PRIVATE_MOUNT.mkdir(parents=True, exist_ok=True)
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    if libc.mount(b"cgroup2", str(PRIVATE_MOUNT).encode(), b"cgroup2", 0, None) != 0:
        err = ctypes.get_errno()
        raise KernelError(f"no cgroup2 hierarchy mounted and mounting one failed: {os.strerror(err)}", err)
    _log.info("cgroup2_mounted", path=str(PRIVATE_MOUNT))
    return PRIVATE_MOUNT

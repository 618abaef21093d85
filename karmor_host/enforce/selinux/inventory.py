"""The files a rule set names, as SELinux sees them: kind, original context, labelability.

The original context is the one karmor found before it relabelled anything: the backend's
state records it, so a restarted agent (or a file already in a karmor type) still knows what to
restore. A file system keeps labels when the kernel marks its mount `seclabel`. Where SELinux is
not enabled (`policy translate` on another machine), contexts are what file_contexts would give
and labelability is assumed, so the module can still be shown.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from karmor_host.enforce.selinux.facts import MISSING, Inode, Inventory, Tree, Wanted
from karmor_host.enforce.selinux.render import MAX_TREE, PREFIX

_KINDS = (
    (stat.S_ISREG, "file"), (stat.S_ISDIR, "dir"), (stat.S_ISLNK, "lnk_file"), (stat.S_ISCHR, "chr_file"),
    (stat.S_ISBLK, "blk_file"), (stat.S_ISSOCK, "sock_file"), (stat.S_ISFIFO, "fifo_file"),
)


def kind_of(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "file")


@dataclass(frozen=True)
class Mount:
    point: str
    fstype: str
    seclabel: bool


def mounts(mountinfo: Path = Path("/proc/self/mountinfo")) -> list[Mount]:
    """Mounts, longest mount point first (so the first prefix match is the right one)."""
    out = []
    try:
        lines = mountinfo.read_text().splitlines()
    except OSError:
        return out
    for line in lines:
        left, sep, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if not sep or len(fields) < 5 or len(tail) < 3:
            continue
        point = fields[4].replace("\\040", " ").replace("\\011", "\t").replace("\\134", "\\")
        out.append(Mount(point, tail[0], "seclabel" in tail[2].split(",")))
    return sorted(out, key=lambda m: len(m.point), reverse=True)


def mount_of(path: str, table: list[Mount]) -> Mount | None:
    for m in table:
        if path == m.point or path.startswith(m.point.rstrip("/") + "/"):
            return m
    return None


class Labels:
    """Reads contexts through python3-selinux; `enabled` False means file_contexts only."""

    def __init__(self) -> None:
        import selinux  # noqa: PLC0415 - Debian's python3-selinux

        self.selinux = selinux
        self.enabled = bool(selinux.is_selinux_enabled())
        self._handle = None

    def current(self, path: str) -> str:
        try:
            return self.selinux.lgetfilecon_raw(path)[1] or ""
        except OSError:
            return ""

    def default(self, path: str, mode: int) -> str:
        """What file_contexts says `path` should be ("" when it says nothing)."""
        try:
            if self._handle is None:
                self._handle = self.selinux.selabel_open(self.selinux.SELABEL_CTX_FILE, None, 0)
            return self.selinux.selabel_lookup_raw(self._handle, path, mode)[1] or ""
        except OSError:
            return ""


def scan(wanted: Wanted, originals: Mapping[str, str], labels: Labels | None = None,
         table: list[Mount] | None = None, limit: int = MAX_TREE,
         lstat: Callable[[str], os.stat_result] = os.lstat) -> Inventory:
    """Inodes for every wanted path and every path inside the wanted directories."""
    labels = labels or Labels()
    table = mounts() if table is None else table
    inodes: dict[str, Inode] = {}
    trees: dict[tuple[str, bool], Tree] = {}

    def add(path: str) -> Inode:
        if path not in inodes:
            inodes[path] = _inode(path, originals, labels, table, lstat)
        return inodes[path]

    for path in sorted(wanted.paths):
        add(path)
    for d, recursive in sorted(wanted.trees):
        top = add(d.rstrip("/") or "/")
        if top.kind != "dir":
            continue
        paths, truncated = _walk(d.rstrip("/") or "/", recursive, limit)
        for p in paths:
            add(p)
        trees[(d, recursive)] = Tree(d, recursive, tuple(paths), truncated)
    return Inventory(inodes, trees)


def _walk(top: str, recursive: bool, limit: int) -> tuple[list[str], bool]:
    out: list[str] = []
    stack = [top]
    while stack:
        cur = stack.pop()
        try:
            entries = sorted(os.scandir(cur), key=lambda e: e.name)
        except OSError:
            continue
        for e in entries:
            out.append(e.path)
            if len(out) > limit:
                return out[:limit], True
            if recursive and e.is_dir(follow_symlinks=False):
                stack.append(e.path)
    return sorted(out), False


def _inode(path: str, originals: Mapping[str, str], labels: Labels, table: list[Mount],
           lstat: Callable[[str], os.stat_result]) -> Inode:
    try:
        st = lstat(path)
    except OSError:
        return Inode(path, MISSING)
    kind = kind_of(st.st_mode)
    if not labels.enabled:
        ctx = originals.get(path) or labels.default(path, st.st_mode)
        return Inode(path, kind, ctx, bool(ctx), "SELinux is not enabled: context from file_contexts"
                     if ctx else "SELinux is not enabled and file_contexts has no entry", st.st_dev, st.st_ino)
    m = mount_of(path, table)
    if m is None or not m.seclabel:
        fs = f"{m.fstype} on {m.point}" if m else "its file system"
        return Inode(path, kind, labels.current(path), False, f"{fs} keeps no SELinux labels", st.st_dev, st.st_ino)
    ctx, why = originals.get(path, ""), ""
    if not ctx:
        ctx = labels.current(path)
        if _type(ctx).startswith(PREFIX):
            ctx, why = inherited(path, ctx, originals)
            if not ctx:
                # karmor's own label, but no record of the original: take file_contexts' answer
                ctx = labels.default(path, st.st_mode)
                why = "labelled by karmor before, original unknown: restored to the file_contexts default"
    return Inode(path, kind, ctx, True, why, st.st_dev, st.st_ino)


def inherited(path: str, current: str, originals: Mapping[str, str]) -> tuple[str, str]:
    """The original context of a file created inside a directory karmor relabelled: it took
    the directory's (karmor) type, so without karmor it would have the directory's original
    type. ("", "") when no ancestor has a recorded original."""
    parent = path
    while "/" in parent.rstrip("/"):
        parent = parent.rstrip("/").rsplit("/", 1)[0] or "/"
        if parent in originals:
            parts = current.split(":", 3)
            if len(parts) == 4:
                parts[2] = _type(originals[parent])
                return ":".join(parts), f"created under {parent}, which karmor relabelled: original from it"
        if parent == "/":
            break
    return "", ""


def _type(ctx: str) -> str:
    parts = ctx.split(":")
    return parts[2] if len(parts) >= 3 else ""

"""Canonical policy paths: the only place in policy/ that looks at the host's filesystem.

The kernel reports the path it resolved (`/usr/bin/ls`), while policies are often written with
a symlinked spelling (`/bin/ls` on merged-/usr systems). KubeArmor then silently never matches.
We resolve symlinks in the longest prefix of the path that exists on this host and keep the
rest as written, so a rule for a program that is not installed yet still means what it says.

Resolution is done component by component against a `root` (like a chroot) instead of with
os.path.realpath, so tests can canonicalise against a temporary tree and absolute link targets
stay inside that root.
"""

from __future__ import annotations

import os
import stat
from collections import deque
from collections.abc import Callable

Resolver = Callable[[str], str]

MAX_LINK_HOPS = 40  # the kernel's own limit (MAXSYMLINKS)

# Pseudo filesystems whose links depend on who looks (/proc/self -> the compiler's own pid,
# /dev/stdin -> /proc/self/fd/0): resolving them here would bake in the agent's view.
VOLATILE_TOPS = frozenset({"proc", "sys", "dev"})


def _parts(path: str) -> list[str]:
    return [p for p in path.split("/") if p not in ("", ".")]


def _lexical(parts: list[str]) -> list[str]:
    out: list[str] = []
    for p in parts:
        if p == "..":
            if out:
                out.pop()
        else:
            out.append(p)
    return out


class Canonicalizer:
    """Callable path -> canonical path, remembering answers for one compile."""

    def __init__(self, root: str | os.PathLike[str] = "/") -> None:
        self.root = os.fspath(root)
        self._cache: dict[str, str] = {}

    def __call__(self, path: str) -> str:
        if path not in self._cache:
            self._cache[path] = self._resolve(path)
        return self._cache[path]

    def _host(self, parts: list[str]) -> str:
        return os.path.join(self.root, *parts)

    def _resolve(self, path: str) -> str:
        is_dir = path.endswith("/")
        pending = deque(_parts(path))
        done: list[str] = []
        hops = 0
        while pending:
            name = pending.popleft()
            if name == "..":
                if done:
                    done.pop()
                continue
            candidate = done + [name]
            if candidate[0] in VOLATILE_TOPS:  # a link led into /proc, /sys or /dev
                done = _lexical(candidate + list(pending))
                break
            try:
                st = os.lstat(self._host(candidate))
            except OSError:
                # Not there (or not visible to us): keep the rest exactly as written.
                done = _lexical(candidate + list(pending))
                break
            if not stat.S_ISLNK(st.st_mode):
                done = candidate
                continue
            hops += 1
            if hops > MAX_LINK_HOPS:
                return _join(_lexical(_parts(path)), is_dir)  # a loop: leave it as written
            try:
                target = os.readlink(self._host(candidate))
            except OSError:
                done = _lexical(candidate + list(pending))
                break
            if target.startswith("/"):
                done = []
            pending.extendleft(reversed(_parts(target)))
        return _join(done, is_dir)


def _join(parts: list[str], is_dir: bool) -> str:
    if not parts:
        return "/"
    return "/" + "/".join(parts) + ("/" if is_dir else "")


def canonical(path: str, root: str | os.PathLike[str] = "/") -> str:
    """One-off canonicalisation (compile.py uses a Canonicalizer to cache across rules)."""
    return Canonicalizer(root)(path)

"""The policy directory's last good state: one entry per file, never worse than before.

A rescan reads only files whose identity (inode, size, mtime) changed. A file that fails
validation or the security checks keeps its last good version in force; a deleted file
takes its policies with it. Two files defining one policy name: the one that held it first
stays, and the other file's copy is rejected with an error naming both.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from karmor_host import log
from karmor_host.errors import Problem
from karmor_host.policy import load_file

SUFFIXES = (".yaml", ".yml")
_log = log.get("karmor.policy.store")


@dataclass
class FileState:
    path: str
    identity: tuple[int, ...] | None = None  # (dev, ino, size, mtime_ns, ctime_ns) of the last read
    good: list[Any] = field(default_factory=list)  # policies of the last good version
    good_since: int = 0  # scan generation that accepted the good version
    problems: list[Problem] = field(default_factory=list)  # why the current text is rejected
    warnings: list[Problem] = field(default_factory=list)


@dataclass(frozen=True)
class Rejection:
    file: str
    reason: str
    keeping_last_good: bool


@dataclass(frozen=True)
class ScanResult:
    changed: bool
    policies: tuple[Any, ...]  # the policies in force, in a stable order
    rejections: tuple[Rejection, ...]
    warnings: tuple[Problem, ...]


def _owner_problem(st: os.stat_result, what: str) -> str | None:
    # Root, or the agent's own user when it runs unprivileged (a developer's checkout).
    if st.st_uid not in (0, os.geteuid()):
        return f"{what} is owned by uid {st.st_uid}, not root: refused"
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"{what} is writable by group or others (mode {stat.S_IMODE(st.st_mode):04o}): refused"
    return None


class PolicyStore:
    def __init__(self, directory: Path, require_root_owner: bool = True) -> None:
        self.directory = directory
        self.require_root_owner = require_root_owner
        self.files: dict[str, FileState] = {}
        self.generation = 0
        self.dir_problem: str | None = None

    # --- checks -----------------------------------------------------------------------
    def _check_dir(self) -> str | None:
        try:
            st = os.stat(self.directory)
        except OSError as exc:
            return f"policy directory {self.directory}: {exc.strerror}"
        if not stat.S_ISDIR(st.st_mode):
            return f"policy directory {self.directory} is not a directory"
        if self.require_root_owner:
            return _owner_problem(st, f"policy directory {self.directory}")
        return None

    def _open_checked(self, name: str) -> tuple[os.stat_result | None, bytes | None, str | None]:
        """Read one file safely: no symlinks leaving the directory, root-owned, not writable by others."""
        path = self.directory / name
        try:
            lst = os.lstat(path)
        except FileNotFoundError:
            return None, None, None
        if stat.S_ISLNK(lst.st_mode):
            real = Path(os.path.realpath(path))
            if real.parent != Path(os.path.realpath(self.directory)):
                return None, None, f"{path} is a symlink to {real}, outside the policy directory: refused"
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK)
        except FileNotFoundError:
            return None, None, None
        except OSError as exc:
            return None, None, f"{path}: cannot open: {exc.strerror}"
        try:
            st = os.fstat(fd)  # check the file we actually read, not the name
            if not stat.S_ISREG(st.st_mode):
                return None, None, f"{path} is not a regular file: refused"
            if self.require_root_owner:
                why = _owner_problem(st, str(path))
                if why:
                    return st, None, why
            chunks = []
            while chunk := os.read(fd, 1 << 16):
                chunks.append(chunk)
            return st, b"".join(chunks), None
        finally:
            os.close(fd)

    def _names(self) -> list[str]:
        try:
            return sorted(
                e.name for e in os.scandir(self.directory)
                if e.name.endswith(SUFFIXES) and not e.name.startswith(".")
            )
        except OSError:
            return []

    # --- scanning ---------------------------------------------------------------------
    def scan(self) -> ScanResult:
        """Re-read what changed; return the policies now in force and every rejection."""
        self.generation += 1
        changed = False
        self.dir_problem = self._check_dir()
        if self.dir_problem:
            # An unsafe directory changes nothing: everything loaded so far stays in force.
            _log.error("policy_dir_refused", reason=self.dir_problem)
            return self._result(changed=False)
        names = self._names()
        for gone in set(self.files) - set(names):
            if self.files[gone].good:
                changed = True
            del self.files[gone]
            _log.info("policy_file_removed", file=str(self.directory / gone))
        for name in names:
            changed |= self._scan_file(name)
        return self._result(changed)

    def _scan_file(self, name: str) -> bool:
        state = self.files.setdefault(name, FileState(path=str(self.directory / name)))
        st, data, why = self._open_checked(name)
        if st is None and why is None:  # vanished between listing and opening
            return False
        # ctime too: a chmod/chown must be re-checked even though the text is the same
        identity = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns) if st else None
        if why is None and identity == state.identity and not state.problems:
            return False
        state.identity = identity
        if why is not None:
            state.problems = [Problem(state.path, 0, 0, "", why)]
            _log.error("policy_file_refused", file=state.path, reason=why, keeping_last_good=bool(state.good))
            return False
        result = load_file(Path(state.path), text=data.decode("utf-8", errors="replace"))
        errors = [p for p in result.problems if p.severity == "error"]
        state.warnings = [p for p in result.problems if p.severity != "error"]
        for w in state.warnings:
            _log.warning("policy_warning", problem=str(w))
        if errors:
            state.problems = errors
            for p in errors:
                _log.error("policy_invalid", problem=str(p), keeping_last_good=bool(state.good))
            return False
        state.problems = []
        state.good = list(result.policies)
        state.good_since = self.generation
        _log.info("policy_file_loaded", file=state.path, policies=[p.name for p in state.good])
        return True

    def _result(self, changed: bool) -> ScanResult:
        rejections = [
            Rejection(s.path, "; ".join(str(p) for p in s.problems), bool(s.good))
            for s in self.files.values() if s.problems
        ]
        # Duplicate names: the file that has held the name longest keeps it.
        owners: dict[str, FileState] = {}
        for s in sorted(self.files.values(), key=lambda s: (s.good_since, s.path)):
            for p in s.good:
                first = owners.get(p.name)
                if first is None:
                    owners[p.name] = s
                elif first is not s:
                    reason = (f"policy '{p.name}' is already defined in {first.path}; "
                              f"this copy in {s.path} is ignored")
                    rejections.append(Rejection(s.path, reason, True))
                    _log.error("policy_duplicate", policy=p.name, kept=first.path, ignored=s.path)
        policies = []
        for name in sorted(owners):
            s = owners[name]
            policies.extend(p for p in s.good if p.name == name)
        warnings = [w for s in self.files.values() for w in s.warnings]
        return ScanResult(changed, tuple(policies), tuple(rejections), tuple(warnings))

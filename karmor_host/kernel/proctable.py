"""The process table: tgid -> executable, cwd, tty, parent, kept from the event stream.

Seeded from /proc once at start; afterwards fed by records (a record carries its process's
exe/cwd/tty whenever they changed since that process's last record, exec always does,
fork copies the parent, exit removes). /proc is read again only for a process the stream
never described (a parent that has been quiet since before the monitor started) and that
read is counted as a miss, once per tgid.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

# An unbounded table is a leak when exit records are not requested (process visibility off).
PRUNE_AT = 32768


@dataclass(slots=True)
class Proc:
    exe: str = ""
    cwd: str = ""
    tty: str = ""
    ppid: int = 0


def tty_name(tty_nr: int) -> str:
    """/proc/<pid>/stat's tty_nr as the kernel's tty->name ("pts0", "tty1", "ttyS0")."""
    major = (tty_nr >> 8) & 0xFFF
    minor = (tty_nr & 0xFF) | ((tty_nr >> 12) & 0xFFF00)
    if 136 <= major <= 143:
        return f"pts{(major - 136) * 256 + minor}"
    if major == 4:
        return f"tty{minor}" if minor < 64 else f"ttyS{minor - 64}"
    return ""


class ProcTable:
    def __init__(self, proc_root: Path = Path("/proc")) -> None:
        self._root = proc_root
        # read directly by the decoder's hot path; get() when the entry may be missing
        self.by_tgid: dict[int, Proc] = {}
        self._procs = self.by_tgid
        self.misses = 0  # /proc reads after seeding

    def __len__(self) -> int:
        return len(self._procs)

    def __contains__(self, tgid: int) -> bool:
        return tgid in self._procs

    def _read(self, tgid: int) -> Proc:
        base = self._root / str(tgid)
        proc = Proc()
        try:
            proc.exe = os.readlink(base / "exe")
        except OSError:
            pass  # kernel thread, gone, or not permitted
        try:
            proc.cwd = os.readlink(base / "cwd")
        except OSError:
            pass
        try:
            stat = (base / "stat").read_bytes()
            # comm may contain spaces and parentheses: fields start after the last ')'
            fields = stat[stat.rindex(b")") + 2 :].split()
            proc.ppid = int(fields[1])
            proc.tty = tty_name(int(fields[4]))
        except (OSError, ValueError, IndexError):
            pass
        return proc

    def seed(self) -> int:
        """Reads every process in /proc; returns how many."""
        for entry in os.scandir(self._root):
            if entry.name.isdigit():
                tgid = int(entry.name)
                self._procs.setdefault(tgid, self._read(tgid))
        return len(self._procs)

    def get(self, tgid: int) -> Proc:
        """The process, read from /proc (and counted) if the stream never described it."""
        proc = self._procs.get(tgid)
        if proc is None:
            self.misses += 1
            proc = self._procs[tgid] = self._read(tgid)
            if len(self._procs) > PRUNE_AT:
                self.prune()
        return proc

    def set_context(self, tgid: int, ppid: int, exe: str, cwd: str, tty: str) -> Proc:
        proc = self._procs.get(tgid)
        if proc is None:
            proc = self._procs[tgid] = Proc(exe, cwd, tty, ppid)
            if len(self._procs) > PRUNE_AT:
                self.prune()
        else:
            proc.exe, proc.cwd, proc.tty, proc.ppid = exe, cwd, tty, ppid
        return proc

    def fork(self, parent: int, child: int) -> Proc:
        p = self.get(parent)
        proc = self._procs[child] = Proc(p.exe, p.cwd, p.tty, parent)
        return proc

    def exit(self, tgid: int) -> None:
        self._procs.pop(tgid, None)

    def prune(self) -> int:
        """Forgets processes that no longer exist; returns how many."""
        gone = [t for t in self._procs if not (self._root / str(t)).exists()]
        for t in gone:
            del self._procs[t]
        return len(gone)

"""proctable.py: seeding from a /proc tree, misses, fork/exit, tty names."""

from __future__ import annotations

import os

from karmor_host.kernel.proctable import ProcTable, tty_name


def fake_proc(root, tgid, exe, cwd, ppid, tty_nr, comm="x (y) z"):
    d = root / str(tgid)
    d.mkdir()
    os.symlink(exe, d / "exe")
    os.symlink(cwd, d / "cwd")
    (d / "stat").write_text(f"{tgid} ({comm}) S {ppid} {tgid} {tgid} {tty_nr} 0 0\n")


def test_seed_and_miss(tmp_path):
    fake_proc(tmp_path, 1, "/sbin/init", "/", 0, 0)
    fake_proc(tmp_path, 42, "/usr/bin/bash", "/root", 1, (136 << 8) | 5)
    procs = ProcTable(proc_root=tmp_path)
    assert procs.seed() == 2 and procs.misses == 0
    bash = procs.get(42)
    assert (bash.exe, bash.cwd, bash.ppid, bash.tty) == ("/usr/bin/bash", "/root", 1, "pts5")
    fake_proc(tmp_path, 77, "/usr/bin/late", "/tmp", 42, 0)
    assert procs.get(77).exe == "/usr/bin/late" and procs.misses == 1
    procs.get(77)
    assert procs.misses == 1  # read once
    assert procs.get(9999).exe == "" and procs.misses == 2


def test_fork_exit_and_prune(tmp_path):
    procs = ProcTable(proc_root=tmp_path)
    procs.set_context(10, 1, "/usr/bin/sh", "/w", "tty1")
    child = procs.fork(10, 11)
    assert (child.exe, child.cwd, child.tty, child.ppid) == ("/usr/bin/sh", "/w", "tty1", 10)
    procs.exit(11)
    assert 11 not in procs
    (tmp_path / "10").mkdir()
    procs.set_context(12, 1, "/gone", "/", "")
    assert procs.prune() == 1 and 10 in procs and 12 not in procs


def test_tty_names():
    assert tty_name(0) == ""
    assert tty_name((136 << 8) | 0) == "pts0"
    assert tty_name((137 << 8) | 2) == "pts258"
    assert tty_name((4 << 8) | 1) == "tty1"
    assert tty_name((4 << 8) | 64) == "ttyS0"

"""bpf/monitor/syscall.bpf.c: audited syscalls at sys_exit, paths resolved to absolute."""

from __future__ import annotations

import ctypes
import errno
import os

import pytest

from karmor_host.kernel.events import EventKind
from tests.kernel.monitor_helpers import NOBODY, in_child, monitor

pytestmark = pytest.mark.kernel

libc = ctypes.CDLL(None, use_errno=True)
PTRACE_TRACEME = 0
AT_SYMLINK_NOFOLLOW = 0x100


@pytest.fixture(scope="module")
def mon():
    with monitor("syscall") as m:
        yield m


@pytest.fixture
def tmp(tmp_path):
    return tmp_path.resolve()


def calls(mon, pid, *names):
    return mon.wait_for(lambda e: e.tgid == pid and e.kind is EventKind.SYSCALL and e.syscall in names,
                        count=len(names))


def test_setuid_and_setgid(mon):
    def drop():
        os.setgid(NOBODY)
        os.setuid(NOBODY)

    pid, status = in_child(drop)
    assert status == 0
    setgid, setuid = calls(mon, pid, "setgid", "setuid")
    assert (setgid.syscall, setgid.sys_args, setgid.retval) == ("setgid", (NOBODY,), 0)
    assert (setuid.syscall, setuid.sys_args, setuid.retval) == ("setuid", (NOBODY,), 0)
    assert setuid.uid == NOBODY  # the identity after the call


def test_unlink_of_a_relative_path_is_made_absolute(mon, tmp):
    (tmp / "doomed").write_text("x")

    def act():
        os.chdir(tmp)
        os.unlink("doomed")

    pid, status = in_child(act)
    assert status == 0
    (ev,) = calls(mon, pid, "unlink")
    assert (ev.path, ev.retval) == (str(tmp / "doomed"), 0)
    assert not (tmp / "doomed").exists()


def test_unlinkat_relative_to_a_dirfd_and_rmdir(mon, tmp):
    (tmp / "sub").mkdir()
    (tmp / "sub" / "f").write_text("x")
    (tmp / "empty").mkdir()

    def act():
        dfd = os.open(tmp / "sub", os.O_RDONLY | os.O_DIRECTORY)
        os.unlink("f", dir_fd=dfd)
        os.rmdir(tmp / "empty")

    pid, status = in_child(act)
    assert status == 0
    unlinkat, rmdir = calls(mon, pid, "unlinkat", "rmdir")
    assert (unlinkat.path, unlinkat.sys_args, unlinkat.retval) == (str(tmp / "sub" / "f"), (0,), 0)
    assert (rmdir.path, rmdir.retval) == (str(tmp / "empty"), 0)


def test_a_failed_unlink_reports_the_error(mon, tmp):
    def act():
        try:
            os.unlink(tmp / "never-was")
        except FileNotFoundError:
            return 0
        return 1

    pid, status = in_child(act)
    assert status == 0
    (ev,) = calls(mon, pid, "unlink")
    assert (ev.path, ev.retval) == (str(tmp / "never-was"), -errno.ENOENT)


def test_chown_and_fchownat(mon, tmp):
    f = tmp / "owned"
    f.write_text("x")

    def act():
        libc.chown(str(f).encode(), 7, 8)
        os.chown("owned", 9, 10, dir_fd=os.open(tmp, os.O_RDONLY | os.O_DIRECTORY), follow_symlinks=False)

    pid, status = in_child(act)
    assert status == 0
    chown, fchownat = mon.wait_for(
        lambda e: e.tgid == pid and e.kind is EventKind.SYSCALL and "chown" in e.syscall, count=2)
    assert chown.path == fchownat.path == str(f)
    assert chown.sys_args[:2] == (7, 8) and fchownat.sys_args[:2] == (9, 10)
    assert fchownat.syscall == "fchownat" and fchownat.sys_args[2] == AT_SYMLINK_NOFOLLOW
    assert (os.stat(f).st_uid, os.stat(f).st_gid) == (9, 10)


def test_ptrace(mon):
    pid, status = in_child(lambda: libc.ptrace(PTRACE_TRACEME, 0, None, None))
    assert status == 0
    (ev,) = calls(mon, pid, "ptrace")
    assert (ev.sys_args, ev.retval) == ((PTRACE_TRACEME, 0), 0)


def test_mount_and_umount2(mon, tmp):
    target = tmp / "mnt"
    target.mkdir()

    def act():
        os.chdir(tmp)
        assert libc.mount(b"karmor-test", b"mnt", b"tmpfs", 0, None) == 0, ctypes.get_errno()
        assert libc.umount2(str(target).encode(), 0) == 0, ctypes.get_errno()

    pid, status = in_child(act)
    assert status == 0
    mount, umount = calls(mon, pid, "mount", "umount2")
    assert (mount.path, mount.sys_args, mount.retval) == (str(target), ("karmor-test", "tmpfs", 0), 0)
    assert (umount.path, umount.sys_args, umount.retval) == (str(target), (0,), 0)

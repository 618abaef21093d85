"""bpf/monitor/file.bpf.c: open, openat, openat2, creat at sys_exit."""

from __future__ import annotations

import ctypes
import errno
import os

import pytest

from karmor_host.kernel.events import EventKind
from tests.kernel.monitor_helpers import NOBODY, in_child, monitor

pytestmark = pytest.mark.kernel

libc = ctypes.CDLL(None, use_errno=True)
SYS_creat, SYS_openat2 = 85, 437


class OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


@pytest.fixture(scope="module")
def mon():
    with monitor("file") as m:
        yield m


@pytest.fixture
def target(tmp_path):
    """A real directory (tmp_path may sit below a symlink) holding one file owned by uid 4242."""
    d = tmp_path.resolve()
    f = d / "target.txt"
    f.write_text("x")
    os.chown(f, 4242, 4242)
    return f


def opens(mon, pid, path=None):
    return mon.wait_for(lambda e: e.kind is EventKind.OPEN and e.tgid == pid and (path is None or e.path == path))


def test_open_by_relative_path_reports_the_absolute_path(mon, target):
    def act():
        os.chdir(target.parent)
        os.close(os.open("target.txt", os.O_RDONLY))

    pid, status = in_child(act)
    assert status == 0
    (ev,) = opens(mon, pid, str(target))
    assert ev.retval >= 0
    assert ev.flags & os.O_ACCMODE == os.O_RDONLY
    assert ev.file_uid == 4242
    assert ev.syscall == "openat"
    assert ev.cwd == str(target.parent)
    assert (ev.uid, ev.ppid) == (0, os.getpid())


def test_open_through_a_symlink_reports_the_file_opened(mon, target):
    link = target.parent / "link-to-target"
    link.symlink_to(target)
    pid, status = in_child(lambda: os.close(os.open(link, os.O_WRONLY | os.O_APPEND)))
    assert status == 0
    (ev,) = opens(mon, pid, str(target))
    assert ev.flags & os.O_ACCMODE == os.O_WRONLY and ev.flags & os.O_APPEND


def test_a_denied_open_keeps_the_path_as_passed(mon, target):
    target.chmod(0o000)

    def act():
        os.chdir(target.parent)
        os.setgid(NOBODY)
        os.setuid(NOBODY)
        try:
            os.open("target.txt", os.O_RDONLY)
        except PermissionError:
            return 0
        return 1

    pid, status = in_child(act)
    assert status == 0
    (ev,) = opens(mon, pid)
    assert ev.retval == -errno.EACCES
    assert ev.path == str(target)  # the relative path joined with the cwd in user space
    assert ev.uid == NOBODY
    assert ev.file_uid == -1  # no struct file: nothing to read the owner from


def test_a_failed_open_relative_to_a_dirfd(mon, target):
    def act():
        dfd = os.open(target.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.open("missing", os.O_RDONLY, dir_fd=dfd)
        except FileNotFoundError:
            return 0
        return 1

    pid, status = in_child(act)
    assert status == 0
    ev = [e for e in opens(mon, pid, str(target.parent / "missing"))][0]
    assert ev.retval == -errno.ENOENT


def test_creat_and_openat2_are_seen(mon, target):
    new = target.parent / "created"

    def act():
        fd = libc.syscall(SYS_creat, str(new).encode(), 0o600)
        assert fd >= 0
        os.close(fd)
        how = OpenHow(os.O_RDONLY, 0, 0)
        fd = libc.syscall(SYS_openat2, -100, str(target).encode(), ctypes.byref(how), ctypes.sizeof(how))
        assert fd >= 0
        os.close(fd)

    pid, status = in_child(act)
    assert status == 0
    creat, openat2 = mon.wait_for(lambda e: e.tgid == pid and e.path in (str(new), str(target)), count=2)
    assert (creat.path, creat.syscall) == (str(new), "creat")
    assert creat.flags & (os.O_CREAT | os.O_WRONLY) == os.O_WRONLY  # O_CREAT is not kept in f_flags
    assert (openat2.path, openat2.syscall) == (str(target), "openat2")


def test_noise_prefixes_are_filtered_in_the_kernel(mon, target):
    def act():
        for path in ("/proc/self/status", "/sys/kernel/btf/vmlinux", "/proc/no/such/file"):
            try:
                os.close(os.open(path, os.O_RDONLY))
            except OSError:
                pass
        os.close(os.open(target, os.O_RDONLY))  # the marker: everything before it has arrived

    pid, status = in_child(act)
    assert status == 0
    opens(mon, pid, str(target))
    seen = mon.drain(lambda e: e.tgid == pid, quiet=0.2)
    assert not [e for e in seen if e.path.startswith(("/proc", "/sys"))]


def test_the_agents_own_opens_are_not_reported(mon, target):
    os.close(os.open(target, os.O_RDONLY))
    pid, _ = in_child(lambda: os.close(os.open(target, os.O_RDONLY)))
    opens(mon, pid, str(target))
    assert not mon.drain(lambda e: e.tgid == os.getpid(), quiet=0.2)

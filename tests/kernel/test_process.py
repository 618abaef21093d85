"""bpf/monitor/process.bpf.c: exec, fork and exit from the scheduler tracepoints."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from karmor_host.kernel.events import EventKind
from tests.kernel.monitor_helpers import NOBODY, monitor, of

pytestmark = pytest.mark.kernel

TRUE = os.path.realpath("/bin/true")  # /usr/bin/true on merged-/usr systems
PYTHON = os.path.realpath(sys.executable)


@pytest.fixture(scope="module", params=["mmap", "libbpf"])
def mon(request):
    with monitor("process", reader=request.param) as m:
        yield m


def test_exec_reports_the_resolved_executable_with_identity_and_argv(mon):
    child = subprocess.Popen(["/bin/true", "--an-arg"])
    child.wait()
    (ev,) = mon.wait_for(lambda e: e.kind is EventKind.EXEC and e.tgid == child.pid)
    assert ev.path == TRUE == "/usr/bin/true"
    assert ev.exe == TRUE
    assert (ev.pid, ev.tgid, ev.ppid) == (child.pid, child.pid, os.getpid())
    assert (ev.uid, ev.gid) == (0, 0)
    assert ev.comm == "true"
    assert ev.argv == ("/bin/true", "--an-arg")
    assert ev.parent_exe == PYTHON
    assert ev.cwd == os.getcwd()
    assert ev.retval == 0
    assert ev.file_uid == 0
    assert ev.ts_ns > 0 and abs(ev.ts_ns / 1e9 - __import__("time").time()) < 10


def test_exec_through_a_symlink_reports_the_target(mon, tmp_path):
    link = tmp_path / "looks-innocent"
    link.symlink_to("/bin/true")
    child = subprocess.Popen([str(link)])
    child.wait()
    (ev,) = mon.wait_for(lambda e: e.kind is EventKind.EXEC and e.tgid == child.pid)
    assert ev.path == TRUE
    assert ev.argv == (str(link),)


def test_exec_via_a_relative_path(mon):
    child = subprocess.Popen(["./true"], cwd=os.path.dirname(TRUE))
    child.wait()
    (ev,) = mon.wait_for(lambda e: e.kind is EventKind.EXEC and e.tgid == child.pid)
    assert ev.path == TRUE
    assert ev.cwd == os.path.dirname(TRUE)
    assert ev.argv == ("./true",)


def test_exec_by_an_unprivileged_user(mon):
    child = subprocess.Popen(["/bin/true"], user=NOBODY, group=NOBODY)
    child.wait()
    (ev,) = mon.wait_for(lambda e: e.kind is EventKind.EXEC and e.tgid == child.pid)
    assert (ev.uid, ev.gid) == (NOBODY, NOBODY)


def test_fork_and_exit_of_a_grandchild(mon):
    # sh forks a child that exits 3; sh itself exits 5. (Our own forks are the agent's: filtered.)
    sh = subprocess.Popen(["/bin/sh", "-c", "(exit 3); exit 5"])
    sh.wait()
    events = mon.collect(lambda e: sh.pid in (e.tgid, e.ppid),
                     until=lambda e: e.kind is EventKind.EXIT and e.tgid == sh.pid)
    forks = [e for e in events if e.kind is EventKind.FORK]
    assert len(forks) == 1
    fork = forks[0]
    assert fork.ppid == sh.pid and fork.tgid != sh.pid and fork.pid == fork.tgid
    assert fork.exe == fork.parent_exe == os.path.realpath("/bin/sh")
    exits = {e.tgid: e for e in events if e.kind is EventKind.EXIT}
    assert exits[fork.tgid].retval == 3
    assert exits[sh.pid].retval == 5
    assert exits[sh.pid].parent_exe == PYTHON


def test_exit_by_signal_is_128_plus_the_signal(mon):
    child = subprocess.Popen(["/bin/sleep", "10"])
    mon.wait_for(lambda e: e.kind is EventKind.EXEC and e.tgid == child.pid)
    child.kill()
    child.wait()
    (ev,) = mon.wait_for(lambda e: e.kind is EventKind.EXIT and e.tgid == child.pid)
    assert ev.retval == 128 + 9


def test_threads_are_not_reported_as_forks(mon):
    code = "import threading; t = threading.Thread(target=lambda: None); t.start(); t.join()"
    child = subprocess.Popen([sys.executable, "-c", code])
    child.wait()
    mon.wait_for(lambda e: e.kind is EventKind.EXIT and e.tgid == child.pid)
    assert not [e for e in mon.drain(of(child.pid)) if e.kind is EventKind.FORK]

"""The monitor object as a whole (bpf/monitor/license.bpf.c and the shared maps): loading,
visibility, the agent filter, drop counting, the ABI check, shutdown."""

from __future__ import annotations

import os
import threading
import time

import pytest

from karmor_host.errors import KernelError
from karmor_host.kernel import abi
from karmor_host.kernel.events import EventKind
from karmor_host.kernel.monitor import CATEGORIES, CATEGORY_PROGRAMS, NETWORK_HOOKS, NETWORK_PROGRAMS, Monitor
from tests.kernel.monitor_helpers import in_child, monitor

pytestmark = pytest.mark.kernel


@pytest.mark.parametrize("network_hooks", NETWORK_HOOKS)
def test_every_category_loads_and_attaches_without_a_libbpf_warning(network_hooks):
    with monitor(*CATEGORIES, network_hooks=network_hooks) as m:
        assert m.load_messages == []
        assert m.unavailable == {}
        expected = [p for cat, progs in CATEGORY_PROGRAMS.items() if cat != "network" for p in progs]
        assert sorted(m.attached) == sorted(expected + list(NETWORK_PROGRAMS[network_hooks]))


@pytest.mark.parametrize("reader", ["mmap", "libbpf"])
def test_a_category_that_is_off_is_not_loaded_and_not_reported(tmp_path, reader):
    target = tmp_path / "f"
    target.write_text("x")
    with monitor("process", reader=reader) as m:
        assert sorted(m.attached) == sorted(CATEGORY_PROGRAMS["process"])
        with pytest.raises(KernelError):
            m._obj.program("karmor_exit_openat").fd  # never loaded into the kernel
        pid, status = in_child(lambda: os.execv("/bin/cat", ["cat", str(target)]))
        assert status == 0
        m.wait_for(lambda e: e.kind is EventKind.EXIT and e.tgid == pid)
        assert {e.kind for e in m.drain(lambda e: e.tgid == pid, quiet=0.2)} <= {EventKind.EXEC}


def test_the_agent_itself_is_not_reported_unless_asked(tmp_path):
    target = tmp_path / "f"
    target.write_text("x")
    with monitor("file") as m:
        os.close(os.open(target, os.O_RDONLY))
        pid, _ = in_child(lambda: os.close(os.open(target, os.O_RDONLY)))
        m.wait_for(lambda e: e.tgid == pid and e.path == str(target.resolve()))
        assert not m.drain(lambda e: e.tgid == os.getpid(), quiet=0.2)
    with monitor("file", ignore_self=False) as m:
        os.close(os.open(target, os.O_RDONLY))
        m.wait_for(lambda e: e.tgid == os.getpid() and e.path == str(target.resolve()))


def test_a_full_ring_buffer_counts_every_lost_record(tmp_path):
    target = tmp_path / "f"
    target.write_text("x")
    opens = 5000

    def flood():
        for _ in range(opens):
            os.close(os.open(target, os.O_RDONLY))

    with monitor("file", ring_size=os.sysconf("SC_PAGE_SIZE")) as m:
        pid, status = in_child(flood)  # nobody reads while it runs: the one-page ring overflows
        assert status == 0
        seen = m.drain(lambda e: e.tgid == pid and e.path == str(target.resolve()), quiet=0.3)
        drops = m.drops()
        assert len(seen) < opens and drops["file"] > 0
        # every open of the flood either arrived or is counted (other processes' opens, which
        # may fill the ring first on a busy machine, only add to the drops)
        assert len(seen) + drops["file"] >= opens
        assert sum(m.drops_per_cpu()["file"]) == drops["file"]
        assert drops["undecodable"] == 0 and drops["missed"] >= 0
        # and once read, the ring carries records again (a few tries: others share the one page)
        for _ in range(10):
            later, _ = in_child(lambda: os.close(os.open(target, os.O_RDONLY)))
            try:
                m.wait_for(lambda e: e.tgid == later and e.path == str(target.resolve()), timeout=1)
                break
            except AssertionError:
                continue
        else:
            pytest.fail("no record arrived after the overflow")
    assert m.drops()["file"] >= drops["file"]  # still answered after close (others kept opening)


def test_an_object_built_from_another_abi_is_refused(monkeypatch):
    monkeypatch.setattr(abi, "ABI_VERSION", abi.ABI_VERSION + 1)
    with pytest.raises(KernelError, match="KARMOR_ABI_VERSION"):
        Monitor(visibility={"process"})


def test_unknown_visibility_and_bad_ring_sizes_are_refused():
    with pytest.raises(KernelError, match="unknown visibility"):
        Monitor(visibility={"proces"})
    with pytest.raises(KernelError, match="power of two"):
        Monitor(visibility={"process"}, ring_size=3 * 4096)
    with pytest.raises(KernelError, match="unknown network_hooks"):
        Monitor(visibility={"network"}, network_hooks="kprobes")


def test_close_waits_for_a_poll_in_another_thread():
    m = Monitor(visibility={"process"})
    errors: list[BaseException] = []
    stop = threading.Event()

    def loop():
        try:
            while not stop.is_set():
                m.poll(20)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    t = threading.Thread(target=loop)
    t.start()
    time.sleep(0.1)
    m.close()
    assert m.poll(10) == []
    stop.set()
    t.join(2)
    assert not t.is_alive() and errors == []


def test_pause_detaches_and_resume_attaches_again():
    with monitor("process") as m:
        m.pause()
        pid, _ = in_child(lambda: os.execv("/bin/true", ["true"]))
        m.resume()
        later, _ = in_child(lambda: os.execv("/bin/true", ["true"]))
        m.wait_for(lambda e: e.kind is EventKind.EXIT and e.tgid == later)
        assert not m.drain(lambda e: e.tgid == pid, quiet=0.2)
        assert sorted(m.attached) == sorted(CATEGORY_PROGRAMS["process"])

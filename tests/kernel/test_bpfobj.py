"""karmor_host/kernel/bpfobj.py against the kernel: maps, batches, pins, errors."""

from __future__ import annotations

import errno
import struct
import subprocess
from pathlib import Path

import pytest

from karmor_host.errors import KernelError
from karmor_host.kernel.bpfobj import BpfObject
from karmor_host.paths import default_bpf_object_dir

pytestmark = pytest.mark.kernel

BPFFS = Path("/sys/fs/bpf")


@pytest.fixture
def obj():
    """The monitor object loaded with a single program, nothing attached."""
    with BpfObject(default_bpf_object_dir() / "monitor.bpf.o") as o:
        for prog in o.programs.values():
            prog.set_autoload(prog.name == "karmor_exec")
        o.map("pending_connect").set_max_entries(64)
        o.load()
        yield o


def key(n: int) -> bytes:
    return struct.pack("<Q", n)


def test_map_elements(obj):
    m = obj.map("pending_connect")
    assert (m.key_size, m.value_size, m.max_entries) == (8, 72, 64)
    value = bytes(range(72))
    m.update(key(1), value)
    assert m.lookup(key(1)) == value
    assert list(m.keys()) == [key(1)]
    assert m.delete(key(1)) is True
    assert m.lookup(key(1)) is None and m.delete(key(1)) is False


def test_batch_operations(obj):
    m = obj.map("pending_connect")
    pairs = [(key(i), bytes([i]) * 72) for i in range(1, 41)]
    m.update_batch(pairs)
    assert sorted(m.lookup_batch(chunk=16)) == sorted(pairs)
    m.delete_batch([k for k, _ in pairs[:30]])
    assert sorted(k for k, _ in m.lookup_batch()) == sorted(k for k, _ in pairs[30:])


def test_per_cpu_values(obj):
    drops = obj.map("drops")
    assert drops.per_cpu
    assert all(v == bytes(8) for v in drops.lookup_per_cpu(struct.pack("<I", 0)))


def test_pin_and_unpin(obj):
    path = BPFFS / "karmor-test-pin"
    assert BPFFS.is_dir()
    m = obj.map("drops")
    m.pin(path)
    try:
        assert path.exists()
    finally:
        m.unpin(path)
    assert not path.exists()


def test_errors_carry_errno_and_text(obj):
    with pytest.raises(KernelError, match="before monitor.bpf.o is loaded"):
        obj.map("events").set_max_entries(4096)
    with pytest.raises(KernelError) as e:
        obj.map("pending_connect").update(b"short", bytes(72))
    assert e.value.errno == errno.EINVAL and "Invalid argument" in e.value.message
    with pytest.raises(KernelError, match="no program"):
        obj.program("nope")


def test_program_counters_from_the_kernel(obj):
    stats = Path("/proc/sys/kernel/bpf_stats_enabled")
    before = stats.read_text().strip()
    link = obj.program("karmor_exec").attach()
    stats.write_text("1")
    try:
        subprocess.run(["/bin/true"], check=True)
        counters = obj.program("karmor_exec").info_counters()
    finally:
        stats.write_text(before)
        link.destroy()
    assert counters["run_cnt"] >= 1 and counters["run_time_ns"] > 0
    assert counters["recursion_misses"] >= 0

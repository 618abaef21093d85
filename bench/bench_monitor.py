"""The monitor's cost and its consumer's throughput, agent off vs on, in one run.

Loops (bench/loops.c, pinned to one CPU) time open+close, fork+exec and getppid with no
BPF at all, with the monitor in its default visibility, with file visibility, and with the
floors design.md measured (one empty sys_exit_openat program). Each configuration stays
loaded while its programs are detached and attached again between short runs, so off and
on alternate every ~0.1 s; the ratio is the median of the pairs' ratios, so neighbours
that come and go (these machines are shared) move both halves alike. The monitor's
consumer (Monitor.poll in a thread pinned to the other CPU) drains as it would in the agent.
Then the consumer alone: events decoded per second from a prefilled ring, per reader,
and a live run where it must keep up with an open loop, with every drop counted.
ratio = measured / baseline (for the loops: 1.05 is 5 % slower). Loops are timed in CPU time
(bench/loops.c says why), so waiting for a CPU a neighbour holds does not count.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from karmor_host.kernel.bpfobj import BpfLink, BpfObject
from karmor_host.kernel.monitor import DEFAULT_BATCH, DEFAULT_VISIBILITY, Monitor
from karmor_host.paths import default_bpf_object_dir

LOOPS_C = Path(__file__).with_name("loops.c")
N = {"open": 50_000, "exec": 300, "getppid": 500_000}  # per run: about 0.1 s each
PAIRS = 30  # off/on pairs per loop and configuration
LOOP_CPU, CONSUMER_CPU = 1, 0
DECODE_EVENTS = 300_000
LIVE_OPENS = 1_000_000
TARGET_EVENTS_PER_S = 250_000
QUIET_PRESSURE, QUIET_WAIT_S = 20.0, 120.0  # % of time some task waited for a CPU; how long to wait
# Monitor settings per configuration, and the loops each one runs
CONFIGS = {
    "default": {"visibility": DEFAULT_VISIBILITY},
    "file": {"visibility": {"file"}},
    "netsys": {"visibility": {"network"}, "network_hooks": "syscalls"},
}
LOOPS = {
    "default": ("open", "exec", "getppid"),
    "file": ("open",),
    "netsys": ("open", "getppid"),
    "floor": ("open", "getppid"),
}


class Consumer(threading.Thread):
    """Monitor.poll in a loop on its own CPU, as the agent's event thread does."""

    def __init__(self, mon: Monitor) -> None:
        super().__init__(daemon=True)
        self.mon = mon
        self.events = 0
        self._halt = threading.Event()

    def run(self) -> None:
        if CONSUMER_CPU in os.sched_getaffinity(0):
            os.sched_setaffinity(0, {CONSUMER_CPU})  # this thread only
        while not self._halt.is_set():
            self.events += len(self.mon.poll(100))

    def stop(self) -> None:
        self._halt.set()
        self.join()


class Loops:
    def __init__(self, workdir: Path) -> None:
        self.binary = workdir / "loops"
        subprocess.run(["gcc", "-O2", "-Wall", "-o", str(self.binary), str(LOOPS_C)], check=True)
        self.file = workdir / "target"
        self.file.write_text("x")
        self.env = {**os.environ, "LOOP_CPU": str(LOOP_CPU)} if os.cpu_count() and os.cpu_count() > 1 else None

    def run(self, mode: str, n: int | None = None) -> tuple[float, float]:
        """(wall, cpu) ns per iteration."""
        args = [str(self.binary), mode, str(n or N[mode])] + ([str(self.file)] if mode == "open" else [])
        out = subprocess.run(args, check=True, capture_output=True, text=True, env=self.env)
        wall, cpu = out.stdout.split()
        return float(wall), float(cpu)

    def ns(self, mode: str, n: int | None = None) -> float:
        """CPU ns per iteration: what the loop itself spent, BPF programs included."""
        return self.run(mode, n)[1]


@contextmanager
def _agent(config: str, drops: dict[str, int]) -> Iterator[Callable[[bool], None]]:
    """One configuration loaded (with a consumer draining as the agent would); yields a
    switch that attaches (True) or detaches (False) its programs, which takes milliseconds,
    so off and on runs can alternate closely."""
    if config == "floor":
        with BpfObject(default_bpf_object_dir() / "bench.bpf.o") as obj:
            obj.load()
            prog = obj.program("karmor_floor_exit_openat")
            links: list[BpfLink] = []

            def switch(on: bool) -> None:
                if on and not links:
                    links.append(prog.attach())
                elif not on and links:
                    links.pop().destroy()

            yield switch
        return
    with Monitor(**CONFIGS[config]) as mon:
        consumer = Consumer(mon)
        consumer.start()
        try:
            yield lambda on: mon.resume() if on else mon.pause()
        finally:
            consumer.stop()
            drops[config] = drops.get(config, 0) + sum(mon.drops().values())


def cpu_pressure() -> float:
    """The share of the last 10 s in which some task waited for a CPU (/proc/pressure/cpu)."""
    try:
        first = Path("/proc/pressure/cpu").read_text().splitlines()[0]
    except (OSError, IndexError):
        return -1.0
    return float(first.split()[1].split("=")[1])


def wait_for_quiet(limit_s: float = QUIET_WAIT_S) -> float:
    """Waits (bounded) until neighbours leave the CPUs mostly free; returns the pressure."""
    deadline = time.monotonic() + limit_s
    while cpu_pressure() > QUIET_PRESSURE and time.monotonic() < deadline:
        time.sleep(2)
    return cpu_pressure()


Table = dict[str, dict]  # configuration -> loop -> value


def _loop_times(loops: Loops) -> tuple[Table, Table, Table, Table, dict[str, int]]:
    """Per configuration and loop: median off time, median on time, median of the per-pair
    ratios and their interquartile spread. Off and on alternate within one loaded
    configuration (the order flips every pair), so both halves of a pair share whatever
    else the machine does at that moment."""
    pairs: dict[str, dict[str, list[tuple[float, float]]]] = {c: {m: [] for m in LOOPS[c]} for c in LOOPS}
    drops: dict[str, int] = {}
    for config, modes in LOOPS.items():
        with _agent(config, drops) as switch:
            for i in range(PAIRS):
                for mode in modes:
                    first = i % 2 == 0  # off first, then on; the next pair the other way round
                    switch(not first)
                    a = loops.ns(mode, N[mode])
                    switch(first)
                    b = loops.ns(mode, N[mode])
                    pairs[config][mode].append((a, b) if first else (b, a))
    base = {c: {m: statistics.median(p[0] for p in v) for m, v in ms.items()} for c, ms in pairs.items()}
    on = {c: {m: statistics.median(p[1] for p in v) for m, v in ms.items()} for c, ms in pairs.items()}
    ratios = {c: {m: [p[1] / p[0] for p in v] for m, v in ms.items()} for c, ms in pairs.items()}
    ratio = {c: {m: statistics.median(r) for m, r in ms.items()} for c, ms in ratios.items()}
    spread = {c: {m: _iqr(r) for m, r in ms.items()} for c, ms in ratios.items()}
    return base, on, ratio, spread, drops


def _iqr(values: list[float]) -> tuple[float, float]:
    q = statistics.quantiles(values, n=4)
    return q[0], q[2]


def _row(name: str, base: float, measured: float, notes: str, ratio: float | None = None) -> dict:
    return {"name": name, "baseline": round(base, 1), "measured": round(measured, 1),
            "ratio": round(measured / base if ratio is None else ratio, 3), "notes": notes}


def _decode_rate(loops: Loops, reader: str, batch: int) -> tuple[float, int, int]:
    """Events per CPU-second one consumer thread decodes from a ring filled beforehand (no
    producer competing), best of three, with the drops of those runs."""
    ring = 256 << 20
    best, count, drops = 0.0, 0, 0
    for _ in range(3):
        with Monitor(visibility={"file"}, ring_size=ring, wakeup_bytes=ring, reader=reader, batch=batch) as mon:
            loops.ns("open", DECODE_EVENTS)  # nobody reads meanwhile
            affinity = os.sched_getaffinity(0)
            if CONSUMER_CPU in affinity:
                os.sched_setaffinity(0, {CONSUMER_CPU})
            decoded = 0
            start = time.thread_time()  # this thread's CPU time: one core's worth of work
            while True:
                got = len(mon.poll(0))
                if not got:
                    break
                decoded += got
            elapsed = time.thread_time() - start
            os.sched_setaffinity(0, affinity)
            drops += sum(mon.drops().values())
        if decoded / elapsed > best:
            best, count = decoded / elapsed, decoded
    return best, count, drops


def _live(loops: Loops) -> tuple[float, float, int, int]:
    """The consumer keeping up with an open loop on the other CPU (default ring and
    wake-up settings): (opens/s produced, events/s decoded, events, drops)."""
    with Monitor(visibility={"file"}) as mon:
        consumer = Consumer(mon)
        consumer.start()
        start = time.perf_counter()
        loops.ns("open", LIVE_OPENS)
        produced_s = time.perf_counter() - start
        time.sleep(0.3)  # the last batch
        consumer.stop()
        events = consumer.events
        drops = mon.drops()
    return LIVE_OPENS / produced_s, events / produced_s, events, sum(drops.values())


def run() -> list[dict]:
    workdir = Path(tempfile.mkdtemp(prefix="karmor-bench-"))
    try:
        loops = Loops(workdir)
        pressure_start = wait_for_quiet()
        base, on, ratio, spread, drops = _loop_times(loops)
        pressure_loops = cpu_pressure()
        rates = {(reader, batch): _decode_rate(loops, reader, batch)
                 for reader, batch in (("libbpf", DEFAULT_BATCH), ("mmap", DEFAULT_BATCH), ("mmap", 1 << 30))}
        produced, decoded, live_events, live_drops = _live(loops)
        pressure_end = cpu_pressure()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    def loop_row(name: str, config: str, mode: str, notes: str) -> dict:
        lo, hi = spread[config][mode]
        return _row(name, base[config][mode], on[config][mode],
                    f"{notes}; ratios of {PAIRS} pairs: middle half {lo:.3f}..{hi:.3f}", ratio[config][mode])

    vis = ",".join(sorted(DEFAULT_VISIBILITY))
    rows = [
        loop_row("open+close, default visibility", "default", "open",
                 f"CPU ns per pair; visibility {vis} (network via cgroup hooks); target <= 1.05; "
                 f"CPU pressure (avg10) {pressure_start:.0f} % at start, {pressure_loops:.0f} % after the loops, "
                 f"{pressure_end:.0f} % at the end"),
        loop_row("fork+exec /bin/true, default visibility", "default", "exec",
                 f"CPU ns per exec (with the child); target <= 1.03; drops {drops.get('default', 0)}"),
        loop_row("getppid, default visibility", "default", "getppid",
                 "CPU ns per call: no syscall tracepoint attached, so no slow path"),
        loop_row("open+close, file visibility", "file", "open",
                 f"every open resolved, sent and decoded; drops {drops.get('file', 0)}"),
        loop_row("open+close, floor: empty sys_exit_openat", "floor", "open",
                 "one program that does nothing (design.md: +15 %)"),
        loop_row("getppid, floor: empty sys_exit_openat", "floor", "getppid",
                 "any syscall tracepoint slows every syscall (design.md: +26 %)"),
        loop_row("open+close, network_hooks=syscalls", "netsys", "open",
                 "network via sys_exit programs instead of cgroup hooks"),
        loop_row("getppid, network_hooks=syscalls", "netsys", "getppid",
                 "the same slow path, paid by every process"),
    ]
    lib_rate, lib_n, lib_drops = rates[("libbpf", DEFAULT_BATCH)]
    mm_rate, mm_n, mm_drops = rates[("mmap", DEFAULT_BATCH)]
    big_rate, big_n, _ = rates[("mmap", 1 << 30)]
    rows.append(_row("consumer events/s: mmap reader vs libbpf callbacks", lib_rate, mm_rate,
                     f"events per CPU-second of one thread draining a prefilled ring ({mm_n:,} records, "
                     f"mostly OPEN) into Events, {DEFAULT_BATCH} per poll; best of 3; drops {mm_drops + lib_drops}"))
    rows.append(_row("consumer events/s: 512 per poll vs all in one", big_rate, mm_rate,
                     f"mmap reader; one poll() returning all {big_n:,} Events keeps the cyclic GC busy"))
    rows.append(_row("consumer events/s vs target", TARGET_EVENTS_PER_S, max(mm_rate, lib_rate),
                     f"target >= {TARGET_EVENTS_PER_S:,}/s on one core with every drop counted"))
    rows.append(_row("live: events/s decoded vs opens/s produced", produced, decoded,
                     f"{LIVE_OPENS:,} opens on CPU {LOOP_CPU}, consumer on CPU {CONSUMER_CPU}: "
                     f"{live_events:,} events, {live_drops:,} counted drops (other processes' opens count too)"))
    return rows


if __name__ == "__main__":
    from bench.__main__ import print_table

    print_table(run())

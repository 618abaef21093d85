"""The system monitor: bpf/.output/monitor.bpf.o loaded and attached -> a stream of Events.

Only the programs of the requested visibility categories are loaded and attached (the
others are switched off with set_autoload, so an unneeded syscall tracepoint costs
nothing); a category whose tracepoint this kernel lacks is reported in `unavailable`.
The agent's own process is filtered in the kernel, as are opens under the noise prefixes.

    with Monitor(visibility={"process", "network"}) as mon:
        while running:
            for event in mon.poll(100):
                ...
        print(mon.drops())
"""

from __future__ import annotations

import errno
import os
import struct
import threading
import time
from collections.abc import Iterable
from pathlib import Path

from karmor_host import log
from karmor_host.errors import KernelError
from karmor_host.kernel import abi, netinfo, tracefs
from karmor_host.kernel import libbpf as L
from karmor_host.kernel.bpfobj import BPF_NOEXIST, BpfLink, BpfObject
from karmor_host.kernel.cgroup import cgroup2_root
from karmor_host.kernel.decode import Decoder
from karmor_host.kernel.events import Event, EventKind
from karmor_host.kernel.proctable import ProcTable
from karmor_host.kernel.ringbuf import RingReader, open_reader
from karmor_host.paths import default_bpf_object_dir

_log = log.get("monitor")

OBJECT_NAME = "monitor.bpf.o"

# The network category has two implementations (network_hooks=): "cgroup" socket hooks
# plus TCP state changes fire only on socket operations; "syscalls" exit programs see every
# family and every failure but, like any syscall tracepoint, slow every syscall down.
NETWORK_PROGRAMS: dict[str, tuple[str, ...]] = {
    "cgroup": (
        "karmor_sock_create", "karmor_connect4", "karmor_connect6", "karmor_post_bind4",
        "karmor_post_bind6", "karmor_tcp_connect_done", "karmor_tcp_accept",
    ),
    "syscalls": (
        "karmor_exit_socket", "karmor_exit_connect", "karmor_exit_bind",
        "karmor_exit_accept", "karmor_exit_accept4", "karmor_tcp_connect_done",
    ),
}
NETWORK_HOOKS = tuple(NETWORK_PROGRAMS)

# Every program in the object belongs to exactly one category (a unit test holds us to it).
CATEGORY_PROGRAMS: dict[str, tuple[str, ...]] = {
    "process": ("karmor_exec", "karmor_fork", "karmor_exit"),
    "file": ("karmor_exit_open", "karmor_exit_openat", "karmor_exit_openat2", "karmor_exit_creat"),
    "network": tuple(dict.fromkeys(NETWORK_PROGRAMS["cgroup"] + NETWORK_PROGRAMS["syscalls"])),
    "capabilities": ("karmor_cap_capable",),
    "syscall": (
        "karmor_exit_unlink", "karmor_exit_unlinkat", "karmor_exit_rmdir", "karmor_exit_chown",
        "karmor_exit_fchownat", "karmor_exit_setuid", "karmor_exit_setgid", "karmor_exit_ptrace",
        "karmor_exit_mount", "karmor_exit_umount2",
    ),
}
CATEGORIES = tuple(CATEGORY_PROGRAMS)
# The cheap ones: scheduler, socket-state and capability tracepoints fire only on their own
# event, while any syscalls/* tracepoint puts every syscall of every process on the slow path.
DEFAULT_VISIBILITY = frozenset({"process", "network", "capabilities"})
DEFAULT_NOISE = ("/proc", "/sys")
DEFAULT_RING_SIZE = 8 << 20
# Events per poll(): small batches keep the young objects young (one big list of Events
# makes the cyclic GC rescan them); docs/performance.md has the measurement.
DEFAULT_BATCH = 512
# Why a tracepoint can be missing, for the message
_TRACEPOINT_SINCE = {("capability", "cap_capable"): "Linux 6.14"}
IPPROTO_TCP = 6


def _kernel_dev(st_dev: int) -> int:
    """A stat() st_dev in the kernel's internal dev_t encoding (major << 20 | minor)."""
    return (os.major(st_dev) << 20) | os.minor(st_dev)


def build_config(self_tgid: int, wakeup_bytes: int, noise_prefixes: Iterable[str]) -> abi.Config:
    """The karmor_cfg .rodata value. A prefix becomes a (dev, ino) noise directory for
    resolved paths, and a byte prefix for paths as passed (failed opens)."""
    cfg = abi.Config(self_tgid=self_tgid, wakeup_bytes=wakeup_bytes)
    prefixes = []
    for p in noise_prefixes:
        p = "/" + p.strip("/") if p.strip("/") else ""
        if p and p not in prefixes:
            prefixes.append(p)
    if len(prefixes) > abi.NOISE_MAX:
        raise KernelError(f"at most {abi.NOISE_MAX} noise prefixes, got {len(prefixes)}")
    dirs = 0
    for p in prefixes:
        raw = p.encode()
        if len(raw) >= abi.NOISE_STR:
            raise KernelError(f"noise prefix {p!r} is longer than {abi.NOISE_STR - 1} bytes")
        cfg.noise_str[cfg.noise_strs].value = raw
        cfg.noise_str_len[cfg.noise_strs] = len(raw)
        cfg.noise_strs += 1
        try:
            st = os.stat(p)
        except OSError:
            continue  # nothing there now: only the byte prefix applies
        cfg.noise_dir[dirs].dev = _kernel_dev(st.st_dev)
        cfg.noise_dir[dirs].ino = st.st_ino
        dirs += 1
    cfg.noise_dirs = dirs
    return cfg


def _listener_header(tgid: int, ppid: int, proc_root: Path = Path("/proc")) -> abi.Hdr:
    """The identity the kernel would have saved at listen() for a process already running."""
    base = proc_root / str(tgid)
    uid = gid = 0
    try:
        for line in (base / "status").read_text().splitlines():
            if line.startswith("Uid:"):
                uid = int(line.split()[1])
            elif line.startswith("Gid:"):
                gid = int(line.split()[1])
        comm = (base / "comm").read_bytes().strip()[:15]
    except (OSError, ValueError, IndexError):
        comm = b""
    return abi.Hdr(kind=EventKind.ACCEPT, pid=tgid, tgid=tgid, ppid=ppid, uid=uid, gid=gid, comm=comm)


class Monitor:
    """Loads and attaches the monitor; poll() returns decoded Events. Thread-safe close()."""

    def __init__(
        self,
        object_dir: Path | None = None,
        visibility: Iterable[str] = DEFAULT_VISIBILITY,
        ring_size: int = DEFAULT_RING_SIZE,
        noise_prefixes: Iterable[str] = DEFAULT_NOISE,
        *,
        reader: str = "auto",
        wakeup_bytes: int | None = None,
        ignore_self: bool = True,
        network_hooks: str = "cgroup",
        batch: int = DEFAULT_BATCH,
    ) -> None:
        self.visibility = frozenset(visibility)
        if network_hooks not in NETWORK_HOOKS:
            raise KernelError(f"unknown network_hooks {network_hooks!r} (choose from {', '.join(NETWORK_HOOKS)})")
        self.network_hooks = network_hooks
        unknown = self.visibility - set(CATEGORIES)
        if unknown:
            raise KernelError(f"unknown visibility {sorted(unknown)} (choose from {', '.join(CATEGORIES)})")
        page = L.page_size()
        if ring_size < page or ring_size & (ring_size - 1):
            raise KernelError(f"ring size {ring_size} must be a power of two of at least {page}")
        self.ring_size = ring_size
        self.batch = batch
        # Wake the reader only when a quarter of the ring waits; poll()'s timeout bounds latency.
        self.wakeup_bytes = ring_size // 4 if wakeup_bytes is None else wakeup_bytes
        self.unavailable: dict[str, str] = {}
        self.attached: list[str] = []
        self.load_messages: list[str] = []
        self._lock = threading.Lock()
        self._closed = False

        tracefs.ensure_mounted()
        path = (object_dir or default_bpf_object_dir()) / OBJECT_NAME
        self._obj = BpfObject(path)
        try:
            abi.verify(self._obj.btf(), int.from_bytes(self._obj.get_rodata("karmor_abi_version"), "little"))
            self._select_programs()
            self._obj.map("events").set_max_entries(ring_size)
            cfg = build_config(os.getpid() if ignore_self else 0, self.wakeup_bytes, noise_prefixes)
            self._obj.set_rodata("karmor_cfg", bytes(cfg))
            with L.capture_messages(L.LIBBPF_WARN) as messages:
                self._obj.load()
                self._links: list[BpfLink] = []
                self._attach()
            self.load_messages = [text for _, text in messages]
            self.attached = [link.what for link in self._links]
            self._drops_map = self._obj.map("drops")
            self.procs = ProcTable()
            self.procs.seed()
            self.seeded_listeners = 0
            if "network" in self.visibility and network_hooks == "cgroup":
                self.seeded_listeners = self._seed_listeners(ignore_self)
            self._decoder = Decoder(self.procs)
            self._reader: RingReader = open_reader(reader, self._obj.map("events").fd, ring_size)
        except BaseException:
            self._obj.close()
            raise
        _log.info("monitor_attached", visibility=sorted(self.visibility), programs=len(self.attached),
                  reader=self._reader.name, ring_size=ring_size, unavailable=self.unavailable or None)

    def _select_programs(self) -> None:
        programs = self._obj.programs
        listed = {name for names in CATEGORY_PROGRAMS.values() for name in names}
        stray = set(programs) - listed
        if stray:
            raise KernelError(f"{OBJECT_NAME} has programs in no visibility category: {sorted(stray)}")
        for category, names in CATEGORY_PROGRAMS.items():
            missing = []
            for name in names:
                prog = self._obj.program(name)
                wanted = category in self.visibility
                if category == "network" and name not in NETWORK_PROGRAMS[self.network_hooks]:
                    wanted = False
                if wanted and prog.section.startswith("tracepoint/"):
                    _, tp_cat, tp_name = prog.section.split("/", 2)
                    if not tracefs.has_tracepoint(tp_cat, tp_name):
                        since = _TRACEPOINT_SINCE.get((tp_cat, tp_name))
                        missing.append(f"{tp_cat}/{tp_name}" + (f" (added in {since})" if since else ""))
                        wanted = False
                prog.set_autoload(wanted)
            if missing:
                self.unavailable[category] = "tracepoint not in this kernel: " + ", ".join(missing)
                _log.warning("monitor_category_unavailable", category=category, reason=self.unavailable[category])

    def _seed_listeners(self, ignore_self: bool) -> int:
        """In cgroup mode an ACCEPT goes to whoever put the port into LISTEN, which the
        kernel side only sees happen after attaching: ports that were already listening
        are found through sock_diag and their owners through /proc (once, at start)."""
        try:
            listening = netinfo.sockets(IPPROTO_TCP, 1 << netinfo.TCP_LISTEN)
        except OSError as exc:  # accepts on those ports then name no process: worth a warning, not a stop
            _log.warning("listeners_not_seeded", error=str(exc))
            return 0
        owners = netinfo.socket_holders(s.inode for s in listening)
        listeners = self._obj.map("listeners")
        seeded = 0
        for sock in listening:
            tgid = owners.get(sock.inode)
            if tgid is None or (ignore_self and tgid == os.getpid()):
                continue
            key = struct.pack("<HH", sock.family, sock.local_port)
            try:
                listeners.update(key, bytes(_listener_header(tgid, self.procs.get(tgid).ppid)), BPF_NOEXIST)
            except KernelError as e:
                if e.errno != errno.EEXIST:  # EEXIST: the tracepoint saw a fresher listen()
                    raise
                continue
            seeded += 1
        return seeded

    def _attach(self) -> None:
        cgroup_dir = None
        for prog in self._obj.programs.values():
            if not prog.autoload:
                continue
            if prog.section.startswith("cgroup/"):
                cgroup_dir = cgroup_dir or cgroup2_root()
                self._links.append(prog.attach_cgroup(cgroup_dir))
            else:
                self._links.append(prog.attach())

    def pause(self) -> None:
        """Detaches the programs (no new records, no cost to anyone); maps, the ring, the
        process table and the counters stay. resume() attaches them again."""
        with self._lock:
            for link in self._links:
                link.destroy()
            self._links.clear()

    def resume(self) -> None:
        with self._lock:
            if not self._links and not self._closed:
                self._attach()

    def poll(self, timeout_ms: int = 100) -> list[Event]:
        """Up to `batch` events. Returns at once when records wait; otherwise waits up to
        timeout_ms for the ring to fill to the wake-up mark, then returns what is there."""
        with self._lock:
            if self._closed:
                return []
            self._reader.wait(timeout_ms)
            self._decoder.wall_offset_ns = time.time_ns() - time.clock_gettime_ns(time.CLOCK_BOOTTIME)
            self._reader.drain(self._decoder.handle, self.batch)
            return self._decoder.take()

    def drops_per_cpu(self) -> dict[str, list[int]]:
        """Records the kernel could not put in the ring buffer, per category and CPU."""
        out = {}
        for cat in abi.Category:
            values = self._drops_map.lookup_per_cpu(int(cat).to_bytes(4, "little"))
            out[cat.name.lower()] = [int.from_bytes(v, "little") for v in values]
        return out

    def drops(self) -> dict[str, int]:
        """Every record lost, by category; `undecodable` counts records that did not parse,
        `missed` the runs the kernel skipped because another BPF program was running on
        that CPU (e.g. a softirq's state change while a syscall's program ran)."""
        with self._lock:
            if self._closed:
                return dict(self._final_drops)
            out = {cat: sum(per_cpu) for cat, per_cpu in self.drops_per_cpu().items()}
            out["undecodable"] = self._decoder.undecodable
            out["missed"] = sum(
                self._obj.program(name).info_counters().get("recursion_misses", 0) for name in self.attached
            )
            return out

    def stats(self) -> dict[str, int | str]:
        d = self._decoder
        return {"reader": self._reader.name, "decoded": d.decoded, "undecodable": d.undecodable,
                "truncated": d.truncated, "processes": len(self.procs), "proc_misses": self.procs.misses}

    def close(self) -> None:
        """Detaches everything; waits for a poll() in progress on another thread."""
        if self._closed:
            return
        final = self.drops()
        with self._lock:
            if self._closed:
                return
            self._final_drops = final
            self._closed = True
            self._reader.close()
            self._obj.close()
        _log.info("monitor_closed", drops=final)

    def __enter__(self) -> Monitor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

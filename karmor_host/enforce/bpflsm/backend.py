"""BPF-LSM in the kernel: load or adopt lsm.bpf.o, pin it, switch rule banks, read decisions,
clean up. Everything here goes through karmor_host/kernel (libbpf over ctypes).

Start (LsmBackend.__init__), with P = <bpffs>/karmor/lsm:
- P holds the state of an earlier run made by this very object (same object_id): adopt it.
  libbpf reuses the pinned maps, no program is loaded, the pinned links stay attached: the
  rules of the earlier run keep being enforced until the first apply switches banks.
- otherwise (first start, new build, or nothing pinned): load the object with fresh maps and
  attach its programs at once (with no rules yet, so they decide nothing); whatever is pinned
  in P keeps enforcing beside them. The first apply fills the new maps, then pin() pins them
  in P-new (bpffs reserves dots), removes P (its links detach now) and renames P-new (bpffs reserves dots) to P. No moment without
  enforcement, and never two rule sets that disagree for longer than that swap.
The agent exempts itself at once (karmor_lsm_state.agent_tgid + start time), in the old
pinned state too: a newer agent under programs an older one left must still read its policies.

Swap (LsmBackend.swap): write the bank that is not live, flip karmor_lsm_state.bank (one
4-byte store the programs read once per decision), wait for the programs that may still read
the old bank (an update of the map-of-maps lsm_barrier returns after an RCU grace period),
then clear the old bank.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import threading
import time
from pathlib import Path

from karmor_host import log
from karmor_host.enforce.bpflsm import abi
from karmor_host.enforce.bpflsm import events as lsm_events
from karmor_host.enforce.bpflsm.plan import BankPlan, cfg_value, encode
from karmor_host.errors import KernelError
from karmor_host.kernel import libbpf as L
from karmor_host.kernel.bpfobj import BpfLink, BpfMap, BpfObject
from karmor_host.kernel.ringbuf import RingReader, open_reader

_log = log.get("karmor.bpflsm")

OBJECT_NAME = "lsm.bpf.o"
RULE_MAPS = ("lsm_files", "lsm_dirs", "lsm_codes", "lsm_srcs", "lsm_srcdirs")
LINK_PREFIX = "link_"
_ZERO = (0).to_bytes(4, "little")
_USER_HZ = 100  # clock ticks of /proc/<pid>/stat on x86-64 (the programs divide by 10^7 ns)

for _name, _res, _args in [
    ("bpf_map__set_pin_path", L.c_int, (L.c_void_p, L.c_char_p)),
    ("bpf_obj_get", L.c_int, (L.c_char_p,)),
    ("bpf_map_lookup_elem", L.c_int, (L.c_int, L.c_void_p, L.c_void_p)),
    ("bpf_map_update_elem", L.c_int, (L.c_int, L.c_void_p, L.c_void_p, L.c_uint64)),
    ("bpf_obj_get_info_by_fd", L.c_int, (L.c_int, L.c_void_p, ctypes.POINTER(L.c_uint32))),
]:
    _fn = getattr(L.lib, _name)
    _fn.restype, _fn.argtypes = _res, list(_args)


class _MapInfo(ctypes.Structure):
    """The head of struct bpf_map_info (the kernel fills what fits)."""

    _fields_ = [
        ("type", L.c_uint32),
        ("id", L.c_uint32),
        ("key_size", L.c_uint32),
        ("value_size", L.c_uint32),
        ("max_entries", L.c_uint32),
        ("map_flags", L.c_uint32),
        ("name", ctypes.c_char * 16),
    ]


def object_id(path: Path) -> int:
    """Identity of a build of lsm.bpf.o: maps made by another build are never adopted."""
    digest = hashlib.blake2b(Path(path).read_bytes(), digest_size=8).digest()
    return int.from_bytes(digest, "little") or 1


def start_ticks(pid: int | None = None) -> int:
    """A process's start time in clock ticks since boot (/proc/<pid>/stat field 22)."""
    stat = Path(f"/proc/{pid or 'self'}/stat").read_bytes()
    return int(stat[stat.rindex(b")") + 2 :].split()[19])


def kernel_dev(st_dev: int) -> int:
    """stat()'s st_dev in the kernel's own encoding (major << 20 | minor)."""
    return (os.major(st_dev) << 20) | os.minor(st_dev)


def _map_ptr(m: BpfMap) -> int:
    return m._ptr  # noqa: SLF001 - the pin path setter is not wrapped by kernel/bpfobj.py


class _PinnedState:
    """The lsm_state map an earlier run pinned, read and written as raw bytes: only its first
    16 bytes (the exempt agent) are the same in every ABI version."""

    def __init__(self, path: Path) -> None:
        self.fd = L.lib.bpf_obj_get(str(path).encode())
        if self.fd < 0:
            raise KernelError(f"cannot open pinned {path}: {L.strerror(self.fd)}", -self.fd)
        info = _MapInfo()
        size = L.c_uint32(ctypes.sizeof(info))
        L.check(L.lib.bpf_obj_get_info_by_fd(self.fd, ctypes.byref(info), ctypes.byref(size)), f"info of {path}")
        self.value_size = info.value_size

    def read(self) -> bytes:
        buf = ctypes.create_string_buffer(self.value_size)
        L.check(L.lib.bpf_map_lookup_elem(self.fd, _ZERO, buf), "lookup pinned lsm_state")
        return buf.raw

    def set_agent(self, tgid: int, ticks: int) -> None:
        raw = bytearray(self.read())
        raw[0:16] = bytes(abi.State(agent_tgid=tgid, agent_start=ticks))[0:16]
        L.check(L.lib.bpf_map_update_elem(self.fd, _ZERO, bytes(raw), 0), "update pinned lsm_state")

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class LsmBackend:
    """lsm.bpf.o, loaded (or adopted), with its maps and links; one per agent."""

    def __init__(self, pin_dir: Path, object_path: Path, *, reader: str = "auto", exempt_self: bool = True) -> None:
        self.pin_dir = Path(pin_dir)
        self.object_path = Path(object_path)
        self.object_id = object_id(self.object_path)
        self.pinned = False
        self.mode = ""  # "adopted" | "loaded"
        self.load_seconds = 0.0
        self.decoded = 0
        self.undecodable = 0
        self._exempt = exempt_self
        self._lock = threading.Lock()
        self._closed = False
        self._old: _PinnedState | None = None
        self._carried: list[lsm_events.Record] = []  # read from a replaced build's ring
        t0 = time.monotonic()
        self.obj = BpfObject(self.object_path)
        try:
            abi.verify(self.obj.btf(), int.from_bytes(self.obj.get_rodata("karmor_lsm_abi_version"), "little"))
            previous = self._previous_state()
            if previous is not None and previous.object_id == self.object_id and self._pins_complete():
                self._adopt()
            else:
                self._load_fresh()
            self.maps = {name: self.obj.map(name) for name in (*RULE_MAPS, "lsm_state", "lsm_cfg", "lsm_resolve",
                                                                "lsm_events", "lsm_drops", "lsm_barrier",
                                                                "lsm_barrier_in")}
            if self.mode == "loaded":
                self._write_state(abi.State(bank=0, generation=0, object_id=self.object_id))
                self._attach()
            if exempt_self:
                self.set_agent(os.getpid(), start_ticks())
            events = self.maps["lsm_events"]
            self._reader: RingReader = open_reader(reader, events.fd, events.max_entries)
        except BaseException:
            self.obj.close()
            if self._old is not None:
                self._old.close()
            raise
        self.load_seconds = time.monotonic() - t0
        _log.info("bpflsm_loaded", mode=self.mode, pin_dir=str(self.pin_dir), seconds=round(self.load_seconds, 3),
                  generation=self.state().generation)

    # --- start: adopt or load ---------------------------------------------------------

    def _previous_state(self) -> abi.State | None:
        path = self.pin_dir / "lsm_state"
        if not path.exists():
            return None
        try:
            self._old = _PinnedState(path)
            raw = self._old.read()
        except KernelError as exc:
            _log.warning("bpflsm_pinned_state_unreadable", path=str(path), error=exc.message)
            return None
        if len(raw) != ctypes.sizeof(abi.State):
            return abi.State.from_buffer_copy(raw[:16] + bytes(ctypes.sizeof(abi.State) - 16))
        return abi.State.from_buffer_copy(raw)

    def _pinned_maps(self) -> list[BpfMap]:
        return [m for name, m in self.obj.maps.items() if "." not in name and name != "lsm_scratch"]

    def _pins_complete(self) -> bool:
        names = {p.name for p in self.pin_dir.iterdir()}
        missing = [m.name for m in self._pinned_maps() if m.name not in names]
        links = [n for n in names if n.startswith(LINK_PREFIX)]
        if missing or len(links) != len(self.obj.programs):
            _log.warning("bpflsm_pins_incomplete", missing_maps=missing, links=len(links))
            return False
        return True

    def _adopt(self) -> None:
        for m in self._pinned_maps():
            L.check(L.lib.bpf_map__set_pin_path(_map_ptr(m), str(self.pin_dir / m.name).encode()),
                    f"pin path of {m.name}")
        for prog in self.obj.programs.values():
            prog.set_autoload(False)  # the pinned links keep running the same programs
        self.obj.load()
        self.mode = "adopted"
        self.pinned = True

    def _load_fresh(self) -> None:
        with L.capture_messages(L.LIBBPF_WARN) as messages:
            try:
                self.obj.load()
            except KernelError as exc:
                detail = messages[0][1][-2000:] if messages else ""
                raise KernelError(f"{exc.message}" + (f": {detail}" if detail else ""), exc.errno) from None
        self.mode = "loaded"

    def _attach(self) -> None:
        self.links: dict[str, BpfLink] = {}
        for prog in self.obj.programs.values():
            self.links[prog.name] = prog.attach()

    def pin(self) -> None:
        """Pin this object's maps and links in place of whatever was pinned (see module doc)."""
        if self.pinned:
            return
        staging = self.pin_dir.with_name(self.pin_dir.name + "-new")
        remove_pins(staging)
        staging.mkdir(parents=True, mode=0o700)
        for m in self._pinned_maps():
            m.pin(staging / m.name)
        for name, link in self.links.items():
            link.pin(staging / f"{LINK_PREFIX}{name}")
        self._drain_previous_ring()
        old = remove_pins(self.pin_dir)  # the earlier run's links detach here; ours run already
        os.rename(staging, self.pin_dir)
        self.pinned = True
        if self._old is not None:
            self._old.close()
            self._old = None
        _log.info("bpflsm_pinned", pin_dir=str(self.pin_dir), replaced=len(old))

    def _drain_previous_ring(self) -> None:
        """Decisions the replaced build left in its pinned ring (made while no agent ran, or
        before our first apply): read them before the ring goes. A record this build cannot
        decode is counted in `undecodable`."""
        path = self.pin_dir / "lsm_events"
        if not path.exists():
            return
        fd = L.lib.bpf_obj_get(str(path).encode())
        if fd < 0:
            return
        try:
            info = _MapInfo()
            size = L.c_uint32(ctypes.sizeof(info))
            if L.lib.bpf_obj_get_info_by_fd(fd, ctypes.byref(info), ctypes.byref(size)) < 0:
                return
            reader = open_reader("auto", fd, info.max_entries)
            try:
                reader.drain(self._handler(self._carried))
            finally:
                reader.close()
        except KernelError as exc:
            _log.warning("bpflsm_previous_ring_unread", error=exc.message)
        finally:
            os.close(fd)
        if self._carried:
            _log.info("bpflsm_previous_ring_read", decisions=len(self._carried))

    def _handler(self, out: list):
        wall = time.time_ns() - time.clock_gettime_ns(time.CLOCK_BOOTTIME)

        def handle(buf: memoryview, off: int, size: int) -> None:
            try:
                out.append(lsm_events.decode(buf, off, size, wall))
            except (ValueError, KeyError, IndexError, ctypes.ArgumentError):
                self.undecodable += 1

        return handle

    # --- state ------------------------------------------------------------------------

    def state(self) -> abi.State:
        return abi.State.from_buffer_copy(self.maps["lsm_state"].lookup(_ZERO))

    def _write_state(self, st: abi.State) -> None:
        self.maps["lsm_state"].update(_ZERO, bytes(st))

    def set_agent(self, tgid: int, ticks: int) -> None:
        """Exempt process `tgid` (started at `ticks`) from every rule: the agent itself."""
        st = self.state()
        st.agent_tgid, st.agent_start = tgid, ticks
        self._write_state(st)
        if self._old is not None:
            try:
                self._old.set_agent(tgid, ticks)
            except KernelError as exc:
                _log.warning("bpflsm_old_state_not_updated", error=exc.message)

    @property
    def generation(self) -> int:
        return self.state().generation

    # --- rules ------------------------------------------------------------------------

    def barrier(self) -> None:
        """Returns once every BPF program that was running has finished (RCU grace period)."""
        inner = self.maps["lsm_barrier_in"].fd
        self.maps["lsm_barrier"].update(_ZERO, inner.to_bytes(4, "little"))

    def clear_bank(self, bank: int) -> int:
        n = 0
        for name in RULE_MAPS:
            m = self.maps[name]
            keys = [k for k in m.keys() if k[0] == bank]
            for i in range(0, len(keys), 1024):
                m.delete_batch(keys[i : i + 1024])
            n += len(keys)
        return n

    def swap(self, bp: BankPlan, generation: int) -> dict[str, float]:
        """Makes `bp` the live rule set, atomically (see module doc). On failure the live bank
        is untouched and the partial new one is cleared."""
        t0 = time.monotonic()
        st = self.state()
        live = st.bank & 1
        new = 1 - live
        self.barrier()  # nobody reads the bank we are about to fill (it was live two swaps ago)
        self.clear_bank(new)
        try:
            for name, pairs in encode(bp, new).items():
                for i in range(0, len(pairs), 1024):
                    self.maps[name].update_batch(pairs[i : i + 1024])
            self.maps["lsm_cfg"].update(new.to_bytes(4, "little"), cfg_value(bp, generation))
        except KernelError:
            self.clear_bank(new)
            raise
        t_fill = time.monotonic()
        st.bank, st.generation = new, generation
        self._write_state(st)  # the switch
        t_switch = time.monotonic()
        self.barrier()
        cleared = self.clear_bank(live)
        t1 = time.monotonic()
        _log.debug("bpflsm_swapped", bank=new, generation=generation, entries=bp.entries(), cleared=cleared)
        return {"fill": t_fill - t0, "switch": t_switch - t_fill, "drain_and_clear": t1 - t_switch, "total": t1 - t0}

    def resolve(self, directory: str) -> tuple[int, int] | None:
        """(s_dev, i_ino) of a directory as the kernel's file_open sees it: the agent's thread
        opens it and the program records what it saw (lsm_resolve). None if it does not exist."""
        m = self.maps["lsm_resolve"]
        m.update(_ZERO, bytes(abi.Resolve(tid=threading.get_native_id())))
        try:
            fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            m.update(_ZERO, bytes(abi.Resolve()))
            return None
        try:
            seen = abi.Resolve.from_buffer_copy(m.lookup(_ZERO))
            if seen.done:
                return seen.dev, seen.ino
            st = os.fstat(fd)
        finally:
            os.close(fd)
            m.update(_ZERO, bytes(abi.Resolve()))
        # programs not attached yet or the agent not exempt: stat's view (right on most file systems)
        _log.warning("bpflsm_resolve_by_stat", directory=directory)
        return kernel_dev(st.st_dev), st.st_ino

    # --- decisions ----------------------------------------------------------------------

    def read(self, timeout_ms: int) -> list[lsm_events.Record]:
        with self._lock:
            if self._closed:
                return []
            out, self._carried = self._carried, []
            if not out:
                self._reader.wait(timeout_ms)
            self._reader.drain(self._handler(out))
            self.decoded += len(out)
            return out

    def drops(self) -> int:
        """Decisions the kernel could not put in the ring buffer."""
        return sum(int.from_bytes(v, "little") for v in self.maps["lsm_drops"].lookup_per_cpu(_ZERO))

    # --- end --------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Release our handles; what is pinned keeps enforcing. The exemption ends with us."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                if self._exempt and self.state().agent_tgid == os.getpid():
                    st = self.state()
                    st.agent_tgid, st.agent_start = 0, 0
                    self._write_state(st)
            except KernelError as exc:
                _log.warning("bpflsm_exemption_not_cleared", error=exc.message)
            self._reader.close()
            self.obj.close()  # links we did not pin detach here
            if self._old is not None:
                self._old.close()
                self._old = None

    def remove(self) -> list[str]:
        """Unpin everything and close: the programs detach, the maps go."""
        removed = remove_pins(self.pin_dir)
        self.pinned = False
        self.close()
        return removed


def exempt_pinned(state_path: Path, tgid: int) -> None:
    """Exempt process `tgid` in a pinned lsm_state (whatever build pinned it)."""
    st = _PinnedState(state_path)
    try:
        st.set_agent(tgid, start_ticks(tgid))
    finally:
        st.close()


def remove_pins(pin_dir: Path) -> list[str]:
    """Unpins everything under pin_dir (links detach unless a process still holds them)."""
    if not pin_dir.exists():
        return []
    removed = sorted(p.name for p in pin_dir.iterdir())
    shutil.rmtree(pin_dir)
    return removed

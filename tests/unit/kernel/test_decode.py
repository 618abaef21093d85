"""decode.py: records built byte by byte as the BPF side writes them -> Events."""

from __future__ import annotations

import ctypes
import socket

import pytest

from karmor_host.kernel import abi
from karmor_host.kernel.decode import Decoder, exit_status
from karmor_host.kernel.events import EventKind
from karmor_host.kernel.proctable import ProcTable


def walked(path: str) -> bytes:
    """A path as the kernel walk writes it: components leaf first, each NUL-terminated."""
    parts = [p for p in path.split("/") if p]
    return b"".join(p.encode() + b"\0" for p in reversed(parts))


def record(kind, body, *, strings=None, walked_slots=(), flags=0, pid=100, tgid=100, ppid=1,
           retval=0, syscall=abi.Syscall.NONE, comm=b"prog"):
    strings = strings or {}
    hdr = abi.Hdr(ts_ns=1_000, retval=retval, kind=kind, flags=flags, pid=pid, tgid=tgid, ppid=ppid,
                  uid=1000, gid=1000, comm=comm, syscall=syscall)
    payload = b""
    for slot in abi.Str:
        raw = strings.get(slot, b"")
        hdr.str_len[slot] = len(raw)
        payload += raw
    for slot in walked_slots:
        hdr.str_walked |= 1 << slot
    return bytes(hdr) + bytes(body) + payload


@pytest.fixture
def decoder(tmp_path):
    procs = ProcTable(proc_root=tmp_path)  # an empty /proc: nothing is read by accident
    procs.set_context(1, 0, "/usr/lib/systemd/systemd", "/", "")
    return Decoder(procs)


def decode(decoder, raw):
    buf = memoryview(bytearray(b"\xee" * 8 + raw))  # records do not start at 0 in the ring
    decoder.handle(buf, 8, len(raw))
    (event,) = decoder.take()
    return event


def ctx(exe="/usr/bin/cat", cwd="/home/u", tty="pts3"):
    return {abi.Str.EXE: walked(exe), abi.Str.CWD: walked(cwd), abi.Str.TTY: tty.encode()}


CTX_SLOTS = (abi.Str.EXE, abi.Str.CWD)


def test_an_open_with_the_process_context(decoder):
    raw = record(EventKind.OPEN, abi.Open(flags=0o2000000, file_uid=0, mode=0o100644, dirfd=-100),
                 strings={abi.Str.PATH: walked("/etc/passwd"), **ctx()}, walked_slots=(abi.Str.PATH, *CTX_SLOTS),
                 flags=abi.F_CTX, retval=3, syscall=abi.Syscall.OPENAT)
    ev = decode(decoder, raw)
    assert (ev.kind, ev.path, ev.retval, ev.flags, ev.file_uid, ev.syscall) == (
        EventKind.OPEN, "/etc/passwd", 3, 0o2000000, 0, "openat")
    assert (ev.exe, ev.cwd, ev.tty, ev.parent_exe) == ("/usr/bin/cat", "/home/u", "pts3", "/usr/lib/systemd/systemd")
    assert (ev.pid, ev.tgid, ev.ppid, ev.uid, ev.gid, ev.comm) == (100, 100, 1, 1000, 1000, "prog")


def test_later_records_take_the_context_from_the_table(decoder):
    decode(decoder, record(EventKind.CAPABLE, abi.Cap(cap=13), strings=ctx(), walked_slots=CTX_SLOTS, flags=abi.F_CTX))
    ev = decode(decoder, record(EventKind.CAPABLE, abi.Cap(cap=21)))
    assert (ev.capability, ev.exe, ev.cwd, ev.tty) == (21, "/usr/bin/cat", "/home/u", "pts3")


def test_a_failed_relative_open_is_joined_with_the_cwd_or_the_dirfd(decoder):
    decode(decoder, record(EventKind.CAPABLE, abi.Cap(), strings=ctx(), walked_slots=CTX_SLOTS, flags=abi.F_CTX))
    ev = decode(decoder, record(EventKind.OPEN, abi.Open(file_uid=0xFFFFFFFF, dirfd=-100),
                                strings={abi.Str.PATH: b"../x/./secret"}, retval=-13))
    assert (ev.path, ev.file_uid, ev.retval) == ("/home/x/secret", -1, -13)
    ev = decode(decoder, record(EventKind.OPEN, abi.Open(file_uid=0xFFFFFFFF, dirfd=5),
                                strings={abi.Str.PATH: b"missing", abi.Str.AUX: walked("/srv/data")},
                                walked_slots=(abi.Str.AUX,), retval=-2))
    assert ev.path == "/srv/data/missing"


def test_the_root_is_a_walk_of_no_components(decoder):
    ev = decode(decoder, record(EventKind.OPEN, abi.Open(), strings={}, walked_slots=(abi.Str.PATH,)))
    assert ev.path == "/"


def test_exec_takes_the_new_executable_and_argv(decoder):
    raw = record(EventKind.EXEC, abi.Exec(file_uid=0),
                 strings={abi.Str.PATH: b"/bin/true", abi.Str.AUX: b"/bin/true\0-x\0\0", **ctx("/usr/bin/true")},
                 walked_slots=CTX_SLOTS, flags=abi.F_CTX)
    ev = decode(decoder, raw)
    assert (ev.path, ev.exe, ev.argv) == ("/usr/bin/true", "/usr/bin/true", ("/bin/true", "-x", ""))


def test_a_truncated_argv_keeps_its_last_piece(decoder):
    raw = record(EventKind.EXEC, abi.Exec(), strings={abi.Str.AUX: b"a\0bc", **ctx()}, walked_slots=CTX_SLOTS,
                 flags=abi.F_CTX | abi.F_TRUNC)
    ev = decode(decoder, raw)
    assert ev.argv == ("a", "bc") and ev.truncated and decoder.truncated == 1


def test_fork_describes_the_child_and_exit_forgets_it(decoder):
    decode(decoder, record(EventKind.CAPABLE, abi.Cap(), strings=ctx(), walked_slots=CTX_SLOTS, flags=abi.F_CTX))
    fork = decode(decoder, record(EventKind.FORK, abi.Fork(child_pid=200, child_tgid=200)))
    assert (fork.pid, fork.tgid, fork.ppid, fork.exe, fork.parent_exe) == (200, 200, 100, "/usr/bin/cat", "/usr/bin/cat")
    assert 200 in decoder.procs
    done = decode(decoder, record(EventKind.EXIT, abi.Exit(code=3 << 8), pid=200, tgid=200, ppid=100))
    assert (done.retval, done.exe) == (3, "/usr/bin/cat")
    assert 200 not in decoder.procs


def test_exit_status():
    assert exit_status(0) == 0 and exit_status(5 << 8) == 5 and exit_status(9) == 137


def test_network_records(decoder):
    conn = abi.Conn(family=socket.AF_INET6, type=1, protocol=6, sport=40000, dport=443, fd=3)
    conn.saddr[:] = list(socket.inet_pton(socket.AF_INET6, "fd00::2"))
    conn.daddr[:] = list(socket.inet_pton(socket.AF_INET6, "2001:db8::1"))
    ev = decode(decoder, record(EventKind.CONNECT, conn, syscall=abi.Syscall.CONNECT))
    assert (ev.family, ev.sock_type, ev.protocol, ev.saddr, ev.sport, ev.daddr, ev.dport) == (
        socket.AF_INET6, 1, 6, "fd00::2", 40000, "2001:db8::1", 443)
    unix = decode(decoder, record(EventKind.BIND, abi.Conn(family=socket.AF_UNIX),
                                  strings={abi.Str.PATH: b"\0abstract\0\0"}))
    assert unix.saddr == unix.path == "@abstract"
    sock = decode(decoder, record(EventKind.SOCKET, abi.Socket(family=2, type=3, protocol=1, fd=4), retval=4))
    assert (sock.family, sock.sock_type, sock.protocol) == (2, 3, 1)


def test_syscall_records(decoder):
    decode(decoder, record(EventKind.CAPABLE, abi.Cap(), strings=ctx(cwd="/tmp"), walked_slots=CTX_SLOTS,
                           flags=abi.F_CTX))
    mount = decode(decoder, record(EventKind.SYSCALL, abi.Sys(dirfd=-100, arg=(abi.u64 * 3)(4096, 0, 0)),
                                   strings={abi.Str.PATH: b"mnt", abi.Str.AUX: b"tmpfs", abi.Str.AUX2: b"none"},
                                   syscall=abi.Syscall.MOUNT))
    assert (mount.syscall, mount.path, mount.sys_args) == ("mount", "/tmp/mnt", ("none", "tmpfs", 4096))
    setuid = decode(decoder, record(EventKind.SYSCALL, abi.Sys(arg=(abi.u64 * 3)(65534, 0, 0)),
                                    syscall=abi.Syscall.SETUID))
    assert (setuid.syscall, setuid.path, setuid.sys_args) == ("setuid", "", (65534,))


def test_a_record_that_does_not_parse_is_counted_not_raised(decoder):
    bad = bytearray(record(EventKind.OPEN, abi.Open(), strings={abi.Str.PATH: b"/x"}))
    decoder.handle(memoryview(bad), 0, len(bad) - 1)  # a string runs past the end
    unknown = bytearray(record(EventKind.OPEN, abi.Open()))
    unknown[16] = 99  # kind
    decoder.handle(memoryview(unknown), 0, len(unknown))
    assert decoder.take() == [] and decoder.undecodable == 2


def test_wall_clock_offset(decoder):
    decoder.wall_offset_ns = 1_700_000_000_000_000_000
    ev = decode(decoder, record(EventKind.CAPABLE, abi.Cap()))
    assert ev.ts_ns == 1_700_000_000_000_001_000


def test_sizes_match_the_header():
    assert ctypes.sizeof(abi.Hdr) == 72

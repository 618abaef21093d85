"""Building lsm_events records the way the BPF programs write them (for decode tests)."""

from __future__ import annotations

from karmor_host.enforce.bpflsm import abi


def walked(path: str) -> bytes:
    """'/usr/bin/cat' -> b'cat\\0bin\\0usr\\0' (components leaf first, NUL-terminated)."""
    parts = [p for p in path.split("/") if p]
    return b"".join(p.encode() + b"\0" for p in reversed(parts))


def record(hook: abi.Hook, op: abi.Op, *, hits=(), posture=abi.Action.NONE, retval=0, generation=1,
           path="", exe="/usr/bin/cat", pexe="/usr/bin/bash", cwd="/root", tty="pts0", syscall_nr=257,
           flags=0, open_flags=0, file_uid=0, family=0, type_=0, protocol=0, cap=-1, pid=100, ppid=50) -> bytes:
    e = abi.Event(ts_ns=5_000_000_000, retval=retval, hook=hook, op=op, posture=posture, generation=generation,
                  flags=flags, pid=pid, tgid=pid, ppid=ppid, uid=0, gid=0, syscall_nr=syscall_nr, nhits=len(hits),
                  file_uid=file_uid, open_flags=open_flags, family=family, type=type_, protocol=protocol, cap=cap,
                  comm=b"cat")
    for i, (rid, act) in enumerate(hits[: abi.HITS]):
        e.rule_id[i], e.action[i] = rid, act
    strings = [walked(path) if path else b"", walked(exe), walked(pexe), walked(cwd), tty.encode()]
    for i, s in enumerate(strings):
        e.str_len[i] = len(s)
        if i != abi.Str.TTY and s:
            e.str_walked |= 1 << i
    return bytes(e) + b"".join(strings)

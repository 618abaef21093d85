"""lsm_events records -> EnforcerAlerts: one per policy a kernel decision answers to.

A record (bpf/include/lsm.h) is struct karmor_lsm_event, then its strings. It carries the
ids of the rules that matched (block or audit), a default-posture decision if one was taken,
what the hook returned and the full process context, so no process table is needed here.
Rule ids resolve through the rule set that was live when the kernel decided (its generation)
or, for events older than this agent (left in the pinned ring while it was stopped), through
any rule set it knows: ids are content hashes, stable across runs.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from dataclasses import dataclass

from karmor_host.alerts import record
from karmor_host.alerts.match import AUDIT, AUDIT_ALLOW, AUDIT_BLOCK, BLOCK, Decision
from karmor_host.alerts.record import DEFAULT_POSTURE
from karmor_host.enforce.base import EnforcerAlert
from karmor_host.enforce.bpflsm import abi
from karmor_host.kernel.events import Event, EventKind
from karmor_host.policy.ruleset import Operation, Rule
from karmor_host.policy.syscalls_x86_64 import SYSCALLS_X86_64

EVENT_SIZE = ctypes.sizeof(abi.Event)
_SYSCALL_NAMES = {nr: name for name, nr in SYSCALLS_X86_64.items()}

_KIND = {
    abi.Hook.BPRM_CHECK: EventKind.EXEC,
    abi.Hook.FILE_OPEN: EventKind.OPEN,
    abi.Hook.PATH_TRUNCATE: EventKind.OPEN,
    abi.Hook.PATH_UNLINK: EventKind.SYSCALL,
    abi.Hook.PATH_RENAME: EventKind.SYSCALL,
    abi.Hook.SOCKET_CREATE: EventKind.SOCKET,
    abi.Hook.CAPABLE: EventKind.CAPABLE,
}
# the syscall to name when the record does not say (no syscall in progress)
_FALLBACK_SYSCALL = {abi.Hook.PATH_UNLINK: "unlink", abi.Hook.PATH_RENAME: "rename"}
_OPERATION = {
    abi.Op.PROCESS: Operation.PROCESS,
    abi.Op.FILE: Operation.FILE,
    abi.Op.NETWORK: Operation.NETWORK,
    abi.Op.CAPABILITIES: Operation.CAPABILITIES,
}
_RANK = {BLOCK: 0, AUDIT_BLOCK: 0, AUDIT: 1}


def lsm_name(hook: int) -> str:
    """The Data field's `lsm=` value: SECURITY_FILE_OPEN, SECURITY_BPRM_CHECK, ..."""
    try:
        return "SECURITY_" + abi.Hook(hook).name
    except ValueError:
        return f"SECURITY_HOOK_{hook}"


def walked(raw: bytes) -> str:
    """Components leaf first, each NUL-terminated -> an absolute path ("" for nothing)."""
    if not raw:
        return ""
    parts = raw.split(b"\0")
    parts.pop()
    parts.reverse()
    return "/" + b"/".join(parts).decode("utf-8", "surrogateescape")


@dataclass(frozen=True)
class Record:
    """One decoded kernel decision."""

    event: Event
    hook: int
    op: int
    posture: int  # abi.Action of a default-posture decision (NONE, AUDIT, BLOCK)
    generation: int
    flags: int  # abi.E_*
    hits: tuple[tuple[int, int], ...]  # (rule id, abi.Action), duplicates merged

    @property
    def lsm(self) -> str:
        return lsm_name(self.hook)


def decode(buf: bytes | memoryview, off: int, size: int, wall_offset_ns: int = 0) -> Record:
    """One ring-buffer record -> Record (raises ValueError on a bad one)."""
    if size < EVENT_SIZE:
        raise ValueError(f"record of {size} bytes is shorter than karmor_lsm_event ({EVENT_SIZE})")
    f = abi.Event.from_buffer_copy(bytes(buf[off : off + EVENT_SIZE]))
    pos = off + EVENT_SIZE
    strings = []
    for i in range(abi.STR_COUNT):
        n = f.str_len[i]
        raw = bytes(buf[pos : pos + n])
        if len(raw) != n:
            raise ValueError("string lengths run past the record")
        pos += n
        strings.append(walked(raw) if f.str_walked & (1 << i) else raw.decode("utf-8", "surrogateescape"))
    if pos > off + size:
        raise ValueError("string lengths run past the record")
    path, exe, pexe, cwd, tty = strings
    try:
        hook = abi.Hook(f.hook)
    except ValueError:
        raise ValueError(f"unknown hook {f.hook}") from None
    kind = _KIND.get(hook, EventKind.OPEN)
    syscall = _SYSCALL_NAMES.get(f.syscall_nr, "") if f.syscall_nr >= 0 else ""
    ev = Event(
        kind, f.ts_ns + wall_offset_ns, f.pid, f.tgid, f.ppid, f.uid, f.gid,
        f.comm.decode("utf-8", "replace"), exe, pexe, cwd, tty, f.retval,
        syscall=syscall or _FALLBACK_SYSCALL.get(hook, ""), truncated=bool(f.flags & abi.E_TRUNC),
    )  # fmt: skip
    if kind is EventKind.EXEC:
        # the program being started; the one starting it is the fromSource of exec rules
        ev.path, ev.exe, ev.parent_exe = path, path, exe
        ev.file_uid = -1 if f.file_uid == 0xFFFFFFFF else f.file_uid
    elif kind in (EventKind.OPEN, EventKind.SYSCALL):
        ev.path = path
        ev.flags = f.open_flags
        ev.file_uid = -1 if f.file_uid == 0xFFFFFFFF else f.file_uid
    elif kind is EventKind.SOCKET:
        ev.family, ev.sock_type, ev.protocol = f.family, f.type, f.protocol
    elif kind is EventKind.CAPABLE:
        ev.capability = f.cap
    seen: dict[int, int] = {}
    for i in range(min(f.nhits, abi.HITS)):
        rid, act = f.rule_id[i], f.action[i]
        seen[rid] = max(seen.get(rid, 0), act)
    return Record(ev, f.hook, f.op, f.posture, f.generation, f.flags, tuple(seen.items()))


def alerts(rec: Record, lookup: Callable[[int, int], Rule | None]) -> tuple[list[EnforcerAlert], list[int]]:
    """The alerts of one decision, ordered as the matcher orders its own (Block first, then
    Audit, by policy; DefaultPosture last), one per policy (its strongest rule). Returns
    (alerts, rule ids that resolved to no rule)."""
    op = _OPERATION.get(abi.Op(rec.op), Operation.FILE)
    denied = rec.event.retval < 0
    data = record.data(rec.event, rec.lsm)
    best: dict[str, Decision] = {}
    unknown: list[int] = []
    for rid, act in sorted(rec.hits):
        rule = lookup(rid, rec.generation)
        if rule is None:
            unknown.append(rid)
            continue
        if act == abi.Action.BLOCK:
            # a Block rule the kernel did not carry out: it protects the agent's own files
            action = BLOCK if denied else AUDIT_BLOCK
        else:
            action = AUDIT
        d = Decision(rule, action, rule.policy, op, action == BLOCK)
        kept = best.get(rule.policy)
        if kept is None or _RANK[d.action] < _RANK[kept.action]:
            best[rule.policy] = d
    out = sorted(best.values(), key=lambda d: (_RANK[d.action], d.policy_name))
    if rec.posture == abi.Action.BLOCK:
        out.append(Decision(None, BLOCK if denied else AUDIT_ALLOW, DEFAULT_POSTURE, op, denied))
    elif rec.posture == abi.Action.AUDIT:
        out.append(Decision(None, AUDIT, DEFAULT_POSTURE, op, False))
    return [EnforcerAlert(rec.event, d, data) for d in out], unknown

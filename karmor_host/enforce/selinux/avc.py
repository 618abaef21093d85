"""AVC records -> the exact rule that denied, and the event the kernel refused. Pure.

An AVC record names the subject's and the object's contexts, the object class and the
permissions. Every karmor denial is a constraint over karmor types (render.py), and the plan's
Index maps (subject type, object type, class, permission) back to the rule whose constraint
covers it -- or to a whitelist's default posture. Nothing is inferred from a return code, and
a denial karmor's constraints do not cover (a missing allow rule of some other module) is not
ours.

The same record reaches us in several shapes; `parse` reads all of them:
  netlink multicast   audit(1717259989.360:42): avc:  denied  { read } for  pid=272 ...
  /dev/kmsg           6,812,3141,-;audit: type=1400 audit(1717259989.360:42): avc:  denied ...
  dmesg               [   36.1] audit: type=1400 audit(...): avc:  denied ...
  auditd's log        type=AVC msg=audit(1717259989.360:42): avc:  denied ...
"""

from __future__ import annotations

import errno
import re
import socket
from dataclasses import dataclass

from karmor_host.alerts import names
from karmor_host.alerts.match import AUDIT, AUDIT_BLOCK, BLOCK, Decision
from karmor_host.alerts.record import DEFAULT_POSTURE
from karmor_host.enforce.selinux.render import Denial, Index
from karmor_host.kernel.auditrecords import AUDIT_AVC, RecordFilter
from karmor_host.kernel.events import Event, EventKind
from karmor_host.policy.ruleset import Operation, Rule

RECORDS = RecordFilter(types=frozenset({AUDIT_AVC}), marker="avc:")  # AVC records, not the AppArmor ones of that type

_HEAD = re.compile(r"audit\((\d+)\.(\d+):(\d+)\):\s*avc:\s+(denied|granted)\s+\{([^}]*)\}\s+for\s+(.*)$")
_FIELD = re.compile(r'(\w+)=("(?:[^"]*)"|\S+)')
_HEX = re.compile(r"^(?:[0-9A-F]{2})+$")
_HEXED = {"comm", "name", "path", "exe"}  # audit prints these in hex when they hold odd characters


@dataclass(frozen=True)
class AvcRecord:
    denied: bool  # False: `granted` (an auditallow rule)
    perms: tuple[str, ...]
    scontext: str
    tcontext: str
    tclass: str
    permissive: bool = False
    pid: int = 0
    comm: str = ""
    path: str = ""  # full path, when the check had one
    name: str = ""  # last component only (inode checks)
    dev: str = ""
    ino: int = 0
    capability: int = -1
    ts_ns: int = 0
    serial: int = 0

    @property
    def stype(self) -> str:
        return _type(self.scontext)

    @property
    def ttype(self) -> str:
        return _type(self.tcontext)


def _type(context: str) -> str:
    parts = context.split(":")
    return parts[2] if len(parts) >= 3 else ""


def _value(key: str, raw: str) -> str:
    if raw.startswith('"') and raw.endswith('"'):
        return raw[1:-1]
    if key in _HEXED and _HEX.match(raw):
        try:
            return bytes.fromhex(raw).decode("utf-8", "replace")
        except ValueError:
            return raw
    return raw


def parse(line: str) -> AvcRecord | None:
    """One audit line (any shape above) -> AvcRecord, or None when it is not an AVC record."""
    m = _HEAD.search(line.split("\x1d", 1)[0])
    if m is None:
        return None
    secs, frac, serial, verdict, perms, rest = m.groups()
    fields = {k: _value(k, v) for k, v in _FIELD.findall(rest)}
    if "scontext" not in fields or "tcontext" not in fields or "tclass" not in fields:
        return None

    def num(key: str, default: int = 0) -> int:
        try:
            return int(fields.get(key, default))
        except ValueError:
            return default

    return AvcRecord(
        denied=verdict == "denied",
        perms=tuple(perms.split()),
        scontext=fields["scontext"],
        tcontext=fields["tcontext"],
        tclass=fields["tclass"],
        permissive=fields.get("permissive") == "1",
        pid=num("pid"),
        comm=fields.get("comm", ""),
        path=fields.get("path", ""),
        name=fields.get("name", ""),
        dev=fields.get("dev", ""),
        ino=num("ino"),
        capability=num("capability", -1),
        ts_ns=int(secs) * 1_000_000_000 + int(frac.ljust(9, "0")[:9]),
        serial=int(serial),
    )


# --- attribution -----------------------------------------------------------------------------

OURS = "ours"  # a karmor constraint denied it: alert
UNATTRIBUTED = "unattributed"  # a denial involving karmor types that no constraint explains
IGNORED = "ignored"  # not karmor's (other modules' denials, granted records)


@dataclass(frozen=True)
class Attribution:
    status: str
    denial: Denial | None = None
    perm: str = ""
    source: str = ""  # the fromSource program of the subject domain ("" for other domains)
    target: str = ""  # the object's path when known (file, exec), or the program a transition enters
    reason: str = ""


def attribute(rec: AvcRecord, index: Index) -> Attribution:
    """A denial -> the constraint's rule; a `granted` record -> the auditallow's rule."""
    stype, ttype = rec.stype, rec.ttype
    for perm in rec.perms:
        d = index.lookup(stype, ttype, rec.tclass, perm, granted=not rec.denied)
        if d is not None:
            return Attribution(OURS, d, perm, index.sources.get(stype, ""), _target(rec, index), "")
    if not rec.denied:
        return Attribution(IGNORED, reason="granted by no karmor auditallow rule")
    if stype in index.sources or ttype in index.files:
        return Attribution(UNATTRIBUTED, reason=(f"{rec.tclass} {{{' '.join(rec.perms)}}} on {ttype} by {stype}: "
                                                 "no karmor constraint covers it"))
    return Attribution(IGNORED, reason="not a karmor type")


def _target(rec: AvcRecord, index: Index) -> str:
    if rec.tclass == "process":
        return index.sources.get(rec.ttype, "")  # a transition into a fromSource program
    if rec.path.startswith("/"):
        return rec.path
    files = index.files.get(rec.ttype, ())
    hits = [p for p, ino in files if ino == rec.ino and rec.ino] or [p for p, _ in files
                                                                     if p.rsplit("/", 1)[-1] == rec.name]
    if len(hits) == 1 or (hits and len(set(hits)) == 1):
        return hits[0]
    if hits:
        return hits[0]
    return rec.name


# --- the event the kernel refused ---------------------------------------------------------------

_SOCKETS = {  # class -> (family, type, protocol) as the monitor would report such a socket
    "tcp_socket": (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP),
    "udp_socket": (socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP),
    "icmp_socket": (socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP),
    "rawip_socket": (socket.AF_INET, socket.SOCK_RAW, 0),
    "sctp_socket": (socket.AF_INET, socket.SOCK_STREAM, 132),
    "dccp_socket": (socket.AF_INET, 6, 33),
    "packet_socket": (socket.AF_PACKET, socket.SOCK_RAW, 0),
    "unix_stream_socket": (socket.AF_UNIX, socket.SOCK_STREAM, 0),
    "unix_dgram_socket": (socket.AF_UNIX, socket.SOCK_DGRAM, 0),
}
O_WRONLY, O_CREAT, O_APPEND = 0o1, 0o100, 0o2000


def open_flags(perm: str) -> int:
    """open(2) flags with the meaning of a file permission SELinux checked."""
    return {"write": O_WRONLY, "append": O_WRONLY | O_APPEND, "create": O_WRONLY | O_CREAT}.get(perm, 0)


@dataclass(frozen=True)
class Proc:
    """What /proc said about the process (empty when it was already gone)."""

    exe: str = ""
    ppid: int = 0
    parent_exe: str = ""
    uid: int = -1
    cwd: str = ""
    tty: str = ""


def event_of(rec: AvcRecord, att: Attribution, proc: Proc) -> Event:
    """The event the kernel mediated, shaped as the monitor would send it."""
    assert att.denial is not None
    op = att.denial.operation
    retval = 0 if rec.permissive or not rec.denied else -errno.EACCES
    acting = att.source or proc.exe
    common = dict(ts_ns=rec.ts_ns, pid=rec.pid, tgid=rec.pid, ppid=proc.ppid, uid=proc.uid, gid=-1,
                  comm=rec.comm, cwd=proc.cwd, tty=proc.tty, retval=retval)
    if op is Operation.PROCESS:
        # the acting process is the parent that tried to start the program
        return Event(kind=EventKind.EXEC, exe=att.target, parent_exe=acting, path=att.target, **common)
    if op is Operation.NETWORK:
        fam, typ, proto = _SOCKETS.get(rec.tclass, (0, 0, 0))
        return Event(kind=EventKind.SOCKET, exe=acting, parent_exe=proc.parent_exe, family=fam,
                     sock_type=typ, protocol=proto, **common)
    if op is Operation.CAPABILITIES:
        by_name = {v: k for k, v in names.CAPABILITIES.items()}
        cap = rec.capability if rec.capability >= 0 else by_name.get(att.perm, -1)
        if rec.denied and not rec.permissive:
            common["retval"] = -errno.EPERM
        return Event(kind=EventKind.CAPABLE, exe=acting, parent_exe=proc.parent_exe, capability=cap, **common)
    return Event(kind=EventKind.OPEN, exe=acting, parent_exe=proc.parent_exe, path=att.target,
                 flags=open_flags(att.perm), **common)


def decision(rec: AvcRecord, att: Attribution, rules: dict[int, Rule]) -> Decision | None:
    """The alert decision: the rule (None: DefaultPosture), Block or, in permissive mode, Audit (Block)."""
    assert att.denial is not None
    if not rec.denied:  # an auditallow rule: the access went through
        action, enforced = AUDIT, False
    else:
        action, enforced = (AUDIT_BLOCK, False) if rec.permissive else (BLOCK, True)
    if att.denial.rule_id == 0:
        return Decision(None, action, DEFAULT_POSTURE, att.denial.operation, enforced=enforced)
    rule = rules.get(att.denial.rule_id)
    if rule is None:
        return None
    return Decision(rule, action, rule.policy, rule.operation, enforced=enforced)


def data_text(rec: AvcRecord, att: Attribution) -> str:
    """The alert's Data: what SELinux recorded, not a guessed system call."""
    return (f"selinux={'denied' if rec.denied else 'granted'} permission={att.perm} tclass={rec.tclass} "
            f"scontext={rec.stype} "
            f"tcontext={rec.ttype} permissive={int(rec.permissive)}")

"""An AppArmor audit record -> the exact rules behind it.

A record names the profile that decided, the operation and the object (path, socket family
and type, capability). Profile names are ours (render.py): `karmor-global` holds the rules
without fromSource, `karmor-src-*` the rules of one source executable plus those. So the
profile fixes the scope, and within it the rules whose lines can produce the record are the
rules AppArmor carries (Plan.reported) whose target matches the object -- which is what the
alert matcher computes for an event of that scope. Attribution therefore rebuilds the event
the kernel saw from the record and runs the matcher over exactly the rules AppArmor carries,
with the whitelists AppArmor enforces; nothing is inferred from a return code.

- DENIED: the Block rules (and DefaultPosture of an enforced whitelist) that deny it, plus the
  other policies' Audit rules it meets, as the monitor would report them.
- AUDIT: the Audit rules that audited it, or the DefaultPosture of a capability whitelist
  whose posture is audit (render.py audits the capabilities no Allow rule names). Only for
  the operations the monitor also reports (open, exec, capable): AppArmor audits a later
  `getattr` of the same file too.
- Anything else from our profiles -- a base line (change_profile to unconfined), ALLOWED --
  is classified, not alerted.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass

from karmor_host.alerts.match import BLOCK, Decision, Matcher
from karmor_host.enforce.apparmor.records import AaRecord
from karmor_host.enforce.apparmor.render import GLOBAL, PREFIX, Plan
from karmor_host.kernel.events import Event, EventKind
from karmor_host.kernel.proctable import Proc
from karmor_host.policy.ruleset import RuleSet, category_of

ALERT = "alert"  # decisions to report
UNATTRIBUTED = "unattributed"  # our profile decided, but no rule explains it: counted, logged
BASE = "base"  # a base line of our profiles (change_profile to unconfined)
IGNORED = "ignored"  # not ours, or nothing to report (STATUS, ALLOWED, AUDIT of getattr ...)

_AUDITED_OPERATIONS = frozenset({"open", "exec", "capable"})
_WRITE_MASK = frozenset("wacdl")  # write, append, create, delete, link


@dataclass(frozen=True)
class Attribution:
    status: str  # ALERT | UNATTRIBUTED | BASE | IGNORED
    event: Event | None = None  # the kernel event rebuilt from the record
    decisions: tuple[Decision, ...] = ()
    reason: str = ""


def is_ours(profile: str) -> bool:
    return profile == GLOBAL or profile.startswith(PREFIX + "-")


def open_flags(mask: str) -> int:
    """open(2) flags with the same read/write meaning as an AppArmor permission mask."""
    write = any(c in _WRITE_MASK for c in mask)
    flags = (0o2 if "r" in mask else 0o1) if write else 0
    if "c" in mask:
        flags |= 0o100  # O_CREAT
    if "a" in mask:
        flags |= 0o2000  # O_APPEND
    return flags


def event_of(rec: AaRecord, acting_exe: str, parent_exe: str = "", proc: Proc | None = None) -> Event | None:
    """The event the kernel mediated, shaped as the monitor would have sent it. `acting_exe`
    is the program of the process in the record; for an exec the event's exe is the program it
    tried to start and the acting program is the parent (Source), as in a monitor exec event."""
    denied = rec.kind == "DENIED"
    kind: EventKind
    if rec.operation == "exec":
        kind = EventKind.EXEC
    elif rec.operation == "capable":
        kind = EventKind.CAPABLE
    elif rec.family:
        kind = EventKind.SOCKET
    elif rec.name.startswith("/"):
        kind = EventKind.OPEN
    else:
        return None
    retval = 0
    if denied:
        retval = -errno.EPERM if kind is EventKind.CAPABLE else -errno.EACCES
    if kind is EventKind.EXEC:
        exe, parent_exe = rec.name, acting_exe
    else:
        exe = acting_exe
    return Event(
        kind=kind,
        ts_ns=rec.ts_ns,
        pid=rec.pid,
        tgid=rec.pid,
        ppid=proc.ppid if proc else 0,
        uid=rec.fsuid,
        gid=-1,
        comm=rec.comm,
        exe=exe,
        parent_exe=parent_exe,
        cwd=proc.cwd if proc else "",
        tty=proc.tty if proc else "",
        retval=retval,
        path=rec.name if kind in (EventKind.OPEN, EventKind.EXEC) else "",
        flags=open_flags(rec.requested) if kind is EventKind.OPEN else 0,
        file_uid=rec.ouid,
        family=rec.family_number if kind is EventKind.SOCKET else 0,
        sock_type=rec.sock_type_number if kind is EventKind.SOCKET else 0,
        protocol=rec.protocol_number if kind is EventKind.SOCKET else 0,
        capability=rec.capability_number if kind is EventKind.CAPABLE else -1,
    )


def data_text(rec: AaRecord) -> str:
    """The alert's Data: what AppArmor recorded, not a guessed system call."""
    parts = [f"apparmor={rec.kind}", f"operation={rec.operation}", f"profile={rec.profile}"]
    if rec.requested:
        parts.append(f"requested_mask={rec.requested}")
    if rec.denied:
        parts.append(f"denied_mask={rec.denied}")
    if rec.info:
        parts.append(f"info={rec.info.replace(' ', '_')}")
    return " ".join(parts)


class Attributor:
    """Built once per applied plan; `attribute` is safe to call from one thread at a time."""

    def __init__(self, ruleset: RuleSet, plan: Plan) -> None:
        carried = plan.reported()
        sub = RuleSet(
            rules=tuple(r for r in ruleset.rules if r.id in carried),
            postures=ruleset.postures,
            whitelists=plan.whitelists | plan.audited,
            policies=ruleset.policies,
        )
        self.plan = plan
        self._matcher = Matcher(sub, enforcer_can_block=True)
        self._sources = {p.name: p.source for p in plan.profiles}

    def attribute(self, rec: AaRecord, proc: Proc | None = None, parent_exe: str = "") -> Attribution:
        if not is_ours(rec.profile) or rec.kind in ("STATUS", "HINT", "ERROR"):
            return Attribution(IGNORED, reason="not a decision of a karmor profile")
        if rec.operation == "change_profile":
            return Attribution(BASE, reason=f"change_profile to {rec.target or rec.name} refused by the base")
        if rec.kind not in ("DENIED", "AUDIT"):
            return Attribution(IGNORED, reason=f"{rec.kind} records are not used")
        if rec.kind == "AUDIT" and rec.operation not in _AUDITED_OPERATIONS:
            return Attribution(IGNORED, reason=f"AUDIT of {rec.operation} repeats the open or exec record")
        if rec.profile not in self._sources:
            return Attribution(UNATTRIBUTED, reason=f"profile {rec.profile} is not in the applied plan")
        source = self._sources[rec.profile]
        # The profile is the scope: rules are matched for the executable it confines (none for
        # karmor-global), whatever /proc says the process runs by now.
        scoped = event_of(rec, source, source)
        if scoped is None:
            return Attribution(UNATTRIBUTED, reason=f"operation {rec.operation} has no event form")
        decisions = self._matcher.match(scoped)
        acting = proc.exe if proc and proc.exe else source
        event = event_of(rec, acting, parent_exe, proc)
        if rec.kind == "DENIED":
            if not any(d.action == BLOCK for d in decisions):
                return Attribution(UNATTRIBUTED, event, reason="no rule of this profile denies it")
        else:
            # Audit rules, and the misses of a whitelist whose posture AppArmor audits
            decisions = [d for d in decisions if d.action != BLOCK
                         and (d.rule is not None or category_of(d.operation) in self.plan.audited)]
            if not decisions:
                return Attribution(UNATTRIBUTED, event, reason="no Audit rule of this profile audits it")
        return Attribution(ALERT, event, tuple(decisions))

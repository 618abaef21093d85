"""The AppArmor enforcer the agent drives: apply a rule set as profiles, report AppArmor's own
decisions as alerts, remove everything on request.

apply(rule set)
  render (pure) -> one policy file -> apparmor_parser -Q -> apparmor_parser -r -> remove the
  karmor profiles the new plan does not have (at the first apply: whatever an earlier run left).
  A failure anywhere before the load leaves the kernel and the previous plan as they were.
poll(timeout)
  audit records (enforce/auditfeed.py) -> parse (records.py) -> attribute (attribute.py) -> EnforcerAlert,
  one per policy a record answers to. AppArmor may record one system call as two operations
  (an O_CREAT open is a `mknod` and an `open` record): the same process, profile, object and
  rules within DUPLICATE_WINDOW_NS is one alert (the repeats are counted).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from karmor_host import log
from karmor_host.enforce.apparmor import attribute as attr
from karmor_host.enforce.apparmor.attribute import Attributor
from karmor_host.enforce.apparmor.backend import SECURITYFS, Backend, is_ours
from karmor_host.enforce.apparmor.records import RECORDS, AaRecord, parse
from karmor_host.enforce.apparmor.render import APPARMOR, Plan, render
from karmor_host.enforce.auditfeed import AuditFeed
from karmor_host.enforce.base import ApplyReport, EnforcerAlert
from karmor_host.errors import EnforcerError
from karmor_host.kernel.proctable import Proc, tty_name
from karmor_host.paths import Paths, default_paths
from karmor_host.policy.ruleset import Action, Category, Rule, RuleSet

if TYPE_CHECKING:
    from karmor_host.config import Config

ENFORCER = APPARMOR  # the alerts' Enforcer field
STATE_DIR_NAME = "apparmor"  # under Paths.state_dir
DUPLICATE_WINDOW_NS = 1_000_000_000
PROCESS_SCAN_S = 30.0
_OWN_PROFILE_OPS = ("profile_load", "profile_replace", "profile_remove")

_log = log.get("karmor.apparmor")


def read_proc(pid: int, root: Path = Path("/proc")) -> Proc | None:
    """The process as /proc shows it now (None when it is gone)."""
    base = root / str(pid)
    proc = Proc()
    try:
        stat = (base / "stat").read_bytes()
        fields = stat[stat.rindex(b")") + 2 :].split()
        proc.ppid, proc.tty = int(fields[1]), tty_name(int(fields[4]))
    except (OSError, ValueError, IndexError):
        return None
    for name in ("exe", "cwd"):
        try:
            setattr(proc, name, os.readlink(base / name))
        except OSError:
            pass
    return proc


def confinement(root: Path = Path("/proc")) -> dict[int, tuple[str, str]]:
    """pid -> (executable, AppArmor label) for every process we may look at."""
    out = {}
    for entry in os.scandir(root):
        if not entry.name.isdigit():
            continue
        try:
            exe = os.readlink(Path(entry.path, "exe"))
            try:  # AppArmor's own attribute (Linux 5.8+), whatever LSM owns attr/current
                label = Path(entry.path, "attr", "apparmor", "current").read_text().strip()
            except FileNotFoundError:
                label = Path(entry.path, "attr", "current").read_text().strip()
        except OSError:
            continue  # kernel threads have no exe; gone processes nothing
        out[int(entry.name)] = (exe, label.rsplit(" (", 1)[0])
    return out


class AppArmorEnforcer:
    name = "apparmor"
    enforcer_name = ENFORCER

    def __init__(self, paths: Paths | None = None, config: Config | None = None, *,
                 backend: Backend | None = None, proc_root: Path = Path("/proc")) -> None:
        self.backend = backend or Backend((paths or default_paths()).state_dir / STATE_DIR_NAME)
        self.proc_root = proc_root
        self.plan: Plan | None = None
        self.ruleset: RuleSet | None = None
        self._attributor: Attributor | None = None
        self._previous: tuple[int, Attributor] | None = None  # (load start ns, attributor before)
        self._by_rule: dict[int, str] = {}
        self._audit = AuditFeed(RECORDS, _log, "apparmor_audit_source")
        self._recent: dict[tuple, int] = {}
        self._counts: tuple[float, dict[str, int]] | None = None
        self.counts: dict[str, int] = {k: 0 for k in (
            "records", "alerts", "duplicates", "unattributed", "base_denials", "foreign_changes")}

    # --- what the rest of the agent asks -------------------------------------------------

    def can_block(self, rule: Rule | None, category: Category | None) -> bool:
        """Whether AppArmor itself stops what `rule` denies (None: the category's posture)."""
        if self.plan is None:
            return False
        if rule is None:
            return category in self.plan.whitelists
        return rule.action is Action.BLOCK and self._by_rule.get(rule.id) == APPARMOR

    def reports(self, rule: Rule | None, category: Category | None) -> bool:
        """Whether AppArmor's records raise the alert for `rule` (None: the category's posture);
        the monitor's matcher then stays silent on it."""
        if self.plan is None:
            return False
        if rule is None:
            return category in self.plan.whitelists | self.plan.audited
        return self._by_rule.get(rule.id) == APPARMOR

    def reported(self) -> frozenset[int]:
        """Rule ids whose alerts AppArmor's records produce (the monitor must not repeat them)."""
        return self.plan.reported() if self.plan else frozenset()

    # --- apply / remove --------------------------------------------------------------------

    def apply(self, ruleset: RuleSet) -> ApplyReport:
        t0 = time.monotonic()
        plan = render(ruleset, loader=os.path.realpath(self.backend.parser))
        before = self.backend.ours()
        started = time.time_ns()
        if plan.profiles:
            self.backend.load(plan.text())
        stale = sorted(set(before) - set(plan.names))
        removed = self.backend.unload(stale)
        if self._attributor is not None:
            self._previous = (started, self._attributor)
        self.plan, self.ruleset, self._attributor = plan, ruleset, Attributor(ruleset, plan)
        self._by_rule = {s.rule_id: s.by for s in plan.rules}
        self.backend.write_state(plan.names, len(ruleset.rules))
        notes = list(plan.notes)
        if removed:
            notes.append(f"removed karmor profiles no rule needs any more: {', '.join(removed)}")
        notes.extend(self.confinement_notes())
        _log.info("apparmor_applied", profiles=list(plan.names), removed=removed,
                  carried=len(plan.reported()), rules=len(ruleset.rules))
        return ApplyReport(self.name, plan.rules, tuple(notes), seconds=round(time.monotonic() - t0, 2))

    def refresh(self) -> ApplyReport | None:
        """Load the plan again when the kernel no longer has it: a karmor profile removed or
        added behind our back (AppArmor profiles name paths, not inodes, so nothing else moves)."""
        if self.ruleset is None or self.plan is None:
            return None
        loaded = self.backend.ours()
        if set(loaded) == set(self.plan.names) and all(m == "enforce" for m in loaded.values()):
            return None
        _log.warning("apparmor_refresh", loaded=sorted(loaded), planned=list(self.plan.names))
        return self.apply(self.ruleset)

    def remove(self) -> None:
        """Unload every karmor profile (tasks confined by them become unconfined)."""
        removed = self.backend.unload(self.backend.ours())
        self.backend.clear_files()
        self.plan = self.ruleset = self._attributor = self._previous = None
        self._by_rule = {}
        _log.info("apparmor_removed", profiles=removed)

    def close(self) -> None:
        """Stop reading records; the loaded profiles stay (a restart re-applies without a gap)."""
        self._audit.close()

    # --- confinement -------------------------------------------------------------------------

    def confinement_notes(self) -> list[str]:
        """What AppArmor cannot reach: processes that run a profile's program but were started
        before it was loaded (AppArmor confines at exec)."""
        if self.plan is None:
            return []
        procs = confinement(self.proc_root)
        notes = []
        for prof in self.plan.profiles:
            if not prof.source:
                continue
            stray = sorted(pid for pid, (exe, label) in procs.items() if exe == prof.source and label != prof.name)
            if stray:
                notes.append(f"{prof.source}: {len(stray)} process(es) started before {prof.name} was loaded "
                             f"run without it (pids {', '.join(map(str, stray[:10]))}); restart them to confine them")
        unconfined = sum(1 for _exe, label in procs.values() if label == "unconfined")
        if any(not p.source for p in self.plan.profiles) and unconfined:
            notes.append(f"{unconfined} process(es) started before karmor-global run unconfined")
        return notes

    def process_counts(self) -> dict[str, int]:
        """Processes per label (karmor profiles and `unconfined`), from a /proc scan at most
        every PROCESS_SCAN_S: `status` is asked every few seconds."""
        now = time.monotonic()
        if self._counts is None or now - self._counts[0] >= PROCESS_SCAN_S:
            by_label: dict[str, int] = {}
            for _exe, label in confinement(self.proc_root).values():
                if is_ours(label) or label == "unconfined":
                    by_label[label] = by_label.get(label, 0) + 1
            self._counts = (now, dict(sorted(by_label.items())))
        return self._counts[1]

    def status(self) -> dict[str, Any]:
        return {
            "profiles": list(self.plan.names) if self.plan else [],
            "loaded": self.backend.ours(),
            "processes": self.process_counts(),
            **self._audit.status(),
            **self.counts,
        }

    # --- alerts from AppArmor's records --------------------------------------------------------

    def open_audit(self) -> None:
        self._audit.open()

    def poll(self, timeout_ms: int = 100) -> list[EnforcerAlert]:
        return self.handle_lines(self._audit.wait(timeout_ms))

    def drain(self) -> list[EnforcerAlert]:
        """Whatever records are waiting, without waiting for more."""
        return self.handle_lines(self._audit.drain())

    def handle_lines(self, lines: list[str]) -> list[EnforcerAlert]:
        out: list[EnforcerAlert] = []
        for line in lines:
            rec = parse(line)
            if rec is not None:
                out.extend(self.handle_record(rec))
        return out

    def handle_record(self, rec: AaRecord) -> list[EnforcerAlert]:
        if rec.kind == "STATUS":
            self._status_record(rec)
            return []
        attributor = self._attributor
        if self._previous is not None and rec.ts_ns and rec.ts_ns < self._previous[0]:
            attributor = self._previous[1]  # decided before the current plan was loaded
        if attributor is None or not attr.is_ours(rec.profile):
            return []
        self.counts["records"] += 1
        proc = read_proc(rec.pid, self.proc_root) if rec.pid else None
        parent = read_proc(proc.ppid, self.proc_root) if proc and proc.ppid else None
        att = attributor.attribute(rec, proc, parent.exe if parent else "")
        if att.status == attr.BASE:
            self.counts["base_denials"] += 1
            _log.warning("apparmor_base_denial", profile=rec.profile, pid=rec.pid, comm=rec.comm, reason=att.reason)
            return []
        if att.status == attr.UNATTRIBUTED:
            self.counts["unattributed"] += 1
            _log.warning("apparmor_unattributed", profile=rec.profile, operation=rec.operation, name=rec.name,
                         kind=rec.kind, pid=rec.pid, comm=rec.comm, reason=att.reason)
            return []
        if att.status != attr.ALERT or att.event is None:
            return []
        key = (rec.kind, rec.pid, rec.profile, rec.name, rec.family, rec.sock_type,
               tuple(sorted(d.policy_name for d in att.decisions)))
        last = self._recent.get(key)
        self._recent[key] = rec.ts_ns
        if last is not None and 0 <= rec.ts_ns - last < DUPLICATE_WINDOW_NS:
            self.counts["duplicates"] += 1
            return []
        if len(self._recent) > 4096:
            horizon = rec.ts_ns - DUPLICATE_WINDOW_NS
            self._recent = {k: t for k, t in self._recent.items() if t >= horizon}
        self.counts["alerts"] += len(att.decisions)
        data = attr.data_text(rec)
        return [EnforcerAlert(att.event, d, data) for d in att.decisions]

    def _status_record(self, rec: AaRecord) -> None:
        if rec.operation in _OWN_PROFILE_OPS and is_ours(rec.name) and not self.backend.ran_at(rec.ts_ns):
            self.counts["foreign_changes"] += 1
            _log.warning("apparmor_profile_changed_elsewhere", profile=rec.name, operation=rec.operation,
                         pid=rec.pid, comm=rec.comm)


def cleanup(paths: Paths | None = None) -> list[str]:
    """`karmor-host run --cleanup`: unload every karmor profile and the state files (no agent
    needed). Nothing is run where AppArmor is not active or nothing of ours is loaded."""
    if not (SECURITYFS / "profiles").is_file():
        return []
    paths = paths or default_paths()
    try:
        backend = Backend(paths.state_dir / STATE_DIR_NAME)
        removed = backend.unload(backend.ours())
    except EnforcerError as exc:
        return [f"apparmor: {exc.message}"]
    backend.clear_files()
    return [f"apparmor: profile {name} removed" for name in removed]

"""The SELinux enforcer the agent drives: apply a rule set as one module plus labels, report
SELinux's own denials as alerts, remove everything on request.

apply(rule set)
  scan the named files (inventory.py) -> read the policy (policyfacts.py) -> render (pure) ->
  unchanged module: nothing to install; otherwise compile it against the store (secilc) ->
  restore the labels the new plan drops -> `semodule -i` (atomic replace) -> set the new labels.
  A module that does not compile changes nothing; the previous one stays.
poll(timeout)
  AVC records (enforce/auditfeed.py) -> parse and attribute (avc.py) -> EnforcerAlert, one per denial.
remove()
  restore every label karmor set, then `semodule -r`: no file is left in a type no policy has.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from karmor_host import log
from karmor_host.enforce.auditfeed import AuditFeed
from karmor_host.enforce.base import ApplyReport, EnforcerAlert, RuleStatus
from karmor_host.enforce.selinux import avc, inventory, policyfacts
from karmor_host.enforce.selinux.backend import Backend
from karmor_host.enforce.selinux.render import MODULE, MONITOR, SELINUX, Plan, wanted
from karmor_host.enforce.selinux.render import plan as render_plan
from karmor_host.errors import EnforcerError
from karmor_host.paths import Paths, default_paths
from karmor_host.policy.ruleset import Action, Category, Rule, RuleSet

if TYPE_CHECKING:
    from karmor_host.config import Config

ENFORCER = SELINUX  # the alerts' Enforcer field
DUPLICATE_WINDOW_NS = 1_000_000_000
SELINUXFS = Path("/sys/fs/selinux")

STATE_DIR_NAME = "selinux"  # under Paths.state_dir

_log = log.get("karmor.selinux")


def _dir(path: str | Path) -> str:
    p = os.path.realpath(path)
    return p if p.endswith("/") else p + "/"


def agent_protection(config: Config | None) -> tuple[str, ...]:
    """Files and directories (ending in /) the agent needs to start and read its policies: no
    rule may relabel them (nor make the agent's interpreter a fromSource program)."""
    import karmor_host

    out = {_dir(Path(karmor_host.__file__).parent), _dir(Path(os.__file__).parent), _dir(sys.prefix),
           os.path.realpath(sys.executable)}
    if config is not None:
        out.add(_dir(config.policy_dir))
        if config.source and Path(config.source).is_file():
            out.add(os.path.realpath(config.source))
    return tuple(sorted(out))

def read_proc(pid: int, root: Path = Path("/proc")) -> avc.Proc:
    """What /proc says about the process now (empty when it is gone)."""
    base = root / str(pid)
    values: dict[str, Any] = {}
    try:
        stat = (base / "stat").read_bytes()
        fields = stat[stat.rindex(b")") + 2:].split()
        values["ppid"] = int(fields[1])
        for line in (base / "status").read_text().splitlines():
            if line.startswith("Uid:"):
                values["uid"] = int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return avc.Proc()
    for name in ("exe", "cwd"):
        try:
            values[name] = os.readlink(base / name)
        except OSError:
            pass
    if values.get("ppid"):
        try:
            values["parent_exe"] = os.readlink(root / str(values["ppid"]) / "exe")
        except OSError:
            pass
    return avc.Proc(**values)


def own_domain(attr: Path = Path("/proc/self/attr/current")) -> str:
    """The type of this process's SELinux context ("" when there is none)."""
    try:
        parts = attr.read_text().strip("\0\n ").split(":")
    except OSError:
        return ""
    return parts[2] if len(parts) >= 3 else ""


def enforcing(fs: Path = SELINUXFS) -> bool | None:
    """True enforcing, False permissive, None when no policy is loaded."""
    try:
        return (fs / "enforce").read_text().strip() == "1"
    except OSError:
        return None


class SELinuxEnforcer:
    name = "selinux"
    enforcer_name = ENFORCER

    def __init__(self, paths: Paths | None = None, config: Config | None = None, *,
                 backend: Backend | None = None, protected: tuple[str, ...] | None = None,
                 proc_root: Path = Path("/proc"), selinuxfs: Path = SELINUXFS,
                 labels: inventory.Labels | None = None, mounts: list[inventory.Mount] | None = None,
                 agent_domain: str | None = None) -> None:
        self.backend = backend or Backend((paths or default_paths()).state_dir / STATE_DIR_NAME)
        self.protected = protected if protected is not None else agent_protection(config)
        # the domain this agent runs in: the module grants it what the monitor needs
        self.agent_domain = own_domain() if agent_domain is None else agent_domain
        self.labels = labels  # how files' contexts are read (default: python3-selinux)
        self.mounts = mounts  # the mount table (default: /proc/self/mountinfo)
        self.proc_root = proc_root
        self.selinuxfs = selinuxfs
        self.plan: Plan | None = None
        self.ruleset: RuleSet | None = None
        self._rules: dict[int, Rule] = {}
        self._by_rule: dict[int, RuleStatus] = {}
        self._previous: tuple[int, Plan] | None = None
        self._audit = AuditFeed(avc.RECORDS, _log, "selinux_audit_source")
        self._recent: dict[tuple, int] = {}
        self.counts: dict[str, int] = {k: 0 for k in ("records", "alerts", "duplicates", "unattributed", "ignored")}

    # --- what the rest of the agent asks -----------------------------------------------------
    def can_block(self, rule: Rule | None, category: Category | None) -> bool:
        """Whether SELinux itself stops what `rule` denies (None: the category's posture)."""
        if self.plan is None or enforcing(self.selinuxfs) is not True:
            return False
        if rule is None:
            return category in self.plan.whitelists
        status = self._by_rule.get(rule.id)
        return rule.action is Action.BLOCK and status is not None and status.by == SELINUX \
            and status.mode == "enforced"

    def reports(self, rule: Rule | None, category: Category | None) -> bool:
        """Whether SELinux's AVC records raise the alert for `rule` (None: the category's posture);
        true also in permissive mode, where the records say Audit (Block)."""
        if self.plan is None:
            return False
        if rule is None:
            return category in self.plan.whitelists or category in self.plan.audited
        status = self._by_rule.get(rule.id)
        return status is not None and status.by == SELINUX and status.mode == "enforced"

    def reported(self) -> frozenset[int]:
        """Rule ids whose alerts come from SELinux's AVC records."""
        return frozenset(i for i, s in self._by_rule.items() if s.by == SELINUX and s.mode == "enforced")

    # --- apply / remove ----------------------------------------------------------------------
    def prepare(self, ruleset: RuleSet) -> Plan:
        """Scan, read the policy and render: everything but touching the system."""
        state = self.backend.read_state()
        inv = inventory.scan(wanted(ruleset), state.originals(), self.labels, self.mounts)
        types = {i.type for i in inv.inodes.values() if i.type}
        try:
            facts = policyfacts.read(policyfacts.policy_file(self.backend.root or Path("/")), types,
                                     cache_dir=self.backend.state_dir,
                                     key=policyfacts.store_key(self.backend.store()))
        except policyfacts.PolicyUnavailable as exc:
            raise EnforcerError(f"SELinux policy unavailable: {exc}") from exc
        return render_plan(ruleset, facts, inv, self.protected, self.agent_domain)

    def apply(self, ruleset: RuleSet) -> ApplyReport:
        t0 = time.monotonic()
        if self.backend.root is None and enforcing(self.selinuxfs) is None:
            raise EnforcerError("SELinux is not enabled, or no policy is loaded")
        plan = self.prepare(ruleset)
        steps = {"plan": time.monotonic() - t0}
        state = self.backend.read_state()
        digest = plan.digest()
        wanted_labels = {lab.path: lab for lab in plan.labels}
        needed = plan.needed
        notes = list(plan.notes)
        installed = self.backend.installed()
        if needed and not (installed and state.module == digest):
            t = time.monotonic()
            self.backend.check(plan.cil)  # raises: nothing changed yet
            steps["check"] = time.monotonic() - t
        stale = [p for p, v in state.labels.items()
                 if p not in wanted_labels or wanted_labels[p].context != v["applied"]]
        swept = self.backend.sweep([p for p in stale if os.path.isdir(p)], state, skip=wanted_labels)
        restored = self.backend.restore(stale, state)
        if needed and not (installed and state.module == digest):
            t = time.monotonic()
            self.backend.install(plan.cil)
            steps["install"] = time.monotonic() - t
            state.module = digest
            self.backend.write_state(state)
            notes.append(f"module {digest[:12]} installed")
        elif not needed and installed:
            self.backend.restore(list(state.labels), state)
            self.backend.uninstall()
            state.module = ""
            self.backend.write_state(state)
            notes.append("no rule needs SELinux: module removed")
        labelled = self.backend.set_labels(plan.labels, state) if needed else None
        statuses = list(plan.rules)
        if labelled and labelled.failed:
            failed = dict(labelled.failed)
            for i, st in enumerate(statuses):
                bad = [p for p in plan.paths.get(st.rule_id, ()) if p in failed]
                if bad:
                    statuses[i] = RuleStatus(st.rule_id, st.policy, "audit-only", MONITOR,
                                             f"cannot label {bad[0]}: {failed[bad[0]]}; reported as Audit (Block)")
            notes.extend(f"label not set on {p}: {why}" for p, why in labelled.failed)
        for p, why in (*swept.failed, *restored.failed):
            notes.append(f"original label not restored on {p}: {why}")
        if enforcing(self.selinuxfs) is False:
            notes.append("SELinux is permissive: denials are logged and reported as Audit (Block), not enforced")
        if self.plan is not None:
            self._previous = (time.time_ns(), self.plan)
        self.plan, self.ruleset = plan, ruleset
        self._rules = ruleset.by_id()
        self._by_rule = {s.rule_id: s for s in statuses}
        _log.info("selinux_applied", enforced=len(self.reported()), rules=len(ruleset.rules),
                  labels=len(plan.labels), restored=len(restored.restored),
                  seconds=round(time.monotonic() - t0, 2), steps={k: round(v, 2) for k, v in steps.items()})
        return ApplyReport(self.name, tuple(statuses), tuple(notes), time.monotonic() - t0)

    def refresh(self) -> ApplyReport | None:
        """Apply the current rule set again when what it names moved: a target that now exists,
        a file replaced (a new inode carries its directory's type, not karmor's), a label
        changed by someone else."""
        if self.ruleset is None or self.plan is None:
            return None
        fresh = self.prepare(self.ruleset)
        moved = [lab.path for lab in fresh.labels if self.backend.current(lab.path) != lab.context]
        if fresh.digest() == self.plan.digest() and not moved:
            return None
        _log.info("selinux_refresh", module_changed=fresh.digest() != self.plan.digest(), relabel=moved[:10])
        return self.apply(self.ruleset)

    def remove(self) -> None:
        """Restore every label karmor set, then remove the module."""
        state = self.backend.read_state()
        swept = self.backend.sweep([p for p in state.labels if os.path.isdir(p)], state)
        result = self.backend.restore(list(state.labels), state)
        for p, why in (*swept.failed, *result.failed):
            _log.error("selinux_label_not_restored", path=p, reason=why)
        if not result.failed and not swept.failed:
            removed = self.backend.uninstall()
            self.backend.clear_files()
            _log.info("selinux_removed", module=removed, restored=len(result.restored))
        self.plan = self.ruleset = None
        self._by_rule, self._rules, self._previous = {}, {}, None

    def close(self) -> None:
        """Stop reading records; the module and labels stay (a restart re-applies without a gap)."""
        self._audit.close()

    def status(self) -> dict[str, Any]:
        state = self.backend.read_state()
        return {
            "module": state.module[:12],
            "labels": len(state.labels),
            "enforcing": enforcing(self.selinuxfs),
            **self._audit.status(),
            **self.counts,
        }

    # --- alerts from AVC records -------------------------------------------------------------
    def open_audit(self) -> None:
        self._audit.open()

    def poll(self, timeout_ms: int = 100) -> list[EnforcerAlert]:
        return self.handle_lines(self._audit.wait(timeout_ms))

    def drain(self) -> list[EnforcerAlert]:
        return self.handle_lines(self._audit.drain())

    def handle_lines(self, lines: list[str]) -> list[EnforcerAlert]:
        out: list[EnforcerAlert] = []
        for line in lines:
            rec = avc.parse(line)
            if rec is not None:
                alert = self.handle_record(rec)
                if alert is not None:
                    out.append(alert)
        return out

    def _find(self, rec: avc.AvcRecord, plan: Plan) -> str:
        """The path of a file the record names by its last component only (inode checks): a
        file karmor did not label itself, created since in a labelled directory, is found in
        the directories that hold files of its type."""
        paths = [p for p, _ in plan.index.files.get(rec.ttype, ())]
        dirs = {p for p in paths if os.path.isdir(p)} | {os.path.dirname(p) for p in paths}
        return _find_in(dirs, rec.name, rec.ino) or rec.name

    def handle_record(self, rec: avc.AvcRecord) -> EnforcerAlert | None:
        plan = self.plan
        if self._previous is not None and rec.ts_ns and rec.ts_ns < self._previous[0]:
            plan = self._previous[1]  # decided before the current module was installed
        if plan is None:
            return None
        att = avc.attribute(rec, plan.index)
        if att.status == avc.IGNORED:
            self.counts["ignored"] += 1
            return None
        self.counts["records"] += 1
        if att.status == avc.UNATTRIBUTED:
            self.counts["unattributed"] += 1
            _log.warning("selinux_unattributed", pid=rec.pid, comm=rec.comm, reason=att.reason)
            return None
        dec = avc.decision(rec, att, self._rules)
        if dec is None:
            self.counts["unattributed"] += 1
            return None
        key = (rec.pid, rec.stype, rec.ttype, rec.tclass, att.perm, rec.ino)
        last = self._recent.get(key)
        self._recent[key] = rec.ts_ns
        if last is not None and 0 <= rec.ts_ns - last < DUPLICATE_WINDOW_NS:
            self.counts["duplicates"] += 1
            return None
        if len(self._recent) > 4096:
            horizon = rec.ts_ns - DUPLICATE_WINDOW_NS
            self._recent = {k: t for k, t in self._recent.items() if t >= horizon}
        if not att.target.startswith("/") and rec.tclass != "process":
            att = dataclasses.replace(att, target=self._find(rec, plan))
        proc = read_proc(rec.pid, self.proc_root) if rec.pid else avc.Proc()
        event = avc.event_of(rec, att, proc)
        self.counts["alerts"] += 1
        return EnforcerAlert(event, dec, avc.data_text(rec, att))



def _find_in(dirs: set[str], name: str, ino: int) -> str:
    for d in sorted(dirs):
        cand = os.path.join(d, name)
        try:
            st = os.lstat(cand)
        except OSError:
            continue
        if not ino or st.st_ino == ino:
            return cand
    return ""


def cleanup(paths: Paths | None = None) -> list[str]:
    """`karmor-host run --cleanup`: restore every label karmor set and remove its module (no
    agent needed). Nothing is run where no earlier apply left state."""
    paths = paths or default_paths()
    backend = Backend(paths.state_dir / STATE_DIR_NAME)
    if not backend.state_file.exists() and not backend.module_file.exists():
        return []
    state = backend.read_state()
    SELinuxEnforcer(paths, backend=backend, protected=(), agent_domain="").remove()
    return [f"selinux: {len(state.labels)} label(s) restored, module {MODULE} removed"]

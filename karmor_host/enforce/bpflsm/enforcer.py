"""The BPF-LSM enforcer the agent drives (the Enforcer protocol of enforce/base.py):
plan.py decides what goes in the maps, backend.py puts it in the kernel, events.py turns the
kernel's decisions into alerts. docs/bpf-lsm.md has the design and its limits.
"""

from __future__ import annotations

import os
import sys
import time
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from karmor_host import log
from karmor_host.enforce.base import ApplyReport, EnforcerAlert
from karmor_host.enforce.bpflsm import events as lsm_events
from karmor_host.enforce.bpflsm.plan import BY, BankPlan, Protection, plan
from karmor_host.errors import EnforcerError, KernelError
from karmor_host.paths import Paths, default_paths
from karmor_host.policy.ruleset import Action, Category, Rule, RuleSet

if TYPE_CHECKING:
    from karmor_host.config import Config
    from karmor_host.enforce.bpflsm.backend import LsmBackend

_log = log.get("karmor.bpflsm")

PIN_DIR_NAME = "lsm"  # under Paths.bpffs_dir (/sys/fs/bpf/karmor)
_GENERATIONS_KEPT = 8  # rule sets remembered to name the rules of events decided under them


def _dir(path: str | Path) -> str:
    p = os.path.realpath(path)
    return p if p.endswith("/") else p + "/"


def agent_protection(config: Config | None, paths: Paths) -> Protection:
    """The files the agent needs to start and to read its policies (plan.Protection): its
    interpreter and entry script (run), its package, the standard library and the
    site-packages it imports from, a venv's pyvenv.cfg, its BPF objects, its configuration file
    and policy directory (read). Not the system's shared libraries: a rule denying those denies
    every program, and says so in its own alerts."""
    import site

    import karmor_host

    programs = {os.path.realpath(sys.executable)}
    entry = os.path.realpath(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    if entry and os.path.isfile(entry) and os.access(entry, os.X_OK):
        programs.add(entry)
    dirs = {_dir(Path(karmor_host.__file__).parent), _dir(Path(os.__file__).parent), _dir(paths.bpf_object_dir)}
    dirs.update(_dir(p) for p in site.getsitepackages() if os.path.isdir(p))
    files = []
    cfg = Path(sys.prefix) / "pyvenv.cfg"
    if cfg.is_file():
        files.append(os.path.realpath(cfg))
    if config is not None:
        dirs.add(_dir(config.policy_dir))
        if config.source and Path(config.source).is_file():
            files.append(os.path.realpath(config.source))
    return Protection(programs=tuple(sorted(programs)), files=tuple(sorted(files)), dirs=tuple(sorted(dirs)))


class BpfLsmEnforcer:
    name = "bpflsm"
    enforcer_name = BY

    def __init__(self, paths: Paths | None = None, config: Config | None = None, *,
                 backend: LsmBackend | None = None, protection: Protection | None = None) -> None:
        paths = paths or default_paths()
        if backend is None:
            from karmor_host.enforce.bpflsm.backend import OBJECT_NAME, LsmBackend

            backend = LsmBackend(paths.bpffs_dir / PIN_DIR_NAME, paths.bpf_object_dir / OBJECT_NAME)
        self.backend = backend
        self.protection = protection if protection is not None else agent_protection(config, paths)
        self.plan: BankPlan | None = None
        self.ruleset: RuleSet | None = None
        self._rules: OrderedDict[int, dict[int, Rule]] = OrderedDict()
        self.counts = {"decisions": 0, "alerts": 0, "unknown_rules": 0, "applies": 0}
        self.last_swap: dict[str, float] = {}

    # --- what the rest of the agent asks -------------------------------------------------

    def can_block(self, rule: Rule | None, category: Category | None) -> bool:
        if self.plan is None:
            return False
        if rule is None:
            return category in self.plan.kernel_postures
        return rule.id in self.plan.kernel_rules and rule.action is Action.BLOCK

    def reports(self, rule: Rule | None, category: Category | None) -> bool:
        if self.plan is None:
            return False
        if rule is None:
            return category in self.plan.kernel_postures
        return rule.id in self.plan.kernel_rules

    # --- apply ------------------------------------------------------------------------

    def apply(self, ruleset: RuleSet) -> ApplyReport:
        t0 = time.monotonic()
        try:
            bp = plan(ruleset, self.backend.resolve, self.protection)
            generation = self.backend.generation + 1
            self.last_swap = self.backend.swap(bp, generation)
            self.backend.pin()
        except (KernelError, OSError) as exc:
            message = exc.message if isinstance(exc, KernelError) else str(exc)
            raise EnforcerError(f"BPF-LSM: rule set not applied, the previous one stays: {message}") from exc
        self.plan, self.ruleset = bp, ruleset
        self._rules[generation] = ruleset.by_id()
        while len(self._rules) > _GENERATIONS_KEPT:
            self._rules.popitem(last=False)
        self.counts["applies"] += 1
        seconds = time.monotonic() - t0
        notes = list(bp.notes)
        if bp.pending:
            notes.append("not there yet (enforced once they exist): " + ", ".join(bp.pending))
        _log.info("bpflsm_applied", generation=generation, entries=bp.entries(), kernel_rules=len(bp.kernel_rules),
                  postures=sorted(c.value for c in bp.kernel_postures), seconds=round(seconds, 4),
                  swap={k: round(v, 4) for k, v in self.last_swap.items()})
        return ApplyReport(self.name, bp.statuses, tuple(notes), seconds)

    def refresh(self) -> ApplyReport | None:
        """Re-resolves every key; re-applies when a directory was replaced or a pending path
        appeared (the rule set is the same, so nothing else changes)."""
        if self.ruleset is None or self.plan is None:
            return None
        fresh = plan(self.ruleset, self.backend.resolve, self.protection)
        if fresh.render() == self.plan.render():
            return None
        _log.info("bpflsm_refresh", pending_before=list(self.plan.pending), pending_now=list(fresh.pending))
        return self.apply(self.ruleset)

    # --- decisions --------------------------------------------------------------------

    def _lookup(self, rule_id: int, generation: int) -> Rule | None:
        rules = self._rules.get(generation)
        if rules is not None and rule_id in rules:
            return rules[rule_id]
        for rules in reversed(self._rules.values()):
            if rule_id in rules:
                return rules[rule_id]
        return None

    def poll(self, timeout_ms: int = 100) -> list[EnforcerAlert]:
        out: list[EnforcerAlert] = []
        for rec in self.backend.read(timeout_ms):
            alerts, unknown = lsm_events.alerts(rec, self._lookup)
            self.counts["decisions"] += 1
            self.counts["alerts"] += len(alerts)
            if unknown:
                self.counts["unknown_rules"] += len(unknown)
                _log.warning("bpflsm_unknown_rule", rule_ids=unknown, generation=rec.generation,
                             path=rec.event.path, exe=rec.event.exe)
            out.extend(alerts)
        return out

    def status(self) -> dict[str, Any]:
        b = self.backend
        generation, drops = -1, -1
        if not b.closed:  # the maps are gone once closed
            try:
                generation, drops = b.generation, b.drops()
            except KernelError as exc:
                _log.warning("bpflsm_status_unreadable", error=exc.message)
        return {
            "mode": b.mode,
            "pinned": b.pinned,
            "pin_dir": str(b.pin_dir),
            "generation": generation,
            "load_seconds": round(b.load_seconds, 3),
            "last_swap_seconds": {k: round(v, 4) for k, v in self.last_swap.items()},
            "entries": self.plan.entries() if self.plan else 0,
            "kernel_rules": len(self.plan.kernel_rules) if self.plan else 0,
            "pending": list(self.plan.pending) if self.plan else [],
            "drops": drops,
            "undecodable": b.undecodable,
            **self.counts,
        }

    # --- end --------------------------------------------------------------------------

    def close(self) -> None:
        self.backend.close()

    def remove(self) -> None:
        removed = self.backend.remove()
        self.plan = None
        _log.info("bpflsm_removed", pins=removed)


def exempt_early(paths: Paths) -> bool:
    """If BPF-LSM state is pinned, exempt the calling process now; True when it did. Errors are
    logged, never raised: the agent must start anyway."""
    state = paths.bpffs_dir / PIN_DIR_NAME / "lsm_state"
    if not state.exists():
        return False
    try:
        from karmor_host.enforce.bpflsm.backend import exempt_pinned

        exempt_pinned(state, os.getpid())
    except (KernelError, OSError) as exc:
        _log.warning("bpflsm_early_exemption_failed", error=str(exc))
        return False
    return True


def cleanup(paths: Paths | None = None) -> list[str]:
    """`karmor-host run --cleanup`: unpin everything BPF-LSM left (no agent needed)."""
    from karmor_host.enforce.bpflsm.backend import remove_pins

    paths = paths or default_paths()
    pin_dir = paths.bpffs_dir / PIN_DIR_NAME
    removed = remove_pins(pin_dir)
    remove_pins(pin_dir.with_name(pin_dir.name + "-new"))
    return [str(pin_dir / name) for name in removed]

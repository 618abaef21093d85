"""The one interface every enforcer implements, and the apply report it returns.

The core never branches on an enforcer's name: what a backend cannot express becomes an
apply-report line (enforced / audit-only, with the reason), never a silent skip.

Life cycle, as the agent (karmor_host/agent.py) drives it:

    enforcer = registry.create(name, paths=paths, config=config)   # adopts what a previous run left
    report = enforcer.apply(ruleset)       # after every policy change; atomic; raises EnforcerError
    report = enforcer.refresh()            # every rescan (30 s): None unless something moved
    alerts = enforcer.poll(100)            # its own thread: decisions the enforcer took itself
    enforcer.close()                       # agent stops: kernel state STAYS (no gap on restart)
    enforcer.remove()                      # `karmor-host run --cleanup`: everything goes

Who raises which alert. The monitor's matcher (alerts/match.py) sees every event; an enforcer
that reports its own decisions (an LSM that blocks or audits in the kernel and says which rule
did it) answers `reports(rule, category) -> True` for those rules, and the matcher then stays
silent on them, so one access gives one alert. `can_block(rule, category)` says whether a
Block rule (or a category's block posture, rule None) is really enforced; when it is not, the
matcher reports `Audit (Block)` / `Audit (Allow)` as KubeArmor does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, Union

from karmor_host.alerts.match import Decision
from karmor_host.kernel.events import Event
from karmor_host.policy.ruleset import Category, Rule, RuleSet

# bool for the whole enforcer, or per rule (None: the category's default posture)
CanBlock = Union[bool, Callable[[Union[Rule, None], Category], bool]]


@dataclass(frozen=True)
class RuleStatus:
    rule_id: int
    policy: str
    mode: str  # "enforced" | "audit-only" | "monitor" | "pending" (target not there yet)
    by: str  # who acts on it: "BPFLSM", "AppArmor", "SELinux", "eBPF Monitor"
    reason: str = ""


@dataclass(frozen=True)
class ApplyReport:
    enforcer: str
    rules: tuple[RuleStatus, ...] = ()
    notes: tuple[str, ...] = field(default=())
    # how long the enforcer took (plan + kernel update), for `status` and docs/bpf-lsm.md
    seconds: float = 0.0

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.rules:
            out[r.mode] = out.get(r.mode, 0) + 1
        return out


@dataclass(frozen=True)
class EnforcerAlert:
    """One alert from a decision the enforcer took itself: the access as the kernel saw it
    (process context included), the decision (rule or DefaultPosture, Action, PolicyName,
    Operation) and, when not empty, the record's Data (e.g. `syscall=SYS_OPENAT
    flags=O_RDONLY lsm=SECURITY_FILE_OPEN`). The pipeline sends it with the enforcer's own
    name in Enforcer (AlertPipeline.handle_enforcer)."""

    event: Event
    decision: Decision
    data: str = ""


class Enforcer(Protocol):
    name: str  # config name: "none", "bpflsm", "apparmor", "selinux"
    enforcer_name: str  # the Enforcer field of the alerts it raises: "BPFLSM", "AppArmor", ...

    def can_block(self, rule: Rule | None, category: Category | None) -> bool:
        """Whether this enforcer stops what `rule` denies (rule None: the category's block
        posture). False makes the matcher report `Audit (Block)` / `Audit (Allow)`."""
        ...

    def reports(self, rule: Rule | None, category: Category | None) -> bool:
        """Whether this enforcer raises the alert for `rule` itself (rule None: the category's
        default posture); the monitor's matcher then stays silent on it."""
        ...

    def apply(self, ruleset: RuleSet) -> ApplyReport:
        """Install `ruleset` in one step; on failure raise EnforcerError and keep the old one."""
        ...

    def refresh(self) -> ApplyReport | None:
        """Re-check what depends on the file system (a directory replaced, a path that now
        exists) and re-apply the current rule set if needed; None when nothing changed."""
        ...

    def poll(self, timeout_ms: int) -> list[EnforcerAlert]:
        """Wait up to timeout_ms for decisions the enforcer took; return their alerts."""
        ...

    def status(self) -> dict[str, Any]:
        """Counters and state for `karmor-host status` (plain JSON-able data)."""
        ...

    def close(self) -> None:
        """Release this process's handles. Enforcement installed in the kernel stays, so a
        stopped or restarting agent leaves no gap (docs/operations.md)."""
        ...

    def remove(self) -> None:
        """Remove everything this enforcer installed (`karmor-host run --cleanup`)."""
        ...

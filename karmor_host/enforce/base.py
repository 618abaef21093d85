"""The one interface every enforcer implements, and the apply report it returns.

The core never branches on an enforcer's name: what a backend cannot express becomes an
apply-report line (enforced / audit-only, with the reason), never a silent skip.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from karmor_host.policy.ruleset import RuleSet


@dataclass(frozen=True)
class RuleStatus:
    rule_id: int
    policy: str
    mode: str  # "enforced" | "audit-only" | "monitor"
    by: str  # who acts on it: "BPFLSM", "AppArmor", "SELinux", "eBPF Monitor"
    reason: str = ""


@dataclass(frozen=True)
class ApplyReport:
    enforcer: str
    rules: tuple[RuleStatus, ...] = ()
    notes: tuple[str, ...] = field(default=())

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.rules:
            out[r.mode] = out.get(r.mode, 0) + 1
        return out


class Enforcer(Protocol):
    name: str
    can_block: bool  # False: Block/Allow rules are reported as Audit (Block)/(Allow)

    def apply(self, ruleset: RuleSet) -> ApplyReport:
        """Install `ruleset` in one step; on failure raise EnforcerError and keep the old one."""
        ...

    def remove(self) -> None:
        """Remove everything this enforcer installed."""
        ...

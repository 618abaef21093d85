"""The enforcer for kernels with no usable LSM: nothing is blocked, everything is watched.

Block and Allow rules become alerts from the eBPF monitor marked `Audit (Block)` /
`Audit (Allow)`, so the admin sees what enforcement would have done.
"""

from __future__ import annotations

import time
from typing import Any

from karmor_host.enforce.base import ApplyReport, EnforcerAlert, RuleStatus
from karmor_host.policy.ruleset import Action, Category, Rule, RuleSet

MONITOR = "eBPF Monitor"


class NoneEnforcer:
    name = "none"
    enforcer_name = MONITOR

    def __init__(self, **_: object) -> None:
        pass  # nothing to find or adopt: this enforcer installs nothing

    def can_block(self, rule: Rule | None, category: Category | None) -> bool:
        return False

    def reports(self, rule: Rule | None, category: Category | None) -> bool:
        return False  # the monitor's matcher raises every alert

    def apply(self, ruleset: RuleSet) -> ApplyReport:
        lines = []
        for rule in ruleset.rules:
            if rule.action is Action.AUDIT:
                lines.append(RuleStatus(rule.id, rule.policy, "monitor", MONITOR))
            else:
                lines.append(RuleStatus(rule.id, rule.policy, "audit-only", MONITOR,
                                        f"no enforcer: {rule.action.value} reported as Audit ({rule.action.value})"))
        return ApplyReport(self.name, tuple(lines))

    def refresh(self) -> ApplyReport | None:
        return None

    def poll(self, timeout_ms: int) -> list[EnforcerAlert]:
        time.sleep(timeout_ms / 1000)
        return []

    def status(self) -> dict[str, Any]:
        return {}

    def close(self) -> None:
        return None

    def remove(self) -> None:
        return None

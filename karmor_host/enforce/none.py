"""The enforcer for kernels with no usable LSM: nothing is blocked, everything is watched.

Block and Allow rules become alerts from the eBPF monitor marked `Audit (Block)` /
`Audit (Allow)`, so the admin sees what enforcement would have done.
"""

from __future__ import annotations

from karmor_host.enforce.base import ApplyReport, RuleStatus
from karmor_host.policy.ruleset import Action, RuleSet

MONITOR = "eBPF Monitor"


class NoneEnforcer:
    name = "none"
    can_block = False

    def apply(self, ruleset: RuleSet) -> ApplyReport:
        lines = []
        for rule in ruleset.rules:
            if rule.action is Action.AUDIT:
                lines.append(RuleStatus(rule.id, rule.policy, "monitor", MONITOR))
            else:
                lines.append(RuleStatus(rule.id, rule.policy, "audit-only", MONITOR,
                                        f"no enforcer: {rule.action.value} reported as Audit ({rule.action.value})"))
        return ApplyReport(self.name, tuple(lines))

    def remove(self) -> None:
        return None

"""A logged packet -> a MatchedNetworkPolicy record (pure, given the attribution).

The log prefix names the rule and the verdict (plan.log_prefix); the payload gives
addresses, protocol and ports; the attribution gives the process.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from karmor_host.alerts import record
from karmor_host.alerts.record import DEFAULT_POSTURE, HostInfo
from karmor_host.firewall.attribution import ProcessRef
from karmor_host.firewall.nflog import LoggedPacket
from karmor_host.firewall.packet import Headers
from karmor_host.firewall.plan import LOG_PREFIX, POSTURE_ID
from karmor_host.policy.netpolicy.model import Direction
from karmor_host.policy.netpolicy.ruleset import NetRule

RESULTS = {"accept": "Passed", "drop": "Dropped", "reject": "Rejected"}
_DIRECTIONS = {"in": Direction.INGRESS, "out": Direction.EGRESS}


@dataclass(frozen=True)
class Prefix:
    rule_id: int
    direction: Direction
    verdict: str


def parse_prefix(prefix: str) -> Prefix | None:
    """`karmor:<id>:<in|out>:<verdict>` -> Prefix; None for anything else."""
    parts = prefix.split(":")
    if len(parts) != 4 or parts[0] != LOG_PREFIX or not parts[1].isdigit():
        return None
    direction = _DIRECTIONS.get(parts[2])
    if direction is None or parts[3] not in RESULTS:
        return None
    return Prefix(int(parts[1]), direction, parts[3])


def resource(h: Headers) -> str:
    if h.version == 0:
        return "protocol=unknown"
    text = f"protocol={h.proto_name} saddr={h.src}"
    if h.sport or h.dport:
        return f"{text} sport={h.sport} daddr={h.dst} dport={h.dport}"
    text += f" daddr={h.dst}"
    return text + (f" type={h.icmp_type}" if h.icmp_type >= 0 else "")


def data(p: Prefix, iface: str, proc: ProcessRef, uid: int | None) -> str:
    text = f"direction={p.direction.value} iface={iface or '-'} rule={p.rule_id} attribution={proc.how}"
    if not proc.found:
        if uid is not None:
            text += f" socket_uid={uid}"
        text += f" reason={proc.note.replace(' ', '_')}" if proc.note else ""
    return text


def build(
    pkt: LoggedPacket, p: Prefix, h: Headers, rules: Mapping[int, NetRule], proc: ProcessRef,
    host: HostInfo, iface: str,
) -> tuple[dict, str]:
    """(record, policy name for throttling and counters)."""
    rule = rules.get(p.rule_id)
    if p.rule_id == POSTURE_ID:
        name, severity, tags, message = DEFAULT_POSTURE, None, (), ""
        action = "Audit" if p.verdict == "accept" else "Block"
    elif rule is not None:
        name, severity, tags, message, action = rule.policy, rule.severity, rule.tags, rule.message, rule.action.value
    else:  # the rule was replaced between the packet and now; the kernel's verdict stands
        name, severity, tags, message = f"unknown-rule-{p.rule_id}", None, (), ""
        action = "Audit" if p.verdict == "accept" else "Block"
    uid = proc.uid if proc.found else (pkt.uid if pkt.uid is not None else 0)
    rec = record.network_alert(
        host, ts_ns=pkt.ts_ns, policy_name=name, severity=severity, tags=tags, message=message,
        action=action, result=RESULTS[p.verdict], resource=resource(h), data=data(p, iface, proc, pkt.uid),
        pid=proc.pid, ppid=proc.ppid, uid=uid, process=proc.exe, parent_process=proc.parent_exe,
    )
    return rec, name

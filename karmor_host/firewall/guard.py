"""The lock-out guard: a rule set that could cut the admin off is refused before it is applied.

Two promises (docs/network-policy.md, "Never locked out"):
- Loopback: traffic on `lo` passes unless a rule of that direction names `lo` in its iface list.
- SSH: for every established TCP session on an SSH port of this host (22 and the ports sshd
  listens on), both the client's packet to the SSH port and the reply must pass the new rules
  *as if the session were new*. Conntrack normally carries established sessions, but not when
  its state is lost: the first apply on a host where nothing tracked connections yet, a
  `conntrack -F`, a full table. A rule set that fails this is refused, unless a rule names
  that port explicitly: then the author decided about SSH, and the guard stands aside.
Plus the structural checks on the plan itself: each base chain starts with the established
accept, and the loopback accept is there unless a rule names lo.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from karmor_host.firewall.evaluate import Flow, evaluate
from karmor_host.firewall.plan import CHAIN, Plan
from karmor_host.policy.netpolicy.model import Direction, Protocol
from karmor_host.policy.netpolicy.ruleset import NetRuleSet

LOOPBACK_PROBES = (("127.0.0.1", 4), ("::1", 6))


@dataclass(frozen=True)
class Session:
    """An established TCP session on one of this host's SSH ports."""

    local: str
    local_port: int
    peer: str
    peer_port: int
    iface: str  # the interface the route to the peer uses ("" when unknown)

    def text(self) -> str:
        return f"{self.peer}:{self.peer_port} -> {self.local}:{self.local_port}" + (
            f" via {self.iface}" if self.iface else "")


def _blocked(rs: NetRuleSet, flow: Flow) -> str:
    d = evaluate(rs, flow)
    if d.verdict == "accept":
        return ""
    if d.rule is not None:
        return f"{d.verdict} by rule {d.rule.id} ({d.rule.policy} {d.rule.field})"
    return f"{d.verdict} by the default posture {rs.posture.value} ({flow.direction.value} is a whitelist)"


def check_sessions(rs: NetRuleSet, sessions: Iterable[Session]) -> list[str]:
    problems = []
    for s in sessions:
        if rs.names_port(s.local_port):
            continue
        inbound = Flow(Direction.INGRESS, s.peer, s.local, Protocol.TCP, s.local_port, s.iface)
        reply = Flow(Direction.EGRESS, s.local, s.peer, Protocol.TCP, s.peer_port, s.iface)
        for what, flow in (("its client's packets", inbound), ("its replies", reply)):
            why = _blocked(rs, flow)
            if why:
                problems.append(
                    f"the established SSH session {s.text()} would lose {what} if the firewall met it "
                    f"as a new flow ({why}); allow it, or name port {s.local_port} in a rule to decide "
                    f"about SSH explicitly")
    return problems


def check_loopback(rs: NetRuleSet) -> list[str]:
    problems = []
    for direction in Direction:
        if rs.names_iface("lo", direction):
            continue  # named explicitly: the author's decision
        for addr, _family in LOOPBACK_PROBES:
            why = _blocked(rs, Flow(direction, addr, addr, Protocol.TCP, 1, "lo"))
            if why:
                problems.append(f"loopback traffic ({addr}, {direction.value}) would be blocked: {why}")
    return problems


def check_plan(rs: NetRuleSet, plan: Plan) -> list[str]:
    problems = []
    for direction in Direction:
        comments = plan.chains.get(CHAIN[direction], ())
        if not comments or comments[0] != "karmor: replies and related flows":
            problems.append(f"chain {CHAIN[direction]} does not start with the established/related accept")
        if not rs.names_iface("lo", direction) and "karmor: loopback (no rule names lo)" not in comments:
            problems.append(f"chain {CHAIN[direction]} lacks the loopback accept")
    return problems


def check(rs: NetRuleSet, plan: Plan, sessions: Iterable[Session]) -> list[str]:
    """Every reason to refuse `rs` (empty: safe to apply)."""
    return [*check_plan(rs, plan), *check_loopback(rs), *check_sessions(rs, sessions)]

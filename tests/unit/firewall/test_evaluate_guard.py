"""evaluate.py (the firewall's semantics in Python) and the lock-out guard built on it."""

from __future__ import annotations

from karmor_host.firewall import guard, plan
from karmor_host.firewall.evaluate import Flow, evaluate
from karmor_host.policy.netpolicy import Direction, Protocol
from karmor_host.policy.ruleset import Posture

from .helpers import fixture, policy

IN, OUT = Direction.INGRESS, Direction.EGRESS
TCP, UDP = Protocol.TCP, Protocol.UDP


def test_whitelist_with_block_posture() -> None:
    rs = fixture("web-server", Posture.BLOCK)
    ssh = evaluate(rs, Flow(IN, "10.20.1.1", "10.0.0.1", TCP, 22, "eth0"))
    assert ssh.verdict == "accept" and ssh.rule is not None and ssh.rule.field == "spec.ingress[0]"
    wrong_iface = evaluate(rs, Flow(IN, "10.20.1.1", "10.0.0.1", TCP, 22, "eth1"))
    assert (wrong_iface.verdict, wrong_iface.posture, wrong_iface.alert) == ("drop", True, True)
    assert evaluate(rs, Flow(IN, "203.0.113.9", "10.0.0.1", TCP, 8200, "eth1")).verdict == "accept"
    assert evaluate(rs, Flow(IN, "203.0.113.9", "10.0.0.1", TCP, 8444, "eth1")).verdict == "drop"
    egress = evaluate(rs, Flow(OUT, "10.0.0.1", "192.0.2.7", TCP, 443, "eth0"))
    assert (egress.verdict, egress.posture) == ("reject", True)
    assert evaluate(rs, Flow(OUT, "fd00::1", "2001:db8::1", TCP, 443, "eth0")).verdict == "accept"


def test_block_before_audit_before_allow() -> None:
    rs = fixture("web-server", Posture.AUDIT)
    blocked = evaluate(rs, Flow(IN, "192.0.2.5", "10.0.0.1", TCP, 443, "eth0"))  # also an Allow
    assert (blocked.verdict, blocked.rule.action.value) == ("drop", "Block")
    ping = evaluate(rs, Flow(IN, "203.0.113.9", "10.0.0.1", Protocol.ICMP, 0, "eth0", icmp_type=8))
    assert (ping.verdict, ping.alert, ping.rule.action.value) == ("accept", True, "Audit")
    audited = evaluate(rs, Flow(IN, "203.0.113.9", "10.0.0.1", UDP, 5000, "eth0"))
    assert (audited.verdict, audited.posture, audited.alert) == ("accept", True, True)


def test_loopback_and_neighbour_discovery_pass_unless_named() -> None:
    rs = fixture("web-server", Posture.BLOCK)
    assert evaluate(rs, Flow(IN, "127.0.0.1", "127.0.0.1", UDP, 9, "lo")).why == "loopback"
    nd = Flow(OUT, "fe80::1", "ff02::1:ff00:1", Protocol.ICMPV6, 0, "eth0", icmp_type=135)
    assert evaluate(rs, nd).why == "IPv6 neighbour discovery"
    named = fixture("loopback-named")
    redis = evaluate(named, Flow(OUT, "127.0.0.1", "127.0.0.1", TCP, 6379, "lo"))
    assert (redis.verdict, redis.rule.policy) == ("reject", "no-local-redis")
    assert evaluate(named, Flow(IN, "127.0.0.1", "127.0.0.1", TCP, 6379, "lo")).why == "loopback"


def test_no_whitelist_means_unmatched_flows_pass_silently() -> None:
    rs = policy("b", "  egress:\n  - to:\n    - ipBlock:\n        cidr: 192.0.2.0/24\n  action: Block\n",
                Posture.BLOCK)
    d = evaluate(rs, Flow(OUT, "10.0.0.1", "198.51.100.1", TCP, 80, "eth0"))
    assert (d.verdict, d.alert) == ("accept", False)


SESSION = guard.Session("10.0.0.1", 22, "10.9.9.9", 50123, "eth0")
INGRESS_WHITELIST = "  ingress:\n  - ports:\n    - protocol: TCP\n      port: 80\n  action: Allow\n"
EGRESS_WHITELIST = "  egress:\n  - ports:\n    - protocol: UDP\n      port: 53\n  action: Allow\n"


def test_guard_refuses_what_would_cut_an_ssh_session() -> None:
    rs = policy("web", INGRESS_WHITELIST, Posture.BLOCK)
    (problem,) = guard.check(rs, plan.build(rs), [SESSION])
    assert problem.startswith("the established SSH session 10.9.9.9:50123 -> 10.0.0.1:22 via eth0 would "
                              "lose its client's packets if the firewall met it as a new flow (drop by the "
                              "default posture block (ingress is a whitelist))")
    assert "name port 22 in a rule" in problem
    out = policy("dns-only", EGRESS_WHITELIST, Posture.BLOCK)
    (reply,) = guard.check(out, plan.build(out), [SESSION])
    assert "would lose its replies" in reply and "reject by the default posture block" in reply


def test_guard_accepts_audit_posture_an_allow_or_an_explicit_ssh_rule() -> None:
    audit = policy("web", INGRESS_WHITELIST, Posture.AUDIT)
    assert guard.check(audit, plan.build(audit), [SESSION]) == []
    allowed = policy("web", INGRESS_WHITELIST.replace("port: 80", "port: 80\n    - protocol: TCP\n      port: ssh"),
                     Posture.BLOCK)
    assert guard.check(allowed, plan.build(allowed), [SESSION]) == []
    explicit_block = policy("no-ssh", "  ingress:\n  - ports:\n    - protocol: TCP\n      port: 22\n"
                            "  action: Block\n", Posture.BLOCK)
    assert guard.check(explicit_block, plan.build(explicit_block), [SESSION]) == []
    no_sessions = policy("web", INGRESS_WHITELIST, Posture.BLOCK)
    assert guard.check(no_sessions, plan.build(no_sessions), []) == []


def test_guard_loopback_promise_and_plan_invariants() -> None:
    rs = policy("all-out", "  egress:\n  - to:\n    - ipBlock:\n        cidr: 127.0.0.0/8\n  action: Block\n",
                Posture.BLOCK)
    assert guard.check_loopback(rs) == []  # lo is accepted before any rule
    p = plan.build(rs)
    assert guard.check_plan(rs, p) == []
    broken = plan.Plan(p.batch, {**p.chains, "input": p.chains["input"][2:]}, p.counters)
    assert guard.check_plan(rs, broken) == [
        "chain input does not start with the established/related accept",
        "chain input lacks the loopback accept"]

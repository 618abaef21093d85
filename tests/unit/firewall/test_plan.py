"""plan.py: the nftables batch for fixture policies against golden files, and its invariants.

Regenerate the golden files after a deliberate change with UPDATE_GOLDEN=1 and review the diff.
"""

from __future__ import annotations

import json
import os

import pytest

from karmor_host.firewall import plan
from karmor_host.policy.netpolicy import NetRuleSet
from karmor_host.policy.ruleset import Posture

from .helpers import GOLDEN, fixture, policy

CASES = [("web-server", Posture.BLOCK), ("web-server", Posture.AUDIT), ("loopback-named", Posture.AUDIT)]


def _golden(name: str, posture: Posture) -> tuple[str, str]:
    doc = plan.build(fixture(name, posture)).document()
    return json.dumps(doc, indent=1, sort_keys=True) + "\n", f"{name}.{posture.value}.json"


@pytest.mark.parametrize(("name", "posture"), CASES, ids=lambda v: getattr(v, "value", v))
def test_plan_matches_golden(name: str, posture: Posture) -> None:
    text, filename = _golden(name, posture)
    path = GOLDEN / filename
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text()


def _objects(batch: tuple[dict, ...]) -> list[dict]:
    return [obj for cmd in batch for verb in cmd.values() for obj in verb.values()]


@pytest.mark.parametrize(("name", "posture"), CASES, ids=lambda v: getattr(v, "value", v))
def test_only_our_table_is_named_and_it_is_replaced_first(name: str, posture: Posture) -> None:
    p = plan.build(fixture(name, posture))
    table = {"table": {"family": "inet", "name": "karmor"}}
    assert list(p.batch[:3]) == [{"add": table}, {"delete": table}, {"add": table}]
    for obj in _objects(p.batch):
        assert obj.get("family") == "inet" and obj.get("table", obj.get("name")) == "karmor"
    assert all(set(cmd) == {"add"} for cmd in p.batch[3:])


def test_base_chains_accept_replies_first_then_loopback_and_nd() -> None:
    p = plan.build(fixture("web-server", Posture.BLOCK))
    for chain in ("input", "output"):
        assert p.chains[chain][:3] == (
            "karmor: replies and related flows", "karmor: loopback (no rule names lo)",
            "karmor: IPv6 neighbour discovery and MLD")
    assert p.chains["input"][-1] == "karmor: default posture block"
    assert p.chains["output"][-1] == "karmor: default posture block"


def test_a_direction_without_allow_rules_has_no_posture() -> None:
    rs = policy("b", "  ingress:\n  - from:\n    - ipBlock:\n        cidr: 192.0.2.0/24\n  action: Block\n",
                Posture.BLOCK)
    p = plan.build(rs)
    assert "posture_in" not in p.chains and "posture_out" not in p.chains
    assert not any("default posture" in c for c in p.chains["input"])


def test_loopback_named_in_egress_keeps_the_input_accept() -> None:
    p = plan.build(fixture("loopback-named"))
    assert "karmor: loopback (no rule names lo)" in p.chains["input"]
    assert "karmor: loopback (no rule names lo)" not in p.chains["output"]


def _rule_exprs(p: plan.Plan, chain: str, rule_id: int) -> list[list[dict]]:
    out = []
    for cmd in p.batch:
        rule = cmd.get("add", {}).get("rule")
        if rule and rule["chain"] == chain and rule["comment"].startswith(f"karmor rule {rule_id} "):
            out.append(rule["expr"])
    return out


def _by_field(rs: NetRuleSet, policy_name: str, field: str) -> int:
    (rid,) = [r.id for r in rs.rules if r.policy == policy_name and r.field == field]
    return rid


def test_overlapping_ports_and_networks_are_merged() -> None:
    rs = fixture("web-server")
    p = plan.build(rs)
    (web_tcp, web_udp) = _rule_exprs(p, "input", _by_field(rs, "web-server", "spec.ingress[1]"))
    assert web_tcp[0]["match"]["right"] == {"set": [80, 443, {"range": [8000, 8443]}]}
    assert web_udp[0]["match"] == {"op": "==", "left": {"payload": {"protocol": "udp", "field": "dport"}},
                                   "right": 443}
    ssh4, ssh6 = _rule_exprs(p, "input", _by_field(rs, "web-server", "spec.ingress[0]"))
    assert ssh4[0]["match"]["right"] == "eth0" and ssh4[1]["match"]["right"] == 22
    # 10.20.5.0/24 lies inside 10.20.0.0/16: one prefix, not an overlapping set
    assert ssh4[2]["match"]["right"] == {"prefix": {"addr": "10.20.0.0", "len": 16}}
    assert ssh6[2]["match"]["left"] == {"payload": {"protocol": "ip6", "field": "saddr"}}


def test_icmp_meets_only_its_own_ip_version_and_slash_zero_is_the_family() -> None:
    rs = fixture("web-server")
    p = plan.build(rs)
    icmp = _rule_exprs(p, "input", _by_field(rs, "web-server", "spec.ingress[2]"))
    assert [e[0]["match"]["right"] for e in icmp] == ["icmp", "ipv6-icmp"]
    https4, https6 = _rule_exprs(p, "output", _by_field(rs, "web-server", "spec.egress[1]"))
    assert https6[1]["match"] == {"op": "==", "left": {"meta": {"key": "nfproto"}}, "right": "ipv6"}
    assert https4[1]["match"]["right"] == {"prefix": {"addr": "198.51.100.0", "len": 24}}


def test_alerting_rules_log_under_a_rate_limit_and_count_what_they_suppress() -> None:
    rs = fixture("web-server", Posture.BLOCK)
    opts = plan.PlanOptions(nflog_group=7, rate_per_second=5, burst=9, snaplen=96)
    p = plan.build(rs, opts)
    block = _by_field(rs, "web-server", "spec.ingress[3]")
    chain = [c["add"]["rule"]["expr"] for c in p.batch
             if c.get("add", {}).get("rule", {}).get("chain") == f"r{block}"]
    assert chain == [
        [{"limit": {"rate": 5, "per": "second", "burst": 9, "inv": True}}, {"counter": f"r{block}_over"},
         {"drop": None}],
        [{"log": {"group": 7, "snaplen": 96, "prefix": f"karmor:{block}:in:drop"}},
         {"counter": f"r{block}_log"}, {"drop": None}],
    ]
    assert {f"r{block}_over", f"r{block}_log", "posture_in_over", "posture_out_log"} <= set(p.counters)


def test_verdicts() -> None:
    from karmor_host.policy.netpolicy import Direction
    from karmor_host.policy.ruleset import Action

    assert plan.verdict_of(Action.AUDIT, Direction.EGRESS) == "accept"
    assert plan.verdict_of(Action.BLOCK, Direction.INGRESS) == "drop"
    assert plan.verdict_of(Action.BLOCK, Direction.EGRESS) == "reject"
    assert plan.log_prefix(12, Direction.EGRESS, "reject") == "karmor:12:out:reject"


def test_removal_names_only_our_table() -> None:
    table = {"table": {"family": "inet", "name": "karmor"}}
    assert plan.removal() == ({"add": table}, {"delete": table})

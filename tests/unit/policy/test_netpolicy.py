"""KubeArmorNetworkPolicy: validation cases with exact lines, the model, the compiler.

data/net/bad: each breaks one rule; the file yields no policy and exactly the expected lines.
data/net/warn: each holds an unambiguous slip; accepted with exactly the expected warnings.
data/net/good: KubeArmor's published shape and our own; accepted with the expected lines.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from karmor_host.policy import HostIdentity, load_text
from karmor_host.policy.netpolicy import (
    Direction, NetworkPolicy, PortSpec, Protocol, compile_network, host_policies, network_policies,
)
from karmor_host.policy.netpolicy import messages as N
from karmor_host.policy.netpolicy.services import parse as parse_services
from karmor_host.policy.ruleset import Action, Posture
from tests.policytext import network_policy

from .helpers import DATA
from .test_cases import _template_regex

NET = DATA / "net"
HOST = HostIdentity.detect(hostname="web-1")


def cases(group: str) -> list[Path]:
    return sorted((NET / group).glob("*.yaml"))


def run(path: Path) -> tuple[list[str], object]:
    result = load_text(path.read_text(encoding="utf-8"), path.name)
    return [str(p) for p in result.problems], result


def expected(path: Path) -> list[str]:
    return path.with_suffix(".expected").read_text(encoding="utf-8").splitlines()


def load_net(text: str) -> NetworkPolicy:
    result = load_text(text, "n.yaml")
    assert result.valid, [str(p) for p in result.problems]
    (policy,) = result.policies
    assert isinstance(policy, NetworkPolicy)
    return policy


@pytest.mark.parametrize("path", cases("bad"), ids=lambda p: p.stem)
def test_bad_case_is_rejected_with_exact_problems(path: Path) -> None:
    lines, result = run(path)
    assert lines == expected(path)
    assert not result.valid and result.policies == ()


@pytest.mark.parametrize("path", cases("warn"), ids=lambda p: p.stem)
def test_slip_is_accepted_with_exact_warnings(path: Path) -> None:
    lines, result = run(path)
    assert lines == expected(path) and lines
    assert result.valid and len(result.policies) == 1
    assert all(p.severity == "warning" for p in result.problems)


@pytest.mark.parametrize("path", cases("good"), ids=lambda p: p.stem)
def test_good_policy_is_accepted(path: Path) -> None:
    lines, result = run(path)
    assert lines == expected(path)
    assert result.valid and len(result.policies) == 1
    assert isinstance(result.policies[0], NetworkPolicy)


def test_every_network_message_template_has_a_case() -> None:
    outputs = "\n".join(
        p.with_suffix(".expected").read_text(encoding="utf-8") for g in ("bad", "warn") for p in cases(g))
    missing = [name for name, t in vars(N).items()
               if name[:2] in ("E_", "W_") and not _template_regex(t).search(outputs)]
    assert missing == []


def test_malformed_cidr_names_its_line_and_field() -> None:
    text = network_policy("x", "  egress:\n  - to:\n    - ipBlock:\n        cidr: 10.1.2.300/24\n  action: Block\n")
    result = load_text(text, "x.yaml")
    (p,) = result.problems
    assert (p.line, p.col, p.field) == (12, 15, "spec.egress[0].to[0].ipBlock.cidr")
    assert "Octet 300 (> 255)" in p.message and result.policies == ()


def test_model_holds_normalised_values() -> None:
    policy = load_net((NET / "good" / "compat-example.yaml").read_text())
    ingress, egress = policy.rules
    assert ingress.direction is Direction.INGRESS and ingress.peers == ("10.20.0.0/16",)
    assert ingress.ifaces == ("eth0",) and ingress.line == 13 and ingress.field == "spec.ingress[0]"
    assert ingress.ports == (PortSpec(Protocol.TCP, 22, 2222, "ssh"),)
    assert egress.direction is Direction.EGRESS and egress.peers == ("0.0.0.0/0",)
    assert egress.ports == (PortSpec(Protocol.UDP, 53, None, "domain"),)
    assert policy.meta.severity == 5 and policy.meta.tags == ("NIST",) and policy.meta.action is Action.ALLOW


def test_protocols_in_any_case_and_ports_text() -> None:
    policy = load_net((NET / "good" / "dual-stack-audit.yaml").read_text())
    (rule,) = policy.rules
    assert [p.protocol for p in rule.ports] == [
        Protocol.TCP, Protocol.TCP, Protocol.UDP, Protocol.ICMPV6, Protocol.SCTP]
    assert [p.text() for p in rule.ports] == ["TCP/443 (https)", "TCP/8000-8999", "UDP/443", "ICMPv6", "SCTP"]


def test_host_and_network_policies_share_one_file_and_one_name_space() -> None:
    host = ("apiVersion: security.kubearmor.com/v1\nkind: KubeArmorHostPolicy\nmetadata:\n  name: {n}\n"
            "spec:\n  nodeSelector:\n    matchLabels:\n      kubearmor.io/hostname: \"*\"\n"
            "  process:\n    matchPaths:\n    - path: /usr/bin/true\n")
    net = network_policy("{n}", "  ingress:\n  - {{}}\n  action: Audit\n")
    both = load_text(host.format(n="a") + "---\n" + net.format(n="b"), "f.yaml")
    assert both.valid and [type(p).__name__ for p in both.policies] == ["HostPolicy", "NetworkPolicy"]
    assert [p.name for p in host_policies(both.policies)] == ["a"]
    assert [p.name for p in network_policies(both.policies)] == ["b"]
    clash = load_text(host.format(n="same") + "---\n" + net.format(n="same"), "f.yaml")
    assert not clash.valid
    assert [str(p) for p in clash.problems] == [
        "f.yaml:16:9: metadata.name: policy 'same' is already defined at f.yaml:4:9; the first definition wins"]


def test_services_file_parsing() -> None:
    table = parse_services("ssh 22/tcp\n# c\nhttp 80/tcp www # web\nbad x/tcp\ndomain 53/udp\n", "svc")
    assert table.port("SSH", "tcp") == 22 and table.port("www", "TCP") == 80
    assert table.port("domain", "tcp") is None and table.port("domain", "udp") == 53
    assert table.names("tcp") == ["http", "ssh", "www"]


# --- compiler --------------------------------------------------------------------------------

BODY = """\
  severity: 4
  message: spec message
  ingress:
  - from:
    - ipBlock:
        cidr: 10.0.0.0/8
    ports:
    - protocol: TCP
      port: 22
  - from:
    - ipBlock:
        cidr: 10.9.0.0/16
    action: Block
    severity: 9
  - ports:
    - protocol: ICMP
    action: Audit
    message: pings
  egress:
  - to:
    - ipBlock:
        cidr: 192.0.2.0/24
    action: Audit
  action: Allow
"""


def test_compile_orders_block_audit_allow_and_inherits() -> None:
    rs = compile_network([load_net(network_policy("p", BODY))], HOST, Posture.BLOCK)
    assert [(r.direction.value, r.action.value, r.field) for r in rs.rules] == [
        ("ingress", "Block", "spec.ingress[1]"),
        ("ingress", "Audit", "spec.ingress[2]"),
        ("egress", "Audit", "spec.egress[0]"),
        ("ingress", "Allow", "spec.ingress[0]"),
    ]
    block, ping, egress_audit, allow = rs.rules
    assert (block.severity, block.message) == (9, "spec message")
    assert (ping.severity, ping.message, ping.families) == (4, "pings", (4,))
    assert allow.families == (4,) and egress_audit.families == (4,)
    assert rs.whitelists == frozenset({Direction.INGRESS}) and rs.posture is Posture.BLOCK
    assert rs.alerts_possible(Direction.INGRESS) and rs.alerts_possible(Direction.EGRESS)
    assert rs.names_port(22) and not rs.names_port(23) and not rs.names_iface("lo")
    (info,) = rs.policies
    assert info.applies and sorted(info.rule_ids) == sorted(r.id for r in rs.rules)


def test_rule_ids_are_stable_and_unique() -> None:
    a = compile_network([load_net(network_policy("p", BODY))], HOST)
    b = compile_network([load_net("# moved down\n\n" .join(["", network_policy("p", BODY)]))], HOST)
    assert len({r.id for r in a.rules}) == len(a.rules)
    assert [r.id for r in a.rules] == [r.id for r in b.rules]
    other = compile_network([load_net(network_policy("q", BODY))], HOST)
    assert not {r.id for r in a.rules} & {r.id for r in other.rules}


def test_policy_for_another_host_adds_no_rules() -> None:
    rs = compile_network([load_net(network_policy("p", BODY, host="db-1"))], HOST)
    assert rs.empty and rs.whitelists == frozenset()
    (info,) = rs.policies
    assert not info.applies and "db-1" in info.reason


def test_missing_action_is_block_and_no_allow_means_no_whitelist() -> None:
    rs = compile_network([load_net(network_policy("p", "  egress:\n  - {}\n"))], HOST)
    (rule,) = rs.rules
    assert rule.action is Action.BLOCK and rule.severity == 1 and rule.families == (4, 6)
    assert rs.whitelists == frozenset() and not rs.alerts_possible(Direction.INGRESS)

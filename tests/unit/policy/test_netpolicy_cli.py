"""`karmor-host policy validate|show` with KubeArmorNetworkPolicy files."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from karmor_host.cli import main

from .helpers import DATA

NET = DATA / "net"


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner(mix_stderr=False).invoke(main, ["policy", *args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def test_validate_reports_network_problems_with_their_lines() -> None:
    code, out, err = run("validate", str(NET / "bad" / "cidr-malformed.yaml"))
    assert code == 1
    assert out.splitlines() == [
        f"{NET / 'bad' / 'cidr-malformed.yaml'}:12:15: spec.ingress[0].from[0].ipBlock.cidr: must be an IPv4 or "
        "IPv6 CIDR such as 10.0.0.0/8 or fd00::/64; got '10.0.0.0/33' ('33' is not a valid netmask)"]
    assert err.strip() == "1 file(s), 1 invalid; 1 error(s), 0 warning(s)"
    code, out, _ = run("validate", str(NET / "good" / "dual-stack-audit.yaml"))
    assert code == 0 and out == ""


def test_show_lists_firewall_rules_in_evaluation_order(tmp_path: Path) -> None:
    path = NET / "good" / "per-rule-attributes.yaml"
    code, out, _ = run("show", str(path), "--hostname", "web-1", "--network-posture", "block")
    assert code == 0
    lines = out.splitlines()
    start = lines.index("network firewall rules (3), in evaluation order:")
    table = [line.split() for line in lines[start + 1 : start + 5]]
    assert table[0] == ["ID", "POLICY", "DIRECTION", "ACTION", "PEERS", "IFACES", "PORTS", "SEVERITY"]
    assert [row[2:5] for row in table[1:]] == [
        ["ingress", "Block", "192.0.2.0/24"], ["ingress", "Audit", "any"], ["ingress", "Allow", "any"]]
    assert table[1][-1] == "9" and table[3][-2] == "TCP/22"
    assert "  ingress: whitelist (new flows no rule matches: block)" in lines
    assert "  egress: no Allow rules (new flows no rule matches pass)" in lines


def test_show_json_has_a_network_section() -> None:
    code, out, _ = run("show", str(NET / "good" / "compat-example.yaml"), "--json", "--hostname", "web-1")
    assert code == 0
    net = json.loads(out)["network"]
    assert net["posture"] == "audit" and net["whitelists"] == ["egress", "ingress"]
    ingress = next(r for r in net["rules"] if r["direction"] == "ingress")
    assert ingress["ports"] == [{"protocol": "TCP", "port": 22, "endPort": 2222, "name": "ssh"}]
    assert ingress["peers"] == ["10.20.0.0/16"] and ingress["ifaces"] == ["eth0"]
    assert json.loads(out)["rules"] == []  # no host rules
    (policy,) = net["policies"]
    assert policy["applies"] and policy["ruleIds"] == sorted(r["id"] for r in net["rules"])

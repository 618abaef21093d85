"""Shared by the firewall tests: load fixture policies into a NetRuleSet."""

from __future__ import annotations

from pathlib import Path

from karmor_host.policy import HostIdentity, load_text
from karmor_host.policy.netpolicy import NetRuleSet, compile_network
from karmor_host.policy.ruleset import Posture
from tests.policytext import network_policy

DATA = Path(__file__).parent / "data"
GOLDEN = Path(__file__).parent / "golden"
HOST = HostIdentity.detect(hostname="web-1")

HEAD = network_policy("{name}", "")  # a template: HEAD.format(name=...) + body


def ruleset(text: str, posture: Posture = Posture.AUDIT, file: str = "p.yaml") -> NetRuleSet:
    result = load_text(text, file)
    assert result.valid, [str(p) for p in result.problems]
    return compile_network(result.policies, HOST, posture)


def fixture(name: str, posture: Posture = Posture.AUDIT) -> NetRuleSet:
    # A relative file name: rule comments and ids do not depend on where the checkout is.
    return ruleset((DATA / f"{name}.yaml").read_text(), posture, f"{name}.yaml")


def policy(name: str, body: str, posture: Posture = Posture.AUDIT) -> NetRuleSet:
    return ruleset(network_policy(name, body), posture)

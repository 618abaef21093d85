"""manager.py with a fake nftables backend and a fake alert sink: last good rules, removal,
refusals, alerts from logged packets, suppression counts. The kernel side is in tests/netns."""

from __future__ import annotations

import ipaddress
import struct

import pytest

from karmor_host.alerts.pipeline import ReadyAlert
from karmor_host.alerts.record import HostInfo
from karmor_host.errors import EnforcerError
from karmor_host.firewall import guard, plan
from karmor_host.firewall.manager import NetworkFirewall
from karmor_host.firewall.nflog import LoggedPacket
from karmor_host.policy.netpolicy import NetRuleSet
from karmor_host.policy.ruleset import Posture

from .helpers import HOST as IDENTITY
from .helpers import HEAD, fixture, policy


class FakeBackend:
    def __init__(self) -> None:
        self.applied: list[plan.Plan] = []
        self.removed = 0
        self.fail = ""
        self.count_values: dict[str, int] = {}

    def apply(self, p: plan.Plan) -> None:
        if self.fail:
            raise EnforcerError(self.fail)
        self.applied.append(p)

    def verify(self, p: plan.Plan) -> list[str]:
        return []

    def remove(self) -> bool:
        self.removed += 1
        return bool(self.applied)

    def counters(self) -> dict[str, int]:
        return dict(self.count_values)


class FakeSink:
    def __init__(self) -> None:
        self.host = HostInfo("default", "web-1", "id")
        self.items: list[ReadyAlert] = []

    def submit(self, item: ReadyAlert) -> None:
        self.items.append(item)


@pytest.fixture
def fw(tmp_path):
    backend, sink = FakeBackend(), FakeSink()
    sessions: list[guard.Session] = []
    firewall = NetworkFirewall(tmp_path, sink, backend=backend, sessions=lambda: sessions)
    firewall._ensure_reader = lambda rs: None  # no NFLOG socket or BPF in unit tests
    firewall.test_sessions = sessions
    yield firewall, backend, sink
    firewall.stop()


def test_apply_then_remove_when_no_network_policy_is_left(fw) -> None:
    firewall, backend, _ = fw
    firewall.apply(fixture("web-server"))
    assert len(backend.applied) == 1 and firewall.status()["rules"] == len(fixture("web-server").rules)
    firewall.apply(NetRuleSet())
    assert backend.removed == 1 and firewall.plan is None and firewall.status()["table"] == ""


def test_refusal_and_kernel_errors_keep_the_last_good_rules(fw) -> None:
    firewall, backend, _ = fw
    good = fixture("web-server", Posture.AUDIT)
    firewall.apply(good)
    firewall.test_sessions.append(guard.Session("10.0.0.1", 22, "10.9.9.9", 50000, "eth1"))
    risky = policy("web", "  ingress:\n  - ports:\n    - protocol: TCP\n      port: 80\n  action: Allow\n",
                   Posture.BLOCK)
    with pytest.raises(EnforcerError, match="refused by the lock-out guard"):
        firewall.apply(risky)
    assert firewall.ruleset == good and len(backend.applied) == 1
    backend.fail = "nftables refused to apply the rule set: boom"
    firewall.test_sessions.clear()
    from karmor_host.policy import load_text

    text = HEAD.format(name="web") + "  ingress:\n  - ports:\n    - protocol: TCP\n      port: 80\n  action: Allow\n"
    assert not firewall.apply_policies(load_text(text, "w.yaml").policies, IDENTITY, Posture.BLOCK)
    assert firewall.error == "nftables refused to apply the rule set: boom" and firewall.ruleset == good
    backend.fail = ""
    assert firewall.apply_policies(load_text(text, "w.yaml").policies, IDENTITY, Posture.BLOCK)
    assert firewall.error == "" and len(backend.applied) == 2


def _tcp(src: str, dst: str, sport: int, dport: int) -> bytes:
    return struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, 1, 0, 64, 6, 0, ipaddress.IPv4Address(src).packed,
                       ipaddress.IPv4Address(dst).packed) + struct.pack("!HH", sport, dport) + bytes(16)


def test_a_logged_packet_becomes_an_alert_and_suppression_a_system_event(fw) -> None:
    firewall, backend, sink = fw
    rs = fixture("web-server", Posture.BLOCK)
    firewall.apply(rs)
    (smtp,) = [r for r in rs.rules if r.policy == "audit-smtp"]
    firewall._handle(LoggedPacket(f"karmor:{smtp.id}:out:accept", 2, 3, 0, 0, 1000, 1, _tcp(
        "10.0.0.1", "192.0.2.25", 40000, 25)))
    firewall._handle(LoggedPacket("not ours", 2, 3, 0, 0, None, 1, b""))
    (item,) = sink.items
    assert item.policy_name == "audit-smtp" and item.throttled
    assert item.record["Resource"] == "protocol=TCP saddr=10.0.0.1 sport=40000 daddr=192.0.2.25 dport=25"
    assert "attribution=none" in item.record["Data"]  # no BPF attached in this test
    backend.count_values = {f"r{smtp.id}_over": 7, f"r{smtp.id}_log": 20, "posture_in_over": 3}
    firewall._poll_counters()
    backend.count_values = {f"r{smtp.id}_over": 9, f"r{smtp.id}_log": 20, "posture_in_over": 3}
    firewall._poll_counters()
    notices = [i for i in sink.items if not i.throttled]
    assert [n.record["Data"] for n in notices] == [
        "suppressed DefaultPosture=3, audit-smtp=7", "suppressed audit-smtp=2"]
    assert notices[0].record["Type"] == "SystemEvent" and notices[0].record["Operation"] == "AlertThreshold"
    st = firewall.status()["alerts"]
    assert st["suppressed"] == {"audit-smtp": 9, "DefaultPosture": 3} and st["unparsed"] == 1
    assert st["logged"] == {"audit-smtp": 1}


def test_unchanged_rules_are_not_resent_unless_the_table_drifted(fw) -> None:
    from karmor_host.policy import load_text

    firewall, backend, _ = fw
    text = HEAD.format(name="web") + "  ingress:\n  - ports:\n    - protocol: TCP\n      port: 80\n  action: Allow\n"
    policies = load_text(text, "w.yaml").policies
    assert firewall.apply_policies(policies, IDENTITY, Posture.AUDIT) and len(backend.applied) == 1
    assert firewall.apply_policies(policies, IDENTITY, Posture.AUDIT) and len(backend.applied) == 1
    answers = [["table inet karmor is missing"], []]  # e.g. `nft flush ruleset`, then repaired
    backend.verify = lambda p: answers.pop(0)
    assert firewall.apply_policies(policies, IDENTITY, Posture.AUDIT) and len(backend.applied) == 2


def test_a_crashing_nftables_never_takes_the_agent_down(fw) -> None:
    """No nf_tables in the kernel, a broken library: the error is recorded, nothing raises."""
    firewall, backend, _ = fw

    def broken(*_a: object) -> bool:
        raise OSError(93, "Protocol not supported")

    backend.remove = broken
    assert not firewall.apply_policies([], IDENTITY, Posture.AUDIT)
    assert "firewall unavailable: OSError" in firewall.error

"""A logged packet + rule + process -> the MatchedNetworkPolicy record, field by field."""

from __future__ import annotations

from karmor_host.alerts.record import HostInfo
from karmor_host.firewall import alerts
from karmor_host.firewall.attribution import ProcessRef
from karmor_host.firewall.nflog import LoggedPacket
from karmor_host.firewall.packet import Headers
from karmor_host.policy.netpolicy import Direction
from karmor_host.policy.ruleset import Posture

from .helpers import fixture

HOST = HostInfo("default", "web-1", "abc")
TS = 1_717_259_989_360_067_000
FIELDS = ["Timestamp", "UpdatedTime", "ClusterName", "HostName", "NodeID", "HostPPID", "HostPID", "PPID",
          "PID", "UID", "ParentProcessName", "ProcessName", "PolicyName", "Severity", "Tags", "ATags",
          "Message", "Type", "Source", "Operation", "Resource", "Data", "Enforcer", "Action", "Result",
          "Cwd", "TTY"]


def pkt(prefix: str, uid: int | None = None) -> LoggedPacket:
    return LoggedPacket(prefix, 2, 3, 0, 4, uid, TS, b"")


def test_prefix() -> None:
    assert alerts.parse_prefix("karmor:12:out:reject") == alerts.Prefix(12, Direction.EGRESS, "reject")
    assert alerts.parse_prefix("karmor:0:in:accept") == alerts.Prefix(0, Direction.INGRESS, "accept")
    for bad in ("karmor:x:in:drop", "karmor:1:up:drop", "karmor:1:in:queue", "other:1:in:drop", "karmor:1:in"):
        assert alerts.parse_prefix(bad) is None


def test_egress_block_names_the_process_and_the_flow() -> None:
    rs = fixture("web-server", Posture.BLOCK)
    (rule,) = [r for r in rs.rules if r.policy == "audit-smtp"]
    h = Headers(4, "10.0.0.1", "192.0.2.25", 6, 40000, 25)
    proc = ProcessRef(4242, 1, 1000, "/usr/bin/curl", "/usr/bin/bash", "connect")
    rec, name = alerts.build(pkt(f"karmor:{rule.id}:out:accept", 1000), alerts.parse_prefix(
        f"karmor:{rule.id}:out:accept"), h, rs.by_id(), proc, HOST, "eth0")
    assert name == "audit-smtp" and list(rec) == FIELDS
    assert rec["Type"] == "MatchedNetworkPolicy" and rec["Operation"] == "NetworkFirewall"
    assert rec["Enforcer"] == "NetworkPolicyEnforcer" and rec["Action"] == "Audit" and rec["Result"] == "Passed"
    assert (rec["HostPID"], rec["PID"], rec["HostPPID"], rec["UID"]) == (4242, 4242, 1, 1000)
    assert (rec["ProcessName"], rec["Source"], rec["ParentProcessName"]) == (
        "/usr/bin/curl", "/usr/bin/curl", "/usr/bin/bash")
    assert rec["Resource"] == "protocol=TCP saddr=10.0.0.1 sport=40000 daddr=192.0.2.25 dport=25"
    assert rec["Data"] == f"direction=egress iface=eth0 rule={rule.id} attribution=connect"
    assert (rec["Timestamp"], rec["UpdatedTime"]) == (1717259989, "2024-06-01T16:39:49.360067Z")
    assert rec["Severity"] == "1" and rec["ATags"] == []


def test_default_posture_ingress_without_a_listener_says_why() -> None:
    rs = fixture("web-server", Posture.BLOCK)
    h = Headers(4, "203.0.113.9", "10.0.0.1", 17, 5000, 9999)
    proc = ProcessRef(note="nothing listens on UDP port 9999")
    rec, name = alerts.build(pkt("karmor:0:in:drop"), alerts.parse_prefix("karmor:0:in:drop"), h,
                             rs.by_id(), proc, HOST, "veth0")
    assert name == "DefaultPosture" and rec["PolicyName"] == "DefaultPosture"
    assert (rec["Action"], rec["Result"], rec["Severity"], rec["ProcessName"], rec["HostPID"]) == (
        "Block", "Dropped", "", "", 0)
    assert rec["Data"] == ("direction=ingress iface=veth0 rule=0 attribution=none "
                           "reason=nothing_listens_on_UDP_port_9999")


def test_block_rule_with_tags_and_a_rule_replaced_meanwhile() -> None:
    rs = fixture("web-server", Posture.BLOCK)
    (block,) = [r for r in rs.rules if r.field == "spec.ingress[3]"]
    h = Headers(4, "192.0.2.1", "10.0.0.1", 1, icmp_type=8)
    rec, _ = alerts.build(pkt(f"karmor:{block.id}:in:drop"), alerts.parse_prefix(f"karmor:{block.id}:in:drop"),
                          h, rs.by_id(), ProcessRef(note="ICMP is not delivered to a listening socket"), HOST, "eth0")
    assert (rec["Severity"], rec["Tags"], rec["ATags"], rec["Message"]) == (
        "8", "NIST,SC-7", ["NIST", "SC-7"], "web server firewall")
    assert rec["Resource"] == "protocol=ICMP saddr=192.0.2.1 daddr=10.0.0.1 type=8"
    gone, name = alerts.build(pkt("karmor:99:out:reject", 0), alerts.parse_prefix("karmor:99:out:reject"),
                              h, {}, ProcessRef(note="x"), HOST, "")
    assert name == "unknown-rule-99" and gone["Action"] == "Block" and gone["Result"] == "Rejected"
    assert "socket_uid=0" in gone["Data"] and "iface=-" in gone["Data"]

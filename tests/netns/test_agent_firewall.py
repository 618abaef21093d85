"""The daemon end to end inside namespace A: KubeArmorNetworkPolicy files in its policy
directory block and audit real traffic from and to namespace B, and every Audit or Block
decision reaches the real journal as a MatchedNetworkPolicy record naming the process."""

from __future__ import annotations

import json
import os
import time

import pytest

from tests.kernel.agent_harness import ensure_journald, journal, unique, wait_for
from tests.netns.agent_ns import NetnsAgent
from tests.netns.topology import PYTHON, Topology
from tests.policytext import network_policy

pytestmark = pytest.mark.kernel

PY_EXE = os.path.realpath(PYTHON)


@pytest.fixture
def agent(topo, tmp_path):
    ensure_journald()
    os.chmod(tmp_path, 0o755)
    a = NetnsAgent(tmp_path, extra_config="throttle: {maxAlertsPerSecond: 100000}\n")
    a.netns = topo.a
    a.start()
    yield a
    a.stop()


def put(agent: NetnsAgent, name: str, body: str, filename: str = "") -> None:
    before = agent.applied_count()
    agent.write_policy(filename or f"{name}.yaml", network_policy(name, body))
    agent.wait_applied(before, timeout=5)


def fw(topo: Topology, *args: str) -> object:
    r = topo.py(topo.a, "tests.netns.fwctl", *args)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def records(policy: str, since: float, count: int = 1, timeout: float = 5.0) -> list[dict]:
    return wait_for(lambda: [r for r in journal(policy, since=since)] if len(journal(policy, since=since)) >= count
                    else [], timeout) or journal(policy, since=since)


def client(topo: Topology, ns: str, host: str, port: int, timeout: float = 1.0) -> tuple[int, int]:
    """(pid, exit status) of one connect attempt; the pid is the python process itself
    (ip netns exec execs it in place)."""
    proc = topo.spawn(ns, PYTHON, "-m", "tests.netns.peer", "connect", host, str(port), "--timeout", str(timeout))
    return proc.pid, proc.wait(timeout=timeout + 10)


def test_egress_audit_alert_names_the_sending_process(agent, topo) -> None:
    topo.serve(topo.b, tcp=(7600,))
    name = unique("audit-out")
    put(agent, name, f"""\
  severity: 6
  tags: [T1041]
  message: outbound to the test peer
  egress:
  - to:
    - ipBlock:
        cidr: {topo.net4(0)}
    ports:
    - protocol: TCP
      port: 7600
  action: Audit
""")
    t0 = time.time()
    pid, status = client(topo, topo.a, topo.b4(0), 7600)
    assert status == 0  # Audit lets it through
    (rec,) = records(name, t0)
    assert rec["Type"] == "MatchedNetworkPolicy" and rec["Operation"] == "NetworkFirewall"
    assert rec["Enforcer"] == "NetworkPolicyEnforcer" and rec["Action"] == "Audit" and rec["Result"] == "Passed"
    assert (rec["HostPID"], rec["PID"], rec["ProcessName"], rec["Source"]) == (pid, pid, PY_EXE, PY_EXE)
    assert rec["Resource"].startswith(f"protocol=TCP saddr={topo.a4(0)} sport=")
    assert rec["Resource"].endswith(f"daddr={topo.b4(0)} dport=7600")
    assert rec["Data"].startswith("direction=egress iface=a0 rule=") and rec["Data"].endswith("attribution=connect")
    assert (rec["Severity"], rec["ATags"], rec["Message"]) == ("6", ["T1041"], "outbound to the test peer")
    entry = rec["_entry"]
    assert entry["KARMOR_TYPE"] == "MatchedNetworkPolicy" and entry["KARMOR_HOST_PID"] == str(pid)


def test_egress_block_rejects_and_alerts_with_the_process(agent, topo) -> None:
    topo.serve(topo.b, tcp=(7601, 7602))
    name = unique("block-out")
    put(agent, name, f"""\
  egress:
  - to:
    - ipBlock:
        cidr: {topo.net6(0)}
    - ipBlock:
        cidr: {topo.b4(0)}/32
    ports:
    - protocol: TCP
      port: 7601
  action: Block
""")
    t0 = time.time()
    proc = topo.spawn(topo.a, PYTHON, "-m", "tests.netns.peer", "connect", topo.b6(0), "7601", "--timeout", "3")
    out, _ = proc.communicate(timeout=15)
    pid = proc.pid
    assert proc.returncode == 1 and out.startswith("ConnectionRefusedError")  # a reset: no retries, no wait
    assert topo.connect(topo.a, topo.b4(0), 7602)  # other ports pass: no whitelist
    time.sleep(1.5)  # a retried SYN would be a second record by now
    (rec,) = records(name, t0)
    assert (rec["Action"], rec["Result"], rec["HostPID"], rec["ProcessName"]) == ("Block", "Rejected", pid, PY_EXE)
    assert f"daddr={topo.b6(0)} dport=7601" in rec["Resource"]


def test_ingress_whitelist_audits_and_names_the_listener(agent, topo) -> None:
    server = topo.serve(topo.a, tcp=(7700, 7701))
    name = unique("in-web")
    put(agent, name, """\
  ingress:
  - ports:
    - protocol: TCP
      port: 7700
  action: Allow
""")
    # the agent's posture is audit: the whitelist alerts, nothing is blocked yet
    t0 = time.time()
    assert topo.connect(topo.b, topo.a4(0), 7700) and topo.connect(topo.b, topo.a4(0), 7701)
    (rec,) = records("DefaultPosture", t0)
    assert (rec["Action"], rec["Result"], rec["Severity"]) == ("Audit", "Passed", "")
    assert (rec["HostPID"], rec["ProcessName"]) == (server.pid, PY_EXE)
    assert rec["Data"].startswith("direction=ingress iface=a0 rule=0 ")
    assert rec["Data"].endswith("attribution=listener")
    assert rec["Resource"].endswith(f"daddr={topo.a4(0)} dport=7701")


def test_delete_policy_removes_our_table_and_nothing_else(agent, topo) -> None:
    assert fw(topo, "foreign-add") == {"ok": True}
    name = unique("temp")
    put(agent, name, "  ingress:\n  - {}\n  action: Audit\n")
    assert wait_for(lambda: fw(topo, "live") is not None)
    assert agent.firewall()["table"] == "inet karmor"
    before = agent.applied_count()
    (agent.policy_dir / f"{name}.yaml").unlink()
    agent.wait_applied(before, timeout=5)
    assert fw(topo, "live") is None
    assert fw(topo, "foreign-live") == ["someone else's"]
    assert agent.firewall()["table"] == "" and agent.firewall()["rules"] == 0


def test_malformed_cidr_is_rejected_with_its_line_and_the_rules_stay(agent, topo) -> None:
    topo.serve(topo.b, tcp=(7800,))
    name = unique("good")
    put(agent, name, f"  egress:\n  - to:\n    - ipBlock:\n        cidr: {topo.b4(0)}/32\n  action: Block\n",
        filename="net.yaml")
    live = fw(topo, "live")
    bad = network_policy(name, "  egress:\n  - to:\n    - ipBlock:\n        cidr: 10.1.2.0/33\n  action: Block\n")
    agent.write_policy("net.yaml", bad)
    problem = wait_for(lambda: [e for e in agent.log_events("policy_invalid") if "net.yaml" in e["problem"]], 5)
    assert problem, agent.log()[-2000:]
    assert problem[0]["problem"].endswith(
        "net.yaml:12:15: spec.egress[0].to[0].ipBlock.cidr: must be an IPv4 or IPv6 CIDR such as "
        "10.0.0.0/8 or fd00::/64; got '10.1.2.0/33' ('33' is not a valid netmask)")
    time.sleep(0.5)
    assert fw(topo, "live") == live  # the last good version of the file is still enforced
    assert not topo.connect(topo.a, topo.b4(0), 7800, timeout=0.5)
    rejected = agent.status()["policies"]["rejected"]
    assert [r["keeping_last_good"] for r in rejected if r["file"].endswith("net.yaml")] == [True]


def test_flood_is_rate_limited_in_the_kernel_and_counted(agent, topo) -> None:
    topo.serve(topo.a, tcp=(7900,))
    name = unique("flood")
    put(agent, name, "  ingress:\n  - ports:\n    - protocol: TCP\n      port: 7900\n  action: Audit\n")
    t0 = time.time()
    r = topo.py(topo.b, "tests.netns.peer", "loop", "--ok", f"{topo.a4(0)}:7900", "--blocked",
                f"{topo.a4(0)}:7900", "--seconds", "1.5")
    counts = json.loads(r.stdout)
    attempts = counts["ok_passed"] + counts["blocked_passed"]
    # 20/s with a burst of 40 logs at most ~70 of these in 1.5 s: the rest must be suppressed
    assert attempts > 100 and counts["ok_failed"] == 0 and counts["blocked_failed"] == 0

    def tally() -> tuple[int, int]:
        return len(journal(name, since=t0)), agent.firewall()["alerts"]["suppressed"].get(name, 0)

    # every new flow is either an alert in the journal or counted as suppressed
    logged, suppressed = wait_for(lambda: tally() if sum(tally()) == attempts else None, 8) or tally()
    assert suppressed > 0 and logged + suppressed == attempts, (logged, suppressed, attempts)
    notices = wait_for(lambda: [n for n in journal(since=t0, KARMOR_TYPE="SystemEvent")
                                if name in n.get("Data", "")], 5)
    assert notices and notices[0]["Operation"] == "AlertThreshold"


def test_stop_leaves_the_table_and_a_restart_replaces_it(agent, topo) -> None:
    name = unique("persist")
    put(agent, name, "  egress:\n  - ports:\n    - protocol: UDP\n      port: 9\n  action: Block\n")
    live = fw(topo, "live")
    agent.stop()
    assert fw(topo, "live") == live  # enforcement does not lapse while the agent is down
    agent.start()
    assert wait_for(lambda: agent.firewall()["table"] == "inet karmor", 5)
    assert fw(topo, "live") == live


def test_udp_egress_audit_names_the_sender(agent, topo) -> None:
    topo.serve(topo.b, udp=(7950,))
    name = unique("audit-udp")
    put(agent, name, "  egress:\n  - ports:\n    - protocol: UDP\n      port: 7950\n  action: Audit\n")
    t0 = time.time()
    proc = topo.spawn(topo.a, PYTHON, "-m", "tests.netns.peer", "udp", topo.b6(0), "7950")
    assert proc.wait(timeout=10) == 0
    (rec,) = records(name, t0)
    assert (rec["HostPID"], rec["ProcessName"], rec["Result"]) == (proc.pid, PY_EXE, "Passed")
    assert rec["Resource"].startswith(f"protocol=UDP saddr={topo.a6(0)} sport=")
    assert rec["Data"].endswith("attribution=connect")  # sendmsg6 saw the bound source port


@pytest.fixture
def blocking_agent(topo, tmp_path):
    ensure_journald()
    os.chmod(tmp_path, 0o755)
    a = NetnsAgent(tmp_path, extra_config="defaultPosture: {network: block}\n"
                                          "throttle: {maxAlertsPerSecond: 100000}\n")
    a.netns = topo.a
    a.start()
    yield a
    a.stop()


def test_block_posture_and_the_lock_out_guard_through_the_agent(blocking_agent, topo) -> None:
    agent = blocking_agent
    topo.serve(topo.a, tcp=(22, 8000, 8001))
    name = unique("web-only")
    put(agent, name, "  ingress:\n  - ports:\n    - protocol: TCP\n      port: 8000\n    - protocol: TCP\n"
                     "      port: ssh\n  action: Allow\n")
    t0 = time.time()
    assert topo.connect(topo.b, topo.a4(0), 8000)
    assert not topo.connect(topo.b, topo.a4(0), 8001, timeout=0.5)
    (rec,) = records("DefaultPosture", t0)
    assert (rec["Action"], rec["Result"], rec["PolicyName"]) == ("Block", "Dropped", "DefaultPosture")
    live = fw(topo, "live")
    # An SSH session is up; a new version without the ssh port would cut it: refused.
    topo.spawn(topo.b, PYTHON, "-m", "tests.netns.peer", "hold", topo.a4(0), "22", "--seconds", "30",
               wait_for="connected")
    put(agent, name, "  ingress:\n  - ports:\n    - protocol: TCP\n      port: 8000\n  action: Allow\n")
    error = wait_for(lambda: agent.firewall()["error"], 5)
    assert error.startswith("network rules refused by the lock-out guard: the established SSH session")
    assert fw(topo, "live") == live
    assert [e for e in agent.log_events("firewall_apply_failed") if e["keeping"] == "previous network rules"]

"""The journald sink against a real systemd-journald, read back with journalctl and `logs`."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import structlog

from karmor_host.alerts import record
from karmor_host.alerts.match import Matcher
from karmor_host.alerts.pipeline import AlertPipeline
from karmor_host.alerts.record import HostInfo
from karmor_host.alerts.sinks.journald import JournaldSink, JournalLogProcessor, journal_field, summary
from karmor_host.alerts.throttle import Throttle
from karmor_host.kernel.events import Event, EventKind
from karmor_host.policy.ruleset import Action, Operation, Rule, RuleSet, TargetKind

pytestmark = pytest.mark.kernel
REPO = Path(__file__).resolve().parents[2]
KARMOR = [sys.executable, "-m", "karmor_host"]  # the CLI of this checkout, with this interpreter


@pytest.fixture(scope="module", autouse=True)
def journald():
    assert os.geteuid() == 0, "kernel tests run as root"
    subprocess.run([str(REPO / "tools" / "ensure-journald.sh")], check=True)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def journalctl(*matches: str, expect: int = 1, timeout: float = 5.0) -> list[dict]:
    """Entries of karmor-host matching FIELD=value arguments; polls until `expect` arrived."""
    args = ["journalctl", "--no-pager", "-o", "json", "-t", "karmor-host", *matches]
    deadline = time.monotonic() + timeout
    while True:
        out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
        entries = [json.loads(line) for line in out.splitlines() if line.strip()]
        if len(entries) >= expect or time.monotonic() > deadline:
            return entries
        time.sleep(0.1)


def the_rule(policy: str, severity: int = 7) -> Rule:
    return Rule(id=1, policy=policy, file="/etc/karmor/policies/t.yaml", line=8,
                operation=Operation.FILE, kind=TargetKind.PATH, target="/etc/passwd",
                original="/etc/passwd", action=Action.BLOCK, severity=severity,
                tags=("MITRE", "T1003"), message="someone read /etc/passwd")


def an_event() -> Event:
    return Event(kind=EventKind.OPEN, ts_ns=time.time_ns(), pid=os.getpid(), tgid=os.getpid(),
                 ppid=os.getppid(), uid=0, gid=0, comm="python3", exe=sys.executable,
                 parent_exe="/usr/bin/bash", cwd=os.getcwd(), tty="", retval=3,
                 path="/etc/passwd", flags=os.O_RDONLY | os.O_CLOEXEC)


def test_alert_lands_in_the_journal_with_every_field():
    policy = unique("jtest-alert")
    rec = record.alert(an_event(), the_rule(policy), HostInfo.detect(), "Audit (Block)",
                       "eBPF Monitor", policy)
    sink = JournaldSink()
    sink.emit(rec)
    assert (sink.sent, sink.failed) == (1, 0)

    [entry] = journalctl(f"KARMOR_POLICY_NAME={policy}")
    assert entry["MESSAGE"] == summary(rec)
    assert entry["MESSAGE"].startswith(f"{policy}: Audit (Block) File /etc/passwd by {sys.executable}")
    assert entry["PRIORITY"] == "3"  # severity 7
    assert entry["SYSLOG_IDENTIFIER"] == "karmor-host"
    assert json.loads(entry["KARMOR_RECORD_JSON"]) == rec
    for key, value in rec.items():
        expected = ",".join(value) if isinstance(value, list) else str(value)
        assert entry[journal_field(key)] == expected, key
    assert entry["KARMOR_ATAGS"] == "MITRE,T1003"
    assert entry["KARMOR_HOST_PID"] == str(os.getpid())


def test_logs_command_prints_the_same_record():
    policy = unique("jtest-logs")
    rec = record.alert(an_event(), the_rule(policy, severity=2), HostInfo.detect(), "Audit",
                       "eBPF Monitor", policy)
    JournaldSink().emit(rec)
    journalctl(f"KARMOR_POLICY_NAME={policy}")  # wait until journald has it

    def logs(*args: str) -> str:
        return subprocess.run([*KARMOR, "logs", *args], capture_output=True, text=True, check=True,
                              cwd=REPO).stdout

    lines = logs("--json", "--policy", policy).splitlines()
    assert [json.loads(line) for line in lines] == [rec]
    text = logs("--policy", policy, "--type", "alert", "--operation", "file", "--since", "5m")
    assert text.startswith(f"== Alert / {rec['UpdatedTime']} ==\n")
    assert f"PolicyName: {policy}\n" in text and "Action: Audit\n" in text
    # filters that exclude it
    assert logs("--json", "--policy", policy, "--type", "system") == ""
    assert logs("--json", "--policy", policy, "--operation", "Network") == ""


def test_logs_follow_prints_new_records():
    policy = unique("jtest-follow")
    old = record.alert(an_event(), the_rule(policy), HostInfo.detect(), "Audit", "eBPF Monitor", policy)
    JournaldSink().emit(old)
    journalctl(f"KARMOR_POLICY_NAME={policy}")
    proc = subprocess.Popen([*KARMOR, "logs", "-f", "--json", "--policy", policy],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    try:
        time.sleep(1.0)  # let it open the journal and reach the end
        new = dict(old, Message="the new one")
        JournaldSink().emit(new)
        ready, _, _ = select.select([proc.stdout], [], [], 10.0)
        assert ready, "no record within 10 s"
        assert json.loads(proc.stdout.readline()) == new  # the old one is not repeated
        assert proc.poll() is None  # still following
    finally:
        proc.terminate()
        proc.wait(5)


def test_pipeline_alerts_and_throttle_notices_reach_the_journal():
    cluster = unique("jtest-cluster")
    policy = unique("jtest-pipe")
    host = HostInfo(cluster, "jtest-host", "jtest-node")
    sink = JournaldSink()
    pipe = AlertPipeline(Matcher(RuleSet(rules=(the_rule(policy),))), Throttle(max_per_second=2), [sink], host)
    for _ in range(5):
        pipe.handle(an_event())
    entries = journalctl(f"KARMOR_CLUSTER_NAME={cluster}", expect=3)
    kinds = [(e["KARMOR_TYPE"], e.get("KARMOR_POLICY_NAME", e.get("KARMOR_OPERATION"))) for e in entries]
    assert kinds == [("MatchedHostPolicy", policy)] * 2 + [("SystemEvent", "AlertThreshold")]
    assert entries[2]["PRIORITY"] == "4"
    stats = pipe.stats()
    assert stats["suppressed"] == 3 and stats["sinks"]["journald"] == {"sent": 3, "failed": 0}


def test_agent_log_bridge_reaches_the_journal():
    name = unique("jtest_log_event")
    bridge = JournalLogProcessor(passthrough=False)
    structlog.configure(processors=[structlog.processors.add_log_level, bridge])
    try:
        structlog.get_logger("t").error(name, file="/etc/karmor/policies/x.yaml")
    finally:
        structlog.reset_defaults()
    [entry] = journalctl(f"KARMOR_LOG_EVENT={name}")
    assert entry["PRIORITY"] == "3"
    assert entry["KARMOR_LOG_FILE"] == "/etc/karmor/policies/x.yaml"
    assert entry["MESSAGE"] == f"{name} file=/etc/karmor/policies/x.yaml"
    assert bridge.sent == 1


UNREACHABLE = """
import json, subprocess
subprocess.run(["mount", "-t", "tmpfs", "none", "/run/systemd/journal"], check=True)
import structlog
structlog.configure(processors=[structlog.processors.add_log_level, structlog.processors.JSONRenderer()])
from karmor_host.alerts.record import HostInfo, system_event
from karmor_host.alerts.sinks.journald import JournaldSink
sink = JournaldSink()
rec = system_event(HostInfo("c", "h", "n"), "AlertThreshold", {message!r})
for _ in range(3):
    sink.emit(rec)
print(json.dumps({{"sent": sink.sent, "failed": sink.failed}}))
"""


def test_unreachable_journald_is_counted_not_raised():
    """A private mount namespace hides the journal socket from this process only."""
    message = unique("jtest-unreachable")
    proc = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", sys.executable, "-c",
         UNREACHABLE.format(message=message)],
        capture_output=True, text=True, cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert json.loads(lines[-1]) == {"sent": 0, "failed": 3}
    logged = [json.loads(line) for line in lines[:-1]]
    assert [(e["event"], e["level"]) for e in logged] == [("journald_unreachable", "error")]
    assert logged[0]["socket"] == "/run/systemd/journal/socket"
    # and nothing reached the real journal
    assert journalctl(f"KARMOR_MESSAGE={message}", expect=1, timeout=1.0) == []


def test_send_failure_beside_a_working_journal(monkeypatch):
    """The socket is there but the send fails (journald refusing): counted, logged, no raise."""
    def refuse(*fields: str) -> None:
        raise ConnectionRefusedError(111, "Connection refused")

    sink = JournaldSink(sendv=refuse)
    sink.emit(record.system_event(HostInfo("c", "h", "n"), "AlertThreshold", "x"))
    assert (sink.sent, sink.failed) == (0, 1)

"""The daemon end to end on this kernel: policies in a watched directory, alerts in a real journal.

This kernel has no usable LSM, so the agent runs with enforcer `none`: Audit rules alert,
Block and Allow rules are reported as `Audit (Block)` / `Audit (Allow)` by the eBPF monitor.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from tests.kernel.agent_harness import KARMOR, POLICY_HEAD, AgentProc, ensure_journald, journal, unique, wait_for

pytestmark = pytest.mark.kernel

CAT = shutil.which("cat")
HEAD = shutil.which("head")


@pytest.fixture(scope="module")
def agent(tmp_path_factory):
    assert os.geteuid() == 0, "kernel tests run as root"
    ensure_journald()
    # Whitelist tests make every file a source program opens a DefaultPosture alert: lift the
    # throttle so the assertions see each alert (throttling has its own test).
    a = AgentProc(tmp_path_factory.mktemp("agent"), extra_config="throttle: {maxAlertsPerSecond: 100000}\n")
    a.ready_seconds = a.start()
    yield a
    a.stop()


@pytest.fixture
def target(tmp_path):
    os.chmod(tmp_path, 0o755)
    f = tmp_path / "secret.txt"
    f.write_text("s3cret\n")
    return f


def file_policy(name: str, path: str, action: str = "Audit", extra_rule: str = "", severity: int = 5) -> str:
    return POLICY_HEAD.format(name=name) + (
        f"  severity: {severity}\n"
        f"  message: test {name}\n"
        f"  file:\n"
        f"    matchPaths:\n"
        f"    - path: {path}\n"
        f"{extra_rule}"
        f"  action: {action}\n"
    )


def apply_policy(agent: AgentProc, filename: str, text: str) -> None:
    before = agent.applied_count()
    agent.write_policy(filename, text)
    agent.wait_applied(before)


def run(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(list(argv), capture_output=True, text=True)


def test_ready_and_status(agent):
    # Start-up time is reported (measured figures go to docs/performance.md, not asserted here).
    (ready,) = agent.log_events("ready")
    assert ready["seconds"] > 0 and "enforcer=none" in ready["status"]
    st = agent.status()
    assert st["state"] == "running" and st["enforcer"]["name"] == "none"


def test_audit_file_rule_alerts_in_journal_with_exact_fields(agent, target):
    name = unique("audit-secret")
    apply_policy(agent, f"{name}.yaml", file_policy(name, str(target)))
    t0 = time.time()
    p = subprocess.Popen([CAT, str(target)], stdout=subprocess.DEVNULL)
    p.wait()
    recs = wait_for(lambda: journal(name), timeout=2.0)
    assert recs, f"no alert within 2 s:\n{agent.log()[-3000:]}"
    rec = recs[0]
    assert rec["Type"] == "MatchedHostPolicy"
    assert rec["PolicyName"] == name
    assert rec["Operation"] == "File"
    assert rec["Resource"] == str(target)
    assert rec["ProcessName"] == os.path.realpath(CAT)
    assert rec["HostPID"] == p.pid and rec["PID"] == p.pid
    assert rec["HostPPID"] == os.getpid()
    assert rec["UID"] == 0
    assert rec["Action"] == "Audit"
    assert rec["Enforcer"] == "eBPF Monitor"
    assert rec["Result"] == "Passed"
    assert rec["Severity"] == "5"
    assert rec["Message"] == f"test {name}"
    assert rec["Data"].startswith("syscall=SYS_OPEN")
    assert abs(rec["Timestamp"] - t0) < 5
    entry = rec["_entry"]
    assert entry["SYSLOG_IDENTIFIER"] == "karmor-host"
    assert entry["KARMOR_OPERATION"] == "File" and entry["KARMOR_RESOURCE"] == str(target)
    assert name in entry["MESSAGE"]


def test_from_source_limits_the_rule_to_that_binary(agent, target):
    name = unique("audit-from-head")
    src = f"      fromSource:\n      - path: {HEAD}\n"
    apply_policy(agent, f"{name}.yaml", file_policy(name, str(target), extra_rule=src))
    run(CAT, str(target))
    run(HEAD, "-c1", str(target))
    recs = wait_for(lambda: journal(name), timeout=2.0)
    time.sleep(0.5)  # give a wrong `cat` alert the chance to arrive too
    recs = journal(name)
    assert [r["ProcessName"] for r in recs] == [os.path.realpath(HEAD)]


def test_block_rule_is_reported_as_audit_block_without_an_lsm(agent, target):
    name = unique("block-secret")
    apply_policy(agent, f"{name}.yaml", file_policy(name, str(target), action="Block"))
    assert run(CAT, str(target)).returncode == 0  # nothing can block on this kernel
    recs = wait_for(lambda: journal(name), timeout=2.0)
    assert recs and recs[0]["Action"] == "Audit (Block)" and recs[0]["Enforcer"] == "eBPF Monitor"


def test_allow_whitelist_reports_default_posture_for_unlisted_exec(agent, tmp_path):
    name = unique("allow-true")
    os.chmod(tmp_path, 0o755)
    allowed = shutil.which("true")
    prog = tmp_path / "unlisted-prog"
    shutil.copy(shutil.which("echo"), prog)
    text = POLICY_HEAD.format(name=name) + (
        "  process:\n"
        "    matchPaths:\n"
        f"    - path: {allowed}\n"
        f"      fromSource:\n      - path: {shutil.which('bash')}\n"
        "  action: Allow\n"
    )
    since = time.time()
    apply_policy(agent, f"{name}.yaml", text)
    try:
        # `; true` at the end keeps bash from exec'ing the last command in place
        run("bash", "-c", f"{allowed}; {prog} hi; true")
        posture = wait_for(lambda: [r for r in journal("DefaultPosture", since=since)
                                    if r["ProcessName"] == str(prog)], timeout=2.0)
        assert posture, agent.log()[-3000:]
        assert posture[0]["Action"] == "Audit"  # default posture audit
        assert posture[0]["Operation"] == "Process"
        assert not [r for r in journal("DefaultPosture", since=since) if r["ProcessName"] == os.path.realpath(allowed)]
    finally:
        before = agent.applied_count()
        (agent.policy_dir / f"{name}.yaml").unlink()
        agent.wait_applied(before)


def test_edit_break_and_delete(agent, target, tmp_path):
    name = unique("lifecycle")
    other = tmp_path / "other.txt"
    other.write_text("x\n")
    path = str(target)
    apply_policy(agent, f"{name}.yaml", file_policy(name, path))
    run(CAT, path)
    assert wait_for(lambda: journal(name, Resource=path) or journal(name))
    # edit: the rule now watches another file
    apply_policy(agent, f"{name}.yaml", file_policy(name, str(other)))
    since = time.time()
    run(CAT, path)
    run(CAT, str(other))
    recs = wait_for(lambda: journal(name, since=since), timeout=2.0)
    time.sleep(0.3)
    assert {r["Resource"] for r in journal(name, since=since)} == {str(other)}
    # break it (severity 11 on line 9): the last good version stays, the error names the line
    before = agent.applied_count()
    agent.write_policy(f"{name}.yaml", file_policy(name, str(target), severity=11))
    assert wait_for(lambda: [e for e in agent.log_events("policy_invalid") if f"{name}.yaml:9:" in e["problem"]])
    since = time.time()
    run(CAT, str(other))
    assert wait_for(lambda: journal(name, since=since), timeout=2.0), "last good version no longer enforced"
    st = agent.status()
    assert any(name in r["file"] and r["keeping_last_good"] for r in st["policies"]["rejected"])
    # delete: alerts stop, the policy leaves the status
    before = agent.applied_count()
    (agent.policy_dir / f"{name}.yaml").unlink()
    agent.wait_applied(before)
    since = time.time()
    run(CAT, str(other))
    time.sleep(1.0)
    assert journal(name, since=since) == []
    assert name not in [p["name"] for p in agent.status()["policies"]["active"]]


def test_world_writable_policy_is_refused(agent, target):
    name = unique("writable")
    agent.write_policy(f"{name}.yaml", file_policy(name, str(target)), mode=0o666)
    assert wait_for(lambda: [e for e in agent.log_events("policy_file_refused") if name in e["file"]])
    st = wait_for(lambda: (s := agent.status()) and any(name in r["file"] for r in s["policies"]["rejected"]) and s)
    assert name not in [p["name"] for p in st["policies"]["active"]]
    os.unlink(agent.policy_dir / f"{name}.yaml")


def test_sighup_reloads(agent, target):
    name = unique("hup")
    # written without the watcher noticing is impossible to arrange, so check that SIGHUP
    # re-applies on its own: the apply count rises with why=reload
    agent.write_policy(f"{name}.yaml", file_policy(name, str(target)))
    before = len([e for e in agent.log_events("applied") if e.get("why") == "reload"])
    agent.signal(signal.SIGHUP)
    assert wait_for(lambda: len([e for e in agent.log_events("applied") if e.get("why") == "reload"]) > before)
    assert agent.proc.poll() is None
    assert name in [p["name"] for p in agent.status()["policies"]["active"]]
    os.unlink(agent.policy_dir / f"{name}.yaml")


def test_kubearmor_audit_scenarios(agent, tmp_path):
    """KubeArmor's host audit tests: /etc/hosts read by cat (fromSource), UDP use, unlink in a dir."""
    hosts = unique("ksp-audit-hosts")
    udp = unique("ksp-audit-udp")
    unl = unique("ksp-audit-unlink")
    d = tmp_path / "audited"
    d.mkdir()
    os.chmod(tmp_path, 0o755)
    python = os.path.realpath(sys.executable)  # not a PATH lookup: pyenv shims are scripts
    text = (
        POLICY_HEAD.format(name=hosts)
        + f"  file:\n    matchPaths:\n    - path: /etc/hosts\n      fromSource:\n      - path: {CAT}\n  action: Audit\n"
        + "---\n" + POLICY_HEAD.format(name=udp)
        + f"  network:\n    matchProtocols:\n    - protocol: udp\n      fromSource:\n      - path: {python}\n  action: Audit\n"
        + "---\n" + POLICY_HEAD.format(name=unl)
        + f"  syscalls:\n    matchPaths:\n    - path: {d}/\n      recursive: true\n      syscall:\n      - unlink\n      - unlinkat\n"
    )
    apply_policy(agent, "ksp.yaml", text)
    run(CAT, "/etc/hosts")
    subprocess.run([python, "-c", "import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM).close()"], check=True)
    victim = d / "victim"
    victim.write_text("x")
    run("rm", str(victim))
    assert wait_for(lambda: journal(hosts), timeout=2.0)[0]["Resource"] == "/etc/hosts"
    rec = wait_for(lambda: journal(udp), timeout=2.0)[0]
    assert rec["Operation"] == "Network" and "SOCK_DGRAM" in rec["Resource"]
    rec = wait_for(lambda: journal(unl), timeout=2.0)[0]
    assert rec["Operation"] == "Syscall" and rec["Resource"] == str(victim)
    os.unlink(agent.policy_dir / "ksp.yaml")


def test_status_and_logs_show_what_happened(agent, target):
    name = unique("shown")
    apply_policy(agent, f"{name}.yaml", file_policy(name, str(target)))
    run(CAT, str(target))
    assert wait_for(lambda: journal(name), timeout=2.0)
    st = wait_for(lambda: (s := agent.status())["alerts"]["per_policy"].get(name) and s, timeout=4.0)
    assert st, agent.status()
    assert st["alerts"]["per_policy"][name] >= 1
    text = subprocess.run([KARMOR, "status"], capture_output=True, text=True,
                          env=dict(os.environ, KARMOR_RUN_DIR=str(agent.run_dir))).stdout
    assert name in text and "enforcer:  none" in text
    out = subprocess.run([KARMOR, "logs", "--json", "--policy", name], capture_output=True, text=True).stdout
    recs = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert recs and recs[0]["PolicyName"] == name and recs[0]["Resource"] == str(target)
    os.unlink(agent.policy_dir / f"{name}.yaml")


def test_sigterm_is_a_clean_exit(tmp_path):
    ensure_journald()
    a = AgentProc(tmp_path)
    a.start()
    assert a.stop() == 0
    assert a.log_events("stopped")
    doc = a.status()
    assert doc["state"] == "stale"


def test_sd_notify_ready_status_and_watchdog_pings(tmp_path):
    """Under systemd (NOTIFY_SOCKET, WATCHDOG_USEC) the agent says READY=1 and keeps pinging."""
    import socket as socketlib

    ensure_journald()
    sock_path = tmp_path / "notify.sock"
    sock = socketlib.socket(socketlib.AF_UNIX, socketlib.SOCK_DGRAM)
    sock.bind(str(sock_path))
    sock.settimeout(0.2)
    a = AgentProc(tmp_path)
    os.environ["NOTIFY_SOCKET"], os.environ["WATCHDOG_USEC"] = str(sock_path), "1000000"
    try:
        a.start()
    finally:
        del os.environ["NOTIFY_SOCKET"], os.environ["WATCHDOG_USEC"]
    msgs: list[str] = []
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        try:
            msgs.append(sock.recv(4096).decode())
        except TimeoutError:
            pass
    a.stop()
    try:
        while True:
            msgs.append(sock.recv(4096).decode())
    except TimeoutError:
        pass
    assert any(m.startswith("READY=1") and "STATUS=enforcer=none" in m for m in msgs), msgs
    assert sum(m == "WATCHDOG=1" for m in msgs) >= 3, msgs  # every 0.5 s for a 1 s watchdog
    assert any("STOPPING=1" in m for m in msgs), msgs


def test_throttle_reports_threshold_and_suppressed_count(tmp_path, target):
    ensure_journald()
    a = AgentProc(tmp_path, extra_config="throttle: {maxAlertsPerSecond: 3, quietSeconds: 2}\n")
    a.start()
    try:
        name = unique("throttled")
        before = a.applied_count()
        a.write_policy(f"{name}.yaml", file_policy(name, str(target)))
        a.wait_applied(before)
        since = time.time()
        for _ in range(20):
            run(CAT, str(target))
        threshold = wait_for(lambda: [r for r in journal(since=since, KARMOR_TYPE="SystemEvent")
                                      if r["Operation"] == "AlertThreshold"], timeout=5.0)
        assert threshold, a.log()[-2000:]
        ended = wait_for(lambda: [r for r in journal(since=since, KARMOR_TYPE="SystemEvent")
                                  if "SuppressedAlerts" in r], timeout=5.0)
        assert ended, journal(since=since, KARMOR_TYPE="SystemEvent")
        alerts = journal(name, since=since)
        assert 3 <= len(alerts) < 20
        assert ended[0]["SuppressedAlerts"] + len(alerts) == 20
    finally:
        a.stop()

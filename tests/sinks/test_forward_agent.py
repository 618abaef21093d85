"""The real agent (`karmor-host run`) with a forward sink: alerts raised while the collector
is down are spooled; the agent is killed -9; the collector comes up; a restarted agent
delivers them from its spool. Also: the sink's counters in `karmor-host status`."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from tests.kernel.agent_harness import POLICY_HEAD, AgentProc, ensure_journald, unique, wait_for
from tests.sinks.conftest import free_port
from tests.sinks.fluent_receiver import FluentReceiver

pytestmark = pytest.mark.kernel

CAT = shutil.which("cat")
SINK = "collector"


def sink_config(port: int) -> str:
    return ("throttle: {maxAlertsPerSecond: 100000}\n"
            "sinks:\n"
            "  remote:\n"
            f"  - name: {SINK}\n"
            "    type: forward\n"
            f"    address: 127.0.0.1:{port}\n"
            "    retryMaxSeconds: 1\n"
            "    sendTimeoutSeconds: 2\n")


def audit_policy(name: str, path: str) -> str:
    return POLICY_HEAD.format(name=name) + (
        "  severity: 7\n"
        f"  message: read of {path}\n"
        "  file:\n"
        "    matchPaths:\n"
        f"    - path: {path}\n"
        "  action: Audit\n"
    )


def sink_status(agent: AgentProc) -> dict:
    try:
        return agent.status()["alerts"]["sinks"][SINK]
    except (KeyError, ValueError):
        return {}


def test_spooled_alerts_survive_kill_9_and_are_delivered_after_restart(tmp_path, monkeypatch):
    assert os.geteuid() == 0, "kernel tests run as root"
    ensure_journald()
    state = tmp_path / "state"
    monkeypatch.setenv("KARMOR_STATE_DIR", str(state))  # AgentProc passes our environment on
    port = free_port()  # nothing listens there yet: the collector is down
    target = tmp_path / "secret.txt"
    target.write_text("s3cret\n")
    os.chmod(tmp_path, 0o755)
    name = unique("audit-spool")

    (tmp_path / "run1").mkdir()
    (tmp_path / "run2").mkdir()
    first = AgentProc(tmp_path / "run1", extra_config=sink_config(port))
    first.write_policy(f"{name}.yaml", audit_policy(name, str(target)))
    first.start()
    try:
        assert wait_for(lambda: first.applied_count() >= 1, 5)
        pids = []
        for _ in range(5):
            p = subprocess.Popen([CAT, str(target)], stdout=subprocess.DEVNULL)
            p.wait()
            pids.append(p.pid)
        # status.json is rewritten every 2 s: the sink's counters are in it
        st = wait_for(lambda: (s := sink_status(first)) and s.get("spooled", 0) >= 5 and s, timeout=10)
        assert st, f"alerts not spooled: {sink_status(first)}\n{first.log()[-3000:]}"
        assert st["connected"] is False and st["sent"] == 0 and st["send_errors"] > 0
        assert st["dropped"] == 0 and "Connection refused" in st["last_error"]
        spool_dir = state / "spool" / SINK
        assert any(spool_dir.glob("*.seg"))
        assert oct(spool_dir.stat().st_mode & 0o777) == "0o700"
    finally:
        assert first.proc is not None
        first.proc.kill()  # SIGKILL: no clean shutdown, no flush
        first.proc.wait()

    rx = FluentReceiver(port=port).start()
    second = AgentProc(tmp_path / "run2", extra_config=sink_config(port))
    try:
        second.write_policy(f"{name}.yaml", audit_policy(name, str(target)))
        second.start()
        got = wait_for(lambda: {r["record"]["HostPID"] for r in rx.snapshot()
                                if r["record"].get("PolicyName") == name} >= set(pids), timeout=20)
        assert got, f"spooled alerts not delivered: {rx.snapshot()[:3]}\n{second.log()[-3000:]}"
        recs = [r["record"] for r in rx.snapshot() if r["record"].get("PolicyName") == name]
        assert {r["HostPID"] for r in recs} == set(pids)
        for r in recs:
            assert r["Resource"] == str(target) and r["Type"] == "MatchedHostPolicy" and r["Severity"] == "7"
        assert {r["tag"] for r in rx.snapshot()} == {"karmor.alert"}
        st = wait_for(lambda: (s := sink_status(second)) and s.get("sent", 0) >= 5 and s, timeout=10)
        assert st and st["connected"] is True and st["spooled"] == 0, sink_status(second)
    finally:
        second.stop()
        rx.stop()

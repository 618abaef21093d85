"""The real agent (`karmor-host run`) reloads its forward sinks on SIGHUP: a sink whose
address changed delivers to the new collector and no longer to the old one, a sink added
starts delivering, a sink removed stops, an unchanged sink keeps its one connection, and a
configuration with a sink that cannot be built is refused whole."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from tests.kernel.agent_harness import AgentProc, ensure_journald, unique, wait_for
from tests.sinks.fluent_receiver import FluentReceiver
from tests.sinks.test_forward_agent import audit_policy

pytestmark = pytest.mark.kernel

CAT = shutil.which("cat")


def sink(name: str, port: int) -> str:
    return (f"  - name: {name}\n    type: forward\n    address: 127.0.0.1:{port}\n"
            "    retryMaxSeconds: 1\n    sendTimeoutSeconds: 2\n")


def sinks_config(*entries: str) -> str:
    return "throttle: {maxAlertsPerSecond: 100000}\nsinks:\n  remote:\n" + "".join(entries)


def rewrite_config(agent: AgentProc, extra: str) -> None:
    """What an administrator does before `systemctl reload`: the same head AgentProc wrote."""
    (agent.workdir / "karmor-host.yaml").write_text(f"enforcer: {agent.enforcer}\nlogLevel: debug\n" + extra)


def reload(agent: AgentProc, expect: dict[str, int]) -> None:
    """SIGHUP, then wait until the log shows at least `expect[event]` lines of each event."""
    applied = agent.applied_count()
    agent.signal(signal.SIGHUP)
    agent.wait_applied(applied, timeout=10)  # the reload's policy apply comes after the sinks
    for event, n in expect.items():
        assert len(agent.log_events(event)) >= n, f"no {event}:\n{agent.log()[-3000:]}"


def read_file(path: Path, n: int = 3) -> set[int]:
    pids = set()
    for _ in range(n):
        p = subprocess.Popen([CAT, str(path)], stdout=subprocess.DEVNULL)
        p.wait()
        pids.add(p.pid)
    return pids


def pids_at(rx: FluentReceiver, policy: str) -> set[int]:
    return {r["record"]["HostPID"] for r in rx.snapshot() if r["record"].get("PolicyName") == policy}


def arrived(rx: FluentReceiver, policy: str, pids: set[int], timeout: float = 15) -> bool:
    return bool(wait_for(lambda: pids_at(rx, policy) >= pids, timeout=timeout))


def test_sighup_moves_adds_and_removes_sinks_and_keeps_the_unchanged_one(tmp_path, monkeypatch):
    assert os.geteuid() == 0, "kernel tests run as root"
    ensure_journald()
    monkeypatch.setenv("KARMOR_STATE_DIR", str(tmp_path / "state"))  # AgentProc passes our environment on
    old, new, kept, added = (FluentReceiver().start() for _ in range(4))
    target = tmp_path / "secret.txt"
    target.write_text("s3cret\n")
    os.chmod(tmp_path, 0o755)
    name = unique("audit-reload")
    (tmp_path / "run").mkdir()
    agent = AgentProc(tmp_path / "run", extra_config=sinks_config(sink("moving", old.port), sink("kept", kept.port)))
    agent.write_policy(f"{name}.yaml", audit_policy(name, str(target)))
    agent.start()
    try:
        assert wait_for(lambda: agent.applied_count() >= 1, 5)
        first = read_file(target)
        assert arrived(old, name, first) and arrived(kept, name, first), agent.log()[-3000:]

        # moving: old -> new collector; added: a second new sink; kept: unchanged
        rewrite_config(agent, sinks_config(sink("moving", new.port), sink("kept", kept.port),
                                           sink("added", added.port)))
        reload(agent, {"sink_replaced": 1, "sink_added": 1})
        [replaced] = agent.log_events("sink_replaced")
        assert (replaced["sink"], replaced["destination"], replaced["was"], replaced["changed"]) == (
            "moving", f"forward 127.0.0.1:{new.port}", f"forward 127.0.0.1:{old.port}", ["address"])
        second = read_file(target)
        for rx in (new, kept, added):
            assert arrived(rx, name, second), (rx.port, agent.log()[-3000:])
        assert not pids_at(old, name) & second, "the old collector still receives"

        # added removed again: it stops receiving; the others go on
        rewrite_config(agent, sinks_config(sink("moving", new.port), sink("kept", kept.port)))
        reload(agent, {"sink_removed": 1})
        [removed] = agent.log_events("sink_removed")
        assert (removed["sink"], removed["destination"]) == ("added", f"forward 127.0.0.1:{added.port}")
        third = read_file(target)
        assert arrived(new, name, third) and arrived(kept, name, third), agent.log()[-3000:]
        assert not pids_at(added, name) & third and not pids_at(old, name) & (second | third)

        # a sink that cannot be built refuses the whole configuration: the running sinks stay
        bad_tls = "    tls: {enabled: true, caFile: /nonexistent/ca.pem}\n"
        rewrite_config(agent, sinks_config(sink("moving", old.port), sink("kept", kept.port),
                                           sink("broken", added.port) + bad_tls))
        reload(agent, {"reload_config_refused": 1})
        [refused] = agent.log_events("reload_config_refused")
        assert "sinks.remote broken: cannot load tls.caFile /nonexistent/ca.pem" in refused["error"]
        assert len(agent.log_events("sink_replaced")) == 1 and not agent.log_events("sink_added")[1:]
        fourth = read_file(target)
        assert arrived(new, name, fourth) and arrived(kept, name, fourth), agent.log()[-3000:]
        assert not pids_at(old, name) & fourth

        assert kept.connections == 1, "the unchanged sink reconnected"
        sinks = agent.status()["alerts"]["sinks"]  # status.json is rewritten by every reload
        assert set(sinks) == {"journald", "moving", "kept"}, sinks
        assert sinks["moving"]["address"] == f"127.0.0.1:{new.port}" and sinks["kept"]["connects"] == 1
        assert not any(rx.errors for rx in (old, new, kept, added))
    finally:
        agent.stop()
        for rx in (old, new, kept, added):
            rx.stop()

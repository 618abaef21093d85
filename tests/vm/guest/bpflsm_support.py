"""What the BPF-LSM guest tests share: a scratch tree on tmpfs, the real agent (AgentProc from
tests/kernel/agent_harness.py) with `enforcer: bpflsm`, policies applied for the length of a
`with` block, alerts read back from the guest's journald, and the matrix results file that
tools/gen-enforcement-matrix.py turns into docs/enforcement-matrix.md."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.kernel.agent_harness import KARMOR, POLICY_HEAD, AgentProc, journal, unique, wait_for

BACKEND = "BPF-LSM"
BUSYBOX = "/usr/bin/busybox"  # static: a source program that opens no library when it starts
MATRIX_FILE = "enforcement-matrix.jsonl"
PIN_DIR = Path("/sys/fs/bpf/karmor/lsm")


def run(*argv: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout)


def sh(script: str, shell: str = BUSYBOX) -> subprocess.CompletedProcess:
    """A command line run by busybox's sh (the fromSource program of most tests)."""
    return run(shell, "sh", "-c", script)


def denied(proc: subprocess.CompletedProcess) -> bool:
    return proc.returncode != 0 and "Permission denied" in proc.stderr + proc.stdout


def not_permitted(proc: subprocess.CompletedProcess) -> bool:
    return proc.returncode != 0 and "Operation not permitted" in proc.stderr + proc.stdout


@dataclass
class Scratch:
    """/run/karmor-test on its own tmpfs: programs and files the rules name."""

    root: Path

    @property
    def bin(self) -> Path:
        return self.root / "bin"

    @property
    def data(self) -> Path:
        return self.root / "data"

    def program(self, name: str) -> str:
        return str(self.bin / name)

    def file(self, name: str, text: str = "data\n") -> str:
        path = self.data / name
        path.write_text(text)
        os.chmod(path, 0o644)
        return str(path)


def make_scratch() -> Scratch:
    root = Path("/run/karmor-test")
    if root.is_mount():
        subprocess.run(["umount", "-l", str(root)], check=False)
    root.mkdir(exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=0755", "karmor-test", str(root)], check=True)
    s = Scratch(root)
    s.bin.mkdir()
    s.data.mkdir()
    for name in ("hello", "other", "allowed"):
        shutil.copy2("/usr/bin/true", s.bin / name)
    return s


def drop_scratch(s: Scratch) -> None:
    subprocess.run(["umount", "-l", str(s.root)], check=False)


@pytest.fixture(scope="module")
def scratch() -> Iterator[Scratch]:
    """A fresh tmpfs of programs and files per test module (imported by the modules)."""
    s = make_scratch()
    yield s
    drop_scratch(s)


@pytest.fixture(scope="module")
def agent(request, tmp_path_factory, scratch) -> AgentProc:
    """The session's shared BPF-LSM agent (the matrix module has its own, per backend)."""
    return shared_agent(request, tmp_path_factory)


def start_agent(workdir: Path, postures: dict[str, str] | None = None, enforcer: str = "auto") -> AgentProc:
    """The real agent; `enforcer: auto` picks BPF-LSM in this guest (tests assert it)."""
    agent = AgentProc(workdir, extra_config=extra_config(postures), enforcer=enforcer)
    if agent.log_path.exists():  # a restart: its "ready" must be the new agent's
        agent.log_path.rename(agent.log_path.with_name(f"agent-{time.time_ns()}.log"))
    agent.ready_seconds = agent.start(timeout=180)
    return agent


def extra_config(postures: dict[str, str] | None) -> str:
    # every alert reaches the journal: whitelist tests raise many
    text = "throttle: {maxAlertsPerSecond: 100000}\n"
    if postures:
        text += "defaultPosture: {" + ", ".join(f"{k}: {v}" for k, v in sorted(postures.items())) + "}\n"
    return text


def reconfigure(agent: AgentProc, postures: dict[str, str]) -> None:
    """New default postures through SIGHUP (the running configuration is re-read)."""
    agent.extra_config = extra_config(postures)
    (agent.workdir / "karmor-host.yaml").write_text(f"enforcer: {agent.enforcer}\nlogLevel: debug\n"
                                                    + agent.extra_config)
    before = len([e for e in agent.log_events("applied") if e.get("why") == "reload"])
    agent.signal(signal.SIGHUP)
    if not wait_for(lambda: len([e for e in agent.log_events("applied") if e.get("why") == "reload"]) > before, 60):
        raise AssertionError("no reload:\n" + agent.log()[-3000:])


_SHARED: dict[str, AgentProc] = {}


def shared_agent(request, tmp_path_factory, enforcer: str = "auto") -> AgentProc:
    """One agent per enforcer for all the guest modules that use it (starting one costs seconds
    under TCG); stopped, and its kernel state removed, when the session ends."""
    agent = _SHARED.get(enforcer)
    if agent is None or agent.proc is None or agent.proc.poll() is not None:
        if not _SHARED:
            request.session.addfinalizer(_stop_shared)
        agent = start_agent(tmp_path_factory.mktemp(f"{'bpflsm' if enforcer == 'auto' else enforcer}-agent"),
                            enforcer=enforcer)
        _SHARED[enforcer] = agent
    return agent


def replace_shared(agent: AgentProc) -> None:
    """After a test restarted the agent: the new one is the shared one."""
    _SHARED[agent.enforcer] = agent


def _stop_shared() -> None:
    for key in list(_SHARED):
        agent = _SHARED.pop(key)
        stop_agent(agent, cleanup=agent.proc is not None and agent.proc.poll() is None)


def status(agent: AgentProc) -> dict:
    """The agent's status document, read from its file (a `karmor-host status` process costs
    seconds under TCG)."""
    return json.loads((agent.run_dir / "status.json").read_text())


def stop_agent(agent: AgentProc, cleanup: bool = True) -> None:
    agent.stop(timeout=60)
    if cleanup:
        cleanup_pins(agent)


def cleanup_pins(agent: AgentProc) -> subprocess.CompletedProcess:
    env = dict(os.environ, KARMOR_RUN_DIR=str(agent.run_dir))
    return subprocess.run([KARMOR, "run", "--cleanup"], capture_output=True, text=True, env=env, timeout=120)


def policy_text(name: str, body: str) -> str:
    return POLICY_HEAD.format(name=name) + body


@contextmanager
def applied(agent: AgentProc, name: str, body: str, timeout: float = 60):
    """The policy `name` in force while the block runs; removed (and the removal applied) after."""
    path = write_policy(agent, name, body, timeout)
    try:
        yield path
    finally:
        remove_policy(agent, path, timeout)


def write_policy(agent: AgentProc, name: str, body: str, timeout: float = 60) -> Path:
    before = agent.applied_count()
    path = agent.write_policy(f"{name}.yaml", policy_text(name, body))
    agent.wait_applied(before, timeout)
    last = agent.log_events("applied")[-1]
    assert name in last["active"], f"{name} not active: {last}"
    return path


def remove_policy(agent: AgentProc, path: Path, timeout: float = 60, by: str = "") -> None:
    """`by` BUSYBOX: removed by busybox rm rather than by this (python) process."""
    before = agent.applied_count()
    if by:
        proc = run(by, "rm", "-f", str(path))
        assert proc.returncode == 0, proc.stderr
    else:
        path.unlink(missing_ok=True)
    agent.wait_applied(before, timeout)


def write_policy_by(agent: AgentProc, name: str, body: str, staging: Path, timeout: float = 60) -> Path:
    """write_policy, but the file is put in place by busybox (cp to a temp name, then mv):
    for when a rule denies python itself writing into the policy directory."""
    before = agent.applied_count()
    staged = staging / f"{name}.yaml"
    staged.write_text(policy_text(name, body))
    path = agent.policy_dir / f"{name}.yaml"
    tmp = agent.policy_dir / f".{name}.yaml.tmp"
    proc = run(BUSYBOX, "sh", "-c", f"cp {staged} {tmp} && chmod 644 {tmp} && mv {tmp} {path}")
    assert proc.returncode == 0, proc.stderr
    agent.wait_applied(before, timeout)
    assert name in agent.log_events("applied")[-1]["active"]
    return path


def alerts_of(policy: str, since: float, timeout: float = 20, **fields: str) -> list[dict]:
    """The policy's alerts in the journal since `since`, waiting for the first one."""
    found = wait_for(lambda: journal(policy, since=since, KARMOR_TYPE="MatchedHostPolicy", **fields), timeout, 0.3)
    return found or []


def one_alert(policy: str, since: float, timeout: float = 20, **fields: str) -> dict:
    found = alerts_of(policy, since, timeout, **fields)
    assert found, f"no alert of {policy} ({fields}) in the journal since {since}"
    return found[-1]


def no_alert(policy: str, since: float, settle: float = 1.5, **fields: str) -> None:
    time.sleep(settle)
    assert journal(policy, since=since, KARMOR_TYPE="MatchedHostPolicy", **fields) == []


def fields(rec: dict, *names: str) -> dict:
    return {n: rec[n] for n in names}


class Matrix:
    """Verified cells, one JSON line each, for tools/gen-enforcement-matrix.py."""

    def __init__(self, out: Path, backend: str = BACKEND) -> None:
        self.path = out / MATRIX_FILE
        self.backend = backend

    def record(self, category: str, mode: str, scope: str, effect: str, alert: dict | None, note: str = "") -> None:
        row = {
            "backend": self.backend, "category": category, "mode": mode, "scope": scope, "effect": effect,
            "alert": {k: alert[k] for k in ("PolicyName", "Action", "Enforcer", "Result")} if alert else None,
            "note": note, "kernel": os.uname().release,
        }
        self._write(row)

    def scenario(self, scenario: str, effect: str, alert: dict | None) -> None:
        self._write({
            "backend": self.backend, "scenario": scenario, "effect": effect, "kernel": os.uname().release,
            "alert": {k: alert[k] for k in ("PolicyName", "Action", "Enforcer", "Result")} if alert else None,
        })

    def _write(self, row: dict) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(row, sort_keys=True) + "\n")


def name(prefix: str) -> str:
    return unique(prefix)

"""Runs the real agent as a subprocess against a temp policy directory and a real journald."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from tests.policytext import host_policy

REPO = Path(__file__).resolve().parents[2]
KARMOR = str(REPO / ".venv" / "bin" / "karmor-host")

POLICY_HEAD = host_policy("{name}", "")  # a template: POLICY_HEAD.format(name=...) + body


def ensure_journald() -> None:
    subprocess.run([str(REPO / "tools" / "ensure-journald.sh")], check=True)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def journal(policy: str | None = None, since: float = 0.0, **fields: str) -> list[dict]:
    """Records the agent wrote to the journal (parsed KARMOR_RECORD_JSON), oldest first."""
    args = ["journalctl", "--no-pager", "-o", "json", "-t", "karmor-host"]
    if since:
        args += ["--since", f"@{since:.6f}"]
    if policy:
        args.append(f"KARMOR_POLICY_NAME={policy}")
    args += [f"{k}={v}" for k, v in fields.items()]
    out = subprocess.run(args, capture_output=True, text=True).stdout
    recs = []
    for line in out.splitlines():
        entry = json.loads(line)
        if "KARMOR_RECORD_JSON" in entry:
            rec = json.loads(entry["KARMOR_RECORD_JSON"])
            rec["_entry"] = entry
            recs.append(rec)
    return recs


def wait_for(fn, timeout: float = 3.0, interval: float = 0.1):
    """Poll `fn` until it returns something truthy; return that (or the last falsy value)."""
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


@dataclass
class AgentProc:
    workdir: Path
    extra_config: str = ""
    proc: subprocess.Popen | None = None
    enforcer: str = "auto"  # the config's `enforcer:`
    policy_dir: Path = field(init=False)
    run_dir: Path = field(init=False)
    log_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.policy_dir = self.workdir / "policies"
        self.policy_dir.mkdir(mode=0o755, exist_ok=True)
        os.chmod(self.workdir, 0o755)
        self.run_dir = self.workdir / "run"
        self.log_path = self.workdir / "agent.log"

    def start(self, timeout: float = 10.0) -> float:
        cfg = self.workdir / "karmor-host.yaml"
        cfg.write_text(f"enforcer: {self.enforcer}\nlogLevel: debug\n" + self.extra_config)
        env = dict(os.environ, KARMOR_RUN_DIR=str(self.run_dir))
        t0 = time.monotonic()
        self.proc = subprocess.Popen(
            [KARMOR, "run", "--config", str(cfg), "--policy-dir", str(self.policy_dir)],
            stdout=subprocess.DEVNULL, stderr=open(self.log_path, "ab"), env=env,
        )
        if not wait_for(lambda: '"event": "ready"' in self.log(), timeout):
            self.stop()
            raise AssertionError(f"agent not ready in {timeout}s:\n{self.log()[-4000:]}")
        return time.monotonic() - t0

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_events(self, name: str) -> list[dict]:
        out = []
        for line in self.log().splitlines():
            if line.startswith("{") and f'"event": "{name}"' in line:
                out.append(json.loads(line))
        return out

    def applied_count(self) -> int:
        return len(self.log_events("applied"))

    def write_policy(self, filename: str, text: str, mode: int = 0o644) -> Path:
        """Atomic write (temp + rename), as an editor or config manager would."""
        path = self.policy_dir / filename
        tmp = self.policy_dir / f".{filename}.tmp"
        tmp.write_text(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
        return path

    def wait_applied(self, after: int, timeout: float = 3.0) -> None:
        if not wait_for(lambda: self.applied_count() > after, timeout):
            raise AssertionError(f"no re-apply within {timeout}s:\n{self.log()[-3000:]}")

    def status(self) -> dict:
        env = dict(os.environ, KARMOR_RUN_DIR=str(self.run_dir))
        out = subprocess.run([KARMOR, "status", "--json"], capture_output=True, text=True, env=env)
        return json.loads(out.stdout)

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 10.0) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("agent did not stop on SIGTERM")

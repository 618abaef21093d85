"""The real daemon inside namespace A: `ip netns exec A karmor-host run ...`, so the table it
installs lands in that namespace only (never in the host's)."""

from __future__ import annotations

import os
import subprocess
import time

from tests.kernel.agent_harness import KARMOR, AgentProc, wait_for


class NetnsAgent(AgentProc):
    netns: str = ""

    def start(self, timeout: float = 20.0) -> float:
        cfg = self.workdir / "karmor-host.yaml"
        cfg.write_text("enforcer: none\nlogLevel: debug\n" + self.extra_config)
        env = dict(os.environ, KARMOR_RUN_DIR=str(self.run_dir))
        t0 = time.monotonic()
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", self.netns, KARMOR, "run", "--config", str(cfg),
             "--policy-dir", str(self.policy_dir)],
            stdout=subprocess.DEVNULL, stderr=open(self.log_path, "ab"), env=env,
        )
        if not wait_for(lambda: '"event": "ready"' in self.log(), timeout):
            self.stop()
            raise AssertionError(f"agent not ready in {timeout}s:\n{self.log()[-4000:]}")
        return time.monotonic() - t0

    def firewall(self) -> dict:
        return self.status()["firewall"]

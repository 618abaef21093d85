"""The agent with `enforcer: apparmor` in the guest: policies in a watched directory become
loaded profiles, a denial becomes one journald alert from AppArmor (and none from the
monitor), removing the policy unloads its profile, and `run --cleanup` removes the rest."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.kernel.agent_harness import KARMOR, POLICY_HEAD, journal, unique, wait_for

pytestmark = pytest.mark.vm_config("apparmor")

SECURITYFS_PROFILES = Path("/sys/kernel/security/apparmor/profiles")


def karmor_profiles() -> set[str]:
    return {line.rsplit(" (", 1)[0] for line in SECURITYFS_PROFILES.read_text().splitlines()
            if line.startswith("karmor")}


@pytest.fixture(scope="module")
def agent():
    """One agent for the module (its start is the slow part under emulation); the tests run
    in file order, the last one stops it."""
    work = Path(tempfile.mkdtemp(prefix="karmor-agent-", dir="/tmp"))
    os.chmod(work, 0o755)
    policies = work / "policies"
    policies.mkdir(mode=0o755)
    state = work / "state"
    cfg = work / "karmor-host.yaml"
    cfg.write_text("enforcer: apparmor\nlogLevel: debug\nvisibility: []\n")
    env = dict(os.environ, KARMOR_RUN_DIR=str(work / "run"), KARMOR_STATE_DIR=str(state))
    log = work / "agent.log"
    proc = subprocess.Popen([KARMOR, "run", "--config", str(cfg), "--policy-dir", str(policies)],
                            stdout=subprocess.DEVNULL, stderr=open(log, "ab"), env=env)  # noqa: SIM115

    def text() -> str:
        return log.read_text(errors="replace")

    assert wait_for(lambda: '"event": "ready"' in text(), 120), text()[-3000:]
    yield {"dir": work, "policies": policies, "env": env, "log": text, "proc": proc}
    if proc.poll() is None:
        proc.terminate()
        proc.wait(30)
    subprocess.run([KARMOR, "run", "--cleanup"], env=env, capture_output=True, timeout=120)


def _applied(agent, generation: int) -> bool:
    return any(json.loads(line).get("generation") == generation
               for line in agent["log"]().splitlines() if '"event": "applied"' in line)


def _status(agent) -> dict:
    return json.loads((agent["dir"] / "run" / "status.json").read_text())


def test_a_denial_is_one_alert_from_apparmor_and_removing_the_policy_unloads(agent):
    secret = agent["dir"] / "secret"
    secret.write_text("s\n")
    os.chmod(secret, 0o644)
    name = unique("aa-block")
    policy = agent["policies"] / "block.yaml"
    policy.write_text(POLICY_HEAD.format(name=name) + f"""\
  severity: 8
  message: secret read
  action: Block
  file:
    matchPaths:
    - path: {secret}
  process:
    matchPaths:
    - path: /usr/bin/od
      fromSource:
      - path: /usr/bin/env
""")
    assert wait_for(lambda: _applied(agent, 2), 60), agent["log"]()[-3000:]
    assert karmor_profiles() == {"karmor-global", "karmor-src-usr.bin.env"}
    st = _status(agent)
    assert st["enforcer"]["name"] == "apparmor" and "karmor-global" in st["enforcer"]["state"]["loaded"]
    since = time.time()
    assert subprocess.run(["cat", str(secret)], capture_output=True).returncode != 0
    assert subprocess.run(["env", "od", "/dev/null"], capture_output=True).returncode == 126
    recs = wait_for(lambda: len(journal(name, since)) >= 2 and journal(name, since), 30)
    assert recs, agent["log"]()[-3000:]
    by_op = {r["Operation"]: r for r in recs}
    f = by_op["File"]
    assert (f["Enforcer"], f["Action"], f["Result"], f["Resource"]) == ("AppArmor", "Block", "Permission denied", str(secret))
    assert f["Severity"] == "8" and f["Message"] == "secret read" and f["Type"] == "MatchedHostPolicy"
    assert f["Data"].startswith("apparmor=DENIED operation=open profile=karmor-global")
    p = by_op["Process"]
    assert (p["Enforcer"], p["Action"], p["Source"], p["ProcessName"]) == ("AppArmor", "Block", "/usr/bin/env", "/usr/bin/od")
    time.sleep(2)  # anything the monitor would add has arrived by now
    assert len(journal(name, since)) == 2, [r["Enforcer"] for r in journal(name, since)]
    # Removing the policy unloads its profiles.
    policy.unlink()
    assert wait_for(lambda: _applied(agent, 3), 60)
    assert wait_for(lambda: not karmor_profiles(), 10), karmor_profiles()
    assert subprocess.run(["cat", str(secret)], capture_output=True).returncode == 0


def test_stopping_keeps_the_profiles_and_cleanup_removes_them(agent):
    policy = agent["policies"] / "g.yaml"
    policy.write_text(POLICY_HEAD.format(name=unique("aa-keep")) + """\
  file:
    matchPaths:
    - path: /nonexistent/karmor-keep
      action: Block
""")
    assert wait_for(lambda: _applied(agent, 4), 60)
    assert karmor_profiles() == {"karmor-global"}
    agent["proc"].terminate()
    assert agent["proc"].wait(60) == 0
    assert karmor_profiles() == {"karmor-global"}  # no gap while the agent restarts
    out = subprocess.run([KARMOR, "run", "--cleanup"], env=agent["env"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "apparmor: profile karmor-global removed" in out.stdout + out.stderr
    assert karmor_profiles() == set()

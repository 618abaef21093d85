"""BPF-LSM over the agent's life, in this order (the module runs after the matrix and the
scenarios, on the same agent): a policy is enforced moments after its file is dropped; rule
set changes never open a gap; `run --cleanup` refuses while the agent runs; no rule stops the
agent from reading its policies or from starting; a stopped and restarted agent keeps
blocking throughout and reports what was blocked meanwhile; `run --cleanup` then removes
everything. Timings go to <work dir>/bpflsm-timings.json (docs/bpf-lsm.md quotes them)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.kernel.agent_harness import journal, wait_for
from tests.vm.guest.bpflsm_support import (  # agent and scratch: module fixtures
    status,
    agent, scratch,
    BUSYBOX, PIN_DIR, cleanup_pins, denied, name, one_alert, policy_text, remove_policy,
    replace_shared, run, shared_agent, start_agent, stop_agent, write_policy, write_policy_by,
)

pytestmark = pytest.mark.vm_config("bpflsm")

# A child that opens PATH every INTERVAL seconds until STOP exists; prints "<opened> <denied>".
# Each denial is an alert: the interval keeps them under journald's rate limit (10 000 per 30 s
# from one process) and the ring buffer's room while no agent reads it.
PROBE = """
import os, sys, time
path, stop, interval = sys.argv[1], sys.argv[2], float(sys.argv[3])
ok = no = 0
while not os.path.exists(stop):
    try:
        os.close(os.open(path, os.O_RDONLY))
        ok += 1
    except PermissionError:
        no += 1
    time.sleep(interval)
print(ok, no)
"""


@pytest.fixture(scope="module")
def timings(vm_out):
    data: dict = {}
    yield data
    (vm_out / "bpflsm-timings.json").write_text(json.dumps(data, indent=2, sort_keys=True))


@pytest.fixture(scope="module")
def held():
    """Policies a test leaves in force for the next one."""
    return {}


class Prober:
    def __init__(self, path: str, workdir: Path, interval: float) -> None:
        self.stop_file = workdir / f"stop-{time.monotonic_ns()}"
        self.proc = subprocess.Popen([sys.executable, "-c", PROBE, path, str(self.stop_file), str(interval)],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def finish(self) -> tuple[int, int]:
        self.stop_file.touch()
        out, err = self.proc.communicate(timeout=120)
        assert self.proc.returncode == 0, err
        ok, no = map(int, out.split())
        return ok, no


def can_open(path: str) -> bool:
    try:
        os.close(os.open(path, os.O_RDONLY))
        return True
    except PermissionError:
        return False


def test_enforced_moments_after_the_file_is_dropped_and_no_gap_while_rules_change(agent, scratch, timings, tmp_path):
    timings["agent_ready_s"] = round(agent.ready_seconds, 2)
    secret = scratch.file("latency.txt")
    policy = name("latency")
    body = f"  file:\n    matchPaths:\n    - path: {secret}\n  action: Block\n"
    before = agent.applied_count()
    t0 = time.monotonic()
    path = agent.write_policy(f"{policy}.yaml", policy_text(policy, body))
    assert wait_for(lambda: not can_open(secret), 60, 0.002), agent.log()[-2000:]
    timings["drop_to_enforced_s"] = round(time.monotonic() - t0, 3)
    agent.wait_applied(before, 60)
    last = agent.log_events("applied")[-1]
    timings["apply_total_ms"], timings["apply_enforcer_ms"] = last.get("latency_ms"), last.get("enforcer_ms")
    # change the rule set again and again while a process keeps trying
    prober = Prober(secret, tmp_path, 0.002)
    time.sleep(1)
    gen0 = status(agent)["enforcer"]["state"]["generation"]
    for i in range(6):
        write_policy(agent, policy, f"  file:\n    matchPaths:\n    - path: {secret}\n"
                     f"    - path: {scratch.data}/extra-{i}\n  message: version {i}\n  action: Block\n")
    ok, no = prober.finish()
    assert ok == 0 and no > 0, f"opened {ok} times during 6 rule-set swaps ({no} denied)"
    assert status(agent)["enforcer"]["state"]["generation"] >= gen0 + 6
    timings["swaps_under_load"] = {"swaps": 6, "attempts_denied": no, "attempts_opened": ok}
    remove_policy(agent, path)
    assert can_open(secret)


def test_cleanup_refuses_while_the_agent_runs(agent):
    proc = cleanup_pins(agent)
    assert proc.returncode == 1 and "stop it first" in proc.stderr
    assert (PIN_DIR / "lsm_state").exists()


def test_no_rule_stops_the_agent_reading_its_policies(agent, scratch, held):
    # python itself may not run, nor python programs read the policy directory: the agent is
    # a python program (policies are put in place by busybox from here on)
    interpreter = os.path.realpath(sys.executable)
    policy = name("block-agent")
    body = (f"  process:\n    matchPaths:\n    - path: {interpreter}\n  file:\n    matchDirectories:\n"
            f"    - dir: {agent.policy_dir}/\n      recursive: true\n      fromSource:\n      - path: {interpreter}\n"
            "  action: Block\n")
    held["agent"] = write_policy_by(agent, policy, body, scratch.data)
    (active,) = [p for p in status(agent)["policies"]["active"] if p["name"] == policy]
    assert all("never denies the agent's own files" in r["reason"] for r in active["rules"]), active
    # the agent still reads new policies
    other = write_policy_by(agent, name("still-applied"), f"  file:\n    matchPaths:\n    - path: "
                            f"{scratch.file('x.txt')}\n  action: Audit\n", scratch.data)
    remove_policy(agent, other, by=BUSYBOX)
    # for any other python program the rule reports what it would have blocked
    t0 = time.time()
    p = run(sys.executable, "-c", f"print(open({str(held['agent'])!r}).read()[:10])")
    assert p.returncode == 0, p.stderr
    rec = one_alert(policy, t0, KARMOR_OPERATION="File")
    assert (rec["Action"], rec["Enforcer"], rec["Result"]) == ("Audit (Block)", "BPFLSM", "Passed"), rec
    rec = one_alert(policy, t0, KARMOR_OPERATION="Process")
    assert (rec["Action"], rec["Enforcer"], rec["ProcessName"]) == ("Audit (Block)", "BPFLSM", interpreter), rec


def test_stopped_and_restarted_agent_keeps_blocking_and_starts_despite_its_rules(agent, scratch, timings, held,
                                                                               tmp_path):
    secret = scratch.file("restart.txt")
    policy = name("restart")
    held["restart"] = write_policy_by(agent, policy, f"  file:\n    matchPaths:\n    - path: {secret}\n"
                                      "  action: Block\n", scratch.data)
    prober = Prober(secret, tmp_path, 0.02)
    time.sleep(1)
    t_stop = time.time()
    stop_agent(agent, cleanup=False)
    assert (PIN_DIR / "lsm_state").exists()
    # stopped: still blocked; the decision waits in the pinned ring buffer
    time.sleep(0.5)
    assert denied(run("cat", secret))
    t_down = time.time()
    # a new agent, with the rules that name its interpreter and policies in force, starts,
    # adopts the pinned state, and the prober never got through
    t_start = time.monotonic()
    agent = start_agent(agent.workdir)
    replace_shared(agent)
    timings["restart_ready_s"] = round(time.monotonic() - t_start, 2)
    state = status(agent)["enforcer"]["state"]
    assert state["mode"] == "adopted", state
    time.sleep(1)
    ok, no = prober.finish()
    assert ok == 0 and no > 0, f"opened {ok} times across the restart ({no} denied)"
    timings["restart_attempts_denied"] = no
    # what was blocked while no agent ran is reported now, with its own time
    recs = wait_for(lambda: [r for r in journal(policy, since=t_stop) if r.get("ProcessName") == "/usr/bin/cat"], 30)
    assert recs, "the denial while the agent was stopped was not reported"
    assert any(t_stop - 1 <= r["Timestamp"] <= t_down + 1 for r in recs), [r["Timestamp"] for r in recs]
    assert all(r["Enforcer"] == "BPFLSM" and r["Action"] == "Block" for r in recs)


def test_cleanup_removes_everything(request, tmp_path_factory, scratch, held):
    agent = shared_agent(request, tmp_path_factory)
    for path in held.values():
        remove_policy(agent, path, by=BUSYBOX)
    secret = scratch.file("gone.txt")
    write_policy(agent, name("until-cleanup"), f"  file:\n    matchPaths:\n    - path: {secret}\n  action: Block\n")
    stop_agent(agent, cleanup=False)
    assert denied(run("cat", secret))  # pinned, no agent
    proc = cleanup_pins(agent)
    assert proc.returncode == 0, proc.stderr
    assert "lsm_state" in proc.stdout and not PIN_DIR.exists()
    assert run("cat", secret).returncode == 0

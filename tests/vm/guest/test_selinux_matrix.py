"""The SELinux column of the enforcement matrix: process, file, network and capability rules x
Block, Audit, Allow with the block posture, Allow with the audit posture x global and
fromSource, through the real agent (`enforcer: selinux`) in the `selinux` guest. Each cell
shows what the user sees (EACCES, EPERM or success) and the alert in journald (PolicyName,
Action, Enforcer, Result), and is written to <work dir>/enforcement-matrix.jsonl for
tools/gen-enforcement-matrix.py (docs/enforcement-matrix.md).

The intents are the BPF-LSM matrix's (busybox, a static program, is the source; UDP through
`nslookup`, `chown` for the capability, a copy of `true` for exec). What differs is batching:
a new module costs SELinux a policy rebuild (30-80 s under TCG), so every cell gets programs
and files of its own (each its own busybox copy as the source) and the cells that can share a
rule set are applied together, in four rounds: the fromSource and Block/Audit cells with the
audit posture, the fromSource whitelists with the block posture, then the host-wide whitelists
with each posture (which would confine every process, so they go alone).

What this guest cannot show: files on its 9p root carry no labels (the cells use a tmpfs
mounted after the policy load), and every process virtme starts is kernel_t, an unconfined
domain -- the parent of every source program here.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.kernel.agent_harness import POLICY_HEAD, AgentProc, journal, wait_for

pytestmark = pytest.mark.vm_config("selinux")

BACKEND = "SELinux"
MATRIX_FILE = "enforcement-matrix.jsonl"
ROOT = Path("/run/karmor-mx")
AGENT_DIR = ROOT / "agent"  # the agent's config, policies, run and state directories
FACTS_DIR = "selinux-facts"  # policy facts the host read for this store (tests/vm/selinux_store.py)
CATEGORIES = ("process", "file", "network", "capabilities")
OPERATION = {"process": "Process", "file": "File", "network": "Network", "capabilities": "Capabilities"}
APPLY_TIMEOUT = 420
HOST_WIDE = ("not enforced by SELinux: a host-wide whitelist would hold every domain (kernel threads, init, "
             "the agent) to it; the eBPF monitor reports")
MONITOR_AUDIT = "Audit rules are the eBPF monitor's (SELinux would have to relabel the target to audit it)"
AUDITED = ("audited by SELinux (auditallow on the source's domain; the eBPF monitor sees capabilities only "
           "from Linux 6.14)")
EXEC_OPEN = ("SELinux refuses the exec at the open of the program, so the alert's Operation is File, "
             "the Resource the program")


@dataclass(frozen=True)
class Cell:
    category: str
    mode: str  # Block | Audit | Allow+block | Allow+audit
    scope: str  # global | fromSource

    @property
    def key(self) -> str:
        return f"{self.category}-{self.mode.replace('+', '-')}-{self.scope}".lower()

    @property
    def dir(self) -> Path:
        return ROOT / self.key

    @property
    def busybox(self) -> str:
        """This cell's program: the fromSource in fromSource cells (named busybox: it picks
        its applet by its own name)."""
        return str(self.dir / "bb" / "busybox")

    @property
    def policy(self) -> str:
        return f"mx-{self.key}"

    def program(self, name: str) -> str:
        """A program of this cell: busybox's `true` (static: a whitelisted parent would have to
        open a dynamic program's interpreter itself -- the kernel opens it in the parent's
        context -- and the cells are about the exec)."""
        return str(self.dir / "bin" / name / "true")

    def data(self, name: str) -> str:
        return str(self.dir / "data" / name)


CELLS = [Cell(c, m, s) for c in CATEGORIES for m in ("Block", "Audit", "Allow+block", "Allow+audit")
         for s in ("global", "fromSource") if s == "fromSource" or c in ("process", "file")]
ROUNDS = {  # name: (postures, cells)
    "rules": ("audit", [c for c in CELLS if not c.mode.startswith("Allow") or
                        (c.mode == "Allow+audit" and c.scope == "fromSource")]),
    "whitelists": ("block", [c for c in CELLS if c.mode == "Allow+block" and c.scope == "fromSource"]),
}
# host-wide whitelists one by one: each allows nearly everything but its own test access, which
# would let the other's through
ROUNDS.update({c.key: (c.mode.removeprefix("Allow+"), [c]) for c in CELLS
               if c.mode.startswith("Allow") and c.scope == "global"})


def run(*argv: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout)


def denied(p: subprocess.CompletedProcess) -> bool:
    return p.returncode != 0 and "Permission denied" in p.stderr + p.stdout


def not_permitted(p: subprocess.CompletedProcess) -> bool:
    return p.returncode != 0 and "Operation not permitted" in p.stderr + p.stdout


def src(cell: Cell) -> str:
    return f"      fromSource:\n      - path: {cell.busybox}\n" if cell.scope == "fromSource" else ""


def body(cell: Cell, agent: AgentProc) -> str:
    """The cell's policy: the BPF-LSM matrix's intent, with this cell's own paths."""
    s = src(cell)
    if not cell.mode.startswith("Allow"):
        action = cell.mode
        if cell.category == "process":
            return f"  process:\n    matchPaths:\n    - path: {cell.program('hello')}\n{s}  action: {action}\n"
        if cell.category == "file":
            return f"  file:\n    matchPaths:\n    - path: {cell.data('secret')}\n{s}  action: {action}\n"
        if cell.category == "network":
            return f"  network:\n    matchProtocols:\n    - protocol: udp\n{s}  action: {action}\n"
        return f"  capabilities:\n    matchCapabilities:\n    - capability: chown\n{s}  action: {action}\n"
    if cell.category == "process":
        text = f"  process:\n    matchPaths:\n    - path: {cell.program('allowed')}\n{s}"
        if cell.scope == "global":  # everything else anyone runs: /usr; and every file
            text += "    matchDirectories:\n    - dir: /usr/\n      recursive: true\n"
            text += "  file:\n    matchDirectories:\n    - dir: /\n      recursive: true\n"
        return text + "  action: Allow\n"
    if cell.category == "file":
        text = f"  file:\n    matchPaths:\n    - path: {cell.data('allowed.txt')}\n{s}"
        if cell.scope == "global":  # read anything, write where the system and this test need to
            text += "    matchDirectories:\n    - dir: /\n      recursive: true\n      readOnly: true\n"
            for d in ("/dev/", "/tmp/", "/var/", "/run/log/", "/run/systemd/", f"{AGENT_DIR}/"):
                text += f"    - dir: {d}\n      recursive: true\n"
            text += "  process:\n    matchDirectories:\n    - dir: /\n      recursive: true\n"
        return text + "  action: Allow\n"
    if cell.category == "network":
        return f"  network:\n    matchProtocols:\n    - protocol: tcp\n{s}  action: Allow\n"
    return f"  capabilities:\n    matchCapabilities:\n    - capability: dac_override\n{s}  action: Allow\n"


def prepare(cell: Cell) -> None:
    for sub in ("bb", "bin", "data"):
        (cell.dir / sub).mkdir(parents=True, exist_ok=True)
    shutil.copy("/bin/busybox", cell.busybox)
    for name in ("hello", "other", "allowed"):
        Path(cell.program(name)).parent.mkdir()
        shutil.copy("/bin/busybox", cell.program(name))
    for name in ("secret", "other.txt", "allowed.txt", "capfile"):
        Path(cell.data(name)).write_text("data\n")
        os.chmod(cell.data(name), 0o644)


# --- what each cell does -----------------------------------------------------------------------

def act(cell: Cell, what: str) -> subprocess.CompletedProcess:
    bb = cell.busybox
    if cell.category == "process":
        return run(bb, "sh", "-c", f"{cell.program(what)}; exit $?")
    if cell.category == "file":
        if what == "append":
            return run(bb, "sh", "-c", f"echo more >> {cell.data('other.txt')}")
        return run(bb, "cat", cell.data(what))
    if cell.category == "network":
        if what == "tcp":
            return run(bb, "nc", "-w1", "127.0.0.1", "9", timeout=30)
        return run(bb, "nslookup", "-timeout=1", "-retry=1", "localhost", "127.0.0.1", timeout=30)
    return run(bb, "chown", "65534", cell.data("capfile"))


def blocked(cell: Cell, p: subprocess.CompletedProcess) -> bool:
    return not_permitted(p) if cell.category == "capabilities" else denied(p)


# --- the agent ----------------------------------------------------------------------------------

class SELinuxAgent(AgentProc):
    """The real agent with `enforcer: selinux` (auto would pick BPF-LSM: `bpf` is active here)."""

    postures = "audit"

    def config_text(self) -> str:
        p = self.postures
        return ("enforcer: selinux\nlogLevel: debug\nthrottle: {maxAlertsPerSecond: 100000}\n"
                f"defaultPosture: {{file: {p}, network: {p}, capabilities: {p}}}\n")

    def start(self, timeout: float = 10.0) -> float:
        cfg = self.workdir / "karmor-host.yaml"
        cfg.write_text(self.config_text())
        self.extra_config = ""
        env = dict(os.environ, KARMOR_RUN_DIR=str(self.run_dir), KARMOR_STATE_DIR=str(self.workdir / "state"))
        from tests.kernel.agent_harness import KARMOR

        t0 = time.monotonic()
        self.proc = subprocess.Popen(
            [KARMOR, "run", "--config", str(cfg), "--policy-dir", str(self.policy_dir)],
            stdout=subprocess.DEVNULL, stderr=open(self.log_path, "ab"), env=env,  # noqa: SIM115
        )
        if not wait_for(lambda: '"event": "ready"' in self.log() or self.proc.poll() is not None, timeout) \
                or self.proc.poll() is not None:
            self.stop()
            raise AssertionError(f"agent not ready in {timeout}s:\n{self.log()[-4000:]}")
        return time.monotonic() - t0

    def reconfigure(self, postures: str) -> None:
        self.postures = postures
        (self.workdir / "karmor-host.yaml").write_text(self.config_text())
        before = len([e for e in self.log_events("applied") if e.get("why") == "reload"])
        self.signal(signal.SIGHUP)
        if not wait_for(lambda: len([e for e in self.log_events("applied") if e.get("why") == "reload"]) > before,
                        APPLY_TIMEOUT):
            raise AssertionError("no reload:\n" + self.log()[-3000:])


@pytest.fixture(scope="module")
def agent(vm_out):
    if ROOT.is_mount():
        subprocess.run(["umount", "-l", str(ROOT)], check=False)
    ROOT.mkdir(exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=0755", "karmor-mx", str(ROOT)], check=True)
    for cell in CELLS:
        prepare(cell)
    # on the tmpfs too: with SELinux enforcing, kernel_t may not create files on the 9p /tmp
    workdir = AGENT_DIR
    state = workdir / "state" / "selinux"
    state.mkdir(parents=True)
    for cached in (vm_out / FACTS_DIR).glob("*.json"):
        shutil.copy(cached, state)
    Path("/sys/fs/selinux/enforce").write_text("1")
    a = SELinuxAgent(workdir)
    # the first round's policies are there before the agent starts: its first apply installs
    # their module (every module costs a policy rebuild)
    write_round(a, "rules")
    try:
        a.ready_seconds = a.start(timeout=300)
        yield a
    finally:
        a.stop(timeout=120)
        env = dict(os.environ, KARMOR_RUN_DIR=str(a.run_dir), KARMOR_STATE_DIR=str(workdir / "state"))
        cleanup = subprocess.run([str(Path(__file__).resolve().parents[3] / ".venv/bin/karmor-host"), "run",
                                  "--cleanup"], capture_output=True, text=True, env=env, timeout=300)
        Path("/sys/fs/selinux/enforce").write_text("0")
        flush_rows(vm_out)
        shutil.copy(a.log_path, vm_out / "selinux-agent.log")
        subprocess.run(["umount", "-l", str(ROOT)], check=False)
        assert cleanup.returncode == 0, cleanup.stderr


def apply_round(agent: SELinuxAgent, name: str) -> list[Cell]:
    """The round's policies in force (and no other), its postures set."""
    postures, cells = ROUNDS[name]
    before = agent.applied_count()
    want = {c.policy for c in cells}
    on_disk = {p.stem for p in agent.policy_dir.glob("mx-*.yaml")}
    if on_disk != want:
        # One burst of file changes (the agent's watcher waits for it to settle), then the new
        # postures by SIGHUP, which re-reads everything: one apply -- a module costs a rebuild.
        write_round(agent, name)
        if agent.postures != postures:
            agent.reconfigure(postures)
    elif before:
        return cells  # written before the agent started, and in force since

    def in_force():
        events = agent.log_events("applied")
        return len(events) > before and set(events[-1]["active"]) >= want and \
            not {a for a in events[-1]["active"] if a.startswith("mx-")} - want

    assert wait_for(in_force, APPLY_TIMEOUT, 1.0), agent.log()[-4000:]
    return cells


def write_round(agent: SELinuxAgent, name: str) -> None:
    for old in agent.policy_dir.glob("mx-*.yaml"):
        old.unlink()
    for cell in ROUNDS[name][1]:
        agent.write_policy(f"{cell.policy}.yaml", POLICY_HEAD.format(name=cell.policy) + body(cell, agent))


def one_alert(policy: str, since: float, timeout: float = 20, **fields: str) -> dict:
    found = wait_for(lambda: journal(policy, since=since, KARMOR_TYPE="MatchedHostPolicy", **fields), timeout, 0.3)
    assert found, f"no alert of {policy} ({fields}) in the journal since {since}"
    return found[-1]


ROWS: list[dict] = []  # written to the work dir once SELinux is permissive again (9p: no new files meanwhile)


def record(vm_out: Path, cell: Cell, effect: str, alert: dict | None, note: str = "") -> None:
    ROWS.append({
        "backend": BACKEND, "category": cell.category, "mode": cell.mode, "scope": cell.scope, "effect": effect,
        "alert": {k: alert[k] for k in ("PolicyName", "Action", "Enforcer", "Result")} if alert else None,
        "note": note, "kernel": os.uname().release,
    })


def flush_rows(vm_out: Path) -> None:
    with open(vm_out / MATRIX_FILE, "a", encoding="utf-8") as f:
        for row in ROWS:
            f.write(json.dumps(row, sort_keys=True) + "\n")
    ROWS.clear()


def check_alert(rec: dict, policy: str, action: str, enforcer: str, result: str, operation: str) -> None:
    got = {k: rec[k] for k in ("PolicyName", "Action", "Enforcer", "Result", "Operation")}
    assert got == {"PolicyName": policy, "Action": action, "Enforcer": enforcer, "Result": result,
                   "Operation": operation}, rec


def result_of(cell: Cell) -> str:
    return "Operation not permitted" if cell.category == "capabilities" else "Permission denied"


def effect_of(cell: Cell) -> str:
    return "EPERM" if cell.category == "capabilities" else "EACCES"


# --- the rounds ---------------------------------------------------------------------------------

def test_rules_round(agent, vm_out):
    """Block, Audit and the fromSource whitelists with the audit posture."""
    cells = apply_round(agent, "rules")
    status = agent.status()
    assert status["enforcer"]["name"] == "selinux", status["enforcer"]
    problems = []
    for cell in cells:
        try:
            _rules_cell(agent, vm_out, cell)
        except (AssertionError, OSError) as exc:
            problems.append(f"{cell.key}: {exc}")
    assert not problems, "\n".join(problems)


def _rules_cell(agent, vm_out, cell: Cell) -> None:
    t0 = time.time()
    if cell.mode == "Block":
        out = act(cell, "hello" if cell.category == "process" else "secret")
        assert blocked(cell, out), f"not blocked: rc={out.returncode} {out.stderr!r}"
        rec = one_alert(cell.policy, t0)
        check_alert(rec, cell.policy, "Block", BACKEND, result_of(cell), OPERATION[cell.category])
        if cell.scope == "fromSource" and cell.category in ("process", "file"):
            other = run(cell.program("hello")) if cell.category == "process" else run("cat", cell.data("secret"))
            assert other.returncode == 0, other.stderr  # another program: not this rule's business
        record(vm_out, cell, effect_of(cell), rec)
    elif cell.mode == "Audit":
        out = act(cell, "hello" if cell.category == "process" else "secret")
        assert not blocked(cell, out), out.stderr
        if cell.category != "network":
            assert out.returncode == 0, out.stderr
        rec = one_alert(cell.policy, t0)
        by = BACKEND if cell.category == "capabilities" else "eBPF Monitor"
        check_alert(rec, cell.policy, "Audit", by, "Passed", OPERATION[cell.category])
        record(vm_out, cell, "allowed", rec, AUDITED if cell.category == "capabilities" else MONITOR_AUDIT)
    else:  # Allow+audit, fromSource
        ok = {"process": "allowed", "file": "allowed.txt", "network": "tcp"}.get(cell.category)
        if ok:
            p = act(cell, ok)
            assert not blocked(cell, p), p.stderr
        out = act(cell, {"process": "other", "file": "other.txt"}.get(cell.category, ""))
        assert not blocked(cell, out), out.stderr
        rec = one_alert("DefaultPosture", t0, **_posture_key(cell))
        if cell.category == "capabilities":
            check_alert(rec, "DefaultPosture", "Audit", BACKEND, "Passed", OPERATION[cell.category])
            record(vm_out, cell, "allowed", rec, AUDITED)
        else:
            check_alert(rec, "DefaultPosture", "Audit", "eBPF Monitor", "Passed", OPERATION[cell.category])
            record(vm_out, cell, "allowed", rec, "the audit posture is the eBPF monitor's")


def _posture_key(cell: Cell) -> dict[str, str]:
    if cell.category == "process":
        return {"KARMOR_RESOURCE": cell.program("other")}
    if cell.category == "file":
        return {"KARMOR_RESOURCE": cell.data("other.txt")}
    return {"KARMOR_PROCESS_NAME": cell.busybox}


def test_whitelists_round(agent, vm_out):
    """The fromSource whitelists with the block posture: SELinux enforces them."""
    problems = []
    for cell in apply_round(agent, "whitelists"):
        t0 = time.time()
        try:
            ok = {"process": "allowed", "file": "allowed.txt", "network": "tcp"}.get(cell.category)
            if ok:
                p = act(cell, ok)
                assert not blocked(cell, p), f"allowed access refused: {p.stderr!r}"
            out = act(cell, {"process": "other", "file": "other.txt"}.get(cell.category, ""))
            assert blocked(cell, out), f"not blocked: rc={out.returncode} {out.stderr!r}"
            key = _posture_key(cell)
            operation = OPERATION[cell.category]
            note = ""
            if cell.category == "process":
                operation, note = "File", EXEC_OPEN
            rec = one_alert("DefaultPosture", t0, **key)
            check_alert(rec, "DefaultPosture", "Block", BACKEND, result_of(cell), operation)
            record(vm_out, cell, effect_of(cell), rec, note)
        except (AssertionError, OSError) as exc:
            problems.append(f"{cell.key}: {exc}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("posture", ["audit", "block"])
def test_host_wide_whitelists_rounds(agent, vm_out, posture):
    """Allow rules without fromSource: the monitor's (see HOST_WIDE)."""
    problems = []
    for cell in [c for c in CELLS if c.mode == f"Allow+{posture}" and c.scope == "global"]:
        apply_round(agent, cell.key)
        statuses = {r["id"]: r for p in agent.status()["policies"]["active"] for r in p["rules"]}
        assert statuses and all(r["mode"] in ("audit-only", "monitor") for r in statuses.values()), statuses
        t0 = time.time()
        try:
            ok = act(cell, "allowed" if cell.category == "process" else "allowed.txt")
            assert not blocked(cell, ok), ok.stderr
            out = act(cell, "other" if cell.category == "process" else "append")
            assert not blocked(cell, out), f"blocked: {out.stderr!r}"
            rec = one_alert("DefaultPosture", t0, **_posture_key(cell))
            action = "Audit (Allow)" if posture == "block" else "Audit"
            check_alert(rec, "DefaultPosture", action, "eBPF Monitor", "Passed", OPERATION[cell.category])
            note = HOST_WIDE + (" Audit (Allow)" if posture == "block" else " Audit")
            if cell.category == "file":
                note += "; write under a read-only whitelist"
            record(vm_out, cell, "allowed", rec, note)
        except (AssertionError, OSError) as exc:
            problems.append(f"{cell.key}: {exc}")
    assert not problems, "\n".join(problems)

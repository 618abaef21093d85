"""The enforcement matrix in the guest: process, file, network (protocol) and capability rules
x Block, Audit, Allow with the block posture, Allow with the audit posture x global and
fromSource, through the real agent. Each cell shows what the user sees (EACCES, EPERM or
success) and the alert in journald (PolicyName, Action, Enforcer, Result), and is written to
<work dir>/enforcement-matrix.jsonl for docs/enforcement-matrix.md.

One intent per cell, run once per backend (the `backend` parameter: BPF-LSM in the `bpflsm`
guest, AppArmor in the `apparmor` guest); what differs between backends is in BACKENDS, side
by side: which of the agent's parts raises each cell's alert, and why.

Host network and capability rules require fromSource (KubeArmor's rule), so those
categories have no global cells. Whitelists confine busybox (a static program) in the
fromSource cells; global whitelists allow everything but the one thing under test.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import pytest

from tests.vm.guest.bpflsm_support import (  # agent and scratch: module fixtures
    status,
    scratch,
    BUSYBOX, Matrix, Scratch, applied, denied, name, not_permitted, one_alert,
    reconfigure, run, sh, shared_agent,
)

MONITOR = "eBPF Monitor"


@dataclass(frozen=True)
class Backend:
    enforcer: str  # the agent's `enforcer:` setting
    name: str  # the enforcer's config name, as `status` shows it
    column: str  # its column in docs/enforcement-matrix.md
    alerts: str  # the Enforcer field of the alerts it raises itself
    # (category, mode) -> why the eBPF monitor raises that cell's alert instead of the enforcer
    by_monitor: dict[tuple[str, str], str]


_AA_AUDIT_POSTURE = ("AppArmor keeps the base grant and the eBPF monitor reports the misses "
                     "(complain mode would switch off Block rules)")
BACKENDS = {
    "bpflsm": Backend("auto", "bpflsm", "BPF-LSM", "BPFLSM", {}),
    "apparmor": Backend("apparmor", "apparmor", "AppArmor", "AppArmor", {
        ("network", "Audit"): "reported by the eBPF monitor: an audited AppArmor network rule would record "
                              "every send and receive, not only the socket",
        **{(c, "Allow+audit"): _AA_AUDIT_POSTURE for c in ("process", "file", "network")},
        # capabilities: AppArmor audits each one no Allow rule names (a finite list); it records a
        # capability once per profile and CPU, which the cell's single check does not meet
    }),
}


@pytest.fixture(scope="module", params=[
    pytest.param("bpflsm", marks=pytest.mark.vm_config("bpflsm")),
    pytest.param("apparmor", marks=pytest.mark.vm_config("apparmor")),
])
def backend(request) -> Backend:
    return BACKENDS[request.param]


def expected_by(backend: Backend, category: str, mode: str) -> tuple[str, str]:
    """(the alert's Enforcer, the cell's note) for this backend."""
    why = backend.by_monitor.get((category, mode))
    return (MONITOR, why) if why else (backend.alerts, "")


@pytest.fixture(scope="module")
def agent(request, tmp_path_factory, scratch, backend):
    a = shared_agent(request, tmp_path_factory, backend.enforcer)
    st = status(a)
    assert st["enforcer"]["name"] == backend.name, st["enforcer"]
    return a


@pytest.fixture(scope="module")
def matrix(vm_out, backend):
    return Matrix(vm_out, backend.column)


def src(scope: str) -> str:
    return f"      fromSource:\n      - path: {BUSYBOX}\n" if scope == "fromSource" else ""


# --- one category each: the rule, the action it governs, and what denial looks like ---------


@dataclass
class Outcome:
    proc: object
    blocked: bool


def _exec(scratch: Scratch, prog: str) -> Outcome:
    p = sh(f"{scratch.program(prog or 'hello')}; exit $?")
    return Outcome(p, denied(p))


def _read(scratch: Scratch, file: str) -> Outcome:
    p = run(BUSYBOX, "cat", str(scratch.data / (file or "secret")))
    return Outcome(p, denied(p))


def _udp(_scratch: Scratch, _x: str = "") -> Outcome:
    p = run(BUSYBOX, "nslookup", "localhost", "127.0.0.1", timeout=30)
    return Outcome(p, "Permission denied" in p.stderr + p.stdout)


def _tcp() -> Outcome:
    p = run(BUSYBOX, "nc", "-w1", "127.0.0.1", "9", timeout=30)
    return Outcome(p, "Permission denied" in p.stderr + p.stdout)


def _chown(scratch: Scratch, file: str) -> Outcome:
    p = run(BUSYBOX, "chown", "65534", str(scratch.data / (file or "capfile")))
    return Outcome(p, not_permitted(p))


@dataclass
class Category:
    name: str
    operation: str
    result: str  # Result of a denial
    rule: Callable[[str, str, str], str]  # (target, action, fromSource lines) -> policy body
    act: Callable[[Scratch, str], Outcome]
    target: str  # what the rule names
    other: str  # what no Allow rule names (falls to the posture)
    resource: str  # journald field to find the posture alert by


def _process_rule(target: str, action: str, source: str) -> str:
    return f"  process:\n    matchPaths:\n    - path: {target}\n{source}  action: {action}\n"


def _file_rule(target: str, action: str, source: str) -> str:
    return f"  file:\n    matchPaths:\n    - path: {target}\n{source}  action: {action}\n"


def _net_rule(target: str, action: str, source: str) -> str:
    return f"  network:\n    matchProtocols:\n    - protocol: {target}\n{source}  action: {action}\n"


def _cap_rule(target: str, action: str, source: str) -> str:
    return f"  capabilities:\n    matchCapabilities:\n    - capability: {target}\n{source}  action: {action}\n"


CATEGORIES = {
    "process": Category("process", "Process", "Permission denied", _process_rule, _exec, "hello", "other", "resource"),
    "file": Category("file", "File", "Permission denied", _file_rule, _read, "secret", "other.txt", "resource"),
    "network": Category("network", "Network", "Permission denied", _net_rule, _udp, "udp", "", "process"),
    "capabilities": Category("capabilities", "Capabilities", "Operation not permitted", _cap_rule, _chown, "chown",
                             "capfile", "process"),
}
CELLS = [(c, s) for c in CATEGORIES for s in ("global", "fromSource") if s == "fromSource" or c in ("process", "file")]


def _target(cat: Category, scratch: Scratch) -> str:
    if cat.name == "process":
        return scratch.program(cat.target)
    if cat.name == "file":
        return scratch.file(cat.target)
    return cat.target


def _prepare(scratch: Scratch) -> None:
    scratch.file("secret", "s3cret\n")
    scratch.file("other.txt")
    scratch.file("allowed.txt")
    scratch.file("capfile")
    (scratch.data / "capfile").chmod(0o644)
    import os

    os.chown(scratch.data / "capfile", 0, 0)


def _check_alert(rec: dict, policy: str, action: str, result: str, operation: str, enforcer: str) -> None:
    got = {k: rec[k] for k in ("PolicyName", "Action", "Enforcer", "Result", "Operation")}
    assert got == {"PolicyName": policy, "Action": action, "Enforcer": enforcer, "Result": result,
                   "Operation": operation}, rec


# --- Block and Audit ------------------------------------------------------------------------


@pytest.mark.parametrize("category,scope", CELLS)
def test_block(backend, agent, scratch, matrix, category, scope):
    cat = CATEGORIES[category]
    enforcer, note = expected_by(backend, category, "Block")
    _prepare(scratch)
    policy = name(f"block-{category}")
    with applied(agent, policy, cat.rule(_target(cat, scratch), "Block", src(scope))):
        t0 = time.time()
        out = cat.act(scratch, "")
        assert out.blocked, f"not blocked: rc={out.proc.returncode} {out.proc.stderr!r}"
        rec = one_alert(policy, t0)
        _check_alert(rec, policy, "Block", cat.result, cat.operation, enforcer)
        if scope == "fromSource" and category in ("process", "file"):
            # the same access by another program is not this rule's business
            other = run(_target(cat, scratch)) if category == "process" else run("cat", _target(cat, scratch))
            assert other.returncode == 0, other.stderr
    matrix.record(category, "Block", scope, "EPERM" if cat.result.startswith("Operation") else "EACCES", rec,
                  note=note)


@pytest.mark.parametrize("category,scope", CELLS)
def test_audit(backend, agent, scratch, matrix, category, scope):
    cat = CATEGORIES[category]
    enforcer, note = expected_by(backend, category, "Audit")
    _prepare(scratch)
    policy = name(f"audit-{category}")
    with applied(agent, policy, cat.rule(_target(cat, scratch), "Audit", src(scope))):
        t0 = time.time()
        out = cat.act(scratch, "")
        assert not out.blocked, out.proc.stderr
        if category in ("process", "file", "capabilities"):
            assert out.proc.returncode == 0, out.proc.stderr
        rec = one_alert(policy, t0)
        _check_alert(rec, policy, "Audit", "Passed", cat.operation, enforcer)
    matrix.record(category, "Audit", scope, "allowed", rec, note=note)


# --- Allow: whitelists with their default posture --------------------------------------------


def _whitelist(cat: Category, scratch: Scratch, scope: str, policy_dir: str) -> str:
    """Allow rules that leave one access (cat.other, or UDP) to the default posture."""
    s = src(scope)
    if cat.name == "process":
        body = f"  process:\n    matchPaths:\n    - path: {scratch.program('allowed')}\n{s}"
        if scope == "global":  # everything else anyone runs: /usr; and every file
            body += "    matchDirectories:\n    - dir: /usr/\n      recursive: true\n"
            body += "  file:\n    matchDirectories:\n    - dir: /\n      recursive: true\n"
        return body + "  action: Allow\n"
    if cat.name == "file":
        body = f"  file:\n    matchPaths:\n    - path: {scratch.data / 'allowed.txt'}\n{s}"
        if scope == "global":  # read anything, write where the system and this test need to
            body += "    matchDirectories:\n    - dir: /\n      recursive: true\n      readOnly: true\n"
            for d in ("/dev/", "/tmp/", "/var/", "/run/log/", "/run/systemd/", policy_dir):
                body += f"    - dir: {d}\n      recursive: true\n"
            body += "  process:\n    matchDirectories:\n    - dir: /\n      recursive: true\n"
        return body + "  action: Allow\n"
    if cat.name == "network":
        return f"  network:\n    matchProtocols:\n    - protocol: tcp\n{s}  action: Allow\n"
    return f"  capabilities:\n    matchCapabilities:\n    - capability: dac_override\n{s}  action: Allow\n"


def _posture_case(backend, agent, scratch, matrix, category, scope, posture):
    cat = CATEGORIES[category]
    enforcer, note = expected_by(backend, category, f"Allow+{posture}")
    _prepare(scratch)
    policy = name(f"allow-{category}")
    policy_dir = str(agent.policy_dir) + "/"
    with applied(agent, policy, _whitelist(cat, scratch, scope, policy_dir)):
        t0 = time.time()
        # what the whitelist allows works, and raises no alert
        if category == "process":
            ok = _exec(scratch, "allowed")
        elif category == "file":
            ok = _read(scratch, "allowed.txt")
        elif category == "network":
            ok = _tcp()
        else:
            ok = None
        if ok is not None:
            assert not ok.blocked, ok.proc.stderr
        # what it does not name falls to the default posture
        if category == "process":
            out = _exec(scratch, "other")
        elif category == "file" and scope == "global":
            p = sh(f"echo more >> {scratch.data / 'other.txt'}")
            out = Outcome(p, denied(p))
        elif category == "file":
            out = _read(scratch, "other.txt")
        else:
            out = cat.act(scratch, cat.other)
        key = {"KARMOR_OPERATION": cat.operation}
        if category == "process":
            key["KARMOR_RESOURCE"] = scratch.program("other")
        elif category == "file":
            key["KARMOR_RESOURCE"] = str(scratch.data / "other.txt")
        else:
            key["KARMOR_PROCESS_NAME"] = BUSYBOX
        if posture == "block":
            assert out.blocked, f"not blocked: rc={out.proc.returncode} {out.proc.stderr!r}"
            rec = one_alert("DefaultPosture", t0, **key)
            _check_alert(rec, "DefaultPosture", "Block", cat.result, cat.operation, enforcer)
        else:
            assert not out.blocked, out.proc.stderr
            rec = one_alert("DefaultPosture", t0, **key)
            _check_alert(rec, "DefaultPosture", "Audit", "Passed", cat.operation, enforcer)
    effect = ("EPERM" if cat.result.startswith("Operation") else "EACCES") if posture == "block" else "allowed"
    notes = ["write under a read-only whitelist"] if (category, scope) == ("file", "global") else []
    matrix.record(category, f"Allow+{posture}", scope, effect, rec, note="; ".join(notes + ([note] if note else [])))


@pytest.mark.parametrize("category,scope", CELLS)
def test_allow_with_audit_posture(backend, agent, scratch, matrix, category, scope):
    _posture_case(backend, agent, scratch, matrix, category, scope, "audit")


@pytest.fixture(scope="module")
def block_postures(agent):
    reconfigure(agent, {"file": "block", "network": "block", "capabilities": "block"})
    yield
    reconfigure(agent, {})


@pytest.mark.parametrize("category,scope", CELLS)
def test_allow_with_block_posture(backend, agent, scratch, matrix, block_postures, category, scope):
    _posture_case(backend, agent, scratch, matrix, category, scope, "block")

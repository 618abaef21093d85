"""The SELinux enforcer against the real kernel (Debian 6.1, SELinux the major LSM, the reduced
refpolicy store of tests/vm/selinux_store.py): one generated module and its labels deny what
the rules say and nothing else, AVC records become alerts that name the exact rule and reach
the journal, and replacing or removing the module leaves the store and the labels as they were.

Runs inside the VM guest (`selinux` configuration), driving the enforcer in-process, with
SELinux enforcing for the module's tests. What this guest cannot show, and why:
- The host's root is shared over 9p, which keeps no labels: programs and files under test are
  copies on a tmpfs mounted after the policy load (labels work there). Rules naming files on
  the 9p root are reported not enforceable -- test_unlabelable_files_stay_with_the_monitor.
- Everything virtme starts runs as kernel_t, an unconfined domain (no login, no services): the
  "unconfined" parent of every program here. Rules without fromSource deny kernel_t too.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from karmor_host.alerts.match import BLOCK, Matcher
from karmor_host.alerts.pipeline import AlertPipeline
from karmor_host.alerts.record import DEFAULT_POSTURE, HostInfo
from karmor_host.alerts.sinks.journald import JournaldSink
from karmor_host.alerts.throttle import Throttle
from karmor_host.enforce.base import EnforcerAlert
from karmor_host.enforce.selinux.enforcer import STATE_DIR_NAME, SELinuxEnforcer
from karmor_host.enforce.selinux.render import MODULE, SELINUX
from karmor_host.kernel.events import EventKind
from karmor_host.paths import Paths
from karmor_host.policy import HostIdentity, compile_policies, load_text
from karmor_host.policy.ruleset import Category, Posture, RuleSet
from tests.policytext import host_policy

pytestmark = pytest.mark.vm_config("selinux")
FACTS_DIR = "selinux-facts"  # tests/vm/selinux_store.py

LAB = Path("/run/karmor-selinux")
BIN = LAB / "bin"
BUSYBOX = BIN / "wl" / "busybox"  # static: no libraries to open from the unlabelled 9p root
UNLABELLED = "/usr/lib/os-release"  # on the 9p root
STORE = (Path("/etc/selinux"), Path("/var/lib/selinux"))
HEAD = host_policy("{name}", "")  # a template: HEAD.format(name=...) + body
BLOCK_ALL = {c: Posture.BLOCK for c in Category}


def ruleset(*docs: tuple[str, str], postures: dict[Category, Posture] | None = None) -> RuleSet:
    text = "---\n".join(HEAD.format(name=name) + body for name, body in docs)
    result = load_text(text, "guest.yaml")
    assert result.valid, [str(p) for p in result.problems]
    return compile_policies(result.policies, HostIdentity.detect(), postures or {})


def run(*argv: str | Path) -> subprocess.CompletedProcess[str]:
    """Start a program directly (no shell): its parent is this test, kernel_t."""
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=60)


def py(prog: Path, code: str) -> subprocess.CompletedProcess[str]:
    """Run Python code in a copy of the interpreter (the copy is what a rule names)."""
    return run(prog, "-S", "-I", "-c", code)


def domain(prog: Path, *args: str) -> str:
    return run(prog, *args).stdout.strip().rstrip("\0")


def digest(*dirs: Path) -> dict[str, str]:
    out = {}
    for d in dirs:
        for p in sorted(d.rglob("*")):
            if p.is_file() and p.name != "commit_num":
                out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def contexts(root: Path) -> dict[str, str]:
    import selinux

    return {str(p): selinux.lgetfilecon_raw(str(p))[1] for p in sorted(root.rglob("*")) if "state" not in p.parts}


SCENARIOS: list[dict] = []  # enforcement-matrix.jsonl rows, written once SELinux is permissive again


def scenario(name: str, effect: str, alert: EnforcerAlert | None = None) -> None:
    """A verified scenario for docs/enforcement-matrix.md (tools/gen-enforcement-matrix.py)."""
    rec = None
    if alert is not None:
        d = alert.decision
        rec = {"PolicyName": d.policy_name, "Action": d.action, "Enforcer": SELINUX,
               "Result": "Passed" if alert.event.retval == 0 else
               ("Operation not permitted" if alert.event.retval == -errno.EPERM else "Permission denied")}
    SCENARIOS.append({"backend": "SELinux", "scenario": name, "effect": effect, "alert": rec,
                      "kernel": os.uname().release})


@pytest.fixture(scope="module")
def lab(vm_out):
    """A labelled tmpfs with the programs and files of the tests; SELinux enforcing meanwhile."""
    assert Path("/sys/fs/selinux/enforce").exists(), "no SELinux policy loaded (setup-selinux.sh)"
    LAB.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=0755", "tmpfs", str(LAB)], check=True)
    BIN.mkdir()
    for name, src in (("kcat", "/usr/bin/cat"), ("ksh", "/usr/bin/bash"), ("ktrue", "/usr/bin/true"),
                      ("kblocked", "/usr/bin/true"), ("kother", "/usr/bin/true"),
                      ("kpy", "/usr/bin/python3.11"), ("kpynet", "/usr/bin/python3.11"),
                      ("kpycap", "/usr/bin/python3.11")):
        shutil.copy(src, BIN / name)
    (BIN / "wl").mkdir()
    shutil.copy("/bin/busybox", BUSYBOX)  # called busybox: it picks its applet by its own name
    (LAB / "conf" / "sub").mkdir(parents=True)
    for name in ("secret", "hosts", "global-secret", "plain", "allowed", "other", "conf/a", "conf/sub/b"):
        (LAB / name).write_text(f"{name}\n")
    Path("/sys/fs/selinux/enforce").write_text("1")
    yield LAB
    Path("/sys/fs/selinux/enforce").write_text("0")
    with open(vm_out / "enforcement-matrix.jsonl", "a", encoding="utf-8") as f:
        for row in SCENARIOS:
            f.write(json.dumps(row, sort_keys=True) + "\n")
    subprocess.run(["umount", "-l", str(LAB)], check=False)


@pytest.fixture(scope="module")
def before(lab):
    """The store and the labels before karmor touched anything."""
    return digest(*STORE), contexts(lab)


@pytest.fixture(scope="module")
def enforcer(lab, before, vm_out):
    state = lab / "state" / STATE_DIR_NAME
    state.mkdir(parents=True)
    for cached in (vm_out / FACTS_DIR).glob("*.json"):  # read on the host (tests/vm/selinux_store.py)
        shutil.copy(cached, state)
    enf = SELinuxEnforcer(Paths(state_dir=lab / "state"))
    enf.open_audit()
    yield enf
    enf.close()


class Alerts:
    """Everything the enforcer reported, also sent through a real pipeline to journald."""

    def __init__(self, enf: SELinuxEnforcer) -> None:
        self.enf = enf
        self.seen: list[EnforcerAlert] = []
        self.pipeline = AlertPipeline(Matcher(RuleSet()), Throttle(enabled=False), [JournaldSink()],
                                      HostInfo.detect(), enforcer=SELINUX)

    def until(self, want, timeout: float = 20.0) -> list[EnforcerAlert]:
        deadline = time.monotonic() + timeout
        while True:
            new = self.enf.poll(200)
            self.seen.extend(new)
            self.pipeline.handle_enforcer(new)
            hits = [a for a in self.seen if want(a)]
            if hits or time.monotonic() > deadline:
                return hits


@pytest.fixture(scope="module")
def alerts(enforcer):
    return Alerts(enforcer)


RULES = (
    ("se-files", f"""\
  action: Block
  file:
    matchPaths:
    - path: {LAB}/secret
      fromSource:
      - path: {BIN}/kcat
    - path: {LAB}/hosts
      readOnly: true
    - path: {LAB}/global-secret
    - path: {UNLABELLED}
    - path: {LAB}/plain
      ownerOnly: true
    matchDirectories:
    - dir: {LAB}/conf/
      recursive: true
      fromSource:
      - path: {BIN}/kcat
    matchPatterns:
    - pattern: {LAB}/*.key
"""),
    ("se-exec", f"""\
  action: Block
  process:
    matchPaths:
    - path: {BIN}/ktrue
      fromSource:
      - path: {BIN}/ksh
    - path: {BIN}/kblocked
"""),
    ("se-net", f"""\
  action: Block
  network:
    matchProtocols:
    - protocol: raw
      fromSource:
      - path: {BIN}/kpy
"""),
    ("se-caps", f"""\
  action: Block
  capabilities:
    matchCapabilities:
    - capability: chown
      fromSource:
      - path: {BIN}/kpy
"""),
    ("se-file-whitelist", f"""\
  action: Allow
  file:
    matchPaths:
    - path: {LAB}/allowed
      fromSource:
      - path: {BUSYBOX}
"""),
    ("se-net-whitelist", f"""\
  action: Allow
  network:
    matchProtocols:
    - protocol: tcp
      fromSource:
      - path: {BIN}/kpynet
"""),
    ("se-cap-whitelist", f"""\
  action: Allow
  capabilities:
    matchCapabilities:
    - capability: net_bind_service
      fromSource:
      - path: {BIN}/kpycap
"""),
)


@pytest.fixture(scope="module")
def applied(enforcer, alerts):
    rs = ruleset(*RULES, postures=BLOCK_ALL)
    t0 = time.monotonic()
    report = enforcer.apply(rs)
    seconds = time.monotonic() - t0
    alerts.until(lambda a: False, timeout=0.5)  # whatever came before
    alerts.seen.clear()
    return rs, report, seconds


def rule_of(rs: RuleSet, target: str):
    (rule,) = [r for r in rs.rules if r.target == target]
    return rule


def test_the_guest_runs_selinux_enforcing_with_the_reduced_store(lab):
    lsms = Path("/sys/kernel/security/lsm").read_text().strip().split(",")
    assert "selinux" in lsms and "apparmor" not in lsms
    assert Path("/sys/fs/selinux/enforce").read_text().strip() == "1"
    assert Path("/proc/self/attr/current").read_text().strip("\0\n") == "system_u:system_r:kernel_t:s0"
    mods = subprocess.run(["semodule", "-l"], capture_output=True, text=True, check=True).stdout.split()
    assert "base" in mods and "unconfined" in mods and MODULE not in mods


def test_apply_installs_one_module_and_reports_every_rule(enforcer, applied):
    rs, report, seconds = applied
    assert MODULE in subprocess.run(["semodule", "-l"], capture_output=True, text=True, check=True).stdout.split()
    modes = {rs.by_id()[s.rule_id].target: (s.mode, s.by) for s in report.rules}
    for target in (f"{LAB}/secret", f"{LAB}/hosts", f"{LAB}/global-secret", f"{LAB}/conf/", f"{BIN}/ktrue",
                   f"{BIN}/kblocked", "raw", "chown", f"{LAB}/allowed", "tcp", "net_bind_service"):
        assert modes[target] == ("enforced", SELINUX), (target, modes[target])
    for target, why in ((f"{LAB}/plain", "ownerOnly"), (f"{LAB}/*.key", "not paths"),
                        (UNLABELLED, "no label")):
        status = next(s for s in report.rules if rs.by_id()[s.rule_id].target == target)
        assert status.mode == "audit-only" and why in status.reason, status
    assert enforcer.plan.whitelists == frozenset(Category)
    print(f"apply took {seconds:.1f} s")


def test_a_from_source_program_enters_its_own_domain_and_its_children_another(applied):
    kcat = domain(BIN / "kcat", "/proc/self/attr/current")
    assert ":karmor_s_" in kcat
    # bash (a fromSource program) starting a copy of true that no rule names: the child domain
    child = domain(BIN / "ksh", "-c", f"{BIN}/kcat /proc/self/attr/current; {BIN}/kother && echo ok")
    assert ":karmor_s_" in child  # kcat started by ksh is confined as kcat, not as ksh's child
    assert domain(BIN / "ksh", "-c", f"{BIN}/kother && echo ok") == "ok"


def test_file_block_from_source_denies_that_program_only(applied, alerts):
    rs = applied[0]
    denied = run(BIN / "kcat", LAB / "secret")
    assert denied.returncode != 0 and "Permission denied" in denied.stderr
    assert run("cat", LAB / "secret").stdout == "secret\n"  # another program (kernel_t) reads it
    assert run(BIN / "kcat", LAB / "allowed").returncode == 0
    hits = alerts.until(lambda a: a.event.path == f"{LAB}/secret")
    assert hits, [a.event.path for a in alerts.seen]
    a = hits[0]
    assert a.decision.rule.id == rule_of(rs, f"{LAB}/secret").id and a.decision.action == BLOCK
    assert a.event.kind is EventKind.OPEN and a.event.exe == str(BIN / "kcat") and a.event.retval == -errno.EACCES
    assert "selinux=denied" in a.data


def test_a_recursive_directory_rule_covers_files_at_any_depth_and_new_ones(applied, alerts):
    rs = applied[0]
    assert run(BIN / "kcat", LAB / "conf" / "sub" / "b").returncode != 0
    (LAB / "conf" / "sub" / "new").write_text("new\n")  # created after the apply: inherits the label
    assert run(BIN / "kcat", LAB / "conf" / "sub" / "new").returncode != 0
    assert run("cat", LAB / "conf" / "a").returncode == 0
    hits = alerts.until(lambda a: a.event.path == f"{LAB}/conf/sub/b")
    assert hits and hits[0].decision.rule.id == rule_of(rs, f"{LAB}/conf/").id
    new = alerts.until(lambda a: a.event.path == f"{LAB}/conf/sub/new")
    assert new and new[0].decision.rule.id == rule_of(rs, f"{LAB}/conf/").id
    scenario("recursive directory rule (fromSource): a file created after the apply takes the directory's "
             "type and is covered", "EACCES", new[0])


def test_global_rules_hold_for_unconfined_domains_too(applied, alerts):
    rs = applied[0]
    # readOnly: reads pass, appends are denied, to kernel_t (unconfined) as to everyone
    assert run("cat", LAB / "hosts").stdout == "hosts\n"
    out = run("sh", "-c", f"echo x >> {LAB}/hosts")
    assert out.returncode != 0 and "Permission denied" in out.stderr
    assert run("cat", LAB / "global-secret").returncode != 0
    hits = alerts.until(lambda a: a.event.path == f"{LAB}/hosts")
    assert hits and hits[0].decision.rule.id == rule_of(rs, f"{LAB}/hosts").id
    assert hits[0].event.flags & os.O_WRONLY
    hits = alerts.until(lambda a: a.event.path == f"{LAB}/global-secret")
    assert hits and hits[0].decision.rule.id == rule_of(rs, f"{LAB}/global-secret").id
    scenario("rule without fromSource against an unconfined domain (kernel_t): a constraint, not an allow rule",
             "EACCES", hits[0])


def test_process_rules_deny_exec_by_the_parent_named_and_globally(applied, alerts):
    rs = applied[0]
    out = run(BIN / "ksh", "-c", f"{BIN}/ktrue")
    assert out.returncode == 126 and "Permission denied" in out.stderr
    assert run(BIN / "ksh", "-c", f"{BIN}/kother").returncode == 0
    assert run(BIN / "ktrue").returncode == 0  # started by kernel_t: not ksh's rule
    assert run("env", str(BIN / "kblocked")).returncode == 126  # no fromSource: nobody runs it
    hits = alerts.until(lambda a: a.event.path == f"{BIN}/ktrue")
    assert hits
    a = hits[0]
    assert a.decision.rule.id == rule_of(rs, f"{BIN}/ktrue").id
    assert a.event.kind is EventKind.EXEC and a.event.parent_exe == str(BIN / "ksh")
    hits = alerts.until(lambda a: a.event.path == f"{BIN}/kblocked")
    assert hits and hits[0].decision.rule.id == rule_of(rs, f"{BIN}/kblocked").id


def test_network_rule_denies_the_protocol_for_that_program(applied, alerts):
    rs = applied[0]
    raw = py(BIN / "kpy", "import socket; socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)")
    assert raw.returncode != 0 and "PermissionError" in raw.stderr
    assert py(BIN / "kpy", "import socket; socket.socket(socket.AF_INET, socket.SOCK_STREAM)").returncode == 0
    hits = alerts.until(lambda a: a.event.kind is EventKind.SOCKET and a.event.exe == str(BIN / "kpy"))
    assert hits and hits[0].decision.rule.id == rule_of(rs, "raw").id


def test_capability_rule_denies_that_capability_for_that_program(applied, alerts):
    rs = applied[0]
    chown = py(BIN / "kpy", f"import os; os.chown('{LAB}/other', 1, 1)")
    assert chown.returncode != 0 and "PermissionError" in chown.stderr and "Operation not permitted" in chown.stderr
    hits = alerts.until(lambda a: a.event.kind is EventKind.CAPABLE and a.event.exe == str(BIN / "kpy"))
    assert hits and hits[0].decision.rule.id == rule_of(rs, "chown").id
    assert hits[0].event.capability == 0 and hits[0].event.retval == -errno.EPERM


def test_file_whitelist_confines_only_its_program(applied, alerts):
    assert run(BUSYBOX, "cat", LAB / "allowed").stdout == "allowed\n"
    denied = run(BUSYBOX, "cat", LAB / "other")
    assert denied.returncode != 0 and "Permission denied" in denied.stderr
    assert run(BIN / "kcat", LAB / "other").returncode == 0  # another program is no whitelist subject
    hits = alerts.until(lambda a: a.event.path == f"{LAB}/other")
    assert hits and hits[0].decision.policy_name == DEFAULT_POSTURE and hits[0].decision.rule is None


def test_network_and_capability_whitelists(applied, alerts):
    assert py(BIN / "kpynet", "import socket; socket.socket(socket.AF_INET, socket.SOCK_STREAM)").returncode == 0
    udp = py(BIN / "kpynet", "import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM)")
    assert udp.returncode != 0 and "PermissionError" in udp.stderr
    bind = py(BIN / "kpycap", "import socket; s=socket.socket(); s.bind(('127.0.0.1', 80))")
    assert bind.returncode == 0, bind.stderr  # net_bind_service is allowed
    chown = py(BIN / "kpycap", f"import os; os.chown('{LAB}/other', 1, 1)")
    assert chown.returncode != 0 and "Operation not permitted" in chown.stderr
    net = alerts.until(lambda a: a.event.exe == str(BIN / "kpynet"))
    cap = alerts.until(lambda a: a.event.exe == str(BIN / "kpycap"))
    assert net and net[0].decision.policy_name == DEFAULT_POSTURE and net[0].decision.operation.value == "Network"
    assert cap and cap[0].decision.policy_name == DEFAULT_POSTURE and cap[0].decision.operation.value == "Capabilities"


def test_unlabelable_files_stay_with_the_monitor(enforcer, applied):
    # a file on the 9p root: the rule is reported audit-only and the file untouched
    assert run("cat", UNLABELLED).returncode == 0
    assert UNLABELLED not in {lab.path for lab in enforcer.plan.labels}
    assert enforcer.counts["unattributed"] == 0
    scenario("Block rule on a file of a file system without labels (the guest's 9p root): reported audit-only, "
             "left to the eBPF monitor", "allowed")


def test_alerts_reach_journald_with_the_enforcer_and_rule(applied, alerts):
    alerts.pipeline.flush()
    want = {("se-files", f"{LAB}/secret"), ("se-exec", f"{BIN}/ktrue"), ("se-net", "domain=AF_INET"),
            ("se-caps", "CAP_CHOWN"), (DEFAULT_POSTURE, f"{LAB}/other")}
    found: set[tuple[str, str]] = set()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not want <= found:
        out = subprocess.run(["journalctl", "--no-pager", "-o", "json", "-t", "karmor-host",
                              "KARMOR_ENFORCER=SELinux"], capture_output=True, text=True, timeout=30).stdout
        for line in out.splitlines():
            rec = json.loads(json.loads(line)["KARMOR_RECORD_JSON"])
            for policy, resource in want:
                if rec["PolicyName"] == policy and rec["Resource"].startswith(resource):
                    assert rec["Enforcer"] == SELINUX and rec["Action"] == BLOCK, rec
                    found.add((policy, resource))
        time.sleep(0.5)
    assert want <= found, sorted(want - found)


def test_replace_moves_labels_and_enforcement(enforcer, applied, alerts, before):
    rs2 = ruleset(("se-other", f"""\
  action: Block
  file:
    matchPaths:
    - path: {LAB}/other
      fromSource:
      - path: {BIN}/kcat
"""))
    report = enforcer.apply(rs2)
    assert [s.mode for s in report.rules] == ["enforced"]
    assert run(BIN / "kcat", LAB / "secret").returncode == 0  # the old rule is gone
    assert run(BIN / "kcat", LAB / "other").returncode != 0
    now = contexts(LAB)
    was = before[1]
    for name in ("secret", "hosts", "global-secret", "conf/a", "bin/ktrue", "bin/kpy"):
        assert now[f"{LAB}/{name}"] == was[f"{LAB}/{name}"], name  # restored: no rule needs them now
    assert ":karmor_" in now[f"{LAB}/other"] and ":karmor_" in now[f"{BIN}/kcat"]
    scenario("replacing the rule set: files no rule names any more get their original labels back before "
             "the new module replaces the old", "old rule gone, new rule enforced")


def test_remove_leaves_the_store_and_labels_as_they_were(enforcer, before, lab):
    enforcer.remove()
    mods = subprocess.run(["semodule", "-l"], capture_output=True, text=True, check=True).stdout.split()
    assert MODULE not in mods
    after_store, after_labels = digest(*STORE), contexts(lab)
    store_before, labels_before = before
    changed = sorted(k for k in set(store_before) | set(after_store) if store_before.get(k) != after_store.get(k))
    assert not changed, changed
    new = {p for p in after_labels if p not in labels_before}
    assert new == {f"{LAB}/conf/sub/new"}, new  # the file a test created; nothing else appeared
    # it was created with the directory's karmor type; it gets the directory's original type back
    assert after_labels[f"{LAB}/conf/sub/new"] == labels_before[f"{LAB}/conf/sub"]
    assert {p: c for p, c in after_labels.items() if p in labels_before} == labels_before
    assert run(BIN / "kcat", LAB / "other").returncode == 0
    scenario("removing the module: every label restored (files created meanwhile get the directory's original "
             "type), then semodule -r; the policy store is byte for byte what it was", "as before")

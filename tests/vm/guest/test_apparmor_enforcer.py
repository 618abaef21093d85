"""The AppArmor enforcer against the real kernel (Debian 6.1, AppArmor active): profiles load,
deny what the rules say and nothing else, and AppArmor's own audit records become alerts
that name the exact rule.

Runs inside the VM guest (`apparmor` configuration). The enforcer is driven in-process; the
programs it confines are started after each apply, most of them directly (no shell), as a
service manager would.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from karmor_host.alerts.match import AUDIT, BLOCK
from karmor_host.alerts.record import DEFAULT_POSTURE
from karmor_host.enforce.apparmor.backend import PROFILE_FILE, Backend
from karmor_host.enforce.apparmor.enforcer import AppArmorEnforcer, EnforcerAlert
from karmor_host.enforce.apparmor.records import RECORDS, parse
from karmor_host.enforce.apparmor.render import slug
from karmor_host.errors import EnforcerError
from karmor_host.kernel.auditrecords import Kmsg
from karmor_host.kernel.events import EventKind
from karmor_host.policy import HostIdentity, compile_policies, load_text
from karmor_host.policy.ruleset import Category, Posture, RuleSet
from tests.policytext import host_policy

pytestmark = pytest.mark.vm_config("apparmor")

PY = "/usr/bin/python3.11"
NOBODY = 65534
HEAD = host_policy("{name}", "")  # a template: HEAD.format(name=...) + body


def ruleset(*docs: tuple[str, str], postures: dict[Category, Posture] | None = None) -> RuleSet:
    text = "---\n".join(HEAD.format(name=name) + body for name, body in docs)
    result = load_text(text, "guest.yaml")
    assert result.valid, [str(p) for p in result.problems]
    return compile_policies(result.policies, HostIdentity.detect(), postures or {})


def label(pid: int) -> str:
    return Path(f"/proc/{pid}/attr/apparmor/current").read_text().strip()


def run(*argv: str, uid: int | None = None) -> subprocess.CompletedProcess[str]:
    """Start a program directly (no shell), optionally as another user."""
    cmd = list(argv) if uid is None else ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", *argv]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


def sock(family: int, kind: int, proto: int = 0) -> subprocess.CompletedProcess[str]:
    code = "import socket,sys; socket.socket(*map(int, sys.argv[1:]))"
    return run(PY, "-S", "-c", code, str(family), str(kind), str(proto))


@pytest.fixture(scope="module")
def enforcer(tmp_path_factory):
    enf = AppArmorEnforcer(backend=Backend(tmp_path_factory.mktemp("apparmor-state")))
    enf.open_audit()
    yield enf
    enf.remove()
    enf.close()


@pytest.fixture
def apply(enforcer):
    """Apply a rule set and start from an empty alert queue."""

    def _apply(rs: RuleSet):
        report = enforcer.apply(rs)
        enforcer.drain()  # what came before this test
        return report

    return _apply


def alerts_until(enf: AppArmorEnforcer, want, timeout: float = 20.0) -> list[EnforcerAlert]:
    """Poll until `want(alerts so far)` holds; returns everything seen."""
    seen: list[EnforcerAlert] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen.extend(enf.poll(200))
        if want(seen):
            return seen
    return seen


def of_policy(alerts: list[EnforcerAlert], policy: str) -> list[EnforcerAlert]:
    return [a for a in alerts if a.decision.policy_name == policy]


@pytest.fixture
def files():
    """Files other users can reach too (pytest's tmp_path is under a 0700 directory)."""
    d = Path(tempfile.mkdtemp(prefix="karmor-aa-", dir="/tmp"))
    (d / "sub" / "deep").mkdir(parents=True)
    for name in ("secret", "notes", "mine", "sub/one", "sub/deep/two", "id_test.key", "plain"):
        (d / name).write_text(f"{name}\n")
    os.chown(d / "mine", NOBODY, NOBODY)
    for p in [d, *d.rglob("*")]:
        os.chmod(p, 0o666 if p.is_file() else 0o755)
    yield d
    shutil.rmtree(d)


def test_file_block_rules_deny_exactly_their_targets_and_each_denial_names_its_rule(enforcer, apply, files):
    rs = ruleset(("no-secret", f"""\
  action: Block
  file:
    matchPaths:
    - path: {files}/secret
    - path: {files}/notes
      readOnly: true
    - path: {files}/mine
      ownerOnly: true
    matchDirectories:
    - dir: {files}/sub/
      recursive: true
    matchPatterns:
    - pattern: {files}/*.key
"""))
    apply(rs)
    assert run("cat", f"{files}/secret").returncode != 0
    assert run("cat", f"{files}/plain").returncode == 0
    assert run("cat", f"{files}/notes").returncode == 0  # readOnly: reads pass
    assert run("sh", "-c", f"echo x >> {files}/notes").returncode != 0
    assert run("cat", f"{files}/mine").returncode != 0  # root is not the owner
    assert run("cat", f"{files}/mine", uid=NOBODY).returncode == 0
    assert run("cat", f"{files}/sub/deep/two").returncode != 0
    assert run("ls", f"{files}/sub").returncode == 0  # the directory itself is not inside it
    assert run("cat", f"{files}/id_test.key").returncode != 0
    targets = {f"{files}/{n}" for n in ("secret", "notes", "mine", "sub/deep/two", "id_test.key")}
    got = alerts_until(enforcer, lambda a: targets <= {x.event.path for x in a})
    by_path = {a.event.path: a for a in got}
    assert targets <= set(by_path), sorted(by_path)
    ids = {r.target: r.id for r in rs.rules}
    assert by_path[f"{files}/secret"].decision.rule.id == ids[f"{files}/secret"]
    assert by_path[f"{files}/sub/deep/two"].decision.rule.id == ids[f"{files}/sub/"]
    assert by_path[f"{files}/id_test.key"].decision.rule.id == ids[f"{files}/*.key"]
    for a in got:
        assert a.decision.policy_name == "no-secret" and a.decision.action == BLOCK
        assert a.event.retval == -13 and a.event.kind is EventKind.OPEN
    assert by_path[f"{files}/secret"].event.comm == "cat"
    assert enforcer.counts["unattributed"] == 0


def test_exec_block_by_path_execname_and_from_source(enforcer, apply, tmp_path):
    tools = tmp_path / "bin"
    tools.mkdir()
    for name in ("forbidden", "tool"):
        shutil.copy("/usr/bin/true", tools / name)
    runner = tools / "runner"
    shutil.copy("/usr/bin/env", runner)  # a program that starts another, no shell involved
    rs = ruleset(("no-exec", f"""\
  action: Block
  process:
    matchPaths:
    - path: {tools}/forbidden
    - execname: tool
      fromSource:
      - path: {runner}
"""))
    apply(rs)
    # The exec is judged in the profile of the program that execs: `env`, started after the
    # policy, is confined by karmor-global (an exec by an unconfined process is not mediated).
    assert run("env", str(tools / "forbidden")).returncode == 126
    assert run("env", str(tools / "tool")).returncode == 0  # the execname rule is for the runner only
    assert run(str(runner), str(tools / "tool")).returncode != 0
    assert run(str(runner), "/usr/bin/true").returncode == 0
    got = alerts_until(enforcer, lambda a: len({x.event.path for x in a}) >= 2)
    by_path = {a.event.path: a for a in got}
    assert set(by_path) == {str(tools / "forbidden"), str(tools / "tool")}
    ex = by_path[str(tools / "tool")]
    assert ex.event.kind is EventKind.EXEC and ex.event.parent_exe == str(runner)
    assert ex.decision.rule.target == "tool" and ex.data.startswith("apparmor=DENIED operation=exec")


def test_a_daemon_started_without_a_shell_is_confined_by_its_from_source_rule(enforcer, apply, tmp_path, files):
    daemon = tmp_path / "svc" / "karmor-svcd"
    daemon.parent.mkdir()
    shutil.copy("/usr/bin/tail", daemon)
    before = subprocess.Popen([str(daemon), "-F", "-n0", "-s", "0.5", f"{files}/plain"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        rs = ruleset(("svcd-secrets", f"""\
  action: Block
  file:
    matchPaths:
    - path: {files}/secret
      fromSource:
      - path: {daemon}
"""))
        report = apply(rs)
        profile = "karmor-src-" + slug(str(daemon))
        assert label(before.pid) == "unconfined"
        assert any(f"pids {before.pid}" in n and "restart" in n for n in report.notes), report.notes
        # tail -F retries a file it cannot open every 0.5 s: a long-running service.
        svc = subprocess.Popen([str(daemon), "-F", "-n0", "-s", "0.5", f"{files}/secret"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(1)
            assert label(svc.pid) == f"{profile} (enforce)"
            got = alerts_until(enforcer, lambda a: any(x.event.tgid == svc.pid for x in a))
            mine = [a for a in got if a.event.tgid == svc.pid]
            assert mine, got
            a = mine[0]
            assert a.decision.policy_name == "svcd-secrets" and a.decision.action == BLOCK
            assert a.event.path == f"{files}/secret" and a.event.exe == str(daemon)
            assert f"profile={profile}" in a.data
        finally:
            svc.kill()
            svc.wait()
        # The same file read by another program is not this rule's business.
        assert run("cat", f"{files}/secret").returncode == 0
    finally:
        before.kill()
        before.wait()


def test_a_global_block_reaches_programs_started_after_the_policy_only(enforcer, apply, files):
    early = subprocess.Popen(["sleep", "60"])
    try:
        apply(ruleset(("global", f"  file:\n    matchPaths:\n    - path: {files}/secret\n      action: Block\n")))
        late = subprocess.Popen(["sleep", "60"])
        try:
            time.sleep(0.5)
            assert label(early.pid) == "unconfined"
            assert label(late.pid) == "karmor-global (enforce)"
        finally:
            late.kill()
            late.wait()
        # Started by a program that was itself started before the policy: still confined.
        assert run("sh", "-c", f"cat {files}/secret").returncode != 0
        st = enforcer.status()
        assert st["processes"].get("unconfined", 0) >= 1 and st["audit_source"] == "multicast"
    finally:
        early.kill()
        early.wait()


def test_network_and_capability_blocks(enforcer, apply, tmp_path):
    target = tmp_path / "owned"
    target.write_text("x")
    rs = ruleset(("py-net", f"""\
  action: Block
  network:
    matchProtocols:
    - protocol: raw
      fromSource:
      - path: {PY}
  capabilities:
    matchCapabilities:
    - capability: chown
      fromSource:
      - path: /usr/bin/chown
"""))
    apply(rs)
    raw = sock(2, 3, 1)
    assert raw.returncode != 0 and "PermissionError" in raw.stderr
    assert sock(2, 1).returncode == 0 and sock(2, 2).returncode == 0  # tcp, udp pass
    ch = run("chown", str(NOBODY), str(target))
    assert ch.returncode != 0 and "Operation not permitted" in ch.stderr
    got = alerts_until(enforcer, lambda a: {x.event.kind for x in a} >= {EventKind.SOCKET, EventKind.CAPABLE})
    net = next(a for a in got if a.event.kind is EventKind.SOCKET)
    assert (net.event.family, net.event.sock_type, net.event.protocol) == (2, 3, 1)
    assert net.decision.rule.target == "raw" and net.event.retval == -13
    cap = next(a for a in got if a.event.kind is EventKind.CAPABLE)
    assert cap.event.capability == 0 and cap.decision.rule.target == "chown" and cap.event.retval == -1


def test_a_block_posture_whitelist_denies_the_rest_as_default_posture(enforcer, apply, tmp_path, files):
    app = tmp_path / "app"
    shutil.copy("/usr/bin/cat", app)
    rs = ruleset(("app-whitelist", f"""\
  action: Allow
  file:
    matchDirectories:
    - dir: /usr/lib/
      recursive: true
      readOnly: true
      fromSource: [{{path: {app}}}]
    - dir: /etc/
      recursive: true
      readOnly: true
      fromSource: [{{path: {app}}}]
    matchPaths:
    - path: {files}/plain
      readOnly: true
      fromSource: [{{path: {app}}}]
"""), postures={Category.FILE: Posture.BLOCK})
    apply(rs)
    assert run(str(app), f"{files}/plain").returncode == 0
    assert run(str(app), f"{files}/notes").returncode != 0
    assert run("cat", f"{files}/notes").returncode == 0  # only the app is whitelisted
    got = alerts_until(enforcer, lambda a: any(x.event.path == f"{files}/notes" for x in a))
    miss = next(a for a in got if a.event.path == f"{files}/notes")
    assert miss.decision.policy_name == DEFAULT_POSTURE and miss.decision.action == BLOCK


def test_audit_rules_are_reported_by_apparmor_and_change_nothing(enforcer, apply, files):
    rs = ruleset(("watch", f"  file:\n    matchPaths:\n    - path: {files}/plain\n      action: Audit\n"))
    apply(rs)
    assert run("cat", f"{files}/plain").returncode == 0
    got = alerts_until(enforcer, lambda a: bool(of_policy(a, "watch")))
    (a,) = of_policy(got, "watch")  # the open, not the getattr that follows it
    assert a.decision.action == AUDIT and a.event.retval == 0 and a.data.startswith("apparmor=AUDIT")


def test_confined_programs_cannot_walk_out_to_unconfined(enforcer, apply, files):
    apply(ruleset(("global", f"  file:\n    matchPaths:\n    - path: {files}/secret\n      action: Block\n")))
    out = run("sh", "-c", "echo 'changeprofile unconfined' > /proc/self/attr/current; cat /proc/self/attr/current")
    assert "karmor-global" in out.stdout
    alerts_until(enforcer, lambda a: enforcer.counts["base_denials"] > 0, timeout=10)
    assert enforcer.counts["base_denials"] > 0


def test_the_allow_everything_base_keeps_common_programs_working(enforcer, apply, tmp_path, files):
    apply(ruleset(("global", f"  file:\n    matchPaths:\n    - path: {files}/secret\n      action: Block\n")))
    work = tmp_path / "work"
    work.mkdir()
    script = f"""
set -e
cd {work}
echo hi > a; mv a b; ln -s b c; cat c >/dev/null; ln b d; rm d; mkfifo f; rm f
mkdir -p x/y; rmdir x/y; chmod 600 b; touch -d @0 b; ls -la / >/dev/null
exec 3<b; rm b; cat /proc/self/fd/3 >/dev/null
id >/dev/null; getent passwd root >/dev/null; kill -0 1; ps >/dev/null 2>&1 || true
sh -c 'sh -c true'; env true; uname -a >/dev/null; date >/dev/null; df / >/dev/null
{PY} -S -c 'import os,socket; os.memfd_create("m"); socket.socketpair(); socket.socket()'
grep -q karmor-global /proc/self/attr/current
"""
    proc = run("sh", "-c", script)
    assert proc.returncode == 0, proc.stderr
    alerts_until(enforcer, lambda a: False, timeout=2)
    assert enforcer.counts["unattributed"] == 0


def test_a_profile_the_parser_rejects_never_reaches_the_kernel(enforcer, apply, files):
    apply(ruleset(("global", f"  file:\n    matchPaths:\n    - path: {files}/secret\n      action: Block\n")))
    before = enforcer.backend.loaded()
    text = (enforcer.backend.state_dir / PROFILE_FILE).read_text()
    broken = text.replace(" rw,\n", " rwz,\n", 1).replace("karmor-global", "karmor-broken")
    with pytest.raises(EnforcerError, match="checking the generated profiles failed"):
        enforcer.backend.load(broken)
    assert enforcer.backend.loaded() == before and "karmor-broken" not in before


def test_stale_profiles_are_removed_at_start_and_removed_policies_unload(tmp_path, files):
    stale = tmp_path / "stale.apparmor"
    stale.write_text("abi <abi/3.0>,\nprofile karmor-src-stale.from.an.old.run /nonexistent/x {\n}\n")
    subprocess.run(["apparmor_parser", "-r", "-K", str(stale)], check=True, capture_output=True)
    fresh = AppArmorEnforcer(backend=Backend(tmp_path / "state"))
    assert "karmor-src-stale.from.an.old.run" in fresh.backend.ours()
    two = ruleset(("a", f"  file:\n    matchPaths:\n    - path: {files}/secret\n      action: Block\n"),
                  ("b", f"  file:\n    matchPaths:\n    - path: {files}/notes\n      action: Block\n"
                        "      fromSource:\n      - path: /usr/bin/head\n"))
    report = fresh.apply(two)
    loaded = fresh.backend.ours()
    assert "karmor-src-stale.from.an.old.run" not in loaded
    assert set(loaded) == {"karmor-global", "karmor-src-usr.bin.head"}
    assert any("karmor-src-stale.from.an.old.run" in n for n in report.notes)
    # Policy b removed: its profile goes; a stays.
    fresh.apply(ruleset(("a", f"  file:\n    matchPaths:\n    - path: {files}/secret\n      action: Block\n")))
    assert set(fresh.backend.ours()) == {"karmor-global"}
    assert run("head", f"{files}/notes").returncode == 0
    fresh.remove()
    assert fresh.backend.ours() == {}


def test_without_multicast_the_records_come_from_kmsg(enforcer, apply, files):
    apply(ruleset(("global", f"  file:\n    matchPaths:\n    - path: {files}/secret\n      action: Block\n")))
    kmsg = Kmsg(RECORDS)
    try:
        assert run("cat", f"{files}/secret").returncode != 0
        lines: list[str] = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not lines:
            lines = [ln for ln in kmsg.read() if f"{files}/secret" in ln]
            time.sleep(0.1)
        assert lines, "no AppArmor record on /dev/kmsg"
        rec = parse(lines[0])
        assert rec is not None and rec.kind == "DENIED" and rec.profile == "karmor-global"
    finally:
        kmsg.close()

"""The enforcer's own logic over a stand-in kernel: the profile list and /proc are files in a
temporary directory, the parser's checks are real, loads and removals edit the stand-in
list. The real kernel is exercised in the VM guest (tests/vm/guest/)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from karmor_host.alerts.match import BLOCK
from karmor_host.enforce.apparmor import backend as be
from karmor_host.enforce.apparmor.backend import Backend
from karmor_host.enforce.apparmor.enforcer import AppArmorEnforcer, read_proc
from karmor_host.errors import EnforcerError
from karmor_host.policy.ruleset import Category
from tests.unit.enforce.apparmor.helpers import PARSER, fixture_ruleset

_NAME = re.compile(r'^profile "?([^" ]+)"?', re.M)


class StandInKernel:
    """`-r` adds the file's profiles to securityfs/profiles, `-R` removes them."""

    def __init__(self, securityfs: Path, fail_load: bool = False) -> None:
        self.profiles = securityfs / "profiles"
        self.fail_load = fail_load
        self.calls: list[list[str]] = []

    def names(self) -> list[str]:
        return [line.rsplit(" (", 1)[0] for line in self.profiles.read_text().splitlines()]

    def __call__(self, cmd):
        self.calls.append(list(cmd))
        if "-Q" in cmd:
            return be.run(cmd)
        names = _NAME.findall(Path(cmd[-1]).read_text())
        have = self.names()
        if "-r" in cmd:
            if self.fail_load:
                return subprocess.CompletedProcess(cmd, 1, "", "Permission denied")
            have += [n for n in names if n not in have]
        else:
            have = [n for n in have if n not in names]
        self.profiles.write_text("".join(f"{n} (enforce)\n" for n in have))
        return subprocess.CompletedProcess(cmd, 0, "", "")


def _proc(root: Path, pid: int, exe: str, label: str, ppid: int = 1, tty_nr: int = 0) -> None:
    d = root / str(pid)
    (d / "attr" / "apparmor").mkdir(parents=True)
    (d / "attr" / "apparmor" / "current").write_text(label + "\n")
    (d / "stat").write_text(f"{pid} (x y) S {ppid} {pid} {pid} {tty_nr} 0 0\n")
    os.symlink(exe, d / "exe")
    os.symlink("/srv", d / "cwd")


@pytest.fixture
def world(tmp_path):
    sec = tmp_path / "securityfs"
    sec.mkdir()
    (sec / "profiles").write_text("karmor-src-left.over (enforce)\n/usr/sbin/cupsd (enforce)\n")
    proc = tmp_path / "proc"
    proc.mkdir()
    _proc(proc, 1, "/usr/lib/systemd/systemd", "unconfined")
    _proc(proc, 40, "/usr/sbin/nginx", "unconfined")  # started before its profile
    _proc(proc, 41, "/usr/sbin/nginx", "karmor-src-usr.sbin.nginx (enforce)", ppid=40)
    _proc(proc, 50, "/usr/bin/cat", "karmor-global (enforce)", ppid=1, tty_nr=(136 << 8) | 3)
    kernel = StandInKernel(sec)
    enf = AppArmorEnforcer(backend=Backend(tmp_path / "state", PARSER, sec, kernel), proc_root=proc)
    return enf, kernel


def _line(body: str, ts: str = "1795333125.976:5") -> str:
    return f"audit({ts}): {body}"


def test_apply_loads_the_plan_and_removes_what_an_earlier_run_left(world):
    enf, kernel = world
    report = enf.apply(fixture_ruleset("from-source"))
    assert "karmor-src-left.over" not in kernel.names() and "/usr/sbin/cupsd" in kernel.names()
    assert {"karmor-global", "karmor-src-usr.sbin.nginx", "karmor-src-usr.bin.python3.11"} <= set(kernel.names())
    assert [c[1] for c in kernel.calls] == ["-Q", "-r", "-R"]  # karmor-global stays: one removal run
    assert report.enforcer == "apparmor" and len(report.rules) == len(fixture_ruleset("from-source").rules)
    notes = "\n".join(report.notes)
    assert "karmor-src-left.over" in notes
    assert "/usr/sbin/nginx: 1 process(es) started before karmor-src-usr.sbin.nginx" in notes and "40" in notes
    assert enf.backend.read_state()["profiles"] == list(enf.plan.names)


def test_a_failed_load_keeps_the_previous_plan(world):
    enf, kernel = world
    enf.apply(fixture_ruleset("blocks"))
    first = enf.plan
    kernel.fail_load = True
    with pytest.raises(EnforcerError):
        enf.apply(fixture_ruleset("from-source"))
    assert enf.plan is first


def test_removing_rules_unloads_their_profiles_and_remove_unloads_all(world):
    enf, kernel = world
    enf.apply(fixture_ruleset("from-source"))
    enf.apply(fixture_ruleset("blocks"))
    assert [n for n in kernel.names() if n.startswith("karmor")] == ["karmor-global"]
    enf.apply(fixture_ruleset("syscalls-only"))
    assert not [n for n in kernel.names() if n.startswith("karmor")]
    enf.apply(fixture_ruleset("from-source"))
    enf.remove()
    assert kernel.names() == ["/usr/sbin/cupsd"] and enf.plan is None and enf.backend.read_state() == {}


def test_can_block_and_reported_follow_the_plan(world):
    enf, _ = world
    rs = fixture_ruleset("from-source")
    assert not enf.can_block(rs.rules[0], rs.rules[0].category)
    enf.apply(rs)
    by_target = {r.target: r for r in rs.rules}
    assert enf.can_block(by_target["raw"], Category.NETWORK)
    assert not enf.can_block(by_target["icmp"], Category.NETWORK)  # no AppArmor form
    assert not enf.can_block(None, Category.FILE)
    assert by_target["raw"].id in enf.reported() and by_target["icmp"].id not in enf.reported()


def test_records_become_alerts_with_the_process_around_them(world):
    enf, _ = world
    enf.apply(fixture_ruleset("from-source"))
    line = _line('apparmor="DENIED" operation="open" profile="karmor-global" name="/etc/shadow" pid=50 '
                 'comm="cat" requested_mask="r" denied_mask="r" fsuid=0 ouid=0')
    (alert,) = enf.handle_lines([line, "unrelated kernel line"])
    assert alert.decision.policy_name == "no-shadow" and alert.decision.action == BLOCK
    ev = alert.event
    assert (ev.tgid, ev.exe, ev.parent_exe, ev.ppid, ev.tty, ev.cwd) == (50, "/usr/bin/cat", "/usr/lib/systemd/systemd", 1, "pts3", "/srv")
    assert alert.data == "apparmor=DENIED operation=open profile=karmor-global requested_mask=r denied_mask=r"
    # The same denial recorded again at once (mknod then open) is one alert.
    again = _line('apparmor="DENIED" operation="mknod" profile="karmor-global" name="/etc/shadow" pid=50 '
                  'comm="cat" requested_mask="r" denied_mask="r" fsuid=0 ouid=0', ts="1795333125.980:6")
    assert enf.handle_lines([again]) == [] and enf.counts["duplicates"] == 1
    later = again.replace("1795333125.980", "1795333127.000")
    assert len(enf.handle_lines([later])) == 1


def test_base_denials_unattributed_and_foreign_profile_changes_are_counted(world):
    enf, _ = world
    enf.apply(fixture_ruleset("blocks"))
    enf.handle_lines([
        _line('apparmor="DENIED" operation="change_profile" profile="karmor-global" name="unconfined" pid=50 '
              'comm="sh" target="unconfined"'),
        _line('apparmor="DENIED" operation="open" profile="karmor-global" name="/etc/motd" pid=50 comm="cat" '
              'requested_mask="r" denied_mask="r" fsuid=0 ouid=0'),
        _line('apparmor="STATUS" operation="profile_remove" profile="unconfined" name="karmor-global" pid=999 '
              'comm="apparmor_parser"', ts="1000000000.000:7"),  # long before any run of ours
        _line('apparmor="STATUS" operation="profile_replace" profile="unconfined" name="karmor-global" pid=4242 '
              'comm="apparmor_parser"', ts=f"{enf.backend.runs[-1][0] // 10**9}.500:8"),  # during our apply
    ])
    assert (enf.counts["base_denials"], enf.counts["unattributed"], enf.counts["foreign_changes"]) == (1, 1, 1)


def test_records_from_before_a_reload_are_judged_by_the_plan_then_in_force(world):
    enf, _ = world
    enf.apply(fixture_ruleset("blocks"))  # blocks /etc/shadow as block-files
    enf.apply(fixture_ruleset("from-source"))  # blocks /etc/shadow as no-shadow
    old = _line('apparmor="DENIED" operation="open" profile="karmor-global" name="/etc/shadow" pid=50 '
                'comm="cat" requested_mask="r" denied_mask="r" fsuid=0 ouid=0', ts="1000000000.000:1")
    (alert,) = enf.handle_lines([old])
    assert alert.decision.policy_name == "block-files"


def test_status_counts_processes_by_label(world):
    enf, _ = world
    enf.apply(fixture_ruleset("from-source"))
    st = enf.status()
    assert st["processes"] == {"karmor-global": 1, "karmor-src-usr.sbin.nginx": 1, "unconfined": 2}
    assert "karmor-global" in st["loaded"]


def test_read_proc_of_a_gone_process(tmp_path):
    assert read_proc(12345, tmp_path) is None


def test_reports_names_what_apparmor_raises_itself(world):
    enf, _ = world
    rs = fixture_ruleset("whitelist-block")
    assert not enf.reports(rs.rules[0], Category.FILE)
    enf.apply(rs)
    by_target = {r.target: r for r in rs.rules}
    assert enf.reports(by_target["/etc/shadow"], Category.FILE)  # Block, carried
    assert not enf.reports(by_target["/etc/passwd"], Category.FILE)  # Audit left to the monitor
    assert enf.reports(None, Category.FILE) and enf.can_block(None, Category.FILE)  # the enforced whitelist


def test_refresh_reloads_only_when_the_kernel_lost_our_profiles(world):
    enf, kernel = world
    assert enf.refresh() is None  # nothing applied yet
    enf.apply(fixture_ruleset("from-source"))
    calls = len(kernel.calls)
    assert enf.refresh() is None and len(kernel.calls) == calls
    kernel.profiles.write_text("karmor-global (enforce)\n")  # someone removed the others
    report = enf.refresh()
    assert report is not None and set(enf.plan.names) <= set(kernel.names())


def test_cleanup_without_apparmor_does_nothing(monkeypatch, tmp_path):
    from karmor_host.enforce.apparmor import enforcer as mod

    monkeypatch.setattr(mod, "SECURITYFS", tmp_path / "no-apparmor")
    assert mod.cleanup() == []

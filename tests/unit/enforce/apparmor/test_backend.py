"""The apparmor_parser steps, with the real parser for checks and a recorder in front of the
kernel-changing commands (this host's kernel has no AppArmor; the VM guest loads for real)."""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path

import pytest

from karmor_host.enforce.apparmor import backend as be
from karmor_host.enforce.apparmor.backend import Backend, parse_profiles_list, removal_text
from karmor_host.enforce.apparmor.render import render
from karmor_host.errors import EnforcerError
from tests.unit.enforce.apparmor.helpers import PARSER, fixture_ruleset, parser_check


class Recorder:
    """Runs `-Q` checks for real; records `-r`/`-R` (kernel changes) and reports success."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(self, cmd):
        self.calls.append(list(cmd))
        if "-Q" in cmd:
            return be.run(cmd)
        return subprocess.CompletedProcess(cmd, 0, "", "")

    def kernel_calls(self) -> list[list[str]]:
        return [c for c in self.calls if "-r" in c or "-R" in c]


@pytest.fixture
def securityfs(tmp_path):
    d = tmp_path / "securityfs"
    d.mkdir()
    (d / "profiles").write_text("karmor-global (enforce)\n/usr/sbin/cupsd (enforce)\nkarmor-src-x y (complain)\n")
    return d


def _backend(tmp_path, securityfs, runner):
    return Backend(tmp_path / "state" / "apparmor", PARSER, securityfs, runner)


def test_a_profile_that_does_not_compile_never_reaches_the_kernel(tmp_path, securityfs):
    rec = Recorder()
    b = _backend(tmp_path, securityfs, rec)
    good = render(fixture_ruleset("blocks")).text()
    broken = good.replace('audit deny "/etc/shadow" rw,', 'audit deny "/etc/shadow" rwz,')
    assert broken != good
    with pytest.raises(EnforcerError, match="checking the generated profiles failed"):
        b.load(broken)
    assert rec.kernel_calls() == [] and len(rec.calls) == 1 and "-Q" in rec.calls[0]
    assert not (b.state_dir / be.PROFILE_FILE).exists()  # nothing claims to be loaded


def test_load_checks_then_loads_exactly_the_checked_file(tmp_path, securityfs):
    rec = Recorder()
    b = _backend(tmp_path, securityfs, rec)
    text = render(fixture_ruleset("from-source")).text()
    current = b.load(text)
    check, load = rec.calls
    assert check[1:3] == ["-Q", "-K"] and load[1:3] == ["-r", "-K"] and check[-1] == load[-1]
    assert current.read_text() == text and current.parent == b.state_dir
    assert stat.S_IMODE(b.state_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE(current.stat().st_mode) == 0o600
    assert "/etc/apparmor.d" not in " ".join(" ".join(c) for c in rec.calls)


def test_parser_failure_at_load_keeps_the_previous_file(tmp_path, securityfs):
    def refuse_load(cmd):
        if "-r" in cmd:
            return subprocess.CompletedProcess(cmd, 1, "", "apparmor_parser: Unable to replace \"x\". Permission denied")
        return be.run(cmd)

    b = _backend(tmp_path, securityfs, refuse_load)
    b.state_dir.mkdir(parents=True)
    (b.state_dir / be.PROFILE_FILE).write_text("previous\n")
    with pytest.raises(EnforcerError, match="(?s)loading the profiles failed.*Permission denied"):
        b.load(render(fixture_ruleset("blocks")).text())
    assert (b.state_dir / be.PROFILE_FILE).read_text() == "previous\n"


def test_listing_and_removing_only_our_loaded_profiles(tmp_path, securityfs):
    rec = Recorder()
    b = _backend(tmp_path, securityfs, rec)
    assert b.ours() == {"karmor-global": "enforce", "karmor-src-x y": "complain"}
    removed = b.unload(["karmor-global", "karmor-src-x y", "karmor-src-not-loaded"])
    assert removed == ["karmor-global", "karmor-src-x y"]
    assert [c[1:3] for c in rec.kernel_calls()] == [["-R", "-K"], ["-R", "-K"]]
    assert not (b.state_dir / "remove.apparmor").exists()
    assert b.unload(["karmor-src-not-loaded"]) == [] and len(rec.kernel_calls()) == 2


def test_removal_runs_sources_then_global_then_the_loader(tmp_path, securityfs):
    """The parser runs under the loader profile (or karmor-global): each removal run must leave
    the profile confining it for the last run."""
    (securityfs / "profiles").write_text(
        "karmor-global (enforce)\nkarmor-src-x y (enforce)\nkarmor-loader-usr.sbin.apparmor_parser (enforce)\n")
    seen: list[str] = []

    def runner(cmd):
        seen.append(Path(cmd[-1]).read_text())
        return subprocess.CompletedProcess(cmd, 0, "", "")

    b = _backend(tmp_path, securityfs, runner)
    b.unload(["karmor-global", "karmor-src-x y", "karmor-loader-usr.sbin.apparmor_parser"])
    assert len(seen) == 3
    assert "karmor-src-x y" in seen[0] and "karmor-global" not in seen[0] and "loader" not in seen[0]
    assert "karmor-global" in seen[1] and "karmor-src" not in seen[1] and "loader" not in seen[1]
    assert "karmor-loader" in seen[2] and "karmor-global" not in seen[2]
    assert len(b.runs) == 3 and all(start <= end for start, end in b.runs)


def test_removal_file_names_profiles_the_parser_accepts(tmp_path):
    text = removal_text(["karmor-global", 'karmor-src-odd "name" \\ x'])
    assert 'profile "karmor-src-odd \\"name\\" \\\\ x" {' in text
    assert parser_check(text, tmp_path).returncode == 0


def test_profiles_list_parsing():
    assert parse_profiles_list("a (enforce)\nb c (complain)\n\nbroken\n") == {"a": "enforce", "b c": "complain"}


def test_state_round_trip(tmp_path, securityfs):
    b = _backend(tmp_path, securityfs, Recorder())
    assert b.read_state() == {}
    b.write_state(["karmor-global"], 3)
    assert b.read_state()["profiles"] == ["karmor-global"] and b.read_state()["rules"] == 3
    b.clear_files()
    assert b.read_state() == {}


def test_missing_parser_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(be.shutil, "which", lambda *a, **k: None)
    with pytest.raises(EnforcerError, match="apparmor_parser not found"):
        Backend(tmp_path)

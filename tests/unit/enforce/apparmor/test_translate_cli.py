"""`karmor-host policy translate --enforcer apparmor`: what it prints is what the parser takes."""

from __future__ import annotations

from tests.unit.enforce.apparmor.helpers import parser_check, policy
from tests.unit.enforce.fixtures import EXAMPLES, translate

def test_example_policies_translate_to_profiles_the_parser_accepts(tmp_path):
    for posture in ("audit", "block"):
        code, out, err = translate("--enforcer", "apparmor", "--file-posture", posture, "--network-posture", posture,
                                   "--capabilities-posture", posture, *EXAMPLES)
        assert code == 0, err
        assert "profile karmor-src-usr.sbin.nginx" in out
        proc = parser_check(out, tmp_path)
        assert proc.returncode == 0, proc.stderr


def test_posture_and_host_options_reach_the_profiles(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text(policy("wl", """\
  action: Allow
  network:
    matchProtocols:
    - protocol: tcp
      fromSource:
      - path: /usr/sbin/sshd
"""))
    _, audit_out, _ = translate("--enforcer", "apparmor", str(f))
    _, block_out, _ = translate("--enforcer", "apparmor", "--network-posture", "block", str(f))
    assert "profile karmor-src-usr.sbin.sshd" not in audit_out  # nothing for AppArmor to do
    assert "profile karmor-src-usr.sbin.sshd" in block_out and "  network inet stream," in block_out
    cfg = tmp_path / "karmor-host.yaml"
    cfg.write_text("defaultPosture:\n  network: block\n")
    _, cfg_out, _ = translate("--enforcer", "apparmor", "--config", str(cfg), str(f))
    assert cfg_out == block_out


def test_invalid_files_are_reported_and_left_out(tmp_path):
    good = tmp_path / "a.yaml"
    good.write_text(policy("ok", "  file:\n    matchPaths:\n    - path: /etc/shadow\n"))
    bad = tmp_path / "b.yaml"
    bad.write_text(policy("bad", "  file:\n    matchPaths:\n    - path: etc/shadow\n"))
    code, out, err = translate("--enforcer", "apparmor", str(good), str(bad))
    assert code == 1 and "b.yaml:" in err and "spec.file.matchPaths[0].path" in err
    assert 'audit deny "/etc/shadow" rw,' in out


def test_an_enforcer_is_required():
    code, _, err = translate(*EXAMPLES[:1])
    assert code == 2 and "--enforcer" in err

"""`karmor-host policy validate|show` through click's test runner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from karmor_host.cli import main
from tests.policytext import host_policy

REPO = Path(__file__).resolve().parents[2]
BAD = REPO / "tests/unit/policy/data/bad"
WARN = REPO / "tests/unit/policy/data/warn"

def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner(mix_stderr=False).invoke(main, ["policy", *args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def write(path: Path, name: str, body: str, host: str = '"*"') -> Path:
    path.write_text(host_policy(name, body, host))
    return path


def test_validate_example_policies_exits_0() -> None:
    code, out, err = run("validate", *map(str, sorted((REPO / "policies").glob("*.yaml"))))
    assert (code, out) == (0, "")
    assert "0 invalid; 0 error(s), 0 warning(s)" in err


def test_validate_severity_11_on_line_9(tmp_path: Path) -> None:
    f = write(tmp_path / "sev.yaml", "sev", "  severity: 11\n  process:\n    matchPaths:\n    - path: /usr/bin/ls\n")
    code, out, _ = run("validate", str(f))
    assert code == 1
    assert out == f"{f}:9:13: spec.severity: must be a whole number in 1..10; got 11\n"


def test_validate_warnings_alone_exit_0(tmp_path: Path) -> None:
    code, out, _ = run("validate", str(WARN / "dir-without-slash.yaml"))
    assert code == 0
    assert out == (f"{WARN}/dir-without-slash.yaml:11:12: warning: spec.process.matchDirectories[0].dir:"
                   " a dir must end with '/'; assumed '/usr/bin/'\n")


def test_validate_directory_and_files_mixed(tmp_path: Path) -> None:
    write(tmp_path / "good.yaml", "good", "  process:\n    matchPaths:\n    - path: /usr/bin/ls\n")
    code, out, err = run("validate", str(tmp_path), str(BAD / "path-relative.yaml"))
    assert code == 1
    assert out.splitlines() == [f"{BAD}/path-relative.yaml:11:13: spec.file.matchPaths[0].path: "
                                "must be an absolute path starting with '/'; got 'etc/passwd'"]
    assert "2 file(s), 1 invalid; 1 error(s), 0 warning(s)" in err


def test_validate_json(tmp_path: Path) -> None:
    good = write(tmp_path / "good.yaml", "good", "  action: block\n  process:\n    matchPaths:\n    - path: /usr/bin/ls\n")
    code, out, _ = run("validate", "--json", str(good), str(BAD / "severity-range.yaml"))
    assert code == 1
    doc = json.loads(out)
    assert (doc["valid"], doc["errors"], doc["warnings"]) == (False, 1, 1)
    first, second = doc["files"]
    assert first["file"] == str(good) and first["valid"] and first["policies"] == ["good"]
    assert first["problems"] == [{
        "file": str(good), "line": 9, "col": 11, "field": "spec.action", "severity": "warning",
        "message": "action 'block' is not written as Allow, Audit or Block; assumed 'Block'"}]
    assert not second["valid"] and second["policies"] == []
    assert second["problems"][0]["field"] == "spec.severity" and second["problems"][0]["line"] == 9


def test_validate_needs_a_path() -> None:
    code, _, _ = run("validate")
    assert code == 2  # click usage error


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A symlinked directory under tmp, so show must canonicalise against the real filesystem."""
    (tmp_path / "real").mkdir()
    (tmp_path / "real/tool").write_text("")
    (tmp_path / "link").symlink_to("real")
    return tmp_path


def test_show_table(tree: Path) -> None:
    f = write(tree / "p.yaml", "tool-audit", f"""\
  action: Audit
  process:
    matchPaths:
    - path: {tree}/link/tool
      fromSource:
      - path: {tree}/link/tool
""")
    write(tree / "q.yaml", "elsewhere", "  process:\n    matchPaths:\n    - path: /usr/bin/ls\n", host="db-9")
    code, out, err = run("show", "--hostname", "web-1", str(f), str(tree / "q.yaml"))
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[0] == "host: web-1"
    header = next(i for i, line in enumerate(lines) if line.startswith("ID "))
    row = lines[header + 1].split()
    assert row[1:5] == ["tool-audit", "Audit", "Process", f"{tree}/real/tool"]
    assert f"(from {tree}/link/tool)" in lines[header + 1]
    assert "  elsewhere" in out and "'db-9' does not name this host (web-1)" in out
    assert "  file: audit (no Allow rules)" in out


def test_show_json_with_labels_postures_and_conflicts(tmp_path: Path) -> None:
    body = "  file:\n    matchPaths:\n    - path: /etc/hosts\n      fromSource: [{path: /usr/bin/cat}]\n"
    write(tmp_path / "a.yaml", "a-allow", body + "  action: Allow\n")
    write(tmp_path / "b.yaml", "b-block", body + "  action: Block\n")
    (tmp_path / "c.yaml").write_text(host_policy("c-rack", "").replace(
        '"*"\n', '"*"\n      rack: r7\n') + "  process:\n    matchPaths:\n    - path: /usr/bin/ls\n")
    code, out, _ = run("show", "--json", "--hostname", "h1", "--label", "rack=r7",
                       "--file-posture", "block", str(tmp_path))
    assert code == 0
    doc = json.loads(out)
    assert doc["host"]["hostname"] == "h1" and doc["host"]["labels"]["rack"] == "r7"
    assert [(r["policy"], r["action"]) for r in doc["rules"]] == [("b-block", "Block"), ("c-rack", "Block")]
    (conflict,) = doc["conflicts"]
    assert conflict["kept"] == doc["rules"][0]["id"] and "Block wins over Allow" in conflict["reason"]
    assert doc["postures"] == {"file": "block", "network": "audit", "capabilities": "audit"}
    assert doc["whitelists"] == []  # the Allow rule lost its conflict
    assert [p["applies"] for p in doc["policies"]] == [True, True, True]
    code, out, _ = run("show", "--json", "--hostname", "h1", str(tmp_path))
    rack = next(p for p in json.loads(out)["policies"] if p["name"] == "c-rack")
    assert not rack["applies"] and rack["reason"] == "this host has no label 'rack' (the policy wants 'r7')"


def test_show_reports_invalid_files_and_exits_1(tmp_path: Path) -> None:
    write(tmp_path / "good.yaml", "good", "  process:\n    matchPaths:\n    - path: /usr/bin/ls\n")
    (tmp_path / "bad.yaml").write_text((BAD / "severity-range.yaml").read_text())
    code, out, err = run("show", "--hostname", "h", str(tmp_path))
    assert code == 1
    assert f"{tmp_path}/bad.yaml:9:13: spec.severity:" in err
    assert " good " in out  # the valid file is still shown


def test_show_rejects_a_bad_label() -> None:
    code, _, err = run("show", "--label", "novalue", str(REPO / "policies"))
    assert code == 2 and "KEY=VALUE" in err


def test_show_takes_postures_from_a_config_file(tmp_path: Path) -> None:
    cfg = tmp_path / "agent.yaml"
    cfg.write_text("defaultPosture:\n  network: block\nidentity:\n  hostname: from-config\n")
    code, out, _ = run("show", "--json", "--config", str(cfg), str(REPO / "policies"))
    assert code == 0
    doc = json.loads(out)
    assert doc["postures"]["network"] == "block" and doc["host"]["hostname"] == "from-config"

"""compile_policies: inheritance, expansion, canonical targets, ids, conflicts, whitelists."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest

from karmor_host.policy import Canonicalizer, HostIdentity, compile_policies, load_text, merge
from karmor_host.policy import compile as compile_mod
from karmor_host.policy.ruleset import (
    Action, Category, Operation, Posture, RuleSet, TargetKind,
)

from .helpers import load_all, load_one, policy_text

HOST = HostIdentity("web-1", {"kubearmor.io/hostname": "web-1"})


def same(path: str) -> str:
    return path  # a resolver that changes nothing: these tests are not about the filesystem


def build(*texts: str, identity: HostIdentity = HOST, **kw: object) -> RuleSet:
    # each text in a file named after its policy, so input order is the only thing that varies
    policies = [p for t in texts for p in load_all(t, re.search(r"name: (\S+)", t)[1] + ".yaml")]
    kw.setdefault("resolve", same)
    return compile_policies(policies, identity, **kw)  # type: ignore[arg-type]


def by_target(rs: RuleSet) -> dict[str, object]:
    return {(r.target, r.syscall) if r.syscall else r.target: r for r in rs.rules}


INHERIT = policy_text("inherit", """\
  severity: 2
  tags: [spec-tag]
  message: spec message
  action: Audit
  process:
    severity: 4
    action: Block
    matchPaths:
    - path: /usr/bin/rule-level
      severity: 9
      tags: [rule-tag]
      message: rule message
      action: Allow
      fromSource: [{path: /usr/bin/x}]
    - path: /usr/bin/section-level
  file:
    matchPaths:
    - path: /etc/spec-level
  syscalls:
    tags: [syscall-tag]
    matchSyscalls:
    - syscall: [unlink]
""")


def test_rule_then_section_then_spec() -> None:
    rules = by_target(build(INHERIT))
    rule = rules["/usr/bin/rule-level"]
    assert (rule.severity, rule.tags, rule.message, rule.action) == (
        9, ("rule-tag",), "rule message", Action.ALLOW)
    section = rules["/usr/bin/section-level"]
    assert (section.severity, section.tags, section.message, section.action) == (
        4, ("spec-tag",), "spec message", Action.BLOCK)
    spec = rules["/etc/spec-level"]
    assert (spec.severity, spec.tags, spec.message, spec.action) == (
        2, ("spec-tag",), "spec message", Action.AUDIT)
    syscall = rules["unlink"]
    assert syscall.action is Action.AUDIT and syscall.tags == ("syscall-tag",)


def test_defaults_are_block_and_severity_1() -> None:
    (rule,) = build(policy_text("d", "  process:\n    matchPaths:\n    - path: /usr/bin/ls\n")).rules
    assert rule.action is Action.BLOCK and rule.severity == 1 and rule.tags == () and rule.message == ""


def test_syscall_rules_stay_audit_under_a_block_spec() -> None:
    rs = build(policy_text("s", "  action: Block\n  syscalls:\n    matchSyscalls:\n    - syscall: [rmdir]\n"))
    assert [r.action for r in rs.rules] == [Action.AUDIT]


def test_comma_lists_and_syscall_lists_expand_to_one_rule_each() -> None:
    rs = build(policy_text("c", """\
  network:
    matchProtocols:
    - protocol: tcp, udp,icmp
      fromSource: [{path: /usr/bin/curl}]
  capabilities:
    matchCapabilities:
    - capability: net_raw,net_admin
      fromSource: [{path: /usr/bin/ping}]
  syscalls:
    matchPaths:
    - path: /var/log/
      recursive: true
      syscall: [unlink, rmdir]
"""))
    got = sorted((r.kind.value, r.target, r.syscall) for r in rs.rules)
    assert got == [
        ("capability", "net_admin", ""), ("capability", "net_raw", ""),
        ("dir", "/var/log/", "rmdir"), ("dir", "/var/log/", "unlink"),
        ("protocol", "icmp", ""), ("protocol", "tcp", ""), ("protocol", "udp", ""),
    ]
    assert len({r.id for r in rs.rules}) == 7
    assert all(r.line == 11 for r in rs.rules if r.kind is TargetKind.PROTOCOL)


@pytest.fixture
def merged_usr(tmp_path: Path) -> Path:
    """A tiny merged-/usr tree: /bin -> usr/bin, /usr/bin/ls, an alternatives chain."""
    (tmp_path / "usr/bin").mkdir(parents=True)
    (tmp_path / "usr/bin/ls").write_text("")
    (tmp_path / "usr/bin/mawk").write_text("")
    (tmp_path / "bin").symlink_to("usr/bin")
    (tmp_path / "etc/alternatives").mkdir(parents=True)
    (tmp_path / "etc/alternatives/awk").symlink_to("/usr/bin/mawk")
    (tmp_path / "usr/bin/awk").symlink_to("/etc/alternatives/awk")
    return tmp_path


def test_targets_and_sources_are_canonicalised(merged_usr: Path) -> None:
    policy = load_one(policy_text("canon", """\
  process:
    matchPaths:
    - path: /bin/ls
      fromSource:
      - path: /bin/awk
      - path: /usr/bin/mawk
    matchDirectories:
    - dir: /bin/
  file:
    matchPaths:
    - path: /bin/not-installed
"""))
    rs = compile_policies([policy], HOST, resolve=Canonicalizer(merged_usr))
    rules = {r.original: r for r in rs.rules}
    ls = rules["/bin/ls"]
    assert ls.target == "/usr/bin/ls"
    (source,) = ls.sources  # /bin/awk and /usr/bin/mawk are one program
    assert source.path == "/usr/bin/mawk" and source.original == "/bin/awk"
    assert rules["/bin/"].target == "/usr/bin/"
    assert rules["/bin/not-installed"].target == "/usr/bin/not-installed"


def test_patterns_and_names_are_left_as_written(merged_usr: Path) -> None:
    policy = load_one(policy_text("p", """\
  process:
    matchPatterns:
    - pattern: /bin/apt*
    matchPaths:
    - execname: ls
"""))
    rs = compile_policies([policy], HOST, resolve=Canonicalizer(merged_usr))
    assert sorted(r.target for r in rs.rules) == ["/bin/apt*", "ls"]


def test_policy_not_for_this_host_is_reported_and_contributes_nothing() -> None:
    rs = build(
        policy_text("here", "  process:\n    matchPaths:\n    - path: /usr/bin/a\n"),
        policy_text("there", "  process:\n    matchPaths:\n    - path: /usr/bin/b\n", host="db-1,db-2"),
    )
    infos = {p.name: p for p in rs.policies}
    assert infos["here"].applies and infos["here"].rule_ids == tuple(r.id for r in rs.rules)
    assert not infos["there"].applies and infos["there"].rule_ids == ()
    assert "db-1,db-2" in infos["there"].reason and "web-1" in infos["there"].reason
    assert {r.policy for r in rs.rules} == {"here"}


def test_whitelists_come_from_allow_rules_only() -> None:
    rs = build(policy_text("w", """\
  action: Allow
  process:
    matchPaths:
    - path: /usr/sbin/nginx
      fromSource: [{path: /usr/sbin/nginx}]
  capabilities:
    matchCapabilities:
    - capability: net_bind_service
      fromSource: [{path: /usr/sbin/nginx}]
      action: Audit
"""))
    assert rs.whitelists == frozenset({Category.FILE})  # process Allow rules whitelist "file"


def test_postures_default_to_audit_and_pass_through() -> None:
    text = policy_text("x", "  process:\n    matchPaths:\n    - path: /usr/bin/a\n")
    assert build(text).postures == {c: Posture.AUDIT for c in Category}
    rs = build(text, postures={Category.NETWORK: Posture.BLOCK})
    assert rs.postures[Category.NETWORK] is Posture.BLOCK and rs.postures[Category.FILE] is Posture.AUDIT


def _rule(name: str, action: str, source: str = "", target: str = "/etc/hosts") -> str:
    src = f"\n      fromSource: [{{path: {source}}}]" if source else ""
    return policy_text(name, f"  file:\n    matchPaths:\n    - path: {target}{src}\n      action: {action}\n")


@pytest.mark.parametrize("winner,loser", [("Block", "Allow"), ("Block", "Audit"), ("Allow", "Audit")])
def test_conflict_keeps_block_over_allow_over_audit(winner: str, loser: str) -> None:
    for order in ((winner, loser), (loser, winner)):
        rs = build(_rule("a-first", order[0]), _rule("b-second", order[1]))
        (rule,) = rs.rules
        assert rule.action.value == winner
        (conflict,) = rs.conflicts
        assert conflict.kept == rule.id and conflict.dropped != rule.id
        assert f"{winner} wins over {loser}" in conflict.reason and "/etc/hosts" in conflict.reason


def test_duplicates_keep_the_first_by_policy_name() -> None:
    rs = build(_rule("zz", "Audit"), _rule("aa", "Audit"))
    (rule,) = rs.rules
    assert rule.policy == "aa"
    (conflict,) = rs.conflicts
    assert "duplicate" in conflict.reason


def test_different_sources_or_flags_are_not_conflicts() -> None:
    rs = build(_rule("a", "Block"), _rule("b", "Allow", source="/usr/bin/cat"),
               policy_text("c", "  file:\n    matchPaths:\n    - path: /etc/hosts\n      readOnly: true\n      action: Audit\n"))
    assert len(rs.rules) == 3 and rs.conflicts == ()


def test_ids_are_31_bit_positive_and_unique() -> None:
    rs = build(INHERIT)
    assert all(0 < r.id < 2**31 for r in rs.rules)
    assert len({r.id for r in rs.rules}) == len(rs.rules)


def test_same_text_same_ids_whatever_the_file_order() -> None:
    texts = [INHERIT, _rule("other", "Audit", target="/etc/motd"),
             policy_text("third", "  process:\n    matchPaths:\n    - path: /usr/bin/a\n")]
    first = build(*texts)
    shuffled = texts[:]
    random.Random(7).shuffle(shuffled)
    second = build(*reversed(texts))
    third = build(*shuffled)
    ids = lambda rs: {(r.policy, r.target, r.syscall): r.id for r in rs.rules}  # noqa: E731
    assert ids(first) == ids(second) == ids(third)
    assert ids(first) == ids(build(*texts))  # and across runs


def test_ids_survive_an_update_of_action_and_severity() -> None:
    old = build(_rule("p", "Block")).rules[0]
    new = build(_rule("p", "Audit").replace("action: Audit", "action: Audit\n      severity: 8")).rules[0]
    assert old.id == new.id and old.action != new.action and new.severity == 8


def test_ids_change_with_what_the_rule_is_about() -> None:
    a = build(_rule("p", "Block")).rules[0].id
    assert build(_rule("q", "Block")).rules[0].id != a  # another policy
    assert build(_rule("p", "Block", target="/etc/motd")).rules[0].id != a  # another target
    assert build(_rule("p", "Block", source="/usr/bin/cat")).rules[0].id != a  # another scope


def test_id_clashes_are_resolved_deterministically(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compile_mod, "_base_id", lambda rule: compile_mod.ID_SPACE)  # all clash
    texts = [_rule("a", "Audit", target="/etc/a"), _rule("b", "Audit", target="/etc/b"),
             _rule("c", "Audit", target="/etc/c")]
    one = {r.policy: r.id for r in build(*texts).rules}
    two = {r.policy: r.id for r in build(*reversed(texts)).rules}
    assert one == two == {"a": compile_mod.ID_SPACE, "b": 1, "c": 2}  # wraps past 2^31-1


def test_output_is_sorted_and_independent_of_input_order() -> None:
    texts = [INHERIT, _rule("other", "Audit", target="/etc/motd")]
    assert build(*texts) == build(*reversed(texts))
    rs = build(*texts)
    assert [p.name for p in rs.policies] == sorted(p.name for p in rs.policies)


def test_merge_then_compile_refuses_nothing_silently() -> None:
    """Duplicate names across files: the later file is rejected, the compile sees one copy."""
    a = load_text(_rule("same", "Block"), "a.yaml")
    b = load_text(_rule("same", "Audit"), "b.yaml")
    merged = merge([a, b])
    rs = compile_policies(merged.policies, HOST, resolve=same)
    assert [(r.policy, r.file, r.action) for r in rs.rules] == [("same", "a.yaml", Action.BLOCK)]
    assert [p.file for p in merged.errors] == ["b.yaml"]


def test_operation_of_rules() -> None:
    ops = {r.target: r.operation for r in build(INHERIT).rules}
    assert ops["/usr/bin/rule-level"] is Operation.PROCESS and ops["/etc/spec-level"] is Operation.FILE
    assert ops["unlink"] is Operation.SYSCALL

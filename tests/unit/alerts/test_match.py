"""Matching semantics: every rule kind and condition, whitelists, actions, index shape."""

from __future__ import annotations

import errno
import os

import pytest

from karmor_host.alerts.match import Decision, Matcher, parents, protocol_names
from karmor_host.kernel.events import EventKind
from karmor_host.policy.ruleset import (
    Action,
    Category,
    Operation,
    Posture,
    Rule,
    RuleSet,
    TargetKind,
)

from .helpers import event, executed, file_rule, opened, proc_rule, rule


def ruleset(*rules: Rule, file: str = "audit", network: str = "audit", caps: str = "audit") -> RuleSet:
    # As the compiler does: a category with an Allow rule is a whitelist.
    whitelists = frozenset(r.category for r in rules if r.action is Action.ALLOW and r.category)
    postures = {
        Category.FILE: Posture(file),
        Category.NETWORK: Posture(network),
        Category.CAPABILITIES: Posture(caps),
    }
    return RuleSet(rules=rules, postures=postures, whitelists=whitelists)


def match(rules: list[Rule] | RuleSet, ev, can_block=False) -> list[tuple[str, str]]:
    rs = rules if isinstance(rules, RuleSet) else ruleset(*rules)
    return [(d.policy_name, d.action) for d in Matcher(rs, can_block).match(ev)]


# --- files ---------------------------------------------------------------------------------


def test_exact_file_path():
    rules = [file_rule("/etc/shadow", policy="shadow")]
    assert match(rules, opened("/etc/shadow")) == [("shadow", "Audit (Block)")]
    assert match(rules, opened("/etc/shadow-")) == []
    assert match(rules, opened("/etc/shadow/x")) == []


def test_block_is_block_when_the_enforcer_can_block():
    rules = [file_rule("/etc/shadow", policy="shadow")]
    [d] = Matcher(ruleset(*rules), True).match(opened("/etc/shadow"))
    assert (d.action, d.enforced, d.rule.id) == ("Block", True, rules[0].id)
    [d] = Matcher(ruleset(*rules), False).match(opened("/etc/shadow"))
    assert (d.action, d.enforced) == ("Audit (Block)", False)


def test_audit_rule_is_audit_whatever_the_enforcer():
    rules = [file_rule("/etc/hosts", Action.AUDIT, policy="a")]
    assert match(rules, opened("/etc/hosts"), can_block=True) == [("a", "Audit")]
    assert match(rules, opened("/etc/hosts"), can_block=False) == [("a", "Audit")]


def test_per_rule_enforcement_callback():
    enforced = file_rule("/etc/a", policy="enforced")
    not_enforced = file_rule("/etc/b", policy="audit-only")
    seen = []

    def can_block(r, category):
        seen.append((r.id if r else None, category))
        return r is enforced

    m = Matcher(ruleset(enforced, not_enforced), can_block)
    assert [(d.action, d.enforced) for d in m.match(opened("/etc/a"))] == [("Block", True)]
    assert [(d.action, d.enforced) for d in m.match(opened("/etc/b"))] == [("Audit (Block)", False)]
    assert seen == [(enforced.id, Category.FILE), (not_enforced.id, Category.FILE)]


def test_failed_open_is_still_reported():
    rules = [file_rule("/etc/shadow", policy="shadow")]
    ev = opened("/etc/shadow", retval=-errno.EACCES)
    assert match(rules, ev) == [("shadow", "Audit (Block)")]


def test_directory_recursive_and_not():
    rec = file_rule("/etc/", policy="rec", recursive=True)
    flat = file_rule("/var/", policy="flat", recursive=False)
    assert match([rec, flat], opened("/etc/passwd")) == [("rec", "Audit (Block)")]
    assert match([rec, flat], opened("/etc/ssl/certs/ca.pem")) == [("rec", "Audit (Block)")]
    assert match([rec, flat], opened("/var/x")) == [("flat", "Audit (Block)")]
    assert match([rec, flat], opened("/var/log/syslog")) == []  # not a direct child
    # the directory itself and look-alike prefixes are not inside it
    assert match([rec, flat], opened("/etc")) == []
    assert match([rec, flat], opened("/etcetera/x")) == []


def test_root_directory_rule():
    rules = [file_rule("/", policy="root", recursive=False)]
    assert match(rules, opened("/x")) == [("root", "Audit (Block)")]
    assert match(rules, opened("/etc/x")) == []


@pytest.mark.parametrize(
    "pattern, path, hit",
    [
        ("/etc/*.conf", "/etc/a.conf", True),
        ("/etc/*.conf", "/etc/sub/a.conf", False),  # * does not cross /
        ("/etc/**.conf", "/etc/sub/a.conf", True),  # ** does
        ("/home/*/.ssh/*", "/home/u/.ssh/id_rsa", True),
        ("/home/*/.ssh/*", "/home/u/x/.ssh/id_rsa", False),
        ("/home/**/id_rsa", "/home/u/.ssh/id_rsa", True),
        ("/home/**/id_rsa", "/home/id_rsa", True),  # **/ may match no directory
        ("/tmp/??.sh", "/tmp/ab.sh", True),
        ("/tmp/??.sh", "/tmp/abc.sh", False),
        ("/tmp/[ab]*.sh", "/tmp/b1.sh", True),
        ("/tmp/[!ab]*.sh", "/tmp/b1.sh", False),
        ("/**/shadow", "/etc/shadow", True),
        ("/**/shadow", "/etc/shadow.bak", False),
    ],
)
def test_patterns(pattern, path, hit):
    rules = [file_rule(pattern, policy="pat")]
    assert match(rules, opened(path)) == ([("pat", "Audit (Block)")] if hit else [])


# --- processes -----------------------------------------------------------------------------


def test_process_path_dir_pattern_execname():
    rules = [
        proc_rule("/usr/bin/sleep", policy="path"),
        proc_rule("/opt/tools/", policy="dir", recursive=True),
        proc_rule("/usr/local/bin/*.sh", policy="pattern"),
        proc_rule("nc", policy="execname"),
    ]
    assert match(rules, executed("/usr/bin/sleep")) == [("path", "Audit (Block)")]
    assert match(rules, executed("/opt/tools/x/y")) == [("dir", "Audit (Block)")]
    assert match(rules, executed("/usr/local/bin/run.sh")) == [("pattern", "Audit (Block)")]
    assert match(rules, executed("/usr/bin/nc")) == [("execname", "Audit (Block)")]
    assert match(rules, executed("/usr/bin/ncat")) == []
    assert match(rules, executed("/usr/bin/true")) == []


def test_exec_events_do_not_meet_file_rules_and_opens_do_not_meet_process_rules():
    rules = [file_rule("/usr/bin/sleep", policy="file"), proc_rule("/etc/passwd", policy="proc")]
    assert match(rules, executed("/usr/bin/sleep")) == []
    assert match(rules, opened("/etc/passwd")) == []


def test_from_source_exec_uses_the_parent_executable():
    rules = [proc_rule("/usr/bin/sleep", policy="from-bash", sources=("/usr/bin/bash",))]
    assert match(rules, executed("/usr/bin/sleep", parent_exe="/usr/bin/bash")) == [
        ("from-bash", "Audit (Block)")
    ]
    assert match(rules, executed("/usr/bin/sleep", parent_exe="/usr/bin/dash")) == []


def test_from_source_file_uses_the_acting_executable():
    rules = [file_rule("/etc/passwd", policy="bash-reads", sources=("/usr/bin/bash",))]
    # cat, child of bash, is not bash
    assert match(rules, opened("/etc/passwd", exe="/usr/bin/cat", parent_exe="/usr/bin/bash")) == []
    assert match(rules, opened("/etc/passwd", exe="/usr/bin/bash", parent_exe="/usr/sbin/sshd")) == [
        ("bash-reads", "Audit (Block)")
    ]
    assert match(rules, opened("/etc/passwd", exe="")) == []  # unknown executable: no scope


def test_from_source_directories():
    flat = file_rule("/etc/a", policy="flat", sources=("/usr/bin/",))
    deep = file_rule("/etc/b", policy="deep", sources=("/opt/**",))
    assert match([flat, deep], opened("/etc/a", exe="/usr/bin/cat")) == [("flat", "Audit (Block)")]
    assert match([flat, deep], opened("/etc/a", exe="/usr/bin/x/cat")) == []
    assert match([flat, deep], opened("/etc/b", exe="/opt/x/y/tool")) == [("deep", "Audit (Block)")]
    assert match([flat, deep], opened("/etc/b", exe="/usr/bin/cat")) == []


def test_two_sources_matching_give_one_decision():
    r = file_rule("/etc/a", policy="p", sources=("/usr/bin/cat", "/usr/bin/"))
    assert match([r], opened("/etc/a", exe="/usr/bin/cat")) == [("p", "Audit (Block)")]


# --- readOnly / ownerOnly ------------------------------------------------------------------


@pytest.mark.parametrize("action, expected", [(Action.BLOCK, "Audit (Block)"), (Action.AUDIT, "Audit")])
@pytest.mark.parametrize(
    "flags, violation",
    [
        (os.O_RDONLY, False),
        (os.O_RDONLY | os.O_CLOEXEC, False),
        (os.O_WRONLY, True),
        (os.O_RDWR, True),
        (os.O_RDONLY | os.O_CREAT, True),
        (os.O_RDONLY | os.O_TRUNC, True),
        (os.O_WRONLY | os.O_APPEND, True),
    ],
)
def test_read_only(action, expected, flags, violation):
    rules = [file_rule("/etc/", action, policy="ro", recursive=True, read_only=True)]
    assert match(rules, opened("/etc/hosts", flags=flags)) == ([("ro", expected)] if violation else [])


@pytest.mark.parametrize(
    "uid, file_uid, violation",
    [(1000, 1000, False), (1000, 0, True), (0, 1000, True), (1000, -1, True)],
)
def test_owner_only_file(uid, file_uid, violation):
    rules = [file_rule("/home/u/secret", policy="own", owner_only=True)]
    ev = opened("/home/u/secret", uid=uid, file_uid=file_uid)
    assert match(rules, ev) == ([("own", "Audit (Block)")] if violation else [])


def test_owner_only_process():
    rules = [proc_rule("/home/u/bin/tool", policy="own", owner_only=True)]
    assert match(rules, executed("/home/u/bin/tool", uid=1000, file_uid=1000)) == []
    assert match(rules, executed("/home/u/bin/tool", uid=1001, file_uid=1000)) == [
        ("own", "Audit (Block)")
    ]


def test_read_only_and_owner_only_together():
    rules = [file_rule("/srv/data", policy="both", read_only=True, owner_only=True)]
    assert match(rules, opened("/srv/data", uid=5, file_uid=5)) == []
    assert match(rules, opened("/srv/data", flags=os.O_WRONLY, uid=5, file_uid=5)) == [
        ("both", "Audit (Block)")
    ]
    assert match(rules, opened("/srv/data", uid=6, file_uid=5)) == [("both", "Audit (Block)")]


# --- network -------------------------------------------------------------------------------

AF_INET, AF_INET6, AF_UNIX, AF_PACKET = 2, 10, 1, 17
STREAM, DGRAM, RAW = 1, 2, 3


def sock(family: int, sock_type: int, protocol: int, **kw):
    return event(EventKind.SOCKET, family=family, sock_type=sock_type, protocol=protocol, **kw)


@pytest.mark.parametrize(
    "ev, expected",
    [
        (sock(AF_INET, STREAM, 0), {"all", "tcp", "stream"}),
        (sock(AF_INET6, STREAM, 6), {"all", "tcp", "stream"}),
        (sock(AF_INET, STREAM | 0o2000000, 0), {"all", "tcp", "stream"}),  # SOCK_CLOEXEC
        (sock(AF_INET, DGRAM, 0), {"all", "udp", "dgram"}),
        (sock(AF_INET, DGRAM, 17), {"all", "udp", "dgram"}),
        (sock(AF_INET, RAW, 1), {"all", "icmp", "raw"}),
        (sock(AF_INET, DGRAM, 1), {"all", "icmp", "dgram"}),  # ping socket
        (sock(AF_INET6, RAW, 58), {"all", "icmpv6", "raw"}),
        (sock(AF_INET6, DGRAM, 58), {"all", "icmpv6", "dgram"}),
        (sock(AF_INET, RAW, 255), {"all", "raw"}),
        (sock(AF_INET, RAW, 6), {"all", "tcp", "raw"}),
        (sock(AF_INET, STREAM, 132), {"all", "sctp", "stream"}),
        (sock(AF_INET, 5, 132), {"all", "sctp", "seqpacket"}),
        (sock(AF_INET, 6, 0), {"all", "dccp"}),
        (sock(AF_PACKET, RAW, 768), {"all", "packet", "raw"}),
        (sock(AF_PACKET, DGRAM, 768), {"all", "packet", "dgram"}),
        (sock(AF_UNIX, STREAM, 0), {"all", "stream"}),
        (sock(AF_UNIX, 4, 0), {"all", "rdm"}),
    ],
)
def test_protocol_names(ev, expected):
    assert set(protocol_names(ev)) == expected


def net_rule(proto: str, action: Action = Action.BLOCK, **kw) -> Rule:
    kw.setdefault("sources", ("/usr/bin/ping",))
    return rule(Operation.NETWORK, TargetKind.PROTOCOL, proto, action, **kw)


def test_protocol_rules_match_raw_and_ping_sockets():
    rules = [net_rule("icmp", policy="no-icmp"), net_rule("raw", policy="no-raw")]
    ping = dict(exe="/usr/bin/ping")
    assert match(rules, sock(AF_INET, RAW, 1, **ping)) == [
        ("no-icmp", "Audit (Block)"), ("no-raw", "Audit (Block)")
    ]
    assert match(rules, sock(AF_INET, DGRAM, 1, **ping)) == [("no-icmp", "Audit (Block)")]
    assert match(rules, sock(AF_INET, STREAM, 0, **ping)) == []
    assert match(rules, sock(AF_INET, RAW, 1, exe="/usr/bin/other")) == []  # fromSource


def test_protocol_all_and_accept_events():
    rules = [net_rule("ALL", Action.AUDIT, policy="everything", sources=("/usr/sbin/sshd",))]
    sshd = dict(exe="/usr/sbin/sshd")
    assert match(rules, sock(AF_UNIX, DGRAM, 0, **sshd)) == [("everything", "Audit")]
    accepted = event(EventKind.ACCEPT, family=AF_INET, sock_type=STREAM, protocol=6, **sshd)
    assert match(rules, accepted) == [("everything", "Audit")]
    # connect and bind act on a socket already judged when it was created
    for kind in (EventKind.CONNECT, EventKind.BIND):
        assert match(rules, event(kind, family=AF_INET, sock_type=STREAM, protocol=6, **sshd)) == []


# --- capabilities and syscalls -------------------------------------------------------------


def test_capability_rules():
    r = rule(Operation.CAPABILITIES, TargetKind.CAPABILITY, "net_raw", policy="cap",
             sources=("/usr/bin/ping",))
    assert match([r], event(EventKind.CAPABLE, capability=13, exe="/usr/bin/ping")) == [
        ("cap", "Audit (Block)")
    ]
    assert match([r], event(EventKind.CAPABLE, capability=12, exe="/usr/bin/ping")) == []
    assert match([r], event(EventKind.CAPABLE, capability=13, exe="/usr/bin/cat")) == []


def test_syscall_rules_match_the_exact_name_and_are_always_audit():
    r = rule(Operation.SYSCALL, TargetKind.SYSCALL, "unlink", Action.BLOCK, policy="sc")
    assert match([r], event(EventKind.SYSCALL, syscall="unlink", path="/tmp/x"), True) == [
        ("sc", "Audit")
    ]
    assert match([r], event(EventKind.SYSCALL, syscall="unlinkat", path="/tmp/x")) == []


def test_syscall_rules_with_source_directory():
    r = rule(Operation.SYSCALL, TargetKind.SYSCALL, "ptrace", Action.AUDIT, policy="sc",
             sources=("/usr/bin/**",))
    assert match([r], event(EventKind.SYSCALL, syscall="ptrace", exe="/usr/bin/x/gdb")) == [
        ("sc", "Audit")
    ]
    assert match([r], event(EventKind.SYSCALL, syscall="ptrace", exe="/opt/gdb")) == []


def test_syscall_match_paths():
    on_file = rule(Operation.SYSCALL, TargetKind.PATH, "/etc/passwd", Action.AUDIT,
                   policy="f", syscall="unlinkat")
    on_dir = rule(Operation.SYSCALL, TargetKind.DIR, "/var/log/", Action.AUDIT,
                  policy="d", syscall="unlinkat", recursive=True)
    rules = [on_file, on_dir]
    assert match(rules, event(EventKind.SYSCALL, syscall="unlinkat", path="/etc/passwd")) == [("f", "Audit")]
    assert match(rules, event(EventKind.SYSCALL, syscall="unlinkat", path="/var/log/a/b")) == [("d", "Audit")]
    assert match(rules, event(EventKind.SYSCALL, syscall="unlink", path="/etc/passwd")) == []
    assert match(rules, event(EventKind.SYSCALL, syscall="unlinkat", path="/etc/group")) == []


def test_telemetry_only_kinds_never_match():
    rules = [proc_rule("/usr/bin/cat"), file_rule("/usr/bin/cat")]
    for kind in (EventKind.FORK, EventKind.EXIT):
        assert match(rules, event(kind, path="/usr/bin/cat")) == []


# --- whitelists and default posture -------------------------------------------------------


def test_whitelist_miss_is_default_posture_audit():
    rs = ruleset(proc_rule("/usr/bin/ls", Action.ALLOW, policy="allow-ls"))
    assert match(rs, executed("/usr/bin/ls")) == []
    assert match(rs, executed("/usr/bin/cat")) == [("DefaultPosture", "Audit")]
    # process and file rules are one category: opens are confined too
    assert match(rs, opened("/etc/hosts")) == [("DefaultPosture", "Audit")]
    # other categories are not
    assert match(rs, sock(AF_INET, STREAM, 0)) == []


def test_whitelist_block_posture():
    rs = ruleset(proc_rule("/usr/bin/ls", Action.ALLOW, policy="allow-ls"), file="block")
    assert match(rs, executed("/usr/bin/cat"), can_block=False) == [("DefaultPosture", "Audit (Allow)")]
    [d] = Matcher(rs, True).match(executed("/usr/bin/cat"))
    assert d == Decision(None, "Block", "DefaultPosture", Operation.PROCESS, True)


def test_posture_enforcement_asks_per_category():
    rs = ruleset(
        proc_rule("/usr/bin/ls", Action.ALLOW),
        net_rule("tcp", Action.ALLOW, sources=()),
        file="block",
        network="block",
    )
    m = Matcher(rs, lambda r, category: category is Category.NETWORK)
    assert [d.action for d in m.match(executed("/usr/bin/cat"))] == ["Audit (Allow)"]
    assert [d.action for d in m.match(sock(AF_INET, DGRAM, 0))] == ["Block"]


def test_whitelist_from_source_confines_only_those_programs():
    rs = ruleset(file_rule("/etc/nginx/", Action.ALLOW, recursive=True,
                           sources=("/usr/sbin/nginx",)))
    nginx = dict(exe="/usr/sbin/nginx")
    assert match(rs, opened("/etc/nginx/nginx.conf", **nginx)) == []
    assert match(rs, opened("/etc/shadow", **nginx)) == [("DefaultPosture", "Audit")]
    assert match(rs, opened("/etc/shadow", exe="/usr/bin/cat")) == []  # not confined


def test_allow_read_only_permits_reads_only():
    rs = ruleset(file_rule("/etc/", Action.ALLOW, recursive=True, read_only=True))
    assert match(rs, opened("/etc/hosts")) == []
    assert match(rs, opened("/etc/hosts", flags=os.O_WRONLY)) == [("DefaultPosture", "Audit")]


def test_allow_owner_only_permits_owner_only():
    rs = ruleset(file_rule("/home/u/", Action.ALLOW, recursive=True, owner_only=True))
    assert match(rs, opened("/home/u/a", uid=1000, file_uid=1000)) == []
    assert match(rs, opened("/home/u/a", uid=0, file_uid=1000)) == [("DefaultPosture", "Audit")]
    assert match(rs, opened("/home/u/a", uid=1000, file_uid=-1)) == [("DefaultPosture", "Audit")]


def test_block_rule_inside_a_whitelist_wins_and_audit_adds():
    rs = ruleset(
        file_rule("/etc/", Action.ALLOW, recursive=True, policy="allow-etc"),
        file_rule("/etc/shadow", Action.BLOCK, policy="no-shadow"),
        file_rule("/tmp/x", Action.AUDIT, policy="watch-x"),
    )
    assert match(rs, opened("/etc/shadow")) == [("no-shadow", "Audit (Block)")]
    assert match(rs, opened("/etc/hosts")) == []
    assert match(rs, opened("/tmp/x")) == [("watch-x", "Audit"), ("DefaultPosture", "Audit")]


def test_capability_whitelist():
    allow = rule(Operation.CAPABILITIES, TargetKind.CAPABILITY, "net_bind_service", Action.ALLOW,
                 sources=("/usr/sbin/nginx",))
    rs = ruleset(allow, caps="block")
    assert match(rs, event(EventKind.CAPABLE, capability=10, exe="/usr/sbin/nginx")) == []
    assert match(rs, event(EventKind.CAPABLE, capability=21, exe="/usr/sbin/nginx")) == [
        ("DefaultPosture", "Audit (Allow)")
    ]


def test_one_decision_per_policy_strongest_first():
    rules = [
        file_rule("/etc/", Action.AUDIT, recursive=True, policy="b-pol"),
        file_rule("/etc/shadow", Action.BLOCK, policy="b-pol"),
        file_rule("/etc/shadow", Action.AUDIT, policy="a-pol"),
        file_rule("/etc/*", Action.BLOCK, policy="c-pol"),
    ]
    assert match(rules, opened("/etc/shadow")) == [
        ("b-pol", "Audit (Block)"), ("c-pol", "Audit (Block)"), ("a-pol", "Audit")
    ]


# --- the index -----------------------------------------------------------------------------


def test_parents():
    assert list(parents("/a/b/c")) == ["/a/b/", "/a/", "/"]
    assert list(parents("/x")) == ["/"]


def test_matcher_consults_only_candidate_buckets():
    rules = []
    for i in range(10_000):
        kind = i % 5
        if kind == 0:
            rules.append(file_rule(f"/data/f{i}", policy=f"p{i}"))
        elif kind == 1:
            rules.append(file_rule(f"/data/d{i}/", policy=f"p{i}", recursive=True))
        elif kind == 2:
            rules.append(file_rule(f"/data/g{i}/*.log", policy=f"p{i}"))
        elif kind == 3:
            rules.append(proc_rule(f"/opt/bin{i}/tool", policy=f"p{i}", sources=(f"/usr/bin/s{i}",)))
        else:
            rules.append(net_rule("tcp", policy=f"p{i}", sources=(f"/usr/bin/n{i}",)))
    m = Matcher(ruleset(*rules))
    assert [d.policy_name for d in m.match(opened("/data/f5000"))] == ["p5000"]
    assert [d.policy_name for d in m.match(opened("/data/d5001/x/y"))] == ["p5001"]
    assert [d.policy_name for d in m.match(opened("/data/g5002/a.log"))] == ["p5002"]
    assert [d.policy_name for d in m.match(executed("/opt/bin5003/tool", parent_exe="/usr/bin/s5003"))] == ["p5003"]
    assert [d.policy_name for d in m.match(sock(AF_INET, STREAM, 0, exe="/usr/bin/n5004"))] == ["p5004"]
    assert m.match(opened("/data/nothing")) == []
    # one candidate per hit and none for the miss (the 2000 globs sit in 2000 buckets)
    assert m.rules_checked == 5
    # per-source tables: 2000 process scopes, 2000 network scopes, one everyone scope for files
    assert m.index_sizes() == {"File": 1, "Process": 2000, "Network": 2000, "SyscallPaths": 0}

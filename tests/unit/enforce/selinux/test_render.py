"""What plan() decides, rule by rule: which rules become constraints, which types and labels
that takes, how AVC records map back, and why every other rule stays with the monitor."""

from __future__ import annotations

import re

import pytest

from karmor_host.enforce.selinux.facts import MISSING, Inode, Inventory, Tree
from karmor_host.enforce.selinux.render import (
    ALL_TYPES,
    CHILD_ENTRY,
    MONITOR,
    SELINUX,
    _cond_expr,
    _regex,
    plan,
    wanted,
    why_not,
)
from karmor_host.policy.ruleset import Category, Operation, Posture
from tests.unit.enforce.selinux.helpers import FIXTURES, facts, fixture_ruleset, inventory, inventory_for, ruleset_of


def _plan(name):
    rs = fixture_ruleset(name)
    return rs, plan(rs, facts(), inventory_for(rs))


def _status(p, rs, target, op=None):
    (rule,) = [r for r in rs.rules if r.target == target and (op is None or r.operation is op)]
    (line,) = [s for s in p.rules if s.rule_id == rule.id]
    return rule, line


def test_every_rule_gets_exactly_one_status_line_in_rule_set_order():
    for name in FIXTURES:
        rs, p = _plan(name)
        assert [s.rule_id for s in p.rules] == [r.id for r in rs.rules], name


def test_global_block_rules_are_constraints_over_every_domain():
    rs, p = _plan("blocks")
    shadow, line = _status(p, rs, "/etc/shadow")
    assert (line.mode, line.by) == ("enforced", SELINUX)
    lab = next(lab for lab in p.labels if lab.path == "/etc/shadow")
    assert lab.original == "system_u:object_r:etc_t:s0"
    assert re.fullmatch(r"system_u:object_r:karmor_[0-9a-f]{10}_t:s0", lab.context)
    # no t1 in the expression: it holds for unconfined domains too
    assert re.search(r"\(constrain \(file \(append create open read write\)\) \(not \(eq t2 karmor_k_\w+\)\)\)", p.cil)
    d = p.index.lookup("unconfined_t", lab.type, "file", "read")
    assert d is not None and d.rule_id == shadow.id and d.operation is Operation.FILE
    assert p.index.lookup("kernel_t", lab.type, "file", "getattr") is None  # stat is not an open


def test_read_only_blocks_only_writes():
    rs, p = _plan("blocks")
    hosts, _ = _status(p, rs, "/etc/hosts")
    lab = next(lab for lab in p.labels if lab.path == "/etc/hosts")
    assert p.index.lookup("unconfined_t", lab.type, "file", "read") is None
    assert p.index.lookup("unconfined_t", lab.type, "file", "append").rule_id == hosts.id


def test_directory_rules_label_the_directory_and_what_it_covers():
    rs, p = _plan("blocks")
    by_path = {lab.path: lab for lab in p.labels}
    # recursive: the directory (new files inherit its type), files at any depth, subdirectories
    assert {"/etc/ssh", "/etc/ssh/a.conf", "/etc/ssh/sub", "/etc/ssh/sub/b.conf"} <= set(by_path)
    # not recursive: the directory and its direct files, never a subdirectory or what is in it
    assert {"/etc/cron.d", "/etc/cron.d/a.conf"} <= set(by_path)
    assert "/etc/cron.d/sub" not in by_path
    assert by_path["/etc/ssh"].kind == "dir" and "(filecon \"/etc/ssh\" dir " in p.cil


def test_one_type_per_original_type_and_covering_rules():
    rs = ruleset_of("""\
  action: Block
  file:
    matchPaths:
    - path: /etc/ssh/a.conf
    - path: /etc/ssh/b
    matchDirectories:
    - dir: /etc/ssh/
      recursive: true
""")
    p = plan(rs, facts(), inventory_for(rs))
    types = {lab.path: lab.type for lab in p.labels}
    assert types["/etc/ssh/a.conf"] != types["/etc/ssh/b"]  # each is named by a rule of its own
    assert types["/etc/ssh/sub/b.conf"] == types["/etc/ssh/sub"] == types["/etc/ssh"]  # etc_t, one rule
    other = ruleset_of("""\
  action: Block
  file:
    matchDirectories:
    - dir: /srv/www/
""")
    inv = inventory_for(other)
    inv.inodes["/srv/www/a.conf"] = Inode("/srv/www/a.conf", "file", "system_u:object_r:etc_t:s0", True, ino=9)
    p = plan(other, facts(), inv)
    types = {lab.path: lab.type for lab in p.labels}
    assert types["/srv/www"] != types["/srv/www/a.conf"]  # var_t and etc_t: two clones


def test_hard_links_share_one_label():
    rs = ruleset_of("""\
  action: Block
  file:
    matchPaths:
    - path: /etc/a
    - path: /etc/b
""")
    inv = inventory(wanted(rs), inodes={"/etc/a": 7, "/etc/b": 7})
    p = plan(rs, facts(), inv)
    assert len({lab.type for lab in p.labels}) == 1


@pytest.mark.parametrize("target, reason", [
    ("/home/alice/notes", "ownerOnly"),
    ("/missing/secret", "does not exist"),
    ("/srv/9p/data", "keeps no SELinux labels"),
    ("/var/secret/*", "not paths"),
    ("nmap", "not names"),
])
def test_what_selinux_cannot_express_stays_with_the_monitor(target, reason):
    rs, p = _plan("blocks")
    _, line = _status(p, rs, target)
    assert (line.mode, line.by) == ("audit-only", MONITOR)
    assert reason in line.reason and line.reason.endswith("reported as Audit (Block)")
    assert f"{target}:" in p.cil  # the module's head lists it with the reason


def test_from_source_programs_get_a_domain_entered_from_unconfined_domains():
    rs, p = _plan("from-source")
    cat = next(lab for lab in p.labels if lab.path == "/usr/bin/cat")
    dom = next(d for d, src in p.index.sources.items() if src == "/usr/bin/cat" and d not in p.index.children)
    assert f"(typetransition unconfined_domain_type {cat.type} process {dom})" in p.cil
    # it is a copy of the unconfined domain: its attributes, roles and rules
    assert f"(typeattributeset unconfined_domain_type ({dom}))" in p.cil
    assert f"(roletype unconfined_r {dom})" in p.cil
    assert f"(allow {dom} {dom} (capability (chown net_raw sys_admin)))" in p.cil
    # its children go to the child domain, not into the rules of their parent
    child = dom.replace("karmor_s_", "karmor_c_")
    assert f"(typetransition {dom} {CHILD_ENTRY} process {child})" in p.cil
    assert f"(typeattributeset {CHILD_ENTRY} (and (not (domain)) (not ({ALL_TYPES}" in p.cil


def test_from_source_file_rule_names_each_source_domain():
    rs, p = _plan("from-source")
    shadow, line = _status(p, rs, "/etc/shadow")
    assert line.mode == "enforced"
    lab = next(lab for lab in p.labels if lab.path == "/etc/shadow")
    doms = {src: d for d, src in p.index.sources.items() if d not in p.index.children}
    assert p.index.lookup(doms["/usr/bin/cat"], lab.type, "file", "open").rule_id == shadow.id
    assert p.index.lookup(doms["/usr/bin/less"], lab.type, "file", "read").rule_id == shadow.id
    assert p.index.lookup("unconfined_t", lab.type, "file", "read") is None


def test_process_rules_deny_execute_by_the_parent_and_the_transition_into_a_source():
    rs, p = _plan("from-source")
    cat_rule, _ = _status(p, rs, "/usr/bin/cat", Operation.PROCESS)
    doms = {src: d for d, src in p.index.sources.items() if d not in p.index.children}
    cat = next(lab for lab in p.labels if lab.path == "/usr/bin/cat")
    assert p.index.lookup(doms["/usr/bin/bash"], cat.type, "file", "execute").rule_id == cat_rule.id
    d = p.index.lookup(doms["/usr/bin/bash"], doms["/usr/bin/cat"], "process", "transition")
    assert d is not None and d.rule_id == cat_rule.id


def test_network_and_capability_rules():
    rs, p = _plan("from-source")
    ping = next(d for d, src in p.index.sources.items() if src == "/usr/bin/ping" and d not in p.index.children)
    icmp, line = _status(p, rs, "icmp")
    assert "other raw IP sockets" in line.reason
    assert p.index.lookup(ping, ping, "icmp_socket", "create").rule_id == icmp.id
    assert p.index.lookup(ping, ping, "rawip_socket", "create").rule_id == icmp.id
    tcp, _ = _status(p, rs, "tcp")
    assert p.index.lookup(ping, ping, "tcp_socket", "create").rule_id == tcp.id
    net_raw, _ = _status(p, rs, "net_raw")
    assert p.index.lookup(ping, ping, "capability", "net_raw").rule_id == net_raw.id
    assert p.index.lookup(ping, ping, "cap_userns", "net_raw").rule_id == net_raw.id
    bpf, _ = _status(p, rs, "bpf")
    assert p.index.lookup(ping, ping, "capability2", "bpf").rule_id == bpf.id
    _, seq = _status(p, rs, "seqpacket")
    assert seq.mode == "audit-only" and "seqpacket" in seq.reason


def test_a_source_with_a_domain_of_its_own_is_not_relabelled():
    rs, p = _plan("from-source")
    _, line = _status(p, rs, "/etc/hosts")
    assert line.mode == "audit-only" and "sshd_t" in line.reason
    assert "/usr/sbin/sshd" not in {lab.path for lab in p.labels}


def test_source_whitelists_deny_everything_but_the_allowed():
    rs, p = _plan("whitelist")
    assert p.whitelists == frozenset(Category)
    nginx = next(d for d, src in p.index.sources.items() if src == "/usr/sbin/nginx" and d not in p.index.children)
    conf = next(lab for lab in p.labels if lab.path == "/etc/nginx/nginx.conf")
    # posture denials are attributed to the category's default posture (rule id 0)
    d = p.index.lookup(nginx, "lib_t", "file", "open")
    assert d is not None and d.rule_id == 0 and d.category is Category.FILE
    assert p.index.lookup(nginx, nginx, "udp_socket", "create").rule_id == 0
    assert p.index.lookup(nginx, nginx, "tcp_socket", "create") is None
    assert p.index.lookup(nginx, nginx, "capability", "net_raw").rule_id == 0
    assert p.index.lookup(nginx, nginx, "capability", "net_bind_service") is None
    # the allowed types appear in the constraints; readOnly allows reads only
    key = re.search(r"\(typeattributeset (karmor_k_\w+) \(%s\)\)" % conf.type, p.cil).group(1)
    opens = re.search(r"\(constrain \(file \(open\)\) \(or \(neq t1 %s\) \(eq t2 \(([^)]*)\)" % nginx, p.cil)
    writes = re.search(r"\(constrain \(file \(append create write\)\) \(or \(neq t1 %s\) \(eq t2 \(([^)]*)\)" % nginx, p.cil)
    assert key in opens.group(1).split() and key not in writes.group(1).split()
    # the Block rule next to the whitelist still names its own rule
    shadow, _ = _status(p, rs, "/etc/shadow")
    lab = next(lab for lab in p.labels if lab.path == "/etc/shadow")
    assert p.index.lookup(nginx, lab.type, "file", "read").rule_id == shadow.id


def test_a_host_wide_whitelist_is_not_enforced():
    rs, p = _plan("whitelist-global")
    assert not p.whitelists
    for s in p.rules:
        assert s.mode == "audit-only" and "every process a whitelist subject" in s.reason
    assert not p.labels and not p.reported()


def test_whitelists_with_posture_audit_stay_with_the_monitor():
    rs = ruleset_of("""\
  action: Allow
  file:
    matchPaths:
    - path: /etc/motd
      fromSource:
      - path: /usr/bin/cat
""", {Category.FILE: Posture.AUDIT})
    p = plan(rs, facts(), inventory_for(rs))
    assert p.rules[0].mode == "monitor" and not p.reported()


def test_audit_rules_are_the_monitors_and_need_no_module():
    rs, p = _plan("audits")
    assert all(s.mode == "monitor" and s.by == MONITOR for s in p.rules)
    assert not p.reported() and not p.labels
    assert "(constrain" not in p.cil and "(type " not in p.cil


def test_a_too_large_tree_is_not_relabelled():
    rs = ruleset_of("""\
  action: Block
  file:
    matchDirectories:
    - dir: /usr/share/
      recursive: true
""")
    want = wanted(rs)
    inv = Inventory({"/usr/share": Inode("/usr/share", "dir", "system_u:object_r:usr_t:s0", True)},
                    {("/usr/share/", True): Tree("/usr/share/", True, ("/usr/share/x",), truncated=True)})
    assert want.trees == {("/usr/share/", True)}
    p = plan(rs, facts(), inv)
    assert p.rules[0].mode == "audit-only" and "too many to relabel" in p.rules[0].reason


def test_no_reference_domain_means_no_from_source_rules():
    rs = fixture_ruleset("from-source")
    f = facts()
    f = type(f)(**{**f.__dict__, "reference": ""})
    p = plan(rs, f, inventory_for(rs))
    _, line = _status(p, rs, "/etc/shadow")
    assert line.mode == "audit-only" and "no unconfined domain" in line.reason


def test_copied_rules_leave_out_dontaudit_and_entry_into_the_copy():
    rs, p = _plan("from-source")
    assert "(dontaudit" not in p.cil  # a copied dontaudit would hide karmor's denials
    assert "(allow sysadm_t karmor_s_" in p.cil  # what others may do to it is copied ...
    assert not re.search(r"\(allow sysadm_t karmor_s_\w+ \(process \([^)]*transition", p.cil)  # ... but not entering it
    # copies of rules naming other modules' types are optional: removing that module stays possible
    assert re.search(r"\(optional karmor_o\d+  ; sshd_t\n    \(allow sshd_t karmor_", p.cil)


def test_wanted_names_only_what_selinux_might_enforce():
    rs = fixture_ruleset("blocks")
    w = wanted(rs)
    assert "/etc/shadow" in w.paths and "/usr/bin/nc" in w.paths
    assert ("/etc/ssh/", True) in w.trees and ("/etc/cron.d/", False) in w.trees
    assert "/home/alice/notes" not in w.paths  # ownerOnly: never labelled
    assert not wanted(fixture_ruleset("audits")).paths


def test_why_not_is_empty_for_what_selinux_can_express():
    rs = fixture_ruleset("from-source")
    assert [why_not(r) == "" for r in rs.rules].count(True) == len(rs.rules) - 1  # seqpacket


def test_helpers():
    assert _regex("/etc/nginx/nginx.conf") == "/etc/nginx/nginx\\.conf"
    assert _regex("/a+b/(x)") == "/a\\+b/\\(x\\)"
    assert _cond_expr(("a",)) == "a"
    assert _cond_expr(("a", "b", "!", "&&")) == "(and a (not b))"
    assert _cond_expr(("a", "b", "||", "c", "^")) == "(xor (or a b) c)"


def test_missing_source_is_reported():
    rs = ruleset_of("""\
  action: Block
  file:
    matchPaths:
    - path: /etc/shadow
      fromSource:
      - path: /missing/cat
""")
    inv = inventory_for(rs)
    assert inv.get("/missing/cat").kind == MISSING
    p = plan(rs, facts(), inv)
    assert p.rules[0].mode == "audit-only" and "fromSource /missing/cat does not exist" in p.rules[0].reason


def test_capability_audits_of_source_programs_are_auditallow_rules():
    rs = ruleset_of("""\
  capabilities:
    matchCapabilities:
    - capability: chown
      fromSource:
      - path: /usr/bin/ping
      action: Audit
    - capability: net_raw
      fromSource:
      - path: /usr/bin/cat
      action: Allow
""", {Category.CAPABILITIES: Posture.AUDIT})
    p = plan(rs, facts(), inventory_for(rs))
    chown = next(r for r in rs.rules if r.target == "chown")
    modes = {r.target: next(s for s in p.rules if s.rule_id == r.id) for r in rs.rules}
    assert modes["chown"].mode == "enforced" and "auditallow" in modes["chown"].reason
    assert modes["net_raw"].mode == "enforced" and "audit posture" in modes["net_raw"].reason
    doms = {src: d for d, src in p.index.sources.items() if d not in p.index.children}
    ping, cat = doms["/usr/bin/ping"], doms["/usr/bin/cat"]
    assert f"(auditallow {ping} self (capability (chown)))" in p.cil
    assert p.index.lookup(ping, ping, "capability", "chown", granted=True).rule_id == chown.id
    assert p.index.lookup(ping, ping, "capability", "chown") is None  # nothing is denied
    # the audit posture: every other capability of cat is audited, as DefaultPosture
    assert p.index.lookup(cat, cat, "capability", "sys_admin", granted=True).rule_id == 0
    assert p.index.lookup(cat, cat, "capability", "net_raw", granted=True) is None
    assert p.audited == {Category.CAPABILITIES} and not p.whitelists
    assert "(constrain" not in p.cil


def test_other_audit_rules_stay_with_the_monitor():
    rs = ruleset_of("""\
  action: Audit
  network:
    matchProtocols:
    - protocol: udp
      fromSource:
      - path: /usr/bin/ping
  file:
    matchPaths:
    - path: /etc/shadow
""")
    p = plan(rs, facts(), inventory_for(rs))
    assert all(s.mode == "monitor" for s in p.rules) and not p.labels

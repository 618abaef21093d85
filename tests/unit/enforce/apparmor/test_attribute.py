"""Records -> rules: the profile fixes the scope, the object and mask pick the rules."""

from __future__ import annotations

from karmor_host.alerts.match import AUDIT, BLOCK
from karmor_host.alerts.record import DEFAULT_POSTURE
from karmor_host.enforce.apparmor.attribute import ALERT, BASE, IGNORED, UNATTRIBUTED, Attributor, open_flags
from karmor_host.enforce.apparmor.records import parse
from karmor_host.enforce.apparmor.render import render
from karmor_host.kernel.events import EventKind
from karmor_host.kernel.proctable import Proc
from karmor_host.policy.ruleset import Category, Posture
from tests.unit.enforce.apparmor.helpers import fixture_ruleset, policy, ruleset_of


def _attributor(rs):
    return Attributor(rs, render(rs))


def _rec(kind, op, profile, rest):
    return parse(f'audit(1795333125.976:5): apparmor="{kind}" operation="{op}" profile="{profile}" {rest}')


def _file(kind, profile, name, req, fsuid=0, ouid=0, op="open"):
    denied = f' denied_mask="{req}"' if kind == "DENIED" else ""
    return _rec(kind, op, profile, f'name="{name}" pid=266 comm="cat" requested_mask="{req}"{denied} '
                                   f'fsuid={fsuid} ouid={ouid}')


def _policies(att):
    return [(d.policy_name, d.action) for d in att.decisions]


def test_a_denied_open_is_the_block_rule_of_the_profile():
    rs = fixture_ruleset("blocks")
    a = _attributor(rs)
    att = a.attribute(_file("DENIED", "karmor-global", "/etc/shadow", "r"), Proc("/usr/bin/cat", "/root", "pts0", 1))
    assert att.status == ALERT and _policies(att) == [("block-files", BLOCK)]
    (d,) = att.decisions
    assert d.rule.target == "/etc/shadow" and d.enforced
    ev = att.event
    assert (ev.kind, ev.path, ev.exe, ev.ppid, ev.cwd, ev.retval) == (EventKind.OPEN, "/etc/shadow", "/usr/bin/cat", 1, "/root", -13)


def test_read_only_and_owner_only_follow_the_mask_and_the_owner():
    rs = fixture_ruleset("blocks")
    a = _attributor(rs)
    write = a.attribute(_file("DENIED", "karmor-global", "/etc/hosts", "wc"))
    assert write.status == ALERT and write.decisions[0].rule.target == "/etc/hosts"
    # A read of a readOnly target denied by AppArmor would be no rule of ours.
    read = a.attribute(_file("DENIED", "karmor-global", "/etc/hosts", "r"))
    assert read.status == UNATTRIBUTED
    other = a.attribute(_file("DENIED", "karmor-global", "/home/alice/notes", "r", fsuid=0, ouid=1000))
    assert other.status == ALERT and other.decisions[0].rule.target == "/home/alice/notes"
    owner_write = a.attribute(_file("DENIED", "karmor-global", "/home/alice/plan", "w", fsuid=1000, ouid=1000))
    assert owner_write.status == ALERT


def test_directories_patterns_and_the_directory_itself():
    a = _attributor(fixture_ruleset("blocks"))
    assert a.attribute(_file("DENIED", "karmor-global", "/etc/ssh/sshd_config", "w")).status == ALERT
    assert a.attribute(_file("DENIED", "karmor-global", "/home/bob/.ssh/id_ed25519", "r")).status == ALERT
    assert a.attribute(_file("DENIED", "karmor-global", "/var/secret/sub/", "r")).status == ALERT


def test_the_profile_not_the_process_fixes_the_fromsource_scope():
    rs = fixture_ruleset("from-source")
    a = _attributor(rs)
    # The same exec denied in nginx's profile is nginx's rule...
    rec = _rec("DENIED", "exec", "karmor-src-usr.sbin.nginx",
               'name="/usr/bin/bash" pid=40 comm="nginx" requested_mask="x" denied_mask="x" fsuid=33 ouid=0')
    att = a.attribute(rec, Proc("/usr/sbin/nginx", "/", "", 1), parent_exe="/usr/lib/systemd/systemd")
    assert att.status == ALERT and _policies(att) == [("web-server", BLOCK)]
    ev = att.event  # shaped as a monitor exec event: the new program, started by nginx
    assert (ev.kind, ev.exe, ev.path, ev.parent_exe, ev.uid) == (EventKind.EXEC, "/usr/bin/bash", "/usr/bin/bash", "/usr/sbin/nginx", 33)
    # ...and in karmor-global no rule denies it, whatever the process runs.
    rec = _rec("DENIED", "exec", "karmor-global",
               'name="/usr/bin/bash" pid=41 comm="x" requested_mask="x" denied_mask="x" fsuid=0 ouid=0')
    assert a.attribute(rec, Proc("/usr/sbin/nginx", "/", "", 1)).status == UNATTRIBUTED


def test_one_decision_per_policy_and_the_global_rule_in_a_source_profile():
    rs = fixture_ruleset("from-source")
    a = _attributor(rs)
    att = a.attribute(_file("DENIED", "karmor-src-usr.sbin.nginx", "/etc/shadow", "r"))
    assert _policies(att) == [("no-shadow", BLOCK)]


def test_network_and_capability_denials():
    a = _attributor(fixture_ruleset("from-source"))
    raw = _rec("DENIED", "create", "karmor-src-usr.sbin.nginx",
               'pid=5 comm="nginx" family="inet" sock_type="raw" protocol=1 requested_mask="create" denied_mask="create"')
    att = a.attribute(raw)
    assert att.status == ALERT and att.decisions[0].rule.target == "raw"
    assert (att.event.kind, att.event.family, att.event.sock_type, att.event.protocol) == (EventKind.SOCKET, 2, 3, 1)
    cap = _rec("DENIED", "capable", "karmor-src-usr.sbin.nginx", 'pid=5 comm="nginx" capability=13  capname="net_raw"')
    att = a.attribute(cap)
    assert att.status == ALERT and att.decisions[0].rule.target == "net_raw"
    assert att.event.capability == 13 and att.event.retval == -1  # EPERM


def test_whitelist_misses_are_default_posture_blocks():
    rs = fixture_ruleset("whitelist-block")
    a = _attributor(rs)
    att = a.attribute(_file("DENIED", "karmor-src-usr.sbin.daemon", "/etc/hostname", "r"))
    assert att.status == ALERT and _policies(att) == [(DEFAULT_POSTURE, BLOCK)]
    sock = _rec("DENIED", "create", "karmor-src-usr.sbin.daemon",
                'pid=5 comm="d" family="inet" sock_type="dgram" protocol=17 requested_mask="create" denied_mask="create"')
    assert _policies(a.attribute(sock)) == [(DEFAULT_POSTURE, BLOCK)]
    # An explicit Block rule wins over the posture.
    att = a.attribute(_file("DENIED", "karmor-src-usr.sbin.daemon", "/etc/shadow", "r"))
    assert _policies(att) == [("host-rules", BLOCK)]


def test_audit_records_of_audit_rules_and_their_repeats():
    rs = fixture_ruleset("audits")
    a = _attributor(rs)
    att = a.attribute(_file("AUDIT", "karmor-global", "/etc/passwd", "wc"))
    assert att.status == ALERT and _policies(att) == [("watch", AUDIT)] and att.event.retval == 0
    # AppArmor audits the getattr that follows an open as well: the open was the alert.
    assert a.attribute(_file("AUDIT", "karmor-global", "/etc/passwd", "r", op="getattr")).status == IGNORED
    ex = _rec("AUDIT", "exec", "karmor-global", 'name="/usr/bin/sudo" pid=9 comm="bash" requested_mask="x" fsuid=0 ouid=0')
    assert _policies(a.attribute(ex)) == [("watch", AUDIT)]


def test_other_profiles_base_lines_and_unused_kinds():
    a = _attributor(fixture_ruleset("blocks"))
    assert a.attribute(_file("DENIED", "/usr/sbin/cupsd", "/etc/shadow", "r")).status == IGNORED
    cp = _rec("DENIED", "change_profile", "karmor-global", 'name="unconfined" pid=1 comm="sh" target="unconfined"')
    assert a.attribute(cp).status == BASE
    assert a.attribute(_file("ALLOWED", "karmor-global", "/etc/shadow", "r")).status == IGNORED
    assert a.attribute(_file("DENIED", "karmor-src-gone", "/etc/shadow", "r")).status == UNATTRIBUTED


def test_rules_apparmor_does_not_carry_are_never_attributed():
    rs = ruleset_of(policy("icmp", """\
  network:
    matchProtocols:
    - protocol: icmp
      action: Block
      fromSource:
      - path: /usr/bin/ping
    - protocol: raw
      action: Block
      fromSource:
      - path: /usr/bin/ping
"""), {Category.NETWORK: Posture.AUDIT})
    a = _attributor(rs)
    rec = _rec("DENIED", "create", "karmor-src-usr.bin.ping",
               'pid=5 comm="ping" family="inet" sock_type="raw" protocol=1 requested_mask="create" denied_mask="create"')
    assert [d.rule.target for d in a.attribute(rec).decisions] == ["raw"]


def test_open_flags_from_masks():
    assert open_flags("r") == 0 and open_flags("w") == 0o1 and open_flags("rw") == 0o2
    assert open_flags("wc") == 0o101 and open_flags("a") == 0o2001 and open_flags("d") == 0o1


def test_capability_misses_of_an_audit_posture_whitelist_are_default_posture_audits():
    rs = fixture_ruleset("whitelist-audit")
    a = _attributor(rs)
    rec = _rec("AUDIT", "capable", "karmor-src-usr.sbin.daemon", 'pid=5 comm="d" capability=0  capname="chown"')
    att = a.attribute(rec)
    assert att.status == ALERT and _policies(att) == [(DEFAULT_POSTURE, AUDIT)] and att.event.retval == 0
    # File misses of the same whitelist are the monitor's (an AUDIT record there is not ours).
    assert a.attribute(_file("AUDIT", "karmor-src-usr.sbin.daemon", "/etc/hostname", "r")).status == UNATTRIBUTED

"""AVC records in every shape they arrive in, and their attribution to the exact rule."""

from __future__ import annotations

import errno
import socket

import pytest

from karmor_host.alerts.match import AUDIT_BLOCK, BLOCK
from karmor_host.alerts.record import DEFAULT_POSTURE
from karmor_host.enforce.selinux import avc
from karmor_host.enforce.selinux.render import plan
from karmor_host.kernel.events import EventKind
from karmor_host.policy.ruleset import Operation
from tests.unit.enforce.selinux.helpers import facts, fixture_ruleset, inventory_for

BODY = ('avc:  denied  { read } for  pid=272 comm="kcat" name="secret" dev="tmpfs" ino=7 '
        'scontext=system_u:system_r:karmor_s_2dc3776e0e_t:s0 tcontext=system_u:object_r:karmor_71d624265f_t:s0 '
        'tclass=file permissive=0')


@pytest.mark.parametrize("line", [
    f"audit(1717259989.360:42): {BODY}",  # netlink multicast payload
    f"6,812,3141,-;audit: type=1400 audit(1717259989.360:42): {BODY}",  # /dev/kmsg
    f"[   36.123456] audit: type=1400 audit(1717259989.360:42): {BODY}",  # dmesg
    f"type=AVC msg=audit(1717259989.360:42): {BODY}",  # auditd
    f"node=web-1 type=AVC msg=audit(1717259989.360:42): {BODY}\x1dARCH=x86_64 SYSCALL=openat",  # enriched
])
def test_every_shape_parses_the_same(line):
    rec = avc.parse(line)
    assert rec is not None
    assert rec.denied and rec.perms == ("read",) and rec.pid == 272 and rec.comm == "kcat"
    assert rec.name == "secret" and rec.dev == "tmpfs" and rec.ino == 7
    assert rec.stype == "karmor_s_2dc3776e0e_t" and rec.ttype == "karmor_71d624265f_t"
    assert rec.tclass == "file" and not rec.permissive
    assert rec.ts_ns == 1717259989_360_000_000 and rec.serial == 42


def test_fields_audit_prints_in_hex_and_several_permissions():
    rec = avc.parse('audit(1.5:7): avc:  denied  { read write } for  pid=9 comm=6D7920636174 '
                    'path=2F746D702F6120622F63 dev="vda1" ino=12 scontext=u:r:a_t:s0 tcontext=u:object_r:b_t:s0 '
                    'tclass=file permissive=1')
    assert rec.comm == "my cat" and rec.path == "/tmp/a b/c" and rec.perms == ("read", "write")
    assert rec.permissive and rec.ts_ns == 1_500_000_000


def test_capability_and_socket_records():
    rec = avc.parse("audit(2.0:1): avc:  denied  { net_raw } for  pid=5 comm=\"ping\" capability=13  "
                    "scontext=u:r:x_t:s0 tcontext=u:r:x_t:s0 tclass=capability permissive=0")
    assert rec.capability == 13 and rec.tclass == "capability"


@pytest.mark.parametrize("line", [
    "audit(1.0:1): apparmor=\"DENIED\" operation=\"open\" profile=\"x\" name=\"/etc/shadow\"",
    "type=SYSCALL msg=audit(1.0:1): arch=c000003e syscall=257 success=no exit=-13",
    "audit(1.0:1): avc:  denied  { read } for pid=1",  # no contexts
    "random text",
])
def test_other_records_are_not_avc(line):
    assert avc.parse(line) is None


def _plan(name):
    rs = fixture_ruleset(name)
    return rs, plan(rs, facts(), inventory_for(rs))


def _line(perm, stype, ttype, tclass, extra="", permissive=0):
    return (f"audit(1717259989.360:42): avc:  denied  {{ {perm} }} for  pid=4242 comm=\"x\" {extra} "
            f"scontext=system_u:system_r:{stype}:s0 tcontext=system_u:object_r:{ttype}:s0 "
            f"tclass={tclass} permissive={permissive}")


def _dom(p, src):
    return next(d for d, s in p.index.sources.items() if s == src and d not in p.index.children)


def test_a_file_denial_names_its_rule_the_file_and_the_source():
    rs, p = _plan("from-source")
    shadow = next(r for r in rs.rules if r.target == "/etc/shadow" and r.policy == "from-source")
    lab = next(lab for lab in p.labels if lab.path == "/etc/shadow")
    rec = avc.parse(_line("read", _dom(p, "/usr/bin/cat"), lab.type, "file", f'name="shadow" ino={lab.ino}'))
    att = avc.attribute(rec, p.index)
    assert att.status == avc.OURS and att.denial.rule_id == shadow.id
    assert att.source == "/usr/bin/cat" and att.target == "/etc/shadow" and att.perm == "read"
    ev = avc.event_of(rec, att, avc.Proc(ppid=1, uid=0, cwd="/root"))
    assert ev.kind is EventKind.OPEN and ev.exe == "/usr/bin/cat" and ev.path == "/etc/shadow"
    assert ev.retval == -errno.EACCES and ev.flags == 0 and ev.pid == 4242
    dec = avc.decision(rec, att, rs.by_id())
    assert dec.rule is shadow and dec.action == BLOCK and dec.policy_name == "from-source" and dec.enforced
    assert "permission=read tclass=file" in avc.data_text(rec, att)


def test_a_write_denial_carries_write_flags():
    rs, p = _plan("blocks")
    lab = next(lab for lab in p.labels if lab.path == "/etc/hosts")
    rec = avc.parse(_line("append", "unconfined_t", lab.type, "file", 'path="/etc/hosts"'))
    att = avc.attribute(rec, p.index)
    assert att.status == avc.OURS and att.source == "" and att.target == "/etc/hosts"
    ev = avc.event_of(rec, att, avc.Proc(exe="/usr/bin/bash"))
    assert ev.exe == "/usr/bin/bash" and ev.flags & avc.O_APPEND and ev.flags & avc.O_WRONLY


def test_an_exec_denial_is_a_process_event_of_the_parent():
    rs, p = _plan("from-source")
    curl_rule = next(r for r in rs.rules if r.target == "/usr/bin/curl")
    lab = next(lab for lab in p.labels if lab.path == "/usr/bin/curl")
    rec = avc.parse(_line("execute", _dom(p, "/usr/bin/bash"), lab.type, "file", f'name="curl" ino={lab.ino}'))
    att = avc.attribute(rec, p.index)
    assert att.denial.rule_id == curl_rule.id and att.denial.operation is Operation.PROCESS
    ev = avc.event_of(rec, att, avc.Proc())
    assert ev.kind is EventKind.EXEC and ev.path == "/usr/bin/curl" and ev.parent_exe == "/usr/bin/bash"


def test_a_transition_denial_into_another_source_names_that_program():
    rs, p = _plan("from-source")
    rec = avc.parse(_line("transition", _dom(p, "/usr/bin/bash"), _dom(p, "/usr/bin/cat"), "process"))
    att = avc.attribute(rec, p.index)
    assert att.status == avc.OURS and att.target == "/usr/bin/cat"


def test_socket_and_capability_denials():
    rs, p = _plan("from-source")
    ping = _dom(p, "/usr/bin/ping")
    rec = avc.parse(_line("create", ping, ping, "rawip_socket"))
    att = avc.attribute(rec, p.index)
    ev = avc.event_of(rec, att, avc.Proc())
    assert ev.kind is EventKind.SOCKET and ev.exe == "/usr/bin/ping" and ev.sock_type == socket.SOCK_RAW
    assert avc.decision(rec, att, rs.by_id()).rule.target == "icmp"
    rec = avc.parse(_line("net_raw", ping, ping, "capability", "capability=13"))
    att = avc.attribute(rec, p.index)
    ev = avc.event_of(rec, att, avc.Proc())
    assert ev.kind is EventKind.CAPABLE and ev.capability == 13 and ev.retval == -errno.EPERM


def test_a_whitelist_miss_is_the_default_posture():
    rs, p = _plan("whitelist")
    nginx = _dom(p, "/usr/sbin/nginx")
    rec = avc.parse(_line("open", nginx, "lib_t", "file", 'path="/usr/lib/x86_64-linux-gnu/libc.so.6"'))
    att = avc.attribute(rec, p.index)
    dec = avc.decision(rec, att, rs.by_id())
    assert dec.rule is None and dec.policy_name == DEFAULT_POSTURE and dec.action == BLOCK


def test_permissive_denials_are_audit_block_and_succeed():
    rs, p = _plan("blocks")
    lab = next(lab for lab in p.labels if lab.path == "/etc/shadow")
    rec = avc.parse(_line("read", "unconfined_t", lab.type, "file", permissive=1))
    att = avc.attribute(rec, p.index)
    dec = avc.decision(rec, att, rs.by_id())
    assert dec.action == AUDIT_BLOCK and not dec.enforced
    assert avc.event_of(rec, att, avc.Proc()).retval == 0


def test_what_karmor_did_not_deny_is_not_attributed():
    rs, p = _plan("blocks")
    lab = next(lab for lab in p.labels if lab.path == "/etc/shadow")
    # another module's denial on other types: not ours
    assert avc.attribute(avc.parse(_line("read", "httpd_t", "shadow_t", "file")), p.index).status == avc.IGNORED
    # a karmor type, but a permission no constraint covers (a missing allow elsewhere)
    att = avc.attribute(avc.parse(_line("getattr", "httpd_t", lab.type, "file")), p.index)
    assert att.status == avc.UNATTRIBUTED
    granted = avc.parse(_line("read", "unconfined_t", lab.type, "file").replace("denied", "granted"))
    assert avc.attribute(granted, p.index).status == avc.IGNORED


def test_a_granted_record_of_an_auditallow_rule_is_an_audit_alert():
    from karmor_host.alerts.match import AUDIT
    from tests.unit.enforce.selinux.helpers import ruleset_of

    rs = ruleset_of("""\
  capabilities:
    matchCapabilities:
    - capability: chown
      fromSource:
      - path: /usr/bin/ping
  action: Audit
""")
    p = plan(rs, facts(), inventory_for(rs))
    ping = _dom(p, "/usr/bin/ping")
    rec = avc.parse(_line("chown", ping, ping, "capability", "capability=0").replace("denied", "granted"))
    att = avc.attribute(rec, p.index)
    assert att.status == avc.OURS and att.source == "/usr/bin/ping"
    dec = avc.decision(rec, att, rs.by_id())
    assert dec.action == AUDIT and dec.rule is rs.rules[0] and not dec.enforced
    ev = avc.event_of(rec, att, avc.Proc())
    assert ev.kind is EventKind.CAPABLE and ev.retval == 0 and ev.capability == 0
    assert avc.data_text(rec, att).startswith("selinux=granted permission=chown")

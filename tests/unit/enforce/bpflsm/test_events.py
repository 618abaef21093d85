"""Kernel decisions -> alerts: fields, actions, one alert per policy, DefaultPosture."""

from __future__ import annotations

import pytest

from karmor_host.alerts.record import HostInfo, alert
from karmor_host.enforce.bpflsm import abi
from karmor_host.enforce.bpflsm.events import alerts, decode, lsm_name
from karmor_host.kernel.events import EventKind
from karmor_host.policy.ruleset import Operation
from tests.unit.enforce.bpflsm.helpers import HEAD, ruleset_of
from tests.unit.enforce.bpflsm.records import record

RS = ruleset_of(
    HEAD.format(name="block-passwd") + "  severity: 5\n  file:\n    matchPaths:\n    - path: /etc/passwd\n"
    "  action: Block\n---\n" + HEAD.format(name="audit-etc") + "  file:\n    matchDirectories:\n"
    "    - dir: /etc/\n      recursive: true\n    - dir: /etc/ssl/\n      recursive: true\n  action: Audit\n"
)
BY = {r.target: r for r in RS.rules}
PASSWD, ETC, SSL = BY["/etc/passwd"].id, BY["/etc/"].id, BY["/etc/ssl/"].id


def lookup(rid, _gen):
    return RS.by_id().get(rid)


def test_open_record_decodes_to_an_open_event():
    raw = record(abi.Hook.FILE_OPEN, abi.Op.FILE, hits=[(PASSWD, abi.Action.BLOCK)], retval=-13,
                 path="/etc/passwd", open_flags=0o100000, file_uid=0)
    rec = decode(raw, 0, len(raw), wall_offset_ns=1_700_000_000_000_000_000)
    ev = rec.event
    assert ev.kind is EventKind.OPEN and ev.path == "/etc/passwd" and ev.retval == -13
    assert (ev.exe, ev.parent_exe, ev.cwd, ev.tty, ev.syscall) == ("/usr/bin/cat", "/usr/bin/bash", "/root", "pts0", "openat")
    assert ev.ts_ns == 1_700_000_005_000_000_000
    assert rec.lsm == "SECURITY_FILE_OPEN" and rec.hits == ((PASSWD, abi.Action.BLOCK),)


def test_exec_record_names_the_new_program_and_the_one_starting_it():
    raw = record(abi.Hook.BPRM_CHECK, abi.Op.PROCESS, path="/usr/bin/ls", exe="/usr/bin/bash", pexe="/usr/sbin/sshd",
                 syscall_nr=59, retval=-13)
    ev = decode(raw, 0, len(raw)).event
    assert ev.kind is EventKind.EXEC
    assert (ev.path, ev.exe, ev.parent_exe, ev.syscall) == ("/usr/bin/ls", "/usr/bin/ls", "/usr/bin/bash", "execve")


def test_socket_and_capability_records():
    raw = record(abi.Hook.SOCKET_CREATE, abi.Op.NETWORK, family=2, type_=2, protocol=0, syscall_nr=41)
    ev = decode(raw, 0, len(raw)).event
    assert (ev.kind, ev.family, ev.sock_type, ev.protocol) == (EventKind.SOCKET, 2, 2, 0)
    raw = record(abi.Hook.CAPABLE, abi.Op.CAPABILITIES, cap=13, syscall_nr=-1)
    ev = decode(raw, 0, len(raw)).event
    assert (ev.kind, ev.capability, ev.syscall) == (EventKind.CAPABLE, 13, "")


def test_unlink_is_a_file_alert_with_its_syscall():
    raw = record(abi.Hook.PATH_UNLINK, abi.Op.FILE, hits=[(PASSWD, abi.Action.BLOCK)], retval=-13,
                 path="/etc/passwd", syscall_nr=263)
    (a,), _ = alerts(decode(raw, 0, len(raw)), lookup)
    assert a.event.syscall == "unlinkat" and a.decision.operation is Operation.FILE
    assert a.data == "syscall=SYS_UNLINKAT lsm=SECURITY_PATH_UNLINK"


def test_one_alert_per_policy_strongest_first_and_the_record_fields():
    raw = record(abi.Hook.FILE_OPEN, abi.Op.FILE, retval=-13, path="/etc/ssl/x",
                 hits=[(ETC, abi.Action.AUDIT), (SSL, abi.Action.AUDIT), (PASSWD, abi.Action.BLOCK), (ETC, abi.Action.AUDIT)])
    out, unknown = alerts(decode(raw, 0, len(raw)), lookup)
    assert unknown == []
    assert [(a.decision.policy_name, a.decision.action) for a in out] == [("block-passwd", "Block"), ("audit-etc", "Audit")]
    rec = alert(out[0].event, out[0].decision.rule, HostInfo("default", "h", ""), out[0].decision.action, "BPFLSM",
                out[0].decision.policy_name, operation="File", lsm=lsm_name(abi.Hook.FILE_OPEN))
    assert (rec["Result"], rec["Enforcer"], rec["Severity"], rec["Resource"]) == ("Permission denied", "BPFLSM", "5", "/etc/ssl/x")
    assert rec["Data"].endswith("lsm=SECURITY_FILE_OPEN") and out[0].data == rec["Data"]


@pytest.mark.parametrize("posture,retval,action", [
    (abi.Action.BLOCK, -13, "Block"), (abi.Action.AUDIT, 0, "Audit"), (abi.Action.BLOCK, 0, "Audit (Allow)")])
def test_default_posture_alert(posture, retval, action):
    raw = record(abi.Hook.FILE_OPEN, abi.Op.FILE, posture=posture, retval=retval, path="/srv/x")
    (a,), _ = alerts(decode(raw, 0, len(raw)), lookup)
    assert (a.decision.policy_name, a.decision.rule, a.decision.action) == ("DefaultPosture", None, action)


def test_block_rule_not_carried_out_for_the_agent_is_audit_block():
    raw = record(abi.Hook.FILE_OPEN, abi.Op.FILE, hits=[(PASSWD, abi.Action.BLOCK)], retval=0, flags=abi.E_PROTECTED,
                 path="/etc/passwd")
    (a,), _ = alerts(decode(raw, 0, len(raw)), lookup)
    assert a.decision.action == "Audit (Block)" and not a.decision.enforced


def test_unknown_rule_ids_are_returned_not_invented():
    raw = record(abi.Hook.FILE_OPEN, abi.Op.FILE, hits=[(12345, abi.Action.BLOCK)], retval=-13, path="/x")
    out, unknown = alerts(decode(raw, 0, len(raw)), lookup)
    assert out == [] and unknown == [12345]


def test_truncated_and_bad_records_raise():
    raw = record(abi.Hook.FILE_OPEN, abi.Op.FILE, path="/etc/passwd")
    with pytest.raises(ValueError):
        decode(raw, 0, 100)
    with pytest.raises(ValueError):
        decode(raw[:-3], 0, len(raw) - 3)
    bad = bytearray(raw)
    bad[12] = 99  # hook
    with pytest.raises(ValueError):
        decode(bytes(bad), 0, len(bad))

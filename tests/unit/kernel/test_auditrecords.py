"""The audit sources' framing: netlink datagrams, kmsg records, auditd's log across rotation,
and which source a host gets, with AppArmor's record filter. Reading real AppArmor and SELinux
records from the kernel is tested in the VM guests (tests/vm/guest/test_apparmor_enforcer.py,
test_selinux_enforcer.py)."""

from __future__ import annotations

import os
import struct

from karmor_host.enforce.apparmor.records import RECORDS
from karmor_host.kernel import auditrecords as audit
from karmor_host.kernel.auditrecords import AuditdLog, kmsg_message, open_source, split_netlink

REC = 'audit(1795333125.976:5): apparmor="DENIED" operation="open" profile="karmor-global" name="/x"'


def _nlmsg(kind: int, text: str) -> bytes:
    payload = text.encode() + b"\x00"
    length = 16 + len(payload)
    msg = struct.pack("=IHHII", length, kind, 0, 0, 0) + payload
    return msg + b"\x00" * (((length + 3) & ~3) - length)


def test_netlink_datagrams_keep_apparmor_records_only():
    data = _nlmsg(1400, REC) + _nlmsg(1300, "audit(1:2): arch=c000003e syscall=257") + _nlmsg(1505, REC + " x")
    assert split_netlink(data, RECORDS) == [REC, REC + " x"]
    assert split_netlink(b"", RECORDS) == [] and split_netlink(b"\x01\x00", RECORDS) == []


def test_kmsg_records_lose_their_prefix_and_dictionary():
    assert kmsg_message("6,812,41630504,-;audit: type=1400 " + REC + "\n SUBSYSTEM=x\n") == "audit: type=1400 " + REC


def test_auditd_log_is_followed_from_its_end_across_rotation(tmp_path):
    log = tmp_path / "audit.log"
    log.write_text("type=AVC msg=old apparmor=\"DENIED\"\n")
    src = AuditdLog(RECORDS, log)
    assert src.read() == []
    with open(log, "a") as f:
        f.write("type=AVC msg=" + REC + "\ntype=SYSCALL msg=audit(1:2): syscall=2\ntype=AVC msg=par")
    assert src.read() == ["type=AVC msg=" + REC]
    with open(log, "a") as f:
        f.write('tial apparmor="AUDIT"\n')
    assert src.read() == ['type=AVC msg=partial apparmor="AUDIT"']
    os.rename(log, tmp_path / "audit.log.1")  # auditd rotates: a new file at the same path
    log.write_text("type=AVC msg=" + REC + " new\n")
    assert src.read() == ["type=AVC msg=" + REC + " new"]
    src.close()


def test_without_multicast_auditd_log_or_kmsg(monkeypatch, tmp_path):
    class Refused(audit.Multicast):
        def __init__(self, records: audit.RecordFilter) -> None:
            raise PermissionError(1, "Operation not permitted")

    log, kmsg = tmp_path / "audit.log", tmp_path / "kmsg"
    log.write_text("")
    kmsg.write_text("")
    monkeypatch.setattr(audit, "auditd_running", lambda: True)
    src, why = open_source(RECORDS, log, kmsg, Refused)
    assert src.name == "auditd" and "auditd runs" in why and "Operation not permitted" in why
    src.close()
    monkeypatch.setattr(audit, "auditd_running", lambda: False)
    src, why = open_source(RECORDS, log, kmsg, Refused)
    assert src.name == "kmsg" and "printk rate limit" in why
    src.close()


def test_auditd_running_checks_the_pid_is_auditd(tmp_path):
    pid_file = tmp_path / "auditd.pid"
    assert not audit.auditd_running(pid_file)
    pid_file.write_text(f"{os.getpid()}\n")  # a live process that is not auditd
    assert not audit.auditd_running(pid_file)

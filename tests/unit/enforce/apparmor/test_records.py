"""AppArmor audit lines as the three sources deliver them, parsed by LibAppArmor.

The record texts were captured from Debian's 6.1 kernel in the VM guest (audit netlink
multicast payloads and /dev/kmsg), with auditd's log format around the same records.
"""

from __future__ import annotations

import pytest

from karmor_host.enforce.apparmor.records import normalise, parse

OPEN = ('audit(1795333125.976:5): apparmor="DENIED" operation="open" profile="karmor-global" '
        'name="/tmp/aaexp/w/shadow" pid=266 comm="cat" requested_mask="r" denied_mask="r" fsuid=0 ouid=0')
SHAPES = {
    "multicast payload": OPEN,
    "kmsg record": "6,812,41630504,-;audit: type=1400 " + OPEN,
    "dmesg line": "[   41.630504] audit: type=1400 " + OPEN,
    "auditd log": "type=AVC msg=" + OPEN,
    "auditd log, remote": "node=web-1 type=AVC msg=" + OPEN,
    "auditd enriched": "type=AVC msg=" + OPEN + '\x1dFSUID="root" OUID="root"',
}


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_every_source_shape_parses_to_the_same_record(shape):
    rec = parse(SHAPES[shape])
    assert rec is not None
    assert (rec.kind, rec.operation, rec.profile, rec.name) == ("DENIED", "open", "karmor-global", "/tmp/aaexp/w/shadow")
    assert (rec.pid, rec.comm, rec.requested, rec.denied, rec.fsuid, rec.ouid) == (266, "cat", "r", "r", 0, 0)
    assert rec.ts_ns == 1_795_333_125_976_000_000 and rec.serial == 5


def test_owner_fields_and_audit_kind():
    rec = parse('audit(1795333129.772:9): apparmor="AUDIT" operation="open" profile="karmor-global" '
                'name="/tmp/aaexp/w/hosts" pid=272 comm="cat" requested_mask="r" fsuid=1000 ouid=1000')
    assert rec.kind == "AUDIT" and rec.denied == "" and (rec.fsuid, rec.ouid) == (1000, 1000)


def test_network_record_has_family_type_and_protocol_numbers():
    rec = parse('audit(1795333134.860:11): apparmor="DENIED" operation="create" profile="karmor-global" '
                'pid=277 comm="python3" family="inet" sock_type="raw" protocol=1 requested_mask="create" '
                'denied_mask="create"')
    assert (rec.family, rec.sock_type, rec.protocol) == ("inet", "raw", "icmp")
    assert (rec.family_number, rec.sock_type_number, rec.protocol_number) == (2, 3, 1)
    assert rec.fsuid == -1 and rec.name == ""


def test_capability_record():
    rec = parse('audit(1795333140.100:20): apparmor="DENIED" operation="capable" profile="karmor-src-usr.sbin.d" '
                'pid=300 comm="d" capability=13  capname="net_raw"')
    assert rec.operation == "capable" and rec.name == "net_raw" and rec.capability_number == 13


def test_exec_and_change_profile_records():
    rec = parse('audit(1795333138.000:30): apparmor="DENIED" operation="exec" profile="karmor-global" '
                'name="/usr/bin/nc.openbsd" pid=280 comm="bash" requested_mask="x" denied_mask="x" fsuid=0 ouid=0')
    assert (rec.operation, rec.name, rec.denied) == ("exec", "/usr/bin/nc.openbsd", "x")
    rec = parse('audit(1795333138.200:12): apparmor="DENIED" operation="change_profile" profile="karmor-global" '
                'name="unconfined" pid=280 comm="bash" target="unconfined"')
    assert rec.operation == "change_profile" and rec.target == "unconfined"


def test_status_records_name_the_loaded_profile():
    rec = parse('audit(1795333144.136:16): apparmor="STATUS" operation="profile_remove" profile="unconfined" '
                'name="karmor-src-d" pid=290 comm="apparmor_parser"')
    assert (rec.kind, rec.operation, rec.name, rec.pid) == ("STATUS", "profile_remove", "karmor-src-d", 290)


def test_hex_encoded_names_are_decoded():
    # The kernel hex-encodes names with spaces or other special characters.
    rec = parse('audit(1795333129.772:9): apparmor="DENIED" operation="open" profile="karmor-global" '
                'name=2F746D702F6120622F63 pid=272 comm="cat" requested_mask="r" denied_mask="r" fsuid=0 ouid=0')
    assert rec.name == "/tmp/a b/c"


@pytest.mark.parametrize("line", [
    "", "hello", "6,1,2,-;usb 1-1: new device",
    'audit(1.2:3): avc:  denied  { read } for pid=1 comm="x" scontext=a tcontext=b tclass=file',
    'type=SYSCALL msg=audit(1795333125.976:5): arch=c000003e syscall=257 success=no exit=-13',
])
def test_other_lines_are_not_records(line):
    assert parse(line) is None
    assert normalise(line) is None or "apparmor=" not in line

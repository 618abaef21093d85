"""AppArmor audit lines -> AaRecord, parsed by LibAppArmor (python3-libapparmor).

The same record reaches us in several shapes: the audit netlink multicast payload
(`audit(1717259989.360:42): apparmor="DENIED" ...`), /dev/kmsg (`6,812,3141,-;audit: type=1400
audit(...): ...`), and auditd's log (`type=AVC msg=audit(...): ...`, possibly after `node=...`
and before auditd's enriched `\\x1d` fields). `normalise` turns each into the auditd form,
which is the one `parse_record` reads, so there is one parser for every source.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

import LibAppArmor

from karmor_host.alerts import names
from karmor_host.kernel.auditrecords import AUDIT_AVC, RecordFilter

# AppArmor's audit records: AVC-typed since Linux 2.6.x, the 1500s on some older kernels.
RECORDS = RecordFilter(types=frozenset({AUDIT_AVC, *range(1500, 1600)}), marker="apparmor=")

KINDS = {
    LibAppArmor.AA_RECORD_ALLOWED: "ALLOWED",
    LibAppArmor.AA_RECORD_AUDIT: "AUDIT",
    LibAppArmor.AA_RECORD_DENIED: "DENIED",
    LibAppArmor.AA_RECORD_ERROR: "ERROR",
    LibAppArmor.AA_RECORD_HINT: "HINT",
    LibAppArmor.AA_RECORD_STATUS: "STATUS",
}
_UNSET = (1 << 64) - 1  # LibAppArmor's value for an absent fsuid/ouid
# LibAppArmor names IP protocols itself; back to numbers (anything else is kept as given).
_PROTOCOLS = {"ip": 0, "icmp": 1, "igmp": 2, "tcp": 6, "udp": 17, "dccp": 33, "ipv6": 41,
              "icmpv6": 58, "sctp": 132, "udplite": 136, "raw": 255, "mptcp": 262}
_SOCK_TYPES = {"stream": names.SOCK_STREAM, "dgram": names.SOCK_DGRAM, "raw": names.SOCK_RAW,
               "rdm": names.SOCK_RDM, "seqpacket": names.SOCK_SEQPACKET, "dccp": names.SOCK_DCCP,
               "packet": names.SOCK_PACKET}


@dataclass(frozen=True)
class AaRecord:
    kind: str  # DENIED | AUDIT | ALLOWED | STATUS | HINT | ERROR
    operation: str  # open, exec, create, capable, profile_load, ...
    profile: str  # the confining profile (for STATUS: who loaded)
    name: str = ""  # path, exec target, capability name, profile name (STATUS)
    pid: int = 0
    comm: str = ""
    requested: str = ""  # requested_mask: r, w, c, x, create, ...
    denied: str = ""  # denied_mask
    fsuid: int = -1
    ouid: int = -1
    family: str = ""  # network records: inet, inet6, unix, packet, ...
    sock_type: str = ""
    protocol: str = ""  # LibAppArmor's name (tcp, icmp, ip) or a number
    target: str = ""  # exec: the profile it would have entered; change_profile: the target
    info: str = ""
    ts_ns: int = 0
    serial: int = 0

    @property
    def family_number(self) -> int:
        return int(getattr(socket, f"AF_{self.family.upper()}", -1)) if self.family else 0

    @property
    def sock_type_number(self) -> int:
        return _SOCK_TYPES.get(self.sock_type, 0)

    @property
    def protocol_number(self) -> int:
        if self.protocol.isdigit():
            return int(self.protocol)
        return _PROTOCOLS.get(self.protocol, 0)

    @property
    def capability_number(self) -> int:
        return names.CAPABILITY_NUMBERS.get(self.name, -1)


def normalise(line: str) -> str | None:
    """Any source's line as `type=AVC msg=audit(...): ...`, or None when it is not an
    AppArmor record at all (cheap: most kernel log lines are not)."""
    if "apparmor=" not in line:
        return None
    start = line.find("audit(")
    if start < 0:
        return None
    end = line.find("\x1d", start)  # auditd's enriched fields follow a group separator
    return "type=AVC msg=" + line[start : end if end >= 0 else None].rstrip("\n\x00")


def parse(line: str) -> AaRecord | None:
    text = normalise(line)
    if text is None:
        return None
    rec = LibAppArmor.parse_record(text)
    try:
        kind = KINDS.get(rec.event)
        if kind is None or not rec.operation:
            return None
        stamp, _, serial = (rec.audit_id or "").partition(":")
        sec, _, frac = stamp.partition(".")
        ts_ns = int(sec) * 1_000_000_000 + int((frac + "000")[:3]) * 1_000_000 if sec.isdigit() else 0
        return AaRecord(
            kind=kind,
            operation=rec.operation,
            profile=rec.profile or "",
            name=rec.name or "",
            pid=int(rec.pid or 0),
            comm=rec.comm or "",
            requested=rec.requested_mask or "",
            denied=rec.denied_mask or "",
            fsuid=-1 if rec.fsuid in (None, _UNSET) else int(rec.fsuid),
            ouid=-1 if rec.ouid in (None, _UNSET) else int(rec.ouid),
            family=rec.net_family or "",
            sock_type=rec.net_sock_type or "",
            protocol=rec.net_protocol or "",
            target=rec.name2 or "",
            info=rec.info or "",
            ts_ns=ts_ns,
            serial=int(serial) if serial.isdigit() else 0,
        )
    finally:
        LibAppArmor.free_record(rec)

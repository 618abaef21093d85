"""The IP and transport headers of a logged packet -> addresses, protocol and ports (pure).

NFLOG delivers the packet from its network header on (snaplen bytes of it). IPv6 extension
headers are walked (hop-by-hop, routing, destination options, fragment) to find the
transport header; a truncated packet yields what could be read.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

PROTO_NAMES = {1: "ICMP", 6: "TCP", 17: "UDP", 58: "ICMPv6", 132: "SCTP"}
_EXT_HEADERS = {0, 43, 60}  # hop-by-hop, routing, destination options (length in 8-byte units)
_FRAGMENT = 44


@dataclass(frozen=True)
class Headers:
    version: int  # 4 or 6; 0 when the payload is not IP
    src: str = ""
    dst: str = ""
    proto: int = 0
    sport: int = 0
    dport: int = 0
    icmp_type: int = -1

    @property
    def proto_name(self) -> str:
        return PROTO_NAMES.get(self.proto, str(self.proto))


def _transport(proto: int, data: bytes) -> tuple[int, int, int]:
    """(sport, dport, icmp_type) from the transport header."""
    if proto in (6, 17, 132) and len(data) >= 4:
        sport, dport = struct.unpack_from("!HH", data)
        return sport, dport, -1
    if proto in (1, 58) and len(data) >= 1:
        return 0, 0, data[0]
    return 0, 0, -1


def parse(payload: bytes) -> Headers:
    if not payload:
        return Headers(0)
    version = payload[0] >> 4
    if version == 4 and len(payload) >= 20:
        ihl = (payload[0] & 0x0F) * 4
        proto = payload[9]
        src, dst = str(ipaddress.IPv4Address(payload[12:16])), str(ipaddress.IPv4Address(payload[16:20]))
        frag_offset = struct.unpack_from("!H", payload, 6)[0] & 0x1FFF
        ports = _transport(proto, payload[ihl:]) if frag_offset == 0 else (0, 0, -1)
        return Headers(4, src, dst, proto, *ports)
    if version == 6 and len(payload) >= 40:
        src, dst = str(ipaddress.IPv6Address(payload[8:24])), str(ipaddress.IPv6Address(payload[24:40]))
        proto, off = payload[6], 40
        for _ in range(8):  # a bounded walk: a loop of headers cannot hang us
            if proto in _EXT_HEADERS and len(payload) >= off + 2:
                proto, off = payload[off], off + (payload[off + 1] + 1) * 8
            elif proto == _FRAGMENT and len(payload) >= off + 8:
                first = struct.unpack_from("!H", payload, off + 2)[0] & 0xFFF8 == 0
                proto, off = payload[off], off + 8
                if not first:
                    return Headers(6, src, dst, proto)
            else:
                break
        return Headers(6, src, dst, proto, *_transport(proto, payload[off:]))
    return Headers(0)

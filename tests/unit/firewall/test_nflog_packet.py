"""NFLOG message decoding and the IP/transport header parser, on hand-built bytes."""

from __future__ import annotations

import ipaddress
import socket
import struct

from karmor_host.firewall import nflog, packet


def ipv4_tcp(src: str, dst: str, sport: int, dport: int, frag: int = 0) -> bytes:
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, 1, frag, 64, 6, 0,
                     ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed)
    return ip + struct.pack("!HHIIBBHHH", sport, dport, 0, 0, 0x50, 2, 0, 0, 0)


def ipv6(src: str, dst: str, next_header: int, rest: bytes) -> bytes:
    head = struct.pack("!IHBB16s16s", 6 << 28, len(rest), next_header, 64,
                       ipaddress.IPv6Address(src).packed, ipaddress.IPv6Address(dst).packed)
    return head + rest


def attr(kind: int, value: bytes) -> bytes:
    raw = struct.pack("=HH", 4 + len(value), kind) + value
    return raw + b"\0" * (-len(raw) % 4)


def message(family: int, attrs: bytes) -> bytes:
    body = struct.pack("=BBH", family, 0, socket.htons(4242)) + attrs
    return struct.pack("=IHHII", 16 + len(body), 4 << 8 | 0, 0, 0, 0) + body


def test_ipv4_tcp_and_a_later_fragment() -> None:
    h = packet.parse(ipv4_tcp("10.0.0.2", "10.0.0.1", 40000, 22))
    assert (h.version, h.src, h.dst, h.proto_name, h.sport, h.dport) == (4, "10.0.0.2", "10.0.0.1", "TCP", 40000, 22)
    frag = packet.parse(ipv4_tcp("10.0.0.2", "10.0.0.1", 40000, 22, frag=100))
    assert (frag.sport, frag.dport) == (0, 0)


def test_ipv6_udp_behind_an_extension_header_and_icmpv6() -> None:
    udp = struct.pack("!HHHH", 5353, 53, 8, 0)
    hop_by_hop = bytes([17, 0]) + b"\0" * 6  # next header UDP, 8 bytes long
    h = packet.parse(ipv6("fd00::2", "fd00::1", 0, hop_by_hop + udp))
    assert (h.version, h.src, h.proto_name, h.sport, h.dport) == (6, "fd00::2", "UDP", 5353, 53)
    ping = packet.parse(ipv6("fd00::2", "fd00::1", 58, bytes([128, 0, 0, 0])))
    assert (ping.proto_name, ping.icmp_type, ping.dport) == ("ICMPv6", 128, 0)


def test_truncated_or_foreign_payloads_do_not_raise() -> None:
    assert packet.parse(b"").version == 0
    assert packet.parse(b"\x45\x00").version == 0
    assert packet.parse(ipv4_tcp("1.1.1.1", "2.2.2.2", 1, 2)[:22]).dport == 0


def test_decode_packet_message() -> None:
    payload = ipv4_tcp("10.0.0.1", "10.0.0.2", 41000, 8080)
    attrs = (attr(nflog.NFULA_PACKET_HDR, struct.pack("!HBx", 0x0800, 3))
             + attr(nflog.NFULA_PREFIX, b"karmor:5:out:reject\0")
             + attr(nflog.NFULA_IFINDEX_OUTDEV, struct.pack("!I", 7))
             + attr(nflog.NFULA_UID, struct.pack("!I", 1000))
             + attr(nflog.NFULA_TIMESTAMP, struct.pack("!QQ", 1_700_000_000, 250))
             + attr(nflog.NFULA_PAYLOAD, payload))
    data = message(2, attrs) + message(2, attr(nflog.NFULA_PREFIX, b"other\0"))
    (pkt, other), errors = nflog.decode_messages(data, now_ns=5)
    assert errors == 0
    assert (pkt.prefix, pkt.family, pkt.hook, pkt.indev, pkt.outdev, pkt.uid) == (
        "karmor:5:out:reject", 2, 3, 0, 7, 1000)
    assert pkt.ts_ns == 1_700_000_000_000_250_000 and pkt.payload == payload
    assert (other.prefix, other.uid, other.ts_ns) == ("other", None, 5)


def test_decode_counts_kernel_errors_and_skips_other_messages() -> None:
    error = struct.pack("=IHHII", 20, nflog.NLMSG_ERROR, 0, 1, 0) + struct.pack("=i", -16)
    ack = struct.pack("=IHHII", 20, nflog.NLMSG_ERROR, 0, 2, 0) + struct.pack("=i", 0)
    done = struct.pack("=IHHII", 16, nflog.NLMSG_DONE, 0, 3, 0)
    assert nflog.decode_messages(error + ack + done) == ([], 1)


def test_config_message_layout() -> None:
    msg = nflog.config_message(4242, attr(nflog.NFULA_CFG_CMD, bytes([nflog.NFULNL_CFG_CMD_BIND])), 9)
    length, kind, flags, seq, _pid = struct.unpack_from("=IHHII", msg)
    assert (length, kind, flags, seq) == (len(msg), 4 << 8 | 1, 5, 9)
    assert msg[16:20] == bytes([0, 0]) + struct.pack("!H", 4242)

"""Traffic for the namespace tests; runs inside a namespace (`ip netns exec NS python -m tests.netns.peer`).

    serve --tcp 80,8080 [--udp 5353]    listen on every address (IPv4 and IPv6); a TCP client
                                        gets "ok\\n", then its bytes echoed; UDP datagrams echoed
    connect HOST PORT [--timeout S]     exit 0 when "ok" arrives, 1 otherwise (reason on stdout)
    udp HOST PORT                       exit 0 when the datagram comes back
    ping HOST                           one ICMP/ICMPv6 echo over a raw socket (root); exit 0 on a reply
    loop --ok H:P --blocked H:P --seconds S
                                        connect to both over and over; print JSON counts
    hold HOST PORT --seconds S          one connection, a round trip every 50 ms; exit 0 when
                                        every round trip succeeded
"""

from __future__ import annotations

import argparse
import json
import os
import selectors
import socket
import struct
import sys
import time


def _listen_tcp(port: int) -> socket.socket:
    s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind(("::", port))
    s.listen(512)
    s.setblocking(False)
    return s


def _listen_udp(port: int) -> socket.socket:
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind(("::", port))
    s.setblocking(False)
    return s


def serve(tcp: list[int], udp: list[int]) -> None:
    sel = selectors.DefaultSelector()
    for port in tcp:
        sel.register(_listen_tcp(port), selectors.EVENT_READ, "listen")
    for port in udp:
        sel.register(_listen_udp(port), selectors.EVENT_READ, "udp")
    print("ready", flush=True)
    while True:
        for key, _ in sel.select():
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            if key.data == "listen":
                try:
                    conn, _ = sock.accept()
                except BlockingIOError:
                    continue
                conn.setblocking(False)
                try:
                    conn.send(b"ok\n")
                except OSError:
                    conn.close()
                    continue
                sel.register(conn, selectors.EVENT_READ, "conn")
            elif key.data == "udp":
                try:
                    data, addr = sock.recvfrom(2048)
                    sock.sendto(data, addr)
                except OSError:
                    pass
            else:
                try:
                    data = sock.recv(4096)
                except OSError:
                    data = b""
                if data:
                    try:
                        sock.send(data)
                    except OSError:
                        data = b""
                if not data:
                    sel.unregister(sock)
                    sock.close()


def connect(host: str, port: int, timeout: float) -> tuple[bool, str]:
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            got = s.recv(3)
            return got == b"ok\n", f"received {got!r}"
    except OSError as exc:
        return False, f"{type(exc).__name__}: {exc}"


def udp(host: str, port: int, timeout: float) -> tuple[bool, str]:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        try:
            s.sendto(b"ping", (host, port))
            data, _ = s.recvfrom(16)
            return data == b"ping", "echoed"
        except OSError as exc:
            return False, f"{type(exc).__name__}: {exc}"


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    return ~(total + (total >> 16)) & 0xFFFF


def ping(host: str, timeout: float) -> tuple[bool, str]:
    v6 = ":" in host
    family, proto = (socket.AF_INET6, socket.IPPROTO_ICMPV6) if v6 else (socket.AF_INET, socket.IPPROTO_ICMP)
    request, reply = (128, 129) if v6 else (8, 0)
    ident = os.getpid() & 0xFFFF
    body = struct.pack("!HH", ident, 1) + b"karmor"
    head = struct.pack("!BBH", request, 0, 0)
    packet = head[:2] + struct.pack("!H", 0 if v6 else _checksum(head + body)) + body  # v6: kernel sums
    with socket.socket(family, socket.SOCK_RAW, proto) as s:
        s.settimeout(timeout)
        s.sendto(packet, (host, 0))
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                data = s.recv(2048)
            except OSError as exc:
                return False, f"{type(exc).__name__}: {exc}"
            icmp = data if v6 else data[(data[0] & 0x0F) * 4 :]
            if icmp[0] == reply and icmp[4:6] == struct.pack("!H", ident):
                return True, "echo reply"
    return False, "no reply"


def loop(ok: str, blocked: str, seconds: float, timeout: float) -> dict[str, int]:
    counts = {"ok_passed": 0, "ok_failed": 0, "blocked_passed": 0, "blocked_failed": 0}
    targets = [("ok", *ok.rsplit(":", 1)), ("blocked", *blocked.rsplit(":", 1))]
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for name, host, port in targets:
            passed, _ = connect(host.strip("[]"), int(port), timeout)
            counts[f"{name}_{'passed' if passed else 'failed'}"] += 1
    return counts


def hold(host: str, port: int, seconds: float) -> tuple[bool, str]:
    try:
        with socket.create_connection((host, port), timeout=2) as s:
            if s.recv(3) != b"ok\n":
                return False, "no greeting"
            print("connected", flush=True)
            end, rounds = time.monotonic() + seconds, 0
            while time.monotonic() < end:
                s.sendall(b"x")
                if s.recv(1) != b"x":
                    return False, f"round trip {rounds} failed"
                rounds += 1
                time.sleep(0.05)
            return True, f"{rounds} round trips"
    except OSError as exc:
        return False, f"{type(exc).__name__}: {exc}"


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="peer")
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--tcp", default="")
    s.add_argument("--udp", default="")
    pg = sub.add_parser("ping")
    pg.add_argument("host")
    pg.add_argument("--timeout", type=float, default=1.0)
    for name in ("connect", "udp", "hold"):
        c = sub.add_parser(name)
        c.add_argument("host")
        c.add_argument("port", type=int)
        c.add_argument("--timeout", type=float, default=1.0)
        c.add_argument("--seconds", type=float, default=1.0)
    lp = sub.add_parser("loop")
    lp.add_argument("--ok", required=True)
    lp.add_argument("--blocked", required=True)
    lp.add_argument("--seconds", type=float, default=2.0)
    lp.add_argument("--timeout", type=float, default=0.5)
    a = ap.parse_args(argv)
    if a.cmd == "serve":
        serve([int(p) for p in a.tcp.split(",") if p], [int(p) for p in a.udp.split(",") if p])
        return 0
    if a.cmd == "loop":
        print(json.dumps(loop(a.ok, a.blocked, a.seconds, a.timeout)), flush=True)
        return 0
    fn = {"connect": lambda: connect(a.host, a.port, a.timeout), "udp": lambda: udp(a.host, a.port, a.timeout),
          "hold": lambda: hold(a.host, a.port, a.seconds), "ping": lambda: ping(a.host, a.timeout)}[a.cmd]
    ok, why = fn()
    print(why, flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""A Fluent forward protocol v1 server for the tests, written from the protocol specification.

It accepts the three event modes (Message, Forward, PackedForward, including the gzip
CompressedPackedForward), EventTime or integer times, the HELO/PING/PONG shared-key
handshake, TLS, and answers `{"ack": chunk}` for every message with a chunk option, after
the records are stored. Runs in a thread (`FluentReceiver`) or as a process that can be
killed -9 (`python -m tests.sinks.fluent_receiver --port N --out FILE ...`; it prints
`listening <port>` once ready). With `--out`, each record is appended as one JSON line
(`{"chunk", "tag", "time", "record"}`) and flushed *before* the ack, so what a killed
receiver acknowledged is in the file.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import socket
import ssl
import struct
import sys
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import msgpack

TLS_HANDSHAKE = 0x16  # first byte of a TLS ClientHello record


def sha512_hex(*parts: bytes) -> str:
    h = hashlib.sha512()
    for p in parts:
        h.update(p)
    return h.hexdigest()


def _b(value: Any) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode("utf-8", "surrogateescape")


def decode_time(value: Any) -> list[int]:
    """EventTime (ext 0: u32 seconds, u32 nanoseconds, big-endian) or integer seconds."""
    if isinstance(value, msgpack.ExtType):
        assert value.code == 0 and len(value.data) == 8, value
        return list(struct.unpack(">II", value.data))
    assert isinstance(value, int), value
    return [value, 0]


def decode_entries(data: bytes) -> list[tuple[list[int], dict]]:
    out = []
    unpacker = msgpack.Unpacker(raw=False, strict_map_key=False)
    unpacker.feed(data)
    for item in unpacker:
        assert isinstance(item, list) and len(item) == 2, item
        out.append((decode_time(item[0]), item[1]))
    return out


def decode_message(msg: Any) -> tuple[str, list[tuple[list[int], dict]], dict]:
    """(tag, [(time, record)], option) of any of the spec's event modes."""
    if not isinstance(msg, list) or len(msg) not in (2, 3, 4) or not isinstance(msg[0], str):
        raise ValueError(f"not an event message: {str(msg)[:100]}")
    tag, second = msg[0], msg[1]
    if isinstance(second, (int, msgpack.ExtType)):  # Message mode: [tag, time, record, option?]
        option = msg[3] if len(msg) == 4 else {}
        return tag, [(decode_time(second), msg[2])], option or {}
    option = (msg[2] if len(msg) == 3 else {}) or {}
    if isinstance(second, list):  # Forward mode
        return tag, [(decode_time(t), r) for t, r in second], option
    if isinstance(second, (bytes, str)):  # PackedForward / CompressedPackedForward
        data = _b(second)
        if option.get("compressed") == "gzip":
            data = gzip.decompress(data)  # concatenated gzip members decompress as one
        entries = decode_entries(data)
        if "size" in option:
            assert option["size"] == len(entries), (option, len(entries))
        return tag, entries, option
    raise ValueError(f"unknown event mode: {type(second).__name__}")


class FluentReceiver:
    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        tls: ssl.SSLContext | None = None,
        shared_key: bytes = b"",
        out: Path | None = None,
        ack: bool = True,
        keepalive: bool = True,
        hostname: str = "receiver.test",
        impostor: bool = False,
        store: bool = True,
    ) -> None:
        """`impostor`: a server that does not know the client's key: it accepts any PING
        and answers PONG with a proof made from its own `shared_key`."""
        self.tls, self.shared_key, self.ack, self.keepalive = tls, shared_key, ack, keepalive
        self.impostor = impostor
        self.store = store  # False: only count (benchmarks)
        self.count = 0
        self.hostname = hostname
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.listener = socket.socket(family, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((host, port))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self._out = open(out, "a", encoding="utf-8") if out else None
        self._lock = threading.Lock()
        self.records: list[dict] = []  # {"chunk", "tag", "time", "record"}
        self.chunks: Counter[str] = Counter()
        self.connections = 0
        self.first_bytes: list[int] = []  # first byte of each TLS connection
        self.errors: list[str] = []
        self._conns: list[socket.socket] = []
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> FluentReceiver:
        self._thread = threading.Thread(target=self.serve, daemon=True)
        self._thread.start()
        return self

    def serve(self) -> None:
        while not self._stopped.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
                self._conns.append(conn)
            threading.Thread(target=self._session, args=(conn,), daemon=True).start()

    def stop(self) -> None:
        """Close everything at once, as a crashing collector would."""
        self._stopped.set()
        self.listener.close()
        with self._lock:
            for c in self._conns:
                try:
                    c.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                c.close()
        if self._out:
            self._out.close()

    def _session(self, conn: socket.socket) -> None:
        try:
            if self.tls is not None:
                # A TLS client speaks first (ClientHello): record what it sent, to prove
                # that a client that failed to verify us never falls back to plain text.
                first = conn.recv(1, socket.MSG_PEEK)
                if not first:
                    return
                with self._lock:
                    self.first_bytes.append(first[0])
                conn = self.tls.wrap_socket(conn, server_side=True)
            unpacker = msgpack.Unpacker(raw=False, unicode_errors="surrogateescape", strict_map_key=False)
            objects = self._objects(conn, unpacker)
            if self.shared_key and not self._handshake(conn, objects):
                return
            for msg in objects:
                tag, entries, option = decode_message(msg)
                self._store(tag, entries, option.get("chunk"))
                if option.get("chunk") and self.ack:
                    conn.sendall(msgpack.packb({"ack": option["chunk"]}, use_bin_type=True))
                if not self.keepalive:
                    return
        except (OSError, ValueError, AssertionError) as exc:
            with self._lock:
                self.errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            try:
                conn.close()
            except OSError:
                pass

    @staticmethod
    def _objects(conn: socket.socket, unpacker: msgpack.Unpacker):
        while True:
            for obj in unpacker:
                yield obj
            data = conn.recv(1 << 16)
            if not data:
                return
            unpacker.feed(data)

    def _handshake(self, conn: socket.socket, objects) -> bool:
        nonce = os.urandom(16)
        helo = ["HELO", {"nonce": nonce, "auth": b"", "keepalive": self.keepalive}]
        conn.sendall(msgpack.packb(helo, use_bin_type=True))
        ping = next(objects)
        if not (isinstance(ping, list) and len(ping) == 6 and ping[0] == "PING"):
            raise ValueError(f"expected PING, got {str(ping)[:80]}")
        _, client_host, salt, digest, _user, _password = ping
        salt_b = _b(salt)
        if not self.impostor and digest != sha512_hex(salt_b, _b(client_host), nonce, self.shared_key):
            conn.sendall(msgpack.packb(["PONG", False, "shared_key mismatch", self.hostname, ""]))
            with self._lock:
                self.errors.append("shared_key mismatch")
            return False
        proof = sha512_hex(salt_b, self.hostname.encode(), nonce, self.shared_key)
        conn.sendall(msgpack.packb(["PONG", True, "", self.hostname, proof], use_bin_type=True))
        return True

    def _store(self, tag: str, entries: list, chunk: str | None) -> None:
        if not self.store:
            self.count += len(entries)
            return
        rows = [{"chunk": chunk, "tag": tag, "time": t, "record": r} for t, r in entries]
        with self._lock:
            self.records.extend(rows)
            if chunk:
                self.chunks[chunk] += 1
            if self._out:
                self._out.write("".join(json.dumps(row) + "\n" for row in rows))
                self._out.flush()  # stored (page cache) before the ack goes out

    def snapshot(self) -> list[dict]:
        with self._lock:
            return list(self.records)


def read_out(path: Path) -> list[dict]:
    """Rows a (possibly killed) receiver process stored."""
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in lines if line.endswith("}")]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--discard", action="store_true", help="decode and ack, store nothing")
    ap.add_argument("--shared-key", default="")
    ap.add_argument("--cert")
    ap.add_argument("--key")
    args = ap.parse_args(argv)
    tls = None
    if args.cert:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(args.cert, args.key)
    rx = FluentReceiver(args.host, args.port, tls=tls, shared_key=args.shared_key.encode(), out=args.out,
                        store=not args.discard)
    print(f"listening {rx.port}", flush=True)
    rx.serve()


if __name__ == "__main__":
    sys.exit(main())

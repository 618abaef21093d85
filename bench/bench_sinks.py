"""Remote sinks on loopback: what an alert costs the pipeline's thread, delivered alerts/s
through the forward sink (to the test receiver in its own process, acked) and the syslog
sink (to a real rsyslogd), each against the bare protocol over one socket without the
spool; and the memory of a full spool. ratio = measured / baseline."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from karmor_host.alerts import record
from karmor_host.alerts.record import HostInfo
from karmor_host.alerts.sinks.forward import ForwardSink, entry, packed_forward
from karmor_host.alerts.sinks.syslog import SyslogSink, _wait_acknowledged, frame, message
from karmor_host.alerts.spool import Spool
from karmor_host.kernel.events import Event, EventKind
from karmor_host.policy.ruleset import Action, Operation, Rule, TargetKind

REPO = Path(__file__).resolve().parents[1]
EMITS = 20_000
DELIVER = 50_000
BATCH = 500
REPEATS = 3  # best of: the machine is shared, the best run is the least disturbed one
SPOOL_BYTES = 64 * 1024 * 1024  # the default spool.maxBytes

HOST = HostInfo("default", "bench-host", "0" * 32)
RULE = Rule(id=1, policy="bench", file="bench.yaml", line=1, operation=Operation.FILE, kind=TargetKind.DIR,
            target="/data/", original="/data/", action=Action.AUDIT, severity=5, recursive=True,
            tags=("MITRE", "T1005"), message="data read")


def alerts(n: int) -> list[dict]:
    base = dict(ts_ns=time.time_ns(), pid=1, ppid=1, uid=0, gid=0, comm="cat", exe="/usr/bin/cat",
                parent_exe="/usr/bin/bash", cwd="/root", tty="pts0")
    return [record.alert(Event(kind=EventKind.OPEN, path=f"/data/file-{i}", tgid=i, **base),  # type: ignore[arg-type]
                         RULE, HOST, "Audit", record.MONITOR_ENFORCER, "bench") for i in range(n)]


def _row(name: str, baseline: float, measured: float, notes: str) -> dict:
    return {"name": name, "baseline": round(baseline), "measured": round(measured),
            "ratio": round(measured / baseline, 3), "notes": notes}


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _encode_rate(recs: list[dict]) -> float:
    t0 = time.perf_counter()
    for r in recs:
        entry(r)
    return len(recs) / (time.perf_counter() - t0)


def _emit_rate(directory: Path, recs: list[dict]) -> tuple[float, float]:
    sink = ForwardSink("bench", "127.0.0.1", _closed_port(), Spool(directory, SPOOL_BYTES))
    t0 = time.perf_counter()
    for r in recs:
        sink.emit(r)
    rate = len(recs) / (time.perf_counter() - t0)
    size = sink.spool.pending_bytes / len(recs)
    sink.close()
    return rate, size


def emit_cost(tmp: Path, recs: list[dict]) -> dict:
    baseline = max(_encode_rate(recs) for _ in range(REPEATS))
    measured, size = max(_emit_rate(tmp / f"emit-{i}", recs) for i in range(REPEATS))
    return _row("forward sink: emit (alert path, collector down)", baseline, measured,
                f"alerts/s in the pipeline's thread (best of {REPEATS}): msgpack encoding alone (baseline) vs encoding + spool append "
                f"(one write(2) each); {size:.0f} bytes per alert on disk; no network on this path")


def _receiver() -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen([sys.executable, "-m", "tests.sinks.fluent_receiver", "--discard"],
                            cwd=REPO, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    return proc, int(proc.stdout.readline().split()[1])


def _bare(port: int, recs: list[dict], encode, send) -> float:
    """The records encoded and sent in BATCH-sized messages over one connection, each
    confirmed before the next: the protocol without spool or sender thread."""
    t0 = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(0, len(recs), BATCH):
            send(sock, [encode(r) for r in recs[i:i + BATCH]], i)
    return len(recs) / (time.perf_counter() - t0)


def _through(sink, recs: list[dict]) -> float:
    sink.start()
    t0 = time.perf_counter()
    for r in recs:
        sink.emit(r)
    assert sink.wait_delivered(300), sink.stats()
    rate = len(recs) / (time.perf_counter() - t0)
    sink.close()
    return rate


def forward_delivery(tmp: Path, recs: list[dict]) -> dict:
    proc, port = _receiver()
    try:
        def send(sock: socket.socket, batch: list[bytes], i: int) -> None:
            chunk = f"bench-{i:010d}-chunk"
            sock.sendall(packed_forward("karmor.alert", batch, chunk))
            assert chunk.encode() in sock.recv(256)  # {"ack": chunk}

        baseline = max(_bare(port, recs, entry, send) for _ in range(REPEATS))
        measured = max(_through(ForwardSink("bench", "127.0.0.1", port, Spool(tmp / f"fwd-{i}", 1 << 30),
                                            batch_records=BATCH), recs) for i in range(REPEATS))
    finally:
        proc.kill()
        proc.wait()
    return _row("forward sink: delivered alerts/s (loopback, acked)", baseline, measured,
                f"{len(recs)} alerts (best of {REPEATS}) to the test receiver (own process, decodes and acks); baseline: encode and "
                f"send PackedForward messages of {BATCH} alerts over one socket, waiting for each ack, no "
                f"spool; measured: emit -> spool -> sender thread -> ack, first emit to last ack")


def syslog_delivery(tmp: Path, recs: list[dict]) -> dict:
    sys.path.insert(0, str(REPO))
    from tests.sinks.rsyslog import Rsyslog  # the tests' rsyslogd runner

    rs = Rsyslog(tmp / "rsyslog")
    port = rs.start()
    try:
        def send(sock: socket.socket, batch: list[bytes], _i: int) -> None:
            sock.sendall(b"".join(batch))
            _wait_acknowledged(sock, 30)

        pid = os.getpid()
        baseline = max(_bare(port, recs, lambda r: frame(message(r, "structured", 4, pid)), send)
                       for _ in range(REPEATS))
        measured = max(_through(SyslogSink("bench", "127.0.0.1", port, Spool(tmp / f"sys-{i}", 1 << 30),
                                           batch_records=BATCH), recs) for i in range(REPEATS))
    finally:
        rs.stop()
    return _row("syslog sink: delivered alerts/s (rsyslog, loopback)", baseline, measured,
                f"{len(recs)} structured RFC 5424 alerts (best of {REPEATS}) to rsyslogd (imtcp -> omfile); baseline: encode and "
                f"send octet-counted frames in batches of {BATCH} over one socket, each waited for until "
                f"TCP-acked; measured: through the sink (spool, sender thread, same wait)")


def _rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def spool_memory_child(directory: str) -> None:
    """In a fresh interpreter: RSS before and after filling a spool to its bound."""
    recs = alerts(1000)
    before = _rss_kib()
    spool = Spool(Path(directory), SPOOL_BYTES)
    payloads = [entry(r) for r in recs]
    i = 0
    while spool.dropped == 0:
        spool.append(payloads[i % len(payloads)])
        i += 1
    full = _rss_kib()
    n = spool.records
    spool.close()
    t0 = time.perf_counter()
    reopened = Spool(Path(directory), SPOOL_BYTES)
    recovery = time.perf_counter() - t0
    print(json.dumps({"before": before, "full": full, "after_reopen": _rss_kib(), "records": n,
                      "recovered": reopened.recovered, "recovery_s": recovery}))


def spool_memory(tmp: Path) -> dict:
    out = subprocess.run([sys.executable, "-c", "import sys, bench.bench_sinks as b; b.spool_memory_child(sys.argv[1])",
                          str(tmp / "mem")], cwd=REPO, capture_output=True, text=True, check=True)
    m = json.loads(out.stdout)
    return _row("spool: RSS (KiB) with a full 64 MiB spool", m["before"], m["full"],
                f"{m['records']} alerts undelivered on disk; the process keeps only a table of segments, so "
                f"memory does not grow with the spool (RSS after 1 000 test alerts were built = baseline). "
                f"Reopening (recovery scan, every frame CRC-checked): {m['recovery_s']:.2f} s, "
                f"{m['recovered']} records, RSS {m['after_reopen']} KiB")


def run() -> list[dict]:
    with tempfile.TemporaryDirectory(prefix="karmor-bench-sinks-") as d:
        tmp = Path(d)
        rows = [emit_cost(tmp, alerts(EMITS))]
        recs = alerts(DELIVER)
        rows.append(forward_delivery(tmp, recs))
        rows.append(syslog_delivery(tmp, recs))
        rows.append(spool_memory(tmp))
    return rows


if __name__ == "__main__":
    for row in run():
        print(row)

"""The forward sink against a receiver that implements the protocol from its specification,
on loopback: exactly-once without failures, handshake, TLS, lost acks, spool bounds."""

from __future__ import annotations

import base64
import os
import socket
import ssl
from collections import Counter

import pytest

from karmor_host.alerts.match import Matcher
from karmor_host.alerts.pipeline import AlertPipeline
from karmor_host.alerts.sinks.forward import ForwardSink
from karmor_host.alerts.sinks.remote import DROP_OPERATION, TLSSettings
from karmor_host.alerts.throttle import Throttle
from karmor_host.config import parse
from karmor_host.policy.ruleset import RuleSet
from tests.sinks.conftest import HOST, RULE, ListSink, alert, free_port, wait_until
from tests.sinks.fluent_receiver import FluentReceiver
from tests.unit.alerts.helpers import opened


def server_tls(pki, leaf: str = "server", client_ca: bool = False) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(pki[leaf].cert, pki[leaf].key)
    if client_ca:
        ctx.load_verify_locations(pki["ca"].cert)
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


@pytest.fixture
def receiver():
    started: list[FluentReceiver] = []

    def start(**kw) -> FluentReceiver:
        rx = FluentReceiver(**kw).start()
        started.append(rx)
        return rx

    yield start
    for rx in started:
        rx.stop()


def test_ten_thousand_alerts_through_the_pipeline_arrive_exactly_once(receiver, make_sink):
    rx = receiver()
    sink = make_sink(rx.port, send_timeout=60.0)  # "nothing fails": not even a slow ack on a busy machine
    journal = ListSink()
    pipeline = AlertPipeline(Matcher(RuleSet(rules=(RULE,)), False), Throttle(enabled=False), [journal, sink], HOST)
    for i in range(10_000):
        pipeline.handle(opened(f"/data/file-{i}", tgid=i, ppid=1))
    assert sink.wait_delivered(60), sink.stats()
    got = rx.snapshot()
    assert Counter(r["record"]["HostPID"] for r in got) == Counter(range(10_000))
    # the records are the alerts, field for field, as journald got them
    assert [r["record"] for r in got] == journal.records
    assert {r["tag"] for r in got} == {"karmor.alert"}
    sent = journal.records[0]
    assert got[0]["time"] == [sent["Timestamp"], int(sent["UpdatedTime"][20:26]) * 1000]
    assert set(rx.chunks.values()) == {1}, "a chunk was sent twice although every ack arrived"
    s = pipeline.stats()["sinks"][sink.name]
    assert (s["sent"], s["failed"], s["duplicates"], s["dropped"], s["spooled"]) == (10_000, 0, 0, 0, 0)
    assert s["connected"] is True and s["connects"] == 1


def test_shared_key_handshake(receiver, make_sink):
    rx = receiver(shared_key=b"s3cret")
    sink = make_sink(rx.port, shared_key=b"s3cret")
    for i in range(50):
        sink.emit(alert(i))
    assert sink.wait_delivered(10), sink.stats()
    assert sorted(r["record"]["HostPID"] for r in rx.snapshot()) == list(range(50))


def test_wrong_shared_key_is_refused_and_nothing_is_lost(receiver, make_sink):
    rx = receiver(shared_key=b"right")
    sink = make_sink(rx.port, shared_key=b"wrong")
    sink.emit(alert(1))
    assert wait_until(lambda: sink.send_errors >= 2)
    assert "refused the handshake: shared_key mismatch" in sink.last_error
    assert rx.snapshot() == [] and sink.spool.records == 1 and sink.failed == 0


def test_a_server_that_does_not_know_the_key_is_not_trusted(receiver, make_sink):
    """It accepts our PING blindly, but its PONG cannot prove it knows the key."""
    rx = receiver(shared_key=b"guess", impostor=True)
    sink = make_sink(rx.port, shared_key=b"mine")
    sink.emit(alert(1))
    assert wait_until(lambda: sink.send_errors >= 2), sink.stats()
    assert sink.last_error == "the collector's PONG does not prove it knows the shared key"
    assert rx.snapshot() == [] and sink.sent == 0 and sink.spool.records == 1


def test_helo_without_keepalive_means_one_batch_per_connection(receiver, make_sink):
    rx = receiver(shared_key=b"k", keepalive=False)
    sink = make_sink(rx.port, shared_key=b"k", batch_records=10)
    for i in range(100):
        sink.emit(alert(i))
    assert sink.wait_delivered(20), sink.stats()
    assert sorted(r["record"]["HostPID"] for r in rx.snapshot()) == list(range(100))
    assert rx.connections >= sink.connects >= 10


def test_tls_with_verification(receiver, make_sink, pki):
    rx = receiver(tls=server_tls(pki))
    sink = make_sink(rx.port, tls=TLSSettings(ca_file=str(pki["ca"].cert)))
    for i in range(200):
        sink.emit(alert(i))
    assert sink.wait_delivered(20), sink.stats()
    assert sorted(r["record"]["HostPID"] for r in rx.snapshot()) == list(range(200))
    assert rx.first_bytes and set(rx.first_bytes) == {0x16}


def test_mutual_tls_with_a_client_certificate(receiver, make_sink, pki):
    rx = receiver(tls=server_tls(pki, client_ca=True), shared_key=b"k")
    tls = TLSSettings(ca_file=str(pki["ca"].cert), cert_file=str(pki["client"].cert), key_file=str(pki["client"].key))
    sink = make_sink(rx.port, tls=tls, shared_key=b"k")
    sink.emit(alert(7))
    assert sink.wait_delivered(10), sink.stats()
    assert [r["record"]["HostPID"] for r in rx.snapshot()] == [7]


@pytest.mark.parametrize("leaf, ca, expected", [
    ("server", "other_ca", "unable to get local issuer certificate"),
    ("wrong_name", "ca", "IP address mismatch"),
])
def test_certificate_problems_are_clear_errors_and_never_plain_text(receiver, make_sink, pki, leaf, ca, expected):
    rx = receiver(tls=server_tls(pki, leaf))
    sink = make_sink(rx.port, tls=TLSSettings(ca_file=str(pki[ca].cert)))
    for i in range(5):
        sink.emit(alert(i))
    assert wait_until(lambda: sink.send_errors >= 3), sink.stats()
    assert sink.last_error.startswith("TLS certificate verification failed: ") and expected in sink.last_error
    assert "tls.caFile" in sink.last_error
    assert rx.snapshot() == [] and sink.sent == 0 and sink.spool.records == 5
    assert len(rx.first_bytes) >= 3 and set(rx.first_bytes) == {0x16}, "a connection did not start with TLS"


def test_lost_acks_resend_the_same_chunk_and_count_duplicates(receiver, make_sink):
    rx = receiver(ack=False)
    sink = make_sink(rx.port, send_timeout=0.3, batch_records=20, start=False)
    for i in range(50):
        sink.emit(alert(i))
    sink.start()  # the first batch is 20 records: two resends make 40 possible duplicates
    assert wait_until(lambda: sink.duplicates >= 40, timeout=60), sink.stats()
    rx.ack = True
    assert sink.wait_delivered(10), sink.stats()
    got = rx.snapshot()
    assert set(r["record"]["HostPID"] for r in got) == set(range(50))
    seen = Counter(r["record"]["HostPID"] for r in got)
    extra = sum(n - 1 for n in seen.values())
    assert 0 < extra <= sink.duplicates
    # every repeat came in a chunk that was sent before without an ack: same id, same records
    by_chunk: dict[str, set[int]] = {}
    for r in got:
        by_chunk.setdefault(r["chunk"], set()).add(r["record"]["HostPID"])
    assert all(len(base64.b64decode(c)) == 16 for c in by_chunk)
    assert sum(len(v) for v in by_chunk.values()) == 50, "a record appeared under two chunk ids"
    assert max(rx.chunks.values()) > 1


@pytest.mark.parametrize("overflow", ["drop_oldest", "drop_newest"])
def test_a_full_spool_drops_by_policy_counts_and_reports(receiver, make_sink, overflow):
    port = free_port()
    sink = make_sink(port, max_bytes=64 * 1024, overflow=overflow)
    journal = ListSink()
    pipeline = AlertPipeline(Matcher(RuleSet(rules=(RULE,)), False), Throttle(enabled=False), [journal, sink], HOST)
    sink.on_notice = pipeline.sink_notice
    n = 1000
    for i in range(n):
        pipeline.handle(opened(f"/data/file-{i}", tgid=i, ppid=1))
    stats = pipeline.stats()["sinks"][sink.name]
    assert stats["dropped"] > 0 and stats["dropped"] + stats["spooled"] == n
    assert stats["failed"] == stats["dropped"] and stats["connected"] is False
    assert len([r for r in journal.records if r["Type"] == "MatchedHostPolicy"]) == n  # journald got all
    first = [r for r in journal.records if r["Type"] == "SystemEvent"]  # announced at once, not at the end
    assert first and first[0]["Operation"] == DROP_OPERATION and first[0]["Sink"] == sink.name
    rx = receiver(port=port)
    assert sink.wait_delivered(20), sink.stats()
    delivered = sorted(r["record"]["HostPID"] for r in rx.snapshot())
    kept = n - sink.spool.dropped
    assert delivered == (list(range(n - kept, n)) if overflow == "drop_oldest" else list(range(kept)))
    sink.close()
    notices = [r for r in journal.records if r["Type"] == "SystemEvent"]
    assert sum(r["DroppedRecords"] for r in notices) == sink.spool.dropped == notices[-1]["DroppedTotal"]
    assert f"policy {overflow}" in notices[-1]["Message"]


def test_the_alert_path_does_not_wait_for_a_collector_that_never_answers(make_sink):
    """A peer that accepts connections and then reads nothing: emit still returns at once."""
    listener = socket.create_server(("127.0.0.1", 0))
    try:
        sink = make_sink(listener.getsockname()[1], send_timeout=30.0)
        for i in range(2000):
            sink.emit(alert(i))
        assert sink.spool.records == 2000 and sink.sent == 0
    finally:
        listener.close()


def test_from_config_builds_the_sink_with_its_spool_under_the_state_dir(tmp_path, receiver):
    rx = receiver()
    key = tmp_path / "fwd.key"
    key.write_text("k3y\n")
    os.chmod(key, 0o600)
    rx.shared_key = b"k3y"
    cfg = parse(f"sinks:\n  remote:\n  - name: central\n    type: forward\n    address: 127.0.0.1:{rx.port}\n"
                f"    tag: host.alerts\n    sharedKeyFile: {key}\n    retryMaxSeconds: 1\n", "c.yaml")
    pipeline = AlertPipeline.from_config(cfg, HOST, sinks=None, queue_size=0, state_dir=tmp_path / "state")
    try:
        (sink,) = [s for s in pipeline.sinks if isinstance(s, ForwardSink)]
        assert sink.spool.directory == tmp_path / "state" / "spool" / "central"
        assert sink.on_notice == pipeline.sink_notice
        pipeline.swap_ruleset(RuleSet(rules=(RULE,)))
        pipeline.handle(opened("/data/x", tgid=42))
        assert sink.wait_delivered(10), sink.stats()
        (got,) = rx.snapshot()
        assert got["tag"] == "host.alerts" and got["record"]["HostPID"] == 42
        assert pipeline.stats()["sinks"]["central"]["sent"] == 1
    finally:
        pipeline.close()

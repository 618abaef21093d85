"""Forward and remote-sink logic without a collector: wire encoding, handshake proofs,
backoff, record selection, failure accounting, the builder's checks."""

from __future__ import annotations

import hashlib
import os
import struct

import msgpack
import pytest

from karmor_host.alerts import record
from karmor_host.alerts.record import HostInfo
from karmor_host.alerts.sinks.forward import ForwardSink, _hexdigest, entry, event_time, packed_forward
from karmor_host.alerts.sinks.remote import DROP_OPERATION, build
from karmor_host.alerts.spool import Spool
from karmor_host.config import parse
from karmor_host.errors import KarmorError
from karmor_host.policy.ruleset import Action

from .helpers import file_rule, opened

HOST = HostInfo("default", "web-1", "mid")


def an_alert(pid: int = 7) -> dict:
    return record.alert(opened("/etc/passwd", tgid=pid), file_rule("/etc/passwd", Action.AUDIT, policy="p"),
                        HOST, "Audit", record.MONITOR_ENFORCER, "p")


def test_event_time_is_ext_0_with_seconds_and_nanoseconds():
    rec = {"Timestamp": 1717259989, "UpdatedTime": "2024-06-01T16:39:49.360067Z"}
    t = event_time(rec)
    assert t.code == 0 and struct.unpack(">II", t.data) == (1717259989, 360067000)
    assert struct.unpack(">II", event_time({"Timestamp": 5}).data) == (5, 0)


def test_packed_forward_follows_the_spec():
    recs = [an_alert(i) for i in range(3)]
    raw = packed_forward("karmor.alert", [entry(r) for r in recs], "Y2h1bmsxMjM0NTY3ODkwMTI=")
    msg = msgpack.unpackb(raw, raw=False)
    tag, entries, option = msg
    assert tag == "karmor.alert" and isinstance(entries, bytes)
    assert option == {"chunk": "Y2h1bmsxMjM0NTY3ODkwMTI=", "size": 3}
    decoded = list(msgpack.Unpacker(__import__("io").BytesIO(entries), raw=False))
    assert [e[1] for e in decoded] == recs
    assert all(isinstance(e[0], msgpack.ExtType) and e[0].code == 0 for e in decoded)


@pytest.mark.parametrize("n", [10, 300, 70_000])
def test_packed_forward_bin_header_sizes(n):
    body = [b"\x92\x01\xa1x" * (n // 4 + 1)]
    tag, entries, _ = msgpack.unpackb(packed_forward("t", body, "c"), raw=False)
    assert entries == body[0]


def test_handshake_digest_is_sha512_hex_of_the_concatenation():
    parts = (b"salt", b"host", b"nonce", b"key")
    assert _hexdigest(*parts) == hashlib.sha512(b"salthostnoncekey").hexdigest()


def sink(tmp_path, **kw) -> ForwardSink:
    return ForwardSink("f", "127.0.0.1", 9, Spool(tmp_path / "s", kw.pop("max_bytes", 1 << 20),
                                                  kw.pop("overflow", "drop_oldest")), **kw)


def test_backoff_grows_exponentially_up_to_the_cap(tmp_path):
    s = sink(tmp_path, retry_initial=0.5, retry_max=30.0)
    for failures in range(1, 60):
        cap = min(30.0, 0.5 * 2 ** (failures - 1))
        for _ in range(20):
            assert cap * 0.5 <= s._backoff(failures) <= cap
    s.close()


def test_record_selection(tmp_path):
    s = sink(tmp_path, alerts=False, telemetry=True)
    s.emit(an_alert())
    log = record.host_log(opened("/x"), HOST)
    s.emit(log)
    s.emit(record.system_event(HOST, "AlertThreshold", "m"))
    assert s.spool.records == 2  # the HostLog and the SystemEvent, not the alert
    s.close()


def test_unencodable_records_and_drops_are_counted_and_announced(tmp_path):
    notices = []
    s = sink(tmp_path, max_bytes=3000, overflow="drop_newest", clock=lambda: 0.0)  # time stands still
    s.on_notice = lambda origin, op, msg, data, extra: notices.append((origin, op, msg, data, extra))
    s.emit({"Type": "MatchedHostPolicy", "Bad": object()})  # msgpack cannot encode it
    assert s.errors == 1 and s.failed == 1
    for i in range(20):
        s.emit(an_alert(i))
    assert s.spool.dropped > 0 and s.failed == s.spool.dropped + 1
    assert len(notices) == 1  # one right away, then at most one per NOTICE_EVERY_S
    origin, op, _, data, extra = notices[0]
    assert origin is s and op == DROP_OPERATION and extra["DroppedRecords"] == 1 and "errors=1" in data
    s.close()
    assert len(notices) == 2 and sum(n[4]["DroppedRecords"] for n in notices) == s.failed
    assert notices[-1][4]["DroppedTotal"] == s.failed


def test_emit_never_raises_when_the_spool_is_closed(tmp_path):
    s = sink(tmp_path)
    s.spool.close()
    s.emit(an_alert())
    assert s.errors == 1


def cfg(text: str):
    (c,) = parse("sinks:\n  remote:\n  - " + text.replace("\n", "\n    ") + "\n", "c.yaml").remote_sinks
    return c


def test_build_reads_the_shared_key_from_a_private_file(tmp_path):
    key = tmp_path / "k"
    key.write_text("  the key \n")
    os.chmod(key, 0o644)
    c = cfg(f"type: forward\naddress: 127.0.0.1:1\nsharedKeyFile: {key}")
    with pytest.raises(KarmorError, match="readable by others .mode 0644.; chmod 600 it"):
        build(c, tmp_path / "state")
    os.chmod(key, 0o600)
    s = build(c, tmp_path / "state", self_hostname="h")
    try:
        assert isinstance(s, ForwardSink) and s._shared_key == b"the key" and s._hostname == "h"
        assert s.spool.directory == tmp_path / "state" / "spool" / "forward-127.0.0.1-1"
    finally:
        s.close()


def test_build_names_the_sink_in_start_errors(tmp_path):
    c = cfg(f"name: central\ntype: syslog\naddress: 127.0.0.1:1\ntls: {{enabled: true, caFile: {tmp_path}/nope.pem}}")
    with pytest.raises(KarmorError, match=f"sinks.remote central: cannot load tls.caFile {tmp_path}/nope.pem: No such file"):
        build(c, tmp_path / "state")
    # the spool it opened was released again
    build(cfg("name: central\ntype: syslog\naddress: 127.0.0.1:1"), tmp_path / "state").close()

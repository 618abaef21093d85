"""The syslog sink: RFC 5424 messages with octet-counted framing, checked on their own and
against a real rsyslogd (imtcp, plain and TLS through rsyslog-gnutls) on loopback, which
must receive them intact and parse them (header, structured data via mmpstrucdata, JSON)."""

from __future__ import annotations

import json
import re

import pytest

from karmor_host.alerts import record
from karmor_host.alerts.sinks.journald import field_value, summary
from karmor_host.alerts.sinks.remote import TLSSettings
from karmor_host.alerts.sinks.syslog import FACILITIES, SD_ID, SyslogSink, frame, message, structured_data
from karmor_host.policy.ruleset import Action
from tests.sinks.conftest import HOST, alert, wait_until
from tests.sinks.rsyslog import Rsyslog
from tests.unit.alerts.helpers import executed, file_rule, opened

HEADER = re.compile(r"^<(\d+)>1 (\S+) (\S+) (\S+) (\S+) (\S+) ")


def test_message_header_priority_and_framing():
    rec = alert(5)
    msg = message(rec, "structured", FACILITIES["auth"], procid=77)
    m = HEADER.match(msg.decode())
    assert m is not None
    assert m.groups() == (str(4 * 8 + 4), rec["UpdatedTime"], "web-1", "karmor-host", "77", "MatchedHostPolicy")
    crit = record.alert(opened("/etc/shadow"), file_rule("/etc/shadow", severity=9), HOST, "Block", "BPFLSM", "p")
    assert message(crit, "json", FACILITIES["local3"]).startswith(b"<%d>1 " % (19 * 8 + 2))
    notice = record.system_event(HOST, "AlertThreshold", "x")
    assert message(notice, "json", FACILITIES["auth"], procid=1).split(b" ")[5] == b"SystemEvent"
    # octet counting counts bytes, not characters
    body = "é".encode() * 3
    assert frame(body) == b"6 " + body


def test_structured_data_escapes_what_rfc5424_requires():
    rec = {"Resource": 'a "b" ]c\\d', "ATags": ["x", "y"], "n": 3, "Type": "HostLog"}
    assert structured_data(rec) == f'[{SD_ID} Resource="a \\"b\\" \\]c\\\\d" ATags="x,y" n="3" Type="HostLog"]'


def test_json_format_carries_the_record_as_the_message():
    rec = alert(9)
    msg = message(rec, "json", FACILITIES["auth"], procid=1).decode()
    head, sd, body = msg.split(" ", 7)[:6], msg.split(" ", 7)[6], msg.split(" ", 7)[7]
    assert head[5] == "MatchedHostPolicy" and sd == "-"
    assert json.loads(body) == rec


@pytest.fixture
def rsyslog(tmp_path):
    started: list[Rsyslog] = []

    def start(**kw) -> Rsyslog:
        rs = Rsyslog(tmp_path / f"rsyslog-{len(started)}", **kw)
        rs.start()
        started.append(rs)
        return rs

    yield start
    for rs in started:
        rs.stop()


def many_alerts(n: int) -> list[dict]:
    out = [alert(i) for i in range(n - 2)]
    # an exec with odd characters in its arguments, and a default-posture alert (empty fields)
    out.append(record.alert(executed("/usr/bin/printf", argv=("printf", 'say "hi" ]', "back\\slash", "ünï")),
                            file_rule("/usr/bin/printf", Action.BLOCK, policy="no-printf"), HOST,
                            "Audit (Block)", record.MONITOR_ENFORCER, "no-printf"))
    out.append(record.alert(opened("/srv/x", tgid=n), None, HOST, "Audit", record.MONITOR_ENFORCER, "DefaultPosture"))
    return out


def test_structured_messages_arrive_intact_in_rsyslog_and_parse(rsyslog, make_sink):
    rs = rsyslog()
    sink = make_sink(rs.port, SyslogSink, fmt="structured", facility="authpriv")
    records = many_alerts(300)
    for rec in records:
        sink.emit(rec)
    assert sink.wait_delivered(20), sink.stats()
    rows = rs.wait_for(len(records))
    assert len(rows) == len(records), rs.stderr()
    # byte for byte what we sent (rsyslog's raw message = the frame without its length)
    assert rs.raw() == [message(r, "structured", FACILITIES["authpriv"], sink._pid).decode() for r in records]
    for rec, row in zip(records, rows):
        assert row["appname"] == "karmor-host" and row["msgid"] == rec["Type"]
        assert row["hostname"] == rec["HostName"] and row["timereported"] == rec["UpdatedTime"]
        assert int(row["pri"]) // 8 == FACILITIES["authpriv"]
        assert row["sd"] == {SD_ID: {k: field_value(v) for k, v in rec.items()}}
        assert row["msg"] == summary(rec)
    assert sink.stats()["sent"] == len(records) and sink.duplicates == 0


def test_json_messages_parse_back_to_the_records(rsyslog, make_sink):
    rs = rsyslog()
    sink = make_sink(rs.port, SyslogSink, fmt="json")
    records = many_alerts(100)
    big = alert(10_000)
    big["Resource"] = "/data/" + "x" * 100_000  # far beyond a line-based syslog's limits
    records.append(big)
    for rec in records:
        sink.emit(rec)
    assert sink.wait_delivered(20), sink.stats()
    rows = rs.wait_for(len(records))
    assert [json.loads(row["msg"]) for row in rows] == records, rs.stderr()
    assert all(row["sd"] == {} for row in rows)


def test_tls_with_a_client_certificate(rsyslog, make_sink, pki):
    rs = rsyslog(ca=pki["ca"], server=pki["server"], require_client_cert=True)
    tls = TLSSettings(ca_file=str(pki["ca"].cert), cert_file=str(pki["client"].cert), key_file=str(pki["client"].key))
    sink = make_sink(rs.port, SyslogSink, tls=tls)
    records = many_alerts(200)
    for rec in records:
        sink.emit(rec)
    assert sink.wait_delivered(20), sink.stats()
    rows = rs.wait_for(len(records))
    assert [int(r["sd"][SD_ID]["HostPID"]) for r in rows] == [r["HostPID"] for r in records], rs.stderr()


def test_tls_with_the_wrong_ca_is_a_clear_error_and_sends_nothing(rsyslog, make_sink, pki):
    rs = rsyslog(ca=pki["ca"], server=pki["server"])
    sink = make_sink(rs.port, SyslogSink, tls=TLSSettings(ca_file=str(pki["other_ca"].cert)))
    sink.emit(alert(1))
    assert wait_until(lambda: sink.send_errors >= 2), sink.stats()
    assert sink.last_error.startswith("TLS certificate verification failed")
    assert rs.parsed() == [] and sink.spool.records == 1


def test_rsyslog_down_then_back_loses_nothing(rsyslog, make_sink):
    rs = rsyslog()
    sink = make_sink(rs.port, SyslogSink, retry_max=0.5)
    for i in range(50):
        sink.emit(alert(i))
    assert sink.wait_delivered(20) and len(rs.wait_for(50)) == 50
    rs.stop()
    for i in range(50, 250):
        sink.emit(alert(i))  # while it is down: spooled
    assert wait_until(lambda: not sink.connected and sink.send_errors > 0), sink.stats()
    assert sink.spool.records > 0
    rs.start(port=rs.port)
    assert sink.wait_delivered(30), sink.stats()
    rows = rs.wait_for(250)
    got = [int(r["sd"][SD_ID]["HostPID"]) for r in rows]
    assert set(got) == set(range(250)) and len(got) - 250 <= sink.duplicates

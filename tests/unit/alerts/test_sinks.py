"""Sinks without a journal: field names, priorities, summaries, failure counting, text format."""

from __future__ import annotations

import io
import json
import socket

import pytest
import structlog

from karmor_host.alerts import record
from karmor_host.alerts.record import HostInfo
from karmor_host.alerts.sinks import Sink
from karmor_host.alerts.sinks.journald import (
    JournaldSink,
    JournalLogProcessor,
    journal_field,
    journal_fields,
    priority,
    summary,
)
from karmor_host.alerts.sinks.stdout import StdoutSink, format_text
from karmor_host.policy.ruleset import Action

from .helpers import file_rule, opened

HOST = HostInfo("default", "web-1", "mid")


def an_alert(severity: int = 5, policy: str = "block-passwd-read") -> dict:
    r = file_rule("/etc/passwd", Action.BLOCK, policy=policy, severity=severity, tags=("T1", "T2"))
    ev = opened("/etc/passwd", retval=-13, tgid=123)
    return record.alert(ev, r, HOST, "Block", "BPFLSM", policy)


@pytest.mark.parametrize(
    "name, field",
    [
        ("PolicyName", "KARMOR_POLICY_NAME"),
        ("HostPID", "KARMOR_HOST_PID"),
        ("HostPPID", "KARMOR_HOST_PPID"),
        ("PPID", "KARMOR_PPID"),
        ("UID", "KARMOR_UID"),
        ("ATags", "KARMOR_ATAGS"),
        ("UpdatedTime", "KARMOR_UPDATED_TIME"),
        ("NodeID", "KARMOR_NODE_ID"),
        ("TTY", "KARMOR_TTY"),
        ("ParentProcessName", "KARMOR_PARENT_PROCESS_NAME"),
        ("MaxAlertsPerSec", "KARMOR_MAX_ALERTS_PER_SEC"),
    ],
)
def test_journal_field_names(name, field):
    assert journal_field(name) == field


@pytest.mark.parametrize(
    "severity, prio", [(10, 2), (9, 2), (8, 3), (7, 3), (6, 4), (5, 4), (4, 5), (3, 5), (2, 6), (1, 6)]
)
def test_priority_from_severity(severity, prio):
    assert priority(an_alert(severity)) == prio


def test_priority_of_other_records():
    default_posture = record.alert(opened("/x"), None, HOST, "Audit", "eBPF Monitor", "DefaultPosture")
    assert priority(default_posture) == 4
    assert priority(record.host_log(opened("/x"), HOST)) == 7
    assert priority(record.system_event(HOST, "AlertThreshold", "m")) == 4


def test_summary_lines():
    assert summary(an_alert()) == "block-passwd-read: Block File /etc/passwd by /usr/bin/cat (pid 123): Permission denied"
    log = record.host_log(opened("/etc/hosts", tgid=7), HOST)
    assert summary(log) == "HostLog: File /etc/hosts by /usr/bin/cat (pid 7): Passed"
    sysev = record.system_event(HOST, "AlertThreshold", "too\nmany")
    assert summary(sysev) == "SystemEvent AlertThreshold: too many"


def test_journal_fields_carry_every_record_field_and_the_json():
    rec = an_alert()
    fields = dict(f.split("=", 1) for f in journal_fields(rec))
    assert fields["SYSLOG_IDENTIFIER"] == "karmor-host"
    assert fields["PRIORITY"] == "4"
    assert fields["MESSAGE"] == summary(rec)
    assert fields["KARMOR_POLICY_NAME"] == "block-passwd-read"
    assert fields["KARMOR_HOST_PID"] == "123"
    assert fields["KARMOR_ATAGS"] == "T1,T2"
    assert fields["KARMOR_TAGS"] == "T1,T2"
    assert fields["KARMOR_SEVERITY"] == "5"
    assert json.loads(fields["KARMOR_RECORD_JSON"]) == rec
    assert {journal_field(k) for k in rec} <= set(fields)


class RecordingSendV:
    def __init__(self, fail: Exception | None = None) -> None:
        self.calls: list[tuple[str, ...]] = []
        self.fail = fail

    def __call__(self, *fields: str) -> None:
        if self.fail:
            raise self.fail
        self.calls.append(fields)


@pytest.fixture
def fake_journal_socket(tmp_path):
    path = tmp_path / "socket"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(str(path))
    yield str(path)
    s.close()


def test_journald_sink_sends_and_counts(fake_journal_socket):
    send = RecordingSendV()
    sink = JournaldSink(sendv=send, socket_path=fake_journal_socket)
    assert isinstance(sink, Sink)
    rec = an_alert()
    sink.emit(rec)
    assert sink.sent == 1 and sink.failed == 0
    assert send.calls == [tuple(journal_fields(rec))]


def test_journald_sink_missing_socket_is_counted_and_logged_once(tmp_path):
    out = io.StringIO()
    structlog.configure(processors=[structlog.processors.add_log_level, structlog.processors.JSONRenderer()],
                        logger_factory=structlog.PrintLoggerFactory(file=out))
    try:
        send = RecordingSendV()
        sink = JournaldSink(sendv=send, socket_path=str(tmp_path / "no-such-socket"))
        for _ in range(3):
            sink.emit(an_alert())  # no exception
        assert (sink.sent, sink.failed) == (0, 3)
        assert send.calls == []
        logged = [json.loads(line) for line in out.getvalue().splitlines()]
        assert [(e["event"], e["level"]) for e in logged] == [("journald_unreachable", "error")]
        assert "no-such-socket" in logged[0]["socket"]
    finally:
        structlog.reset_defaults()


def test_journald_sink_send_error_is_counted(fake_journal_socket):
    sink = JournaldSink(sendv=RecordingSendV(fail=ConnectionRefusedError(111, "refused")),
                        socket_path=fake_journal_socket)
    sink.emit(an_alert())
    sink.emit(an_alert())
    assert (sink.sent, sink.failed) == (0, 2)


def test_journal_log_processor(fake_journal_socket):
    send = RecordingSendV()
    proc = JournalLogProcessor(sendv=send, socket_path=fake_journal_socket)
    event = {"event": "policy_loaded", "level": "warning", "file": "/etc/karmor/policies/a.yaml", "rules": 3}
    assert proc(None, "warning", dict(event)) == event
    fields = dict(f.split("=", 1) for f in send.calls[0])
    assert fields["SYSLOG_IDENTIFIER"] == "karmor-host"
    assert fields["PRIORITY"] == "4"
    assert fields["KARMOR_LOG_EVENT"] == "policy_loaded"
    assert fields["KARMOR_LOG_FILE"] == "/etc/karmor/policies/a.yaml"
    assert fields["KARMOR_LOG_RULES"] == "3"
    assert fields["MESSAGE"] == "policy_loaded file=/etc/karmor/policies/a.yaml rules=3"
    assert "KARMOR_TYPE" not in fields  # never mistaken for a record
    only = JournalLogProcessor(sendv=send, socket_path=fake_journal_socket, passthrough=False)
    with pytest.raises(structlog.DropEvent):
        only(None, "error", {"event": "x"})
    assert dict(f.split("=", 1) for f in send.calls[1])["PRIORITY"] == "3"


def test_journal_log_processor_never_raises_without_journal(tmp_path):
    proc = JournalLogProcessor(sendv=RecordingSendV(), socket_path=str(tmp_path / "none"))
    assert proc(None, "info", {"event": "x"}) == {"event": "x"}
    assert (proc.sent, proc.failed) == (0, 1)


def test_stdout_json_lines():
    buf = io.StringIO()
    sink = StdoutSink(stream=buf)
    rec = an_alert()
    sink.emit(rec)
    sink.emit(rec)
    lines = buf.getvalue().splitlines()
    assert [json.loads(line) for line in lines] == [rec, rec]
    assert sink.sent == 2


def test_stdout_counts_a_closed_stream():
    buf = io.StringIO()
    buf.close()
    sink = StdoutSink(stream=buf)
    sink.emit(an_alert())
    assert (sink.sent, sink.failed) == (0, 1)


def test_text_block_like_karmor_logs():
    rec = an_alert()
    text = format_text(rec)
    lines = text.splitlines()
    assert lines[0] == f"== Alert / {rec['UpdatedTime']} =="
    assert "PolicyName: block-passwd-read" in lines
    assert "Tags: T1,T2" in lines
    assert "Action: Block" in lines
    assert "HostPID: 123" in lines
    assert "TTY: pts0" in lines
    # in the header or redundant, and empty fields (Message) are left out
    assert not any(line.startswith(("Timestamp:", "UpdatedTime:", "ATags:", "Message:")) for line in lines)
    assert format_text(record.host_log(opened("/x"), HOST)).startswith("== Log / ")
    assert format_text(record.system_event(HOST, "AlertThreshold", "m")).startswith("== SystemEvent / ")


@pytest.mark.parametrize("severity, prio", [(9, 2), (7, 3), (5, 4), (3, 5), (1, 6)])
def test_network_policy_alerts_are_prioritised_by_severity_too(severity, prio):
    rec = dict(an_alert(severity), Type=record.MATCHED_NETWORK_POLICY, Operation="NetworkFirewall")
    assert priority(rec) == prio


def test_logs_alert_type_covers_both_alert_kinds():
    from karmor_host.alerts.journal_reader import TYPES

    assert set(TYPES["alert"]) == {"MatchedHostPolicy", "MatchedNetworkPolicy"}
    assert set(TYPES["alert"]) <= set(TYPES["all"])

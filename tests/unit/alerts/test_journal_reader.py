"""`logs` query building and time parsing, against a stand-in for systemd.journal.Reader."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from karmor_host.alerts import journal_reader
from karmor_host.alerts.journal_reader import Query, open_reader, parse_since

NOW = datetime(2024, 6, 1, 16, 39, 49, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("now", NOW),
        ("10m", NOW - timedelta(minutes=10)),
        ("-10min", NOW - timedelta(minutes=10)),
        ("2h ago", NOW - timedelta(hours=2)),
        ("3 days ago", NOW - timedelta(days=3)),
        ("45s", NOW - timedelta(seconds=45)),
        ("@1717259989", datetime(2024, 6, 1, 16, 39, 49, tzinfo=timezone.utc)),
        ("2024-06-01T16:00:00Z", datetime(2024, 6, 1, 16, 0, tzinfo=timezone.utc)),
        ("2024-06-01T18:00:00+02:00", datetime(2024, 6, 1, 16, 0, tzinfo=timezone.utc)),
    ],
)
def test_parse_since(text, expected):
    assert parse_since(text, now=NOW) == expected


def test_parse_since_local_and_days():
    naive = parse_since("2024-06-01 16:39:49", now=NOW)
    assert naive.tzinfo is not None  # local time, made explicit
    assert naive.replace(tzinfo=None) == datetime(2024, 6, 1, 16, 39, 49)
    today = parse_since("today", now=NOW)
    assert (today.hour, today.minute, today.second) == (0, 0, 0)
    assert parse_since("yesterday", now=NOW) == today - timedelta(days=1)


def test_parse_since_rejects_garbage():
    with pytest.raises(ValueError, match="cannot read time 'soonish'"):
        parse_since("soonish", now=NOW)


class FakeReader:
    def __init__(self, entries=()) -> None:
        self.calls: list[tuple] = []
        self._entries = list(entries)

    def add_match(self, **kw):
        self.calls.append(("match", kw))

    def seek_realtime(self, when):
        self.calls.append(("seek_realtime", when))

    def seek_tail(self):
        self.calls.append(("seek_tail",))

    def get_previous(self):
        self.calls.append(("get_previous",))
        return {}

    def get_next(self):
        return self._entries.pop(0) if self._entries else {}


def test_open_reader_matches():
    r = FakeReader()
    open_reader(Query(policy="p1", operation="File", kind="alert", since=NOW), factory=lambda: r)
    assert r.calls == [
        ("match", {"SYSLOG_IDENTIFIER": "karmor-host"}),
        ("match", {"KARMOR_TYPE": "MatchedHostPolicy"}),
        ("match", {"KARMOR_TYPE": "MatchedNetworkPolicy"}),
        ("match", {"KARMOR_POLICY_NAME": "p1"}),
        ("match", {"KARMOR_OPERATION": "File"}),
        ("seek_realtime", NOW),
    ]


def test_open_reader_all_types_and_follow_from_the_tail():
    r = FakeReader()
    open_reader(Query(), follow=True, factory=lambda: r)
    assert r.calls == [
        ("match", {"SYSLOG_IDENTIFIER": "karmor-host"}),
        ("match", {"KARMOR_TYPE": "MatchedHostPolicy"}),
        ("match", {"KARMOR_TYPE": "MatchedNetworkPolicy"}),
        ("match", {"KARMOR_TYPE": "HostLog"}),
        ("match", {"KARMOR_TYPE": "SystemEvent"}),
        ("seek_tail",),
        ("get_previous",),
    ]


def test_entries_yield_record_json_and_skip_other_entries():
    r = FakeReader([
        {"KARMOR_RECORD_JSON": '{"Type":"HostLog"}'},
        {"MESSAGE": "agent log line"},
        {"KARMOR_RECORD_JSON": b'{"Type":"SystemEvent"}'},
    ])
    assert list(journal_reader.records(r)) == [{"Type": "HostLog"}, {"Type": "SystemEvent"}]

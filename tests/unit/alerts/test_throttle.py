"""Throttling with a fake clock: limit, quiet period, counts reported."""

from __future__ import annotations

from karmor_host.alerts.record import HostInfo
from karmor_host.alerts.throttle import Throttle


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def offer_many(t: Throttle, n: int, policy: str = "p"):
    results = [t.offer(policy) for _ in range(n)]
    return [ok for ok, _ in results], [n for _, ns in results for n in ns]


def test_limit_per_second_then_one_threshold_notice():
    clock = FakeClock()
    t = Throttle(max_per_second=10, quiet_seconds=30, clock=clock)
    passed, notices = offer_many(t, 10)
    assert passed == [True] * 10 and notices == []
    ok, notices = t.offer("p")
    assert ok is False
    assert [(n.started, n.max_per_second, n.quiet_seconds) for n in notices] == [(True, 10, 30)]
    passed, notices = offer_many(t, 50)
    assert not any(passed) and notices == []  # only one announcement per quiet period
    assert t.quiet and t.suppressed_total == 51


def test_new_second_new_budget():
    clock = FakeClock()
    t = Throttle(max_per_second=3, quiet_seconds=30, clock=clock)
    assert offer_many(t, 3)[0] == [True] * 3
    clock.now += 1.0
    assert offer_many(t, 3)[0] == [True] * 3
    assert not t.quiet and t.suppressed_total == 0


def test_quiet_period_end_reports_counts_per_policy():
    clock = FakeClock()
    t = Throttle(max_per_second=2, quiet_seconds=30, clock=clock)
    offer_many(t, 2, "a")
    offer_many(t, 3, "a")  # 1st over the limit trips; all three suppressed
    offer_many(t, 4, "b")
    clock.now += 29.9
    assert t.poll() == []
    assert t.offer("b")[0] is False
    clock.now += 0.1
    [end] = t.poll()
    assert (end.started, end.suppressed, end.by_policy) == (False, 8, {"a": 3, "b": 5})
    assert not t.quiet
    assert t.poll() == []  # reported once
    # after the quiet period alerts pass again, and totals are kept
    assert t.offer("a") == (True, [])
    assert t.suppressed_total == 8 and dict(t.suppressed_by_policy) == {"a": 3, "b": 5}
    assert t.quiet_periods == 1


def test_end_notice_arrives_with_the_next_alert_too():
    clock = FakeClock()
    t = Throttle(max_per_second=1, quiet_seconds=5, clock=clock)
    t.offer("a")
    t.offer("a")
    clock.now += 6
    ok, notices = t.offer("c")
    assert ok is True
    assert [(n.started, n.suppressed) for n in notices] == [(False, 1)]


def test_disabled_passes_everything():
    t = Throttle(max_per_second=1, quiet_seconds=5, enabled=False, clock=FakeClock())
    assert offer_many(t, 100)[0] == [True] * 100
    assert t.suppressed_total == 0


def test_notice_records():
    host = HostInfo("default", "h", "id")
    clock = FakeClock()
    t = Throttle(max_per_second=1, quiet_seconds=30, clock=clock)
    t.offer("x")
    _, [start] = t.offer("x")
    rec = start.record(host, ts_ns=1_717_259_989_000_000_000)
    assert rec == {
        "Timestamp": 1717259989,
        "UpdatedTime": "2024-06-01T16:39:49.000000Z",
        "ClusterName": "default",
        "HostName": "h",
        "NodeID": "id",
        "Type": "SystemEvent",
        "Operation": "AlertThreshold",
        "Message": "Alert rate above 1 per second: alerts are suppressed for 30 s and counted",
        "Data": "throttle=start max_per_second=1 quiet_seconds=30",
        "MaxAlertsPerSec": 1,
        "DroppingAlertsInterval": 30,
    }
    t.offer("y")
    clock.now += 30
    [end] = t.poll()
    rec = end.record(host, ts_ns=1_717_259_989_000_000_000)
    assert rec["Operation"] == "AlertThreshold" and rec["Type"] == "SystemEvent"
    assert rec["Message"] == "Alert throttling ended: 2 alerts suppressed in 30 s (x=1, y=1)"
    assert rec["Data"] == "throttle=end suppressed=2"
    assert (rec["SuppressedAlerts"], rec["SuppressedByPolicy"]) == (2, {"x": 1, "y": 1})

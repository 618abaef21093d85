"""The pipeline's glue: records per decision, telemetry routing, throttling, counters, swaps."""

from __future__ import annotations

import threading

from karmor_host.alerts.match import Matcher
from karmor_host.alerts.pipeline import AlertPipeline
from karmor_host.alerts.record import HostInfo
from karmor_host.alerts.sinks.base import CountingSink
from karmor_host.alerts.throttle import Throttle
from karmor_host.kernel.events import EventKind
from karmor_host.policy.ruleset import Action, Operation, RuleSet

from .helpers import event, executed, file_rule, opened

HOST = HostInfo("default", "h", "id")


class ListSink(CountingSink):
    def __init__(self, name: str, telemetry: bool, fail: bool = False) -> None:
        super().__init__(telemetry=telemetry)
        self.name = name
        self.records: list[dict] = []
        self.fail = fail

    def _write(self, record: dict) -> None:
        if self.fail:
            raise OSError("down")
        self.records.append(record)


class RaisingSink(ListSink):
    def emit(self, record: dict) -> None:  # a sink that breaks the "never raise" contract
        raise RuntimeError("bug")


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def matcher(*rules, can_block=False) -> Matcher:
    return Matcher(RuleSet(rules=rules), can_block)


def pipeline(m: Matcher, *sinks, **kw) -> AlertPipeline:
    throttle = kw.pop("throttle", None) or Throttle(clock=FakeClock())
    return AlertPipeline(m, throttle, sinks, HOST, **kw)


def test_alerts_reach_every_sink_and_are_counted_per_policy():
    j, out = ListSink("journald", telemetry=False), ListSink("stdout", telemetry=True)
    p = pipeline(matcher(file_rule("/etc/shadow", policy="shadow"),
                         file_rule("/etc/", Action.AUDIT, policy="etc", recursive=True)), j, out)
    p.handle(opened("/etc/shadow"))
    p.handle(opened("/etc/hosts"))
    p.handle(opened("/tmp/nothing"))
    assert [(r["PolicyName"], r["Action"], r["Enforcer"]) for r in j.records] == [
        ("shadow", "Audit (Block)", "eBPF Monitor"),
        ("etc", "Audit", "eBPF Monitor"),
        ("etc", "Audit", "eBPF Monitor"),
    ]
    assert out.records == j.records
    s = p.stats()
    assert s["events"] == 3 and s["alerts"] == 3
    assert s["per_policy"] == {"etc": 2, "shadow": 1}
    assert s["sinks"] == {"journald": {"sent": 3, "failed": 0}, "stdout": {"sent": 3, "failed": 0}}


def test_enforced_alerts_name_the_enforcer():
    sink = ListSink("s", telemetry=False)
    p = pipeline(matcher(file_rule("/etc/shadow", policy="shadow"), can_block=True), sink, enforcer="BPFLSM")
    p.handle(opened("/etc/shadow", retval=-13))
    [rec] = sink.records
    assert (rec["Action"], rec["Enforcer"], rec["Result"]) == ("Block", "BPFLSM", "Permission denied")


def test_telemetry_only_for_chosen_categories_and_sinks():
    j, out = ListSink("journald", telemetry=False), ListSink("stdout", telemetry=True)
    p = pipeline(matcher(file_rule("/etc/shadow", policy="shadow")), j, out,
                 telemetry={"process", Operation.NETWORK})
    p.handle(executed("/usr/bin/true"))
    p.handle(event(EventKind.FORK))
    p.handle(event(EventKind.CONNECT, family=2, sock_type=1, daddr="1.2.3.4", dport=80))
    p.handle(opened("/etc/hosts"))  # file telemetry not chosen
    p.handle(opened("/etc/shadow"))  # an alert, never also a HostLog
    assert [(r["Type"], r["Operation"]) for r in out.records] == [
        ("HostLog", "Process"), ("HostLog", "Process"), ("HostLog", "Network"),
        ("MatchedHostPolicy", "File"),
    ]
    assert [r["Type"] for r in j.records] == ["MatchedHostPolicy"]
    assert p.stats()["host_logs"] == 3


def test_throttling_in_the_pipeline():
    clock = FakeClock()
    sink = ListSink("s", telemetry=False)
    p = pipeline(matcher(file_rule("/etc/shadow", policy="shadow")), sink,
                 throttle=Throttle(max_per_second=3, quiet_seconds=30, clock=clock))
    for _ in range(10):
        p.handle(opened("/etc/shadow"))
    types = [(r["Type"], r.get("PolicyName", r.get("Data"))) for r in sink.records]
    assert types == [("MatchedHostPolicy", "shadow")] * 3 + [
        ("SystemEvent", "throttle=start max_per_second=3 quiet_seconds=30")
    ]
    s = p.stats()
    assert (s["alerts"], s["suppressed"], s["suppressed_by_policy"], s["throttled"]) == (
        3, 7, {"shadow": 7}, True
    )
    clock.now += 30
    p.tick()  # no alert needed to close the quiet period
    end = sink.records[-1]
    assert (end["Type"], end["Operation"], end["SuppressedAlerts"]) == ("SystemEvent", "AlertThreshold", 7)
    assert p.stats()["throttled"] is False and p.stats()["system_events"] == 2


def test_sink_failures_are_counted_and_do_not_stop_others():
    bad, broken, good = ListSink("bad", False, fail=True), RaisingSink("broken", False), ListSink("good", False)
    p = pipeline(matcher(file_rule("/etc/shadow")), bad, broken, good)
    p.handle(opened("/etc/shadow"))
    p.handle(opened("/etc/shadow"))
    assert len(good.records) == 2
    sinks = p.stats()["sinks"]
    assert sinks["bad"] == {"sent": 0, "failed": 2}
    assert sinks["broken"] == {"sent": 0, "failed": 2}
    assert sinks["good"] == {"sent": 2, "failed": 0}


def test_bad_event_is_counted_not_raised():
    sink = ListSink("s", False)
    p = pipeline(matcher(file_rule("/etc/shadow")), sink)
    p.handle(opened(None))  # a path that is not a string breaks matching
    p.handle(opened("/etc/shadow"))
    assert p.stats()["errors"] == 1 and len(sink.records) == 1


def test_swap_matcher():
    sink = ListSink("s", False)
    p = pipeline(matcher(file_rule("/etc/a", policy="old")), sink)
    p.handle(opened("/etc/a"))
    new = matcher(file_rule("/etc/b", policy="new"))
    p.swap_matcher(new)
    assert p.matcher is new
    p.handle(opened("/etc/a"))
    p.handle(opened("/etc/b"))
    assert [r["PolicyName"] for r in sink.records] == ["old", "new"]


class GateSink(ListSink):
    """Holds the worker inside emit() until released, so the queue fills deterministically."""

    def __init__(self) -> None:
        super().__init__("gate", False)
        self.entered = threading.Event()
        self.release = threading.Event()

    def _write(self, record: dict) -> None:
        self.entered.set()
        self.release.wait(10)
        super()._write(record)


def test_threaded_mode_bounded_queue_counts_drops():
    sink = GateSink()
    p = pipeline(matcher(file_rule("/etc/shadow", policy="shadow")), sink, queue_size=2,
                 throttle=Throttle(max_per_second=1000, clock=FakeClock()))
    p.start()
    try:
        p.handle(opened("/etc/shadow"))
        assert sink.entered.wait(10)  # the worker holds event 1; the queue is empty
        for _ in range(5):
            p.handle(opened("/etc/shadow"))  # 2 fit, 3 dropped
        s = p.stats()
        assert (s["queue_drops"], s["queue_depth"]) == (3, 2)
    finally:
        sink.release.set()
        p.stop()
    s = p.stats()
    assert (s["events"], s["alerts"], s["queue_drops"], s["queue_depth"]) == (3, 3, 3, 0)
    assert len(sink.records) == 3


def test_from_config_swap_ruleset_and_reconfigure():
    from dataclasses import replace

    from karmor_host.alerts.sinks.journald import JournaldSink
    from karmor_host.config import Config, JournaldSinkConfig, ThrottleConfig
    from karmor_host.policy.ruleset import Category, Posture

    cfg = Config(visibility=frozenset({"file"}),
                 throttle=ThrottleConfig(enabled=True, max_per_second=2, quiet_seconds=7))
    default = AlertPipeline.from_config(cfg, HOST)
    try:
        assert [type(s) for s in default.sinks] == [JournaldSink]
        assert default.sinks[0].telemetry is False  # HostLog to journald is opt-in
    finally:
        default.close()
    quiet = AlertPipeline.from_config(replace(cfg, journald=JournaldSinkConfig(enabled=False)), HOST)
    quiet.close()
    assert quiet.sinks == []

    sink = ListSink("s", telemetry=True)
    p = AlertPipeline.from_config(cfg, HOST, sinks=[sink], queue_size=0)  # synchronous for the test
    assert (p.throttle.max_per_second, p.throttle.quiet_seconds, p.telemetry) == (2, 7, {"file"})
    p.handle(opened("/etc/shadow"))
    assert [r["Type"] for r in sink.records] == ["HostLog"]  # empty rule set until applied
    rs = RuleSet(rules=(file_rule("/etc/shadow", policy="shadow"),),
                 postures={c: Posture.AUDIT for c in Category})
    p.swap_ruleset(rs)
    assert p.matcher.ruleset is rs
    p.handle(opened("/etc/shadow"))
    assert sink.records[-1]["PolicyName"] == "shadow"

    p.reconfigure(replace(cfg, visibility=frozenset({"process"}), cluster="prod",
                          throttle=ThrottleConfig(enabled=False, max_per_second=50, quiet_seconds=1)))
    assert (p.throttle.enabled, p.throttle.max_per_second, p.telemetry) == (False, 50, {"process"})
    p.handle(opened("/etc/shadow"))
    assert sink.records[-1]["ClusterName"] == "prod"

"""The acceptance scenario: the collector is killed -9 in the middle of a stream of alerts,
stays down for 30 s and comes back; every alert arrives, repeats only where an ack was lost
and never more than the sink counted, and the journal (the other sink) never waited."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

from karmor_host.alerts.match import Matcher
from karmor_host.alerts.pipeline import AlertPipeline
from karmor_host.alerts.throttle import Throttle
from karmor_host.policy.ruleset import RuleSet
from tests.sinks.conftest import HOST, RULE, ListSink, wait_until
from tests.sinks.fluent_receiver import read_out
from tests.unit.alerts.helpers import opened

REPO = Path(__file__).resolve().parents[2]
DOWN_SECONDS = 30


class ReceiverProcess:
    """tests.sinks.fluent_receiver in its own process, so that it can really be killed -9."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.port = 0
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.sinks.fluent_receiver", "--port", str(self.port), "--out", str(self.out)],
            cwd=REPO, stdout=subprocess.PIPE, text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line.startswith("listening "), line
        self.port = int(line.split()[1])

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()  # SIGKILL: no goodbye, unread data and unsent acks are lost
        self.proc.wait()

    def ids(self) -> Counter[int]:
        return Counter(row["record"]["HostPID"] for row in read_out(self.out))


class Feeder(threading.Thread):
    """The kernel side: events at a steady pace into the pipeline, from another thread."""

    def __init__(self, pipeline: AlertPipeline, per_tick: int = 20, tick: float = 0.01) -> None:
        super().__init__(daemon=True)
        self.pipeline, self.per_tick, self.tick = pipeline, per_tick, tick
        self.count = 0
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            for _ in range(self.per_tick):
                self.pipeline.handle(opened(f"/data/file-{self.count}", tgid=self.count, ppid=1))
                self.count += 1
            time.sleep(self.tick)


def test_collector_killed_for_30_seconds_mid_stream_loses_no_alert(tmp_path, make_sink):
    rx = ReceiverProcess(tmp_path / "received.jsonl")
    rx.start()
    sink = make_sink(rx.port, retry_max=1.0, send_timeout=2.0)
    journal = ListSink()
    pipeline = AlertPipeline(Matcher(RuleSet(rules=(RULE,)), False), Throttle(enabled=False),
                             [journal, sink], HOST, queue_size=100_000)
    sink.on_notice = pipeline.sink_notice
    pipeline.start()
    feeder = Feeder(pipeline)
    feeder.start()
    try:
        assert wait_until(lambda: sink.sent >= 2000, timeout=30), sink.stats()
        rx.kill()  # mid-stream: the feeder keeps going, batches are in flight
        killed_at = time.monotonic()
        at_kill = len(journal.records)
        assert wait_until(lambda: not sink.connected and sink.spool.records > 500, timeout=10), sink.stats()
        while time.monotonic() - killed_at < DOWN_SECONDS:
            time.sleep(0.5)
        # the journal went on receiving every alert while the collector was gone
        assert len(journal.records) > at_kill + 1000
        down = pipeline.stats()["sinks"][sink.name]
        assert down["connected"] is False and down["spooled"] > 1000 and down["send_errors"] > 0
        rx.start()  # the same port, the same output file
        assert wait_until(lambda: sink.connected, timeout=10), sink.stats()
        time.sleep(1.0)  # a little more stream after the restart
    finally:
        feeder.halt.set()
        feeder.join()
    pipeline.stop()
    total = feeder.count
    assert sink.wait_delivered(120), sink.stats()
    rx.kill()
    ids = rx.ids()
    missing = set(range(total)) - set(ids)
    assert not missing, f"{len(missing)} alerts lost, e.g. {sorted(missing)[:10]}"
    assert set(ids) == set(range(total))
    repeats = sum(n - 1 for n in ids.values())
    assert repeats <= sink.duplicates, (repeats, sink.stats())
    assert len(journal.records) == total and sink.sent >= total
    stats = pipeline.stats()
    assert stats["queue_drops"] == 0 and stats["sinks"][sink.name]["failed"] == 0
    print(f"\n{total} alerts, {DOWN_SECONDS}s outage: {repeats} received twice,"
          f" {sink.duplicates} counted as possible duplicates, {sink.connects} connections")

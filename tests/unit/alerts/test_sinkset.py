"""Reloading the sinks: which are kept, replaced, removed and added (sinkset.diff), and what
AlertPipeline.reconfigure does with real sinks and spools: kept ones untouched, a replaced
one hands its spool to its successor, a removed one is closed with its spool left on disk,
a sink that cannot be built refuses the whole change. No collector listens: every record
stays in a spool, where it can be counted."""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from karmor_host.alerts import record
from karmor_host.alerts.pipeline import AlertPipeline, ReadyAlert
from karmor_host.alerts.record import HostInfo
from karmor_host.alerts.sinks.forward import ForwardSink
from karmor_host.alerts.sinks.journald import JournaldSink
from karmor_host.alerts.sinks.syslog import SyslogSink
from karmor_host.alerts.sinkset import JOURNALD, diff, wanted
from karmor_host.alerts.spool import Spool
from karmor_host.config import Config, parse
from karmor_host.errors import KarmorError

HOST = HostInfo("default", "web-1", "mid")


def closed_port() -> int:
    """A loopback port nothing listens on: the sinks keep everything spooled."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


PORT_A, PORT_B = closed_port(), closed_port()


def sinks_yaml(*sinks: str, journald: bool = False) -> str:
    text = f"sinks:\n  journald: {{enabled: {str(journald).lower()}}}\n"
    return text + (("  remote:\n" + "".join(sinks)) if sinks else "  remote: []\n")


def config(*sinks: str, journald: bool = False) -> Config:
    return parse(sinks_yaml(*sinks, journald=journald))


def forward(name: str, port: int, extra: str = "") -> str:
    return (f"  - name: {name}\n    type: forward\n    address: 127.0.0.1:{port}\n"
            f"    retryMaxSeconds: 1\n{extra}")


def syslog(name: str, port: int) -> str:
    return f"  - name: {name}\n    type: syslog\n    address: 127.0.0.1:{port}\n    retryMaxSeconds: 1\n"


def system_event(i: int) -> ReadyAlert:
    rec = record.system_event(HOST, "Test", f"record {i}", data=f"i={i}")
    return ReadyAlert(rec, "", throttled=False)


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def pipelines():
    made: list[AlertPipeline] = []
    yield made
    for p in made:
        p.close()


def start(pipelines: list, cfg, state: Path, queue_size: int = 0) -> AlertPipeline:
    p = AlertPipeline.from_config(cfg, HOST, queue_size=queue_size, state_dir=state)
    pipelines.append(p)
    return p


def by_name(p: AlertPipeline) -> dict:
    return {s.name: s for s in p.sinks}


def spooled_on_disk(directory: Path) -> int:
    spool = Spool(directory, 1 << 20)
    try:
        return spool.records
    finally:
        spool.close()


# --- the diff alone ---------------------------------------------------------------------------

def test_diff_sorts_sinks_into_kept_removed_replaced_added():
    old = wanted(config(forward("a", PORT_A), forward("b", PORT_A), syslog("c", PORT_A), journald=True), "h")
    new = wanted(config(forward("a", PORT_A), forward("b", PORT_B), forward("d", PORT_A)), "h")
    d = diff(old, new)
    assert (d.kept, d.removed, d.replaced, d.added) == (("a",), (JOURNALD, "c"), ("b",), ("d",))
    assert old["b"].changes(new["b"]) == ["address"]
    assert new["b"].destination == f"forward 127.0.0.1:{PORT_B}"
    assert diff(new, new).kept == tuple(new) and not diff(new, new).replaced


def test_every_setting_and_the_files_behind_it_count_as_a_change(tmp_path):
    key = tmp_path / "key"
    key.write_text("k1\n")
    os.chmod(key, 0o600)
    base = wanted(config(forward("a", PORT_A, f"    sharedKeyFile: {key}\n")), "h")
    spool = wanted(config(forward("a", PORT_A, f"    sharedKeyFile: {key}\n    spool: {{maxBytes: 131072}}\n")), "h")
    assert base["a"].changes(spool["a"]) == ["spool"]
    assert base["a"].changes(wanted(config(forward("a", PORT_A, f"    sharedKeyFile: {key}\n")), "h2")["a"]) \
        == ["identity.hostname"]  # the name a forward handshake proves
    key.write_text("k2\n")  # a new key under the same path
    rotated = wanted(config(forward("a", PORT_A, f"    sharedKeyFile: {key}\n")), "h")
    assert base["a"].changes(rotated["a"]) == ["file contents"]
    assert "k1" not in repr(base["a"]) and "k2" not in repr(rotated["a"])  # digests only
    # syslog does not use the host name: a new one does not replace it
    assert wanted(config(syslog("s", PORT_A)), "h") == wanted(config(syslog("s", PORT_A)), "h2")


# --- the pipeline with real sinks ---------------------------------------------------------------

def test_unchanged_sinks_keep_running_untouched(pipelines, state):
    p = start(pipelines, config(forward("a", PORT_A), syslog("s", PORT_A)), state)
    a, s = by_name(p)["a"], by_name(p)["s"]
    sender = a._thread
    p.submit(system_event(1))
    with capture_logs() as logs:
        p.reconfigure(parse("throttle: {maxAlertsPerSecond: 50}\n"
                            + sinks_yaml(forward("a", PORT_A), syslog("s", PORT_B))))
    assert by_name(p)["a"] is a and a._thread is sender and sender.is_alive() and not a.spool._closed
    assert by_name(p)["s"] is not s and p.throttle.max_per_second == 50
    p.submit(system_event(2))
    assert a.spool.records == 2
    assert [e["sink"] for e in logs if e["event"].startswith("sink_")] == ["s"]


def test_a_changed_sink_is_replaced_on_the_same_spool_with_its_records(pipelines, state):
    p = start(pipelines, config(forward("a", PORT_A), syslog("s", PORT_A)), state)
    old, kept = by_name(p)["a"], by_name(p)["s"]
    for i in range(3):
        p.submit(system_event(i))
    with capture_logs() as logs:
        p.reconfigure(config(forward("a", PORT_B, "    spool: {maxBytes: 131072, overflow: drop_newest}\n"),
                             syslog("s", PORT_A)))
    new = by_name(p)["a"]
    assert new is not old and isinstance(new, ForwardSink) and new.port == PORT_B
    assert by_name(p)["s"] is kept
    assert new.spool is old.spool and new.spool.records == 3  # spooled for the old address, sent by the new
    assert (new.spool.max_bytes, new.spool.overflow) == (131072, "drop_newest")
    assert old._thread is None and new._thread is not None and new._thread.is_alive()
    p.submit(system_event(3))
    assert new.spool.records == 4 and old.errors == 0
    [line] = [e for e in logs if e["event"].startswith("sink_")]
    assert line == {"event": "sink_replaced", "sink": "a", "destination": f"forward 127.0.0.1:{PORT_B}",
                    "was": f"forward 127.0.0.1:{PORT_A}", "changed": ["address", "spool"], "log_level": "info"}
    p.close()
    assert spooled_on_disk(state / "spool" / "a") == 4


def test_a_removed_sink_is_closed_with_its_spool_kept_and_a_new_one_started(pipelines, state):
    p = start(pipelines, config(forward("a", PORT_A)), state)
    old = by_name(p)["a"]
    p.submit(system_event(1))
    with capture_logs() as logs:
        p.reconfigure(config(forward("b", PORT_A), journald=True))
    assert [s.name for s in p.sinks] == [JOURNALD, "b"] and isinstance(p.sinks[0], JournaldSink)
    assert old.spool._closed and old._thread is None
    assert spooled_on_disk(state / "spool" / "a") == 1  # kept on disk as at a stop
    assert by_name(p)["b"]._thread.is_alive()
    assert [(e["event"], e["sink"], e["destination"]) for e in logs if e["event"].startswith("sink_")] == [
        ("sink_removed", "a", f"forward 127.0.0.1:{PORT_A}"),
        ("sink_added", JOURNALD, JOURNALD),
        ("sink_added", "b", f"forward 127.0.0.1:{PORT_A}"),
    ]
    assert set(p.stats()["sinks"]) == {JOURNALD, "b"}  # what `karmor-host status` lists
    p.reconfigure(config())
    assert p.sinks == []


def test_a_sink_that_cannot_be_built_refuses_the_whole_change(pipelines, state, tmp_path):
    p = start(pipelines, config(forward("a", PORT_A), forward("b", PORT_A)), state)
    before = list(p.sinks)
    p.submit(system_event(1))
    bad_ca = "    tls: {enabled: true, caFile: /nonexistent/ca.pem}\n"
    with pytest.raises(KarmorError, match="sinks.remote c: cannot load tls.caFile /nonexistent/ca.pem"):
        p.reconfigure(config(forward("a", PORT_B), forward("c", PORT_A, bad_ca)))
    assert p.sinks == before and all(s._thread.is_alive() for s in before)
    # "a" was built on the spool of the running "a" before "c" failed: that spool is still the running one's
    assert not before[0].spool._closed and before[0]._owns_spool
    p.submit(system_event(2))
    assert before[0].spool.records == 2 and before[0].errors == 0
    # a spool another running sink holds is refused the same way, by its lock
    clash = f"    spool: {{dir: {state / 'spool' / 'b'}}}\n"
    with pytest.raises(KarmorError, match="in use"):
        p.reconfigure(config(forward("a", PORT_A), forward("b", PORT_A), forward("c", PORT_A, clash)))
    assert p.sinks == before


def test_a_type_change_is_refused_while_the_spool_holds_the_old_format(pipelines, state):
    p = start(pipelines, config(forward("a", PORT_A)), state)
    p.submit(system_event(1))
    with pytest.raises(KarmorError, match="type forward -> syslog, but its spool .* still holds 1 forward records"):
        p.reconfigure(config(syslog("a", PORT_A)))
    assert isinstance(by_name(p)["a"], ForwardSink)
    empty = start(pipelines, config(forward("e", PORT_A)), state)
    empty.reconfigure(config(syslog("e", PORT_A)))
    assert isinstance(by_name(empty)["e"], SyslogSink)


def test_no_record_is_lost_or_doubled_while_the_worker_emits_during_reloads(pipelines, state):
    """The worker thread sends all the time; the main thread replaces "a" (address), removes
    and re-adds "b" (same spool directory, so its spool is closed and opened again). Every
    record is in the spool of "a" exactly once, none twice in that of "b", and no record went
    to a closed spool."""
    configs = [config(forward("a", PORT_A), forward("b", PORT_A)),
               config(forward("a", PORT_B)),
               config(forward("a", PORT_A), forward("b", PORT_A))]
    p = start(pipelines, configs[0], state, queue_size=100_000)
    total, stop = 0, threading.Event()
    gone: list = []

    def produce() -> None:
        nonlocal total
        while not stop.is_set():
            p.submit(system_event(total))
            total += 1
            time.sleep(0.0002)  # well below what the worker sends: no queue drops

    producer = threading.Thread(target=produce)
    producer.start()
    for i in range(10):
        mark = total
        time.sleep(0.05)  # records flow between and during the reloads
        while total < mark + 50:
            time.sleep(0.01)
        gone += list(p.sinks)
        p.reconfigure(configs[1 + i % 2])
    time.sleep(0.05)
    stop.set()
    producer.join()
    p.stop()
    assert p.stats()["queue_drops"] == 0 and not p.sink_errors
    assert all(s.errors == 0 for s in gone + list(p.sinks))  # none emitted to a closed spool
    p.close()
    assert sorted(spooled_data(state / "spool" / "a")) == sorted(f"i={i}" for i in range(total))
    # "b" missed what came while it was removed; no record is in its spool twice
    seen = spooled_data(state / "spool" / "b")
    assert len(seen) == len(set(seen)) and 0 < len(seen) < total


def spooled_data(directory: Path) -> list[str]:
    import msgpack

    spool = Spool(directory, 1 << 30)
    try:
        out = []
        while (batch := spool.take(10_000, 1 << 30, 0)) is not None:
            out += [msgpack.unpackb(pl, raw=False, strict_map_key=False)[1]["Data"] for pl in batch.payloads]
            spool.commit(batch)
        return out
    finally:
        spool.close()

"""Event -> match -> records -> throttle -> sinks: the alert path the daemon drives.

Two ways to run it:
- synchronous (queue_size=0): `handle(event)` does the work in the caller's thread;
- threaded (queue_size>0, then `start()`): `handle` only enqueues, a worker thread does the
  rest; when the queue is full the event is dropped and counted, never blocking the caller
  (the ring-buffer reader).
Every loss is counted in `stats()`: queue drops, throttled alerts, sink failures, errors.
`from_config` builds the daemon's pipeline (threaded, journald sink) and starts it;
`reconfigure` applies a reloaded configuration, sinks included (sinkset.py).
"""

from __future__ import annotations

import queue
import threading
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any

from karmor_host import log
from karmor_host.alerts import record, sinkset
from karmor_host.alerts.match import CanBlock, Handled, Matcher
from karmor_host.alerts.record import MONITOR_ENFORCER, HostInfo
from karmor_host.alerts.sinks.base import Record, Sink
from karmor_host.alerts.sinks.journald import JournaldSink
from karmor_host.alerts.sinks.remote import RemoteSink
from karmor_host.alerts.throttle import Notice, Throttle
from karmor_host.enforce.base import EnforcerAlert
from karmor_host.kernel.events import Event
from karmor_host.policy.ruleset import RuleSet

if TYPE_CHECKING:
    from pathlib import Path

    from karmor_host.alerts.sinkset import SinkChange, SinkSpec
    from karmor_host.config import Config

_STOP = object()
DEFAULT_QUEUE = 16_384  # events between the ring-buffer reader and the worker


@dataclass(frozen=True)
class ReadyAlert:
    """An alert another part of the agent built itself (the network firewall's
    MatchedNetworkPolicy records): throttled, counted and sent like matched events, in the
    pipeline's own thread."""

    record: Record
    policy_name: str
    throttled: bool = True  # False for the firewall's own SystemEvents (suppression counts)


def _category_name(value: object) -> str:
    return str(value.value if isinstance(value, Enum) else value).lower()


class AlertPipeline:
    def __init__(
        self,
        matcher: Matcher,
        throttle: Throttle,
        sinks: Iterable[Sink],
        host: HostInfo,
        *,
        telemetry: Iterable[object] = (),
        enforcer: str = MONITOR_ENFORCER,
        queue_size: int = 0,
        tick_seconds: float = 1.0,
    ) -> None:
        """`telemetry`: categories (process, file, network, capabilities, syscall, or
        Operation values) whose events that match no rule become HostLog records, for the
        sinks that take telemetry. `enforcer`: the Enforcer field of alerts the enforcer
        itself stopped; everything else says `eBPF Monitor`."""
        self._matcher = matcher
        self.throttle = throttle
        self.sinks = list(sinks)
        self.host = host
        self.telemetry = frozenset(_category_name(t) for t in telemetry)
        self.enforcer = enforcer
        self._tick_seconds = tick_seconds
        self._queue: queue.Queue[object] | None = queue.Queue(queue_size) if queue_size > 0 else None
        self._worker: threading.Thread | None = None
        self._lock = threading.Lock()  # counters are read by `status` from another thread
        # Held while records go to the sinks and while a reload swaps the list: once the swap
        # returns, nothing emits to a sink taken out (re-entrant: a sink's emit may raise a notice).
        self._sinks_lock = threading.RLock()
        self._specs: dict[str, SinkSpec] | None = None  # None: sinks given by the caller, not reloaded
        self._state_dir: Path | None = None
        self._throttle_lock = threading.Lock()  # tick() may come from the daemon's loop
        self._log = log.get("karmor_host.alerts.pipeline")
        self.events = 0
        self.per_policy: Counter[str] = Counter()  # alerts sent, per PolicyName
        self.host_logs = 0
        self.system_events = 0
        self.queue_drops = 0
        self.errors = 0  # events that raised while being matched or recorded
        self.enforcer_alerts = 0  # alerts handed over by the enforcer (handle_enforcer)
        self.sink_errors: Counter[str] = Counter()  # exceptions that escaped a sink

    @classmethod
    def from_config(
        cls,
        config: Config,
        host: HostInfo,
        *,
        enforcer_can_block: CanBlock = False,
        enforcer: str = MONITOR_ENFORCER,
        handled_by_enforcer: Handled | None = None,
        sinks: Iterable[Sink] | None = None,
        queue_size: int = DEFAULT_QUEUE,
        state_dir: Path | None = None,
    ) -> AlertPipeline:
        """The daemon's pipeline, started: an empty rule set until `swap_ruleset`, the
        journald sink unless disabled, the `sinks.remote` sinks (spools under
        `state_dir`/spool, default Paths.state_dir), telemetry = `visibility`, throttling
        from config. `enforcer` is the Enforcer name of alerts the enforcer stopped.
        `handled_by_enforcer(rule | None, category)`: the decisions the enforcer reports itself
        (handle_enforcer), which the matcher then leaves out."""
        t = config.throttle
        specs = None
        if sinks is None:
            state_dir = state_dir or _default_state_dir()
            specs = sinkset.wanted(config, host.host_name)
            sinks = _build_all(specs, state_dir, config.journald.telemetry)
        pipeline = cls(
            Matcher(RuleSet(), enforcer_can_block, handled_by_enforcer),
            Throttle(max_per_second=t.max_per_second, quiet_seconds=t.quiet_seconds, enabled=t.enabled),
            sinks,
            host,
            telemetry=config.visibility,
            enforcer=enforcer,
            queue_size=queue_size,
        )
        pipeline._specs, pipeline._state_dir = specs, state_dir
        for sink in pipeline.sinks:
            pipeline._start_sink(sink)
        pipeline.start()
        return pipeline

    def _start_sink(self, sink: Sink) -> None:
        if isinstance(sink, RemoteSink):
            sink.on_notice = self.sink_notice
            sink.start()

    # --- configuration ---------------------------------------------------------------------

    @property
    def matcher(self) -> Matcher:
        return self._matcher

    def swap_matcher(self, new: Matcher) -> None:
        """Atomic: each event is matched entirely by the old or entirely by the new matcher
        (the worker reads the reference once per event; a reference store is atomic)."""
        self._matcher = new

    def swap_ruleset(self, ruleset: RuleSet) -> None:
        """Compile a matcher for `ruleset` (in the caller's thread) and swap it in."""
        self.swap_matcher(Matcher(ruleset, self._matcher.can_block, self._matcher.handled_by_enforcer))

    def reconfigure(self, config: Config) -> None:
        """Apply a reloaded configuration: throttle limits (counts are kept), telemetry
        categories, the journald sink's telemetry switch, the record identity, and the sinks
        (journald on/off, `sinks.remote`: unchanged ones keep running, the others are
        replaced, removed or added). A sink that cannot be built raises KarmorError before
        anything changed: the running configuration stays whole."""
        host = self.host
        if config.cluster != host.cluster_name or (config.hostname or host.host_name) != host.host_name:
            host = HostInfo.detect(cluster_name=config.cluster, host_name=config.hostname or None)
        change = None
        if self._specs is not None:
            running = {n: (spec, self._sink_named(n)) for n, spec in self._specs.items()}
            change = sinkset.prepare(running, sinkset.wanted(config, host.host_name),
                                     self._state_dir or _default_state_dir(), config.journald.telemetry)
        t = config.throttle
        with self._throttle_lock:
            self.throttle.max_per_second = t.max_per_second
            self.throttle.quiet_seconds = t.quiet_seconds
            self.throttle.enabled = t.enabled
        self.telemetry = frozenset(_category_name(v) for v in config.visibility)
        self.host = host
        if change is not None and change.changed:
            self._swap_sinks(change)
        for sink in self.sinks:
            if isinstance(sink, JournaldSink):
                sink.telemetry = config.journald.telemetry

    def _sink_named(self, name: str) -> Sink:
        return next(s for s in self.sinks if getattr(s, "name", None) == name)

    def _swap_sinks(self, change: SinkChange) -> None:
        """Swap the sink list in one step, then stop what went out and start what came in.
        A spool handed over keeps receiving records throughout: its old sink stops sending
        first, the new one sends once started; nothing goes to a closed spool."""
        for old, _ in change.handovers:
            old.stop_sending()  # still spools, no longer sends to the old destination
        with self._sinks_lock:  # the worker is between two records
            for old, new in change.handovers:
                old.release_spool()  # its last loss notice goes out through the old list
                entry = change.specs[new.name].entry
                assert entry is not None and new.spool is old.spool
                new.spool.set_limits(entry.spool.max_bytes, entry.spool.overflow)
                new.adopt_losses()
            self.sinks = change.sinks
            self._specs = change.specs
        handed = {id(old) for old, _ in change.handovers}
        for sink in change.retired:
            if id(sink) not in handed:
                self._close_sink(sink)
        for sink in change.new:
            self._start_sink(sink)
        self._log_change(change)

    def _close_sink(self, sink: Sink) -> None:
        try:
            sink.close()
        except Exception:  # noqa: BLE001 - one bad sink must not keep the others open
            self._count_sink_error(sink)

    def _log_change(self, change: SinkChange) -> None:
        old = {getattr(s, "name", ""): s for s in change.retired}
        for name in change.diff.removed:
            self._log.info("sink_removed", sink=name, destination=_destination(old[name]))
        for name in change.diff.replaced:
            self._log.info("sink_replaced", sink=name, destination=change.specs[name].destination,
                           was=_destination(old[name]), changed=change.changed_keys.get(name, []))
        for name in change.diff.added:
            self._log.info("sink_added", sink=name, destination=change.specs[name].destination)

    # --- input -----------------------------------------------------------------------------

    def handle(self, event: Event) -> None:
        if self._queue is None:
            self._process(event)
            return
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            with self._lock:
                self.queue_drops += 1

    def submit(self, item: ReadyAlert) -> None:
        """Queue a ready alert (dropped and counted when the queue is full, like events)."""
        self.handle(item)  # type: ignore[arg-type]

    def handle_enforcer(self, alerts: Iterable[EnforcerAlert]) -> None:
        """Decisions the enforcer took itself (Enforcer.poll): each becomes a
        MatchedHostPolicy record with the enforcer's name in Enforcer, throttled and counted
        like matched events; the queue never blocks the caller (full: dropped and counted)."""
        for item in alerts:
            self.handle(item)  # type: ignore[arg-type]

    def tick(self) -> None:
        """Report the end of a throttling period even when no alert comes to trigger it.
        The worker does this itself; in synchronous mode call it about once a second."""
        with self._throttle_lock:
            notices = self.throttle.poll()
        self._announce(notices)

    # --- threaded mode ---------------------------------------------------------------------

    def start(self) -> None:
        if self._queue is None or self._worker is not None:
            return
        self._worker = threading.Thread(target=self._run, name="karmor-alerts", daemon=True)
        self._worker.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Process what is queued, then stop the worker."""
        if self._queue is None or self._worker is None:
            return
        self._queue.put(_STOP)
        self._worker.join(timeout)
        self._worker = None

    def close(self) -> None:
        self.stop()
        with self._sinks_lock:
            for sink in self.sinks:
                self._close_sink(sink)

    def _run(self) -> None:
        assert self._queue is not None
        while True:
            try:
                item = self._queue.get(timeout=self._tick_seconds)
            except queue.Empty:
                self.tick()
                continue
            if item is _STOP:
                self.flush()
                return
            self._process(item)  # type: ignore[arg-type]

    # --- the work --------------------------------------------------------------------------

    def _process(self, event: Event) -> None:
        if isinstance(event, ReadyAlert):
            self._send_ready(event)
            return
        if isinstance(event, EnforcerAlert):
            self._send_enforcer(event)
            return
        with self._lock:
            self.events += 1
        try:
            self._alert_or_log(event)
        except Exception:  # noqa: BLE001 - a bad event must not stop the alert path
            with self._lock:
                self.errors += 1
            self._log.exception("event_processing_failed", kind=getattr(event, "kind", None))

    def _alert_or_log(self, event: Event) -> None:
        decisions = self._matcher.match(event)  # one read of the reference: see swap_matcher
        if not decisions:
            self.tick()
            if record.operation_of(event).lower() in self.telemetry and any(s.telemetry for s in self.sinks):
                with self._lock:
                    self.host_logs += 1
                self._emit(record.host_log(event, self.host), telemetry=True)
            return
        for d in decisions:
            with self._throttle_lock:
                admitted, notices = self.throttle.offer(d.policy_name)
            self._announce(notices)
            if not admitted:
                continue
            enforcer = self.enforcer if d.enforced else MONITOR_ENFORCER
            rec = record.alert(event, d.rule, self.host, d.action, enforcer, d.policy_name,
                               operation=d.operation.value)
            with self._lock:
                self.per_policy[d.policy_name] += 1
            self._emit(rec)

    def _send_enforcer(self, item: EnforcerAlert) -> None:
        d = item.decision
        with self._lock:
            self.enforcer_alerts += 1
        try:
            with self._throttle_lock:
                admitted, notices = self.throttle.offer(d.policy_name)
            self._announce(notices)
            if not admitted:
                return
            rec = record.alert(item.event, d.rule, self.host, d.action, self.enforcer, d.policy_name,
                               operation=d.operation.value)
            if item.data:
                rec["Data"] = item.data
        except Exception:  # noqa: BLE001 - a bad alert must not stop the alert path
            with self._lock:
                self.errors += 1
            self._log.exception("enforcer_alert_failed", policy=d.policy_name)
            return
        with self._lock:
            self.per_policy[d.policy_name] += 1
        self._emit(rec)

    def _send_ready(self, item: ReadyAlert) -> None:
        if not item.throttled:
            with self._lock:
                self.system_events += 1
            self._emit(item.record)
            return
        with self._throttle_lock:
            admitted, notices = self.throttle.offer(item.policy_name)
        self._announce(notices)
        if admitted:
            with self._lock:
                self.per_policy[item.policy_name] += 1
            self._emit(item.record)

    def _announce(self, notices: list[Notice]) -> None:
        for notice in notices:
            with self._lock:
                self.system_events += 1
            self._emit(notice.record(self.host))

    def _emit(self, rec: Record, telemetry: bool = False) -> None:
        with self._sinks_lock:
            for sink in self.sinks:
                if telemetry and not sink.telemetry:
                    continue
                try:
                    sink.emit(rec)
                except Exception:  # noqa: BLE001 - sinks should count, not raise; guard anyway
                    self._count_sink_error(sink)

    def sink_notice(self, origin: Sink, operation: str, message: str, data: str, extra: dict[str, Any]) -> None:
        """A SystemEvent a sink raises about itself (a remote sink that lost records): sent
        to every other sink, so the loss shows up in the journal even while the collector
        is unreachable. Called from the sink's emit or close: in the pipeline's thread, or
        in the main thread when a reload closes the sink."""
        rec = record.system_event(self.host, operation, message, data=data, extra=extra)
        with self._lock:
            self.system_events += 1
        with self._sinks_lock:
            for sink in self.sinks:
                if sink is not origin:
                    try:
                        sink.emit(rec)
                    except Exception:  # noqa: BLE001
                        self._count_sink_error(sink)

    def _count_sink_error(self, sink: Sink) -> None:
        with self._lock:
            self.sink_errors[getattr(sink, "name", type(sink).__name__)] += 1

    def flush(self) -> None:
        with self._sinks_lock:
            for sink in self.sinks:
                try:
                    sink.flush()
                except Exception:  # noqa: BLE001
                    self._count_sink_error(sink)

    # --- reporting -------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Counters for `karmor-host status` (plain JSON-able data)."""
        with self._lock:
            out: dict[str, Any] = {
                "events": self.events,
                "alerts": sum(self.per_policy.values()),
                "per_policy": dict(sorted(self.per_policy.items())),
                "host_logs": self.host_logs,
                "system_events": self.system_events,
                "queue_drops": self.queue_drops,
                "queue_depth": self._queue.qsize() if self._queue is not None else 0,
                "errors": self.errors,
                "enforcer_alerts": self.enforcer_alerts,
            }
            sink_errors = dict(self.sink_errors)
        with self._throttle_lock:
            out["suppressed"] = self.throttle.suppressed_total
            out["suppressed_by_policy"] = dict(sorted(self.throttle.suppressed_by_policy.items()))
            out["throttled"] = self.throttle.quiet
        out["sinks"] = {}
        for s in self.sinks:
            name = getattr(s, "name", type(s).__name__)
            # Sinks with more to say (remote: spooled, dropped, duplicates, connected...) say it.
            entry = dict(s.stats()) if callable(getattr(s, "stats", None)) else {"sent": s.sent}
            entry["failed"] = s.failed + sink_errors.get(name, 0)
            out["sinks"][name] = entry
        out["rules_checked"] = self._matcher.rules_checked
        return out


def _default_state_dir() -> Path:
    from karmor_host.paths import default_paths

    return default_paths().state_dir


def _build_all(specs: dict[str, SinkSpec], state_dir: Path, journald_telemetry: bool) -> list[Sink]:
    built: list[Sink] = []
    try:
        for spec in specs.values():
            built.append(sinkset.build(spec, state_dir, journald_telemetry))
    except BaseException:
        for sink in built:  # release the spools already opened (their locks)
            sink.close()
        raise
    return built


def _destination(sink: Sink) -> str:
    if isinstance(sink, RemoteSink):
        return f"{sink.kind} {sink.host}:{sink.port}"
    return getattr(sink, "name", type(sink).__name__)

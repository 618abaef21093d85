"""The network firewall's life cycle, as the agent drives it.

apply_policies(): compile the network policies of a scan, run the lock-out guard, replace our
table in one transaction and verify it. Any refusal or kernel error keeps the rules in force
(the last good ones) and is reported in status and the log. An empty rule set removes the
table. A reader thread turns NFLOG messages into MatchedNetworkPolicy alerts through the
pipeline and, every few seconds, reports what the kernel's rate limit suppressed.

stop() stops the reader and detaches the attribution programs but leaves the table in place:
enforcement does not lapse while the agent restarts, and the next start replaces the table
atomically (docs/network-policy.md, "Stop and restart").
"""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from karmor_host import log
from karmor_host.alerts import record
from karmor_host.alerts.pipeline import ReadyAlert
from karmor_host.alerts.record import HostInfo
from karmor_host.errors import EnforcerError, KarmorError
from karmor_host.firewall import alerts, guard, packet, plan, sockets
from karmor_host.firewall.attribution import EgressAttribution, ListenerAttribution, ProcessRef
from karmor_host.firewall.backend import NftBackend
from karmor_host.firewall.nflog import LoggedPacket, NflogSocket
from karmor_host.policy.netpolicy import Direction, NetRule, NetRuleSet, compile_network
from karmor_host.policy.ruleset import Posture
from karmor_host.policy.selector import HostIdentity

_log = log.get("karmor.firewall")

COUNTER_POLL_S = 2.0
SUPPRESSION_OPERATION = "AlertThreshold"


class AlertSink(Protocol):
    host: HostInfo

    def submit(self, item: ReadyAlert) -> None: ...


class NetworkFirewall:
    def __init__(
        self,
        object_dir: Path,
        sink: AlertSink,
        options: plan.PlanOptions = plan.PlanOptions(),
        backend: NftBackend | None = None,
        sessions: Callable[[], list[guard.Session]] = sockets.ssh_sessions,
        cgroup_root: Callable[[], Path] | None = None,
    ) -> None:
        self.object_dir = object_dir
        self.sink = sink
        self.options = options
        self._backend = backend
        self._sessions = sessions
        self._cgroup_root = cgroup_root
        self.ruleset = NetRuleSet()
        self.plan: plan.Plan | None = None
        self.generation = 0
        self.error = ""
        self.alert_error = ""  # why alerts (or attribution) are unavailable
        self._rules: dict[int, NetRule] = {}  # current and previous generation, for late logs
        self._egress: EgressAttribution | None = None
        self._listeners = ListenerAttribution()
        self._nflog: NflogSocket | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()  # counters read by status from the main thread
        self._poll_lock = threading.Lock()  # the reader and apply() both poll the counters
        self._egress_lock = threading.Lock()  # no lookup while the object is being closed
        self.logged: Counter[str] = Counter()  # alerts read from NFLOG, per policy
        self.suppressed: Counter[str] = Counter()  # packets the kernel's rate limit did not log
        self.unparsed = 0
        self._counts_before: dict[str, int] = {}  # counters of the current table at the last poll

    # --- applying -----------------------------------------------------------------------

    @property
    def backend(self) -> NftBackend:
        if self._backend is None:
            self._backend = NftBackend()
        return self._backend

    def apply_policies(self, policies: Sequence[Any], identity: HostIdentity, posture: Posture) -> bool:
        """Compile and apply; False (and `error` set) when the previous rules stay in force."""
        rs = compile_network(policies, identity, posture)
        if rs == self.ruleset and self.generation and not self.error and not self._drifted():
            return True
        try:
            self.apply(rs)
        except KarmorError as exc:
            self.error = exc.message
            _log.error("firewall_apply_failed", error=exc.message, keeping="previous network rules")
            return False
        except Exception as exc:  # noqa: BLE001 - a broken nftables must not take host enforcement down
            self.error = f"firewall unavailable: {type(exc).__name__}: {exc}"
            _log.exception("firewall_apply_crashed", keeping="previous network rules")
            return False
        return True

    def apply(self, rs: NetRuleSet) -> None:
        """Install `rs` (or remove the table when it is empty). Raises EnforcerError and
        changes nothing when the guard refuses or nftables fails."""
        t0 = time.monotonic()
        if rs.empty:
            self._poll_counters()
            removed = self.backend.remove()
            self._stop_reader()
            self._detach_attribution()
            self._commit(rs, None)
            _log.info("firewall_removed", table=f"{plan.FAMILY} {plan.TABLE}", existed=removed)
            return
        new = plan.build(rs, self.options)
        try:
            sessions = self._sessions()
        except OSError as exc:  # no sock_diag: the guard still checks loopback and the plan
            _log.warning("firewall_sessions_unknown", error=str(exc))
            sessions = []
        problems = guard.check(rs, new, sessions)
        if problems:
            raise EnforcerError("network rules refused by the lock-out guard: " + "; ".join(problems))
        with self._poll_lock:
            self._poll_counters_locked()
            self.backend.apply(new)
            self._counts_before = {}
        drift = self.backend.verify(new)
        if drift:
            raise EnforcerError("network rules applied but the table differs: " + "; ".join(drift))
        self._commit(rs, new)
        self._ensure_reader(rs)
        _log.info("firewall_applied", generation=self.generation, rules=len(rs.rules),
                  nft_rules=sum(len(c) for c in new.chains.values()),
                  whitelists=sorted(d.value for d in rs.whitelists), posture=rs.posture.value,
                  sessions_checked=len(sessions), latency_ms=round((time.monotonic() - t0) * 1000, 1))

    def _drifted(self) -> bool:
        """Someone changed or deleted our table behind our back (then it is re-applied)."""
        try:
            drift = self.backend.verify(self.plan) if self.plan else ([] if not self.backend.exists() else ["extra"])
        except KarmorError as exc:
            drift = [exc.message]
        if drift:
            _log.warning("firewall_table_drifted", differences=drift, action="re-applying")
        return bool(drift)

    def _commit(self, rs: NetRuleSet, new: plan.Plan | None) -> None:
        self._rules = {**self.ruleset.by_id(), **rs.by_id()}
        self.ruleset, self.plan = rs, new
        self.generation += 1
        self.error = ""

    # --- alerts -------------------------------------------------------------------------

    def _ensure_reader(self, rs: NetRuleSet) -> None:
        if rs.alerts_possible(Direction.EGRESS):
            if self._egress is None:
                self._attach_attribution()
        else:
            self._detach_attribution()  # its programs run on every connect: only when needed
        if self._thread is not None:
            return
        try:
            self._nflog = NflogSocket(self.options.nflog_group, copy_bytes=self.options.snaplen)
        except OSError as exc:
            self.alert_error = f"NFLOG group {self.options.nflog_group}: {exc.strerror or exc}"
            _log.error("firewall_alerts_unavailable", reason=self.alert_error)
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._read_loop, name="karmor-nflog", daemon=True)
        self._thread.start()

    def _attach_attribution(self) -> None:
        from karmor_host.kernel.cgroup import cgroup2_root  # libbpf only when needed

        try:
            root = (self._cgroup_root or cgroup2_root)()
            self._egress = EgressAttribution(self.object_dir, root)
        except (KarmorError, OSError, RuntimeError) as exc:
            self.alert_error = f"egress attribution unavailable: {getattr(exc, 'message', exc)}"
            _log.error("firewall_attribution_unavailable", reason=self.alert_error)

    def _detach_attribution(self) -> None:
        with self._egress_lock:
            egress, self._egress = self._egress, None
            if egress is not None:
                egress.close()

    def _stop_reader(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._thread = None
        if self._nflog is not None:
            self._nflog.close()
            self._nflog = None

    def _read_loop(self) -> None:
        assert self._nflog is not None
        last_poll = time.monotonic()
        while not self._stop.is_set():
            try:
                for pkt in self._nflog.recv(0.25):
                    self._handle(pkt)
                if time.monotonic() - last_poll >= COUNTER_POLL_S:
                    last_poll = time.monotonic()
                    self._poll_counters()
            except Exception:  # noqa: BLE001 - a bad packet must not end the alerts
                _log.exception("firewall_reader_error")
                time.sleep(0.2)

    def _process(self, pkt: LoggedPacket, h: packet.Headers, direction: Direction) -> ProcessRef:
        if direction is Direction.INGRESS:
            return self._listeners.lookup(h)
        with self._egress_lock:
            if self._egress is None:
                return ProcessRef(note=self.alert_error or "egress attribution not attached")
            return self._egress.lookup(h)

    def _handle(self, pkt: LoggedPacket) -> None:
        prefix = alerts.parse_prefix(pkt.prefix)
        if prefix is None:
            with self._lock:
                self.unparsed += 1
            return
        h = packet.parse(pkt.payload)
        proc = self._process(pkt, h, prefix.direction)
        ifindex = pkt.indev if prefix.direction is Direction.INGRESS else pkt.outdev
        try:
            iface = socket.if_indextoname(ifindex) if ifindex else ""
        except OSError:
            iface = str(ifindex)
        rec, name = alerts.build(pkt, prefix, h, self._rules, proc, self.sink.host, iface)
        with self._lock:
            self.logged[name] += 1
        self.sink.submit(ReadyAlert(rec, name))

    def _poll_counters(self) -> None:
        """Suppressed packets since the last poll -> counters and one SystemEvent per poll."""
        with self._poll_lock:
            self._poll_counters_locked()

    def _poll_counters_locked(self) -> None:
        if self.plan is None:
            return
        try:
            now = self.backend.counters()
        except KarmorError:
            return
        delta: Counter[str] = Counter()
        for name, packets in now.items():
            if not name.endswith("_over"):
                continue
            grew = packets - self._counts_before.get(name, 0)
            if grew > 0:
                delta[self._policy_of_counter(name)] += grew
        self._counts_before = now
        if not delta:
            return
        with self._lock:
            self.suppressed.update(delta)
        text = ", ".join(f"{k}={v}" for k, v in sorted(delta.items()))
        _log.warning("firewall_alerts_suppressed", by_policy=dict(delta))
        rec = record.system_event(
            self.sink.host, SUPPRESSION_OPERATION,
            f"network firewall: the kernel's rate limit ({self.options.rate_per_second}/s per rule) "
            f"suppressed {sum(delta.values())} alerts", data=f"suppressed {text}",
            extra={"Enforcer": record.NETWORK_POLICY_ENFORCER})
        self.sink.submit(ReadyAlert(rec, "", throttled=False))

    def _policy_of_counter(self, name: str) -> str:
        chain = name.removesuffix("_over")
        if chain.startswith("posture_"):
            return record.DEFAULT_POSTURE
        rule = self._rules.get(int(chain[1:])) if chain[1:].isdigit() else None
        return rule.policy if rule else chain

    # --- life cycle and status ------------------------------------------------------------

    def stop(self) -> None:
        """Stop alerts; the table stays (see the module docstring)."""
        self._poll_counters()
        self._stop_reader()
        self._detach_attribution()

    def status(self) -> dict[str, Any]:
        rs = self.ruleset
        with self._lock:
            logged, suppressed, unparsed = dict(self.logged), dict(self.suppressed), self.unparsed
        return {
            "table": f"{plan.FAMILY} {plan.TABLE}" if self.plan else "",
            "generation": self.generation,
            "error": self.error,
            "alert_error": self.alert_error,
            "rules": len(rs.rules),
            "nft_rules": sum(len(c) for c in self.plan.chains.values()) if self.plan else 0,
            "posture": rs.posture.value,
            "whitelists": sorted(d.value for d in rs.whitelists),
            "policies": [{"name": p.name, "file": p.file, "applies": p.applies, "reason": p.reason,
                          "rules": list(p.rule_ids)} for p in rs.policies],
            "alerts": {"logged": logged, "suppressed": suppressed, "unparsed": unparsed,
                       "nflog_overruns": self._nflog.overruns if self._nflog else 0},
            "attribution": self._attribution_counters(),
        }

    def _attribution_counters(self) -> dict[str, int]:
        with self._egress_lock:
            return self._egress.counters() if self._egress else {}

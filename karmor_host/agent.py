"""The daemon: composition root and life cycle (start, reload, stop, watchdog).

Three threads. The event thread drains the monitor's ring buffer into the alert pipeline.
The enforcer thread hands the decisions the enforcer took itself (BPF-LSM's kernel events)
to the pipeline. The main thread owns everything else: signals, the policy directory,
applies, the systemd watchdog and the status file. Nothing is shared between them but the
pipeline's matcher, which is swapped as one reference, its sink list, swapped under the
pipeline's lock on a reload, and a few counters.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from karmor_host import __version__, control, log
from karmor_host.alerts.pipeline import AlertPipeline
from karmor_host.alerts.record import HostInfo
from karmor_host.config import Config
from karmor_host.enforce import registry
from karmor_host.enforce.base import ApplyReport
from karmor_host.errors import KarmorError
from karmor_host.firewall.manager import NetworkFirewall
from karmor_host.kernel.probe import Choice, KernelFacts, choose, probe
from karmor_host.paths import Paths
from karmor_host.policy import compile_policies
from karmor_host.policy.netpolicy import host_policies
from karmor_host.policy.ruleset import Category, Operation, RuleSet
from karmor_host.policy.selector import HostIdentity
from karmor_host.policy.store import PolicyStore, ScanResult
from karmor_host.policy.watch import DirectoryWatcher

_log = log.get("karmor.agent")

RESCAN_S = 30.0  # full rescan even without events: a safety net for missed inotify events
STATUS_EVERY_S = 2.0
_OP_CATEGORY = {
    Operation.PROCESS: "process",
    Operation.FILE: "file",
    Operation.NETWORK: "network",
    Operation.CAPABILITIES: "capabilities",
    Operation.SYSCALL: "syscall",
}


def _notify(state: str) -> None:
    """sd_notify through python3-systemd; a no-op outside systemd (no NOTIFY_SOCKET)."""
    if not os.environ.get("NOTIFY_SOCKET"):
        return
    from systemd import daemon

    daemon.notify(state)


@dataclass
class ApplyState:
    generation: int = 0
    at: float = 0.0
    latency_ms: float = 0.0
    scan: ScanResult | None = None
    ruleset: RuleSet = field(default_factory=RuleSet)
    report: ApplyReport | None = None
    error: str = ""


class Agent:
    def __init__(self, config: Config, paths: Paths) -> None:
        self.config = config
        self.paths = paths
        self.started = time.time()
        self._stop = threading.Event()
        self._reload = threading.Event()
        self.event_beat = 0  # advanced by the event thread on every poll round
        self.apply_state = ApplyState()
        self.facts: KernelFacts | None = None
        self.choice: Choice | None = None
        self.monitor: Any = None
        self.monitor_categories: frozenset[str] = frozenset()
        self._event_thread: threading.Thread | None = None
        self._event_error: str = ""
        self._enforcer_thread: threading.Thread | None = None
        self._enforcer_error: str = ""

    # --- start ------------------------------------------------------------------------
    def start(self) -> None:
        t0 = time.monotonic()
        self.facts = probe(self.paths.bpf_object_dir)
        self.choice = choose(self.facts, self.config.enforcer, registry.IMPLEMENTED)
        _log.info("enforcer_chosen", enforcer=self.choice.enforcer, reason=self.choice.reason)
        self.enforcer = registry.create(self.choice.enforcer, self.paths, self.config)
        self.host = HostInfo.detect(cluster_name=self.config.cluster, host_name=self.config.hostname or None)
        self.identity = HostIdentity.detect(hostname=self.config.hostname or None)
        # what the enforcer reports itself (its kernel decisions) the matcher leaves to it
        self.pipeline = AlertPipeline.from_config(
            self.config, self.host, enforcer_can_block=self.enforcer.can_block,
            enforcer=self.enforcer.enforcer_name, handled_by_enforcer=self.enforcer.reports)
        # KubeArmorNetworkPolicy: nftables table + alerts through the same pipeline
        self.firewall = NetworkFirewall(self.paths.bpf_object_dir, self.pipeline)
        self.store = PolicyStore(self.config.policy_dir)
        self.watcher = DirectoryWatcher(self.config.policy_dir)
        self.watcher.start()
        self.apply("start")
        self._event_thread = threading.Thread(target=self._event_loop, name="karmor-events", daemon=True)
        self._event_thread.start()
        self._enforcer_thread = threading.Thread(target=self._enforcer_loop, name="karmor-enforcer", daemon=True)
        self._enforcer_thread.start()
        self.write_status()
        _notify("READY=1\nSTATUS=" + self.status_line())
        _log.info("ready", seconds=round(time.monotonic() - t0, 3), status=self.status_line())

    # --- policies ---------------------------------------------------------------------
    def apply(self, why: str) -> None:
        t0 = time.monotonic()
        scan = self.store.scan()
        st = self.apply_state
        if not scan.changed and st.generation and why != "reload":
            st.scan = scan  # rejections may have changed even if the rules did not
            if why == "rescan":
                self._refresh_enforcer()
            self.write_status()
            return
        # The firewall keeps its last good rules on its own errors; host rules are independent.
        self.firewall.apply_policies(scan.policies, self.identity, self.config.postures[Category.NETWORK])
        ruleset = compile_policies(host_policies(scan.policies), self.identity, self.config.postures)
        try:
            report = self.enforcer.apply(ruleset)
        except KarmorError as exc:
            st.error = exc.message
            st.scan = scan
            _log.error("apply_failed", error=exc.message, keeping="previous rule set")
            return
        self._ensure_monitor(ruleset)
        self.pipeline.swap_ruleset(ruleset)
        st.generation += 1
        st.at = time.time()
        st.latency_ms = (time.monotonic() - t0) * 1000
        st.scan, st.ruleset, st.report, st.error = scan, ruleset, report, ""
        if self._event_thread is not None:  # at start, status is written once everything runs
            self.write_status()  # before the log line, which readers take as "applied"
        self._log_report(why)

    def _refresh_enforcer(self) -> None:
        """Targets that moved on disk (a replaced directory, a path that appeared)."""
        try:
            report = self.enforcer.refresh()
        except KarmorError as exc:
            _log.error("refresh_failed", error=exc.message, keeping="previous rule set")
            return
        if report is not None:
            self.apply_state.report = report
            self._ensure_monitor(self.apply_state.ruleset)
            _log.info("refreshed", enforcer=self.enforcer.name, modes=report.counts(), notes=list(report.notes))

    def _log_report(self, why: str) -> None:
        st = self.apply_state
        active = [p.name for p in st.ruleset.policies if p.applies]
        elsewhere = {p.name: p.reason for p in st.ruleset.policies if not p.applies}
        _log.info(
            "applied", why=why, generation=st.generation, enforcer=self.enforcer.name,
            active=active, not_for_this_host=elsewhere, rules=len(st.ruleset.rules),
            modes=st.report.counts() if st.report else {}, latency_ms=round(st.latency_ms, 1),
            enforcer_ms=round(st.report.seconds * 1000, 1) if st.report else 0,
            notes=list(st.report.notes) if st.report else [],
        )
        for rej in st.scan.rejections if st.scan else ():
            _log.error("policy_rejected", file=rej.file, reason=rej.reason, keeping_last_good=rej.keeping_last_good)
        for c in st.ruleset.conflicts:
            _log.warning("policy_conflict", kept=c.kept, dropped=c.dropped, reason=c.reason)

    # --- monitor ----------------------------------------------------------------------
    def _needed_categories(self, ruleset: RuleSet) -> frozenset[str]:
        """Visibility, plus what the matcher must see: the rules (and whitelists) whose alerts
        the enforcer does not raise itself."""
        reports = self.enforcer.reports
        needed = set(self.config.visibility)
        needed.update(_OP_CATEGORY[r.operation] for r in ruleset.rules if not reports(r, r.category))
        if any(c.value == "file" and not reports(None, c) for c in ruleset.whitelists):
            needed.update(("process", "file"))
        return frozenset(needed)

    def _ensure_monitor(self, ruleset: RuleSet) -> None:
        """(Re)open the monitor when the rule set needs categories it does not watch."""
        from karmor_host.kernel.monitor import Monitor  # libbpf only when the agent really runs

        needed = self._needed_categories(ruleset)
        if self.monitor is not None and needed <= self.monitor_categories:
            return
        old = self.monitor
        self.monitor = Monitor(
            object_dir=self.paths.bpf_object_dir,
            visibility=set(needed),
            ring_size=self.config.ring_buffer_bytes,
            noise_prefixes=tuple(self.config.ignore_prefixes),
        )
        self.monitor_categories = needed
        _log.info("monitor_started", categories=sorted(needed))
        if old is not None:
            old.close()

    def _event_loop(self) -> None:
        while not self._stop.is_set():
            monitor = self.monitor
            try:
                for event in monitor.poll(100):
                    self.pipeline.handle(event)
            except Exception as exc:  # noqa: BLE001 - a bug here must not kill enforcement; log it
                if monitor is self.monitor:
                    self._event_error = repr(exc)
                    _log.exception("event_loop_error")
                    time.sleep(0.5)
            self.event_beat += 1

    def _enforcer_loop(self) -> None:
        while not self._stop.is_set():
            try:
                alerts = self.enforcer.poll(100)
                if alerts:
                    self.pipeline.handle_enforcer(alerts)
            except Exception as exc:  # noqa: BLE001 - enforcement goes on in the kernel; log it
                self._enforcer_error = repr(exc)
                _log.exception("enforcer_loop_error")
                time.sleep(0.5)

    # --- status -----------------------------------------------------------------------
    def status_line(self) -> str:
        st = self.apply_state
        active = sum(1 for p in st.ruleset.policies if p.applies)
        rejected = len(st.scan.rejections) if st.scan else 0
        return (f"enforcer={self.enforcer.name} policies={active} rules={len(st.ruleset.rules)} "
                f"rejected={rejected} generation={st.generation}")

    def status(self) -> dict[str, Any]:
        st = self.apply_state
        rules_by_policy: dict[str, list[dict[str, Any]]] = {}
        for line in st.report.rules if st.report else ():
            rules_by_policy.setdefault(line.policy, []).append(
                {"id": line.rule_id, "mode": line.mode, "by": line.by, "reason": line.reason})
        return {
            "version": __version__,
            "pid": os.getpid(),
            "started": self.started,
            "uptime_s": round(time.time() - self.started, 1),
            "updated": time.time(),
            "enforcer": {"name": self.enforcer.name, "reason": self.choice.reason if self.choice else "",
                         "state": self.enforcer.status(), "error": self._enforcer_error,
                         "apply_ms": round(st.report.seconds * 1000, 2) if st.report else 0,
                         "notes": list(st.report.notes) if st.report else []},
            "kernel": self.facts.as_dict() if self.facts else {},
            "policy_dir": str(self.config.policy_dir),
            "policy_dir_problem": self.store.dir_problem,
            "apply": {
                "generation": st.generation, "at": st.at, "latency_ms": round(st.latency_ms, 2),
                "error": st.error, "rules": len(st.ruleset.rules),
                "whitelists": sorted(c.value for c in st.ruleset.whitelists),
                "postures": {c.value: p.value for c, p in st.ruleset.postures.items()},
            },
            "policies": {
                "active": [{"name": p.name, "file": p.file, "rules": rules_by_policy.get(p.name, [])}
                           for p in st.ruleset.policies if p.applies],
                "not_for_this_host": [{"name": p.name, "file": p.file, "reason": p.reason}
                                      for p in st.ruleset.policies if not p.applies],
                "rejected": [{"file": r.file, "reason": r.reason, "keeping_last_good": r.keeping_last_good}
                             for r in (st.scan.rejections if st.scan else ())],
                "conflicts": [{"kept": c.kept, "dropped": c.dropped, "reason": c.reason}
                              for c in st.ruleset.conflicts],
            },
            "monitor": {
                "categories": sorted(self.monitor_categories),
                "drops": self.monitor.drops() if self.monitor else {},
                "error": self._event_error,
            },
            "alerts": self.pipeline.stats(),
            "firewall": self.firewall.status(),
        }

    def write_status(self) -> None:
        try:
            control.write_status(self.paths.status_file, self.status())
        except OSError as exc:
            _log.error("status_write_failed", path=str(self.paths.status_file), error=str(exc))

    # --- main loop --------------------------------------------------------------------
    def _on_signal(self, signum: int, _frame: Any) -> None:
        if signum == signal.SIGHUP:
            self._reload.set()
        else:
            self._stop.set()
        self.watcher.poke()  # wake the main loop now

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._on_signal)
        self.start()
        watchdog_s = int(os.environ.get("WATCHDOG_USEC", "0")) / 1e6
        last_ping, last_beat = time.monotonic(), -1
        last_status = last_scan = time.monotonic()
        while not self._stop.is_set():
            changed = self.watcher.wait(timeout=0.25)
            if self._stop.is_set():
                break
            now = time.monotonic()
            if self._reload.is_set():
                self._reload.clear()
                self.reload()
            elif changed or now - last_scan >= RESCAN_S:
                last_scan = now
                self.apply("change" if changed else "rescan")
            if now - last_status >= STATUS_EVERY_S:
                last_status = now
                self.write_status()
                _notify("STATUS=" + self.status_line())
            if watchdog_s and now - last_ping >= watchdog_s / 2:
                beat = self.event_beat
                alive = self._event_thread is not None and self._event_thread.is_alive()
                if watchdog_ping_due(alive, beat, last_beat):
                    _notify("WATCHDOG=1")
                    last_ping, last_beat = now, beat
        self.stop()
        return 0

    def reload(self) -> None:
        """SIGHUP: re-read config (a bad one is refused, the running one kept), apply it to
        the alert pipeline and its sinks, and re-read every policy."""
        from karmor_host import config as config_mod

        _notify("RELOADING=1")
        try:
            new = config_mod.load(Path(self.config.source)) if Path(self.config.source).is_file() else self.config
        except KarmorError as exc:
            _log.error("reload_config_refused", error=exc.message, keeping="running configuration")
            new = self.config
        if new.policy_dir != self.config.policy_dir:
            _log.warning("reload_policy_dir_ignored", wanted=str(new.policy_dir),
                         reason="changing the policy directory needs a restart")
            new = _replace_policy_dir(new, self.config.policy_dir)
        if new is not self.config:
            try:
                self.pipeline.reconfigure(new)  # sinks too: one that cannot be built refuses it all
            except KarmorError as exc:
                _log.error("reload_config_refused", error=exc.message, keeping="running configuration")
                new = self.config
        self.config = new
        self.store.files.clear()  # re-read every file
        self.apply("reload")
        self.write_status()
        _notify("READY=1\nSTATUS=" + self.status_line())

    def stop(self) -> None:
        _notify("STOPPING=1\nSTATUS=stopping")
        self._stop.set()
        self.watcher.stop()
        if self._event_thread is not None:
            self._event_thread.join(timeout=2)
        if self._enforcer_thread is not None:
            self._enforcer_thread.join(timeout=2)
        if self.monitor is not None:
            self.monitor.close()
        self.firewall.stop()  # alerts stop; the table stays in force (docs/network-policy.md)
        try:
            self.pipeline.handle_enforcer(self.enforcer.poll(0))  # what is already decided
        except Exception:  # noqa: BLE001 - stopping must go on
            _log.exception("enforcer_final_poll_failed")
        self.pipeline.close()
        # Enforcement state is left as the enforcer documents (docs/operations.md): the
        # alerts-only enforcer has nothing installed; LSM enforcers keep their pinned state.
        self.enforcer.close()
        self.write_status()
        _log.info("stopped", status=self.status_line())


def watchdog_ping_due(event_thread_alive: bool, beat: int, last_beat: int) -> bool:
    """Ping only when both loops progressed: this one (we are running it) and the event
    thread (its beat moved since the last ping). A stuck consumer gets the agent restarted."""
    return event_thread_alive and beat != last_beat


def _replace_policy_dir(cfg: Config, policy_dir: Path) -> Config:
    from dataclasses import replace

    return replace(cfg, policy_dir=policy_dir)

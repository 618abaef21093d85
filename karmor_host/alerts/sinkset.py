"""The sinks a configuration asks for, compared with the running ones: how a reload changes them.

Each sink has an identity, its name (`journald`, or `sinks.remote[].name`), and a spec: what,
once changed, needs a new sink object (the config entry, the host name a forward handshake
proves, the contents of its key and certificate files). `diff` sorts the names into kept,
removed, replaced and added (pure). `prepare` builds the new sinks, not started, before
anything changes, so a sink that cannot be built refuses the reload as a whole; a new sink
on the spool directory of one that goes takes that spool over, open, with what is in it.
The pipeline then swaps its sink list and only afterwards stops what went out
(AlertPipeline.reconfigure).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING

from karmor_host.alerts.sinks.base import Sink
from karmor_host.alerts.sinks.journald import JournaldSink
from karmor_host.alerts.sinks.remote import RemoteSink, spool_dir
from karmor_host.alerts.sinks.remote import build as build_remote
from karmor_host.errors import KarmorError

if TYPE_CHECKING:
    from karmor_host.config import Config, RemoteSinkConfig

JOURNALD = "journald"
# RemoteSinkConfig attributes -> the configuration keys a `sink_replaced` line names
_KEYS = {"host": "address", "port": "address", "shared_key_file": "sharedKeyFile",
         "send_timeout": "sendTimeoutSeconds", "retry_max": "retryMaxSeconds", "batch_records": "batchRecords"}


@dataclass(frozen=True)
class SinkSpec:
    name: str
    destination: str  # for logs: "journald", "forward 127.0.0.1:24224"; never a key
    entry: RemoteSinkConfig | None = None  # None: the journald sink
    hostname: str = ""  # forward only: the name its handshake proves
    files: tuple[tuple[str, str], ...] = ()  # (path, sha256 of the contents or the read error)

    def changes(self, new: SinkSpec) -> list[str]:
        """What differs, as configuration keys (no values: they may name secrets)."""
        out: list[str] = []
        if self.entry is not None and new.entry is not None:
            for f in fields(self.entry):
                if getattr(self.entry, f.name) != getattr(new.entry, f.name):
                    out.append(_KEYS.get(f.name, f.name))
        if self.hostname != new.hostname:
            out.append("identity.hostname")
        if self.files != new.files:
            out.append("file contents")
        return sorted(set(out))


@dataclass(frozen=True)
class SinkDiff:
    kept: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    replaced: tuple[str, ...] = ()
    added: tuple[str, ...] = ()


def wanted(config: Config, host_name: str) -> dict[str, SinkSpec]:
    """The specs `config` asks for, in the order the pipeline sends to them."""
    out: dict[str, SinkSpec] = {}
    if config.journald.enabled:
        out[JOURNALD] = SinkSpec(JOURNALD, JOURNALD)
    for cfg in config.remote_sinks:
        out[cfg.name] = SinkSpec(cfg.name, f"{cfg.type} {cfg.host}:{cfg.port}", cfg,
                                 host_name if cfg.type == "forward" else "", _files(cfg))
    return out


def _files(cfg: RemoteSinkConfig) -> tuple[tuple[str, str], ...]:
    """Digests of the files a sink reads at build: a renewed certificate or a new shared key
    under the same path is a change too."""
    paths = [cfg.shared_key_file]
    if cfg.tls.enabled:
        paths += [cfg.tls.ca_file, cfg.tls.cert_file, cfg.tls.key_file]
    out = []
    for path in filter(None, paths):
        try:
            digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
        except OSError as exc:
            digest = f"unreadable: {exc.strerror or exc}"
        out.append((path, digest))
    return tuple(out)


def diff(running: Mapping[str, SinkSpec], new: Mapping[str, SinkSpec]) -> SinkDiff:
    return SinkDiff(
        kept=tuple(n for n in new if n in running and running[n] == new[n]),
        removed=tuple(n for n in running if n not in new),
        replaced=tuple(n for n in new if n in running and running[n] != new[n]),
        added=tuple(n for n in new if n not in running),
    )


@dataclass
class SinkChange:
    """What `prepare` built for a reload; the pipeline applies it."""

    specs: dict[str, SinkSpec]  # the specs running after the swap
    sinks: list[Sink]  # the list to swap in: kept sink objects and the new ones
    diff: SinkDiff
    retired: list[Sink] = field(default_factory=list)  # taken out: closed after the swap
    handovers: list[tuple[RemoteSink, RemoteSink]] = field(default_factory=list)  # (old, new) sharing a spool
    new: list[Sink] = field(default_factory=list)  # to start after the swap
    changed_keys: dict[str, list[str]] = field(default_factory=dict)  # replaced sink -> what differs

    @property
    def changed(self) -> bool:
        return bool(self.diff.removed or self.diff.replaced or self.diff.added)


def build(spec: SinkSpec, state_dir: Path, journald_telemetry: bool) -> Sink:
    """A new sink for `spec` (not started), with its own spool."""
    if spec.entry is None:
        return JournaldSink(telemetry=journald_telemetry)
    return build_remote(spec.entry, state_dir, self_hostname=spec.hostname)


def prepare(
    running: Mapping[str, tuple[SinkSpec, Sink]],
    new_specs: Mapping[str, SinkSpec],
    state_dir: Path,
    journald_telemetry: bool,
) -> SinkChange:
    """Build every new or changed sink; nothing running is touched. Raises KarmorError
    (after closing what it built) when one cannot be built."""
    d = diff({n: spec for n, (spec, _) in running.items()}, new_specs)
    # The spools of the sinks that go, by directory: a new sink on the same one takes it over.
    leaving = {spool_dir(spec.entry, state_dir): sink for n, (spec, sink) in running.items()
               if n not in d.kept and spec.entry is not None and isinstance(sink, RemoteSink)}
    change = SinkChange(specs=dict(new_specs), sinks=[], diff=d,
                        retired=[running[n][1] for n in (*d.removed, *d.replaced)],
                        changed_keys={n: running[n][0].changes(new_specs[n]) for n in d.replaced})
    try:
        for name, spec in new_specs.items():
            if name in d.kept:
                change.sinks.append(running[name][1])
                continue
            # pop: a spool goes to one new sink; a second one on it fails on the spool's lock
            old = leaving.pop(spool_dir(spec.entry, state_dir), None) if spec.entry is not None else None
            try:
                sink = (_take_over(spec, old, state_dir) if old is not None
                        else build(spec, state_dir, journald_telemetry))
            except OSError as exc:  # e.g. a spool directory that cannot be created
                raise KarmorError(f"sinks.remote {name}: {exc}") from None
            change.sinks.append(sink)
            change.new.append(sink)
            if old is not None:
                change.handovers.append((old, sink))  # type: ignore[arg-type]
    except BaseException:
        handed = {id(new) for _, new in change.handovers}
        _close_quietly(s for s in change.new if id(s) not in handed)
        for _, new in change.handovers:
            new.release_spool()  # never started: this only marks the spool as not its own
        raise
    return change


def _take_over(spec: SinkSpec, old: RemoteSink, state_dir: Path) -> RemoteSink:
    assert spec.entry is not None
    if old.kind != spec.entry.type and old.spool.records:
        # Spooled payloads are already in the old wire format: the new sink cannot send them.
        raise KarmorError(f"sinks.remote {spec.name}: type {old.kind} -> {spec.entry.type}, but its spool"
                          f" {old.spool.directory} still holds {old.spool.records} {old.kind} records;"
                          " give the new sink another name (the old spool stays on disk)")
    return build_remote(spec.entry, state_dir, self_hostname=spec.hostname, spool=old.spool)


def _close_quietly(sinks: Iterable[Sink]) -> None:
    for sink in sinks:
        try:
            sink.close()
        except Exception:  # noqa: BLE001 - releasing what was built must go on
            pass

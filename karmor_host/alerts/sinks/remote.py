"""What the remote sinks share: records -> disk spool -> one sender thread -> TCP/TLS peer.

`emit` (the pipeline's thread) only encodes the record and appends it to the spool: it
never waits for the network, so journald delivery goes on whatever the collector does. A
sender thread per sink connects (capped exponential backoff with jitter), takes batches
from the spool, hands them to the wire format (`_deliver`, implemented by the forward and
syslog sinks) and commits them once the peer confirmed them; on any failure the batch goes
back to the spool and is sent again on the next connection (at least once). Records that
had already left when the failure came are counted in `duplicates`: the peer may see them
twice. Every record the spool had to drop is counted and announced as a SystemEvent through
`on_notice` (the pipeline passes it to its other sinks).
"""

from __future__ import annotations

import os
import random
import select
import socket
import ssl
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from karmor_host import log
from karmor_host.alerts.record import HOST_LOG, SYSTEM_EVENT
from karmor_host.alerts.sinks.base import Record
from karmor_host.alerts.spool import Batch, Spool
from karmor_host.errors import KarmorError

if TYPE_CHECKING:
    from karmor_host.config import RemoteSinkConfig

IDLE_POLL_S = 0.25  # how often an idle sender checks its connection and the stop flag
SYNC_EVERY_S = 1.0  # fsync of the spool: what a power loss can cost
NOTICE_EVERY_S = 10.0  # at most one drop notice per sink in this time (the first at once)
DROP_OPERATION = "RemoteSinkDrop"

# (sink, operation, message, data, extra fields) -> a SystemEvent for the other sinks
NoticeFn = Callable[["RemoteSink", str, str, str, dict[str, Any]], None]


class DeliveryError(Exception):
    """The peer answered, but not as the protocol says (refused handshake, wrong ack...)."""


@dataclass(frozen=True)
class TLSSettings:
    ca_file: str = ""  # "" = the system's CA store
    cert_file: str = ""  # client certificate (mutual TLS), with key_file
    key_file: str = ""
    verify: bool = True  # peer certificate and host name; off only for lab setups
    server_name: str = ""  # "" = the host part of the address


def tls_context(tls: TLSSettings, where: str) -> ssl.SSLContext:
    """A client context; a file that cannot be loaded is a start error naming `where`
    (the sink) and the file."""
    what = f"tls.caFile {tls.ca_file}" if tls.ca_file else "the system CA store"
    try:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=tls.ca_file or None)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        if tls.cert_file:
            what = f"tls.certFile {tls.cert_file} / tls.keyFile {tls.key_file}"
            ctx.load_cert_chain(tls.cert_file, tls.key_file or None)
    except (OSError, ssl.SSLError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise KarmorError(f"{where}: cannot load {what}: {reason}") from None
    if not tls.verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def describe(exc: BaseException) -> str:
    """One line for logs and `status`; certificate failures say what to check."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (f"TLS certificate verification failed: {exc.verify_message or exc.reason}"
                " (is tls.caFile the CA that signed the collector's certificate, and does the"
                " certificate name the address or tls.serverName?)")
    if isinstance(exc, socket.timeout):
        return "timed out"
    return str(exc) or type(exc).__name__


class RemoteSink(ABC):
    """Base of ForwardSink and SyslogSink; implements the pipeline's Sink protocol."""

    kind = "remote"

    def __init__(
        self,
        name: str,
        host: str,
        port: int,
        spool: Spool,
        *,
        tls: TLSSettings | None = None,
        alerts: bool = True,
        telemetry: bool = False,
        send_timeout: float = 10.0,
        retry_initial: float = 0.5,
        retry_max: float = 30.0,
        keepalive_s: int = 30,
        batch_records: int = 500,
        batch_bytes: int = 1 << 20,
        on_notice: NoticeFn | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.host, self.port = host, port
        self.spool = spool
        self._owns_spool = True  # False once handed to a replacing sink (release_spool)
        self.alerts = alerts
        self.telemetry = telemetry
        self.send_timeout = send_timeout
        self.retry_initial, self.retry_max = retry_initial, retry_max
        self.keepalive_s = keepalive_s
        self.batch_records, self.batch_bytes = batch_records, batch_bytes
        self.on_notice = on_notice
        self._clock = clock
        self._tls = tls
        self._tls_ctx = tls_context(tls, f"sinks.remote {name}") if tls is not None else None
        self._log = log.get(f"karmor_host.alerts.{self.kind}")
        if tls is not None and not tls.verify:
            self._log.warning("remote_sink_tls_unverified", sink=name,
                              hint="tls.verify is false: anyone on the path can read and forge alerts")
        self.sent = 0  # records the peer confirmed
        self.duplicates = 0  # records sent again after a send whose outcome was unknown
        self.errors = 0  # records that could not be encoded or written to the spool
        self.connects = 0
        self.send_errors = 0  # failed deliveries and connection attempts
        self.last_error = ""
        self._sock: socket.socket | None = None
        self._written = False  # set by _deliver once bytes of the batch left
        self._unconfirmed: tuple[int, int, int] | None = None  # (seq, start, end) sent, no answer
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._reported_lost = 0
        self._last_notice = float("-inf")

    # --- the wire format (subclasses) -------------------------------------------------

    @abstractmethod
    def encode(self, record: Record) -> bytes:
        """The record as the spool keeps it: ready for this sink's wire format."""

    def _handshake(self, sock: socket.socket) -> None:
        """After connecting (and TLS): authenticate, if the protocol has it."""

    @abstractmethod
    def _deliver(self, sock: socket.socket, batch: Batch) -> None:
        """Send `batch` and return once the peer confirmed it; raise otherwise. Set
        `self._written = True` as soon as any of its bytes are on their way."""

    @property
    def keep_connection(self) -> bool:
        return True

    # --- Sink protocol (pipeline thread) ----------------------------------------------

    @property
    def failed(self) -> int:
        """Records that will never be delivered: dropped, damaged on disk, unencodable."""
        return self.spool.dropped + self.spool.corrupt + self.errors

    @property
    def connected(self) -> bool:
        return self._sock is not None

    def emit(self, record: Record) -> None:
        if not self.alerts and record.get("Type") not in (HOST_LOG, SYSTEM_EVENT):
            return  # a telemetry-only sink: no alerts of any kind
        try:
            self.spool.append(self.encode(record))
        except Exception as exc:  # noqa: BLE001 - a sink never raises into the pipeline
            self.errors += 1
            self._log.error("remote_sink_spool_failed", sink=self.name, error=describe(exc))
        self._announce_losses()

    def flush(self) -> None:
        self.spool.sync()

    def close(self) -> None:
        self.stop_sending()
        self._announce_losses(final=True)
        if self._owns_spool:
            self.spool.close()

    def stop_sending(self) -> None:
        """Stop the sender thread (the batch out is confirmed or put back first); `emit`
        still spools. A reload calls this before another sink takes the spool over."""
        self._stop.set()
        if self._thread is not None:
            # An idle sender notices within IDLE_POLL_S and closes its connection cleanly;
            # one blocked on the network is woken by shutting the socket down under it.
            self._thread.join(3 * IDLE_POLL_S)
            if self._thread.is_alive():
                self._shutdown_socket()
                self._thread.join(self.send_timeout)
            if self._thread.is_alive():
                self._log.error("remote_sink_sender_stuck", sink=self.name)
            self._thread = None

    def release_spool(self) -> Spool:
        """Stop for good but leave the spool open: the sink that replaces this one on a
        reload delivers what is in it. Losses so far are announced here, by this sink."""
        self.stop_sending()
        self._announce_losses(final=True)
        self._owns_spool = False
        return self.spool

    def adopt_losses(self) -> None:
        """On a spool taken over from the sink this one replaces: its losses were already
        announced by that sink, count only new ones from here."""
        self._reported_lost = self.failed

    def stats(self) -> dict[str, Any]:
        return {
            "type": self.kind,
            "address": f"{self.host}:{self.port}",
            "sent": self.sent,
            "failed": self.failed,
            "spooled": self.spool.records,
            "spool_bytes": self.spool.pending_bytes,
            "dropped": self.spool.dropped,
            "corrupt": self.spool.corrupt,
            "duplicates": self.duplicates,
            "connected": self.connected,
            "connects": self.connects,
            "send_errors": self.send_errors,
            "last_error": self.last_error,
        }

    def _announce_losses(self, final: bool = False) -> None:
        lost = self.failed
        new = lost - self._reported_lost
        if new <= 0 or self.on_notice is None:
            return
        now = self._clock()
        if not final and now - self._last_notice < NOTICE_EVERY_S:
            return  # the next notice sums these up
        self._reported_lost, self._last_notice = lost, now
        message = (f"Remote sink {self.name}: {new} records lost, {lost} since start (spool full at"
                   f" {self.spool.max_bytes} bytes, policy {self.spool.overflow}: {self.spool.dropped};"
                   f" damaged on disk: {self.spool.corrupt}; not encodable or not writable: {self.errors})")
        data = (f"sink={self.name} lost={new} total={lost} dropped={self.spool.dropped}"
                f" corrupt={self.spool.corrupt} errors={self.errors} overflow={self.spool.overflow}")
        self.on_notice(self, DROP_OPERATION, message, data,
                       {"Sink": self.name, "DroppedRecords": new, "DroppedTotal": lost})

    # --- sender thread ----------------------------------------------------------------

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"karmor-sink-{self.name}", daemon=True)
            self._thread.start()

    def wait_delivered(self, timeout: float) -> bool:
        """True once the spool is empty (tests, benchmarks); never used on the alert path."""
        return self.spool.wait_empty(timeout)

    def _run(self) -> None:
        failures = 0
        last_sync = self._clock()
        while not self._stop.is_set():
            if self._clock() - last_sync >= SYNC_EVERY_S:
                last_sync = self._clock()
                self._guard(self.spool.sync)
            if self._sock is None:
                try:
                    self._connect()
                except Exception as exc:  # noqa: BLE001 - any failure means: retry later
                    failures += 1
                    self._failure("connect", exc, failures)
                    continue
            batch = self._guard(lambda: self.spool.take(
                self.batch_records, self.batch_bytes, IDLE_POLL_S, until=self._unconfirmed_end()))
            if batch is None:
                if self._peer_gone():
                    self._drop_connection("the collector closed the connection")
                continue
            if self._peer_gone():
                self.spool.release(batch)
                self._drop_connection("the collector closed the connection")
                continue
            if self._unconfirmed is not None and self._unconfirmed[:2] == (batch.seq, batch.start):
                self.duplicates += len(batch.payloads)
            self._written = False
            try:
                self._deliver(self._sock, batch)  # type: ignore[arg-type]
            except Exception as exc:  # noqa: BLE001
                self.spool.release(batch)
                if self._written:
                    self._unconfirmed = (batch.seq, batch.start, batch.end)
                elif self._unconfirmed is not None and self._unconfirmed[:2] == (batch.seq, batch.start):
                    self.duplicates -= len(batch.payloads)  # nothing left this time after all
                self._drop_connection(None)
                failures += 1
                self._failure("deliver", exc, failures)
                continue
            self.spool.commit(batch)
            self.sent += len(batch.payloads)
            self._unconfirmed = None
            failures = 0  # only a confirmed batch proves the peer works (not a bare connect)
            if not self.keep_connection:
                self._drop_connection(None, graceful=True)
        self._drop_connection(None, graceful=True)

    def _unconfirmed_end(self) -> tuple[int, int] | None:
        u = self._unconfirmed
        return (u[0], u[2]) if u is not None else None

    def _guard(self, fn: Callable[[], Any]) -> Any:
        """Spool I/O errors in the sender thread: log them, never let the thread die."""
        try:
            return fn()
        except OSError as exc:
            self._log.error("remote_sink_spool_failed", sink=self.name, error=describe(exc))
            self._stop.wait(IDLE_POLL_S)
            return None

    def _failure(self, what: str, exc: BaseException, failures: int) -> None:
        self.send_errors += 1
        text = describe(exc)
        if text != self.last_error:  # one log line per distinct problem, not per retry
            self._log.warning(f"remote_sink_{what}_failed", sink=self.name, address=f"{self.host}:{self.port}",
                              error=text, spooled=self.spool.records)
        self.last_error = text
        self._stop.wait(self._backoff(failures))

    def _backoff(self, failures: int) -> float:
        base = min(self.retry_max, self.retry_initial * 2 ** min(failures - 1, 30))
        return base * random.uniform(0.5, 1.0)  # jitter: a fleet must not reconnect in step

    def _connect(self) -> None:
        sock = socket.create_connection((self.host, self.port), timeout=self.send_timeout)
        try:
            _keepalive(sock, self.keepalive_s, self.send_timeout)
            if self._tls_ctx is not None:
                assert self._tls is not None
                sock = self._tls_ctx.wrap_socket(sock, server_hostname=self._tls.server_name or self.host)
            sock.settimeout(self.send_timeout)
            self._handshake(sock)
        except BaseException:
            sock.close()
            raise
        self._sock = sock
        self.connects += 1
        self._log.info("remote_sink_connected", sink=self.name, address=f"{self.host}:{self.port}",
                       tls=self._tls_ctx is not None, spooled=self.spool.records)
        self.last_error = ""

    def _peer_gone(self) -> bool:
        """Between batches the peer has nothing to say: readable means closed (or broken)."""
        sock = self._sock
        if sock is None:
            return True
        try:
            readable, _, _ = select.select([sock], [], [], 0)
            if not readable:
                return False
            sock.setblocking(False)
            try:
                data = sock.recv(4096)
            finally:
                sock.settimeout(self.send_timeout)
        except (ssl.SSLWantReadError, BlockingIOError):
            return False  # TLS housekeeping (e.g. a session ticket), no application data
        except (OSError, ValueError):
            return True
        return not data or self._unexpected(data)

    def _unexpected(self, data: bytes) -> bool:
        self._log.warning("remote_sink_unexpected_data", sink=self.name, size=len(data))
        return True

    def _drop_connection(self, reason: str | None, graceful: bool = False) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            try:
                if graceful and isinstance(sock, ssl.SSLSocket):
                    sock.settimeout(0.5)
                    sock.unwrap()  # close_notify: the collector sees an orderly end, not an error
            except (OSError, ValueError):
                pass
            try:
                sock.close()
            except OSError:
                pass
            if reason and not self._stop.is_set():
                self._log.info("remote_sink_disconnected", sink=self.name, reason=reason)

    def _shutdown_socket(self) -> None:
        sock = self._sock
        if sock is not None:
            try:  # wakes a sender blocked in send/recv; it then closes the socket itself
                socket.socket.shutdown(sock, socket.SHUT_RDWR)
            except OSError:
                pass


def _keepalive(sock: socket.socket, idle_s: int, timeout_s: float) -> None:
    """TCP keep-alive finds a dead peer on an idle connection; TCP_USER_TIMEOUT bounds how
    long sent data may stay unacknowledged before the kernel gives up on the connection."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, max(1, idle_s))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, max(1, idle_s // 3))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 3)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, int(timeout_s * 1000))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def spool_dir(cfg: RemoteSinkConfig, state_dir: Path) -> Path:
    return Path(cfg.spool.dir) if cfg.spool.dir else state_dir / "spool" / cfg.name


def build(cfg: RemoteSinkConfig, state_dir: Path, self_hostname: str = "", spool: Spool | None = None) -> RemoteSink:
    """The sink an entry of `sinks.remote` describes (not started). Unreadable TLS or key
    files, or a spool directory in use, are start errors that name the sink. `spool`: an
    open spool to use instead (a reload hands over the one of the sink being replaced);
    it is left open if the build fails."""
    from karmor_host.alerts.sinks.forward import ForwardSink  # the wire formats import this module
    from karmor_host.alerts.sinks.syslog import SyslogSink

    where = f"sinks.remote {cfg.name}"
    tls = None
    if cfg.tls.enabled:
        tls = TLSSettings(cfg.tls.ca_file, cfg.tls.cert_file, cfg.tls.key_file, cfg.tls.verify, cfg.tls.server_name)
    key = _read_key(cfg.shared_key_file, where) if cfg.shared_key_file else b""
    own = spool is None
    if spool is None:
        spool = Spool(spool_dir(cfg, state_dir), cfg.spool.max_bytes, cfg.spool.overflow)
    common: dict[str, Any] = dict(
        tls=tls, alerts="alerts" in cfg.records, telemetry="telemetry" in cfg.records,
        send_timeout=float(cfg.send_timeout), retry_max=float(cfg.retry_max), batch_records=cfg.batch_records,
    )
    try:
        if cfg.type == "forward":
            return ForwardSink(cfg.name, cfg.host, cfg.port, spool, tag=cfg.tag, shared_key=key,
                               self_hostname=self_hostname, **common)
        return SyslogSink(cfg.name, cfg.host, cfg.port, spool, fmt=cfg.format, facility=cfg.facility, **common)
    except BaseException:
        if own:
            spool.close()
        raise


def _read_key(path: str, where: str) -> bytes:
    """The shared key: a root-only file, so the key stays out of the world-readable config."""
    try:
        st = os.stat(path)
        if st.st_mode & 0o077:
            raise KarmorError(f"{where}: sharedKeyFile {path} is readable by others"
                              f" (mode {st.st_mode & 0o777:04o}); chmod 600 it")
        key = Path(path).read_bytes().strip()
    except OSError as exc:
        raise KarmorError(f"{where}: cannot read sharedKeyFile: {exc}") from None
    if not key:
        raise KarmorError(f"{where}: sharedKeyFile {path} is empty")
    return key

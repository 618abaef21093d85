"""Agent configuration (/etc/karmor/karmor-host.yaml): defaults in one table, strict validation.

A bad config refuses to start: every error names the file, line, column and key. Unknown
keys are errors (with a "did you mean"), because a misspelt key silently falling back to a
default is how security settings get lost.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from karmor_host.errors import ConfigError, Problem
from karmor_host.policy.ruleset import Category, Posture

ENFORCERS = ("auto", "bpflsm", "apparmor", "selinux", "none")
VISIBILITY = ("process", "file", "network", "capabilities", "syscall")
LOG_LEVELS = ("debug", "info", "warning", "error")

# The one table of defaults. Keys are the YAML keys; docs/configuration.md mirrors it.
DEFAULTS: dict[str, Any] = {
    "policyDir": "/etc/karmor/policies",
    "enforcer": "auto",
    "defaultPosture": {"file": "audit", "network": "audit", "capabilities": "audit"},
    # Like KubeArmor's default hostVisibility; file telemetry is the loud one (every open).
    "visibility": ["process", "network", "capabilities"],
    "throttle": {"enabled": True, "maxAlertsPerSecond": 10, "quietSeconds": 30},
    "identity": {"cluster": "default", "hostname": ""},
    "logLevel": "info",
    "monitor": {"ringBufferBytes": 8 * 1024 * 1024, "ignorePrefixes": ["/proc/", "/sys/", "/dev/"]},
    "sinks": {"journald": {"enabled": True, "telemetry": False}, "remote": []},
}
# The same table, continued: the defaults of each entry of `sinks.remote` (None = required).
REMOTE_SINK_DEFAULTS: dict[str, Any] = {
    "name": "",  # "" = <type>-<host>-<port>; names the spool directory and the `status` entry
    "type": None,  # forward | syslog
    "address": None,  # host:port, [IPv6]:port
    "records": ["alerts"],  # alerts (with SystemEvents), telemetry (HostLog)
    "tag": "karmor.alert",  # forward only
    "sharedKeyFile": "",  # forward only: HELO/PING/PONG handshake with this key
    "format": "structured",  # syslog only: structured | json
    "facility": "auth",  # syslog only
    "tls": {"enabled": False, "caFile": "", "certFile": "", "keyFile": "", "verify": True, "serverName": ""},
    "spool": {"dir": "", "maxBytes": 64 * 1024 * 1024, "overflow": "drop_oldest"},
    "sendTimeoutSeconds": 10,
    "retryMaxSeconds": 30,
    "batchRecords": 500,
}
REMOTE_TYPES = ("forward", "syslog")
REMOTE_RECORDS = ("alerts", "telemetry")
SYSLOG_FORMATS = ("structured", "json")
SYSLOG_FACILITIES = ("kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron",
                     "authpriv", "ftp", "ntp", "security", "console", *(f"local{i}" for i in range(8)))
OVERFLOW_POLICIES = ("drop_oldest", "drop_newest")
_ONLY_FOR = {"tag": "forward", "sharedKeyFile": "forward", "format": "syslog", "facility": "syslog"}
_SINK_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")


@dataclass(frozen=True)
class ThrottleConfig:
    enabled: bool = True
    max_per_second: int = 10
    quiet_seconds: int = 30


@dataclass(frozen=True)
class JournaldSinkConfig:
    enabled: bool = True
    telemetry: bool = False  # HostLog records are loud: off unless asked for


_R = REMOTE_SINK_DEFAULTS


@dataclass(frozen=True)
class TLSConfig:
    enabled: bool = _R["tls"]["enabled"]
    ca_file: str = _R["tls"]["caFile"]  # "" = the system's CA store
    cert_file: str = _R["tls"]["certFile"]  # client certificate, for collectors that ask for one
    key_file: str = _R["tls"]["keyFile"]
    verify: bool = _R["tls"]["verify"]
    server_name: str = _R["tls"]["serverName"]  # "" = the host of `address`


@dataclass(frozen=True)
class SpoolConfig:
    dir: str = _R["spool"]["dir"]  # "" = <state dir>/spool/<sink name>
    max_bytes: int = _R["spool"]["maxBytes"]
    overflow: str = _R["spool"]["overflow"]


@dataclass(frozen=True)
class RemoteSinkConfig:
    name: str
    type: str
    host: str
    port: int
    records: frozenset[str] = frozenset(_R["records"])
    tag: str = _R["tag"]
    shared_key_file: str = _R["sharedKeyFile"]
    format: str = _R["format"]
    facility: str = _R["facility"]
    tls: TLSConfig = TLSConfig()
    spool: SpoolConfig = SpoolConfig()
    send_timeout: int = _R["sendTimeoutSeconds"]
    retry_max: int = _R["retryMaxSeconds"]
    batch_records: int = _R["batchRecords"]


@dataclass(frozen=True)
class Config:
    source: str = "<defaults>"
    policy_dir: Path = Path(DEFAULTS["policyDir"])
    enforcer: str = "auto"
    postures: dict[Category, Posture] = field(default_factory=lambda: {c: Posture.AUDIT for c in Category})
    visibility: frozenset[str] = frozenset(DEFAULTS["visibility"])
    throttle: ThrottleConfig = ThrottleConfig()
    cluster: str = "default"
    hostname: str = ""  # "" = the kernel's host name
    log_level: str = "info"
    ring_buffer_bytes: int = DEFAULTS["monitor"]["ringBufferBytes"]
    ignore_prefixes: tuple[str, ...] = tuple(DEFAULTS["monitor"]["ignorePrefixes"])
    journald: JournaldSinkConfig = JournaldSinkConfig()
    remote_sinks: tuple[RemoteSinkConfig, ...] = ()


class _Reader:
    """Walks the composed YAML tree, collecting problems with their positions."""

    def __init__(self, filename: str) -> None:
        self.file = filename
        self.problems: list[Problem] = []

    def err(self, node: yaml.Node | None, key: str, msg: str) -> None:
        line = node.start_mark.line + 1 if node is not None else 0
        col = node.start_mark.column + 1 if node is not None else 0
        self.problems.append(Problem(self.file, line, col, key, msg))

    def mapping(self, node: yaml.Node, key: str, allowed: dict[str, Any]) -> dict[str, yaml.Node]:
        if not isinstance(node, yaml.MappingNode):
            self.err(node, key, "must be a mapping")
            return {}
        out: dict[str, yaml.Node] = {}
        for knode, vnode in node.value:
            name = knode.value if isinstance(knode, yaml.ScalarNode) else str(knode.value)
            full = f"{key}.{name}" if key else name
            if name not in allowed:
                hint = difflib.get_close_matches(name, list(allowed), n=1)
                extra = f" (did you mean '{hint[0]}'?)" if hint else ""
                self.err(knode, full, f"unknown key{extra}; known keys: {', '.join(sorted(allowed))}")
                continue
            if name in out:
                self.err(knode, full, "duplicate key")
                continue
            out[name] = vnode
        return out

    def scalar(self, node: yaml.Node, key: str) -> Any:
        if not isinstance(node, yaml.ScalarNode):
            self.err(node, key, "must be a single value")
            return None
        return yaml.safe_load(yaml.serialize(node))

    def choice(self, node: yaml.Node, key: str, choices: tuple[str, ...]) -> str | None:
        value = self.scalar(node, key)
        if value is None:
            return None
        if not isinstance(value, str) or value.lower() not in choices:
            self.err(node, key, f"must be one of {', '.join(choices)}, not {value!r}")
            return None
        return value.lower()

    def boolean(self, node: yaml.Node, key: str) -> bool | None:
        value = self.scalar(node, key)
        if not isinstance(value, bool):
            self.err(node, key, f"must be true or false, not {value!r}")
            return None
        return value

    def integer(self, node: yaml.Node, key: str, lo: int, hi: int) -> int | None:
        value = self.scalar(node, key)
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            self.err(node, key, f"must be an integer in {lo}..{hi}, not {value!r}")
            return None
        return value

    def string_list(self, node: yaml.Node, key: str) -> list[str] | None:
        # Accept KubeArmor's comma-string form ("process,file") as well as a YAML list.
        if isinstance(node, yaml.ScalarNode):
            value = self.scalar(node, key)
            if not isinstance(value, str):
                self.err(node, key, "must be a list of names or a comma-separated string")
                return None
            return [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(node, yaml.SequenceNode):
            self.err(node, key, "must be a list of names")
            return None
        out = []
        for i, item in enumerate(node.value):
            value = self.scalar(item, f"{key}[{i}]")
            if not isinstance(value, str):
                self.err(item, f"{key}[{i}]", "must be a string")
                return None
            out.append(value)
        return out


def _abs_path(r: _Reader, node: yaml.Node, key: str) -> Path | None:
    value = r.scalar(node, key)
    if not isinstance(value, str) or not value.startswith("/") or "\0" in value or "\n" in value:
        r.err(node, key, f"must be an absolute path, not {value!r}")
        return None
    return Path(value)


def _address(value: Any) -> tuple[str, int] | str:
    """`host:port` or `[v6addr]:port` -> (host, port), or what is wrong with it."""
    if not isinstance(value, str) or not value or any(c.isspace() or c == "/" for c in value):
        return f"must be host:port (e.g. 127.0.0.1:24224 or [::1]:6514), not {value!r}"
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    else:
        host, _, port = value.rpartition(":")
        if ":" in host:
            return f"write an IPv6 address in brackets: [{host}]:{port}"
    if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        return (f"must be host:port with a port in 1..65535 (forward: usually 24224; syslog:"
                f" 6514 with TLS, 514 or 601 without), not {value!r}")
    return host, int(port)


def _opt_path(r: _Reader, node: yaml.Node, key: str) -> str | None:
    """An absolute path, or "" for none (the default of every optional file key)."""
    if isinstance(node, yaml.ScalarNode) and r.scalar(node, key) == "":
        return ""
    path = _abs_path(r, node, key)
    return str(path) if path is not None else None


def _remote_sink(r: _Reader, node: yaml.Node, key: str) -> RemoteSinkConfig | None:
    m = r.mapping(node, key, REMOTE_SINK_DEFAULTS)
    if not isinstance(node, yaml.MappingNode) or (not m and node.value):
        return None  # not a mapping, or every key was wrong: already reported
    kind = r.choice(m["type"], f"{key}.type", REMOTE_TYPES) if "type" in m else None
    address = _address(r.scalar(m["address"], f"{key}.address")) if "address" in m else None
    for required, have in (("type", "type" in m), ("address", "address" in m)):
        if not have:
            r.err(node, f"{key}.{required}", "required" + (": forward or syslog" if required == "type" else ""))
    if isinstance(address, str):
        r.err(m["address"], f"{key}.address", address)
    kw: dict[str, Any] = {}
    for name, only in _ONLY_FOR.items():
        if name in m and kind and kind != only:
            r.err(m[name], f"{key}.{name}", f"only for type {only}, this sink is {kind}")
    if "name" in m:
        value = r.scalar(m["name"], f"{key}.name")
        if not isinstance(value, str) or not _SINK_NAME.fullmatch(value) or value in ("journald", "stdout"):
            r.err(m["name"], f"{key}.name", f"must be 1-64 of A-Z a-z 0-9 . _ - (not journald or stdout), not {value!r}")
        else:
            kw["name"] = value
    if "records" in m:
        names = r.string_list(m["records"], f"{key}.records")
        if names is not None:
            bad = [n for n in names if n not in REMOTE_RECORDS]
            if bad or not names:
                r.err(m["records"], f"{key}.records", f"choose one or both of alerts, telemetry, not {names}")
            kw["records"] = frozenset(names)
    if "tag" in m:
        value = r.scalar(m["tag"], f"{key}.tag")
        if not isinstance(value, str) or not _TAG.fullmatch(value):
            r.err(m["tag"], f"{key}.tag", f"must be a Fluent tag (A-Z a-z 0-9 . _ -, up to 128), not {value!r}")
        kw["tag"] = value
    if "sharedKeyFile" in m:
        kw["shared_key_file"] = _opt_path(r, m["sharedKeyFile"], f"{key}.sharedKeyFile")
    if "format" in m:
        kw["format"] = r.choice(m["format"], f"{key}.format", SYSLOG_FORMATS)
    if "facility" in m:
        kw["facility"] = r.choice(m["facility"], f"{key}.facility", SYSLOG_FACILITIES)
    for yaml_key, attr, lo, hi in (("sendTimeoutSeconds", "send_timeout", 1, 600),
                                   ("retryMaxSeconds", "retry_max", 1, 3600),
                                   ("batchRecords", "batch_records", 1, 10_000)):
        if yaml_key in m:
            kw[attr] = r.integer(m[yaml_key], f"{key}.{yaml_key}", lo, hi)
    if "tls" in m:
        kw["tls"] = _tls(r, m["tls"], f"{key}.tls")
    if "spool" in m:
        kw["spool"] = _spool(r, m["spool"], f"{key}.spool")
    if not kind or not isinstance(address, tuple):
        return None
    host, port = address
    kw.setdefault("name", re.sub(r"[^A-Za-z0-9._-]", "_", f"{kind}-{host}-{port}"))
    return RemoteSinkConfig(type=kind, host=host, port=port, **{k: v for k, v in kw.items() if v is not None})


def _tls(r: _Reader, node: yaml.Node, key: str) -> TLSConfig | None:
    m = r.mapping(node, key, REMOTE_SINK_DEFAULTS["tls"])
    kw: dict[str, Any] = {}
    for yaml_key, attr in (("enabled", "enabled"), ("verify", "verify")):
        if yaml_key in m:
            kw[attr] = r.boolean(m[yaml_key], f"{key}.{yaml_key}")
    for yaml_key, attr in (("caFile", "ca_file"), ("certFile", "cert_file"), ("keyFile", "key_file")):
        if yaml_key in m:
            kw[attr] = _opt_path(r, m[yaml_key], f"{key}.{yaml_key}")
    if "serverName" in m:
        value = r.scalar(m["serverName"], f"{key}.serverName")
        if not isinstance(value, str) or any(c.isspace() for c in value):
            r.err(m["serverName"], f"{key}.serverName", f"must be a host name, not {value!r}")
        else:
            kw["server_name"] = value
    if bool(kw.get("cert_file")) != bool(kw.get("key_file")):
        r.err(node, key, "certFile and keyFile go together")
    if not kw.get("enabled"):
        # A CA or certificate without `enabled: true` is almost surely a forgotten switch:
        # refuse rather than send alerts in plain text.
        defaults = TLSConfig()
        for yaml_key, attr in (("caFile", "ca_file"), ("certFile", "cert_file"), ("keyFile", "key_file"),
                               ("serverName", "server_name"), ("verify", "verify")):
            if yaml_key in m and kw.get(attr) not in (None, getattr(defaults, attr)):
                r.err(m[yaml_key], f"{key}.{yaml_key}", "is set but tls.enabled is not true")
    return TLSConfig(**{k: v for k, v in kw.items() if v is not None})


def _spool(r: _Reader, node: yaml.Node, key: str) -> SpoolConfig:
    m = r.mapping(node, key, REMOTE_SINK_DEFAULTS["spool"])
    kw: dict[str, Any] = {}
    if "dir" in m:
        kw["dir"] = _opt_path(r, m["dir"], f"{key}.dir")
    if "maxBytes" in m:
        kw["max_bytes"] = r.integer(m["maxBytes"], f"{key}.maxBytes", 64 * 1024, 1 << 40)
    if "overflow" in m:
        kw["overflow"] = r.choice(m["overflow"], f"{key}.overflow", OVERFLOW_POLICIES)
    return SpoolConfig(**{k: v for k, v in kw.items() if v is not None})


def _remote_sinks(r: _Reader, node: yaml.Node) -> tuple[RemoteSinkConfig, ...] | None:
    if not isinstance(node, yaml.SequenceNode):
        r.err(node, "sinks.remote", "must be a list of sinks (each with type and address)")
        return None
    out: list[RemoteSinkConfig] = []
    seen: dict[str, str] = {}  # name or spool dir -> the entry that has it
    for i, item in enumerate(node.value):
        key = f"sinks.remote[{i}]"
        sink = _remote_sink(r, item, key)
        if sink is None:
            continue
        for what, value in (("name", sink.name), ("spool.dir", sink.spool.dir)):
            if value and value in seen:
                r.err(item, f"{key}.{what}", f"{value!r} is already used by {seen[value]}; each sink needs its own")
            seen.setdefault(value, key)
        out.append(sink)
    return tuple(out)


def parse(text: str, filename: str = "<config>") -> Config:
    """Parse and validate config text; raise ConfigError listing every problem."""
    r = _Reader(filename)
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line, col = (mark.line + 1, mark.column + 1) if mark else (0, 0)
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(str(Problem(filename, line, col, "", f"YAML syntax error: {problem}"))) from None
    if root is None:  # empty file: all defaults
        return Config(source=filename)
    kw: dict[str, Any] = {"source": filename}
    top = r.mapping(root, "", DEFAULTS)
    if "policyDir" in top:
        kw["policy_dir"] = _abs_path(r, top["policyDir"], "policyDir")
    if "enforcer" in top:
        kw["enforcer"] = r.choice(top["enforcer"], "enforcer", ENFORCERS)
    if "logLevel" in top:
        kw["log_level"] = r.choice(top["logLevel"], "logLevel", LOG_LEVELS)
    if "defaultPosture" in top:
        postures = {c: Posture.AUDIT for c in Category}
        for name, vnode in r.mapping(top["defaultPosture"], "defaultPosture", DEFAULTS["defaultPosture"]).items():
            value = r.choice(vnode, f"defaultPosture.{name}", tuple(p.value for p in Posture))
            if value:
                postures[Category(name)] = Posture(value)
        kw["postures"] = postures
    if "visibility" in top:
        names = r.string_list(top["visibility"], "visibility")
        if names is not None:
            bad = [n for n in names if n.lower() not in VISIBILITY]
            if bad:
                r.err(top["visibility"], "visibility",
                      f"unknown categories {bad}; choose from {', '.join(VISIBILITY)} (or an empty list)")
            kw["visibility"] = frozenset(n.lower() for n in names)
    if "throttle" in top:
        t = r.mapping(top["throttle"], "throttle", DEFAULTS["throttle"])
        tk: dict[str, Any] = {}
        if "enabled" in t:
            tk["enabled"] = r.boolean(t["enabled"], "throttle.enabled")
        if "maxAlertsPerSecond" in t:
            tk["max_per_second"] = r.integer(t["maxAlertsPerSecond"], "throttle.maxAlertsPerSecond", 1, 1_000_000)
        if "quietSeconds" in t:
            tk["quiet_seconds"] = r.integer(t["quietSeconds"], "throttle.quietSeconds", 0, 86_400)
        kw["throttle"] = ThrottleConfig(**{k: v for k, v in tk.items() if v is not None})
    if "identity" in top:
        ident = r.mapping(top["identity"], "identity", DEFAULTS["identity"])
        for key, attr in (("cluster", "cluster"), ("hostname", "hostname")):
            if key in ident:
                value = r.scalar(ident[key], f"identity.{key}")
                if not isinstance(value, str) or len(value) > 253 or any(c.isspace() for c in value):
                    r.err(ident[key], f"identity.{key}", f"must be a name without spaces, not {value!r}")
                else:
                    kw[attr] = value
    if "monitor" in top:
        mon = r.mapping(top["monitor"], "monitor", DEFAULTS["monitor"])
        if "ringBufferBytes" in mon:
            size = r.integer(mon["ringBufferBytes"], "monitor.ringBufferBytes", 4096, 1 << 30)
            if size is not None and size & (size - 1):
                r.err(mon["ringBufferBytes"], "monitor.ringBufferBytes", f"must be a power of two, not {size}")
            kw["ring_buffer_bytes"] = size
        if "ignorePrefixes" in mon:
            prefixes = r.string_list(mon["ignorePrefixes"], "monitor.ignorePrefixes")
            if prefixes is not None:
                for p in prefixes:
                    if not p.startswith("/"):
                        r.err(mon["ignorePrefixes"], "monitor.ignorePrefixes", f"{p!r} is not an absolute path")
                kw["ignore_prefixes"] = tuple(prefixes)
    if "sinks" in top:
        sinks = r.mapping(top["sinks"], "sinks", DEFAULTS["sinks"])
        if "journald" in sinks:
            j = r.mapping(sinks["journald"], "sinks.journald", DEFAULTS["sinks"]["journald"])
            jk = {}
            if "enabled" in j:
                jk["enabled"] = r.boolean(j["enabled"], "sinks.journald.enabled")
            if "telemetry" in j:
                jk["telemetry"] = r.boolean(j["telemetry"], "sinks.journald.telemetry")
            kw["journald"] = JournaldSinkConfig(**{k: v for k, v in jk.items() if v is not None})
        if "remote" in sinks:
            kw["remote_sinks"] = _remote_sinks(r, sinks["remote"])
    if r.problems:
        raise ConfigError("invalid configuration:\n" + "\n".join(str(p) for p in r.problems))
    return Config(**{k: v for k, v in kw.items() if v is not None})


def load(path: Path, missing_ok: bool = False) -> Config:
    """Load the config file. A missing file is an error unless `missing_ok` (then defaults)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if missing_ok:
            return Config(source=f"{path} (absent: defaults)")
        raise ConfigError(f"{path}: configuration file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read configuration: {exc}") from None
    return parse(text, str(path))

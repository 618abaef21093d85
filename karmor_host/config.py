"""Agent configuration (/etc/karmor/karmor-host.yaml): defaults in one table, strict validation.

A bad config refuses to start: every error names the file, line, column and key. Unknown
keys are errors (with a "did you mean"), because a misspelt key silently falling back to a
default is how security settings get lost.
"""

from __future__ import annotations

import difflib
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


@dataclass(frozen=True)
class ThrottleConfig:
    enabled: bool = True
    max_per_second: int = 10
    quiet_seconds: int = 30


@dataclass(frozen=True)
class JournaldSinkConfig:
    enabled: bool = True
    telemetry: bool = False  # HostLog records are loud: off unless asked for


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
            node = sinks["remote"]
            if not (isinstance(node, yaml.SequenceNode) and not node.value):
                r.err(node, "sinks.remote", "remote sinks are not supported by this version; leave the list empty")
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

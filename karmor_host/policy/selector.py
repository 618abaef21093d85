"""nodeSelector.matchLabels against this host's identity.

"Not for this host" is a result with a reason, never a silent drop: the compiler records it in
PolicyInfo so `status` and `policy show` can say why a policy does nothing here.

Hostname labels (`kubearmor.io/hostname`, and `kubernetes.io/hostname` as KubeArmor's own
examples use it) take a name, a comma list of names, or "*". Names compare case-insensitively
(DNS names are) and match the full host name or its first label ("web-1" matches
"web-1.example.com"). `kubearmor.io/hostnamereg` takes a glob (`web-*`, fnmatch rules, whole
name, case-insensitive); a value starting with "^" is a Python regular expression instead,
which must match the whole host name, so selectors written for KubeArmor's regex matching keep
working. Any other label must equal the host's label of that name exactly.
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

HOSTNAME_KEYS = ("kubearmor.io/hostname", "kubernetes.io/hostname")
HOSTNAMEREG_KEY = "kubearmor.io/hostnamereg"

_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}  # uname -> Kubernetes' names


@dataclass(frozen=True)
class HostIdentity:
    hostname: str
    labels: dict[str, str] = field(default_factory=dict)

    @classmethod
    def detect(
        cls, hostname: str | None = None, labels: Mapping[str, str] | None = None
    ) -> HostIdentity:
        """This host: uname's node name (or the override) plus the labels Kubernetes would give
        a node, then the configured labels on top."""
        uname = os.uname()
        name = hostname or uname.nodename
        base = {
            "kubearmor.io/hostname": name,
            "kubernetes.io/hostname": name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": _ARCH.get(uname.machine, uname.machine),
        }
        base.update(labels or {})
        return cls(name, base)

    from_system = detect


@dataclass(frozen=True)
class Match:
    applies: bool
    reason: str = ""  # why not, when applies is False


def hostname_matcher(value: str) -> Callable[[str], bool]:
    """A predicate for a hostnamereg value; ValueError when the regular expression is bad."""
    if value.startswith("^"):
        try:
            rx = re.compile(value, re.IGNORECASE)
        except re.error as exc:
            raise ValueError(f"bad regular expression: {exc}") from None
        return lambda name: rx.fullmatch(name) is not None
    glob = value.lower()
    return lambda name: fnmatch.fnmatchcase(name.lower(), glob)


def _names_host(value: str, hostname: str) -> bool:
    host = hostname.lower()
    short = host.split(".", 1)[0]
    for name in (n.strip().lower() for n in value.split(",")):
        if name == "*" or name == host or name == short:
            return True
    return False


def _check(key: str, want: str, identity: HostIdentity) -> str:
    """'' when the label matches, else the reason it does not."""
    if key in HOSTNAME_KEYS:
        if _names_host(want, identity.hostname):
            return ""
        return f"{key} {want!r} does not name this host ({identity.hostname})"
    if key == HOSTNAMEREG_KEY:
        try:
            ok = hostname_matcher(want)(identity.hostname)
        except ValueError as exc:
            return f"{key} {want!r}: {exc}"
        return "" if ok else f"{key} {want!r} does not match this host ({identity.hostname})"
    have = identity.labels.get(key)
    if have is None:
        return f"this host has no label {key!r} (the policy wants {want!r})"
    if have != want:
        return f"label {key!r} is {have!r} on this host, the policy wants {want!r}"
    return ""


def match(labels: Mapping[str, str] | Iterable[tuple[str, str]], identity: HostIdentity) -> Match:
    """Every label must match; the reason lists each one that does not."""
    pairs = labels.items() if isinstance(labels, Mapping) else labels
    reasons = [r for r in (_check(k, v, identity) for k, v in pairs) if r]
    if reasons:
        return Match(False, "; ".join(reasons))
    return Match(True)

"""Events as KubeArmor records: the dicts that `karmor logs --json` users already parse.

Three record types (field `Type`): `HostLog` (telemetry, also what `trace --json` prints),
`MatchedHostPolicy` (an alert) and `SystemEvent` (the agent speaking, e.g. throttling).
Field names, values and enumerations follow kubearmor-compat.md §2; see docs/alerts.md.
Unlike KubeArmor (which omits empty fields), every field of a record type is always
present, so journald fields and parsers see one stable shape.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from karmor_host.alerts import names
from karmor_host.kernel.events import Event, EventKind
from karmor_host.policy.ruleset import Rule

HOST_LOG = "HostLog"
MATCHED_HOST_POLICY = "MatchedHostPolicy"
MATCHED_NETWORK_POLICY = "MatchedNetworkPolicy"  # a KubeArmorNetworkPolicy firewall decision
ALERT_TYPES = (MATCHED_HOST_POLICY, MATCHED_NETWORK_POLICY)  # records that are alerts
NETWORK_FIREWALL = "NetworkFirewall"  # its Operation
NETWORK_POLICY_ENFORCER = "NetworkPolicyEnforcer"  # its Enforcer
SYSTEM_EVENT = "SystemEvent"
DEFAULT_POSTURE = "DefaultPosture"  # PolicyName of a whitelist miss
MONITOR_ENFORCER = "eBPF Monitor"  # Enforcer of everything we saw but did not stop

# Operation per event kind; FORK/EXIT only ever appear as HostLog records.
OPERATIONS: dict[EventKind, str] = {
    EventKind.EXEC: "Process",
    EventKind.FORK: "Process",
    EventKind.EXIT: "Process",
    EventKind.OPEN: "File",
    EventKind.SOCKET: "Network",
    EventKind.CONNECT: "Network",
    EventKind.ACCEPT: "Network",
    EventKind.BIND: "Network",
    EventKind.CAPABLE: "Capabilities",
    EventKind.SYSCALL: "Syscall",
}
# The syscall named in Data when the event does not say which variant it saw.
_DEFAULT_SYSCALL: dict[EventKind, str] = {
    EventKind.EXEC: "execve",
    EventKind.FORK: "clone",
    EventKind.EXIT: "exit_group",
    EventKind.OPEN: "openat",
    EventKind.SOCKET: "socket",
    EventKind.CONNECT: "connect",
    EventKind.ACCEPT: "accept",
    EventKind.BIND: "bind",
}

_MACHINE_ID = Path("/etc/machine-id")


@dataclass(frozen=True)
class HostInfo:
    cluster_name: str
    host_name: str
    node_id: str  # /etc/machine-id

    @classmethod
    def detect(
        cls,
        cluster_name: str = "default",
        host_name: str | None = None,
        machine_id_path: Path = _MACHINE_ID,
    ) -> HostInfo:
        try:
            node_id = machine_id_path.read_text(encoding="ascii").strip()
        except OSError:
            node_id = ""  # containers and minimal images may have none; the field stays empty
        return cls(cluster_name, host_name or os.uname().nodename or socket.gethostname(), node_id)


def timestamps(ts_ns: int) -> tuple[int, str]:
    """(Timestamp, UpdatedTime): Unix seconds and RFC 3339 UTC with microseconds and `Z`."""
    if ts_ns <= 0:
        ts_ns = time.time_ns()
    seconds, rest = divmod(ts_ns, 1_000_000_000)
    when = datetime.fromtimestamp(seconds, tz=timezone.utc).replace(microsecond=rest // 1000)
    return seconds, when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def operation_of(event: Event) -> str:
    return OPERATIONS.get(event.kind, "Process")


def source_of(event: Event) -> str:
    """KubeArmor's Source: for exec the parent's executable, else the acting executable."""
    return event.parent_exe if event.kind is EventKind.EXEC else event.exe


def process_name(event: Event) -> str:
    # An exec event's acting process is already the new program.
    if event.kind is EventKind.EXEC and event.path:
        return event.path
    return event.exe


def _syscall(event: Event) -> str:
    return names.syscall_symbol(event.syscall or _DEFAULT_SYSCALL.get(event.kind, "unknown"))


def _sockaddr(family: int, addr: str, port: int) -> str:
    fam = names.family_name(family)
    if family == names.AF_INET6:
        return f"sa_family={fam} sin6_port={port} sin6_addr={addr}"
    if family == names.AF_UNIX:
        return f"sa_family={fam} sun_path={addr}"
    return f"sa_family={fam} sin_port={port} sin_addr={addr}"


def resource(event: Event) -> str:
    kind = event.kind
    if kind is EventKind.EXEC:
        # KubeArmor: the program's path, then its arguments without argv[0].
        return " ".join([event.path, *event.argv[1:]]).rstrip()
    if kind in (EventKind.FORK, EventKind.EXIT):
        return event.exe
    if kind is EventKind.SOCKET:
        return (
            f"domain={names.family_name(event.family)} type={names.socket_type_name(event.sock_type)}"
            f" protocol={names.protocol_name(event.family, event.protocol)}"
        )
    if kind is EventKind.BIND:
        return _sockaddr(event.family, event.saddr, event.sport)
    if kind in (EventKind.CONNECT, EventKind.ACCEPT):
        return _sockaddr(event.family, event.daddr, event.dport)  # the peer
    if kind is EventKind.CAPABLE:
        return names.capability_name(event.capability)
    return event.path  # OPEN, SYSCALL


def _syscall_args(event: Event) -> str:
    args = list(getattr(event, "sys_args", ()))
    labels = names.SYSCALL_ARG_LABELS.get(event.syscall)
    if labels is None:
        return f" args={','.join(str(a) for a in args)}" if args else ""
    out = []
    for label in labels:
        if label == "target":
            out.append(f" target={event.path}")
        elif args:  # the monitor may not have sent them all
            out.append(f" {label}={args.pop(0)}")
    return "".join(out)


def data(event: Event, lsm: str = "") -> str:
    kind = event.kind
    if kind is EventKind.CAPABLE:
        text = f"capability={names.capability_name(event.capability)}"
        if event.syscall:
            text = f"syscall={names.syscall_symbol(event.syscall)} {text}"
    else:
        text = f"syscall={_syscall(event)}"
        if kind is EventKind.OPEN:
            text += f" flags={names.open_flags_text(event.flags)}"
        elif kind in (EventKind.CONNECT, EventKind.ACCEPT, EventKind.BIND):
            text += (
                f" type={names.socket_type_name(event.sock_type)}"
                f" protocol={names.protocol_name(event.family, event.protocol)}"
            )
        elif kind is EventKind.EXIT:
            text += f" exit_code={event.retval}"
        elif kind is EventKind.SYSCALL:
            text += _syscall_args(event)
    if lsm:
        text += f" lsm={lsm}"
    return text


def result(event: Event) -> str:
    # EXIT carries the exit code in retval, not an errno.
    return "Passed" if event.kind is EventKind.EXIT else names.result_text(event.retval)


def _cwd(cwd: str) -> str:
    # KubeArmor prints the working directory with a trailing slash ("/", "/home/u/").
    return cwd if not cwd or cwd.endswith("/") else cwd + "/"


def _base(event: Event, host: HostInfo) -> dict[str, Any]:
    ts, updated = timestamps(event.ts_ns)
    return {
        "Timestamp": ts,
        "UpdatedTime": updated,
        "ClusterName": host.cluster_name,
        "HostName": host.host_name,
        "NodeID": host.node_id,
        "HostPPID": event.ppid,
        "HostPID": event.tgid,
        "PPID": event.ppid,
        "PID": event.tgid,
        "UID": event.uid,
        "ParentProcessName": event.parent_exe,
        "ProcessName": process_name(event),
    }


def _tail(event: Event, lsm: str = "") -> dict[str, Any]:
    return {
        "Source": source_of(event),
        "Operation": operation_of(event),
        "Resource": resource(event),
        "Data": data(event, lsm),
    }


def host_log(event: Event, host: HostInfo) -> dict[str, Any]:
    """Telemetry record (Type HostLog): what happened, no policy attached."""
    record = _base(event, host)
    record["Type"] = HOST_LOG
    record.update(_tail(event))
    record["Result"] = result(event)
    record["Cwd"] = _cwd(event.cwd)
    record["TTY"] = event.tty
    return record


def alert(
    event: Event,
    rule: Rule | None,
    host: HostInfo,
    action: str,
    enforcer: str,
    policy_name: str,
    *,
    operation: str = "",
    lsm: str = "",
) -> dict[str, Any]:
    """Alert record (Type MatchedHostPolicy). `rule` None is a default-posture alert:
    no severity, tags or message of its own. `operation` overrides the one derived from the
    event kind (a rule's own Operation wins); `lsm` adds `lsm=<hook>` to Data for enforcer events."""
    record = _base(event, host)
    tags = list(rule.tags) if rule else []
    record.update(
        {
            "PolicyName": policy_name,
            "Severity": str(rule.severity) if rule else "",
            "Tags": ",".join(tags),
            "ATags": tags,
            "Message": rule.message if rule else "",
            "Type": MATCHED_HOST_POLICY,
        }
    )
    record.update(_tail(event, lsm))
    if operation:
        record["Operation"] = operation
    record["Enforcer"] = enforcer
    record["Action"] = action
    record["Result"] = result(event)
    record["Cwd"] = _cwd(event.cwd)
    record["TTY"] = event.tty
    return record


def network_alert(
    host: HostInfo,
    *,
    ts_ns: int,
    policy_name: str,
    severity: int | None,
    tags: tuple[str, ...],
    message: str,
    action: str,
    result: str,
    resource: str,
    data: str,
    pid: int = 0,
    ppid: int = 0,
    uid: int = 0,
    process: str = "",
    parent_process: str = "",
) -> dict[str, Any]:
    """Alert record of the network firewall (Type MatchedNetworkPolicy): the same fields as
    a host-policy alert, so one parser reads both. `severity` None is a default-posture
    alert. The process is the sender (egress) or the local listener (ingress); Data says
    which and how it was found."""
    ts, updated = timestamps(ts_ns)
    return {
        "Timestamp": ts,
        "UpdatedTime": updated,
        "ClusterName": host.cluster_name,
        "HostName": host.host_name,
        "NodeID": host.node_id,
        "HostPPID": ppid,
        "HostPID": pid,
        "PPID": ppid,
        "PID": pid,
        "UID": uid,
        "ParentProcessName": parent_process,
        "ProcessName": process,
        "PolicyName": policy_name,
        "Severity": "" if severity is None else str(severity),
        "Tags": ",".join(tags),
        "ATags": list(tags),
        "Message": message,
        "Type": MATCHED_NETWORK_POLICY,
        "Source": process,
        "Operation": NETWORK_FIREWALL,
        "Resource": resource,
        "Data": data,
        "Enforcer": NETWORK_POLICY_ENFORCER,
        "Action": action,
        "Result": result,
        "Cwd": "",
        "TTY": "",
    }


def system_event(
    host: HostInfo,
    operation: str,
    message: str,
    *,
    data: str = "",
    ts_ns: int = 0,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The agent's own notices (Type SystemEvent), e.g. Operation AlertThreshold."""
    ts, updated = timestamps(ts_ns)
    record: dict[str, Any] = {
        "Timestamp": ts,
        "UpdatedTime": updated,
        "ClusterName": host.cluster_name,
        "HostName": host.host_name,
        "NodeID": host.node_id,
        "Type": SYSTEM_EVENT,
        "Operation": operation,
        "Message": message,
        "Data": data,
    }
    record.update(extra or {})
    return record

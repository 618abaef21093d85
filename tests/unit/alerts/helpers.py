"""Builders for Event and Rule objects used across the alert tests."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from karmor_host.kernel.events import Event, EventKind
from karmor_host.policy.ruleset import Action, Operation, Rule, Source, TargetKind

TS_NS = 1_717_259_989_360_067_123  # 2024-06-01T16:39:49.360067Z

_BASE = Event(
    kind=EventKind.OPEN,
    ts_ns=TS_NS,
    pid=2421,
    tgid=2420,
    ppid=1582,
    uid=1000,
    gid=1000,
    comm="cat",
    exe="/usr/bin/cat",
    parent_exe="/usr/bin/bash",
    cwd="/home/u",
    tty="pts0",
)


def event(kind: EventKind = EventKind.OPEN, **fields: Any) -> Event:
    return replace(_BASE, kind=kind, **fields)


def opened(path: str, flags: int = 0, **fields: Any) -> Event:
    return event(EventKind.OPEN, path=path, flags=flags, **fields)


def executed(path: str, parent_exe: str = "/usr/bin/bash", **fields: Any) -> Event:
    fields.setdefault("argv", (path.rsplit("/", 1)[-1],))
    return event(EventKind.EXEC, path=path, exe=path, parent_exe=parent_exe, **fields)


_next_id = [1000]


def rule(
    operation: Operation,
    kind: TargetKind,
    target: str,
    action: Action = Action.BLOCK,
    *,
    policy: str = "p",
    sources: tuple[str, ...] = (),
    **fields: Any,
) -> Rule:
    """A rule as the compiler emits it; `sources` entries ending in "/" are directories
    (append "**" for a recursive one, e.g. "/usr/bin/**")."""
    srcs = []
    for s in sources:
        recursive = s.endswith("/**")
        path = s[:-2] if recursive else s
        srcs.append(Source(path=path, original=s, is_dir=path.endswith("/"), recursive=recursive))
    _next_id[0] += 1
    return Rule(
        id=fields.pop("id", _next_id[0]),
        policy=policy,
        file=f"/etc/karmor/policies/{policy}.yaml",
        line=fields.pop("line", 10),
        operation=operation,
        kind=kind,
        target=target,
        original=fields.pop("original", target),
        action=action,
        severity=fields.pop("severity", 5),
        sources=tuple(srcs),
        **fields,
    )


def file_rule(target: str, action: Action = Action.BLOCK, **kw: Any) -> Rule:
    kind = TargetKind.DIR if target.endswith("/") else TargetKind.PATH
    if any(c in target for c in "*?["):
        kind = TargetKind.PATTERN
    return rule(Operation.FILE, kind, target, action, **kw)


def proc_rule(target: str, action: Action = Action.BLOCK, **kw: Any) -> Rule:
    kind = TargetKind.DIR if target.endswith("/") else TargetKind.PATH
    if "/" not in target:
        kind = TargetKind.EXECNAME
    elif any(c in target for c in "*?["):
        kind = TargetKind.PATTERN
    return rule(Operation.PROCESS, kind, target, action, **kw)

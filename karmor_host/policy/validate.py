"""YAML nodes -> HostPolicy, or Problems naming file:line:col, the field path and the rule.

The shape checked here is kubearmor-compat.md section 1 (KubeArmor's CRD), with its gaps closed:
every field is checked, unknown fields are errors (with a "did you mean"), and the slips whose
intent is unambiguous are accepted with a warning that says what was assumed.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import yaml

from karmor_host.policy import fields as F
from karmor_host.policy import messages as M
from karmor_host.policy.fields import Report
from karmor_host.policy.model import (
    API_VERSION, KIND_HOST_POLICY, KIND_NETWORK_POLICY, HostPolicy, Meta, RuleSpec, Section,
    SourceSpec,
)
from karmor_host.policy.netpolicy.model import NetworkPolicy
from karmor_host.policy.ruleset import Action, Operation, TargetKind, category_of
from karmor_host.policy.selector import HOSTNAMEREG_KEY, hostname_matcher

Fields = dict[str, tuple[yaml.Node, yaml.Node]]  # key -> (key node, value node)

META = ("severity", "tags", "message", "action")
_DNS1123 = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_BLANK = re.compile(r"\s")


@dataclass(frozen=True)
class _Shape:
    """One kind of rule: its target key, the flags it takes and how fromSource works there."""

    target: str
    kind: TargetKind
    flags: tuple[str, ...]
    sources: str  # "none" | "optional" | "required" | "syscall" (path or dir entries)


_PROC_FILE = {
    "matchPaths": _Shape("path", TargetKind.PATH, ("ownerOnly",), "optional"),
    "matchDirectories": _Shape("dir", TargetKind.DIR, ("recursive", "ownerOnly"), "optional"),
    "matchPatterns": _Shape("pattern", TargetKind.PATTERN, ("ownerOnly",), "none"),
}
_SHAPES: dict[str, dict[str, _Shape]] = {
    "process": _PROC_FILE,
    "file": {k: _Shape(s.target, s.kind, ("readOnly", *s.flags), s.sources) for k, s in _PROC_FILE.items()},
    "network": {"matchProtocols": _Shape("protocol", TargetKind.PROTOCOL, (), "required")},
    "capabilities": {
        "matchCapabilities": _Shape("capability", TargetKind.CAPABILITY, (), "required")
    },
    "syscalls": {
        "matchSyscalls": _Shape("syscall", TargetKind.SYSCALL, (), "syscall"),
        "matchPaths": _Shape("path", TargetKind.PATH, ("recursive",), "syscall"),
    },
}
_OPERATIONS = {
    "process": Operation.PROCESS, "file": Operation.FILE, "network": Operation.NETWORK,
    "capabilities": Operation.CAPABILITIES, "syscalls": Operation.SYSCALL,
}
_FLAG_ATTR = {"recursive": "recursive", "readOnly": "read_only", "ownerOnly": "owner_only"}


def _join(field: str, key: str) -> str:
    return f"{field}.{key}" if field else key


def _hint(key: str, allowed: Sequence[str]) -> str:
    lowered = {a.lower(): a for a in allowed}
    close = F.closest(key.lower(), lowered, cutoff=0.6)
    if close is not None:
        return M.HINT_CLOSE.format(close=lowered[close])
    return M.HINT_ALLOWED.format(allowed=", ".join(allowed))


def fields_of(
    r: Report, node: yaml.Node, field: str, allowed: Sequence[str] | None,
    required: Sequence[str] = (),
) -> Fields | None:
    """Check a mapping's keys: plain strings, no duplicates, only `allowed` (None: any)."""
    if not isinstance(node, yaml.MappingNode):
        r.error(node, field, M.E_TYPE.format(expected="a mapping", got=F.describe(node)))
        return None
    out: Fields = {}
    for key_node, value_node in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            r.error(key_node, field, M.E_MERGE_KEY)
            continue
        key = F.plain_str(key_node)
        if key is None:
            r.error(key_node, field, M.E_KEY_TYPE.format(got=F.describe(key_node)))
            continue
        if key in out:
            first = out[key][0].start_mark.line + 1
            r.error(key_node, _join(field, key), M.E_DUPLICATE_KEY.format(key=key, line=first))
            continue
        if allowed is not None and key not in allowed:
            r.error(key_node, _join(field, key), M.E_UNKNOWN.format(key=key, hint=_hint(key, allowed)))
            continue
        out[key] = (key_node, value_node)
    for key in required:
        if key not in out:
            r.error(node, _join(field, key), M.E_REQUIRED)
    return out


def _meta(r: Report, m: Fields, field: str, *, syscall: bool) -> Meta:
    severity = tags = message = action = None
    if "severity" in m:
        severity = F.severity(r, m["severity"][1], _join(field, "severity"))
    if "tags" in m:
        tags = F.str_list(r, m["tags"][1], _join(field, "tags"))
    if "message" in m:
        message = F.want_str(r, m["message"][1], _join(field, "message"), allow_empty=True)
    if "action" in m:
        if syscall:
            r.error(m["action"][0], _join(field, "action"), M.E_SYSCALL_ACTION)
        else:
            action = F.action(r, m["action"][1], _join(field, "action"))
    return Meta(severity, tags, message, action)


def _source(r: Report, node: yaml.Node, field: str, allow_dir: bool) -> SourceSpec | None:
    line = node.start_mark.line + 1
    written = F.plain_str(node)
    if written is not None:  # "- /bin/bash" instead of "- path: /bin/bash"
        path = F.file_path(r, node, field)
        if path is not None:
            r.warn(node, field, M.W_SOURCE_STRING.format(value=written))
            return SourceSpec(path, line=line)
        return None
    keys = ("path", "dir", "recursive") if allow_dir else ("path",)
    before = r.error_count
    m = fields_of(r, node, field, keys)
    if m is None:
        return None
    given = [k for k in ("path", "dir") if k in m]
    if not given and r.error_count > before:
        return None  # the misspelt or misplaced key is already reported
    if len(given) != 1:
        one_of = "path, dir" if allow_dir else "path"
        r.error(node, field, M.E_SOURCE_ONE_OF.format(keys=one_of))
        return None
    recursive = False
    if "recursive" in m:
        recursive = bool(F.want_bool(r, m["recursive"][1], _join(field, "recursive")))
        if "path" in m:
            r.warn(m["recursive"][0], _join(field, "recursive"), M.W_RECURSIVE_FILE)
            recursive = False
    if "path" in m:
        path = F.file_path(r, m["path"][1], _join(field, "path"))
        return None if path is None else SourceSpec(path, line=line)
    d = F.dir_path(r, m["dir"][1], _join(field, "dir"))
    return None if d is None else SourceSpec(d, is_dir=True, recursive=recursive, line=line)


def _sources(r: Report, node: yaml.Node, field: str, allow_dir: bool) -> tuple[SourceSpec, ...] | None:
    if not isinstance(node, yaml.SequenceNode):
        expected = "a list of {path: ...} entries"
        r.error(node, field, M.E_TYPE.format(expected=expected, got=F.describe(node)))
        return None
    out = [_source(r, item, f"{field}[{i}]", allow_dir) for i, item in enumerate(node.value)]
    kept = tuple(s for s in out if s is not None)
    return kept if len(kept) == len(out) else None


def _target(r: Report, shape: _Shape, section: str, m: Fields, node: yaml.Node, field: str,
            key_errors: bool) -> tuple[TargetKind, tuple[str, ...], tuple[str, ...]] | None:
    """(kind, targets, syscalls) of one rule. A missing target is not reported when the
    rule's keys already had errors: a misspelt key usually *is* the missing one."""
    if section == "process" and shape.target == "path":
        if "path" in m and "execname" in m:
            r.error(node, field, M.E_PATH_AND_EXECNAME)
            return None
        if "execname" in m:
            name = F.execname(r, m["execname"][1], _join(field, "execname"))
            return None if name is None else (TargetKind.EXECNAME, (name,), ())
        if "path" not in m:
            if not key_errors:
                r.error(node, _join(field, "path"), M.E_PATH_OR_EXECNAME)
            return None
    if shape.target not in m:
        if not key_errors:
            r.error(node, _join(field, shape.target), M.E_REQUIRED)
        return None
    value, where = m[shape.target][1], _join(field, shape.target)
    if shape.kind is TargetKind.SYSCALL:
        names = F.syscalls(r, value, where)
        return None if names is None else (TargetKind.SYSCALL, names, ())
    if section == "syscalls":  # matchPaths: a file or a directory, plus the syscalls
        path = F.any_path(r, value, where)
        if "syscall" not in m:
            if not key_errors:
                r.error(node, _join(field, "syscall"), M.E_REQUIRED)
            return None
        names = F.syscalls(r, m["syscall"][1], _join(field, "syscall"))
        if path is None or names is None:
            return None
        kind = TargetKind.DIR if path.endswith("/") else TargetKind.PATH
        return kind, (path,), names
    check = {
        TargetKind.PATH: F.file_path, TargetKind.DIR: F.dir_path, TargetKind.PATTERN: F.pattern,
        TargetKind.PROTOCOL: F.protocols, TargetKind.CAPABILITY: F.capabilities,
    }[shape.kind]
    got = check(r, value, where)
    if got is None:
        return None
    return shape.kind, (got if isinstance(got, tuple) else (got,)), ()


def _rule(r: Report, section: str, list_key: str, node: yaml.Node, field: str) -> RuleSpec | None:
    shape = _SHAPES[section][list_key]
    keys = [shape.target, *shape.flags]
    if section == "process" and list_key == "matchPaths":
        keys.append("execname")
    if section == "syscalls" and list_key == "matchPaths":
        keys.append("syscall")
    if shape.sources != "none":
        keys.append("fromSource")
    keys += META
    before = r.error_count
    m = fields_of(r, node, field, keys)
    if m is None:
        return None
    key_errors = r.error_count > before
    meta = _meta(r, m, field, syscall=section == "syscalls")
    flags = {f: bool(F.want_bool(r, m[f][1], _join(field, f))) for f in shape.flags if f in m}
    sources: tuple[SourceSpec, ...] | None = ()
    if "fromSource" in m:
        sources = _sources(r, m["fromSource"][1], _join(field, "fromSource"), shape.sources == "syscall")
    if shape.sources == "required" and sources == ():
        r.error(node, _join(field, "fromSource"), M.E_FROMSOURCE_REQUIRED.format(section=section))
    target = _target(r, shape, section, m, node, field, key_errors)
    if target is None or sources is None or r.error_count > before:
        return None
    kind, targets, syscalls = target
    if flags.get("recursive") and kind is TargetKind.PATH:
        r.warn(m["recursive"][0], _join(field, "recursive"), M.W_RECURSIVE_FILE)
        flags["recursive"] = False
    return RuleSpec(
        operation=_OPERATIONS[section], kind=kind, targets=targets, field=field,
        line=node.start_mark.line + 1, col=node.start_mark.column + 1, meta=meta,
        sources=sources, syscalls=syscalls, **{_FLAG_ATTR[f]: v for f, v in flags.items()},
    )


def _section(r: Report, name: str, node: yaml.Node, field: str) -> Section | None:
    lists = tuple(_SHAPES[name])
    if F.kind(node) == "null":
        r.error(node, field, M.E_EMPTY_SECTION.format(keys=", ".join(lists)))
        return None
    m = fields_of(r, node, field, (*lists, *META))
    if m is None:
        return None
    meta = _meta(r, m, field, syscall=name == "syscalls")
    rules: list[RuleSpec] = []
    entries = 0
    for list_key in lists:
        if list_key not in m:
            continue
        seq, where = m[list_key][1], _join(field, list_key)
        if not isinstance(seq, yaml.SequenceNode):
            r.error(seq, where, M.E_TYPE.format(expected="a list of rules", got=F.describe(seq)))
            entries += 1  # reported already; do not also call the section empty
            continue
        for i, item in enumerate(seq.value):
            entries += 1
            rule = _rule(r, name, list_key, item, f"{where}[{i}]")
            if rule is not None:
                rules.append(rule)
    if entries == 0:
        r.error(node, field, M.E_EMPTY_SECTION.format(keys=", ".join(lists)))
    return Section(_OPERATIONS[name], meta, tuple(rules), node.start_mark.line + 1)


def _selector(r: Report, node: yaml.Node) -> tuple[tuple[str, str], ...]:
    m = fields_of(r, node, "spec.nodeSelector", ("matchLabels",), required=("matchLabels",))
    if not m or "matchLabels" not in m:
        return ()
    labels_node = m["matchLabels"][1]
    labels = fields_of(r, labels_node, "spec.nodeSelector.matchLabels", None)
    if labels is None:
        return ()
    if not labels:
        r.error(labels_node, "spec.nodeSelector.matchLabels", M.E_SELECTOR_EMPTY)
    out: list[tuple[str, str]] = []
    for key, (key_node, value_node) in labels.items():
        where = f"spec.nodeSelector.matchLabels.{key}"
        if not key or _BLANK.search(key):
            r.error(key_node, where, M.E_LABEL_KEY.format(got=F.describe(key_node)))
            continue
        k = F.kind(value_node)
        if k in ("int", "float", "bool"):
            r.warn(value_node, where, M.W_LABEL_STRING.format(fixed=value_node.value))
            value: str | None = value_node.value
        else:
            value = F.want_str(r, value_node, where)
        if value is None:
            continue
        if key == HOSTNAMEREG_KEY:
            try:
                hostname_matcher(value)
            except ValueError as exc:
                r.error(value_node, where, M.E_HOSTNAMEREG.format(what=exc))
                continue
        out.append((key, value))
    return tuple(out)


def _metadata(r: Report, node: yaml.Node) -> tuple[str, int, int] | None:
    m = fields_of(r, node, "metadata", ("name", "namespace", "labels", "annotations"), ("name",))
    if m is None:
        return None
    if "namespace" in m:
        r.warn(m["namespace"][0], "metadata.namespace", M.W_NAMESPACE)
    for key in ("labels", "annotations"):
        if key in m:
            fields_of(r, m[key][1], f"metadata.{key}", None)
    if "name" not in m:
        return None
    value_node = m["name"][1]
    name = F.want_str(r, value_node, "metadata.name")
    if name is None:
        return None
    if len(name) > 253 or not _DNS1123.fullmatch(name):
        r.error(value_node, "metadata.name", M.E_NAME.format(got=F.describe(value_node)))
        return None
    return name, value_node.start_mark.line + 1, value_node.start_mark.column + 1


def _kind(r: Report, m: Fields, node: yaml.Node) -> str | None:
    if "kind" not in m:
        r.error(node, "kind", M.E_REQUIRED)
        return None
    value_node = m["kind"][1]
    kind = F.plain_str(value_node)
    if kind in (KIND_HOST_POLICY, KIND_NETWORK_POLICY):
        return kind
    r.error(value_node, "kind", M.E_KIND.format(got=F.describe(value_node)))
    return None


def _warn_host_wide_allow(r: Report, policy: HostPolicy) -> None:
    for section in policy.sections:
        for rule in section.rules:
            action = rule.meta.action or section.meta.action or policy.meta.action
            category = category_of(rule.operation)
            if action is Action.ALLOW and not rule.sources and category is not None:
                r.warn_at(rule.line, rule.col, rule.field,
                          M.W_ALLOW_NO_SOURCE.format(category=category.value))


def validate_document(r: Report, node: yaml.Node) -> HostPolicy | NetworkPolicy | None:
    """One composed document -> a HostPolicy or a NetworkPolicy, or None when it has errors
    (all reported)."""
    if not isinstance(node, yaml.MappingNode):
        r.error(node, "", M.E_DOCUMENT.format(got=F.describe(node)))
        return None
    before = r.error_count
    m = fields_of(r, node, "", ("apiVersion", "kind", "metadata", "spec", "status"))
    assert m is not None  # node is a mapping
    kind = _kind(r, m, node)
    if kind is None:
        return None
    if "apiVersion" not in m:
        r.error(node, "apiVersion", M.E_REQUIRED)
    elif F.plain_str(m["apiVersion"][1]) != API_VERSION:
        r.error(m["apiVersion"][1], "apiVersion", M.E_API_VERSION.format(got=F.describe(m["apiVersion"][1])))
    if "status" in m:
        r.warn(m["status"][0], "status", M.W_STATUS)
    named = None
    if "metadata" not in m:
        r.error(node, "metadata", M.E_REQUIRED)
    else:
        named = _metadata(r, m["metadata"][1])
    if "spec" not in m:
        r.error(node, "spec", M.E_REQUIRED)
        return None
    spec_node = m["spec"][1]
    if kind == KIND_NETWORK_POLICY:
        # Imported here: the network validator builds on this module's helpers.
        from karmor_host.policy.netpolicy.validate import validate_network_spec

        return validate_network_spec(r, node, spec_node, named, before)
    spec = fields_of(r, spec_node, "spec", ("nodeSelector", *_SHAPES, *META, "apparmor"), ("nodeSelector",))
    if spec is None:
        return None
    if "apparmor" in spec:
        r.error(spec["apparmor"][0], "spec.apparmor", M.E_APPARMOR)
    selector = _selector(r, spec["nodeSelector"][1]) if "nodeSelector" in spec else ()
    meta = _meta(r, spec, "spec", syscall=False)
    sections = [_section(r, s, spec[s][1], f"spec.{s}") for s in _SHAPES if s in spec]
    if not sections:
        r.error(spec_node, "spec", M.E_NO_SECTIONS)
    if r.error_count > before or named is None:
        return None
    name, name_line, name_col = named
    policy = HostPolicy(
        name=name, file=r.file, line=node.start_mark.line + 1, name_line=name_line,
        name_col=name_col, node_selector=selector, meta=meta,
        sections=tuple(s for s in sections if s is not None),
    )
    _warn_host_wide_allow(r, policy)
    return policy

"""Checks for single values: one function per kind of field.

Each check takes the Report, the YAML node and the field path, reports what is wrong (or what
it assumed, as a warning) and returns the normalised value, or None when the value is unusable.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable

import yaml

from karmor_host.errors import Problem
from karmor_host.policy import messages as M
from karmor_host.policy.names import CAPABILITIES, MAX_PATH, PROTOCOLS, SYSCALLS
from karmor_host.policy.ruleset import Action

_TAG = "tag:yaml.org,2002:"
_ACTIONS = {a.value.lower(): a for a in Action}
_DIGITS = re.compile(r"\s*[0-9]{1,4}\s*")


class Report:
    """Collects the Problems of one file."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.problems: list[Problem] = []

    def _add(self, node: yaml.Node, field: str, message: str, severity: str) -> None:
        mark = node.start_mark
        self.problems.append(
            Problem(self.file, mark.line + 1, mark.column + 1, field, message, severity)
        )

    def error(self, node: yaml.Node, field: str, message: str) -> None:
        self._add(node, field, message, "error")

    def warn(self, node: yaml.Node, field: str, message: str) -> None:
        self._add(node, field, message, "warning")

    def warn_at(self, line: int, col: int, field: str, message: str) -> None:
        self.problems.append(Problem(self.file, line, col, field, message, "warning"))

    @property
    def error_count(self) -> int:
        return sum(1 for p in self.problems if p.severity == "error")


def kind(node: yaml.Node) -> str:
    """'mapping', 'list', or the resolved scalar type: str, int, float, bool, null, ..."""
    if isinstance(node, yaml.MappingNode):
        return "mapping"
    if isinstance(node, yaml.SequenceNode):
        return "list"
    if node.tag.startswith(_TAG):
        return node.tag[len(_TAG):]
    return "other"


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def describe(node: yaml.Node) -> str:
    """How a value is named in messages: 'a list', 'null', '/etc/', 11 ..."""
    k = kind(node)
    if k == "mapping":
        return "a mapping"
    if k == "list":
        return "a list"
    if k == "null":
        return "null"
    if k == "str":
        return repr(_short(node.value))
    if k == "other":
        return f"a value tagged {_short(node.tag)}"
    return _short(str(node.value))


def plain_str(node: yaml.Node) -> str | None:
    return node.value if kind(node) == "str" else None


def closest(word: str, choices: Iterable[str], cutoff: float = 0.75) -> str | None:
    found = difflib.get_close_matches(word, list(choices), n=1, cutoff=cutoff)
    return found[0] if found else None


def want_str(r: Report, node: yaml.Node, field: str, *, allow_empty: bool = False) -> str | None:
    value = plain_str(node)
    if value is None:
        scalar = kind(node) not in ("mapping", "list", "null")
        expected = "a string (put it in quotes)" if scalar else "a string"
        r.error(node, field, M.E_TYPE.format(expected=expected, got=describe(node)))
        return None
    if not value and not allow_empty:
        r.error(node, field, M.E_EMPTY)
        return None
    return value


def want_bool(r: Report, node: yaml.Node, field: str) -> bool | None:
    if kind(node) != "bool":
        r.error(node, field, M.E_TYPE.format(expected="true or false", got=describe(node)))
        return None
    return node.value.lower() in ("true", "yes", "on", "y")


def severity(r: Report, node: yaml.Node, field: str) -> int | None:
    k = kind(node)
    value: int | None = None
    if k == "int":
        try:
            value = int(yaml.constructor.SafeConstructor().construct_object(node))
        except (ValueError, yaml.YAMLError):
            value = None  # e.g. more digits than Python converts: certainly out of range
    elif k == "str" and _DIGITS.fullmatch(node.value):
        quoted = int(node.value)
        if 1 <= quoted <= 10:
            r.warn(node, field, M.W_SEVERITY_STRING.format(value=quoted))
            return quoted
    if value is None or not 1 <= value <= 10:
        r.error(node, field, M.E_SEVERITY.format(got=describe(node)))
        return None
    return value


def action(r: Report, node: yaml.Node, field: str) -> Action | None:
    value = plain_str(node)
    if value is not None:
        if value in (a.value for a in Action):
            return Action(value)
        fixed = _ACTIONS.get(value.strip().lower())
        if fixed is not None:
            r.warn(node, field, M.W_ACTION_CASE.format(got=value, fixed=fixed.value))
            return fixed
    r.error(node, field, M.E_ACTION.format(got=describe(node)))
    return None


def str_list(r: Report, node: yaml.Node, field: str) -> tuple[str, ...] | None:
    """A list of non-empty strings; a lone string is accepted as a list of one (warning)."""
    if kind(node) == "str" and node.value:
        r.warn(node, field, M.W_SCALAR_LIST.format(value=node.value))
        return (node.value,)
    if not isinstance(node, yaml.SequenceNode):
        r.error(node, field, M.E_TYPE.format(expected="a list of strings", got=describe(node)))
        return None
    out: list[str] = []
    ok = True
    for i, item in enumerate(node.value):
        value = want_str(r, item, f"{field}[{i}]")
        if value is None:
            ok = False
        else:
            out.append(value)
    return tuple(out) if ok else None


def _normal(value: str) -> str:
    parts = [p for p in value.split("/") if p not in ("", ".")]
    if not parts:
        return "/"
    return "/" + "/".join(parts) + ("/" if value.endswith("/") else "")


def _path_common(r: Report, node: yaml.Node, field: str) -> str | None:
    value = want_str(r, node, field)
    if value is None:
        return None
    if "\0" in value or "\n" in value or "\r" in value:
        r.error(node, field, M.E_PATH_CHARS)
    elif not value.startswith("/"):
        r.error(node, field, M.E_PATH_ABSOLUTE.format(got=describe(node)))
    elif len(value) > MAX_PATH:
        r.error(node, field, M.E_PATH_LONG.format(length=len(value), limit=MAX_PATH))
    elif ".." in value.split("/"):
        r.error(node, field, M.E_PATH_DOTDOT.format(got=describe(node)))
    else:
        fixed = _normal(value)
        if fixed != value:
            r.warn(node, field, M.W_PATH_NORMAL.format(fixed=fixed))
        return fixed
    return None


def file_path(r: Report, node: yaml.Node, field: str) -> str | None:
    """An absolute path of a file (or program): no trailing '/'."""
    value = plain_str(node)
    if value and value.endswith("/") and value.startswith("/") and "\0" not in value:
        r.error(node, field, M.E_PATH_TRAILING.format(got=describe(node)))
        return None
    return _path_common(r, node, field)


def dir_path(r: Report, node: yaml.Node, field: str) -> str | None:
    """An absolute directory: ends with '/'; a missing slash is assumed (warning)."""
    value = _path_common(r, node, field)
    if value is None:
        return None
    if not value.endswith("/"):
        value += "/"
        r.warn(node, field, M.W_DIR_SLASH.format(fixed=value))
    return value


def any_path(r: Report, node: yaml.Node, field: str) -> str | None:
    """syscalls.matchPaths.path: a file, or a directory when it ends with '/'."""
    return _path_common(r, node, field)


def execname(r: Report, node: yaml.Node, field: str) -> str | None:
    value = want_str(r, node, field)
    if value is None:
        return None
    if "\0" in value or "\n" in value or "\r" in value:
        r.error(node, field, M.E_PATH_CHARS)
    elif "/" in value:
        r.error(node, field, M.E_EXECNAME.format(got=describe(node)))
    elif len(value) > MAX_PATH:
        r.error(node, field, M.E_PATH_LONG.format(length=len(value), limit=MAX_PATH))
    else:
        return value
    return None


def pattern(r: Report, node: yaml.Node, field: str) -> str | None:
    value = want_str(r, node, field)
    if value is None:
        return None
    if "\0" in value or "\n" in value or "\r" in value:
        r.error(node, field, M.E_PATH_CHARS)
    elif len(value) > MAX_PATH:
        r.error(node, field, M.E_PATH_LONG.format(length=len(value), limit=MAX_PATH))
    else:
        return value
    return None


def _items(r: Report, node: yaml.Node, field: str) -> list[str] | None:
    value = want_str(r, node, field)
    if value is None:
        return None
    items = [i.strip() for i in value.split(",")]
    if any(not i for i in items):
        r.error(node, field, M.E_LIST_ITEM_EMPTY.format(got=describe(node)))
        return None
    return items


def _hint(word: str, choices: Iterable[str]) -> str:
    close = closest(word, choices)
    return M.HINT_NAME.format(close=close) if close else ""


def _dedup(items: list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def protocols(r: Report, node: yaml.Node, field: str) -> tuple[str, ...] | None:
    items = _items(r, node, field)
    if items is None:
        return None
    out: list[str] = []
    for item in items:
        low = item.lower()
        if low not in PROTOCOLS:
            r.error(node, field, M.E_PROTOCOL.format(
                got=repr(item), hint=_hint(low, PROTOCOLS), allowed=", ".join(PROTOCOLS)))
            return None
        if low != item:
            r.warn(node, field, M.W_PROTOCOL_CASE.format(got=item, fixed=low))
        out.append(low)
    return _dedup(out)


def _kernel_style(item: str, prefix: str) -> str:
    low = item.lower()
    return low[len(prefix):] if low.startswith(prefix) else low


def capabilities(r: Report, node: yaml.Node, field: str) -> tuple[str, ...] | None:
    items = _items(r, node, field)
    if items is None:
        return None
    out: list[str] = []
    for item in items:
        name = _kernel_style(item, "cap_")
        if name not in CAPABILITIES:
            r.error(node, field, M.E_CAPABILITY.format(got=repr(item), hint=_hint(name, CAPABILITIES)))
            return None
        if name != item:
            r.warn(node, field, M.W_CAPABILITY_FORM.format(got=item, fixed=name))
        out.append(name)
    return _dedup(out)


def syscalls(r: Report, node: yaml.Node, field: str) -> tuple[str, ...] | None:
    """`syscall: [names]`; a lone name is accepted as a list of one (warning)."""
    if isinstance(node, yaml.SequenceNode) and not node.value:
        r.error(node, field, M.E_EMPTY)
        return None
    names = str_list(r, node, field)
    if names is None:
        return None
    out: list[str] = []
    ok = True
    items = node.value if isinstance(node, yaml.SequenceNode) else [node]
    for i, (item, written) in enumerate(zip(items, names)):
        item_field = f"{field}[{i}]" if isinstance(node, yaml.SequenceNode) else field
        name = _kernel_style(written.strip(), "sys_")
        if name not in SYSCALLS:
            r.error(item, item_field, M.E_SYSCALL.format(got=repr(written), hint=_hint(name, SYSCALLS)))
            ok = False
            continue
        if name != written:
            r.warn(item, item_field, M.W_SYSCALL_FORM.format(got=written, fixed=name))
        out.append(name)
    return _dedup(out) if ok else None

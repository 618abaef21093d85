"""matchPatterns globs: compiled to regular expressions and indexed by path component.

Semantics (the RuleSet contract, policy/ruleset.py): `*` matches within one path component,
`**` crosses "/", and `**/` also matches no directory at all (`/a/**/b` matches `/a/b`);
`?` is one character other than "/"; `[abc]`, `[a-z]`, `[!abc]` are character classes.
A pattern must match the whole path.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Generic, TypeVar

T = TypeVar("T")
_WILDCARDS = frozenset("*?[")


def compile_glob(pattern: str) -> re.Pattern[str]:
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "*":
            if pattern.startswith("**/", i):
                out.append("(?:.*/)?")
                i += 3
                continue
            if pattern.startswith("**", i):
                out.append(".*")
                i += 2
                continue
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            end = pattern.find("]", i + 2 if pattern.startswith("[!", i) else i + 1)
            if end < 0:
                out.append(re.escape(c))  # an unclosed bracket is a literal, as in fnmatch
            else:
                body = pattern[i + 1 : end]
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append("[" + body.replace("\\", "\\\\") + "]")
                i = end
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out), re.DOTALL)


class _Node(Generic[T]):
    __slots__ = ("literal", "wild", "tails", "values")

    def __init__(self) -> None:
        self.literal: dict[str, _Node[T]] = {}
        self.wild: dict[str, tuple[re.Pattern[str], _Node[T]]] = {}  # one-component globs
        self.tails: list[tuple[re.Pattern[str], T]] = []  # the rest of a pattern holding `**`
        self.values: list[T] = []  # patterns that end here


class GlobIndex(Generic[T]):
    """Patterns in a trie of path components, so a lookup follows only the branches whose
    component matches: literal components are dict lookups, `*`/`?`/`[]` components are
    tested one by one at their level, and from a component holding `**` on the rest of the
    pattern is one regular expression tested against the rest of the path."""

    def __init__(self) -> None:
        self._root: _Node[T] = _Node()
        self.size = 0

    def add(self, pattern: str, value: T) -> None:
        node = self._root
        parts = pattern.split("/")
        for i, part in enumerate(parts):
            if "**" in part:
                node.tails.append((compile_glob("/" + "/".join(parts[i:])), value))
                break
            if _WILDCARDS.isdisjoint(part):
                node = node.literal.setdefault(part, _Node())
            else:
                if part not in node.wild:
                    node.wild[part] = (compile_glob(part), _Node())
                node = node.wild[part][1]
        else:
            node.values.append(value)
        self.size += 1

    def __bool__(self) -> bool:
        return self.size > 0

    def lookup(self, path: str) -> Iterator[T]:
        parts = path.split("/")
        stack = [(self._root, 0)]
        while stack:
            node, i = stack.pop()
            if node.tails:
                rest = "/" + "/".join(parts[i:]) if i < len(parts) else ""
                for regex, value in node.tails:
                    if regex.fullmatch(rest):
                        yield value
            if i == len(parts):
                yield from node.values
                continue
            part = parts[i]
            child = node.literal.get(part)
            if child is not None:
                stack.append((child, i + 1))
            for regex, wchild in node.wild.values():
                if regex.fullmatch(part):
                    stack.append((wchild, i + 1))

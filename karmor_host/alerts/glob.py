"""matchPatterns globs, compiled to regular expressions.

Semantics (the RuleSet contract, policy/ruleset.py): `*` matches within one path component,
`**` crosses "/", and `**/` also matches no directory at all (`/a/**/b` matches `/a/b`);
`?` is one character other than "/"; `[abc]`, `[a-z]`, `[!abc]` are character classes.
A pattern must match the whole path.
"""

from __future__ import annotations

import re

_WILDCARDS = "*?["


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


def literal_dir(pattern: str) -> str:
    """The directory part before the first wildcard: every match starts with it.
    `/etc/*.conf` -> `/etc/`; `/home/*/.ssh/*` -> `/home/`; `*.sh` -> ``."""
    first = min((pattern.find(c) for c in _WILDCARDS if c in pattern), default=len(pattern))
    return pattern[: pattern.rfind("/", 0, first) + 1]

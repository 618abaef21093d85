"""Rule targets as AppArmor globs (AARE), quoted and escaped: the one place that knows them.

Our matching semantics are the RuleSet contract (docs/alerts.md, "Matching"); AppArmor's
globbing differs in the places below, and each translation keeps ours:

| ours | AppArmor | translation |
|---|---|---|
| a literal `* ? [ ] { } , @ " ^ #` | special (glob, alternation, variable, quoting) | escaped with `\\` |
| a literal `\\` | the escape character | `[\\\\]` (see `escape`) |
| `*` right after `/` matches zero characters | `/*` needs at least one | `{*,}` when more of the component follows |
| `**/` may match no directory | `/**/` needs one | `{**/,}` |
| `[!abc]` | `[^abc]` | `^` |
| an event path loses its trailing `/` | a directory is looked up with its `/` | file targets also as `<glob>/` |

A `*` or `**` right after "/" and followed by "/" or the end keeps AppArmor's form: the empty
match it excludes would be an empty path component, which no resolved path has. Three or more
stars mean what two mean. Every glob is returned double-quoted, so spaces and `#` are plain
characters.
The parser's own conversion of each form can be seen with `apparmor_parser -Q -D rule-exprs`.
"""

from __future__ import annotations

_SPECIAL = frozenset('*?[]{},@"\\^#')


def escape(text: str) -> str:
    """Literal text for use inside a quoted AppArmor glob. A backslash becomes the class
    `[\\]`: the parser's lexer ends a quoted string at `\\"` (it reads `\"` as an escaped
    quote even after another backslash), so an escaped backslash must never come last."""
    return "".join("[\\\\]" if c == "\\" else "\\" + c if c in _SPECIAL else c for c in text)


def quote(glob: str) -> str:
    return f'"{glob}"'


def literal(path: str) -> str:
    """An exact path (attachments)."""
    return quote(escape(path))


def exec_globs(kind: str, target: str, recursive: bool = False) -> list[str]:
    """The executables a process rule names. `kind` is a TargetKind value."""
    if kind == "path":
        return [literal(target)]
    if kind == "dir":
        return [quote(escape(target) + ("**" if recursive else "*"))]
    if kind == "execname":
        return [quote("/{**/,}" + escape(target))]
    if kind == "pattern":
        return [quote(_pattern(target))]
    raise ValueError(f"no executable glob for a {kind} target")


def file_globs(kind: str, target: str, recursive: bool = False) -> list[str]:
    """The files a file rule names, each also as a directory (looked up with its "/").
    A directory target means what is inside it, not the directory itself."""
    if kind == "path":
        bodies = [escape(target)]
    elif kind == "dir":
        bodies = [escape(target) + ("**" if recursive else "*")]
    elif kind == "pattern":
        bodies = [_pattern(target)]
    else:
        raise ValueError(f"no file glob for a {kind} target")
    out = []
    for body in bodies:
        out.append(quote(body))
        if not body.endswith(("/", "**")):  # `**` already matches a trailing "/"
            out.append(quote(body + "/"))
    return out


def _pattern(glob: str) -> str:
    """A matchPatterns glob. Patterns match whole absolute paths, so one that starts with `**`
    means the same with a "/" in front; one that starts with anything else matches nothing."""
    if not anchored(glob):
        raise ValueError(f"pattern {glob!r} matches no absolute path")
    return _translate(glob if glob.startswith("/") else "/" + glob)


def anchored(glob: str) -> bool:
    """Whether a pattern can match an absolute path: it starts with "/" or with `**`."""
    return glob.startswith(("/", "**"))


def _translate(glob: str) -> str:
    out: list[str] = []
    i, n = 0, len(glob)
    while i < n:
        c = glob[i]
        if c == "*":
            j = i
            while j < n and glob[j] == "*":
                j += 1
            stars = "**" if j - i >= 2 else "*"  # three or more stars mean what two mean
            after_slash = i == 0 or glob[i - 1] == "/"
            if stars == "**" and j < n and glob[j] == "/":
                out.append("{**/,}")
                i = j + 1
                continue
            component_goes_on = j < n and glob[j] != "/"
            out.append("{" + stars + ",}" if after_slash and component_goes_on else stars)
            i = j
            continue
        if c == "?":
            out.append("?")
        elif c == "[":
            start = i + 2 if glob.startswith("[!", i) else i + 1
            end = glob.find("]", start)
            if end < 0:
                out.append("\\[")  # an unclosed bracket is a literal, as in our matcher
            else:
                body = glob[i + 1 : end]
                negate = body.startswith("!")
                if negate:
                    body = body[1:]
                body = body.replace("\\", "\\\\").replace('"', '\\"')
                out.append("[" + ("^" if negate else "") + body + "]")
                i = end
        else:
            out.append(escape(c))
        i += 1
    return "".join(out)

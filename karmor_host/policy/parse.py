"""Policy text -> YAML node trees that keep file:line:col. No semantics here.

We compose (not load) with PyYAML's SafeLoader: nodes keep their start marks, so every later
error can point at the exact line and column, and no Python object is ever constructed from
untrusted tags.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from karmor_host.errors import Problem

MAX_FILE_BYTES = 4 * 1024 * 1024  # a policy file is text written by people; refuse anything huge

E_YAML = "YAML syntax error: {what}"
E_YAML_DEPTH = "YAML document is nested too deeply to be a policy"
E_ENCODING = "file is not valid UTF-8 text: {what}"
E_READ = "cannot read file: {what}"
HINT_ALIAS = "; a value starting with '*' is a YAML alias: quote it, e.g. \"*\""
E_TOO_BIG = "file is larger than {limit} bytes, the most a policy file may hold"


@dataclass(frozen=True)
class Document:
    node: yaml.Node
    index: int  # 0-based position of the document in its file


@dataclass(frozen=True)
class Parsed:
    file: str
    documents: tuple[Document, ...]
    problems: tuple[Problem, ...]  # syntax errors; documents composed before one are kept


def _line_col(text: str, position: int) -> tuple[int, int]:
    before = text[:position]
    line = before.count("\n") + 1
    col = position - (before.rfind("\n") + 1) + 1
    return line, col


def _is_empty(node: yaml.Node) -> bool:
    # An explicit but empty document ("---" followed by nothing) composes to a null scalar;
    # multi-document files often end that way, so it is not an error.
    return isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null" and node.value in ("", "~")


def _syntax_problem(file: str, text: str, exc: yaml.YAMLError) -> Problem:
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        what = exc.problem or "invalid YAML"
        if exc.context:
            what += f" ({exc.context})"
        if exc.context == "while scanning an alias":  # `hostname: *` - the classic slip
            what += HINT_ALIAS
        if mark is None:
            return Problem(file, 0, 0, "", E_YAML.format(what=what))
        return Problem(file, mark.line + 1, mark.column + 1, "", E_YAML.format(what=what))
    if isinstance(exc, yaml.reader.ReaderError):
        line, col = _line_col(text, exc.position)
        char = exc.character  # a code point for text input, a byte for bytes
        shown = f"U+{char:04X}" if isinstance(char, int) else repr(char)
        what = f"character {shown} is not allowed in YAML"
        return Problem(file, line, col, "", E_YAML.format(what=what))
    return Problem(file, 0, 0, "", E_YAML.format(what=str(exc)))


def parse_text(text: str, file: str) -> Parsed:
    """Compose every document of `text`; syntax errors become Problems, never exceptions."""
    documents: list[Document] = []
    problems: list[Problem] = []
    index = 0
    try:
        for node in yaml.compose_all(text, Loader=yaml.SafeLoader):
            if node is not None and not _is_empty(node):
                documents.append(Document(node, index))
            index += 1
    except yaml.YAMLError as exc:
        problems.append(_syntax_problem(file, text, exc))
    except RecursionError:
        problems.append(Problem(file, 0, 0, "", E_YAML_DEPTH))
    return Parsed(file, tuple(documents), tuple(problems))


def decode(data: bytes, file: str) -> tuple[str | None, Problem | None]:
    """UTF-8 (with or without BOM) bytes -> text, or a Problem locating the first bad byte."""
    try:
        return data.decode("utf-8-sig"), None
    except UnicodeDecodeError as exc:
        good = data[: exc.start].decode("utf-8-sig", errors="replace")
        line, col = _line_col(good, len(good))
        return None, Problem(file, line, col, "", E_ENCODING.format(what=exc.reason))


def read_text(path: Path) -> tuple[str | None, Problem | None]:
    """Read one policy file. The only file *reading* in policy/ (canon.py only looks at paths)."""
    file = str(path)
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        return None, Problem(file, 0, 0, "", E_READ.format(what=exc.strerror or str(exc)))
    if len(data) > MAX_FILE_BYTES:
        return None, Problem(file, 0, 0, "", E_TOO_BIG.format(limit=MAX_FILE_BYTES))
    return decode(data, file)

"""One exception family. Codes are stable: they are CLI exit statuses and journald fields."""

from __future__ import annotations

from dataclasses import dataclass


class KarmorError(Exception):
    """Base of every error the agent reports to a user."""

    code: int = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigError(KarmorError):
    """The configuration file is unreadable or invalid; the agent refuses to start."""

    code = 2


class PolicyLoadError(KarmorError):
    """A policy file could not be read at all (permissions, ownership, I/O)."""

    code = 3


class KernelError(KarmorError):
    """A kernel facility (BPF, LSM, bpffs) refused what we asked of it."""

    code = 4

    def __init__(self, message: str, errno: int = 0) -> None:
        super().__init__(message)
        self.errno = errno


class EnforcerError(KarmorError):
    """An enforcer could not apply a rule set; the previous one stays in force."""

    code = 5


@dataclass(frozen=True)
class Problem:
    """One finding about an input file: an error or a warning, located precisely.

    Rendered as `file:line:col: field: message`, the form editors and CI parse.
    """

    file: str
    line: int  # 1-based; 0 when unknown
    col: int  # 1-based; 0 when unknown
    field: str  # e.g. spec.file.matchPaths[2].path ("" for the document itself)
    message: str
    severity: str = "error"  # "error" | "warning"

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.col}"
        field = f" {self.field}:" if self.field else ""
        prefix = "" if self.severity == "error" else " warning:"
        return f"{where}:{prefix}{field} {self.message}"

    def as_dict(self) -> dict[str, object]:
        return {
            "file": self.file,
            "line": self.line,
            "col": self.col,
            "field": self.field,
            "message": self.message,
            "severity": self.severity,
        }

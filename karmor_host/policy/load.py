"""Files -> validated policies, per file, with the cross-file rule on duplicate names.

A file with any error yields no policy at all (a half-applied file would be worse than none);
other files are unaffected. Warnings never reject anything.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from karmor_host.errors import Problem
from karmor_host.policy import messages as M
from karmor_host.policy.fields import Report
from karmor_host.policy.model import HostPolicy
from karmor_host.policy.netpolicy.model import NetworkPolicy
from karmor_host.policy.parse import parse_text, read_text
from karmor_host.policy.validate import validate_document

POLICY_SUFFIXES = (".yaml", ".yml")
# Both kinds share one name space: PolicyName in an alert must identify one policy.
AnyPolicy = HostPolicy | NetworkPolicy


@dataclass(frozen=True)
class FileResult:
    file: str
    policies: tuple[AnyPolicy, ...]  # empty whenever `problems` holds an error
    problems: tuple[Problem, ...]

    @property
    def valid(self) -> bool:
        return not any(p.severity == "error" for p in self.problems)


@dataclass(frozen=True)
class LoadResult:
    files: tuple[FileResult, ...]

    @property
    def policies(self) -> tuple[AnyPolicy, ...]:
        return tuple(p for f in self.files for p in f.policies)

    @property
    def problems(self) -> tuple[Problem, ...]:
        return tuple(p for f in self.files for p in f.problems)

    @property
    def errors(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.problems if p.severity == "error")

    @property
    def ok(self) -> bool:
        return not self.errors


def _sorted(problems: Iterable[Problem]) -> tuple[Problem, ...]:
    return tuple(sorted(problems, key=lambda p: (p.line, p.col)))


def load_text(text: str, file: str) -> FileResult:
    """Parse and validate one file's text (pure: no filesystem access)."""
    parsed = parse_text(text, file)
    report = Report(file)
    policies: list[AnyPolicy] = []
    seen: dict[str, AnyPolicy] = {}
    for doc in parsed.documents:
        policy = validate_document(report, doc.node)
        if policy is None:
            continue
        first = seen.get(policy.name)
        if first is not None:
            report.problems.append(Problem(
                file, policy.name_line, policy.name_col, "metadata.name",
                M.E_DUPLICATE_NAME.format(name=policy.name, first=first.where)))
            continue
        seen[policy.name] = policy
        policies.append(policy)
    problems = [*parsed.problems, *report.problems]
    if not parsed.documents and not parsed.problems:
        problems.append(Problem(file, 0, 0, "", M.W_NO_DOCUMENTS, "warning"))
    result = FileResult(file, tuple(policies), _sorted(problems))
    return result if result.valid else FileResult(file, (), result.problems)


def _load_one(path: Path) -> FileResult:
    text, problem = read_text(path)
    if text is None:
        assert problem is not None
        return FileResult(str(path), (), (problem,))
    return load_text(text, str(path))


def merge(results: Iterable[FileResult]) -> LoadResult:
    """Combine per-file results in order; a policy name already defined by an earlier file is
    an error in the later file (which then yields nothing): the first definition wins."""
    seen: dict[str, AnyPolicy] = {}
    out: list[FileResult] = []
    for result in results:
        dups = [
            Problem(result.file, p.name_line, p.name_col, "metadata.name",
                    M.E_DUPLICATE_NAME.format(name=p.name, first=seen[p.name].where))
            for p in result.policies if p.name in seen
        ]
        if dups:
            result = FileResult(result.file, (), _sorted([*result.problems, *dups]))
        for p in result.policies:
            seen[p.name] = p
        out.append(result)
    return LoadResult(tuple(out))


def expand_paths(paths: Sequence[str | os.PathLike[str]]) -> tuple[list[Path], list[FileResult]]:
    """Files as given; directories -> their *.yaml/*.yml files (sorted, not recursive, no
    hidden files such as editor lock files)."""
    files: list[Path] = []
    notes: list[FileResult] = []
    for raw in paths:
        path = Path(raw)
        if not path.is_dir():
            files.append(path)
            continue
        found = sorted(
            p for p in path.iterdir()
            if p.suffix in POLICY_SUFFIXES and not p.name.startswith(".") and not p.is_dir()
        )
        if not found:
            notes.append(FileResult(str(path), (), (
                Problem(str(path), 0, 0, "", M.W_NO_POLICY_FILES, "warning"),)))
        files.extend(found)
    return files, notes


def load_file(path: str | os.PathLike[str], text: str | None = None) -> LoadResult:
    """One file; pass `text` when the caller has already read it (the policy store reads
    through its own safety checks)."""
    if text is not None:
        return LoadResult((load_text(text, str(path)),))
    return LoadResult((_load_one(Path(path)),))


def load_paths(paths: Sequence[str | os.PathLike[str]]) -> LoadResult:
    """Every policy file under `paths`, validated, with duplicates across files resolved."""
    files, notes = expand_paths(paths)
    merged = merge(_load_one(f) for f in files)
    return LoadResult((*merged.files, *notes))

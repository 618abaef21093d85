"""The policy language: KubeArmorHostPolicy YAML -> validated policies -> RuleSet.

Public API (everything else in this package is an implementation detail):

    load_text(text, file) -> FileResult            pure: one file's text
    load_file(path, text=None) -> LoadResult       one file (from disk unless text is given)
    load_paths(paths) -> LoadResult                files and directories (*.yaml, *.yml)
    merge(file_results) -> LoadResult              combine per-file results; duplicate names
                                                   across files: the first wins, the later
                                                   file is rejected with a Problem naming both
    compile_policies(policies, identity, postures=None, resolve=None) -> RuleSet
    HostIdentity.detect(hostname=None, labels=None)

A FileResult with any error carries no policies; warnings never reject anything.
"""

from __future__ import annotations

from karmor_host.policy.canon import Canonicalizer, canonical
from karmor_host.policy.compile import compile_policies
from karmor_host.policy.load import FileResult, LoadResult, load_file, load_paths, load_text, merge
from karmor_host.policy.model import HostPolicy
from karmor_host.policy.selector import HostIdentity, Match, match

__all__ = [
    "Canonicalizer", "FileResult", "HostIdentity", "HostPolicy", "LoadResult", "Match",
    "canonical", "compile_policies", "load_file", "load_paths", "load_text", "match", "merge",
]

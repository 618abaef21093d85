"""The example policies in policies/: valid, documented, for every host, and safe to run."""

from __future__ import annotations

from pathlib import Path

import pytest

from karmor_host.policy import HostIdentity, compile_policies, load_paths
from karmor_host.policy.ruleset import Action

from .helpers import REPO

EXAMPLES = sorted((REPO / "policies").glob("*.yaml"))


def test_there_are_at_least_twelve_files() -> None:
    assert len(EXAMPLES) >= 12


def test_all_validate_without_errors_or_warnings() -> None:
    result = load_paths([REPO / "policies"])
    assert [str(p) for p in result.problems] == []
    assert len(result.policies) >= 12


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_each_file_says_what_it_protects_against(path: Path) -> None:
    assert path.read_text().startswith("# Protects against: ")


def test_all_apply_to_every_host_and_do_not_conflict() -> None:
    policies = load_paths([REPO / "policies"]).policies
    for host in ("web-1", "db.example.org"):
        rs = compile_policies(policies, HostIdentity.detect(hostname=host), resolve=lambda p: p)
        assert all(p.applies for p in rs.policies) and rs.conflicts == ()
        assert all(p.node_selector == (("kubearmor.io/hostname", "*"),) for p in policies)


def test_block_rules_are_narrow() -> None:
    """The examples run on real machines (`make run`): a Block must name the programs it
    stops, never apply to everyone."""
    policies = load_paths([REPO / "policies"]).policies
    rs = compile_policies(policies, HostIdentity.detect(hostname="any"), resolve=lambda p: p)
    blocks = [r for r in rs.rules if r.action is Action.BLOCK]
    assert blocks and all(r.sources for r in blocks)
    assert all(s.path.startswith(("/usr/sbin/nginx", "/usr/sbin/apache2", "/usr/sbin/lighttpd",
                                  "/usr/sbin/php-fpm")) for r in blocks for s in r.sources)

"""Shared helpers for the policy tests: fixture locations and a policy text builder."""

from __future__ import annotations

from pathlib import Path

from karmor_host.policy import HostPolicy, load_text
from tests.policytext import host_policy

DATA = Path(__file__).parent / "data"
REPO = Path(__file__).resolve().parents[3]

def policy_text(name: str, body: str, host: str = '"*"') -> str:
    """A policy document: the standard head (8 lines) followed by `body` (spec-level lines)."""
    return host_policy(name, body, host)


def load_one(text: str, file: str = "p.yaml") -> HostPolicy:
    result = load_text(text, file)
    assert result.valid, [str(p) for p in result.problems]
    (policy,) = result.policies
    return policy


def load_all(text: str, file: str = "p.yaml") -> tuple[HostPolicy, ...]:
    result = load_text(text, file)
    assert result.valid, [str(p) for p in result.problems]
    return result.policies

"""Shared helpers for the policy tests: fixture locations and a policy text builder."""

from __future__ import annotations

from pathlib import Path

from karmor_host.policy import HostPolicy, load_text

DATA = Path(__file__).parent / "data"
REPO = Path(__file__).resolve().parents[3]

HEAD = """\
apiVersion: security.kubearmor.com/v1
kind: KubeArmorHostPolicy
metadata:
  name: {name}
spec:
  nodeSelector:
    matchLabels:
      kubearmor.io/hostname: {host}
"""


def policy_text(name: str, body: str, host: str = '"*"') -> str:
    """A policy document: the standard head (8 lines) followed by `body` (spec-level lines)."""
    return HEAD.format(name=name, host=host) + body


def load_one(text: str, file: str = "p.yaml") -> HostPolicy:
    result = load_text(text, file)
    assert result.valid, [str(p) for p in result.problems]
    (policy,) = result.policies
    return policy


def load_all(text: str, file: str = "p.yaml") -> tuple[HostPolicy, ...]:
    result = load_text(text, file)
    assert result.valid, [str(p) for p in result.problems]
    return result.policies

"""Policy documents for tests: the standard head of a KubeArmor policy, then a spec-level body.
Unit, kernel and namespace tests build their policies with the same eight head lines."""

from __future__ import annotations

HOST_POLICY = "KubeArmorHostPolicy"
NETWORK_POLICY = "KubeArmorNetworkPolicy"

_HEAD = """\
apiVersion: security.kubearmor.com/v1
kind: {kind}
metadata:
  name: {name}
spec:
  nodeSelector:
    matchLabels:
      kubearmor.io/hostname: {host}
"""


def policy_text(kind: str, name: str, body: str, host: str = '"*"') -> str:
    """A `kind` policy named `name` for hosts matching `host`: the head (8 lines), then `body`."""
    return _HEAD.format(kind=kind, name=name, host=host) + body


def host_policy(name: str, body: str, host: str = '"*"') -> str:
    return policy_text(HOST_POLICY, name, body, host)


def network_policy(name: str, body: str, host: str = '"*"') -> str:
    return policy_text(NETWORK_POLICY, name, body, host)

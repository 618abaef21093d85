"""Closed registry of enforcers this build ships, by config name."""

from __future__ import annotations

from karmor_host.enforce.base import Enforcer
from karmor_host.enforce.none import NoneEnforcer

_ENFORCERS: dict[str, type] = {"none": NoneEnforcer}

IMPLEMENTED: frozenset[str] = frozenset(_ENFORCERS)


def create(name: str) -> Enforcer:
    return _ENFORCERS[name]()

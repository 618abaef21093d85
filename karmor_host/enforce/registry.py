"""Closed registry of enforcers this build ships, by config name."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from karmor_host.enforce.base import Enforcer
from karmor_host.enforce.none import NoneEnforcer

if TYPE_CHECKING:
    from karmor_host.config import Config
    from karmor_host.paths import Paths


def _bpflsm(paths: Paths | None, config: Config | None) -> Enforcer:
    from karmor_host.enforce.bpflsm.enforcer import BpfLsmEnforcer  # libbpf only when chosen

    return BpfLsmEnforcer(paths, config)


def _apparmor(paths: Paths | None, config: Config | None) -> Enforcer:
    from karmor_host.enforce.apparmor.enforcer import AppArmorEnforcer  # LibAppArmor only when chosen

    return AppArmorEnforcer(paths, config)


def _selinux(paths: Paths | None, config: Config | None) -> Enforcer:
    from karmor_host.enforce.selinux.enforcer import SELinuxEnforcer  # setools only when chosen

    return SELinuxEnforcer(paths, config)


def _none(paths: Paths | None, config: Config | None) -> Enforcer:
    return NoneEnforcer()


_ENFORCERS: dict[str, Callable[[Paths | None, Config | None], Enforcer]] = {
    "none": _none, "bpflsm": _bpflsm, "apparmor": _apparmor, "selinux": _selinux,
}

IMPLEMENTED: frozenset[str] = frozenset(_ENFORCERS)


def create(name: str, paths: Paths | None = None, config: Config | None = None) -> Enforcer:
    """The enforcer `name`, ready for apply(); an LSM enforcer adopts what an earlier run left."""
    return _ENFORCERS[name](paths, config)


def cleanup(paths: Paths | None = None) -> list[str]:
    """Remove the kernel state every enforcer of this build may have left (`run --cleanup`)."""
    from karmor_host.enforce.apparmor.enforcer import cleanup as apparmor_cleanup
    from karmor_host.enforce.bpflsm.enforcer import cleanup as bpflsm_cleanup
    from karmor_host.enforce.selinux.enforcer import cleanup as selinux_cleanup

    return bpflsm_cleanup(paths) + apparmor_cleanup(paths) + selinux_cleanup(paths)

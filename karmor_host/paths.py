"""Every filesystem path the agent uses, in one place; each can be overridden for tests."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

_PKG_DIR = Path(__file__).resolve().parent
# In a source checkout the BPF objects are built into bpf/.output; the .deb installs them here.
_SYSTEM_OBJ_DIR = Path("/usr/lib/karmor-host/bpf")
_SOURCE_OBJ_DIR = _PKG_DIR.parent / "bpf" / ".output"


def default_bpf_object_dir() -> Path:
    env = os.environ.get("KARMOR_BPF_DIR")
    if env:
        return Path(env)
    if _SOURCE_OBJ_DIR.is_dir():
        return _SOURCE_OBJ_DIR
    return _SYSTEM_OBJ_DIR


@dataclass(frozen=True)
class Paths:
    config_file: Path = Path("/etc/karmor/karmor-host.yaml")
    policy_dir: Path = Path("/etc/karmor/policies")
    state_dir: Path = Path("/var/lib/karmor")
    run_dir: Path = Path("/run/karmor")
    bpffs_dir: Path = Path("/sys/fs/bpf/karmor")
    bpf_object_dir: Path = _SYSTEM_OBJ_DIR

    @property
    def status_file(self) -> Path:
        return self.run_dir / "status.json"


def default_paths() -> Paths:
    # Environment overrides let tests run an agent without touching the host's /run or /var.
    return Paths(
        bpf_object_dir=default_bpf_object_dir(),
        run_dir=Path(os.environ.get("KARMOR_RUN_DIR", "/run/karmor")),
        state_dir=Path(os.environ.get("KARMOR_STATE_DIR", "/var/lib/karmor")),
    )

"""Kernel configurations the VM suite boots: one guest per entry, per test session.

Each guest runs every test in tests/vm/guest/ that is meant for it: a guest test marked
`@pytest.mark.vm_config("apparmor")` runs only in the `apparmor` guest; an unmarked one runs
in every guest. Adding a configuration is one entry here (plus marks on the tests that need it).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GuestConfig:
    name: str
    # Kernel command line added to virtme-ng's own; `lsm=` decides which LSMs are active.
    append: str
    # Wall-clock limit for boot + guest test session + power-off, in seconds.
    timeout: int = 600
    memory: str = "2G"
    cpus: int = 2
    # Host-side preparation before the boot, "module:function" called with the work dir (which
    # the guest sees read-write); the guest's own part is tests/vm/guest/setup-<name>.sh.
    prepare: str = ""


CONFIGS: tuple[GuestConfig, ...] = (
    # AppArmor as the major LSM, BPF-LSM stacked after it: the AppArmor enforcer (its own tests
    # and its column of the enforcement matrix, with one agent) and the probe.
    GuestConfig(name="apparmor", append="lsm=landlock,lockdown,yama,apparmor,bpf", timeout=900),
    # The same kernel line, booted apart for the BPF-LSM enforcer's suite (test_bpflsm_*.py):
    # its agent and pinned programs never meet the AppArmor tests, and it has a budget of its own
    # (about 4 min on an idle machine: two agent starts, ~40 tests; the limit allows for load).
    GuestConfig(name="bpflsm", append="lsm=landlock,lockdown,yama,apparmor,bpf", timeout=900),
    # SELinux as the major LSM (it excludes AppArmor), permissive until the tests switch it on;
    # a reduced refpolicy store built on the host (tests/vm/selinux_store.py). About 3.5 min on an
    # idle machine (every module is a policy rebuild under TCG); the limit allows for load.
    GuestConfig(name="selinux", append="lsm=landlock,lockdown,yama,selinux,bpf enforcing=0",
                prepare="tests.vm.selinux_store:build", timeout=900),
)

BY_NAME: dict[str, GuestConfig] = {c.name: c for c in CONFIGS}

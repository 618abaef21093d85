"""Kernel facts: what this kernel offers an enforcer, found by looking and by trying.

Reading /sys/kernel/security/lsm is not enough to know that BPF-LSM works: a locked-down
kernel lists `bpf` yet refuses LSM programs. So we try to load a real (do-nothing) LSM program.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno as errno_mod
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

SECURITYFS = Path("/sys/kernel/security")
BTF_VMLINUX = Path("/sys/kernel/btf/vmlinux")
SELINUXFS = Path("/sys/fs/selinux")
LSM_PROBE_OBJECT = "lsm_probe.bpf.o"

# The order `enforcer: auto` prefers, best first (design.md).
AUTO_ORDER = ("bpflsm", "apparmor", "selinux")


@dataclass(frozen=True)
class LsmFacts:
    name: str
    usable: bool
    detail: str


@dataclass(frozen=True)
class KernelFacts:
    kernel: str
    btf: bool
    lsms: tuple[str, ...]
    lsm_source: str  # where the LSM list came from, or why it is unknown
    bpflsm: LsmFacts
    apparmor: LsmFacts
    selinux: LsmFacts
    cgroup_v2: str  # mount point of the cgroup2 hierarchy, "" if none
    bpffs: str  # mount point of a bpf filesystem, "" if none
    lockdown: str
    notes: tuple[str, ...] = field(default=())

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class Choice:
    enforcer: str
    reason: str


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _mounts() -> list[tuple[str, str]]:
    """(mount point, fs type) pairs from /proc/self/mounts."""
    out = []
    for line in (_read(Path("/proc/self/mounts")) or "").splitlines():
        parts = line.split()
        if len(parts) >= 3:
            out.append((parts[1].replace("\\040", " "), parts[2]))
    return out


def _mount_securityfs(notes: list[str]) -> None:
    """Mount securityfs when it is missing (bare containers, early boot): the LSM list lives there."""
    if (SECURITYFS / "lsm").exists():
        return
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    rc = libc.mount(b"securityfs", str(SECURITYFS).encode(), b"securityfs", 0, None)
    if rc != 0:
        err = ctypes.get_errno()
        notes.append(f"securityfs not mounted and mounting it failed: {os.strerror(err)}")
    else:
        notes.append(f"mounted securityfs on {SECURITYFS}")


def _lockdown() -> str:
    text = _read(SECURITYFS / "lockdown")
    if text is None:
        return "unknown"
    # "none [integrity] confidentiality": the bracketed word is the active mode
    for word in text.split():
        if word.startswith("["):
            return word.strip("[]")
    return text


def _probe_bpflsm(lsms: tuple[str, ...], object_dir: Path) -> LsmFacts:
    if "bpf" not in lsms:
        return LsmFacts("bpflsm", False, "'bpf' is not among the active LSMs (boot with lsm=...,bpf)")
    obj = object_dir / LSM_PROBE_OBJECT
    if not obj.is_file():
        return LsmFacts("bpflsm", False, f"cannot test: probe object {obj} not built")
    from karmor_host.kernel.bpfobj import try_load  # only here: probing must not need libbpf otherwise

    ok, err, message = try_load(obj)
    if ok:
        return LsmFacts("bpflsm", True, "an LSM program loaded and attached")
    name = errno_mod.errorcode.get(err, str(err))
    return LsmFacts("bpflsm", False, f"'bpf' is active but loading an LSM program failed: {name} ({message})")


def _probe_apparmor(lsms: tuple[str, ...]) -> LsmFacts:
    enabled = _read(Path("/sys/module/apparmor/parameters/enabled"))
    if enabled is None:
        return LsmFacts("apparmor", False, "absent: the kernel has no AppArmor")
    if enabled != "Y" or "apparmor" not in lsms:
        return LsmFacts("apparmor", False, "built in but not active (not in the LSM list)")
    if not (SECURITYFS / "apparmor").is_dir():
        return LsmFacts("apparmor", False, "active but its securityfs interface is missing")
    profiles = _read(SECURITYFS / "apparmor" / "profiles")
    count = len(profiles.splitlines()) if profiles else 0
    return LsmFacts("apparmor", True, f"active, {count} profiles loaded")


def _probe_selinux(lsms: tuple[str, ...]) -> LsmFacts:
    if "selinux" not in lsms:
        built = Path("/sys/module/selinux").exists() or SELINUXFS.exists()
        return LsmFacts("selinux", False, "not enabled" + ("" if built else " (absent from this kernel's LSM list)"))
    enforce = _read(SELINUXFS / "enforce")
    if enforce is None:
        return LsmFacts("selinux", False, "enabled but no policy is loaded (selinuxfs has no enforce file)")
    mode = "enforcing" if enforce == "1" else "permissive"
    return LsmFacts("selinux", True, f"enabled, {mode}")


def probe(object_dir: Path) -> KernelFacts:
    notes: list[str] = []
    _mount_securityfs(notes)
    lsm_text = _read(SECURITYFS / "lsm")
    lsms = tuple(x for x in (lsm_text or "").split(",") if x)
    lsm_source = str(SECURITYFS / "lsm") if lsm_text is not None else "unknown: securityfs unavailable"
    mounts = _mounts()
    cg2 = next((m for m, t in mounts if t == "cgroup2"), "")
    bpffs = next((m for m, t in mounts if t == "bpf"), "")
    return KernelFacts(
        kernel=os.uname().release,
        btf=BTF_VMLINUX.is_file(),
        lsms=lsms,
        lsm_source=lsm_source,
        bpflsm=_probe_bpflsm(lsms, object_dir),
        apparmor=_probe_apparmor(lsms),
        selinux=_probe_selinux(lsms),
        cgroup_v2=cg2,
        bpffs=bpffs,
        lockdown=_lockdown(),
        notes=tuple(notes),
    )


def choose(facts: KernelFacts, wanted: str, implemented: frozenset[str]) -> Choice:
    """Pick the enforcer for the config value `wanted` (auto or a name).

    `implemented` is what this build of the agent ships; a usable LSM we cannot drive yet is
    reported as such rather than chosen.
    """
    usable = {f.name: f for f in (facts.bpflsm, facts.apparmor, facts.selinux)}
    if wanted == "none":
        return Choice("none", "configured: enforcer none (alerts only)")
    if wanted != "auto":
        f = usable[wanted]
        if not f.usable:
            return Choice("none", f"configured {wanted}, but it is not usable here: {f.detail}")
        if wanted not in implemented:
            return Choice("none", f"configured {wanted}, but this build has no {wanted} enforcer")
        return Choice(wanted, f"configured {wanted}: {f.detail}")
    skipped = []
    for name in AUTO_ORDER:
        f = usable[name]
        if f.usable and name in implemented:
            return Choice(name, f"auto: {name} is usable ({f.detail})" + (f"; {'; '.join(skipped)}" if skipped else ""))
        if f.usable:
            skipped.append(f"{name} usable but not in this build")
        else:
            skipped.append(f"{name}: {f.detail}")
    return Choice("none", "auto: no enforcer usable, alerts only (" + "; ".join(skipped) + ")")

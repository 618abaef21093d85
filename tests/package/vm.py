"""Host side of the package test: a Debian 12 guest with systemd as PID 1, booted under QEMU.

The guest is a debootstrapped bookworm image (tests/package/image/build-base.sh) booted with
Debian's 6.1 kernel from the host's /boot with AppArmor and BPF-LSM active. It is built once
and cached under /var/cache/karmor-host-test/, keyed by a hash of everything that goes into it
(the build scripts, the .deb's dependencies, the kernel, the mirror), so a changed .deb does not
rebuild it but a changed dependency does. Each run boots a throw-away copy-on-write overlay of
it, with a second disk (label PKGTEST) carrying the .deb files and the guest script; the
results are read back from that disk with debugfs. One QEMU process per guest boot: a
"reboot" in the guest ends QEMU (-no-reboot) and the next boot is a fresh QEMU on the same
disks (rebooting inside one TCG QEMU is much slower).

By hand:
    .venv/bin/python -m tests.package.vm --build          # build (or find) the base image
    .venv/bin/python -m tests.package.vm --shell [DEB]    # boot it, root shell on this terminal
    .venv/bin/python -m tests.package.vm --run SCRIPT [DEB]   # run SCRIPT in it (e.g.
                                          # guest/hardening-matrix.sh), results in build/package-run/
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
IMAGE_DIR = HERE / "image"
GUEST_DIR = HERE / "guest"
CACHE_ROOT = Path(os.environ.get("KARMOR_PKGTEST_CACHE", "/var/cache/karmor-host-test"))
SUITE = "bookworm"
KEEP_IMAGES = 2  # older base images are deleted when a new one is built
LSMS = "landlock,lockdown,yama,apparmor,bpf"
BOOT_TIMEOUT = int(os.environ.get("KARMOR_PKGTEST_BOOT_TIMEOUT", "900"))  # per boot, TCG on a busy host


class GuestSetupError(Exception):
    """An ingredient is missing or the base image cannot be built: a setup fault."""


# --- ingredients ---------------------------------------------------------------------------


def _version_key(release: str) -> tuple:
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"[.\-+~]", release))


def find_kernel() -> tuple[str, Path]:
    """(release, vmlinuz) of the guest kernel: $KARMOR_PKGTEST_KVER, else the newest Debian
    kernel in /boot that is not the running one and has its modules (linux-image-amd64)."""
    running = os.uname().release
    wanted = os.environ.get("KARMOR_PKGTEST_KVER")
    found = []
    for image in Path("/boot").glob("vmlinuz-*-amd64"):
        rel = image.name.removeprefix("vmlinuz-")
        if (wanted and rel != wanted) or (not wanted and rel == running):
            continue
        if (Path("/lib/modules") / rel / "modules.dep").is_file() and Path(f"/boot/config-{rel}").is_file():
            found.append((_version_key(rel), rel, image))
    if not found:
        raise GuestSetupError("no Debian kernel with modules in /boot (make deps installs linux-image-amd64)")
    _, rel, image = max(found)
    return rel, image


def deb_field(deb: Path, *names: str) -> str:
    out = subprocess.run(["dpkg-deb", "-f", str(deb), *names], check=True, capture_output=True, text=True).stdout
    return out


def deb_dependencies(deb: Path) -> str:
    """The .deb's Depends and Recommends as one `apt-get satisfy` string (a user's `apt install`
    installs Recommends too)."""
    parts = []
    for line in deb_field(deb, "Depends", "Recommends").splitlines():
        _, _, value = line.partition(": ")
        if value.strip():
            parts.append(value.strip())
    return ", ".join(parts)


def _mirrors() -> tuple[str, str]:
    """The host's Debian and security mirrors, from its deb822 sources (the base image uses the
    same, so a machine that reaches only its mirror can build it)."""
    src = Path("/etc/apt/sources.list.d/debian.sources")
    mirror, security = "http://deb.debian.org/debian", "http://deb.debian.org/debian-security"
    if src.is_file():
        uri = None
        for line in src.read_text().splitlines():
            if line.startswith("URIs:"):
                uri = line.split()[1]
            elif line.startswith("Suites:") and uri:
                if "-security" in line:
                    security = uri
                else:
                    mirror = uri
    return mirror, security


@dataclass(frozen=True)
class BaseImage:
    directory: Path
    image: Path
    initrd: Path
    kernel: Path
    kver: str
    built_now: bool
    build_seconds: float


def _image_key(deps: str, kver: str, mirror: str, security: str) -> str:
    h = hashlib.sha256()
    for f in sorted(IMAGE_DIR.iterdir()):
        h.update(f.name.encode() + b"\0" + f.read_bytes() + b"\0")
    h.update(GUEST_DIR.joinpath("warmup.sh").read_bytes())
    for part in (deps, kver, mirror, security, SUITE):
        h.update(part.encode() + b"\0")
    return h.hexdigest()[:16]


def ensure_base_image(deb: Path, log=print) -> BaseImage:
    """The cached base image for this .deb's dependencies, built (with its warm-up boot) if
    missing. Safe against concurrent runs (a lock file) and interrupted builds (a marker)."""
    if os.geteuid() != 0:
        raise GuestSetupError("building the base image needs root (debootstrap, chroot)")
    for tool in ("debootstrap", "qemu-system-x86_64", "qemu-img", "mkfs.ext4", "debugfs", "busybox", "cpio"):
        if shutil.which(tool) is None and not Path("/bin", tool).exists():
            raise GuestSetupError(f"{tool} is missing (make deps installs it)")
    kver, kernel = find_kernel()
    mirror, security = _mirrors()
    deps = deb_dependencies(deb)
    key = _image_key(deps, kver, mirror, security)
    CACHE_ROOT.mkdir(parents=True, exist_ok=True)
    directory = CACHE_ROOT / f"base-{key}"
    with open(CACHE_ROOT / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (directory / "complete").is_file():
            return BaseImage(directory, directory / "base.img", directory / "initrd.gz", kernel, kver, False, 0.0)
        t0 = time.monotonic()
        tmp = CACHE_ROOT / f".building-{key}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        env = dict(os.environ, KVER=kver, DEPS=deps, SUITE=SUITE, MIRROR=mirror, SECURITY_MIRROR=security,
                   DEB_CACHE=str(CACHE_ROOT / "debootstrap-debs"),
                   PATH="/usr/sbin:/usr/bin:/sbin:/bin")
        log(f"package test: building the base image {directory} (deps: {deps})")
        proc = subprocess.run([str(IMAGE_DIR / "build-base.sh"), str(tmp)], env=env,
                              capture_output=True, text=True)
        (tmp / "build.log").write_text(proc.stdout + proc.stderr)
        if proc.returncode != 0:
            raise GuestSetupError(f"build-base.sh failed ({proc.returncode}):\n{(proc.stdout + proc.stderr)[-4000:]}")
        log(proc.stdout.strip())
        base = BaseImage(tmp, tmp / "base.img", tmp / "initrd.gz", kernel, kver, True, 0.0)
        # warm-up boot on the image itself: AppArmor compiles its policy cache for this kernel,
        # first-boot jobs run; later runs start from an already-booted system
        warm = tmp / "warmup"
        payload = Path(tempfile.mkdtemp(prefix="karmor-warmup-"))
        shutil.copy(GUEST_DIR / "warmup.sh", payload / "test.sh")
        run = boot(base, payload, warm, direct=True, max_boots=1)
        shutil.rmtree(payload, ignore_errors=True)
        if not run.passed:
            raise GuestSetupError(f"warm-up boot failed: {run.summary()}\n{run.tail()}")
        (tmp / "complete").write_text(f"{time.time()}\n")
        os.replace(tmp, directory)
        _prune(keep=directory)
        seconds = time.monotonic() - t0
        log(f"package test: base image ready in {seconds:.0f} s")
        return BaseImage(directory, directory / "base.img", directory / "initrd.gz", kernel, kver, True, seconds)


def _prune(keep: Path) -> None:
    images = sorted((p for p in CACHE_ROOT.glob("base-*") if p != keep), key=lambda p: p.stat().st_mtime)
    for old in images[: max(0, len(images) - (KEEP_IMAGES - 1))]:
        shutil.rmtree(old, ignore_errors=True)


# --- one guest run -------------------------------------------------------------------------


@dataclass
class GuestRun:
    results: Path
    boots: int = 0
    rc: str = "none"
    qemu_rc: int = 0
    boot_seconds: list[float] = field(default_factory=list)
    timed_out: bool = False

    @property
    def passed(self) -> bool:
        return self.qemu_rc == 0 and self.rc == "0" and not self.timed_out

    def summary(self) -> str:
        times = ", ".join(f"{s:.0f} s" for s in self.boot_seconds)
        return (f"{self.boots} boot(s) ({times}), test.sh exit {self.rc}, qemu exit {self.qemu_rc}"
                + (", TIMED OUT" if self.timed_out else ""))

    def tail(self, lines: int = 60) -> str:
        out = []
        for name in ("test.log", f"harness{self.boots}.log", f"console{self.boots}.log"):
            p = self.results / name
            if p.is_file():
                text = p.read_text(errors="replace").splitlines()[-lines:]
                out.append(f"--- {name} (last {len(text)} lines)\n" + "\n".join(text))
        return "\n".join(out)


def _qemu_cmd(base: BaseImage, root_drive: str, payload_img: Path | None, console: Path, harness: Path,
              interactive: bool = False) -> list[str]:
    cmd = [
        "qemu-system-x86_64", "-accel", "tcg", "-smp", os.environ.get("KARMOR_PKGTEST_SMP", "2"),
        "-m", "2G", "-nodefaults", "-display", "none", "-no-reboot",
        "-kernel", str(base.kernel), "-initrd", str(base.initrd),
        "-append", f"root=/dev/vda rw console=ttyS0 lsm={LSMS}",
        "-device", "virtio-rng-pci",
        "-drive", root_drive,
    ]
    if payload_img is not None:
        cmd += ["-drive", f"file={payload_img},if=virtio,format=raw"]
    if interactive:
        cmd += ["-serial", "mon:stdio", "-serial", "null"]
    else:
        cmd += ["-monitor", "none", "-serial", f"file:{console}", "-serial", f"file:{harness}"]
    return cmd


def boot(base: BaseImage, payload: Path, results: Path, direct: bool = False, max_boots: int = 4) -> GuestRun:
    """Boot the base image (a fresh overlay, or the image itself with direct=True) with
    `payload` as the PKGTEST disk until test.sh exits with something other than 100."""
    shutil.rmtree(results, ignore_errors=True)
    results.mkdir(parents=True)
    work = Path(tempfile.mkdtemp(prefix="karmor-pkgvm-"))
    run = GuestRun(results)
    try:
        if direct:
            root_drive = f"file={base.image},if=virtio,format=raw"
        else:
            overlay = work / "root.qcow2"
            subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(base.image), "-F", "raw",
                            str(overlay)], check=True)
            root_drive = f"file={overlay},if=virtio,format=qcow2,discard=unmap"
        size_mb = 64 + sum(f.stat().st_size for f in payload.rglob("*") if f.is_file()) // (1 << 20)
        payload_img = work / "payload.img"
        subprocess.run(["mkfs.ext4", "-q", "-F", "-L", "PKGTEST", "-d", str(payload), str(payload_img),
                        f"{size_mb}M"], check=True)
        while True:
            run.boots += 1
            cmd = _qemu_cmd(base, root_drive, payload_img, results / f"console{run.boots}.log",
                            results / f"harness{run.boots}.log")
            t0 = time.monotonic()
            try:
                proc = subprocess.run(cmd, timeout=BOOT_TIMEOUT, stdin=subprocess.DEVNULL,
                                      capture_output=True, text=True)
                run.qemu_rc = proc.returncode
                if proc.returncode != 0:
                    (results / f"qemu{run.boots}.err").write_text(proc.stderr)
            except subprocess.TimeoutExpired:
                run.timed_out = True
            run.boot_seconds.append(time.monotonic() - t0)
            rc = _debugfs_cat(payload_img, "/out/rc")
            run.rc = rc or "none"
            if run.timed_out or run.qemu_rc != 0 or rc != "100" or run.boots >= max_boots:
                break
        subprocess.run(["debugfs", "-R", f"rdump /out {results}", str(payload_img)], capture_output=True)
        out = results / "out"
        if out.is_dir():
            for f in out.iterdir():
                os.replace(f, results / f.name)
            out.rmdir()
        return run
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _debugfs_cat(img: Path, path: str) -> str:
    proc = subprocess.run(["debugfs", "-R", f"cat {path}", str(img)], capture_output=True, text=True)
    return proc.stdout.strip()


def shell(base: BaseImage, debs: list[Path]) -> int:
    """Interactive guest on this terminal (root, no password); the .debs are on /dev/vdb."""
    work = Path(tempfile.mkdtemp(prefix="karmor-pkgshell-"))
    try:
        overlay = work / "root.qcow2"
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(base.image), "-F", "raw",
                        str(overlay)], check=True)
        payload = None
        if debs:
            d = work / "payload"
            d.mkdir()
            for deb in debs:
                shutil.copy(deb, d)
            payload = work / "payload.img"
            # label PAYLOAD, not PKGTEST: the harness must not run anything
            subprocess.run(["mkfs.ext4", "-q", "-F", "-L", "PAYLOAD", "-d", str(d), str(payload), "64M"], check=True)
        print("guest: log in as root (no password); `mount /dev/vdb /mnt` has the .debs; Ctrl-a x quits")
        return subprocess.call(_qemu_cmd(base, f"file={overlay},if=virtio,format=qcow2", payload,
                                         Path("/dev/null"), Path("/dev/null"), interactive=True))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description="package-test guest: build the base image or boot it by hand")
    ap.add_argument("--build", action="store_true", help="build (or find) the base image and print its path")
    ap.add_argument("--shell", action="store_true", help="boot a throw-away overlay with a root shell here")
    ap.add_argument("--run", type=Path, metavar="SCRIPT",
                    help="boot once with the .deb, guest/ helpers and SCRIPT as test.sh on the payload disk")
    ap.add_argument("deb", nargs="*", type=Path, help="the .deb whose dependencies the image carries")
    args = ap.parse_args()
    debs = args.deb or sorted((REPO / "dist").glob("karmor-host_*_amd64.deb"))[-1:]
    if not debs:
        ap.error("no .deb given and none in dist/ (make deb)")
    base = ensure_base_image(debs[0])
    print(base.directory)
    if args.shell:
        return shell(base, debs)
    if args.run:
        payload = Path(tempfile.mkdtemp(prefix="karmor-run-"))
        try:
            for deb in debs:
                shutil.copy(deb, payload)
            for f in GUEST_DIR.glob("*.sh"):
                shutil.copy(f, payload)
            shutil.copytree(GUEST_DIR / "policies", payload / "policies")
            shutil.copy(args.run, payload / "test.sh")
            results = REPO / "build" / "package-run"
            run = boot(base, payload, results, max_boots=1)
        finally:
            shutil.rmtree(payload, ignore_errors=True)
        print(run.summary())
        print((results / "test.log").read_text(errors="replace") if (results / "test.log").is_file() else run.tail())
        return 0 if run.passed else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

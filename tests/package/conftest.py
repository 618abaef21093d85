"""Package tests: build the .deb and .rpm like `make deb` / `make rpm`, inspect them, and install
the .deb in a Debian 12 guest with systemd as PID 1 (tests/package/vm.py, guest/test.sh).

Everything is built here if missing: the packages through make (which also installs the build
tools from debian-packages.txt), the base image on first use (cached in
/var/cache/karmor-host-test/). Nothing is skipped: a missing ingredient fails the tests.
The last guest run's logs stay in build/package-test/ (console, journal, security report).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.package import vm

REPO = vm.REPO
RESULTS = REPO / "build" / "package-test"
_STASH = pytest.StashKey[dict]()


def _make(target: str) -> Path:
    """Run `make TARGET` in the repository; the package path is the last line printed by the
    build script, or (when make found it up to date) the file in dist/."""
    env = dict(os.environ)
    env.pop("MAKEFLAGS", None)  # a parallel outer make must not leak into the package build
    proc = subprocess.run(["make", "-C", str(REPO), "--no-print-directory", target], env=env,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.fail(f"make {target} failed:\n{(proc.stdout + proc.stderr)[-6000:]}", pytrace=False)
    pattern = {"deb": "karmor-host_*_amd64.deb", "rpm": "karmor-host-*.x86_64.rpm"}[target]
    found = sorted((REPO / "dist").glob(pattern), key=lambda p: p.stat().st_mtime)
    if not found:
        pytest.fail(f"make {target} succeeded but dist/ has no {pattern}", pytrace=False)
    return found[-1]


@pytest.fixture(scope="session")
def deb(request: pytest.FixtureRequest) -> Path:
    t0 = time.monotonic()
    path = _make("deb")
    request.config.stash.setdefault(_STASH, {})["make deb"] = f"{time.monotonic() - t0:.0f} s"
    return path


@pytest.fixture(scope="session")
def rpm(request: pytest.FixtureRequest) -> Path:
    t0 = time.monotonic()
    path = _make("rpm")
    request.config.stash.setdefault(_STASH, {})["make rpm"] = f"{time.monotonic() - t0:.0f} s"
    return path


def repack_with_version(deb: Path, version: str, out_dir: Path) -> Path:
    """The same build with another version number: what `apt install` of the next release
    does to an installed system (maintainer scripts, conffiles, restart) is what it tests."""
    work = Path(tempfile.mkdtemp(prefix="karmor-repack-"))
    try:
        root = work / "root"
        subprocess.run(["dpkg-deb", "-R", str(deb), str(root)], check=True)
        control = root / "DEBIAN" / "control"
        lines = [f"Version: {version}" if ln.startswith("Version:") else ln
                 for ln in control.read_text().splitlines()]
        control.write_text("\n".join(lines) + "\n")
        out_dir.mkdir(parents=True, exist_ok=True)
        arch = vm.deb_field(deb, "Architecture").strip()
        out = out_dir / f"karmor-host_{version}_{arch}.deb"
        subprocess.run(["dpkg-deb", "--root-owner-group", "-b", str(root), str(out)], check=True,
                       capture_output=True)
        return out
    finally:
        shutil.rmtree(work, ignore_errors=True)


@dataclass
class GuestResults:
    run: vm.GuestRun
    base: vm.BaseImage
    checks: dict[str, list[dict]] = field(default_factory=dict)
    metrics: dict[str, float | str] = field(default_factory=dict)

    def context(self) -> str:
        return f"guest: {self.run.summary()}; logs in {self.run.results}\n{self.run.tail(40)}"


@pytest.fixture(scope="session")
def guest(deb: Path, request: pytest.FixtureRequest) -> GuestResults:
    if os.geteuid() != 0:
        pytest.fail("the package test needs root (debootstrap for the base image, QEMU disks)", pytrace=False)
    stash = request.config.stash.setdefault(_STASH, {})
    try:
        base = vm.ensure_base_image(deb, log=lambda msg: None)
    except vm.GuestSetupError as exc:
        pytest.fail(f"package test guest cannot run: {exc}", pytrace=False)
    stash["base image"] = (f"built in {base.build_seconds:.0f} s" if base.built_now else "cached") + f" ({base.directory})"
    payload = Path(tempfile.mkdtemp(prefix="karmor-payload-"))
    try:
        shutil.copy(deb, payload)
        version = vm.deb_field(deb, "Version").strip()
        repack_with_version(deb, f"{version}+pkgtest1", payload / "upgrade")
        for name in ("test.sh", "lib.sh", "sandbox-check.sh"):
            shutil.copy(vm.GUEST_DIR / name, payload / name)
        shutil.copytree(vm.GUEST_DIR / "policies", payload / "policies")
        t0 = time.monotonic()
        run = vm.boot(base, payload, RESULTS)
        stash["guest run"] = f"{time.monotonic() - t0:.0f} s, {run.summary()}"
    finally:
        shutil.rmtree(payload, ignore_errors=True)
    results = GuestResults(run, base)
    for line in _jsonl(RESULTS / "checks.jsonl"):
        results.checks.setdefault(line["name"], []).append(line)
    for line in _jsonl(RESULTS / "metrics.jsonl"):
        results.metrics[line["name"]] = line["value"]
    stash["metrics"] = results.metrics
    return results


def _jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(ln) for ln in path.read_text(errors="replace").splitlines() if ln.strip()]


def pytest_terminal_summary(terminalreporter, exitstatus, config: pytest.Config) -> None:
    stash = config.stash.get(_STASH, None)
    if not stash:
        return
    terminalreporter.section("package test")
    for key, value in stash.items():
        if key == "metrics":
            for name, v in value.items():
                terminalreporter.write_line(f"  {name}: {v}")
        else:
            terminalreporter.write_line(f"{key}: {value}")
    if (RESULTS / "test.log").is_file():
        terminalreporter.write_line(f"guest logs: {RESULTS}")

"""Host side of the VM suite: find the ingredients, boot one guest, read back its report.

A guest is Debian's kernel booted by virtme-ng under QEMU (TCG) with the host's root file
system shared read-only over 9p and one read-write directory (the work dir). In the guest,
tests/vm/guest/run-guest.sh prepares the system (bpffs, journald) and runs pytest over
tests/vm/guest/; the guest's conftest appends one JSON line per test event to
<work dir>/report.jsonl, so even a guest that hangs or crashes leaves what it got through.

Also a command line for debugging the same guest by hand:
    .venv/bin/python -m tests.vm.harness --config apparmor            # run the guest suite
    .venv/bin/python -m tests.vm.harness --config apparmor --shell    # interactive guest shell
"""

from __future__ import annotations

import argparse
import functools
import importlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.vm.configs import BY_NAME, CONFIGS, GuestConfig

REPO = Path(__file__).resolve().parents[2]
GUEST_DIR = REPO / "tests" / "vm" / "guest"
RUNNER = GUEST_DIR / "run-guest.sh"
VENV_BIN = REPO / ".venv" / "bin"
REPORT_NAME = "report.jsonl"
CONSOLE_NAME = "console.log"
PYIMAGE_NAME = "python.sqfs"
PYIMAGE_LIST = "pyimage.list"
# Time the guest needs around its pytest session (boot, journald, power-off) under TCG.
BOOT_ALLOWANCE = 120
CONSOLE_TAIL_LINES = 40


class VmInstallError(Exception):
    """An ingredient of the VM suite is missing: a setup fault, never a reason to skip."""


class VmRunError(Exception):
    """The guest did not produce a complete report (timeout, crash, boot failure)."""


# --- ingredients -------------------------------------------------------------------------


def _version_key(release: str) -> tuple:
    """Sort key for kernel releases like 6.1.0-56-amd64 (numbers compared as numbers)."""
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"[.\-+~]", release))


def find_kernel() -> Path:
    """The guest kernel: $KARMOR_VM_KERNEL, else the newest /boot/vmlinuz-*-amd64 that is not
    the running kernel and has its modules installed (Debian's linux-image-amd64)."""
    env = os.environ.get("KARMOR_VM_KERNEL")
    if env:
        path = Path(env)
        if not path.is_file():
            raise VmInstallError(f"KARMOR_VM_KERNEL={env} is not a file")
        return path
    running = os.uname().release
    candidates = []
    for image in Path("/boot").glob("vmlinuz-*-amd64"):
        release = image.name.removeprefix("vmlinuz-")
        if release != running and (Path("/lib/modules") / release / "modules.dep").is_file():
            candidates.append((_version_key(release), image))
    if not candidates:
        raise VmInstallError(
            "no guest kernel: expected /boot/vmlinuz-*-amd64 with /lib/modules/<release> "
            "(Debian package linux-image-amd64; `make deps` installs it)"
        )
    return max(candidates)[1]


def find_vng() -> Path:
    vng = VENV_BIN / "vng"
    if not (vng.is_file() and os.access(vng, os.X_OK)):
        raise VmInstallError(f"{vng} missing: virtme-ng is installed into the venv by `make venv`")
    return vng


HOST_TOOLS = {"qemu-system-x86_64": "qemu-system-x86", "busybox": "busybox-static", "mksquashfs": "squashfs-tools"}


def check_host_tools() -> None:
    missing = [f"{tool} (Debian package {pkg})" for tool, pkg in HOST_TOOLS.items() if not shutil.which(tool, path=_path())]
    if missing:
        raise VmInstallError(f"missing {', '.join(missing)}: `make deps` installs them")


def _path() -> str:
    # vng runs virtme-run from its own bin dir; busybox-static lives in /bin.
    return os.pathsep.join([str(VENV_BIN), os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")])


# --- the Python image --------------------------------------------------------------------
#
# Under TCG every 9p request is expensive, and starting Python does ~1700 of them (stat, open,
# read of the standard library and site-packages). The guest therefore gets the Python trees
# as a squashfs image on a virtio disk, bind-mounted over the same paths: `import pytest`
# takes ~3.5 s instead of ~9 s in the guest. The image is a read-only snapshot of the host's
# trees taken at boot, so the guest sees exactly what the host has. The repo itself (code,
# tests, bpf/.output) stays on the live 9p share.


def python_trees() -> list[tuple[str, Path]]:
    """(name in the image, host path) of the trees the guest's Python reads most."""
    trees = [
        Path(sysconfig.get_paths()["stdlib"]),  # /usr/lib/python3.11 (with lib-dynload)
        Path("/usr/lib/python3/dist-packages"),  # Debian's python3-* packages
        REPO / ".venv",
    ]
    return [(p.name, p) for p in trees if p.is_dir()]


def build_python_image(dest: Path) -> Path:
    """Build the squashfs image of python_trees() at dest (~60 MB, ~1-3 s)."""
    trees = python_trees()
    names = [name for name, _ in trees]
    assert len(set(names)) == len(names), f"image tree names collide: {names}"
    tmp = dest.with_suffix(".tmp")
    proc = subprocess.run(
        ["mksquashfs", *[str(p) for _, p in trees], str(tmp), "-noappend", "-comp", "lz4", "-quiet", "-no-progress"],
        capture_output=True, text=True, env={**os.environ, "PATH": _path()},
    )  # fmt: skip
    if proc.returncode != 0:
        raise VmRunError(f"mksquashfs failed (rc={proc.returncode}):\n{proc.stdout}{proc.stderr}")
    tmp.rename(dest)
    return dest


def _use_python_image() -> bool:
    return os.environ.get("KARMOR_VM_PYIMAGE", "1") != "0"


# --- one guest run -----------------------------------------------------------------------


def vng_command(
    cfg: GuestConfig, kernel: Path, workdir: Path, exec_cmd: str | None, image: Path | None = None
) -> list[str]:
    cmd = [
        str(find_vng()),
        "--run", str(kernel),
        "--disable-kvm",
        "--memory", cfg.memory,
        "--cpus", str(cfg.cpus),
        "--rwdir", str(workdir),
        "--append", cfg.append,
    ]  # fmt: skip
    if image is not None:
        cmd += ["--disk", str(image)]
    if os.environ.get("KARMOR_VM_VERBOSE"):
        cmd.append("--verbose")  # kernel boot messages on the console
    if exec_cmd is not None:
        cmd += ["--exec", exec_cmd]
    return cmd


def guest_budget(cfg: GuestConfig) -> int:
    """Seconds the guest's pytest may run before it is interrupted (SIGINT, so it reports)."""
    return max(60, timeout_of(cfg) - BOOT_ALLOWANCE)


def timeout_of(cfg: GuestConfig) -> int:
    return int(os.environ.get("KARMOR_VM_TIMEOUT", cfg.timeout))


@dataclass
class GuestRun:
    config: GuestConfig
    kernel: Path
    workdir: Path
    returncode: int | None  # of vng; None when the host timeout killed it
    wall_seconds: float
    timed_out: bool
    report: GuestReport

    @property
    def console(self) -> Path:
        return self.workdir / CONSOLE_NAME

    def console_tail(self, lines: int = CONSOLE_TAIL_LINES) -> str:
        try:
            text = self.console.read_text(errors="replace")
        except OSError as exc:
            return f"(no console log: {exc})"
        tail = text.splitlines()[-lines:]
        return "\n".join(f"  | {line}" for line in tail)

    def describe(self) -> str:
        """Where to look: the header of every failure that comes from this guest."""
        rep = self.report
        return (
            f"guest {self.config.name}: kernel {self.kernel.name}, {self.wall_seconds:.1f} s wall, "
            f"vng rc={self.returncode}, guest pytest exit={rep.exitstatus}\n"
            f"work dir (console.log, report.jsonl, journal.txt, dmesg.txt): {self.workdir}"
        )

    def problem(self) -> str | None:
        """Why the run as a whole is not trustworthy, or None."""
        if self.timed_out:
            running = self.report.running()
            where = f"; guest test still running: {running}" if running else ""
            return f"guest run exceeded {timeout_of(self.config)} s and was killed{where}"
        if not self.report.events:
            return "guest produced no report: it did not boot or the runner failed before pytest"
        if self.report.exitstatus is None:
            running = self.report.running()
            where = f" while running {running}" if running else ""
            return f"guest pytest did not finish{where} (guest crashed or powered off early)"
        if self.report.interrupted:
            running = self.report.running()
            where = f" while running {running}" if running else ""
            return f"guest pytest was interrupted after its {guest_budget(self.config)} s budget{where}"
        if self.report.collect_errors:
            return "guest collection errors:\n" + "\n".join(
                f"{nodeid}:\n{text}" for nodeid, text in self.report.collect_errors
            )
        return None


def prepare(workdir: Path, image: Path | None = None, cfg: GuestConfig | None = None) -> Path | None:
    """Make the work dir ready for a boot: stale results gone, the configuration's own host-side
    preparation done, the Python image and its mount list in place (an existing `image` is
    reused). Returns the image to attach, if any."""
    workdir.mkdir(parents=True, exist_ok=True)
    for stale in (REPORT_NAME, CONSOLE_NAME, PYIMAGE_LIST, "rc"):
        (workdir / stale).unlink(missing_ok=True)
    if cfg is not None and cfg.prepare:
        module, _, func = cfg.prepare.partition(":")
        try:
            getattr(importlib.import_module(module), func)(workdir)
        except Exception as exc:  # noqa: BLE001 - any failure here means the guest cannot run
            raise VmInstallError(f"preparing the {cfg.name} guest ({cfg.prepare}) failed: {exc}") from exc
    if not _use_python_image():
        return None
    if image is None:
        image = workdir / PYIMAGE_NAME
    if not image.is_file():
        build_python_image(image)
    (workdir / PYIMAGE_LIST).write_text("".join(f"{name} {path}\n" for name, path in python_trees()))
    return image


def boot(cfg: GuestConfig, workdir: Path, pytest_args: Sequence[str] = (), image: Path | None = None) -> GuestRun:
    """Boot one guest for `cfg`, run the guest suite in it, and return what it left behind.

    `image`: a Python image built earlier in this session (build_python_image) to share."""
    check_host_tools()
    kernel = find_kernel()
    image = prepare(workdir, image, cfg)
    exec_cmd = shlex.join(
        [str(RUNNER), str(REPO), str(workdir), cfg.name, str(guest_budget(cfg)), *pytest_args]
    )
    cmd = vng_command(cfg, kernel, workdir, exec_cmd, image)
    limit = timeout_of(cfg)
    start = time.monotonic()
    returncode = run_vng(cmd, workdir, limit)
    return GuestRun(
        config=cfg,
        kernel=kernel,
        workdir=workdir,
        returncode=returncode,
        wall_seconds=time.monotonic() - start,
        timed_out=returncode is None,
        report=GuestReport.load(workdir / REPORT_NAME),
    )


def run_vng(cmd: Sequence[str], workdir: Path, limit: float) -> int | None:
    """Run a vng command line, its output appended to <workdir>/console.log; its exit status,
    or None when it ran past `limit` seconds and was killed."""
    # vng's output must go through a pipe: QEMU re-opens its stdout, so a file given as
    # stdout gets overwritten from offset 0. A thread copies the pipe into console.log.
    with open(workdir / CONSOLE_NAME, "ab") as console:
        console.write(f"$ {shlex.join(cmd)}\n".encode())
        console.flush()
        proc = subprocess.Popen(
            list(cmd),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=workdir,
            env={**os.environ, "PATH": _path()},
            start_new_session=True,  # so a timeout can kill vng, QEMU and all helpers at once
        )
        copier = threading.Thread(target=_copy, args=(proc.stdout, console), daemon=True)
        copier.start()
        try:
            returncode: int | None = proc.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            returncode = None
            _kill_group(proc)
        copier.join(timeout=10)
    return returncode


def _copy(src, dst) -> None:
    for chunk in iter(lambda: src.read1(65536), b""):
        dst.write(chunk)
        dst.flush()


def _kill_group(proc: subprocess.Popen) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=10)
            return
        except subprocess.TimeoutExpired:
            continue


# --- the guest's report --------------------------------------------------------------------


@dataclass
class GuestTest:
    """The outcome of one guest test, folded from its setup/call/teardown reports."""

    nodeid: str
    outcome: str = "not run"  # passed | failed | error | skipped | xfailed | xpassed | not run
    details: list[str] = field(default_factory=list)
    output: list[tuple[str, str]] = field(default_factory=list)
    duration: float = 0.0


@dataclass
class GuestReport:
    events: list[dict]
    collected: list[str]
    tests: dict[str, GuestTest]
    collect_errors: list[tuple[str, str]]
    session: dict
    exitstatus: int | None
    interrupted: bool
    started: list[str]

    @classmethod
    def load(cls, path: Path) -> GuestReport:
        events = []
        try:
            lines = path.read_text(errors="replace").splitlines()
        except OSError:
            lines = []
        for line in lines:
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line cut short by a crash
        return cls.from_events(events)

    @classmethod
    def from_events(cls, events: list[dict]) -> GuestReport:
        rep = cls(events, [], {}, [], {}, None, False, [])
        for ev in events:
            kind = ev.get("event")
            if kind == "session":
                rep.session = ev
            elif kind == "collected":
                rep.collected = list(ev["nodeids"])
            elif kind == "collect_error":
                rep.collect_errors.append((ev["nodeid"], ev["longrepr"]))
            elif kind == "start":
                rep.started.append(ev["nodeid"])
            elif kind == "report":
                rep._fold(ev)
            elif kind == "finish":
                rep.exitstatus = ev["exitstatus"]
                rep.interrupted = bool(ev.get("interrupted"))
        return rep

    def _fold(self, ev: dict) -> None:
        test = self.tests.setdefault(ev["nodeid"], GuestTest(ev["nodeid"]))
        when, outcome = ev["when"], ev["outcome"]
        test.duration += ev.get("duration", 0.0)
        # Each phase's report repeats the output captured in the phases before it.
        test.output.extend(
            (name, text) for name, text in ev.get("sections", []) if text and (name, text) not in test.output
        )
        if ev.get("longrepr"):
            test.details.append(f"[{when}] {ev['longrepr']}")
        if outcome == "failed":
            if when == "call":
                test.outcome = "xpassed" if ev.get("wasxfail") is not None else "failed"
            else:
                test.outcome = "error"
        elif outcome == "skipped":
            if ev.get("wasxfail") is not None:
                test.outcome = "xfailed"
            elif test.outcome == "not run":
                test.outcome = "skipped"
        elif outcome == "passed" and when == "call" and test.outcome == "not run":
            test.outcome = "xpassed" if ev.get("wasxfail") else "passed"

    def running(self) -> str | None:
        """The last test that started and has no teardown report: where a hang happened."""
        for nodeid in reversed(self.started):
            if not any(
                e.get("event") == "report" and e["nodeid"] == nodeid and e["when"] == "teardown"
                for e in self.events
            ):
                return nodeid
        return None


# --- which guest tests a configuration runs -------------------------------------------------


@functools.cache
def collect_guest_tests(config_name: str) -> tuple[tuple[str, ...], str | None]:
    """The guest test ids for a configuration, collected on the host once per process (guest
    tests must not depend on the kernel at collection time). Returns (ids, error text or None)."""
    env = {**os.environ, "KARMOR_VM_CONFIG": config_name, "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("KARMOR_VM_REPORT", None)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--collect-only", "-q",
         str(GUEST_DIR.relative_to(REPO))],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    ids = tuple(line for line in proc.stdout.splitlines() if "::" in line and not line.startswith(" "))
    if proc.returncode != 0:
        return ids, f"collecting the guest tests of {config_name} failed (rc={proc.returncode}):\n{proc.stdout}{proc.stderr}"
    return ids, None


# --- command line --------------------------------------------------------------------------


def _main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.vm.harness", description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default=CONFIGS[0].name, choices=sorted(BY_NAME))
    ap.add_argument("--shell", action="store_true", help="boot the guest with an interactive shell")
    ap.add_argument("--workdir", type=Path, help="read-write dir shared with the guest (kept)")
    ap.add_argument("pytest_args", nargs="*", help="extra arguments for the guest's pytest (after --)")
    args = ap.parse_args(argv)
    cfg = BY_NAME[args.config]
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix=f"karmor-vm-{cfg.name}-"))
    try:
        if args.shell:
            check_host_tools()
            workdir = workdir.resolve()
            cmd = vng_command(cfg, find_kernel(), workdir, None, prepare(workdir, cfg=cfg))
            print(
                f"work dir {workdir} is read-write in the guest. To set the guest up as the suite does:\n"
                f"  {RUNNER} {REPO} {workdir} {cfg.name} setup",
                file=sys.stderr,
            )
            return subprocess.call(cmd, env={**os.environ, "PATH": _path()})
        run = boot(cfg, workdir.resolve(), args.pytest_args)
    except VmInstallError as exc:
        print(f"install error: {exc}", file=sys.stderr)
        return 3
    print(run.describe())
    problem = run.problem()
    if problem:
        print(f"PROBLEM: {problem}\n{run.console_tail()}")
        return 2
    bad = {t.nodeid: t.outcome for t in run.report.tests.values() if t.outcome not in ("passed", "xfailed")}
    for nodeid, outcome in sorted(bad.items()):
        print(f"{outcome.upper()}: {nodeid}")
    print(f"{len(run.report.tests) - len(bad)} of {len(run.report.tests)} guest tests passed")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(_main())

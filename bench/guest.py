"""Host side of the benches that need an LSM this machine's kernel does not have (AppArmor,
BPF-LSM): boot one VM guest of the VM suite (tests/vm/harness.py) and run a bench module in it.

run("bench_lsm", "bench-lsm.json") compiles bench/loops.c on the host into a fresh work dir,
boots the named guest configuration once, lets tests/vm/guest/run-guest.sh prepare it (bpffs,
securityfs, the Python image, journald), then runs `python -m bench.bench_lsm --guest WORKDIR`
in the guest. The module finds the loops at WORKDIR/loops (loops_binary()) and writes its
result file into WORKDIR, the one directory the guest can write and the host reads back.
The guest's console is copied to WORKDIR/console.log as it comes, so a long run can be watched.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
LOOPS_C = Path(__file__).with_name("loops.c")
LOOPS = "loops"
TIMEOUT_S = 3600  # boot + bench + power-off; the guest emulates its CPU (TCG)


@dataclass
class GuestResult:
    data: Any  # the module's result file, parsed
    workdir: Path
    seconds: float  # wall, boot included


def loops_binary(workdir: Path) -> Path:
    """Where run() leaves the compiled loops (in the guest: the --guest directory)."""
    return workdir / LOOPS


def compile_loops(workdir: Path) -> Path:
    binary = loops_binary(workdir)
    subprocess.run(["gcc", "-O2", "-Wall", "-o", str(binary), str(LOOPS_C)], check=True)
    return binary


def guest_command(workdir: Path, config: str, module: str) -> str:
    """The shell command the guest runs: the VM suite's set-up, then the module."""
    from tests.vm import harness

    python = REPO / ".venv" / "bin" / "python"
    setup = shlex.join([str(harness.RUNNER), str(REPO), str(workdir), config, "setup"])
    # The repo is read-only in the guest: no bytecode.
    bench = shlex.join(["env", "PYTHONDONTWRITEBYTECODE=1", str(python), "-m", f"bench.{module}",
                        "--guest", str(workdir)])
    return f"{setup} && cd {shlex.quote(str(REPO))} && {bench}"


def run(module: str, result: str, config: str = "apparmor", timeout_s: int = TIMEOUT_S) -> GuestResult:
    """Boot the `config` guest once, run bench.<module> in it, return its result file parsed."""
    from tests.vm import harness
    from tests.vm.configs import BY_NAME

    cfg = BY_NAME[config]
    workdir = Path(tempfile.mkdtemp(prefix=f"karmor-{module.replace('_', '-')}-"))
    compile_loops(workdir)
    harness.check_host_tools()
    image = harness.prepare(workdir, None, cfg)
    cmd = harness.vng_command(cfg, harness.find_kernel(), workdir, guest_command(workdir, cfg.name, module), image)
    started = time.monotonic()
    returncode = harness.run_vng(cmd, workdir, timeout_s)  # console in workdir/console.log
    seconds = time.monotonic() - started
    path = workdir / result
    if not path.is_file():
        tail = (workdir / harness.CONSOLE_NAME).read_text(errors="replace").splitlines()[-40:]
        why = f"killed after {timeout_s} s" if returncode is None else f"vng rc={returncode}"
        raise RuntimeError(f"the guest wrote no {result} ({why}; work dir {workdir}); console:\n" + "\n".join(tail))
    return GuestResult(json.loads(path.read_text()), workdir, seconds)


def main(argv: list[str], module: str, doc: str | None, guest_main: Callable[[Path], int],
         run_rows: Callable[[], list[dict]]) -> int:
    """A guest bench's command line: `--guest DIR` measures inside the guest (rows to DIR);
    without it, boot the guest and print the rows."""
    ap = argparse.ArgumentParser(prog=f"python -m bench.{module}", description=(doc or "").split("\n\n")[0])
    ap.add_argument("--guest", type=Path, help="run the measurements here (inside the VM guest), results to DIR")
    args = ap.parse_args(argv)
    if args.guest:
        return guest_main(args.guest)
    from bench.__main__ import print_table

    print_table(run_rows())
    return 0

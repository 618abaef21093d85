"""What enforcement costs a confined program: open+close and fork+exec loops in a VM guest
(Debian 6.1, AppArmor and BPF-LSM active) with 0, 10 and 100 rules, under AppArmor and
under BPF-LSM, against no enforcement at all. ratio = measured / baseline (1.05: 5 % slower).

This machine's kernel has neither LSM, so run() boots the `apparmor` guest of the VM suite
once (bench/guest.py) and runs `python -m bench.bench_apparmor --guest OUT` in it; the
guest writes its rows to OUT/bench_apparmor.json. The loops (bench/loops.c) are compiled on
the host; each run is pinned to a CPU. The guest emulates its CPU (TCG): absolute times mean little
there, ratios are what to read.

- AppArmor: the rules are loaded once per rule count; short runs alternate (ABBA) between an
  unconfined one (baseline: `aa_change_onexec("unconfined")` before its exec) and a confined
  one (attached to karmor-global as any new program is), and each pair's ratio is taken on
  its own. With 0 rules AppArmor has nothing to load, so both runs are unconfined: that row
  shows the noise floor of the method on this machine.
- BPF-LSM applies to every process, so it alternates in blocks: runs with nothing installed,
  then with the rule set installed (and removed after the block).
The rules are Block rules of every target kind on paths the loops never touch, so they cost
what looking them up costs, and nothing is denied.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from bench.guest import loops_binary

RESULT = "bench_apparmor.json"
RULE_COUNTS = (0, 10, 100)
N = {"open": 2_000, "exec": 4}  # iterations per run (TCG: ~0.1 s and ~0.3 s)
PAIRS = {"open": 40, "exec": 20}
BLOCKS = 4  # BPF-LSM: installs per rule count (PAIRS // BLOCKS runs each way per block)
BOOT_TIMEOUT_S = 2400


# On tmpfs in the guest, and created before an apply: BPF-LSM keys a rule by the directory the
# kernel resolves, so a rule under a directory that does not exist is pending, not in its maps.
RULE_ROOT = Path("/run/karmor-bench")


def rules_yaml(n: int) -> str:
    """n Block rules without fromSource (so they are in karmor-global), a quarter of each
    kind: file paths, recursive directories, patterns, process paths."""
    from tests.policytext import host_policy

    head = host_policy("bench", "  action: Block\n")
    files, dirs, pats, procs = [], [], [], []
    for i in range(n):
        [files, dirs, pats, procs][i % 4].append(i)
    body = "  file:\n"
    body += "    matchPaths:\n" + "".join(f"    - path: {RULE_ROOT}/f{i}\n" for i in files) if files else ""
    body += "    matchDirectories:\n" + "".join(
        f"    - dir: {RULE_ROOT}/d{i}/\n      recursive: true\n" for i in dirs) if dirs else ""
    body += "    matchPatterns:\n" + "".join(f"    - pattern: {RULE_ROOT}/p{i}/*.key\n" for i in pats) if pats else ""
    if procs:
        body += "  process:\n    matchPaths:\n" + "".join(f"    - path: {RULE_ROOT}/x{i}\n" for i in procs)
    return head + body


# --- inside the guest ----------------------------------------------------------------------


class Loops:
    def __init__(self, binary: Path, workdir: Path) -> None:
        self.binary = binary
        self.target = workdir / "target"
        self.target.write_text("x")

    def one(self, loop: str, unconfined: bool = False) -> float:
        """CPU ns per iteration of one short run on CPU 1 (loops prints wall and CPU time)."""
        argv = [str(self.binary), loop, str(N[loop])] + ([str(self.target)] if loop == "open" else [])
        proc = self._start(argv, unconfined, "1")
        stdout, _ = proc.communicate(timeout=600)
        if proc.returncode != 0:
            raise RuntimeError(f"{argv} failed with status {proc.returncode}")
        return float(stdout.split()[-1])

    def label(self, unconfined: bool = False) -> str:
        """The AppArmor label a run gets."""
        proc = self._start(["cat", "/proc/self/attr/apparmor/current"], unconfined, "0")
        return proc.communicate(timeout=60)[0].strip()

    @staticmethod
    def _start(argv: list[str], unconfined: bool, cpu: str) -> subprocess.Popen[str]:
        preexec: Callable[[], None] | None = None
        if unconfined:
            import LibAppArmor

            def preexec() -> None:
                if LibAppArmor.aa_change_onexec("unconfined") != 0:
                    os._exit(99)

        return subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, preexec_fn=preexec,
                                env={**os.environ, "LOOP_CPU": cpu})


def _ruleset(n: int):
    from karmor_host.policy import HostIdentity, compile_policies, load_text

    for i in range(n):
        (RULE_ROOT / f"d{i}").mkdir(parents=True, exist_ok=True)
    result = load_text(rules_yaml(n), "bench.yaml") if n else None
    policies = result.policies if result else ()
    return compile_policies(policies, HostIdentity.detect(), {})


def _row(name: str, base: list[float], measured: list[float], ratios: list[float], notes: str) -> dict:
    q = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else [ratios[0]] * 3
    return {"name": name, "baseline": round(statistics.median(base), 1),
            "measured": round(statistics.median(measured), 1),
            "ratio": round(statistics.median(ratios), 3),
            "notes": f"{notes}; ratios' interquartile range {q[0]:.2f}..{q[2]:.2f}"}


def _pairs(loops: Loops, loop: str):
    """AppArmor: many short runs, unconfined and confined in turn (ABBA, so neither always
    follows the other), each pair's ratio taken on its own: neighbours that come and go move
    both halves of a pair alike."""
    loops.one(loop, True), loops.one(loop)  # warm-up
    base, meas = [], []
    for i in range(PAIRS[loop]):
        if i % 2:
            m, b = loops.one(loop), loops.one(loop, True)
        else:
            b, m = loops.one(loop, True), loops.one(loop)
        base.append(b)
        meas.append(m)
    return base, meas, [m / b for b, m in zip(base, meas)]


def _apparmor_rows(loops: Loops, state: Path) -> list[dict]:
    from karmor_host.enforce.apparmor.backend import Backend
    from karmor_host.enforce.apparmor.enforcer import AppArmorEnforcer

    enf = AppArmorEnforcer(backend=Backend(state / "apparmor"))
    rows = []
    try:
        for n in RULE_COUNTS:
            enf.apply(_ruleset(n))
            profiles = ",".join(enf.plan.names) if enf.plan else "none"
            labels = f"runs labelled {loops.label(unconfined=True)} / {loops.label()}"
            for loop in ("open", "exec"):
                base, meas, ratios = _pairs(loops, loop)
                rows.append(_row(f"apparmor {loop} {n} rules", base, meas, ratios,
                                 f"CPU ns/iteration, median of {PAIRS[loop]} pairs; profiles: {profiles or 'none'}; {labels}"))
    finally:
        enf.remove()
    return rows


def _bpflsm_rows(loops: Loops) -> list[dict]:
    from karmor_host.enforce import registry

    if "bpflsm" not in registry.IMPLEMENTED:
        return [{"name": "bpflsm", "baseline": "", "measured": "", "ratio": "",
                 "notes": "no BPF-LSM enforcer in this build"}]
    from karmor_host.paths import default_paths

    rows = []
    for n in RULE_COUNTS:
        rs = _ruleset(n)
        runs: dict[tuple[str, bool], list[float]] = {}
        ratios: dict[str, list[float]] = {"open": [], "exec": []}
        held = "nothing installed"
        for _ in range(BLOCKS):  # a block without, then one with the rules installed
            block: dict[tuple[str, bool], list[float]] = {}
            for installed in (False, True):
                enf = registry.create("bpflsm", default_paths()) if installed else None
                try:
                    if enf is not None:
                        enf.apply(rs)
                        plan = getattr(enf, "plan", None)  # what the kernel maps hold: no rule left pending
                        held = (f"{plan.entries()} map entries, {len(plan.pending)} paths pending" if plan
                                else "nothing installed")
                    for loop in ("open", "exec"):
                        for _ in range(PAIRS[loop] // BLOCKS):
                            block.setdefault((loop, installed), []).append(loops.one(loop))
                finally:
                    if enf is not None:
                        enf.remove()
                        enf.close()
            for key, values in block.items():
                runs.setdefault(key, []).extend(values)
            for loop in ratios:
                ratios[loop].append(statistics.median(block[(loop, True)]) / statistics.median(block[(loop, False)]))
        for loop in ("open", "exec"):
            rows.append(_row(f"bpflsm {loop} {n} rules", runs[(loop, False)], runs[(loop, True)], ratios[loop],
                             f"CPU ns/iteration; {BLOCKS} blocks of {PAIRS[loop] // BLOCKS} runs, without then "
                             f"with the rules installed ({held}); ratio: median of the blocks' ratios"))
    return rows


def guest_main(out: Path) -> int:
    work = Path(tempfile.mkdtemp(prefix="karmor-bench-"))
    loops = Loops(loops_binary(out), work)
    rows = _apparmor_rows(loops, work)
    try:
        rows += _bpflsm_rows(loops)
    except Exception as exc:  # noqa: BLE001 - the AppArmor rows are still worth reporting
        rows.append({"name": "bpflsm", "baseline": "", "measured": "", "ratio": "", "notes": f"failed: {exc!r}"})
    (out / RESULT).write_text(json.dumps(rows))
    return 0


# --- on the host ---------------------------------------------------------------------------


def run() -> list[dict]:
    from bench import guest

    res = guest.run("bench_apparmor", RESULT, "apparmor", BOOT_TIMEOUT_S)
    return res.data + [{"name": "guest run", "baseline": "", "measured": round(res.seconds, 1), "ratio": "",
                        "notes": f"s wall, boot included; work dir {res.workdir}"}]


def main(argv: list[str]) -> int:
    from bench import guest

    return guest.main(argv, "bench_apparmor", __doc__, guest_main, run)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

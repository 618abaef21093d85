"""What BPF-LSM enforcement costs: fork+exec and open+close loops with 0, 10, 100 and 1 000
rules against the same loops with no agent, inside the QEMU guest (this machine's kernel
refuses LSM programs; the guest is emulated, so only ratios mean anything).

`python -m bench lsm` boots the `apparmor` guest once (bench/guest.py) and runs
`python -m bench.bench_lsm --guest DIR` in it, with the loops of bench/loops.c compiled on the
host. There, lsm.bpf.o is loaded once per rule count and its links are attached and detached
between short runs, so "no agent" (A) and "agent" (B) alternate every fraction of a second, in
ABBA order; a ratio is the median of the pairs' ratios (measured / baseline: 1.02 is 2 %
slower). Loops time CPU (pinned to CPU 1), so waiting for a CPU does not count.

On an emulated CPU on a shared machine those A/B ratios scatter widely, so each row comes with
a second figure that does not depend on the scheduler: the programs' own run time per
iteration (the kernel's bpf_stats, summed over the programs of lsm.bpf.o) over the loop's time
without them, taken in extra runs with kernel.bpf_stats_enabled on (it is off during the A/B
runs: the accounting has a cost of its own). It leaves out the trampoline's entry and exit
around each call (tens of ns on real hardware) and counts the hooks run while the loop
process itself starts (a few calls per run).

The rules never match the loops' own program and file, so every hook runs its whole search
and lets the access through: exact files, recursive directories (so each open walks up its
directories), programs, and file rules scoped to /usr/bin/busybox (fromSource; the loops run
a copy of it, which is another file) on directories the loops never touch.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.guest import loops_binary

RULE_COUNTS = (0, 10, 100, 1000)
N = {"exec": 40, "open": 5000}  # iterations per run: ~0.1-0.5 s under TCG
PAIRS = 20  # A/B pairs per rule count and loop
STATS_EVERY = 3  # one run with bpf_stats on after every third pair
RULE_ROOT = Path("/run/karmor-bench")
PIN_DIR = Path("/sys/fs/bpf/karmor-bench/lsm")
BPF_STATS = Path("/proc/sys/kernel/bpf_stats_enabled")
RESULT = "bench-lsm.json"


# --- inside the guest ------------------------------------------------------------------------


def ruleset_text(count: int) -> str:
    """`count` rules that never match the loops: 40 % exact files, 20 % recursive directories,
    20 % programs, 20 % file rules scoped to busybox."""
    from tests.policytext import host_policy

    docs = []
    for i in range(count):
        d = RULE_ROOT / f"d{i}"
        kind = i % 5
        if kind in (0, 1):
            body = f"  file:\n    matchPaths:\n    - path: {d}/file\n  action: Block\n"
        elif kind == 2:
            body = f"  file:\n    matchDirectories:\n    - dir: {d}/\n      recursive: true\n  action: Block\n"
        elif kind == 3:
            body = f"  process:\n    matchPaths:\n    - path: {d}/prog\n  action: Block\n"
        else:
            body = (f"  file:\n    matchPaths:\n    - path: {d}/file\n      fromSource:\n"
                    f"      - path: /usr/bin/busybox\n  action: Audit\n")
        docs.append(host_policy(f"bench-{i}", body))
    return "---\n".join(docs)


def _ruleset(count: int):
    """The rule set, its directories created first (so no rule is pending)."""
    from karmor_host.policy import HostIdentity, compile_policies, load_text
    from karmor_host.policy.ruleset import RuleSet

    for i in range(count):
        (RULE_ROOT / f"d{i}").mkdir(parents=True, exist_ok=True)
    if not count:
        return RuleSet()
    result = load_text(ruleset_text(count), "bench.yaml")
    if not result.valid:
        raise RuntimeError("bench rules invalid: " + "; ".join(str(p) for p in result.problems[:3]))
    return compile_policies(result.policies, HostIdentity.detect())


class Loops:
    """bench/loops.c and its targets, all copied to tmpfs: a static busybox to exec (run as
    `true`: no loader, no 9p reads) and a file to open."""

    def __init__(self, binary: Path, workdir: Path) -> None:
        self.binary = workdir / "loops"
        shutil.copy2(binary, self.binary)
        self.prog = workdir / "busybox"
        shutil.copy2("/usr/bin/busybox", self.prog)
        self.file = workdir / "target"
        self.file.write_text("x")
        self.env = {**os.environ, "LOOP_CPU": "1"}

    def ns(self, mode: str) -> float:
        """CPU ns per iteration (the loop's own and its children's) of one run."""
        target = self.prog if mode == "exec" else self.file
        out = subprocess.run([str(self.binary), mode, str(N[mode]), str(target)], check=True,
                             capture_output=True, text=True, env=self.env, timeout=600)
        return float(out.stdout.split()[1])  # loops prints "wall_ns cpu_ns"


def bpf_runtime(backend) -> tuple[int, int]:
    """(run_time_ns, run_cnt) summed over lsm.bpf.o's programs (counted while
    kernel.bpf_stats_enabled is 1)."""
    ns = cnt = 0
    for prog in backend.obj.programs.values():
        counters = prog.info_counters()
        ns += counters.get("run_time_ns", 0)
        cnt += counters.get("run_cnt", 0)
    return ns, cnt


def _attached(backend, on: bool) -> None:
    """Attach (on) or detach lsm.bpf.o's programs; its maps, and so the rules, stay."""
    if on and not backend.links:
        backend.links = {p.name: p.attach() for p in backend.obj.programs.values()}
    elif not on and backend.links:
        for link in backend.links.values():
            link.destroy()
        backend.links = {}


def _spread(ratios: list[float]) -> str:
    q = statistics.quantiles(ratios, n=4)
    return f"middle half {q[0]:.3f}..{q[2]:.3f}, all {min(ratios):.3f}..{max(ratios):.3f}"


def _measure(loops: Loops, backend, mode: str) -> dict:
    """PAIRS A/B pairs (ABBA order), plus a run with bpf_stats on after every STATS_EVERY-th."""
    base, meas, ratios, prog_ns, calls = [], [], [], [], []
    _attached(backend, True)
    loops.ns(mode)  # warm-up: page cache, the programs' first runs
    for i in range(PAIRS):
        if i % 2:
            _attached(backend, True)
            m = loops.ns(mode)
            _attached(backend, False)
            b = loops.ns(mode)
        else:
            _attached(backend, False)
            b = loops.ns(mode)
            _attached(backend, True)
            m = loops.ns(mode)
        base.append(b)
        meas.append(m)
        ratios.append(m / b)
        if i % STATS_EVERY == STATS_EVERY - 1:
            _attached(backend, True)
            BPF_STATS.write_text("1")
            try:
                ns0, cnt0 = bpf_runtime(backend)
                loops.ns(mode)
                ns1, cnt1 = bpf_runtime(backend)
            finally:
                BPF_STATS.write_text("0")
            prog_ns.append((ns1 - ns0) / N[mode])
            calls.append((cnt1 - cnt0) / N[mode])
    _attached(backend, True)
    return {"base": base, "meas": meas, "ratios": ratios, "prog_ns": prog_ns, "calls": calls}


def guest_main(out: Path) -> int:
    """Runs in the guest: every rule count, every loop; writes out/bench-lsm.json."""
    from karmor_host.enforce.bpflsm.backend import OBJECT_NAME, LsmBackend, remove_pins
    from karmor_host.enforce.bpflsm.enforcer import BpfLsmEnforcer
    from karmor_host.enforce.bpflsm.plan import Protection
    from karmor_host.paths import default_bpf_object_dir

    BPF_STATS.write_text("0")
    work = Path(tempfile.mkdtemp(prefix="bench-lsm-", dir="/run"))  # tmpfs
    loops = Loops(loops_binary(out), work)
    rows = []
    for count in RULE_COUNTS:
        remove_pins(PIN_DIR)
        t0 = time.monotonic()
        ruleset = _ruleset(count)
        compile_s = time.monotonic() - t0
        backend = LsmBackend(PIN_DIR, default_bpf_object_dir() / OBJECT_NAME)
        enf = BpfLsmEnforcer(backend=backend, protection=Protection())
        try:
            report = enf.apply(ruleset)  # plan (paths resolved in the kernel) + bank swap + pin
            remove_pins(PIN_DIR)  # our own links alone hold the programs now: detaching works
            setup = (f"{len(report.rules)} rules, {enf.plan.entries() if enf.plan else 0} map entries, enforcer "
                     f"apply {report.seconds * 1000:.0f} ms, compiling the policies {compile_s * 1000:.0f} ms")
            for mode in ("exec", "open"):
                started = time.monotonic()
                m = _measure(loops, backend, mode)
                b_med, prog_med = statistics.median(m["base"]), statistics.median(m["prog_ns"])
                call_med = statistics.median(m["calls"])
                print(f"bench-lsm: {mode} {count} rules done in {time.monotonic() - started:.0f} s", flush=True)
                rows.append({
                    "name": f"{mode}, {count} rules, A/B loop", "baseline": round(b_med, 1),
                    "measured": round(statistics.median(m["meas"]), 1),
                    "ratio": round(statistics.median(m["ratios"]), 4),
                    "notes": f"CPU ns/iteration, agent off vs on, median of {PAIRS} pairs' ratios; "
                             f"{_spread(m['ratios'])}; {setup}",
                    "loop": mode, "rules": count, "spread": _spread(m["ratios"]),
                })
                rows.append({
                    "name": f"{mode}, {count} rules, BPF time", "baseline": round(b_med, 1),
                    "measured": round(b_med + prog_med, 1), "ratio": round((b_med + prog_med) / b_med, 4),
                    "notes": f"the programs' own run time (bpf_stats) per iteration, median of {len(m['prog_ns'])} "
                             f"runs: {prog_med:.0f} ns in {call_med:.2f} hook calls "
                             f"({prog_med / call_med if call_med else 0:.0f} ns per call), "
                             f"on the loop's {b_med:.0f} ns",
                    "loop": mode, "rules": count, "prog_ns": round(prog_med, 1), "calls": round(call_med, 2),
                })
        finally:
            remove_pins(PIN_DIR)
            enf.close()
        # after every rule count, so a run cut short still leaves what it measured
        done = count == RULE_COUNTS[-1]
        (out / RESULT).write_text(json.dumps({"kernel": os.uname().release, "complete": done, "rows": rows}, indent=2))
    return 0


# --- on the host -----------------------------------------------------------------------------


def run() -> list[dict]:
    """The bench runner's entry point: boot the guest, run guest_main there, return its rows."""
    from bench import guest

    load_before = os.getloadavg()
    res = guest.run("bench_lsm", RESULT, "apparmor")
    load_after = os.getloadavg()
    rows = res.data["rows"]
    for row in rows:
        row["notes"] += f"; kernel {res.data['kernel']}"
    if not res.data["complete"]:
        rows.append({"name": "INCOMPLETE", "baseline": "", "measured": "", "ratio": "",
                     "notes": f"the guest stopped after {rows[-1]['rules'] if rows else 'no'} rules (console.log)"})
    loads = " / ".join(f"{a:.2f}, {b:.2f}, {c:.2f}" for a, b, c in (load_before, load_after))
    rows.append({"name": "guest run", "baseline": "", "measured": round(res.seconds, 1), "ratio": "",
                 "notes": f"s wall, boot included; host load average (1, 5, 15 min) before / after: {loads}; "
                          f"work dir {res.workdir}"})
    return rows


def main(argv: list[str]) -> int:
    from bench import guest

    return guest.main(argv, "bench_lsm", __doc__, guest_main, run)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

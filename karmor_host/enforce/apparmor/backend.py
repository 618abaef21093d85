"""apparmor_parser and securityfs: check, load, list and remove our profiles.

Every command is an argument list; nothing goes through a shell. Profiles are written to a
private directory (state_dir, by default /var/lib/karmor/apparmor), never to /etc/apparmor.d,
so nothing of ours is loaded at boot before the agent runs. The policy cache is not used
(`-K`): the agent compiles at most once per apply and a stale cache could load old rules.

Load = write the file, `apparmor_parser -Q` (parse and compile, no kernel load) on exactly that
file, and only if that passes `apparmor_parser -r` (load or replace each profile; tasks confined
by a replaced profile move to the new version at once). A syntax error can therefore never reach
the kernel. Removal writes a file of empty profiles with the names to remove and runs
`apparmor_parser -R` on it (the parser removes by name); tasks confined by a removed profile
become unconfined.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from karmor_host.enforce.apparmor.render import ABI, GLOBAL, LOADER_PREFIX, PREFIX
from karmor_host.errors import EnforcerError

SECURITYFS = Path("/sys/kernel/security/apparmor")
PROFILE_FILE = "profiles.apparmor"
STATE_FILE = "state.json"
PARSER_TIMEOUT_S = 300  # a large rule set under QEMU's emulation takes a while to compile
_SBIN = "/usr/sbin:/sbin:/usr/bin:/bin"

Runner = Callable[[Sequence[str]], subprocess.CompletedProcess]


def find_parser() -> str:
    found = shutil.which("apparmor_parser", path=_SBIN)
    if not found:
        raise EnforcerError("apparmor_parser not found (Debian package apparmor)")
    return found


def run(cmd: Sequence[str]) -> subprocess.CompletedProcess:
    return subprocess.run(list(cmd), stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=PARSER_TIMEOUT_S, check=False)


def is_ours(name: str) -> bool:
    return name == GLOBAL or name.startswith(PREFIX + "-")


def parse_profiles_list(text: str) -> dict[str, str]:
    """securityfs `profiles`: one `name (mode)` per line -> {name: mode}."""
    out = {}
    for line in text.splitlines():
        name, sep, mode = line.rstrip().rpartition(" (")
        if sep and mode.endswith(")"):
            out[name] = mode[:-1]
    return out


def removal_text(names: Iterable[str]) -> str:
    """A policy file that names profiles for `apparmor_parser -R` (which removes by name)."""
    body = "".join(f'profile "{n.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}" {{\n}}\n'
                   for n in sorted(names))
    return f"{ABI}\n{body}"


def _first_lines(text: str, limit: int = 20) -> str:
    lines = [line for line in text.strip().splitlines() if "Cache read/write disabled" not in line]
    more = f"\n... ({len(lines) - limit} more lines)" if len(lines) > limit else ""
    return "\n".join(lines[:limit]) + more


@dataclass
class Backend:
    state_dir: Path
    parser: str = ""
    securityfs: Path = SECURITYFS
    runner: Runner = run
    runs: deque[tuple[int, int]] = field(default_factory=lambda: deque(maxlen=64))  # our parser runs (ns)

    def __post_init__(self) -> None:
        self.parser = self.parser or find_parser()

    # --- files ---------------------------------------------------------------------------

    def _prepare(self, text: str, name: str) -> Path:
        self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = self.state_dir / name
        tmp = path.with_suffix(".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
        return path

    def _parser(self, args: Sequence[str], what: str) -> subprocess.CompletedProcess:
        cmd = [self.parser, *args]
        start = time.time_ns()
        try:
            proc = self.runner(cmd)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise EnforcerError(f"AppArmor: {what}: {' '.join(cmd)}: {exc}") from None
        finally:
            self.runs.append((start, time.time_ns()))
        if proc.returncode != 0:
            raise EnforcerError(
                f"AppArmor: {what} failed (apparmor_parser exit {proc.returncode}):\n{_first_lines(proc.stderr)}")
        return proc

    # --- the steps -----------------------------------------------------------------------

    def check(self, text: str) -> Path:
        """Write `text` as the next profile file and compile it without loading anything."""
        path = self._prepare(text, "next-" + PROFILE_FILE)
        self._parser(["-Q", "-K", str(path)], "checking the generated profiles")
        return path

    def load(self, text: str) -> Path:
        """Check, then load or replace every profile in `text` (one file, one parser run)."""
        path = self.check(text)
        self._parser(["-r", "-K", str(path)], "loading the profiles")
        current = self.state_dir / PROFILE_FILE
        os.replace(path, current)
        return current

    def unload(self, names: Iterable[str]) -> list[str]:
        """Remove the named profiles that are loaded; returns the names removed.

        The parser runs confined by a profile of ours (it was started after they were loaded):
        the loader profile when there is one, else karmor-global. Once the profile confining
        it is gone, the kernel refuses it the removals that follow ("not privileged for target
        profile"), and within one run the parser does not keep the file's order. So removal
        goes in runs: the source profiles, then karmor-global (its whitelist, if any, never
        held the loader), then the loader profile."""
        loaded = self.loaded()
        gone = sorted(n for n in set(names) if n in loaded)
        stages = (
            [n for n in gone if n != GLOBAL and not n.startswith(LOADER_PREFIX)],
            [n for n in gone if n == GLOBAL],
            [n for n in gone if n.startswith(LOADER_PREFIX)],
        )
        for batch in stages:
            if not batch:
                continue
            path = self._prepare(removal_text(batch), "remove.apparmor")
            try:
                self._parser(["-R", "-K", str(path)], f"removing {', '.join(batch)}")
            finally:
                path.unlink(missing_ok=True)
        return gone

    def loaded(self) -> dict[str, str]:
        """Every loaded profile, {name: mode}."""
        try:
            text = (self.securityfs / "profiles").read_text()
        except OSError as exc:
            raise EnforcerError(f"AppArmor: cannot list loaded profiles: {exc}") from None
        return parse_profiles_list(text)

    def ran_at(self, ts_ns: int, slack_ns: int = 1_000_000_000) -> bool:
        """Whether one of our parser runs was going on at `ts_ns` (an audit record's time,
        which has millisecond precision)."""
        return any(start - slack_ns <= ts_ns <= end + slack_ns for start, end in self.runs)

    def ours(self) -> dict[str, str]:
        return {n: m for n, m in self.loaded().items() if is_ours(n)}

    # --- state ---------------------------------------------------------------------------

    def write_state(self, names: Sequence[str], rules: int) -> None:
        doc = {"profiles": list(names), "rules": rules, "at": time.time()}
        self._prepare(json.dumps(doc, indent=2) + "\n", STATE_FILE)

    def read_state(self) -> dict:
        try:
            return json.loads((self.state_dir / STATE_FILE).read_text())
        except (OSError, ValueError):
            return {}

    def clear_files(self) -> None:
        for name in (PROFILE_FILE, STATE_FILE, "next-" + PROFILE_FILE):
            (self.state_dir / name).unlink(missing_ok=True)

"""The SELinux tools and files behind the enforcer: semodule, secilc, labels, state.

- The module is one CIL file, `<state dir>/karmor.cil`, installed with `semodule -i` (which
  replaces an installed `karmor` atomically) and removed with `semodule -r karmor`. `root`
  gives every semodule call `-p ROOT -n`: a private copy of the store, nothing reloaded (tests,
  building a store for another machine).
- Before installing, `check` compiles the module with secilc together with every module of the
  store (the one being replaced left out), with the store's own neverallow setting: a module
  that would not build is refused before anything changes.
- Labels are set with python3-selinux. The original context of every file karmor relabels is
  written to the state file *before* the file is touched, so a crash never loses it; removing
  restores the originals and only then removes the module, so no file is ever left in a type
  that no loaded policy defines.
"""

from __future__ import annotations

import bz2
import errno
import json
import os
import subprocess
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from karmor_host.enforce.selinux.inventory import inherited
from karmor_host.enforce.selinux.policyfacts import OWN_PREFIX, selinux_type
from karmor_host.enforce.selinux.render import MAX_TREE, MODULE, Label
from karmor_host.errors import EnforcerError

STATE_VERSION = 1
_NOISE = ("not in password file",)  # libsemanage complains about refpolicy's sample users


@dataclass
class State:
    """What karmor installed: the module's checksum and every label it set, with the original."""

    module: str = ""  # sha256 of the installed CIL ("" = none installed)
    labels: dict[str, dict[str, object]] = field(default_factory=dict)  # path -> original, applied, dev, ino
    at: float = 0.0

    def originals(self) -> dict[str, str]:
        return {p: str(v["original"]) for p, v in self.labels.items()}


@dataclass(frozen=True)
class LabelResult:
    set: tuple[str, ...] = ()
    restored: tuple[str, ...] = ()
    failed: tuple[tuple[str, str], ...] = ()  # (path, why)


class Backend:
    def __init__(self, state_dir: Path, root: Path | None = None, timeout: float = 600.0) -> None:
        self.state_dir = state_dir
        self.root = root
        self.timeout = timeout
        self._selinux = None

    # --- paths -------------------------------------------------------------------------------
    @property
    def module_file(self) -> Path:
        return self.state_dir / f"{MODULE}.cil"

    @property
    def state_file(self) -> Path:
        return self.state_dir / "state.json"

    def store(self) -> Path:
        """The active module store of the configured policy type."""
        root = self.root or Path("/")
        name = selinux_type(root)
        if not name:
            raise EnforcerError(f"no SELinux policy configured ({root / 'etc/selinux/config'})")
        return root / "var/lib/selinux" / name / "active"

    # --- tools -------------------------------------------------------------------------------
    def _run(self, args: Sequence[str], what: str) -> str:
        try:
            proc = subprocess.run(list(args), capture_output=True, text=True, timeout=self.timeout, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise EnforcerError(f"{what}: {args[0]}: {exc}") from exc
        err = "\n".join(line for line in proc.stderr.splitlines() if not any(n in line for n in _NOISE))
        if proc.returncode != 0:
            raise EnforcerError(f"{what} failed (exit {proc.returncode}): {err.strip() or proc.stdout.strip()}")
        return proc.stdout

    def semodule(self, *args: str, what: str = "semodule") -> str:
        cmd = ["semodule"]
        if self.root is not None:
            cmd += ["-p", str(self.root), "-n"]
        return self._run([*cmd, *args], what)

    def modules(self) -> list[str]:
        return sorted(line.split()[0] for line in self.semodule("-l", what="semodule -l").splitlines() if line.strip())

    def installed(self) -> bool:
        return MODULE in self.modules()

    def check(self, cil: str) -> None:
        """Compile `cil` with the store's other modules, as semodule would; raise if it fails."""
        store = self.store()
        with tempfile.TemporaryDirectory(prefix="karmor-secilc-") as tmp:
            files = []
            for name, path in sorted(_store_modules(store).items()):
                if name == MODULE:
                    continue
                out = Path(tmp, f"{name}.cil")
                data = path.read_bytes()
                out.write_bytes(bz2.decompress(data) if data[:3] == b"BZh" else data)
                files.append(str(out))
            mine = Path(tmp, f"{MODULE}.cil")
            mine.write_text(cil)
            cmd = ["secilc", "-o", os.devnull, "-f", os.devnull]
            if not _expand_check(self.root or Path("/")):
                cmd.append("-N")  # semodule does not check neverallow rules on this system either
            self._run([*cmd, *files, str(mine)], f"compiling module {MODULE} against the installed policy")

    def install(self, cil: str) -> None:
        """Install (or atomically replace) the module."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.module_file.with_suffix(".tmp")
        tmp.write_text(cil)
        os.replace(tmp, self.module_file)
        self.semodule("-i", str(self.module_file), what=f"semodule -i {MODULE}")

    def uninstall(self) -> bool:
        """Remove the module if it is installed; True when it was."""
        if not self.installed():
            return False
        self.semodule("-r", MODULE, what=f"semodule -r {MODULE}")
        return True

    # --- labels ------------------------------------------------------------------------------
    def _se(self):
        if self._selinux is None:
            import selinux  # noqa: PLC0415 - Debian's python3-selinux

            self._selinux = selinux
        return self._selinux

    def current(self, path: str) -> str:
        try:
            return self._se().lgetfilecon_raw(path)[1] or ""
        except OSError:
            return ""

    def set_labels(self, labels: Iterable[Label], state: State) -> LabelResult:
        """Record the originals, then relabel. Files that vanished or refuse are reported."""
        labels = list(labels)
        for lab in labels:
            entry = state.labels.get(lab.path)
            state.labels[lab.path] = {"original": entry["original"] if entry else lab.original,
                                      "applied": lab.context, "dev": lab.dev, "ino": lab.ino}
        self.write_state(state)
        done, failed = [], []
        for lab in labels:
            why = self._set(lab.path, lab.context, lab.ino)
            if why:
                failed.append((lab.path, why))
                if self.current(lab.path) != lab.context:
                    state.labels.pop(lab.path, None)  # nothing of ours to restore there
            else:
                done.append(lab.path)
        self.write_state(state)
        return LabelResult(set=tuple(done), failed=tuple(failed))

    def restore(self, paths: Iterable[str], state: State) -> LabelResult:
        """Put the recorded original contexts back (only where karmor's label is still there)."""
        done, failed = [], []
        for path in sorted(paths):
            entry = state.labels.get(path)
            if entry is None:
                continue
            cur = self.current(path)
            if cur and cur != entry["applied"]:
                state.labels.pop(path)  # relabelled by someone else since: leave it alone
                continue
            why = self._set(path, str(entry["original"]), int(entry.get("ino", 0) or 0)) if cur else ""
            if why and why != "gone":
                failed.append((path, why))
                continue
            state.labels.pop(path)
            done.append(path)
        self.write_state(state)
        return LabelResult(restored=tuple(done), failed=tuple(failed))

    def sweep(self, dirs: Iterable[str], state: State, skip: Iterable[str] = (), limit: int = MAX_TREE) -> LabelResult:
        """Files created inside relabelled directories took the directory's karmor type and are in
        no record: give them what they would have had (the directory's original type) before
        that type goes. `skip`: paths the next plan labels itself."""
        originals = state.originals()
        skipped = set(skip)
        done, failed = [], []
        for top in sorted(dirs):
            if not os.path.isdir(top) or os.path.islink(top):
                continue
            for seen, (cur_dir, subdirs, files) in enumerate(os.walk(top)):
                if seen > limit:
                    break
                for name in [*subdirs, *files]:
                    path = os.path.join(cur_dir, name)
                    if path in state.labels or path in skipped:
                        continue
                    cur = self.current(path)
                    if not _type(cur).startswith(OWN_PREFIX):
                        continue
                    ctx, _ = inherited(path, cur, originals)
                    why = self._set(path, ctx, 0) if ctx else "no original known"
                    (failed.append((path, why)) if why else done.append(path))
        return LabelResult(restored=tuple(done), failed=tuple(failed))

    def _set(self, path: str, context: str, ino: int) -> str:
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return "gone"
        except OSError as exc:
            return exc.strerror or str(exc)
        if ino and st.st_ino != ino:
            return "replaced by another file since it was scanned"
        try:
            self._se().lsetfilecon_raw(path, context)
        except OSError as exc:
            code = exc.errno or 0
            return f"{errno.errorcode.get(code, code)}: {exc.strerror or exc}"
        return ""

    # --- state -------------------------------------------------------------------------------
    def read_state(self) -> State:
        try:
            doc = json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return State()
        if doc.get("version") != STATE_VERSION:
            return State()
        return State(module=doc.get("module", ""), labels=dict(doc.get("labels", {})), at=doc.get("at", 0.0))

    def write_state(self, state: State) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        state.at = time.time()
        doc = {"version": STATE_VERSION, "module": state.module, "labels": state.labels, "at": state.at}
        tmp = self.state_file.with_suffix(".tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(doc, fh, indent=1, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.state_file)

    def clear_files(self) -> None:
        for path in (self.module_file, self.state_file):
            path.unlink(missing_ok=True)


def _type(context: str) -> str:
    parts = context.split(":")
    return parts[2] if len(parts) >= 3 else ""


def _store_modules(store: Path) -> dict[str, Path]:
    """Enabled modules of a store: name -> the CIL of its highest priority."""
    disabled = {p.name for p in (store / "modules/disabled").glob("*")} if (store / "modules/disabled").is_dir() else set()
    best: dict[str, tuple[int, Path]] = {}
    for prio in (store / "modules").iterdir():
        if not prio.name.isdigit():
            continue
        for mod in prio.iterdir():
            cil = mod / "cil"
            if cil.is_file() and mod.name not in disabled and int(prio.name) >= best.get(mod.name, (-1, cil))[0]:
                best[mod.name] = (int(prio.name), cil)
    return {name: path for name, (_, path) in best.items()}


def _expand_check(root: Path) -> bool:
    """semanage.conf's expand-check: whether semodule checks neverallow rules."""
    try:
        text = (root / "etc/selinux/semanage.conf").read_text()
    except OSError:
        return False
    for line in text.splitlines():
        key, sep, value = line.split("#", 1)[0].partition("=")
        if sep and key.strip() == "expand-check":
            return value.strip() not in ("0", "false")
    return False

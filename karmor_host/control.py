"""The agent's published state: a root-only JSON file under /run/karmor, written atomically.

A file rather than a socket: `karmor-host status` reads it without ever talking to (or
slowing) the agent, and the last state survives a crashed agent for the post-mortem; the
reader checks that the writing pid is still alive.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def write_status(path: Path, doc: dict[str, Any]) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    fd, tmp = tempfile.mkstemp(prefix=".status.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(doc, fh, indent=1, sort_keys=True, default=str)
            fh.write("\n")
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def read_status(path: Path) -> tuple[dict[str, Any] | None, str]:
    """(document, state) where state is 'running', 'stale' (agent gone) or a reason for None."""
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        return None, f"no status at {path}: is karmor-host running?"
    except PermissionError:
        return None, f"cannot read {path}: run as root"
    except (OSError, ValueError) as exc:
        return None, f"cannot read {path}: {exc}"
    pid = int(doc.get("pid", 0))
    try:
        os.kill(pid, 0)
        alive = pid > 0
    except ProcessLookupError:
        alive = False
    except PermissionError:
        alive = True
    return doc, "running" if alive else "stale"

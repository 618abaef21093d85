"""The guest itself: the LSMs the enforcers need are active, the probe sees them, journald works.

Runs inside the VM guest (tests/vm/guest/run-guest.sh), as root, on Debian's kernel.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
KARMOR = REPO / ".venv" / "bin" / "karmor-host"


@pytest.mark.vm_config("apparmor")
def test_apparmor_and_bpf_lsm_are_active():
    lsms = Path("/sys/kernel/security/lsm").read_text().strip().split(",")
    assert "apparmor" in lsms and "bpf" in lsms, f"active LSMs: {lsms}"
    assert lsms.index("apparmor") < lsms.index("bpf")


@pytest.mark.vm_config("apparmor")
def test_probe_finds_bpflsm_loadable_and_apparmor_active():
    proc = subprocess.run([str(KARMOR), "probe", "--json"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"karmor-host probe failed:\n{proc.stdout}\n{proc.stderr}"
    doc = json.loads(proc.stdout)
    assert doc["bpflsm"]["usable"] is True, doc["bpflsm"]
    assert "loaded" in doc["bpflsm"]["detail"], doc["bpflsm"]
    assert doc["apparmor"]["usable"] is True, doc["apparmor"]
    assert doc["selinux"]["usable"] is False, doc["selinux"]
    auto = doc["auto"]
    if "bpflsm" in doc["implemented"]:
        assert auto["enforcer"] == "bpflsm", auto
    else:
        # Until the BPF-LSM enforcer ships, auto says it saw BPF-LSM usable and passed it over.
        assert "bpflsm usable but not in this build" in auto["reason"], auto


def test_standalone_journald_records_and_returns_messages():
    tag = "karmor-vmtest"
    marker = f"hi-{uuid.uuid4().hex}"
    subprocess.run(["systemd-cat", "-t", tag, "echo", marker], check=True, timeout=30)
    found = ""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        found = subprocess.run(
            ["journalctl", "--no-pager", "-t", tag, "-o", "cat"], capture_output=True, text=True, timeout=30
        ).stdout
        if marker in found:
            break
        time.sleep(0.2)
    assert marker in found, f"journalctl -t {tag} returned: {found!r}"

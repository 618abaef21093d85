"""`karmor-host probe` on this machine's kernel: each fact checked against the kernel itself."""

import json
import os
import subprocess
from pathlib import Path

import pytest

from karmor_host.kernel.probe import probe
from karmor_host.paths import default_bpf_object_dir

pytestmark = pytest.mark.kernel
KARMOR = str(Path(__file__).resolve().parents[2] / ".venv" / "bin" / "karmor-host")


@pytest.fixture(scope="module")
def facts():
    assert os.geteuid() == 0, "kernel tests run as root"
    return probe(default_bpf_object_dir())


def test_facts_match_the_kernel(facts):
    assert facts.kernel == os.uname().release
    assert facts.btf == Path("/sys/kernel/btf/vmlinux").is_file()
    # the probe mounts securityfs if needed, so the LSM list is readable afterwards
    assert facts.lsms == tuple(Path("/sys/kernel/security/lsm").read_text().strip().split(","))
    assert facts.apparmor.usable == ("apparmor" in facts.lsms)
    assert facts.selinux.usable == ("selinux" in facts.lsms and Path("/sys/fs/selinux/enforce").exists())


def test_bpflsm_verdict_comes_from_a_real_load(facts):
    """Where `bpf` is listed but the kernel is locked down, only a load attempt tells the truth."""
    assert (default_bpf_object_dir() / "lsm_probe.bpf.o").is_file(), "make bpf builds the probe object"
    if "bpf" in facts.lsms:
        assert "cannot test" not in facts.bpflsm.detail
        if not facts.bpflsm.usable:
            assert "loading an LSM program failed" in facts.bpflsm.detail


def test_cli_reports_this_machine_and_picks_none():
    """These CI machines: BTF yes, BPF-LSM refused, no AppArmor, no SELinux => enforcer none."""
    out = subprocess.run([KARMOR, "probe", "--json"], capture_output=True, text=True, check=True).stdout
    doc = json.loads(out)
    if doc["bpflsm"]["usable"] or doc["apparmor"]["usable"] or doc["selinux"]["usable"]:
        pytest.fail(f"this test describes the locked-down CI kernel; got {doc}")
    assert doc["btf"] is True
    assert doc["auto"]["enforcer"] == "none"
    reason = doc["auto"]["reason"]
    assert "bpflsm" in reason and "apparmor" in reason and "selinux" in reason
    text = subprocess.run([KARMOR, "probe"], capture_output=True, text=True, check=True).stdout
    assert "BTF" in text and "yes" in text.split("BTF", 1)[1].splitlines()[0]
    assert "not loadable" in text
    assert "absent" in text.split("AppArmor", 1)[1].splitlines()[0]
    assert "not enabled" in text.split("SELinux", 1)[1].splitlines()[0]
    assert "auto" in text and "none" in text.split("auto", 1)[1]

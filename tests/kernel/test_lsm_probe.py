"""bpf/probe/lsm_probe.bpf.c and try_load(): what `karmor-host probe` relies on."""

from __future__ import annotations

import errno

import pytest
from structlog.testing import capture_logs

from karmor_host.kernel.bpfobj import try_load
from karmor_host.paths import default_bpf_object_dir

pytestmark = pytest.mark.kernel


def test_this_kernel_refuses_lsm_programs_and_says_why():
    # CI's kernel is locked down: LSM programs are refused with EPERM (vm tests cover the rest)
    ok, err, message = try_load(default_bpf_object_dir() / "lsm_probe.bpf.o")
    assert (ok, err) == (False, errno.EPERM)
    assert "karmor_probe_file_open" in message and "Operation not permitted" in message


def test_the_expected_refusal_is_not_logged_as_warnings():
    # every agent start probes: libbpf's complaints about the refused probe are debug noise,
    # the probe's own message carries the cause
    with capture_logs() as logs:
        ok, _, message = try_load(default_bpf_object_dir() / "lsm_probe.bpf.o")
    assert not ok and "Operation not permitted" in message
    libbpf = [e for e in logs if e["event"] == "libbpf_message"]
    assert libbpf and {e["log_level"] for e in libbpf} == {"debug"}


def test_a_loadable_object_loads_and_is_released():
    assert try_load(default_bpf_object_dir() / "monitor.bpf.o") == (True, 0, "loaded")


def test_a_missing_object_is_an_error_not_an_exception(tmp_path):
    ok, err, message = try_load(tmp_path / "nope.bpf.o")
    assert (ok, err) == (False, errno.ENOENT)
    assert "nope.bpf.o" in message

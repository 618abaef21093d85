"""Host side of the VM suite: one guest boot per configuration per session (tests/vm/harness.py).

tests/vm/guest/ holds the tests that run INSIDE the guests; the host never collects them
itself (they are collected with KARMOR_VM_CONFIG set, by the harness and in the guest).
"""

from __future__ import annotations

import os

import pytest

from tests.vm.configs import BY_NAME
from tests.vm.harness import (
    PYIMAGE_NAME,
    GuestRun,
    VmInstallError,
    boot,
    build_python_image,
    check_host_tools,
    collect_guest_tests,
)

if not os.environ.get("KARMOR_VM_CONFIG"):
    collect_ignore = ["guest"]

_RUNS = pytest.StashKey[list]()


def _fail_on_install_error(func, *args, **kwargs):
    """An install fault fails every VM test loudly (an error, never a skip): `make test`
    installs everything the VM suite needs."""
    try:
        return func(*args, **kwargs)
    except VmInstallError as exc:
        message = f"VM suite cannot run: {exc}"
    pytest.fail(message, pytrace=False)


@pytest.fixture(scope="session")
def python_image(tmp_path_factory: pytest.TempPathFactory):
    """The guest's Python image, built once per session and shared by all guests."""
    if os.environ.get("KARMOR_VM_PYIMAGE", "1") == "0":
        return None
    _fail_on_install_error(check_host_tools)
    return build_python_image(tmp_path_factory.getbasetemp() / PYIMAGE_NAME)


@pytest.fixture(scope="session")
def guest_run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, python_image) -> GuestRun:
    """The finished guest run of the configuration named by the (indirect) parameter."""
    cfg = BY_NAME[request.param]
    _, err = collect_guest_tests(cfg.name)
    if err:
        pytest.fail(f"not booting {cfg.name}: the guest tests do not collect\n{err}", pytrace=False)
    run = _fail_on_install_error(boot, cfg, tmp_path_factory.mktemp(f"vm-{cfg.name}"), image=python_image)
    request.config.stash.setdefault(_RUNS, []).append(run)
    return run


def pytest_terminal_summary(terminalreporter, exitstatus, config: pytest.Config) -> None:
    runs = config.stash.get(_RUNS, [])
    if not runs:
        return
    terminalreporter.section("VM guests")
    for run in runs:
        s = run.report.session
        fin = next((e for e in run.report.events if e.get("event") == "finish"), {})
        boot_s = f"{s['uptime']:.1f} s" if "uptime" in s else "?"
        tests_s = f"{fin['uptime'] - s['uptime']:.1f} s" if "uptime" in fin and "uptime" in s else "?"
        terminalreporter.write_line(
            f"{run.config.name}: {run.kernel.name}, {run.wall_seconds:.1f} s wall "
            f"(guest uptime at pytest start {boot_s}, guest pytest {tests_s}), "
            f"{len(run.report.tests)} guest tests; work dir {run.workdir}"
        )

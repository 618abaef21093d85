"""Every guest test becomes a host test: `test_guest[<config>:<guest test id>]`.

The guest ids are collected on the host before any boot; each configuration's guest boots
once (the session fixture `guest_run`) and each host test reads its guest test's result from
the guest's report. A failure shows the guest's own message, its captured output, the tail
of the guest console and where the full logs are kept.
"""

from __future__ import annotations

import pytest

from tests.vm.configs import CONFIGS
from tests.vm.harness import GuestRun, collect_guest_tests

pytestmark = pytest.mark.vm
GUEST_PREFIX = "tests/vm/guest/"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "guest_test" in metafunc.fixturenames:
        params = []
        for cfg in CONFIGS:
            ids, _ = collect_guest_tests(cfg.name)
            # No ids (collection failed): one placeholder that fails with the collection error.
            for nodeid in ids or ("",):
                short = nodeid.removeprefix(GUEST_PREFIX) or "(no guest tests)"
                params.append(pytest.param(cfg.name, nodeid, id=f"{cfg.name}:{short}"))
        metafunc.parametrize(("guest_run", "guest_test"), params, indirect=["guest_run"], scope="session")
    elif "guest_run" in metafunc.fixturenames:
        metafunc.parametrize("guest_run", [c.name for c in CONFIGS], indirect=True, scope="session")


def _fail(run: GuestRun, headline: str, body: str = "", console_lines: int = 40) -> None:
    parts = [headline]
    if body:
        parts.append(body.rstrip())
    parts.append(run.describe())
    parts.append(f"guest console (last {console_lines} lines):\n{run.console_tail(console_lines)}")
    pytest.fail("\n\n".join(parts), pytrace=False)


def test_guest(guest_run: GuestRun, guest_test: str) -> None:
    if not guest_test:
        _, err = collect_guest_tests(guest_run.config.name)
        _fail(guest_run, f"no guest tests for {guest_run.config.name}", err or "")
    result = guest_run.report.tests.get(guest_test)
    if result is None or result.outcome == "not run":
        why = guest_run.problem() or "the guest session did not run it"
        _fail(guest_run, f"guest test {guest_test} has no result: {why}")
    if result.outcome in ("passed", "xfailed"):
        return
    output = "\n".join(f"--- {name} ---\n{text.rstrip()}" for name, text in result.output)
    body = "\n".join(result.details) + (f"\n\n{output}" if output else "")
    if result.outcome == "skipped":
        body += "\n\n(VM tests must not skip: the harness installs and boots everything they need)"
    # The guest's own message is above; the console tail is its pytest summary.
    _fail(guest_run, f"guest test {result.outcome.upper()}: {guest_test}", body, console_lines=12)


def test_guest_session_complete(guest_run: GuestRun) -> None:
    """The guest ran exactly the tests the host expected, to the end, with nothing extra."""
    problem = guest_run.problem()
    if problem:
        _fail(guest_run, f"guest session incomplete: {problem}")
    expected, err = collect_guest_tests(guest_run.config.name)
    if err:
        _fail(guest_run, "collecting the guest tests on the host failed", err)
    got = guest_run.report.collected
    if sorted(got) != sorted(expected):
        _fail(
            guest_run,
            "guest collected other tests than the host (guest parametrisation must not depend on the kernel)",
            f"only in guest: {sorted(set(got) - set(expected))}\nonly on host: {sorted(set(expected) - set(got))}",
        )
    if guest_run.report.exitstatus not in (0, 1):
        _fail(guest_run, f"guest pytest exited with status {guest_run.report.exitstatus}")

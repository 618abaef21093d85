"""Guest side of the VM suite: runs inside the QEMU guest (see tests/vm/harness.py).

- `@pytest.mark.vm_config("apparmor", ...)` limits a test (or a parameter, via
  `pytest.param(..., marks=...)`) to the named guest configurations (tests/vm/configs.py);
  unmarked tests run in every configuration. Tests for other configurations are deselected,
  not skipped.
- A report plugin appends one JSON line per event to $KARMOR_VM_REPORT as the session goes,
  so the host learns what ran even when the guest hangs or dies part-way.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

CONFIG_ENV = "KARMOR_VM_CONFIG"
REPORT_ENV = "KARMOR_VM_REPORT"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "vm_config(*names): run only in these guest configurations (tests/vm/configs.py)"
    )
    if not os.environ.get(CONFIG_ENV):
        raise pytest.UsageError(
            "tests/vm/guest runs inside a VM guest: run `pytest tests/vm` on the host "
            "or `python -m tests.vm.harness` (see docs/vm-testing.md)"
        )
    report = os.environ.get(REPORT_ENV)
    if report:
        config.pluginmanager.register(JsonLinesReport(Path(report)), "karmor-vm-report")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    current = os.environ[CONFIG_ENV]
    keep, drop = [], []
    for item in items:
        names = {n for m in item.iter_markers("vm_config") for n in m.args}
        (keep if not names or current in names else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture(scope="session")
def vm_config() -> str:
    """Name of the guest configuration this session runs in."""
    return os.environ[CONFIG_ENV]


@pytest.fixture(scope="session")
def vm_out() -> Path:
    """The read-write directory shared with the host (kept with the run's logs)."""
    return Path(os.environ["KARMOR_VM_OUT"])


class JsonLinesReport:
    """Writes the session as JSON lines: session, collected, start/report per test, finish."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - open for the session

    def _write(self, **event: object) -> None:
        self.file.write(json.dumps(event, sort_keys=True) + "\n")
        self.file.flush()

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        self._write(
            event="session",
            config=os.environ.get(CONFIG_ENV),
            kernel=os.uname().release,
            uptime=float(Path("/proc/uptime").read_text().split()[0]),
        )

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            self._write(event="collect_error", nodeid=report.nodeid, longrepr=report.longreprtext)

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self._write(event="collected", nodeids=[item.nodeid for item in session.items])

    def pytest_runtest_logstart(self, nodeid: str, location: object) -> None:
        self._write(event="start", nodeid=nodeid)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self._write(
            event="report",
            nodeid=report.nodeid,
            when=report.when,
            outcome=report.outcome,
            duration=report.duration,
            longrepr=report.longreprtext if report.failed or report.skipped else "",
            sections=[list(s) for s in report.sections],
            wasxfail=getattr(report, "wasxfail", None),
        )

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        self._write(
            event="finish",
            exitstatus=int(exitstatus),
            interrupted=int(exitstatus) == pytest.ExitCode.INTERRUPTED,
            uptime=float(Path("/proc/uptime").read_text().split()[0]),
        )
        self.file.close()

"""Shared by the monitor's kernel tests: start a monitor, act in a child, wait for events.

The test process itself is the monitor's "agent" and is filtered in the kernel, so every
action under test runs in a forked child (or a program the test starts).
"""

from __future__ import annotations

import os
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from karmor_host.kernel.events import Event
from karmor_host.kernel.monitor import Monitor

NOBODY = 65534
Match = Callable[[Event], bool]


class Recorder:
    """A monitor whose events wait in a backlog until a test asks for them, so an event
    polled while waiting for another one is not lost."""

    BACKLOG = 200_000

    def __init__(self, mon: Monitor) -> None:
        self.mon = mon
        self._backlog: deque[Event] = deque(maxlen=self.BACKLOG)

    def __getattr__(self, name: str):
        return getattr(self.mon, name)

    def _take(self, match: Match) -> list[Event]:
        hits = [e for e in self._backlog if match(e)]
        if hits:
            self._backlog = deque((e for e in self._backlog if not match(e)), maxlen=self.BACKLOG)
        return hits

    def _poll(self) -> None:
        self._backlog.extend(self.mon.poll(50))

    def wait_for(self, match: Match, timeout: float = 5.0, count: int = 1) -> list[Event]:
        """The first `count` events satisfying `match` (waits for them); fails otherwise."""
        found = self._take(match)
        deadline = time.monotonic() + timeout
        while len(found) < count and time.monotonic() < deadline:
            self._poll()
            found += self._take(match)
        if len(found) < count:
            raise AssertionError(f"{len(found)} of {count} expected events within {timeout}s: {found}")
        for extra in reversed(found[count:]):
            self._backlog.appendleft(extra)
        return found[:count]

    def collect(self, keep: Match, until: Match, timeout: float = 5.0) -> list[Event]:
        """Every event satisfying `keep`, up to and including the first satisfying `until`."""
        kept: list[Event] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for e in self._take(keep):
                kept.append(e)
                if until(e):
                    return kept
            self._poll()
        raise AssertionError(f"the final event did not come within {timeout}s; kept {kept}")

    def drain(self, match: Match, quiet: float = 0.3) -> list[Event]:
        """Everything satisfying `match` that arrives until `quiet` seconds pass without one."""
        found = self._take(match)
        deadline = time.monotonic() + quiet
        while time.monotonic() < deadline:
            self._poll()
            batch = self._take(match)
            if batch:
                found += batch
                deadline = time.monotonic() + quiet
        return found


@contextmanager
def monitor(*visibility: str, **kw) -> Iterator[Recorder]:
    # wake the reader on each record the tests wait for (the kernel's default policy)
    kw.setdefault("wakeup_bytes", 0)
    with Monitor(visibility=set(visibility), **kw) as mon:
        yield Recorder(mon)


def in_child(fn: Callable[[], int | None]) -> tuple[int, int]:
    """Runs fn in a forked child; returns (child pid, exit status). Exit 99: fn raised."""
    pid = os.fork()
    if pid == 0:
        code = 99
        try:
            code = fn() or 0
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return pid, os.waitstatus_to_exitcode(status)


def of(pid: int) -> Match:
    return lambda e: e.tgid == pid

"""Directory events -> one debounced "changed" notification.

Editors write a temp file and rename it; `cp` writes in several chunks. Both produce bursts
of events, so the watcher waits for the directory to be quiet for a short moment (bounded,
so a steady stream of writes still gets applied) before it reports one change.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from karmor_host import log

_log = log.get("karmor.policy.watch")

QUIET_S = 0.15  # wait for this much silence after the last event ...
MAX_WAIT_S = 0.5  # ... but never longer than this after the first one


class _Handler(FileSystemEventHandler):
    def __init__(self, watcher: "DirectoryWatcher") -> None:
        self.watcher = watcher

    def on_any_event(self, event: FileSystemEvent) -> None:
        # Every kind counts (created, modified, closed, moved, deleted, attrib): the store
        # decides what changed; here we only need to know that something might have.
        self.watcher.poke()


class DirectoryWatcher:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._cond = threading.Condition()
        self._first: float | None = None
        self._last: float = 0.0
        self._observer = Observer(timeout=0.05)
        self._observer.schedule(_Handler(self), str(directory), recursive=False)

    def start(self) -> None:
        self._observer.start()
        _log.debug("watching", directory=str(self.directory))

    def stop(self) -> None:
        self._observer.stop()
        self._observer.join(timeout=2)

    def poke(self) -> None:
        with self._cond:
            now = time.monotonic()
            if self._first is None:
                self._first = now
            self._last = now
            self._cond.notify_all()

    def wait(self, timeout: float) -> bool:
        """Block up to `timeout` s; True once a burst of changes has settled."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                now = time.monotonic()
                if self._first is not None:
                    settle = min(self._last + QUIET_S, self._first + MAX_WAIT_S)
                    if now >= settle:
                        self._first = None
                        return True
                    wake = min(settle, deadline)
                else:
                    wake = deadline
                if now >= deadline:
                    return False
                self._cond.wait(max(0.0, wake - now))

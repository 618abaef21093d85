"""Alert rate limiting, KubeArmor's way, without losing count.

At most `max_per_second` alerts pass in any one-second window. The first alert over the
limit starts a quiet period of `quiet_seconds`: one SystemEvent/AlertThreshold record
announces it, and every alert until it ends is suppressed and counted (in total and per
policy). When the quiet period ends, a second AlertThreshold record reports the count.
Only alerts are throttled; telemetry (HostLog) is bounded by the pipeline's queue.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from karmor_host.alerts.record import HostInfo, system_event

ALERT_THRESHOLD = "AlertThreshold"


@dataclass(frozen=True)
class Notice:
    """A change of throttling state the pipeline turns into a SystemEvent record."""

    started: bool  # True: quiet period begins; False: it ended (with the counts)
    max_per_second: int
    quiet_seconds: float
    suppressed: int = 0
    by_policy: dict[str, int] = field(default_factory=dict)

    def record(self, host: HostInfo, ts_ns: int = 0) -> dict[str, Any]:
        quiet = _num(self.quiet_seconds)
        extra: dict[str, Any] = {"MaxAlertsPerSec": self.max_per_second, "DroppingAlertsInterval": quiet}
        if self.started:
            message = (
                f"Alert rate above {self.max_per_second} per second: "
                f"alerts are suppressed for {quiet} s and counted"
            )
            data = f"throttle=start max_per_second={self.max_per_second} quiet_seconds={quiet}"
        else:
            detail = ", ".join(f"{p}={n}" for p, n in sorted(self.by_policy.items()))
            message = f"Alert throttling ended: {self.suppressed} alerts suppressed in {quiet} s" + (
                f" ({detail})" if detail else ""
            )
            data = f"throttle=end suppressed={self.suppressed}"
            extra["SuppressedAlerts"] = self.suppressed
            extra["SuppressedByPolicy"] = dict(sorted(self.by_policy.items()))
        return system_event(host, ALERT_THRESHOLD, message, data=data, ts_ns=ts_ns, extra=extra)


def _num(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


class Throttle:
    def __init__(
        self,
        max_per_second: int = 10,
        quiet_seconds: float = 30,
        enabled: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_per_second = max_per_second
        self.quiet_seconds = quiet_seconds
        self.enabled = enabled
        self._clock = clock
        self._window_start: float | None = None
        self._in_window = 0
        self._quiet_until: float | None = None
        self._period: Counter[str] = Counter()  # suppressed in the current quiet period
        self.suppressed_total = 0
        self.suppressed_by_policy: Counter[str] = Counter()
        self.quiet_periods = 0

    @property
    def quiet(self) -> bool:
        return self._quiet_until is not None

    def offer(self, policy: str) -> tuple[bool, list[Notice]]:
        """May an alert of `policy` pass now? Also returns state changes to announce."""
        now = self._clock()
        notices = self._expire(now)
        if not self.enabled:
            return True, notices
        if self._quiet_until is not None:
            self._suppress(policy)
            return False, notices
        if self._window_start is None or now - self._window_start >= 1.0:
            self._window_start, self._in_window = now, 0
        if self._in_window < self.max_per_second:
            self._in_window += 1
            return True, notices
        self._quiet_until = now + self.quiet_seconds
        self.quiet_periods += 1
        self._suppress(policy)
        notices.append(Notice(True, self.max_per_second, self.quiet_seconds))
        return False, notices

    def poll(self) -> list[Notice]:
        """The end-of-quiet report when no alert came along to trigger it (call periodically)."""
        return self._expire(self._clock())

    def _suppress(self, policy: str) -> None:
        self._period[policy] += 1
        self.suppressed_total += 1
        self.suppressed_by_policy[policy] += 1

    def _expire(self, now: float) -> list[Notice]:
        if self._quiet_until is None or now < self._quiet_until:
            return []
        notice = Notice(
            False,
            self.max_per_second,
            self.quiet_seconds,
            suppressed=sum(self._period.values()),
            by_policy=dict(self._period),
        )
        self._quiet_until = None
        self._window_start, self._in_window = None, 0
        self._period = Counter()
        return [notice]

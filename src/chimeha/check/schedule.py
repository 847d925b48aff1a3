"""The checker schedule: when to probe, and when a real server changes state.

Theory of operation
-------------------
This is a pure, clock-injected state machine (no asyncio, socket or time): the
caller passes ``now`` to every method, asks :meth:`CheckSchedule.get_timer` when
the next probe is due, runs the probe itself and feeds the outcome back with
:meth:`CheckSchedule.probe_done`. It implements the health-checker timing that
keepalived.conf(5) documents for virtual/real server checkers (there is no RFC
for it; the reference is keepalived 2.2.7's manual and behaviour):

* ``warmup``: the first probe starts after a random delay in ``[0, warmup]``
  (default ``delay_loop``; 0 starts at once), so that many checkers started
  together do not probe in lock-step.
* The checker starts *up*, or *down* in ``alpha`` mode ("assume that all RSs are
  down and healthchecks failed" at startup).
* Up and a probe succeeds: stay up, next probe ``delay_loop`` after this one
  finished; the retry count is reset.
* Up and a probe fails: while fewer than ``retry`` retries were made, probe
  again after ``delay_before_retry``; when the retries are exhausted, go down
  and return to ``delay_loop``. With ``retry 0`` one failure is enough.
* Down and a probe succeeds: go up at once (one success is enough, as in
  keepalived). Down and a probe fails: stay down, probe again after
  ``delay_loop`` (retries only guard an *up* server against a single lost probe).
* A probe that succeeds with a different weight (MISC_CHECK ``misc_dynamic``)
  while up is reported as a change too, since the data plane must follow it.

:meth:`probe_done` returns a :class:`Transition` only when the reported state
(up/down, weight) changes, never for a repeat.

:func:`combine` folds the states of all checkers of one real server: it is up
only when every checker is up, and dynamic weights add their offset from the
configured weight (keepalived's misc_dynamic arithmetic).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

from chimeha.check.spec import CheckResult, Timing


@dataclass(frozen=True)
class Transition:
    """The checker's reported state changed at ``at``; ``reason`` is an operator sentence."""

    up: bool
    weight: int | None
    reason: str
    at: float


class CheckSchedule:
    """Probe timing and up/down state of one checker (see the module docstring).

    ``random`` returns a float in [0, 1) and scatters the warmup delay; tests
    pass a constant. ``name`` prefixes reasons ("TCP_CHECK 127.0.0.1:80").
    """

    def __init__(self, timing: Timing, *, name: str = "checker",
                 random: Callable[[], float] = lambda: 0.0):
        self.timing = timing
        self.name = name
        self._random = random
        self.up: bool = not timing.alpha
        self.weight: int | None = None
        self.retries_done = 0
        self.probes = 0
        self.last_detail = ""
        self._next_at: float | None = None
        self._in_flight = False

    def start(self, now: float) -> None:
        """Arm the first probe (after the warmup delay)."""
        delay = max(0.0, self.timing.warmup) * min(max(self._random(), 0.0), 1.0)
        self._next_at = now + delay

    def get_timer(self) -> float | None:
        """When the next probe is due; None before :meth:`start` or while a probe runs."""
        return None if self._in_flight else self._next_at

    def probe_started(self, now: float) -> None:
        """The caller started the probe that was due."""
        self._in_flight = True
        self._next_at = None

    def probe_done(self, result: CheckResult, now: float) -> Transition | None:
        """Feed a probe's outcome; returns a Transition when the reported state changes."""
        self._in_flight = False
        self.probes += 1
        self.last_detail = result.detail
        t = self.timing
        if result.ok:
            self.retries_done = 0
            self._next_at = now + t.delay_loop
            changed = (not self.up) or result.weight != self.weight
            self.up, self.weight = True, result.weight
            if changed:
                return Transition(True, result.weight, f"{self.name} succeeded: {result.detail}", now)
            return None
        if self.up and self.retries_done < t.retry:
            self.retries_done += 1
            self._next_at = now + t.delay_before_retry
            return None
        self._next_at = now + t.delay_loop
        if not self.up:
            return None
        tries = self.retries_done
        self.retries_done = 0
        self.up = False
        self.weight = None
        after = f" after {tries} {'retry' if tries == 1 else 'retries'}" if tries else ""
        return Transition(False, None, f"{self.name} failed{after}: {result.detail}", now)


def combine(states: Iterable[tuple[bool, int | None]], configured_weight: int) -> tuple[bool, int]:
    """Real-server state from its checkers' ``(up, weight)`` states.

    Up only when all are up (a real server with no checkers is up). The weight
    starts at ``configured_weight``; each checker reporting a dynamic weight
    adds ``weight - configured_weight``, so one dynamic checker simply sets it.
    """
    up = True
    weight = configured_weight
    for ok, w in states:
        up = up and ok
        if w is not None:
            weight += w - configured_weight
    return up, max(weight, 0)

"""Asyncio adapters: run checkers on their schedule and report state changes.

:class:`CheckerRunner` drives one checker: it asks the pure
:class:`~chimeha.check.schedule.CheckSchedule` when the next probe is due,
sleeps until then on the event loop's clock, runs :func:`~chimeha.check.dispatch.probe`
and feeds the result back. :class:`RealServerMonitor` combines the runners of
one real server (up only when all checkers are up).
"""

from __future__ import annotations

import asyncio
import logging
import random as _random
from typing import Any, Callable, Mapping, Sequence

from chimeha.check.bfd import STATES as bfd_states
from chimeha.check.dispatch import probe
from chimeha.check.engine import Job, eligible, engine_for
from chimeha.check.schedule import CheckSchedule, Transition, combine
from chimeha.check.spec import CheckResult, Target, Timing, checker_kind, resolve_timing, target_for
from chimeha.check._net import fmt
from chimeha.config.model import Checker, RealServer, TrackFile, VirtualServer

log = logging.getLogger(__name__)


def _label(checker: Checker, target: Target) -> str:
    host = checker.connect_ip or target.address
    port = checker.connect_port or target.port
    return f"{checker_kind(checker)} {fmt(host, port) if port else host}"


class CheckerRunner:
    """Runs one checker against one target on its schedule.

    ``on_change(result)`` is called with ``CheckResult(ok, detail=reason,
    weight)`` only when the checker's up/down state (or dynamic weight)
    changes, never for a repeat; exceptions it raises are logged. ``up`` is the
    current state: True at start, False in ``alpha`` mode.
    """

    def __init__(self, checker: Checker, target: Target, on_change: Callable[[CheckResult], Any] | None = None,
                 *, timing: Timing | None = None, random: Callable[[], float] = _random.random,
                 name: str | None = None):
        self.checker = checker
        self.target = target
        self.on_change = on_change
        self.timing = timing or resolve_timing(checker)
        self.name = name or _label(checker, target)
        self.schedule = CheckSchedule(self.timing, name=self.name, random=random)
        self._last_result: CheckResult | None = None
        self._task: asyncio.Task | None = None
        self._job: Job | None = None

    @property
    def last_result(self) -> CheckResult | None:
        """The outcome of the latest attempt (None before the first)."""
        return self._job.last_result if self._job is not None else self._last_result

    @property
    def up(self) -> bool:
        return self.schedule.up

    @property
    def weight(self) -> int | None:
        return self.schedule.weight

    def start(self) -> None:
        """Start checking (on the running loop); the first probe comes after the warmup delay.

        TCP_CHECK and HTTP_GET run in the loop's shared
        :class:`~chimeha.check.engine.ProbeEngine`; other kinds in a task of their own.
        """
        if self._task is not None or self._job is not None:
            return
        loop = asyncio.get_running_loop()
        if eligible(self.checker):
            self._job = engine_for(loop).add(self.checker, self.target, self.schedule, self.timing,
                                             lambda tr, _result: self._report(tr))
        else:
            self._task = loop.create_task(self._run(), name=f"check {self.name}")

    async def stop(self) -> None:
        """Stop checking and wait for the current probe to be cancelled."""
        job, self._job = self._job, None
        if job is not None:
            self._last_result = job.last_result
            job.engine.remove(job)
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        sched = self.schedule
        sched.start(loop.time())
        while True:
            due = sched.get_timer()
            delay = due - loop.time() if due is not None else 0.0
            if delay > 0 and checker_kind(self.checker) == "BFD_CHECK":
                await bfd_states.wait(getattr(self.checker, "name", "") or "", delay)  # wakes on a change
            elif delay > 0:
                await asyncio.sleep(delay)
            sched.probe_started(loop.time())
            result = await probe(self.checker, self.target, self.timing)
            self._last_result = result
            transition = sched.probe_done(result, loop.time())
            if transition is not None:
                self._report(transition)

    def _report(self, tr: Transition) -> None:
        log.info("%s", tr.reason)
        if self.on_change is None:
            return
        try:
            self.on_change(CheckResult(tr.up, tr.reason, tr.weight))
        except Exception:  # the consumer's bug must not stop health checking
            log.exception("on_change callback of %s failed", self.name)


class RealServerMonitor:
    """All checkers of one real server; ``on_change(up, weight, reason)`` when the combined state changes.

    The real server is up only when every checker is up; its weight is the
    configured weight adjusted by dynamic checkers (see
    :func:`~chimeha.check.schedule.combine`).
    """

    def __init__(self, checkers: Sequence[Checker], target: Target,
                 on_change: Callable[[bool, int, str], Any] | None = None, *,
                 timings: Sequence[Timing] | None = None, random: Callable[[], float] = _random.random):
        self.target = target
        self.on_change = on_change
        timings = list(timings) if timings is not None else [resolve_timing(c) for c in checkers]
        self.runners = [CheckerRunner(c, target, lambda res, c=c: self._changed(res, c), timing=t, random=random)
                        for c, t in zip(checkers, timings)]
        self.up, self.weight = self._combined()
        #: ``hook(checker, ok, rs_was_up, rs_up, detail)`` when one checker goes up or down (smtp_alert)
        self.checker_hooks: list[Callable[..., Any]] = []
        self._checker_up = {id(r.checker): r.up for r in self.runners}

    @classmethod
    def from_config(cls, real_server: RealServer, virtual_server: VirtualServer | None = None,
                    on_change: Callable[[bool, int, str], Any] | None = None, *,
                    track_files: Mapping[str, TrackFile] | None = None, **kw: Any) -> "RealServerMonitor":
        """From config-model ``RealServer``/``VirtualServer``, with timing inherited checker -> RS -> VS."""
        checkers = real_server.checkers
        timings = [resolve_timing(c, real_server, virtual_server) for c in checkers]
        return cls(checkers, target_for(real_server, virtual_server, track_files), on_change, timings=timings, **kw)

    def _combined(self) -> tuple[bool, int]:
        return combine(((r.up, r.weight) for r in self.runners), self.target.weight)

    def _changed(self, result: CheckResult, checker: Checker | None = None) -> None:
        state = self._combined()
        was_up = self.up
        changed = state != (self.up, self.weight)
        self.up, self.weight = state
        if checker is not None and self._checker_up.get(id(checker)) != result.ok:
            self._checker_up[id(checker)] = result.ok
            for hook in list(self.checker_hooks):
                try:
                    hook(checker, result.ok, was_up, self.up, result.detail)
                except Exception:
                    log.exception("checker hook of %s failed", self.target.address)
        if not changed:
            return
        if self.on_change is not None:
            try:
                self.on_change(self.up, self.weight, result.detail)
            except Exception:
                log.exception("on_change callback of %s failed", self.target.address)

    def start(self) -> None:
        for r in self.runners:
            r.start()

    async def stop(self) -> None:
        await asyncio.gather(*(r.stop() for r in self.runners))

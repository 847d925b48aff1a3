"""Health checkers for real servers (keepalived's TCP_CHECK, HTTP_GET, ... ).

Public API (see docs/checkers.md):

* ``await probe(checker_cfg, target, timing=None) -> CheckResult(ok, detail, weight)``:
  one attempt, never raising.
* ``CheckerRunner(checker_cfg, target, on_change, timing=...)``: one checker on
  its schedule; ``on_change(CheckResult)`` only on state changes.
* ``RealServerMonitor.from_config(real_server, virtual_server, on_change)``:
  all checkers of a real server; ``on_change(up, weight, reason)``.
* ``resolve_timing(checker, real_server, virtual_server) -> Timing`` and
  ``target_for(real_server, virtual_server) -> Target``.
* ``CheckSchedule`` (pure, clock-injected) in :mod:`chimeha.check.schedule`.
"""

from chimeha.check.dispatch import SUPPORTED_KINDS, probe
from chimeha.check.runner import CheckerRunner, RealServerMonitor
from chimeha.check.schedule import CheckSchedule, Transition, combine
from chimeha.check.spec import CheckResult, Target, Timing, resolve_timing, target_for

__all__ = [
    "SUPPORTED_KINDS", "probe", "CheckerRunner", "RealServerMonitor", "CheckSchedule", "Transition",
    "combine", "CheckResult", "Target", "Timing", "resolve_timing", "target_for",
]

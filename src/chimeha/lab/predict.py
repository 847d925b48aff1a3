"""What ``chime-ha simulate`` predicts for the lab's steps: a window per VIP move.

The lab acts (stops chime-server, cuts a link...) at a moment it does not
choose relative to the daemons' periodic work: the check script runs every
``interval`` seconds and the master advertises every ``advert_int``. The
delay until the VIP moves depends on that phase: a service stop is noticed
at the next check run (0..interval later), a link cut at the end of the
Master_Down_Interval counted from the last advert heard (2..3 adverts plus
Skew_Time later). So the prediction for a step is not one number but the
envelope of the simulator's delays over every phase of the action: the same
events, in the same order, on the same configs and addresses as the lab, run
by :func:`chimeha.sim.scenario.simulate` (the code behind ``chime-ha
simulate``) with the action swept across one period. Sample points sit just
before and just after every multiple of every interval (where the delay
jumps), plus an even grid, so the envelope is exact to 0.1 ms.

Each step is measured the way the lab measures it (:mod:`chimeha.lab.runner`):
``add`` is the latest first appearance of a VIP on the new holder, ``del`` the
latest first disappearance from the other server.

Usage::

    windows = predict_windows("active-standby", seed_configs("active-standby"), steps_for("active-standby"))
    windows["link-cut"].low, windows["link-cut"].high    # 2.008, 3.008 for the seed
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Iterable, Protocol

#: How far a measured move may fall outside the simulated window and still be
#: called "inside" in the lab report: (early, late) seconds. The simulator
#: acts and observes instantly; the lab does not. Late: stopping the stand-in
#: (SIGTERM, wait for exit), the check script's own run time (pgrep forked
#: through the node's namespaces), carrier and netlink notification, asyncio
#: timer latency and the ``ip monitor`` line reaching our reader thread, each
#: a few to tens of ms, stretched by scheduling on a loaded 2-core machine
#: (bench/failover saw at most +22 ms over 4 rounds x 2 daemons x 2 settings). Early: the action
#: is timestamped before it starts, so only clock granularity, never real
#: latency, can make a move look early.
TOLERANCE = (0.05, 0.25)

PRIMARY = "server1"

# What counts as a check of chime-server: its process name or its API ports
# (the seed's comment offers "nc -zv localhost 8801" as the alternative).
_CHECKS_CHIME_SERVER = re.compile(r"chime-server|\b880[12]\b")


class PredictionError(ValueError):
    """The configs cannot be simulated (they do not load, or name unknown things)."""


class StepLike(Protocol):
    name: str
    vips_on: str | None
    move: str


@dataclass(frozen=True)
class Window:
    """The simulator's predicted VIP move delay for one step, over every phase of the action."""

    step: str
    event: str  # the simulator event for the action, without its time ("server1 link-down")
    low: float | None  # None: the simulator predicts no VIP move for this step
    high: float | None
    phases: int  # how many phases were simulated
    moved: int  # in how many of them the VIP moved

    def as_dict(self) -> dict:
        return {"event": self.event, "min": self.low, "max": self.high, "phases": self.phases,
                "moved_in": self.moved}

    def contains(self, measured: float | None, tolerance: tuple[float, float] = TOLERANCE) -> bool:
        """Whether a measured move agrees: inside [low - early, high + late], or both say "no move"."""
        if self.low is None or measured is None:
            return self.low is None and measured is None
        return self.low - tolerance[0] <= measured <= self.high + tolerance[1]


def _load(configs: dict[str, str]) -> dict:
    from chimeha.config import loads

    out = {}
    for name, text in configs.items():
        res = loads(text, f"{name}.conf")
        if res.config is None or not res.ok:
            errors = "; ".join(str(d) for d in res.diagnostics if d.severity == "error")
            raise PredictionError(f"{name}'s config cannot be simulated: {errors or 'it does not load'}")
        out[name] = res.config
    return out


def _service_scripts(config) -> list[str]:
    """vrrp_scripts of ``config`` that fail when chime-server stops."""
    return [name for name, s in config.vrrp_scripts.items()
            if any(_CHECKS_CHIME_SERVER.search(word) for word in s.script)]


def _step_events(step: str, loaded: dict) -> tuple[list[str], list[str]] | None:
    """(setup actions, the step's actions) as simulator event texts without times; None: no action."""
    scripts = _service_scripts(loaded[PRIMARY])
    fail = [f"{PRIMARY} check-fail {s}" for s in scripts]
    ok = [f"{PRIMARY} check-ok {s}" for s in scripts]
    table = {
        "service-stop": ([], fail),
        "service-start": (fail, ok),
        "link-cut": ([], [f"{PRIMARY} link-down"]),
        "link-restore": ([f"{PRIMARY} link-down"], [f"{PRIMARY} link-up"]),
    }
    return table.get(step)


def _periods(loaded: dict) -> list[float]:
    """Every periodic interval in the configs: advert intervals (as on the wire) and check intervals."""
    from chimeha.vrrp.from_config import instance_specs
    from chimeha.vrrp.timing import wire_interval

    ivs = set()
    for cfg in loaded.values():
        for s in instance_specs(cfg):
            ivs.add(wire_interval(s.advert_int, s.version))
        for sc in cfg.vrrp_scripts.values():
            ivs.add(float(sc.interval))
    return sorted(iv for iv in ivs if iv > 0) or [1.0]


def _phases(periods: list[float], grid: int = 16, per_interval_cap: int = 40) -> tuple[float, list[float]]:
    """(the sweep period, offsets in [0, period)) hugging every boundary of every interval."""
    # The pattern of boundaries repeats every common multiple of the intervals
    # (2 s for a 1 s advert and a 2 s check); a huge one (0.7 s and 3.1 s) is
    # not worth sweeping: the longest interval with the even grid is close enough.
    ms = [max(1, round(iv * 1000)) for iv in periods]
    common = math.lcm(*ms) / 1000
    period = common if common <= 4 * max(periods) else max(periods)
    offsets = {round(period * j / grid, 6) for j in range(grid)}
    for iv in periods:
        n = int(round(period / iv))
        if n > per_interval_cap:
            continue  # a fine interval: the even grid is close enough
        for k in range(n + 1):
            for d in (-0.0001, 0.0001):
                off = k * iv + d
                if 0 <= off < period:
                    offsets.add(round(off, 6))
    return period, sorted(offsets)


def _delay(timeline: list[dict], vips: Iterable[str], target: str | None, move: str, t_ev: float,
           servers: Iterable[str]) -> float | None:
    """The step's VIP move in a simulated timeline, measured like the lab's ``_measure``."""
    def first(node: str, vip: str, text: str) -> float | None:
        for r in timeline:
            if r["kind"] == "vip" and r["at"] >= t_ev and r["node"] == node and r.get("vip") == vip \
                    and r["text"].endswith(text):
                return r["at"]
        return None

    times = []
    for vip in vips:
        if move == "add" and target:
            t = first(target, vip, "added")
            if t is not None:
                times.append(t)
        elif move == "del" and target:
            t = max((first(o, vip, "removed") or 0.0 for o in servers if o != target), default=0.0)
            if t:
                times.append(t)
        elif move == "del":
            times += [t for n in servers if (t := first(n, vip, "removed")) is not None]
    return round(max(times) - t_ev, 6) if times else None


def predict_windows(mode: str, configs: dict[str, str], steps: Iterable[StepLike],
                    addresses: dict[str, str] | None = None) -> dict[str, Window]:
    """The simulator's window for every step of ``steps`` that has an action and measures a move.

    ``configs`` maps server -> config text (what the lab installs), ``addresses``
    server -> primary address (default: the lab's). Raises
    :class:`PredictionError` when a config does not load.
    """
    from chimeha.lab.cluster import SERVERS, VIPS
    from chimeha.sim.scenario import NodeInput, ScenarioError, parse_event, simulate

    addresses = dict(addresses or SERVERS)
    loaded = _load(configs)
    period, offsets = _phases(_periods(loaded))

    def run(events: list[str]) -> dict:
        nodes = [NodeInput(name, loaded[name], addresses[name]) for name in configs]
        try:
            return simulate(nodes, [parse_event(e) for e in events])
        except ScenarioError as exc:
            raise PredictionError(str(exc)) from None

    out: dict[str, Window] = {}
    for st in steps:
        planned = _step_events(st.name, loaded)
        if planned is None:
            continue
        setup, actions = planned
        label = " + ".join(actions) or "none"
        if not actions:
            # Nothing in the config watches chime-server: the simulator has nothing to fail.
            out[st.name] = Window(st.name, "no vrrp_script checks chime-server", None, None, 0, 0)
            continue
        # Let start-up (and the setup action) settle: simulate() picks "long enough"
        # as its default end. Aligning the base to the period keeps every node's
        # periodic work (started at 0) on the offsets' boundaries.
        base = run([f"1 {e}" for e in setup])["until"]
        base = math.ceil(base / period) * period
        delays = []
        for off in offsets:
            t_ev = base + off
            events = [f"1 {e}" for e in setup] + [f"{t_ev:.6f} {e}" for e in actions]
            res = run(events)
            delays.append(_delay(res["timeline"], VIPS[mode], st.vips_on, st.move, t_ev, list(configs)))
        moved = [d for d in delays if d is not None]
        out[st.name] = Window(st.name, label, min(moved) if moved else None, max(moved) if moved else None,
                              len(delays), len(moved))
    return out

"""The seed document's verification, step by step, in a :class:`SeedCluster`.

:func:`run_lab` does what an operator following the document does, and
measures while doing it:

1. the VIPs are on server1's ens160 (``ip -br a``), and stay there long enough
   for server2 to have taken them if it could not hear server1 (a split brain
   shows up here, not later);
2. the Web UI and the API answer through the VIPs;
3. ``systemctl stop chime-server`` on server1: the VIPs move to server2 and
   the Web UI and API still answer through them;
4. ``systemctl start chime-server``: the VIPs come back to server1;
5. server1's link is cut: server2 takes the VIPs;
6. the link is restored: the VIPs are on server1 alone again.

Each step reports PASS/FAIL with an explanation, the VIP move time (from the
action to the address appearing, or disappearing for a release, in the
destination's ``ip monitor``) and the client-visible outage (probes every
20 ms through the VIPs, :func:`chimeha.lab.probe.outage`), next to the window
``chime-ha simulate`` predicts for that move (:mod:`chimeha.lab.predict`,
informational: a move outside it is flagged, the step does not fail). Active-active
follows the same path; its config has no track_script, so stopping
chime-server there must not move the VIPs: the virtual servers route around
the stopped instance instead.
"""

from __future__ import annotations

import re
import shutil
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

from chimeha.lab.cluster import SERVERS, VIPS, SeedCluster
from chimeha.lab.probe import outage

PRIMARY, SECONDARY = "server1", "server2"
# Keywords that two peers of one virtual router must agree on.
_PEER_KEYS = ("virtual_router_id", "auth_type", "auth_pass", "advert_int", "vrrp_version")


@dataclass
class StepResult:
    """The outcome of one verification step."""

    n: int
    name: str
    title: str
    ok: bool
    message: str
    vip_move_time: float | None = None  # seconds from the action to the VIP change
    outage: float | None = None  # client-visible seconds without answers (worst endpoint)
    outage_by_endpoint: dict[str, float] = field(default_factory=dict)
    details: list[str] = field(default_factory=list)
    duration: float = 0.0
    # chime-ha simulate's window for this step's VIP move (chimeha.lab.predict):
    # {"event", "min", "max", "phases", "moved_in", "inside"}; None when not predicted.
    predicted: dict | None = None


@dataclass
class LabReport:
    """Everything a lab run found; ``ok`` only when every step passed."""

    mode: str
    daemons: dict[str, str]
    steps: list[StepResult]
    duration: float
    logdir: str
    total_outage: float | None = None
    interrupted: bool = False
    error: str | None = None
    notes: list[str] = field(default_factory=list)
    prefix: str = ""  # the namespace-name prefix of this run (all its namespaces start with it)
    tolerance: tuple[float, float] | None = None  # (early, late) s allowed around predicted windows

    @property
    def ok(self) -> bool:
        complete = len(self.steps) == len(steps_for(self.mode))
        return complete and all(s.ok for s in self.steps) and not self.interrupted and not self.error

    def as_dict(self) -> dict:
        d = asdict(self)
        d["ok"] = self.ok
        return d


@dataclass
class _Step:
    name: str
    title: str
    action: Callable[[SeedCluster], None] | None
    vips_on: str | None  # expected holder of every VIP; None: unchanged/any single one
    exclusive: bool  # the holder must be the only one
    answer_from: dict[str, str | None]  # endpoint label -> expected node (None: any)
    move: str  # "add": time the VIP appears on vips_on; "del": time it leaves the other node; "": none


def steps_for(mode: str) -> list[_Step]:
    """The verification steps of ``mode`` (see the module docstring)."""
    both = {"Web UI": PRIMARY, "API": PRIMARY}
    on2 = {"Web UI": SECONDARY, "API": SECONDARY}
    if mode == "active-standby":
        return [
            _Step("vips-on-server1", "VIPs on server1's ens160 (ip -br a)", None, PRIMARY, True, {}, ""),
            _Step("answers-via-vips", "Web UI and API answer through the VIPs", None, PRIMARY, True, both, ""),
            _Step("service-stop", "systemctl stop chime-server on server1 -> VIPs move to server2",
                  lambda c: c.stop_service(PRIMARY), SECONDARY, True, on2, "add"),
            _Step("service-start", "systemctl start chime-server on server1 -> VIPs come back",
                  lambda c: c.start_service(PRIMARY), PRIMARY, True, both, "add"),
            _Step("link-cut", "cut server1's link -> server2 takes the VIPs",
                  lambda c: c.cut_link(PRIMARY), SECONDARY, False, on2, "add"),
            _Step("link-restore", "restore server1's link -> VIPs on server1 only",
                  lambda c: c.restore_link(PRIMARY), PRIMARY, True, both, "del"),
        ]
    anyone = {"Web UI": None, "API": None}
    return [
        _Step("vips-on-server1", "VIPs on server1's ens160 (ip -br a)", None, PRIMARY, True, {}, ""),
        _Step("answers-via-vips", "Web UI and API answer through the VIPs", None, PRIMARY, True, anyone, ""),
        _Step("service-stop", "systemctl stop chime-server on server1 -> API still answers (from server2)",
              lambda c: c.stop_service(PRIMARY), PRIMARY, True, {"Web UI": None, "API": SECONDARY}, ""),
        _Step("service-start", "systemctl start chime-server on server1 -> both serve again",
              lambda c: c.start_service(PRIMARY), PRIMARY, True, anyone, ""),
        _Step("link-cut", "cut server1's link -> server2 takes the VIPs",
              lambda c: c.cut_link(PRIMARY), SECONDARY, False, {"Web UI": SECONDARY, "API": SECONDARY}, "add"),
        _Step("link-restore", "restore server1's link -> VIPs on one node only",
              lambda c: c.restore_link(PRIMARY), None, True, anyone, "del"),
    ]


def peer_mismatches(configs: dict[str, str]) -> list[str]:
    """Peer-critical keywords whose values differ between the servers' configs."""
    found = []
    for key in _PEER_KEYS:
        vals = {}
        for node, text in configs.items():
            m = re.search(rf"^\s*{key}\s+(\S+)", text, re.MULTILINE)
            vals[node] = m.group(1) if m else None
        if len(set(vals.values())) > 1:
            shown = ", ".join(f"{n} {v!r}" if v is not None else f"{n} unset" for n, v in vals.items())
            found.append(f"{key} differs ({shown})")
    return found


class _Failed(Exception):
    pass


class LabRunner:
    """Runs the steps on a built cluster; see :func:`run_lab`."""

    def __init__(self, cluster: SeedCluster, progress: Callable[[str], None] | None = None,
                 step_timeout: float | None = None):
        self.c = cluster
        self.progress = progress or (lambda s: None)
        adv = cluster.advert_int()
        # Generous: a check interval (2 s in the seed) plus the RFC's
        # Master_Down_Interval, twice over, plus start-up slack.
        self.step_timeout = step_timeout or max(12.0, 2 * (2.0 + 3 * adv + 1) + 4)
        self.stable = 3 * adv + 1.0  # long enough for a deaf backup to claim the VIPs

    # -- observation helpers --------------------------------------------------------
    def _holders(self) -> dict[str, list[str]]:
        return {vip: self.c.holders(vip) for vip in VIPS[self.c.mode]}

    def _vips_ok(self, st: _Step) -> bool:
        for vip, holders in self._holders().items():
            if st.vips_on is None:
                if len(holders) != 1:
                    return False
            elif st.vips_on not in holders or (st.exclusive and len(holders) != 1):
                return False
        return True

    def _endpoint_targets(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for label, target in self.c.endpoints():
            out.setdefault(label, []).append(target)
        return out

    def _answers_ok(self, st: _Step, since: float) -> bool:
        for label, want in st.answer_from.items():
            for target in self._endpoint_targets().get(label, []):
                last = self.c.last_probe(target, since)
                if last is None or not last.ok:
                    return False
                if want is not None and last.node != want:
                    return False
        return True

    def _check_daemons(self) -> None:
        for node in SERVERS:
            rc = self.c.daemon_exit(node)
            if rc is not None:
                kind = self.c.daemons[node]
                ev = self.c.evidence(node)
                said = f"; its log says: {' | '.join(ev)}" if ev else ""
                raise _Failed(f"{kind} on {node} exited with status {rc}{said}")

    def explain(self, st: _Step, since: float) -> str:
        """Why ``st``'s expectation does not hold right now, in operator words."""
        parts = []
        for vip, holders in self._holders().items():
            where = " and ".join(holders) if holders else "no server"
            if len(holders) > 1 and st.exclusive:
                parts.append(f"split brain: VIP {vip} is on {where}: each claims to be master, "
                             f"so they do not accept each other's advertisements")
            elif st.vips_on and st.vips_on not in holders:
                parts.append(f"VIP {vip} is on {where}, expected on {st.vips_on}")
            elif not st.vips_on and len(holders) != 1:
                parts.append(f"VIP {vip} is on {where}, expected on exactly one server")
        for label, want in st.answer_from.items():
            for target in self._endpoint_targets().get(label, []):
                last = self.c.last_probe(target, since)
                if last is None:
                    parts.append(f"{label} {target}: no probe result yet")
                elif not last.ok:
                    parts.append(f"{label} {target}: {last.node}")
                elif want is not None and last.node != want:
                    parts.append(f"{label} {target} answered by {last.node}, expected {want}")
        hints = peer_mismatches(self.c.configs)
        if hints:
            parts.append("the configs disagree: " + "; ".join(hints))
        for node in SERVERS:
            ev = self.c.evidence(node)
            if ev:
                parts.append(f"{node}'s {self.c.daemons[node]} log: {' | '.join(ev)}")
        return "; ".join(parts) or "expectation not met"

    # -- steps ------------------------------------------------------------------------
    def run_step(self, n: int, st: _Step, total: int, since_start: float) -> StepResult:
        self.progress(f"[{n}/{total}] {st.title} ...")
        t0 = time.monotonic()
        res = StepResult(n, st.name, st.title, False, "")
        try:
            if st.action is not None:
                st.action(self.c)
            # Step 1 must also outlast a deaf backup's Master_Down_Interval.
            not_before = since_start + self.stable if n == 1 else 0.0
            end = t0 + self.step_timeout
            t_vips = None
            while True:
                self._check_daemons()
                now = time.monotonic()
                if n == 1 and any(len(h) > 1 for h in self._holders().values()):
                    raise _Failed(self.explain(st, t0))
                if t_vips is None and self._vips_ok(st):
                    t_vips = now
                elif t_vips is not None and not self._vips_ok(st):
                    t_vips = None
                if t_vips is not None and now >= not_before and self._answers_ok(st, max(t_vips, t0)):
                    break
                if now >= end:
                    raise _Failed(f"not done after {self.step_timeout:.0f} s: {self.explain(st, t0)}")
                time.sleep(0.02)
            t_end = time.monotonic()
            if st.action is not None:
                # Probes started before t_end report when they finish (a lost
                # SYN only after the probe timeout): wait for them to be counted.
                time.sleep(self.c.probe_timeout + 0.1)
            self._measure(st, res, t0, t_end)
            res.ok = True
            res.message = self._success_message(st, res)
        except _Failed as exc:
            res.message = str(exc)
            self._measure(st, res, t0, time.monotonic())
        res.duration = time.monotonic() - t0
        if n == 1:
            out = self.c.nodes[PRIMARY].run(["ip", "-br", "a", "show", "dev", "ens160"], check=False).stdout
            res.details.append(f"server1$ ip -br a show dev ens160: {out.strip()}")
        return res

    def _measure(self, st: _Step, res: StepResult, t0: float, t_end: float) -> None:
        if st.move and st.vips_on:
            times = []
            for vip in VIPS[self.c.mode]:
                if st.move == "add":
                    t = self.c.first_change(st.vips_on, vip, True, t0)
                else:
                    others = [n for n in SERVERS if n != st.vips_on]
                    t = max((self.c.first_change(o, vip, False, t0) or 0.0 for o in others), default=0.0) or None
                if t is not None:
                    times.append(t - t0)
            res.vip_move_time = round(max(times), 3) if times else None
        elif st.move == "del":
            times = [t for n in SERVERS for vip in VIPS[self.c.mode]
                     if (t := self.c.first_change(n, vip, False, t0))]
            res.vip_move_time = round(max(times) - t0, 3) if times else None
        if st.action is not None:
            worst = 0.0
            for _, target in self.c.endpoints():
                o = outage(self.c.probe_results(target), t0, t_end)
                res.outage_by_endpoint[target] = round(o.total, 3)
                worst = max(worst, o.total)
            res.outage = round(worst, 3)

    def _success_message(self, st: _Step, res: StepResult) -> str:
        holders = self._holders()
        where = ", ".join(f"{vip} on {'+'.join(h)}" for vip, h in holders.items())
        bits = [where]
        answered = []
        for label, target in self.c.endpoints():
            last = self.c.last_probe(target)
            if last is not None and st.answer_from:
                answered.append(f"{label} {target} -> {last.node}")
        if answered:
            bits.append("; ".join(answered))
        return "; ".join(bits)


def run_lab(mode: str = "active-standby", daemons: dict[str, str] | None = None,
            configs: dict[str, str] | None = None, keep: bool = False,
            progress: Callable[[str], None] | None = None, tag: str = "lab",
            on_built: Callable[[SeedCluster], None] | None = None) -> tuple[LabReport, SeedCluster | None]:
    """Build the seed's lab, run every step, tear down (unless ``keep``).

    ``daemons`` maps server -> "chime-ha" | "keepalived" (default chime-ha on
    both). ``configs`` overrides a server's config text (tests of deliberately
    broken setups); by default the seed's files are installed unmodified.
    Returns the report and, when ``keep``, the still-running cluster.
    """
    say = progress or (lambda s: None)
    daemons = dict(daemons or {n: "chime-ha" for n in SERVERS})
    from chimeha.lab.cluster import seed_configs

    final_configs = seed_configs(mode)
    final_configs.update(configs or {})
    cluster = SeedCluster(mode=mode, daemons=daemons, configs=final_configs, tag=tag, progress=say)
    t_start = time.monotonic()
    report = LabReport(mode, daemons, [], 0.0, str(cluster.logdir))
    steps = steps_for(mode)
    try:
        windows = _predictions(mode, final_configs, steps, report, say)
        cluster.build()
        report.prefix = cluster.topo.prefix
        report.notes.extend(cluster.notes)
        if on_built:
            on_built(cluster)
        cluster.start_prober()
        since = time.monotonic()
        cluster.start_daemons()
        runner = LabRunner(cluster, say)
        for i, st in enumerate(steps, 1):
            res = runner.run_step(i, st, len(steps), since)
            window = windows.get(st.name)
            if window is not None:
                res.predicted = {**window.as_dict(), "inside": window.contains(res.vip_move_time)}
            report.steps.append(res)
            say(format_step(res))
            if not res.ok:
                break  # later steps assume this one's outcome
        if report.steps:
            t_first = since
            worst = 0.0
            for _, target in cluster.endpoints():
                # From the moment the VIPs first answered until the end.
                ok_times = [r.t for r in cluster.probe_results(target, t_first) if r.ok]
                if ok_times:
                    worst = max(worst, outage(cluster.probe_results(target), ok_times[0], time.monotonic()).total)
            report.total_outage = round(worst, 3)
    except KeyboardInterrupt:
        report.interrupted = True
        keep = False
    except Exception as exc:  # setup failures become a failed report, not a traceback
        report.error = f"{type(exc).__name__}: {exc}"
    finally:
        report.duration = round(time.monotonic() - t_start, 2)
        if not keep:
            say("tearing down the lab")
            _close_uninterrupted(cluster)
            if report.ok:
                shutil.rmtree(cluster.logdir, ignore_errors=True)
                report.logdir = ""
    return report, (cluster if keep else None)


def _predictions(mode: str, configs: dict[str, str], steps: list[_Step], report: LabReport,
                 say: Callable[[str], None]) -> dict:
    """chime-ha simulate's VIP move window per step; a config it cannot load only costs the windows."""
    from chimeha.lab.predict import TOLERANCE, PredictionError, predict_windows

    say("asking chime-ha simulate for each step's VIP move window")
    try:
        windows = predict_windows(mode, configs, steps)
    except PredictionError as exc:
        report.notes.append(f"no simulated windows: {exc}")
        return {}
    except Exception as exc:  # a simulator bug must not cost the operator the lab itself
        report.notes.append(f"no simulated windows: chime-ha simulate failed: {type(exc).__name__}: {exc}")
        return {}
    report.tolerance = TOLERANCE
    return windows


def _close_uninterrupted(cluster: SeedCluster) -> None:
    """Tear down even if the user presses Ctrl-C again meanwhile."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        cluster.close()
        return
    sigs = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    old = {s: signal.signal(s, signal.SIG_IGN) for s in sigs}
    try:
        cluster.close()
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


def format_step(res: StepResult) -> str:
    """One human line (plus details) for a step."""
    verdict = "PASS" if res.ok else "FAIL"
    timing = []
    if res.vip_move_time is not None:
        timing.append(f"VIP move {res.vip_move_time:.2f} s")
    if res.predicted is not None and res.predicted.get("phases"):
        timing.append(f"simulate {_window_text(res.predicted)}{'' if res.predicted['inside'] else ' (OUTSIDE)'}")
    if res.outage is not None:
        timing.append(f"client outage {res.outage:.2f} s")
    head = f"[{res.n}] {verdict}  {res.title}"
    if timing:
        head += f"  ({', '.join(timing)})"
    lines = [head, f"      {res.message}"]
    lines += [f"      {d}" for d in res.details]
    return "\n".join(lines)


def _window_text(pred: dict) -> str:
    if pred.get("min") is None:
        return "no move"
    lo, hi = f"{pred['min']:.2f}", f"{pred['max']:.2f}"
    return f"{lo} s" if lo == hi else f"{lo}..{hi} s"


def format_report(report: LabReport) -> str:
    """The summary printed at the end of a lab run."""
    lines = []
    who = ", ".join(f"{k} on {n}" for n, k in report.daemons.items())
    passed = sum(s.ok for s in report.steps)
    total = len(steps_for(report.mode))
    lines.append(f"Summary: {report.mode} lab ({who}): {passed}/{total} steps passed in {report.duration:.1f} s")
    for s in report.steps:
        t = ""
        if s.vip_move_time is not None or s.outage is not None:
            mv = f"{s.vip_move_time:.2f} s" if s.vip_move_time is not None else "-"
            ou = f"{s.outage:.2f} s" if s.outage is not None else "-"
            t = f"   move {mv:>7}   outage {ou:>7}"
            if s.predicted is not None and s.predicted.get("phases"):
                mark = "" if s.predicted["inside"] else "  OUTSIDE"
                t += f"   simulate {_window_text(s.predicted):>13}{mark}"
        lines.append(f"  {'PASS' if s.ok else 'FAIL'}  {s.name:<18}{t}")
    for s in steps_for(report.mode)[len(report.steps):]:
        lines.append(f"  SKIP  {s.name:<18}   (not run: an earlier step failed)")
    if report.total_outage is not None:
        lines.append(f"  total client-visible outage after first answer: {report.total_outage:.2f} s")
    if report.tolerance and any(s.predicted and s.predicted.get("phases") for s in report.steps):
        early, late = report.tolerance
        lines.append(f"  simulate = the VIP move `chime-ha simulate` predicts over every phase of checks and adverts; "
                     f"OUTSIDE = over {early * 1000:.0f} ms early or {late * 1000:.0f} ms late")
    for note in report.notes:
        lines.append(f"  note: {note}")
    lines += report_footer(report)
    return "\n".join(lines)


def report_footer(report) -> list[str]:
    """The closing lines every lab report prints (interrupted, error, kept logs, RESULT)."""
    lines = []
    if report.interrupted:
        lines.append("  interrupted: the lab was torn down")
    if report.error:
        lines.append(f"  error: {report.error}")
    if report.logdir:
        lines.append(f"  daemon logs kept in {report.logdir}")
    lines.append("RESULT: " + ("PASS" if report.ok else "FAIL"))
    return lines

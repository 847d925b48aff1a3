"""``chime-ha lab bgp``: the BGP/ECMP topology (:mod:`chimeha.lab.bgp`) checked step by step.

Each step reports PASS/FAIL with what it measured, in the style of
``chime-ha lab`` (:mod:`chimeha.lab.runner`):

1. ``routes``: the router installs one route for the VIP with three next hops;
2. ``spread``: 300 client connections, 0 errors, each director within
   1/3 +/- 10 %, and every director picks the same real server for a client
   address (Maglev, ``lb_algo mh``);
3. ``kill``: SIGKILL of the director in the middle of the router's
   hash-threshold split under 150 long-lived pinging connections: its next
   hop is withdrawn within the hold time, 0 failures among the connections
   the two others carry; the fraction of the dead director's connections
   that continue is measured and reported (informational with NAT and
   masquerade, where it is 0, see docs/bgp.md; with ``--forwarding direct``
   an end hop is killed and every connection must continue);
4. ``rejoin``: the restarted director's next hop comes back and it carries
   connections again;
5. ``status``: ``chime-ha status --json`` and ``/metrics`` on a director show
   the session Established and the prefix announced;
6. ``sigterm``: SIGTERM of a director withdraws its next hop before the daemon
   has exited.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

from chimeha.lab.bgp import DIRECTORS, HOLD, VIP, BgpLab
from chimeha.lab.bgp_measure import kill_survival, same_real_everywhere
from chimeha.lab.runner import report_footer

STEPS = (("routes", "the router installs the VIP with three next hops"),
         ("spread", "300 connections spread over the three directors, one real server per client"),
         ("kill", "SIGKILL of a director: next hop withdrawn, survivors' connections unaffected"),
         ("rejoin", "the restarted director rejoins"),
         ("status", "status --json and /metrics show the session and the prefix"),
         ("sigterm", "SIGTERM of a director withdraws before the daemon exits"))
METRICS_URL = "http://127.0.0.1:9650/metrics"


@dataclass
class BgpStep:
    n: int
    name: str
    title: str
    ok: bool
    message: str
    seconds: float | None = None  # the step's measured convergence time, when it has one
    details: list[str] = field(default_factory=list)
    measured: dict = field(default_factory=dict)


@dataclass
class BgpReport:
    steps: list[BgpStep]
    duration: float
    logdir: str
    prefix: str = ""
    error: str | None = None
    interrupted: bool = False

    @property
    def ok(self) -> bool:
        return len(self.steps) == len(STEPS) and all(s.ok for s in self.steps) and not self.error \
            and not self.interrupted

    def as_dict(self) -> dict:
        d = asdict(self)
        d["ok"] = self.ok
        d["mode"] = "bgp"
        return d


class _Checks:
    """The six steps against one lab (each returns ok, message, seconds, details, measured)."""

    def __init__(self, lab: BgpLab):
        self.lab = lab
        self.direct = lab.forwarding == "direct"
        self.allhops = set(DIRECTORS.values())
        self.victim = "d2"

    def routes(self):
        took = self.lab.wait_next_hops(self.allhops, 60)
        n = self.lab.routes_to_vip()
        hops = sorted(self.lab.next_hops())
        ok = took is not None and n == 1
        msg = (f"{n} route for {VIP}/32 via {', '.join(hops)}" if ok else
               f"next hops {hops or 'none'} ({n} route(s)) after 60 s; router: "
               + self.lab.vtysh("show bgp summary").strip().replace("\n", " | ")[:300])
        return ok, msg, took, [], {"routes": n, "next_hops": hops}

    def spread(self):
        got = self.lab.client_run(300)
        per = got["directors"]
        bad = [d for d in DIRECTORS.values() if not 70 <= per.get(d, 0) <= 130]
        disagree = same_real_everywhere(got["chosen"])
        ok = got["errors"] == 0 and not bad and not disagree
        msg = (f"{got['errors']} errors; per director " + ", ".join(f"{d} {per.get(d, 0)}" for d in sorted(DIRECTORS.values()))
               + f"; {len(got['chosen'])} client addresses, {len(disagree)} with directors disagreeing on the real server")
        details = [f"first error: {got['first_error']}"] if got["errors"] else []
        details += [f"outside 100 +/- 30: {', '.join(bad)}"] if bad else []
        return ok, msg, None, details, {"per_director": per, "errors": got["errors"], "disagree": disagree}

    def kill(self):
        order = self.lab.hop_order()
        if len(order) == 3:
            # NAT: the middle hop (an end hop would move some survivors' flows too: docs/bgp.md);
            # direct: an end hop, the harder case, and every flow must continue
            self.victim = next(n for n, ip in DIRECTORS.items() if ip == order[0 if self.direct else 1])
        r = kill_survival(self.lab, self.victim, count=150)
        withdrawn = r["withdraw_s"] is not None and r["withdraw_s"] <= HOLD
        ok = withdrawn and r["failed_open"] == 0 and r["survivor_failures"] == 0 and r["survivor_conns"] > 0
        if self.direct:
            ok = ok and r["dead_continued"] == r["dead_conns"] and not r["unattributed"]
        frac = "-" if r["dead_fraction"] is None else f"{r['dead_fraction'] * 100:.0f} %"
        msg = (f"killed {self.victim} ({r['dead']}); next hop withdrawn "
               + (f"in {r['withdraw_s']:.2f} s" if r["withdraw_s"] is not None else "NOT within the hold time")
               + f" (hold {HOLD} s); survivors' connections: {r['survivor_failures']}/{r['survivor_conns']} failed; "
               f"dead director's connections that continue: {r['dead_continued']}/{r['dead_conns']} ({frac})")
        details = [f"survivor failure: {e}" for e in r["survivor_examples"]]
        if r["dead_failures"]:
            details.append("dead director's connections ended by: "
                           + ", ".join(f"{k} x{v}" for k, v in sorted(r["dead_failures"].items())))
        return ok, msg, r["withdraw_s"], details, r

    def rejoin(self):
        t0 = time.monotonic()
        self.lab.start_director(self.victim)
        took = self.lab.wait_next_hops(self.allhops, 60)
        got = self.lab.client_run(60) if took is not None else {"errors": -1, "directors": {}}
        carried = got["directors"].get(DIRECTORS[self.victim], 0)
        ok = took is not None and got["errors"] == 0 and carried > 0
        msg = (f"{self.victim} back as a next hop {time.monotonic() - t0:.2f} s after its start; "
               if took is not None else f"{self.victim} not back as a next hop within 60 s; ")
        msg += f"60 connections, {got['errors']} errors, {carried} through {self.victim}"
        return ok, msg, took, [], {"per_director": got["directors"]}

    def status(self):
        snap = self.lab.status("d1").get("bgp") or {}
        peers = snap.get("peers") or {}
        state = (next(iter(peers.values()), {}) or {}).get("state")
        text = self.lab.nodes["d1"].run([sys.executable, "-I", "-c",
                                         f"import urllib.request; print(urllib.request.urlopen('{METRICS_URL}', "
                                         "timeout=5).read().decode())"], check=False).stdout
        up = any(line.startswith("chimeha_bgp_session_up{") and line.rstrip().endswith(" 1.0")
                 for line in text.splitlines())
        announced = f'chimeha_bgp_announced{{prefix="{VIP}/32"}} 1.0' in text
        ok = state == "Established" and snap.get("announced") == [f"{VIP}/32"] and up and announced
        msg = (f"status: peer {', '.join(peers) or 'none'} {state}, announced {snap.get('announced')}; "
               f"/metrics: session_up {'1' if up else 'missing/0'}, announced {'1' if announced else 'missing/0'}")
        return ok, msg, None, [], {"state": state, "announced": snap.get("announced")}

    def sigterm(self):
        name = "d3" if self.victim != "d3" else "d1"
        t0 = time.monotonic()
        self.lab.stop_director(name)
        took = time.monotonic() - t0
        hops = self.lab.next_hops()
        ok = hops == self.allhops - {DIRECTORS[name]}
        msg = (f"{name} stopped in {took:.2f} s; next hops right after: {', '.join(sorted(hops)) or 'none'}"
               + ("" if ok else f" (still has {DIRECTORS[name]} or lost another)"))
        return ok, msg, took, [], {"next_hops": sorted(hops)}


def run_bgp_lab(tag: str = "lab-bgp", progress: Callable[[str], None] | None = None,
                forwarding: str = "nat") -> BgpReport:
    """Build the lab, run every step (stopping at the first failure), tear it down."""
    say = progress or (lambda _t: None)
    t0 = time.monotonic()
    lab = BgpLab(tag, forwarding=forwarding)
    report = BgpReport([], 0.0, str(lab.logdir), prefix=lab.topo.prefix)
    try:
        say(f"building: FRR router, client, 3 directors (chime-ha, nft, lb_algo mh, forwarding {forwarding}), "
            "2 real servers")
        lab.build()
        checks = _Checks(lab)
        for n, (name, title) in enumerate(STEPS, 1):
            say(f"[{n}/{len(STEPS)}] {title} ...")
            s0 = time.monotonic()
            try:
                ok, msg, secs, details, measured = getattr(checks, name)()
            except Exception as exc:  # a broken step is a FAIL with its reason, never a traceback
                ok, msg, secs, details, measured = False, f"{type(exc).__name__}: {exc}", None, [], {}
            step = BgpStep(n, name, title, ok, msg, secs, details, measured)
            report.steps.append(step)
            say(format_step(step) + f"  [{time.monotonic() - s0:.1f} s]")
            if not ok:
                break
    except KeyboardInterrupt:
        report.interrupted = True
    except Exception as exc:
        report.error = f"{type(exc).__name__}: {exc}"
    finally:
        lab.close()
        report.duration = time.monotonic() - t0
    return report


def format_step(s: BgpStep) -> str:
    head = f"[{s.n}] {'PASS' if s.ok else 'FAIL'}  {s.title}"
    if s.seconds is not None:
        head += f"  ({s.seconds:.2f} s)"
    return "\n".join([head, f"      {s.message}", *(f"      {d}" for d in s.details)])


def format_report(report: BgpReport) -> str:
    passed = sum(s.ok for s in report.steps)
    lines = [f"Summary: bgp lab (chime-ha on {', '.join(DIRECTORS)}; FRR router): "
             f"{passed}/{len(STEPS)} steps passed in {report.duration:.1f} s"]
    for s in report.steps:
        t = f"   {s.seconds:6.2f} s" if s.seconds is not None else ""
        lines.append(f"  {'PASS' if s.ok else 'FAIL'}  {s.name:<10}{t}")
    for name, _title in STEPS[len(report.steps):]:
        lines.append(f"  SKIP  {name:<10}   (not run: an earlier step failed)")
    kill = next((s for s in report.steps if s.name == "kill"), None)
    if kill and kill.measured.get("dead_conns"):
        m = kill.measured
        lines.append(f"  dead director's established connections that continued: {m['dead_continued']}/"
                     f"{m['dead_conns']}")
    lines += report_footer(report)
    return "\n".join(lines)


def report_json(report: BgpReport) -> str:
    return json.dumps(report.as_dict())

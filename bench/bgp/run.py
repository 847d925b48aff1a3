"""BGP/ECMP benchmark: new-connection rate through 1, 2 and 3 CPU-limited directors, and convergence.

The topology is the BGP lab (``chimeha.lab.bgp``: an FRR router doing L4 ECMP,
a client behind it, three chime-ha directors, two real servers). Each
director's chime-ha (and everything it starts: bgpd, nft, vtysh) runs in a CPU
cgroup this script creates and removes, with a CFS quota of ``--quota`` CPUs,
so that on a small shared machine a director's CPU, not the machine, bounds
its throughput. The directors use the userspace proxy data plane by default
(``--dataplane proxy``: every connection costs the director's own CPU, which
the quota limits); the kernel nft path forwards in softirq context, which no
cgroup quota charges, so its rate does not scale with directors here (try
``--dataplane nft`` to see).

Rates: for 1, 2 and 3 directors (the others stopped with SIGTERM, so the
router has exactly that many next hops), ``--parallel`` client workers open
connections (connect, one line, the answer, close) for ``--seconds``;
alternating over ``--rounds`` rounds so drift hits every count alike.

Convergence (``--repeat`` times): SIGKILL of the middle director's chime-ha
-> its next hop gone from the router's FIB; start -> back; SIGTERM -> gone.

    sudo .venv/bin/python bench/bgp/run.py [--quota 0.1] [--seconds 5] [--parallel 64] [--rounds 3] [--repeat 5]
        [--dataplane proxy|nft] [--out bench/bgp/RESULTS.md]

cgroups: v2 ``cpu.max`` where the cgroup2 hierarchy has the cpu controller;
on a hybrid host whose cpu controller is bound to cgroup v1 (this machine),
v1 ``cpu.cfs_quota_us``/``cpu.cfs_period_us`` (the same CFS bandwidth control).
Stock sysctls (the lab sets only ip_forward and the router's multipath hash
policy, inside its namespaces).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT / "src"))

from chimeha.lab import bgp_apps  # noqa: E402
from chimeha.lab.bgp import CLIENT_SOURCES, DIRECTORS, VIP, BgpLab  # noqa: E402

PERIOD_US = 100_000


class CpuCgroup:
    """One cgroup with a CPU quota (v2 cpu.max, else v1 CFS); removed by :meth:`remove`."""

    def __init__(self, name: str, cpus: float):
        self.path, self.v2 = _cgroup_root()
        self.path = self.path / name
        self.cpus = cpus
        self.path.mkdir(exist_ok=False)
        quota = int(cpus * PERIOD_US)
        if self.v2:
            (self.path / "cpu.max").write_text(f"{quota} {PERIOD_US}\n")
        else:
            (self.path / "cpu.cfs_period_us").write_text(f"{PERIOD_US}\n")
            (self.path / "cpu.cfs_quota_us").write_text(f"{quota}\n")
        # v1 accounts CPU time in the separate cpuacct hierarchy: a twin group there, for the usage
        self.acct = None if self.v2 else Path("/sys/fs/cgroup/cpuacct") / name
        if self.acct is not None:
            self.acct.mkdir(exist_ok=False)

    @property
    def kind(self) -> str:
        return "v2 cpu.max" if self.v2 else "v1 cpu.cfs_quota_us"

    def procs(self) -> list[str]:
        """The ``cgroup.procs`` files a process is written to (the quota's group, v1's cpuacct twin)."""
        return [str(d / "cgroup.procs") for d in (self.path, self.acct) if d is not None]

    def unlimit(self) -> None:
        """No quota (the convergence runs: they time the protocol, not a starved director)."""
        if self.v2:
            (self.path / "cpu.max").write_text(f"max {PERIOD_US}\n")
        else:
            (self.path / "cpu.cfs_quota_us").write_text("-1\n")

    def stat(self) -> dict[str, int]:
        out = {}
        for line in (self.path / "cpu.stat").read_text().splitlines():
            k, _, v = line.partition(" ")
            out[k] = int(v)
        return out

    def remove(self) -> None:
        for d in (self.path, self.acct):
            for _ in range(50):
                if d is None or not d.exists():
                    break
                try:
                    d.rmdir()
                except OSError:
                    time.sleep(0.1)  # processes still leaving
            if d is not None and d.exists():
                print(f"warning: could not remove {d}", file=sys.stderr)


def _cgroup_root() -> tuple[Path, bool]:
    for mnt in (Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/unified")):
        ctl = mnt / "cgroup.controllers"
        if ctl.exists() and "cpu" in ctl.read_text().split():
            if "cpu" not in (mnt / "cgroup.subtree_control").read_text().split():
                (mnt / "cgroup.subtree_control").write_text("+cpu\n")
            return mnt, True
    v1 = Path("/sys/fs/cgroup/cpu")
    if (v1 / "cpu.cfs_quota_us").exists():
        return v1, False
    raise SystemExit("no cgroup with the cpu controller (neither cgroup2 with cpu nor v1 cpu)")


def _busy_usec(cg: CpuCgroup) -> int:
    s = cg.stat()
    return s.get("usage_usec", 0) if cg.v2 else _v1_usage(cg)


def _v1_usage(cg: CpuCgroup) -> int:
    try:
        return int((cg.acct / "cpuacct.usage").read_text()) // 1000
    except (FileNotFoundError, ValueError):
        return -1


def set_directors(lab: BgpLab, active: list[str]) -> float:
    """Exactly ``active`` run (others SIGTERMed); returns seconds until the router agrees."""
    for name in DIRECTORS:
        if name not in active and name in lab.daemons:
            lab.stop_director(name)
    for name in active:
        if name not in lab.daemons:
            lab.start_director(name)
    took = lab.wait_next_hops({DIRECTORS[n] for n in active}, 60)
    if took is None:
        raise SystemExit(f"router did not converge on {active}: {lab.next_hops()}")
    time.sleep(1.5)  # health checks up, proxy listeners open
    return took


def rate(lab: BgpLab, seconds: float, parallel: int) -> dict:
    out = lab.nodes["client"].run([sys.executable, "-I", "-c", bgp_apps.RATE, VIP, str(seconds), str(parallel),
                                   ",".join(CLIENT_SOURCES)], timeout=seconds + 60).stdout
    return json.loads(out)


def measure_rates(lab: BgpLab, cgroups: dict[str, CpuCgroup], args) -> dict[int, list[dict]]:
    results: dict[int, list[dict]] = {1: [], 2: [], 3: []}
    for rnd in range(args.rounds):
        for n in (1, 2, 3):
            active = list(DIRECTORS)[:n]
            set_directors(lab, active)
            before = {d: cgroups[d].stat() for d in active}
            busy0 = {d: _busy_usec(cgroups[d]) for d in active}
            r = rate(lab, args.seconds, args.parallel)
            after = {d: cgroups[d].stat() for d in active}
            r["cpu_s"] = {d: round((_busy_usec(cgroups[d]) - busy0[d]) / 1e6, 2) for d in active}
            r["throttled"] = {d: after[d].get("nr_throttled", 0) - before[d].get("nr_throttled", 0) for d in active}
            results[n].append(r)
            print(f"round {rnd + 1} directors {n}: {r['rate']:.0f} conn/s, errors {r['errors']}, "
                  f"per director {r['directors']}, cpu s {r['cpu_s']}, throttled {r['throttled']}", flush=True)
    return results


def measure_convergence(lab: BgpLab, repeat: int) -> dict[str, list[float]]:
    allhops = set(DIRECTORS.values())
    set_directors(lab, list(DIRECTORS))
    out: dict[str, list[float]] = {"withdraw after SIGKILL": [], "rejoin after start": [],
                                   "withdraw after SIGTERM": []}
    for i in range(repeat):
        order = lab.hop_order()
        victim = next(n for n, ip in DIRECTORS.items() if ip == order[1])
        left = allhops - {DIRECTORS[victim]}
        t0 = time.monotonic()
        lab.kill_director(victim)
        lab.wait_next_hops(left, 15)
        out["withdraw after SIGKILL"].append(time.monotonic() - t0)
        t0 = time.monotonic()
        lab.start_director(victim)
        lab.wait_next_hops(allhops, 60)
        out["rejoin after start"].append(time.monotonic() - t0)
        time.sleep(1.0)
        t0 = time.monotonic()
        lab.stop_director(victim)
        lab.wait_next_hops(left, 15)
        out["withdraw after SIGTERM"].append(time.monotonic() - t0)
        lab.start_director(victim)
        lab.wait_next_hops(allhops, 60)
        time.sleep(1.0)
        print(f"convergence {i + 1}: " + ", ".join(f"{k} {v[-1]:.3f} s" for k, v in out.items()), flush=True)
    return out


def report(args, rates, conv, kind: str, load: tuple[str, str]) -> str:
    med = {n: statistics.median(r["rate"] for r in rs) for n, rs in rates.items()}
    lines = ["# BGP/ECMP benchmark (`bench/bgp/run.py`)", "",
             f"Command: `sudo .venv/bin/python bench/bgp/run.py --quota {args.quota} --seconds {args.seconds} "
             f"--rounds {args.rounds} --parallel {args.parallel} --repeat {args.repeat} --dataplane {args.dataplane}`",
             f"Machine: {platform.node()}, {os.cpu_count()} CPUs, kernel {platform.release()}; "
             f"load average before: {load[0]}, after: {load[1]} (shared with other jobs).",
             f"Each director's chime-ha (+ bgpd) in its own cgroup, quota {args.quota} CPU ({kind}); "
             f"data plane `{args.dataplane}`, `lb_algo mh`; client: {args.parallel} asyncio workers, "
             f"connect + one line + answer + close; stock sysctls.", "",
             "## New-connection rate", "",
             "| directors | median conn/s | vs 1 director | rounds (conn/s) | errors | director CPU s (last round) |",
             "|---|---|---|---|---|---|"]
    for n, rs in rates.items():
        each = ", ".join(f"{r['rate']:.0f}" for r in rs)
        lines.append(f"| {n} | {med[n]:.0f} | {med[n] / med[1]:.2f}x | {each} | "
                     f"{sum(r['errors'] for r in rs)} | {rs[-1]['cpu_s']} |")
    lines += ["", f"Per director (last round of 3): {rates[3][-1]['directors']}; CFS periods throttled: "
              f"{rates[3][-1]['throttled']}.", "", "## Convergence (router FIB, `ip -j route` polled every 50 ms; CPU quota lifted)", "",
              "Victim: the middle next hop of the router's route; hold time 3 s, keepalive 1 s, "
              "connect retry 1 s; chime-ha's BGP reconcile tick 0.2 s.", "",
              "| event | median s | min s | max s | runs |", "|---|---|---|---|---|"]
    for k, v in conv.items():
        lines.append(f"| {k} | {statistics.median(v):.3f} | {min(v):.3f} | {max(v):.3f} | {len(v)} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quota", type=float, default=0.1, help="CPUs per director (CFS quota)")
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--parallel", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=5, help="convergence repetitions")
    ap.add_argument("--dataplane", choices=("proxy", "nft"), default="proxy")
    ap.add_argument("--out", default=None, help="write the Markdown report here")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("needs root (namespaces, cgroups)")
    load0 = open("/proc/loadavg").read().split()[0]
    tag = f"bb{os.getpid() % 1000}"
    cgroups = {d: CpuCgroup(f"chimeha-bench-bgp-{os.getpid()}-{d}", args.quota) for d in DIRECTORS}
    try:
        with BgpLab(tag, dataplane=args.dataplane, cgroups={d: cg.procs() for d, cg in cgroups.items()}) as lab:
            set_directors(lab, list(DIRECTORS))
            check = subprocess.run(["cat", str(next(iter(cgroups.values())).path / "cgroup.procs")],
                                   capture_output=True, text=True).stdout.split()
            if not check:
                raise SystemExit("the director's processes did not land in its cgroup")
            rates = measure_rates(lab, cgroups, args)
            for cg in cgroups.values():
                cg.unlimit()
            conv = measure_convergence(lab, args.repeat)
    finally:
        for cg in cgroups.values():
            cg.remove()
    load1 = open("/proc/loadavg").read().split()[0]
    text = report(args, rates, conv, next(iter(cgroups.values())).kind, (load0, load1))
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

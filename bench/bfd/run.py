"""BFD benchmark: link cut -> VIP on server2, chime-ha vs keepalived, with and without BFD, in one run.

On ONE seed topology (:class:`chimeha.lab.cluster.SeedCluster`: server1,
server2, client on one bridge, the seed's active-standby configs) the daemons
take turns, round after round, so drift on a shared machine hits both alike:

* ``vrrp``: the seed's configs, unmodified (VRRPv2, advert_int 1);
* ``bfd``: the same plus a ``bfd_instance peer`` between the two servers
  (min_tx/min_rx 50 ms, multiplier 3) and, in server2's VI_1,
  ``track_bfd { peer weight 60 reverse }`` (the issue's keepalived setup).

Per turn: start the daemons, wait until the VIP is on server1 only and (bfd)
the session has had time to come Up at 50 ms, cut server1's link, time the
VIP's appearance on server2 (``ip monitor`` inside the node), restore.

Then CPU and memory with 1 and 100 BFD sessions at 50 ms x 3 between the two
servers (no VRRP instance; 100 address pairs on the lab bridge), per daemon.

    sudo .venv/bin/python bench/bfd/run.py [--rounds 5] [--daemons keepalived,chime-ha]
                                           [--out bench/bfd/RESULTS.md]

Needs root and keepalived (built with --enable-bfd). Everything lives in
namespaces this script creates and removes.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shutil
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT / "src"))

from chimeha.lab.cluster import IFNAME, SERVERS, SeedCluster, seed_configs  # noqa: E402

_spec = importlib.util.spec_from_file_location("failover_run", ROOT / "bench" / "failover" / "run.py")
failover = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(failover)

VIP = "192.168.231.10"
VARIANTS = ("vrrp", "bfd")
TARGET = 0.25  # the target for the bfd variant (chime-ha)


def bfd_block(name: str, me: str, peer: str) -> str:
    return (f"bfd_instance {name} {{\n    neighbor_ip {peer}\n    source_ip {me}\n    min_rx 50\n"
            f"    min_tx 50\n    multiplier 3\n}}\n")


def variant_configs(variant: str) -> dict[str, str]:
    cfgs = seed_configs("active-standby")
    if variant == "vrrp":
        return cfgs
    s1, s2 = SERVERS["server1"], SERVERS["server2"]
    out = {"server1": bfd_block("peer", s1, s2) + "\n" + cfgs["server1"]}
    s2conf = cfgs["server2"]
    # track_bfd goes inside VI_1, next to its track_script
    s2conf = s2conf.replace("    track_script {", "    track_bfd {\n        peer weight 60 reverse\n    }\n"
                                                 "    track_script {", 1)
    assert "track_bfd" in s2conf
    out["server2"] = bfd_block("peer", s2, s1) + "\n" + s2conf
    return out


def sessions_config(node: str, count: int) -> str:
    """``count`` BFD sessions between address pairs 10.232.1.i (server1) and 10.232.2.i (server2)."""
    mine, theirs = ("1", "2") if node == "server1" else ("2", "1")
    return "".join(bfd_block(f"s{i}", f"10.232.{mine}.{i}", f"10.232.{theirs}.{i}") for i in range(1, count + 1))


def add_pair_addresses(cluster: SeedCluster, count: int) -> None:
    for node, third in (("server1", 1), ("server2", 2)):
        n = cluster.nodes[node]
        have = n.addresses_on(IFNAME)
        for i in range(1, count + 1):
            if f"10.232.{third}.{i}" not in have:
                n.run(["ip", "addr", "add", f"10.232.{third}.{i}/16", "dev", IFNAME])


def settle(cluster: SeedCluster, timeout: float = 20.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cluster.holders(VIP) == ["server1"]:
            return True
        time.sleep(0.05)
    return False


def cut_turn(cluster: SeedCluster, daemon: str, variant: str, log) -> dict:
    failover.start_turn(cluster, daemon, variant_configs(variant))
    if not settle(cluster):
        return {"error": f"VIP not on server1 only: {cluster.holders(VIP)}; "
                         + " | ".join(cluster.evidence("server1") + cluster.evidence("server2"))}
    time.sleep(4.0)  # BFD: slow start (1 s) then the Poll Sequence to 50 ms; VRRP: steady adverts
    if cluster.holders(VIP) != ["server1"]:
        return {"error": f"VIP moved before the cut: {cluster.holders(VIP)}"}
    t0 = time.monotonic()
    cluster.cut_link("server1")
    end = t0 + 8.0
    took = None
    while time.monotonic() < end:
        t = cluster.first_change("server2", VIP, True, t0)
        if t is not None:
            took = t - t0
            break
        time.sleep(0.01)
    cluster.restore_link("server1")
    settle(cluster)
    if took is None:
        return {"error": "VIP never reached server2 within 8 s"}
    log(f"    {daemon:<10} {variant:<5} link cut -> VIP on server2 after {took:.3f} s")
    return {"move": took}


def resource_turn(cluster: SeedCluster, daemon: str, count: int, settle_s: float, window: float) -> dict:
    cfgs = {n: sessions_config(n, count) for n in SERVERS}
    failover.start_turn(cluster, daemon, cfgs)
    time.sleep(settle_s)
    for node in SERVERS:
        if cluster.daemon_exit(node) is not None:
            return {"error": f"{daemon} on {node} exited: " + " | ".join(cluster.evidence(node))}
    up = count_up(cluster, daemon, "server1")
    return {"server1": failover.measure_idle(cluster, "server1", window),
            "server2": failover.measure_idle(cluster, "server2", window), "sessions_up": up}


def count_up(cluster: SeedCluster, daemon: str, node: str) -> int | None:
    """Sessions Up as the daemon's log tells (chime-ha: 'BFD to X up'; keepalived: '(sN) Entering Up state')."""
    lines = cluster.log_lines(node)
    pat = re.compile(r"BFD to (\S+) (up|down|init)" if daemon == "chime-ha" else r"\((s\d+)\) Entering (\w+) state")
    last: dict[str, str] = {}
    for ln in lines:
        m = pat.search(ln)
        if m:
            last[m.group(1)] = m.group(2).lower()
    return sum(1 for v in last.values() if v == "up")


def _stats(vals):
    vals = [v for v in vals if v is not None]
    if not vals:
        return {}
    return {"median": round(statistics.median(vals), 3), "min": round(min(vals), 3), "max": round(max(vals), 3),
            "n": len(vals)}


def markdown(cmd, mach, load, turns, resources, started, took, predict) -> str:
    L = ["# BFD benchmark: link cut -> VIP on server2, keepalived vs chime-ha", "",
         f"Command: `{cmd}`  ", f"Run: {started} UTC, {took:.0f} s  ",
         f"Machine: {mach['nproc']} CPUs ({mach['cpu']}), kernel {mach['kernel']}, Python {mach['python']}, "
         f"{mach['keepalived']}; load average at start {load[0]}, at end {load[1]} (shared machine)", "",
         "One seed topology (server1 192.168.231.11 MASTER priority 255, server2 .12 BACKUP 254, VRRPv2 "
         "advert_int 1); the daemons take turns, round after round. `vrrp`: the seed's configs. `bfd`: plus "
         "`bfd_instance peer` (min_tx/min_rx 50 ms, multiplier 3) on both servers and "
         "`track_bfd { peer weight 60 reverse }` in server2's VI_1. VIP move = server1's bridge port down -> "
         "192.168.231.10 added on server2 (`ip monitor` in the node). Seconds, median (min-max) over the rounds.",
         "", "| settings | keepalived | chime-ha | `chime-ha simulate` predicts |", "|---|---|---|---|"]
    for v in VARIANTS:
        if v not in turns:
            continue
        cells = []
        for d in ("keepalived", "chime-ha"):
            st = _stats([r.get("move") for r in turns[v].get(d, [])])
            cells.append("n/a" if not st else f"{st['median']:.3f} ({st['min']:.3f}-{st['max']:.3f}), n={st['n']}")
        p = predict.get(v)
        ptxt = p if isinstance(p, str) else f"{p[0]:.3f} .. {p[1]:.3f}"
        L.append(f"| {v} | {cells[0]} | {cells[1]} | {ptxt} |")
    errors = [f"- {v} {d} round {i + 1}: {r['error']}" for v, byd in turns.items() for d, rounds in byd.items()
              for i, r in enumerate(rounds) if "error" in r]
    if errors:
        L += ["", "Failed turns:", *errors]
    c = _stats([r.get("move") for r in turns.get("bfd", {}).get("chime-ha", [])])
    if c:
        L += ["", f"Target (issue 12): chime-ha with BFD under {TARGET} s: "
                  f"{'met' if c['median'] < TARGET else 'NOT met'} (median {c['median']:.3f} s)."]
    if resources:
        L += ["", "## CPU and memory of BFD sessions at 50 ms x 3", "",
              "N sessions between address pairs on the lab bridge (no VRRP instance), both servers running the "
              "same daemon; sum over the daemon's processes; CPU in % of one core over the window.", "",
              "| daemon | sessions | Up (server1 log) | node | processes | RSS MiB | PSS MiB | CPU % |",
              "|---|---|---|---|---|---|---|---|"]
        for (d, n), r in resources.items():
            if "error" in r:
                L.append(f"| {d} | {n} | - | - | - | - | - | failed: {r['error'][:200]} |")
                continue
            for node in ("server1", "server2"):
                m = r[node]
                L.append(f"| {d} | {n} | {r['sessions_up']} | {node} | {m['processes']} | {m['rss_mib']} | "
                         f"{m['pss_mib']} | {m['cpu_pct']} |")
    L.append("")
    return "\n".join(L)


def predictions() -> dict:
    """``chime-ha simulate``'s window for the link cut, per variant (chimeha.sim)."""
    out = {}
    try:
        from chimeha.lab.predict import predict_windows
        from chimeha.lab.runner import steps_for

        steps = [s for s in steps_for("active-standby") if s.name == "link-cut"]
        for v in VARIANTS:
            w = predict_windows("active-standby", variant_configs(v), steps).get("link-cut")
            out[v] = (w.low, w.high) if w is not None and w.low is not None else "no move predicted"
    except Exception as exc:  # the measured figures still count without the predictions
        out = {v: f"simulate failed: {type(exc).__name__}: {exc}"[:200] for v in VARIANTS}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--daemons", default="keepalived,chime-ha")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--sessions", default="1,100", help="session counts for CPU/memory ('' to skip)")
    ap.add_argument("--window", type=float, default=10.0)
    ap.add_argument("--settle", type=float, default=6.0, help="seconds between start and the CPU window")
    ap.add_argument("--out", default=str(HERE / "RESULTS.md"))
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("bench/bfd needs root (network namespaces)", file=sys.stderr)
        return 2
    daemons = [d for d in args.daemons.split(",") if d]
    variants = [v for v in args.variants.split(",") if v]
    counts = [int(c) for c in args.sessions.split(",") if c]
    log = lambda s: print(s, flush=True)  # noqa: E731
    started = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
    load0 = os.getloadavg()[0]
    t_start = time.monotonic()
    turns = {v: {d: [] for d in daemons} for v in variants}
    resources: dict = {}
    cluster = SeedCluster(mode="active-standby", daemons={n: daemons[0] for n in SERVERS}, tag="bbfd")
    try:
        cluster.build()
        for r in range(args.rounds):
            for v in variants:
                for d in daemons:
                    log(f"[round {r + 1}/{args.rounds}] {d} {v}")
                    turns[v][d].append(cut_turn(cluster, d, v, log))
        if counts:
            add_pair_addresses(cluster, max(counts))
        for n in counts:
            for d in daemons:
                log(f"[resources] {d} with {n} BFD session(s)")
                resources[(d, n)] = resource_turn(cluster, d, n, settle_s=args.settle, window=args.window)
                log(f"    {json.dumps(resources[(d, n)])}")
    except KeyboardInterrupt:
        log("interrupted: tearing down")
        return 130
    finally:
        cluster.close()
        shutil.rmtree(cluster.logdir, ignore_errors=True)
    took = time.monotonic() - t_start
    cmd = "sudo .venv/bin/python bench/bfd/run.py " + " ".join(argv if argv is not None else sys.argv[1:])
    text = markdown(cmd.strip(), failover.machine(), (round(load0, 2), round(os.getloadavg()[0], 2)), turns,
                    resources, started, took, predictions())
    Path(args.out).write_text(text)
    if args.json:
        Path(args.json).write_text(json.dumps({"turns": turns, "resources": {f"{d}/{n}": v for (d, n), v in
                                                                            resources.items()}}, indent=2))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

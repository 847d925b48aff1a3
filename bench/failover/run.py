"""Failover benchmark: keepalived vs chime-ha on the seed's topology, in one run.

On ONE lab topology (server1, server2, client: :class:`chimeha.lab.cluster.SeedCluster`)
the daemons take turns, round after round, so drift on a shared machine hits
both alike. For each daemon and each settings variant:

* ``seed``: the seed's active-standby configs, unmodified (VRRPv2, advert_int 1,
  check every 2 s);
* ``v3-fast``: the same with ``vrrp_version 3`` and ``advert_int 0.1``
  (the check interval stays the seed's 2 s);

it measures, per scenario (service stop, service start, link cut, link
restore), the VIP move time (action -> the address appears on / leaves the
node, from ``ip monitor`` in the nodes) and the client-visible outage (a
client probing every endpoint through the VIP every 20 ms). Then memory
(RSS and PSS of the daemon's processes) and idle CPU with 1 and 100 VRRP
instances per node (a master/backup pair exchanging adverts at advert_int 1).

    sudo .venv/bin/python bench/failover/run.py [--rounds 3] [--daemons keepalived,chime-ha]
                                                [--out bench/failover/RESULTS.md]

Needs root and keepalived. Everything lives in namespaces this script creates
and removes (also on Ctrl-C).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT / "src"))

from chimeha.lab.cluster import CONF_PATH, IFNAME, SERVERS, SeedCluster, seed_configs  # noqa: E402
from chimeha.lab.node import child_pids  # noqa: E402
from chimeha.lab.predict import TOLERANCE as SIM_TOLERANCE, Window, predict_windows  # noqa: E402
from chimeha.lab.runner import LabRunner, format_step, steps_for  # noqa: E402

SCENARIOS = ("service-stop", "service-start", "link-cut", "link-restore")
VARIANTS = ("seed", "v3-fast")
TOLERANCE = (0.05, 0.05)  # chime-ha may be 5% + 50 ms slower than keepalived
FAST_LINK_CUT_LIMIT = 0.4


def variant_configs(variant: str) -> dict[str, str]:
    """The seed's configs, or the v3 / advert_int 0.1 variant of them."""
    cfgs = seed_configs("active-standby")
    if variant == "seed":
        return cfgs
    out = {}
    for name, text in cfgs.items():
        text = re.sub(r"^(\s*advert_int\s+)1\b", r"\g<1>0.1", text, flags=re.MULTILINE)
        out[name] = "global_defs {\n    vrrp_version 3\n}\n\n" + text
    return out


def many_instances_config(node: str, count: int) -> str:
    """``count`` VRRP instances (VRIDs 1..count), each with its own VIP, seed-style."""
    prio = 255 if node == "server1" else 254
    state = "MASTER" if node == "server1" else "BACKUP"
    parts = ['vrrp_script chk_server {\n    script "/usr/bin/pgrep chime-server"\n    interval 2\n}\n']
    for i in range(1, count + 1):
        vip = "192.168.231.10" if i == 1 else f"10.231.{i // 250}.{i % 250 + 1}"
        parts.append(
            f"vrrp_instance VI_{i} {{\n    state {state}\n    interface {IFNAME}\n    virtual_router_id {i}\n"
            f"    priority {prio}\n    advert_int 1\n    authentication {{\n        auth_type PASS\n"
            f"        auth_pass 1111\n    }}\n    virtual_ipaddress {{\n        {vip}\n    }}\n"
            f"    track_script {{\n        chk_server\n    }}\n}}\n")
    return "\n".join(parts)


# -- process accounting -------------------------------------------------------------------
def _tree(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(child_pids(p))
    return out


def daemon_pids(cluster: SeedCluster, node: str) -> list[int]:
    """Host PIDs of the daemon's processes (not the nsenter wrapper)."""
    run = cluster.daemon_runs[node]
    return [p for k in child_pids(run.proc.pid) for p in _tree(k)]


def _status_kb(pid: int, field: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except FileNotFoundError:
        pass
    return 0


def _pss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            for line in fh:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except FileNotFoundError:
        pass
    return 0


def _cpu_ticks(pid: int) -> int:
    """utime+stime of the process plus its reaped children (check scripts)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return sum(int(x) for x in fields[11:15])
    except FileNotFoundError:
        return 0


def measure_idle(cluster: SeedCluster, node: str, window: float) -> dict:
    pids = daemon_pids(cluster, node)
    tck = os.sysconf("SC_CLK_TCK")
    c0, t0 = sum(_cpu_ticks(p) for p in pids), time.monotonic()
    time.sleep(window)
    pids = daemon_pids(cluster, node)
    c1, t1 = sum(_cpu_ticks(p) for p in pids), time.monotonic()
    return {
        "processes": len(pids),
        "rss_mib": round(sum(_status_kb(p, "VmRSS") for p in pids) / 1024, 1),
        "pss_mib": round(sum(_pss_kb(p) for p in pids) / 1024, 1),
        "cpu_pct": round(100.0 * (c1 - c0) / tck / (t1 - t0), 2),
    }


# -- driving the cluster --------------------------------------------------------------------
def clear_vips(cluster: SeedCluster) -> None:
    """Remove VIPs a crashed daemon may have left, so every turn starts clean."""
    for node in cluster.nodes.values():
        for addr in node.addresses_on(IFNAME):
            if addr not in SERVERS.values() and ":" not in addr:
                node.run(["ip", "addr", "del", f"{addr}/32", "dev", IFNAME], check=False)


def start_turn(cluster: SeedCluster, daemon: str, configs: dict[str, str]) -> None:
    for name in list(cluster.daemon_runs):
        cluster.stop_daemon(name)
    clear_vips(cluster)
    for name, node in cluster.nodes.items():
        node.write_file(CONF_PATH, configs[name])
    cluster.configs = dict(configs)
    cluster.daemons = {n: daemon for n in SERVERS}
    cluster.start_daemons()


def check_interval(configs: dict[str, str]) -> float:
    m = re.search(r"vrrp_script\s+\S+\s*\{[^}]*?\binterval\s+([\d.]+)", configs["server1"])
    return float(m.group(1)) if m else 1.0


def wait_for_phase(ref: float, interval: float, offset: float) -> None:
    """Sleep until ``offset`` seconds after a check, counting checks from ``ref``."""
    now = time.monotonic()
    wait = (offset - (now - ref)) % interval
    time.sleep(wait)


def failover_turn(cluster: SeedCluster, daemon: str, variant: str, phase: float, log) -> dict:
    """One daemon, one variant: reach the steady state, then the four scenarios once.

    Service stop/start are noticed at the next run of the check script, so
    their times are mostly the check's phase. Every daemon gets the same
    phases (``phase`` in [0, 1) of the check interval, after the check that let
    server1 become master, i.e. the VIP's first appearance): medians then
    compare the daemons, not luck.
    """
    configs = variant_configs(variant)
    start_turn(cluster, daemon, configs)
    runner = LabRunner(cluster, progress=None)
    steps = steps_for("active-standby")
    since = time.monotonic()
    first = runner.run_step(1, steps[0], 6, since)
    if not first.ok:
        return {"error": first.message}
    ref = cluster.first_change("server1", "192.168.231.10", True, since) or since
    interval = check_interval(configs)
    out = {}
    for i, st in enumerate(steps[2:], 3):
        if st.name in ("service-stop", "service-start"):
            wait_for_phase(ref, interval, phase * interval)
        res = runner.run_step(i, st, 6, since)
        log(f"    {daemon:<10} {variant:<8} " + format_step(res).splitlines()[0])
        if not res.ok:
            return {**out, "error": f"{st.name}: {res.message}"}
        out[st.name] = {"move": res.vip_move_time, "outage": res.outage}
        time.sleep(0.3)  # let ARP caches and the prober settle between scenarios
    return out


def resource_turn(cluster: SeedCluster, daemon: str, count: int, settle: float, window: float) -> dict:
    cfgs = {n: many_instances_config(n, count) for n in SERVERS}
    start_turn(cluster, daemon, cfgs)
    time.sleep(settle)
    for node in SERVERS:
        if cluster.daemon_exit(node) is not None:
            return {"error": f"{daemon} on {node} exited with status {cluster.daemon_exit(node)}: "
                             + " | ".join(cluster.evidence(node))}
    vips_up = len([a for a in cluster.nodes["server1"].addresses_on(IFNAME) if a not in SERVERS.values()
                   and ":" not in a])
    return {"master": measure_idle(cluster, "server1", window), "backup": measure_idle(cluster, "server2", window),
            "vips_on_master": vips_up}


def simulate_windows(configs: dict[str, str]) -> dict:
    """``chime-ha simulate``'s VIP move window per scenario (:mod:`chimeha.lab.predict`, in-process).

    The action lands at a random phase of the checks and adverts; the window is
    the envelope of the simulated delays over every phase, so each measured move
    must lie inside it (plus the lab's tolerance for real-world latency).
    """
    try:
        windows = predict_windows("active-standby", configs, steps_for("active-standby"))
    except Exception as exc:  # the benchmark's figures still count without the predictions
        return {"error": f"{type(exc).__name__}: {exc}"[:300]}
    return {sc: {"min": w.low, "max": w.high, "event": w.event} for sc, w in windows.items() if sc in SCENARIOS}


# -- report -------------------------------------------------------------------------------------
def machine() -> dict:
    cpu = "unknown"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    kv = subprocess.run(["keepalived", "--version"], capture_output=True, text=True)
    kver = (kv.stdout + kv.stderr).splitlines()[0] if (kv.stdout + kv.stderr) else "?"
    return {"nproc": os.cpu_count(), "kernel": platform.release(), "cpu": cpu, "python": platform.python_version(),
            "keepalived": kver}


def _stats(vals: list[float]) -> dict:
    vals = [v for v in vals if v is not None]
    if not vals:
        return {}
    return {"median": round(statistics.median(vals), 3), "min": round(min(vals), 3), "max": round(max(vals), 3),
            "n": len(vals)}


def summarize(turns: dict) -> dict:
    """turns[variant][daemon] = list of per-round dicts -> per-scenario stats."""
    out: dict = {}
    for variant, by_daemon in turns.items():
        for daemon, rounds in by_daemon.items():
            for sc in SCENARIOS:
                for metric in ("move", "outage"):
                    vals = [r[sc][metric] for r in rounds if sc in r]
                    out.setdefault(variant, {}).setdefault(sc, {}).setdefault(metric, {})[daemon] = _stats(vals)
    return out


def _fmt(s: dict) -> str:
    if not s:
        return "n/a"
    return f"{s['median']:.3f} ({s['min']:.2f}-{s['max']:.2f})"


def verdict(summary: dict, variant: str, sc: str, metric: str) -> str:
    d = summary[variant][sc][metric]
    k, c = d.get("keepalived"), d.get("chime-ha")
    if not k or not c:
        return "n/a"
    limit = k["median"] * (1 + TOLERANCE[0]) + TOLERANCE[1]
    ok = c["median"] <= limit
    if variant == "v3-fast" and sc == "link-cut" and metric == "move":
        ok = ok and c["median"] <= FAST_LINK_CUT_LIMIT
    return "ok" if ok else f"WORSE (limit {limit:.3f})"


def markdown(cmd: str, mach: dict, summary: dict, turns: dict, resources: dict, started: str, took: float,
             predictions: dict | None = None) -> str:
    L = ["# Failover benchmark: keepalived vs chime-ha", "",
         f"Command: `{cmd}`  ", f"Run: {started} UTC, {took:.0f} s  ",
         f"Machine: {mach['nproc']} CPUs ({mach['cpu']}), kernel {mach['kernel']}, Python {mach['python']}, "
         f"{mach['keepalived']}", "",
         "One lab topology (server1, server2, client in namespaces on one bridge); the daemons take turns, "
         "round after round. VIP move = action -> VIP appears on the new holder (or, for link restore, leaves "
         "server2), from `ip monitor` inside the nodes. Outage = client-visible time without an answer through "
         "the VIP (probes every 20 ms to :8033, :8801, :8802; worst endpoint). Seconds, median (min-max) over "
         "the rounds. Service stop/start are noticed at the check script's next run (every 2 s): round r of R acts "
         "(r+0.5)/R of an interval after a check (timed from the VIP's first appearance), the same phases for both "
         "daemons.",
         ""]
    for variant in VARIANTS:
        if variant not in summary:
            continue
        title = {"seed": "seed settings (VRRPv2, advert_int 1)",
                 "v3-fast": "vrrp_version 3 + advert_int 0.1 (check interval 2 s)"}[variant]
        L += [f"## {title}", "", "| scenario | metric | keepalived | chime-ha | chime-ha vs target |",
              "|---|---|---|---|---|"]
        for sc in SCENARIOS:
            for metric in ("move", "outage"):
                d = summary[variant][sc][metric]
                L.append(f"| {sc} | {'VIP move' if metric == 'move' else 'client outage'} | "
                         f"{_fmt(d.get('keepalived', {}))} | {_fmt(d.get('chime-ha', {}))} | "
                         f"{verdict(summary, variant, sc, metric)} |")
        errors = [f"- {daemon} round {i + 1}: {r['error']}" for daemon, rounds in turns[variant].items()
                  for i, r in enumerate(rounds) if "error" in r]
        if errors:
            L += ["", "Failed turns:", *errors]
        L.append("")
    if predictions:
        early, late = SIM_TOLERANCE
        L += ["## Agreement with `chime-ha simulate`", "",
              "The window `chime-ha simulate` predicts for each scenario (same configs and addresses, the action "
              "swept over every phase of the checks and adverts, since the lab's action lands at a random one), "
              f"and the lab's measured range. Inside: every round within the window, at most {early * 1000:.0f} ms "
              f"early or {late * 1000:.0f} ms late (chimeha.lab.predict.TOLERANCE).", "",
              "| settings | scenario | simulate | daemon | lab min..max | inside |",
              "|---|---|---|---|---|---|"]
        for variant, pred in predictions.items():
            if "error" in pred:
                L.append(f"| {variant} | | simulate failed: {pred['error']} | | | |")
                continue
            for sc in SCENARIOS:
                p = pred.get(sc)
                if not p:
                    continue
                win = Window(sc, p["event"], p["min"], p["max"], 1, 1)
                shown = "no move" if p["min"] is None else f"{p['min']:.3f} .. {p['max']:.3f}"
                for daemon, rounds in turns.get(variant, {}).items():
                    vals = [r[sc]["move"] for r in rounds if sc in r]
                    if not vals:
                        continue
                    inside = all(win.contains(v) for v in vals)
                    lab = f"{min(v for v in vals if v is not None):.3f}..{max(v for v in vals if v is not None):.3f}" \
                        if any(v is not None for v in vals) else "no move"
                    L.append(f"| {variant} | {sc} | {shown} | {daemon} | {lab} | {'yes' if inside else 'NO'} |")
        L.append("")
    if resources:
        L += ["## Memory and idle CPU", "",
              "Each node runs N VRRP instances (VRIDs 1..N, one VIP each, the seed's track_script), server1 master, "
              "server2 backup, advert_int 1. Sum over the daemon's processes; idle CPU includes the check "
              "scripts it runs (reaped children), % of one core over the window.", "",
              "| daemon | instances | VIPs on master | role | processes | RSS MiB | PSS MiB | idle CPU % | "
              "chime-ha vs target |", "|---|---|---|---|---|---|---|---|---|"]
        for (daemon, count), r in resources.items():
            if "error" in r:
                L.append(f"| {daemon} | {count} | - | - | - | - | - | - | failed: {r['error'][:200]} |")
                continue
            for role in ("master", "backup"):
                m = r[role]
                ref = resources.get(("keepalived", count), {}).get(role) if daemon == "chime-ha" else None
                if ref:
                    worse = [name for name, key in (("RSS", "rss_mib"), ("CPU", "cpu_pct"))
                             if m[key] > ref[key] * (1 + TOLERANCE[0]) + (0.5 if key == "cpu_pct" else 0)]
                    v = "ok" if not worse else "WORSE: " + ", ".join(worse)
                else:
                    v = ""
                L.append(f"| {daemon} | {count} | {r['vips_on_master']} | {role} | {m['processes']} | "
                         f"{m['rss_mib']} | {m['pss_mib']} | {m['cpu_pct']} | {v} |")
        L += ["", "Idle CPU target: no worse than keepalived + 5% + 0.5 points (the figures are a few ticks "
              "of a 10 s window; single runs are noisy)."]
        L.append("")
    return "\n".join(L)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--daemons", default="keepalived,chime-ha")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--instances", default="1,100", help="instance counts for memory/CPU ('' to skip)")
    ap.add_argument("--idle-window", type=float, default=10.0)
    ap.add_argument("--out", default=str(HERE / "RESULTS.md"))
    ap.add_argument("--json", default=None, help="also write the raw numbers here")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("bench/failover needs root (network namespaces)", file=sys.stderr)
        return 2
    daemons = [d for d in args.daemons.split(",") if d]
    variants = [v for v in args.variants.split(",") if v]
    for v in variants:
        if v not in VARIANTS:
            ap.error(f"--variants: unknown {v!r} (expected {', '.join(VARIANTS)})")
    counts = [int(c) for c in args.instances.split(",") if c]
    log = lambda s: print(s, flush=True)  # noqa: E731
    started = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
    t_start = time.monotonic()
    turns: dict = {v: {d: [] for d in daemons} for v in variants}
    resources: dict = {}
    cluster = SeedCluster(mode="active-standby", daemons={n: daemons[0] for n in SERVERS}, tag="bfo")
    try:
        cluster.build()
        cluster.start_prober()
        for variant in variants:
            for r in range(args.rounds):
                for daemon in daemons:
                    log(f"[{variant} round {r + 1}/{args.rounds}] {daemon}")
                    phase = (r + 0.5) / args.rounds
                    turns[variant][daemon].append(failover_turn(cluster, daemon, variant, phase, log))
        for count in counts:
            for daemon in daemons:
                log(f"[resources] {daemon} with {count} instance(s)")
                resources[(daemon, count)] = resource_turn(cluster, daemon, count, settle=5.0,
                                                           window=args.idle_window)
                log(f"    {json.dumps(resources[(daemon, count)])}")
    except KeyboardInterrupt:
        log("interrupted: tearing down")
        return 130
    finally:
        cluster.close()
        shutil.rmtree(cluster.logdir, ignore_errors=True)
    took = time.monotonic() - t_start
    summary = summarize(turns)
    cmd = "sudo .venv/bin/python bench/failover/run.py " + " ".join(argv if argv is not None else sys.argv[1:])
    predictions = {v: simulate_windows(variant_configs(v)) for v in variants}
    text = markdown(cmd.strip(), machine(), summary, turns, resources, started, took, predictions)
    Path(args.out).write_text(text)
    if args.json:
        Path(args.json).write_text(json.dumps({"turns": turns, "summary": summary, "simulate": predictions,
                                               "resources": {f"{d}/{c}": v for (d, c), v in resources.items()}},
                                              indent=2))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

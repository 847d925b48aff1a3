"""Service stop -> VIP on server2, with the seed's configs unmodified: fast detection vs the interval.

On ONE seed lab topology (chimeha.lab.cluster.SeedCluster: server1, server2,
client in namespaces), the daemons take turns round after round:

* ``keepalived``: keepalived 2.2.7 on both servers;
* ``chime-ha``: ``chime-ha run`` (fast detection on, the default);
* ``chime-ha-off``: ``chime-ha run --fast-detect off`` (keepalived's schedule).

Each round: start the daemons, wait for the VIP on server1, wait for the
round's phase of the 2 s check interval (round r of R acts (r+0.5)/R of an
interval after the VIP first appeared: the same phases for every daemon),
stop chime-server on server1 (SIGTERM, as ``systemctl stop``; the clock starts
just before), and time the VIP's appearance on server2 from ``ip monitor``
inside the node. Then chime-server is started again and the VIP returns.

    sudo .venv/bin/python bench/failover/fast_detect.py [--rounds 8] [--out bench/failover/FAST_DETECT.md]

Needs root and keepalived. Everything lives in namespaces this script creates.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT / "src"))

import chimeha.lab.cluster as cluster_mod  # noqa: E402
from chimeha.lab.cluster import CONF_PATH, IFNAME, SERVERS, SeedCluster, seed_configs  # noqa: E402

VIP = "192.168.231.10"
DAEMONS = ("keepalived", "chime-ha", "chime-ha-off")
INTERVAL = 2.0  # the seed's vrrp_script interval
_plain_argv = cluster_mod.daemon_argv


def _argv(kind: str) -> list[str]:
    if kind == "chime-ha-off":
        return [*_plain_argv("chime-ha"), "--fast-detect", "off"]
    return _plain_argv(kind)


def _start(cluster: SeedCluster, daemon: str) -> None:
    for name in list(cluster.daemon_runs):
        cluster.stop_daemon(name)
    for node in cluster.nodes.values():
        for addr in node.addresses_on(IFNAME):
            if addr not in SERVERS.values() and ":" not in addr:
                node.run(["ip", "addr", "del", f"{addr}/32", "dev", IFNAME], check=False)
    for name, node in cluster.nodes.items():
        node.write_file(CONF_PATH, cluster.configs[name])
        cluster.start_service(name, "chime-server")
    kind = "chime-ha" if daemon.startswith("chime-ha") else daemon
    cluster.daemons = {n: kind for n in SERVERS}
    cluster_mod.daemon_argv = lambda k, d=daemon: _argv(d if k == "chime-ha" else k)
    try:
        cluster.start_daemons()
    finally:
        cluster_mod.daemon_argv = _plain_argv


def one_round(cluster: SeedCluster, daemon: str, phase: float) -> dict:
    since = time.monotonic()
    _start(cluster, daemon)
    if not cluster.wait_for(lambda: cluster.holders(VIP) == ["server1"], 15, "VIP on server1"):
        return {"error": f"VIP never settled on server1 (holders {cluster.holders(VIP)})"}
    ref = cluster.first_change("server1", VIP, True, since) or time.monotonic()
    time.sleep(1.0)  # a steady state: adverts flowing, the backup listening
    wait = (phase * INTERVAL - (time.monotonic() - ref)) % INTERVAL
    time.sleep(wait)
    t0 = time.monotonic()
    cluster.stop_service("server1", "chime-server")
    stopped = time.monotonic() - t0
    if not cluster.wait_for(lambda: cluster.first_change("server2", VIP, True, t0) is not None, 8, "VIP on server2"):
        return {"error": "the VIP never reached server2"}
    move = cluster.first_change("server2", VIP, True, t0) - t0
    cluster.start_service("server1", "chime-server")
    back = cluster.wait_for(lambda: cluster.holders(VIP) == ["server1"], 15, "VIP back on server1")
    return {"move": round(move, 4), "service_stop_took": round(stopped, 4), "returned": bool(back)}


def _stats(vals: list[float]) -> str:
    if not vals:
        return "-"
    return f"{statistics.median(vals):.3f} ({min(vals):.3f}-{max(vals):.3f})"


def machine() -> str:
    ka = subprocess.run(["keepalived", "--version"], capture_output=True, text=True)
    kav = (ka.stderr or ka.stdout).splitlines()[0] if (ka.stderr or ka.stdout) else "?"
    return (f"{os.cpu_count()} CPUs, kernel {platform.release()}, Python {platform.python_version()}, {kav}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--daemons", default=",".join(DAEMONS))
    ap.add_argument("--out", default=str(HERE / "FAST_DETECT.md"))
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("bench/failover/fast_detect.py needs root (network namespaces)", file=sys.stderr)
        return 2
    daemons = [d for d in args.daemons.split(",") if d]
    results: dict[str, list[dict]] = {d: [] for d in daemons}
    started = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
    t_start = time.monotonic()
    cluster = SeedCluster(mode="active-standby", configs=seed_configs("active-standby"), tag="bfd",
                          daemons={n: "chime-ha" for n in SERVERS})
    try:
        cluster.build()
        for r in range(args.rounds):
            for d in daemons:
                res = one_round(cluster, d, (r + 0.5) / args.rounds)
                results[d].append(res)
                print(f"[round {r + 1}/{args.rounds}] {d:<13} {json.dumps(res)}", flush=True)
    except KeyboardInterrupt:
        return 130
    finally:
        cluster.close()
        shutil.rmtree(cluster.logdir, ignore_errors=True)
    took = time.monotonic() - t_start
    cmd = "sudo .venv/bin/python bench/failover/fast_detect.py " + " ".join(
        argv if argv is not None else sys.argv[1:])
    lines = [
        "# Fast failure detection: service stop -> VIP on server2 (seed configs, unmodified)", "",
        f"Command: `{cmd.strip()}`  ", f"Run: {started} UTC, {took:.0f} s  ", f"Machine: {machine()}", "",
        "The seed tracks `/usr/bin/pgrep chime-server` every 2 s (server1 priority 255, server2 254, "
        "VRRPv2, advert_int 1). Time from just before `systemctl stop chime-server` on server1 (SIGTERM "
        "to the stand-in, which exits within a few ms) to the VIP's appearance on server2 (`ip monitor` "
        "in the node). Round r of R acts (r+0.5)/R of a check interval after the VIP first appeared, the "
        "same phases for every daemon. Seconds: median (min-max).", "",
        "| daemon | rounds | VIP move | target |", "|---|---|---|---|",
    ]
    for d in daemons:
        vals = [x["move"] for x in results[d] if "move" in x]
        errs = [x["error"] for x in results[d] if "error" in x]
        target = ""
        if d == "chime-ha" and vals:
            target = "ok (< 0.1 s)" if statistics.median(vals) < 0.1 else "MISSED (>= 0.1 s)"
        lines.append(f"| {d} | {len(vals)}{f' ({len(errs)} failed)' if errs else ''} | {_stats(vals)} | {target} |")
    lines += ["", "`chime-ha-off` is `chime-ha run --fast-detect off`: the script runs on its interval only, "
              "as keepalived's does.", "", "Per round (s):", "",
              "| round | " + " | ".join(daemons) + " |", "|---|" + "---|" * len(daemons)]
    for r in range(args.rounds):
        cells = []
        for d in daemons:
            x = results[d][r] if r < len(results[d]) else {}
            cells.append(f"{x['move']:.3f}" if "move" in x else x.get("error", "-"))
        lines.append(f"| {r + 1} | " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    Path(args.out).write_text(text)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

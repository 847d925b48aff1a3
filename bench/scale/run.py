"""Scale benchmark: many VRRP instances moving together, keepalived vs chime-ha in one run.

On ONE lab topology (server1, server2 and a client, each a lab node on one
bridge) the daemons take turns, round after round, so drift on a shared
machine hits both alike. Each node runs N VRRP instances (VRIDs 1..N, one VIP
each, VRRPv2, advert_int 1, server1 priority 200, server2 priority 100). Per
turn:

* **cold start**: the daemon is started on server1 alone; time from the
  start of the process to the first VIP and to all N VIPs present (``ip
  monitor`` inside the node timestamps every address change on arrival);
* **link cut**: the daemon also runs on server2 (backup); server1's cable is
  pulled. Time to the first VIP on server2, and the *spread*: first to last
  of the N VIPs present on server2;
* **handback** (preemption): the cable is plugged back in; server1 recovers
  and takes the VIPs back from the lower-priority server2. The client pings
  the first and the last VIP every 20 ms throughout; lost pings are counted.
  From the ``ip monitor`` timestamps, per VIP, how long server1 held it
  before server2 removed it (negative: a gap with no holder).

    sudo .venv/bin/python bench/scale/run.py [--instances 200] [--rounds 3]
                                             [--daemons keepalived,chime-ha] [--out bench/scale/RESULTS.md]

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
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT / "src"))

from chimeha.lab.cluster import CONF_PATH, IFNAME, AddrEvent, VipWatcher, daemon_argv  # noqa: E402
from chimeha.lab.netns import Topology  # noqa: E402
from chimeha.lab.node import add_node  # noqa: E402

NODES = {"server1": "10.232.0.11", "server2": "10.232.0.12"}
CLIENT = ("client", "10.232.0.100")
PREFIXLEN = 16
PING_INTERVAL = 0.02


def vip(i: int) -> str:
    """The VIP of instance ``i`` (1-based): 10.232.1.1, 10.232.1.2, ... inside the lab /16."""
    return f"10.232.{1 + (i - 1) // 250}.{(i - 1) % 250 + 1}"


def config(node: str, count: int, advert_int: float, priorities: tuple[int, int] = (200, 100)) -> str:
    prio, state = (priorities[0], "MASTER") if node == "server1" else (priorities[1], "BACKUP")
    parts = []
    for i in range(1, count + 1):
        parts.append(
            f"vrrp_instance VI_{i} {{\n    state {state}\n    interface {IFNAME}\n    virtual_router_id {i}\n"
            f"    priority {prio}\n    advert_int {advert_int:g}\n    authentication {{\n"
            f"        auth_type PASS\n        auth_pass 1111\n    }}\n"
            f"    virtual_ipaddress {{\n        {vip(i)}/32\n    }}\n}}\n")
    return "\n".join(parts)


class Lab:
    """Two servers and a client on one bridge, with an ``ip monitor`` watcher in each server."""

    def __init__(self, tag: str = "scl"):
        self.topo = Topology(tag)
        self.nodes = {}
        self.client = None
        self.events: list[AddrEvent] = []
        self.lock = threading.Lock()
        self.watchers: dict[str, VipWatcher] = {}
        self.runs: dict[str, subprocess.Popen] = {}
        self.logdir = Path(tempfile.mkdtemp(prefix="chime-ha-scale-"))

    def build(self) -> None:
        self.topo.open()
        for name, addr in NODES.items():
            self.nodes[name] = add_node(self.topo, name, f"{addr}/{PREFIXLEN}", ifname=IFNAME)
        self.client = add_node(self.topo, CLIENT[0], f"{CLIENT[1]}/{PREFIXLEN}", ifname=IFNAME)
        for name, node in self.nodes.items():
            self.watchers[name] = VipWatcher(node, self.events, self.lock)

    def close(self) -> None:
        for name in list(self.runs):
            self.stop(name)
        for node in (*self.nodes.values(), *([self.client] if self.client else [])):
            node.close()
        self.topo.close()
        shutil.rmtree(self.logdir, ignore_errors=True)

    def start(self, name: str, kind: str) -> float:
        log = open(self.logdir / f"{name}-{kind.replace('/', '_')}.log", "w")
        t0 = time.monotonic()
        self.runs[name] = self.nodes[name].popen(argv(kind), stdout=log, stderr=subprocess.STDOUT)
        log.close()
        return t0

    def stop(self, name: str) -> None:
        proc = self.runs.pop(name, None)
        if proc is not None:
            self.nodes[name].stop(proc, grace=10)

    def held(self, name: str) -> set[str]:
        with self.lock:
            return set(self.watchers[name].current) - {NODES[name]}

    def clear_vips(self) -> None:
        """Remove every VIP a daemon left, so each turn starts from the same state."""
        for name, node in self.nodes.items():
            left = sorted(a for a in node.addresses_on(IFNAME) if a != NODES[name] and ":" not in a)
            if left:
                batch = "".join(f"addr del {a}/32 dev {IFNAME}\n" for a in left)
                node.run(["ip", "-batch", "-"], input=batch, check=False)

    def changes(self, name: str, added: bool, since: float, addresses: set[str]) -> dict[str, float]:
        """Per address, the first add (or removal) on ``name`` at or after ``since``."""
        out: dict[str, float] = {}
        with self.lock:
            for ev in self.events:
                if ev.t >= since and ev.node == name and ev.added == added and ev.address in addresses:
                    out.setdefault(ev.address, ev.t)
        return out

    def ping(self, target: str, seconds: float) -> subprocess.Popen:
        count = int(seconds / PING_INTERVAL)
        return self.client.popen(["ping", "-n", "-i", f"{PING_INTERVAL}", "-W", "1", "-c", str(count), target],
                                 stdout=subprocess.PIPE, text=True)


def argv(kind: str) -> list[str]:
    """``keepalived``, ``chime-ha`` (this tree) or ``chime-ha@DIR``: chime-ha from the sources in DIR."""
    if kind.startswith("chime-ha@"):
        src = kind.split("@", 1)[1]
        boot = f"import sys; sys.path.insert(0, {src!r}); from chimeha.cli import main; sys.exit(main())"
        return [sys.executable, "-c", boot, "run", "-f", CONF_PATH]
    if kind == "keepalived":
        # Default logging, as chime-ha runs at its default (info). With -D (detailed, as the
        # failover bench runs it: "keepalived-D" here) keepalived spends seconds logging
        # 200 instances and moves them one by one.
        return ["keepalived", "-n", "-l", "-f", CONF_PATH]
    if kind == "keepalived-D":
        return daemon_argv("keepalived")
    return daemon_argv(kind)


def wait_for(pred, timeout: float, step: float = 0.01) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(step)
    return pred()


def ping_loss(proc: subprocess.Popen) -> dict:
    out, _ = proc.communicate(timeout=60)
    sent = re.search(r"(\d+) packets transmitted, (\d+) received", out)
    seqs = {int(m) for m in re.findall(r"icmp_seq=(\d+) ttl", out)}
    if not sent:
        return {"error": out[-300:]}
    tx = int(sent.group(1))
    return {"sent": tx, "lost": tx - len(seqs & set(range(1, tx + 1)))}


def turn(lab: Lab, kind: str, count: int, advert_int: float, priorities: tuple[int, int], log) -> dict:
    vips = {vip(i) for i in range(1, count + 1)}
    for name in NODES:
        lab.stop(name)
    lab.clear_vips()
    for node in lab.nodes.values():
        node.link_up()
    for name, node in lab.nodes.items():
        node.write_file(CONF_PATH, config(name, count, advert_int, priorities))
    time.sleep(0.5)
    out: dict = {}
    down = 3 * advert_int + 1.0
    # cold start
    t0 = lab.start("server1", kind)
    if not wait_for(lambda: vips <= lab.held("server1"), 30 + down):
        return {"error": f"cold start: {len(lab.held('server1'))}/{count} VIPs on server1 after 30 s"}
    adds = lab.changes("server1", True, t0, vips)
    out["start_first"] = min(adds.values()) - t0
    out["start_all"] = max(adds.values()) - t0
    # backup joins; it must stay backup
    lab.start("server2", kind)
    time.sleep(down + 2)
    if lab.held("server2") or not vips <= lab.held("server1"):
        return {**out, "error": f"steady state: server2 holds {len(lab.held('server2'))} VIPs"}
    # link cut
    t_cut = time.monotonic()
    lab.nodes["server1"].link_down()
    if not wait_for(lambda: vips <= lab.held("server2"), down + 15):
        return {**out, "error": f"link cut: {len(lab.held('server2'))}/{count} VIPs on server2"}
    adds = lab.changes("server2", True, t_cut, vips)
    out["cut_first"] = min(adds.values()) - t_cut
    out["cut_spread"] = max(adds.values()) - min(adds.values())
    wait_for(lambda: not lab.held("server1"), 5)
    time.sleep(1.0)
    # handback: server1 preempts; the client pings the first and last VIP throughout
    window = 2.0 + down + 4.0
    pings = {v: lab.ping(v, window) for v in (vip(1), vip(count))}
    time.sleep(1.0)
    t_up = time.monotonic()
    lab.nodes["server1"].link_up()
    ok = wait_for(lambda: vips <= lab.held("server1") and not (lab.held("server2") & vips), down + 15)
    losses = {v: ping_loss(p) for v, p in pings.items()}
    if not ok:
        return {**out, "error": f"handback: server1 {len(lab.held('server1'))}, server2 {len(lab.held('server2'))}"}
    adds = lab.changes("server1", True, t_up, vips)
    dels = lab.changes("server2", False, t_up, vips)
    overlap = [dels[a] - adds[a] for a in vips if a in adds and a in dels]
    out["back_first"] = min(adds.values()) - t_up
    out["back_spread"] = max(adds.values()) - min(adds.values())
    out["back_overlap_min"] = min(overlap) if overlap else None
    out["back_lost_first"] = losses[vip(1)].get("lost")
    out["back_lost_last"] = losses[vip(count)].get("lost")
    log(f"    {label(kind):<16} " + " ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
                                       for k, v in out.items()))
    return out


METRICS = (("start_first", "cold start: first VIP (s)"), ("start_all", "cold start: all VIPs (s)"),
           ("cut_first", "link cut: first VIP on backup (s)"), ("cut_spread", "link cut: first->last VIP (s)"),
           ("back_first", "handback: first VIP back (s)"), ("back_spread", "handback: first->last VIP (s)"),
           ("back_overlap_min", "handback: least make-before-break (s)"),
           ("back_lost_first", "handback: lost pings, first VIP"), ("back_lost_last", "handback: lost pings, last VIP"))


def _stats(vals) -> dict:
    vals = [v for v in vals if v is not None]
    if not vals:
        return {}
    return {"median": statistics.median(vals), "min": min(vals), "max": max(vals), "n": len(vals)}


def _fmt(s: dict, integer: bool) -> str:
    if not s:
        return "n/a"
    if integer:
        return f"{s['median']:g} ({s['min']:g}-{s['max']:g})"
    return f"{s['median']:.3f} ({s['min']:.3f}-{s['max']:.3f})"


def label(kind: str) -> str:
    return "chime-ha (before)" if kind.startswith("chime-ha@") else kind


def machine() -> str:
    cpu = "unknown"
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    kv = subprocess.run(["keepalived", "--version"], capture_output=True, text=True)
    kver = ((kv.stdout + kv.stderr).splitlines() or ["?"])[0]
    return (f"{os.cpu_count()} CPUs ({cpu}), kernel {platform.release()}, Python {platform.python_version()}, "
            f"{kver}")


def markdown(cmd: str, results: dict, count: int, started: str, took: float, loads: list[str]) -> str:
    L = [f"# Scale benchmark: {count} VRRP instances, keepalived vs chime-ha", "",
         f"Command: `{cmd}`  ", f"Run: {started} UTC, {took:.0f} s  ", f"Machine: {machine()}  ",
         f"Load (`uptime` before / after): {' / '.join(loads)}", "",
         "One lab topology (server1, server2, client: lab nodes on one bridge); the daemons take turns, round "
         f"after round. {count} instances per node, one VIP each, VRRPv2 advert_int 1, server1 `state MASTER`, "
         "server2 `state BACKUP`, priorities as in each heading. Times from `ip monitor` inside the nodes; pings "
         "every 20 ms from the client. Median (min-max) over the rounds. `chime-ha (before)` is the code this "
         "work started from, run in the same turns.", ""]
    for prios, by_daemon in results.items():
        daemons = list(by_daemon)
        L += [f"## priorities {prios[0]} / {prios[1]}", "",
              "| metric | " + " | ".join(label(d) for d in daemons) + " |", "|---|" + "---|" * len(daemons)]
        for key, text in METRICS:
            cells = [_fmt(_stats([r.get(key) for r in by_daemon[d] if "error" not in r]), key.startswith("back_lost"))
                     for d in daemons]
            L.append(f"| {text} | " + " | ".join(cells) + " |")
        errors = [f"- {label(d)} round {i + 1}: {r['error']}" for d in daemons for i, r in enumerate(by_daemon[d])
                  if "error" in r]
        if errors:
            L += ["", "Failed turns:", *errors]
        L.append("")
    return "\n".join(L)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--instances", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--advert-int", type=float, default=1.0)
    ap.add_argument("--daemons", default="keepalived,chime-ha",
                    help="keepalived, keepalived-D (with detailed logging), chime-ha (this tree), "
                         "chime-ha@DIR (chime-ha from the sources in DIR)")
    ap.add_argument("--priorities", default="200/100,255/254",
                    help="server1/server2 priorities, one comma-separated variant each")
    ap.add_argument("--out", default=str(HERE / "RESULTS.md"))
    ap.add_argument("--json", default=None, help="also write the raw numbers here")
    ap.add_argument("--keep-logs", default=None, help="copy the daemons' logs of the last turn here")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("bench/scale needs root (network namespaces)", file=sys.stderr)
        return 2
    if not 1 <= args.instances <= 255:
        ap.error("--instances: 1..255 (one VRID each)")
    daemons = [d for d in args.daemons.split(",") if d]
    try:
        variants = [tuple(int(p) for p in v.split("/")) for v in args.priorities.split(",") if v]
    except ValueError:
        ap.error("--priorities: e.g. 200/100,255/254")
    if any(len(v) != 2 or not (1 <= v[1] < v[0] <= 255) for v in variants):
        ap.error("--priorities: server1/server2, 1 <= server2 < server1 <= 255")
    log = lambda s: print(s, flush=True)  # noqa: E731
    loads = [subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()]
    started = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
    t_start = time.monotonic()
    results: dict = {v: {d: [] for d in daemons} for v in variants}
    lab = Lab()
    try:
        lab.build()
        for r in range(args.rounds):
            order = daemons if r % 2 == 0 else daemons[::-1]
            for prios in variants:
                for kind in order:
                    log(f"[round {r + 1}/{args.rounds}] priorities {prios[0]}/{prios[1]} {label(kind)}")
                    res = turn(lab, kind, args.instances, args.advert_int, prios, log)
                    if "error" in res:
                        log(f"    {label(kind)}: {res['error']}")
                    results[prios][kind].append(res)
    except KeyboardInterrupt:
        log("interrupted: tearing down")
        return 130
    finally:
        for name in list(lab.runs):
            lab.stop(name)
        if args.keep_logs:
            shutil.copytree(lab.logdir, args.keep_logs, dirs_exist_ok=True)
        lab.close()
    loads.append(subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    took = time.monotonic() - t_start
    cmd = "sudo .venv/bin/python bench/scale/run.py " + " ".join(argv if argv is not None else sys.argv[1:])
    text = markdown(cmd.strip(), results, args.instances, started, took, loads)
    Path(args.out).write_text(text)
    if args.json:
        Path(args.json).write_text(json.dumps({f"{v[0]}/{v[1]}": {label(d): rs for d, rs in by.items()}
                                               for v, by in results.items()}, indent=2))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

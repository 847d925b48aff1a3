#!/usr/bin/env python3
"""Random-fault soak: client-visible failures, a chime-ha pair vs a keepalived 2.2.7 pair (issue 10 item 2).

Two labs side by side, built here in namespaces (nothing leaves the machine),
each with nodes ``a`` (priority 200) and ``b`` (priority 100) holding one VIP
and a client pinging it every 50 ms. One lab runs chime-ha on both nodes, the
other keepalived 2.2.7; both get the SAME fault schedule at the same moments
(seeded random), so load and timing hit them alike:

* ``partition``: VRRP (protocol 112) dropped both ways on one node for 2-4 s,
  then healed at once (split brain and its repair);
* ``loss30``: 30 % of VRRP packets dropped both ways on one node for 10 s
  (``numgen random``), the issue's "heavy advert loss";
* ``linkcut``: one node's cable pulled for 3 s;
* ``kill``: SIGKILL to every process of one node's daemon, restarted 3 s later;
* ``hup``: SIGHUP to one node's daemon (a reload with an unchanged file).

Between faults the labs settle for ``--settle`` seconds. Failed probes
(ping's "no answer yet") are attributed to the fault whose window they fall
in (from its start to the start of the next one).

Usage (root): .venv/bin/python bench/vrrp/soak.py [--faults 30] [--seed 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "src"))

from chimeha.lab.netns import Topology  # noqa: E402
from chimeha.lab.node import add_node  # noqa: E402

CHIME_HA = str(Path(sys.executable).with_name("chime-ha"))
FAULTS = ("partition", "loss30", "linkcut", "kill", "hup")
DROP = ("table inet soak {{\n chain i {{ type filter hook input priority 0; ip protocol vrrp {m}drop; }}\n"
        " chain o {{ type filter hook output priority 0; ip protocol vrrp {m}drop; }}\n}}\n")


def conf(prio: int, vip: str) -> str:
    return (f"vrrp_instance VI_1 {{\n  state BACKUP\n  interface eth0\n  virtual_router_id 76\n  priority {prio}\n"
            f"  advert_int 1\n  virtual_ipaddress {{\n    {vip}/24\n  }}\n}}\n")


class Lab:
    """One pair (``a``, ``b``) running ``daemon``, and a pinging client."""

    def __init__(self, daemon: str, net: int, logdir: Path):
        self.daemon, self.logdir = daemon, logdir
        self.vip = f"10.{net}.0.100"
        self.topo = Topology(f"sk{net}")
        self.topo.open()
        self.nodes = {"a": add_node(self.topo, "a", f"10.{net}.0.11/24"),
                      "b": add_node(self.topo, "b", f"10.{net}.0.12/24")}
        self.client = self.topo.add_host("cl", f"10.{net}.0.50/24")
        self.procs: dict[str, subprocess.Popen] = {}
        self.ping: subprocess.Popen | None = None

    def start(self, name: str) -> None:
        node = self.nodes[name]
        node.write_file("/etc/keepalived/soak.conf", conf(200 if name == "a" else 100, self.vip))
        log = open(self.logdir / f"{self.daemon}-{name}.log", "ab")
        if self.daemon == "chime-ha":
            argv = [CHIME_HA, "run", "-f", "/etc/keepalived/soak.conf"]
        else:
            argv = ["keepalived", "-n", "-l", "-D", "-f", "/etc/keepalived/soak.conf", "-p", "/run/ka.pid",
                    "-r", "/run/ka-vrrp.pid", "-c", "/run/ka-chk.pid"]
        self.procs[name] = node.popen(argv, stdout=log, stderr=subprocess.STDOUT)
        log.close()

    def daemon_pids(self, name: str) -> list[int]:
        """PIDs (inside the node) of this lab's daemon processes on ``name``: only ours live there."""
        node = self.nodes[name]
        return node.pids("keepalived") if self.daemon == "keepalived" else node.pids("chime-ha")

    def holders(self) -> list[str]:
        return [n for n, node in self.nodes.items() if self.vip in node.addresses_on()]

    def fault(self, kind: str, target: str, hold: float) -> None:
        node = self.nodes[target]
        if kind in ("partition", "loss30"):
            node.run(["nft", "-f", "-"], input=DROP.format(m="numgen random mod 100 < 30 " if kind == "loss30" else ""))
            time.sleep(hold)
            node.run(["nft", "delete", "table", "inet", "soak"])
        elif kind == "linkcut":
            node.link_down()
            time.sleep(hold)
            node.link_up()
        elif kind == "kill":
            for pid in self.daemon_pids(target):
                node.run(["kill", "-9", str(pid)], check=False)
            proc = self.procs.pop(target)
            proc.wait(timeout=10)
            time.sleep(hold)
            self.start(target)
        elif kind == "hup":
            for pid in self.daemon_pids(target):
                node.run(["kill", "-HUP", str(pid)], check=False)
                if self.daemon == "keepalived":
                    break  # the parent passes it on to its children

    def close(self) -> str:
        out = ""
        if self.ping is not None:
            self.ping.send_signal(signal.SIGINT)
            self.ping.wait(timeout=10)
            out = (self.logdir / f"ping-{self.daemon}.txt").read_text()
        for name, proc in self.procs.items():
            self.nodes[name].stop(proc, grace=5)
        self.topo.close()
        return out


def failed_probes(ping_out: str) -> list[float]:
    return [float(m.group(1)) for m in re.finditer(r"^\[(\d+\.\d+)\] no answer yet", ping_out, re.M)]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--faults", type=int, default=30)
    ap.add_argument("--settle", type=float, default=6.0)
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--kinds", default=",".join(FAULTS), help="comma-separated fault kinds to draw from")
    ap.add_argument("--targets", default="ab", help="nodes the faults may hit (a: the master)")
    ap.add_argument("--schedule", help="explicit faults instead of random ones, e.g. partition:a,linkcut:a")
    ap.add_argument("--json")
    ap.add_argument("--logs", default="/tmp/chimeha-soak")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("soak: needs root (namespaces)", file=sys.stderr)
        return 2
    rng = random.Random(args.seed)
    schedule = []
    for item in (args.schedule.split(",") if args.schedule else []):
        kind, target = item.split(":")
        schedule.append((kind, target, {"partition": 3.0, "loss30": 10.0, "linkcut": 3.0, "kill": 3.0, "hup": 0.0}[kind]))
    for _ in range(0 if args.schedule else args.faults):
        kind = rng.choice(args.kinds.split(","))
        hold = {"partition": rng.uniform(2, 4), "loss30": 10.0, "linkcut": 3.0, "kill": 3.0, "hup": 0.0}[kind]
        schedule.append((kind, rng.choice(args.targets), hold))
    logdir = Path(args.logs)
    logdir.mkdir(parents=True, exist_ok=True)
    labs = {}
    try:
        labs["keepalived"] = Lab("keepalived", 77, logdir)
        labs["chime-ha"] = Lab("chime-ha", 78, logdir)
        for lab in labs.values():
            lab.start("a")
            lab.start("b")
        deadline = time.monotonic() + 30
        while any(lab.holders() != ["a"] for lab in labs.values()):
            if time.monotonic() > deadline:
                raise SystemExit(f"soak: no stable start: {[(d, l.holders()) for d, l in labs.items()]}")
            time.sleep(0.2)
        time.sleep(2)
        for lab in labs.values():
            # to a file, not a pipe: a pipe nobody reads fills up in about a minute and blocks ping
            with open(logdir / f"ping-{lab.daemon}.txt", "w") as out:
                lab.ping = lab.client.popen(["ping", "-n", "-D", "-O", "-i", "0.05", "-W", "1", lab.vip],
                                            stdout=out)
        time.sleep(2)
        starts = []
        for i, (kind, target, hold) in enumerate(schedule):
            starts.append(time.time())
            threads = [threading.Thread(target=lab.fault, args=(kind, target, hold)) for lab in labs.values()]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            time.sleep(args.settle)
            state = {d: lab.holders() for d, lab in labs.items()}
            print(f"fault {i + 1:2d} {kind:9s} on {target}  holders after settle: {state}", flush=True)
        end = time.time()
    finally:
        outs = {d: lab.close() for d, lab in labs.items()}
    per: dict[str, dict[str, int]] = {d: {k: 0 for k in FAULTS} for d in labs}
    for d, out in outs.items():
        for t in failed_probes(out):
            idx = max((i for i, s in enumerate(starts) if s <= t), default=None)
            if idx is not None and t <= end:
                per[d][schedule[idx][0]] += 1
    counts = {k: sum(1 for s in schedule if s[0] == k) for k in FAULTS}
    print()
    print("| fault | times | keepalived failed probes | chime-ha failed probes |")
    print("|---|---|---|---|")
    for k in FAULTS:
        print(f"| {k} | {counts[k]} | {per['keepalived'][k]} | {per['chime-ha'][k]} |")
    print(f"| all | {len(schedule)} | {sum(per['keepalived'].values())} | {sum(per['chime-ha'].values())} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"schedule": schedule, "failed": per}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

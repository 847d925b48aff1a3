#!/usr/bin/env python3
"""Client-visible failed probes after a healed VRRP partition: chime-ha vs keepalived 2.2.7 (issue 10 item 2).

Topology (namespaces built here, nothing leaves the machine): node ``a``
(the surviving master, priority 200: chime-ha or keepalived, taking turns
trial by trial), node ``b`` (keepalived 2.2.7, priority 100, in every
trial), a client pinging the VIP every 50 ms. Per trial:

1. both start, ``a`` holds the VIP;
2. VRRP between them is cut (nftables in ``a`` drops protocol 112 both
   ways): ``b`` takes over, its gratuitous ARPs point the client at ``b``;
3. after a random 2-4 s the cut is removed at once (both directions);
4. failed probes (ping's "no answer yet") are counted for ``--window`` s
   from the heal; and whether ``a`` logged hearing the lower-priority
   master (it is a race: if ``a``'s advert reaches ``b`` first, ``b``
   yields silently and ``a`` never hears it, for either daemon).

Usage (root): .venv/bin/python bench/vrrp/garp_heal.py --trials 6 [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import random
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "src"))

from chimeha.lab.netns import Topology  # noqa: E402
from chimeha.lab.node import add_node  # noqa: E402

CHIME_HA = str(Path(sys.executable).with_name("chime-ha"))
VIP = "10.75.0.100"
LOWER_HEARD = {"chime-ha": "at lower priority 100", "keepalived": "with lower priority 100"}


def conf(prio: int, extra: str = "") -> str:
    return (f"vrrp_instance VI_1 {{\n  state BACKUP\n  interface eth0\n  virtual_router_id 75\n  priority {prio}\n"
            f"  advert_int 1\n{extra}  virtual_ipaddress {{\n    {VIP}/24\n  }}\n}}\n")


def start(node, daemon: str, text: str, log: Path):
    node.write_file("/etc/keepalived/bench.conf", text)
    fh = open(log, "ab")
    if daemon == "chime-ha":
        argv = [CHIME_HA, "run", "-f", "/etc/keepalived/bench.conf"]
    else:
        argv = ["keepalived", "-n", "-l", "-D", "-f", "/etc/keepalived/bench.conf", "-p", "/run/ka.pid",
                "-r", "/run/ka-vrrp.pid", "-c", "/run/ka-chk.pid"]
    return node.popen(argv, stdout=fh, stderr=subprocess.STDOUT), fh


def wait(cond, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.05)
    raise RuntimeError(f"timed out waiting for {what}")


def trial(daemon: str, n: int, window: float, rng: random.Random, logdir: Path, b_extra: str = "") -> dict:
    with Topology(f"gh{n}") as topo:
        a = add_node(topo, "a", "10.75.0.11/24")
        b = add_node(topo, "b", "10.75.0.12/24")
        client = topo.add_host("cl", "10.75.0.50/24")
        alog, blog = logdir / f"{n:02d}-{daemon}-a.log", logdir / f"{n:02d}-{daemon}-b.log"
        pa, fa = start(a, daemon, conf(200), alog)
        pb, fb = start(b, "keepalived", conf(100, b_extra), blog)
        try:
            wait(lambda: VIP in a.addresses_on() and VIP not in b.addresses_on(), 20, "a MASTER")
            time.sleep(1.5)
            ping = client.popen(["ping", "-n", "-D", "-O", "-i", "0.05", "-W", "1", VIP],
                                stdout=subprocess.PIPE, text=True)
            time.sleep(1.0)
            a.run(["nft", "-f", "-"], input="table inet part {\n chain i { type filter hook input priority 0; "
                  "ip protocol vrrp drop; }\n chain o { type filter hook output priority 0; ip protocol vrrp drop; }\n}\n")
            wait(lambda: VIP in b.addresses_on(), 10, "b takes over")
            time.sleep(rng.uniform(2.0, 4.0))
            log_mark = len(alog.read_bytes())
            healed = time.time()
            a.run(["nft", "delete", "table", "inet", "part"])
            time.sleep(window + 0.2)
            ping.send_signal(2)
            out, _ = ping.communicate(timeout=5)
            failed = sent = 0
            for line in out.splitlines():
                m = re.match(r"\[(\d+\.\d+)\] (.*)", line)
                if not m or not healed <= float(m.group(1)) <= healed + window:
                    continue
                if "no answer yet" in m.group(2):
                    failed += 1
                    sent += 1
                elif "bytes from" in m.group(2):
                    sent += 1
            after = alog.read_bytes()[log_mark:].decode(errors="replace")
            return {"daemon": daemon, "trial": n, "failed": failed, "probes": sent,
                    "heard_lower": LOWER_HEARD[daemon] in after,
                    "holders": [x.name for x in (a, b) if VIP in x.addresses_on()]}
        finally:
            for node, proc, fh in ((a, pa, fa), (b, pb, fb)):
                node.stop(proc, grace=5)
                fh.close()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=6, help="trials per daemon (they alternate)")
    ap.add_argument("--window", type=float, default=8.0, help="seconds after the heal in which failures count")
    ap.add_argument("--seed", type=int, default=10)
    ap.add_argument("--higher-prio-send-advert", action="store_true",
                    help="give b (keepalived) higher_prio_send_advert: it advertises once before yielding")
    ap.add_argument("--json", help="write the raw trials here")
    ap.add_argument("--logs", default="/tmp/chimeha-garp-heal", help="daemon logs of every trial")
    args = ap.parse_args(argv)
    rng = random.Random(args.seed)
    logdir = Path(args.logs)
    logdir.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(args.trials * 2):
        daemon = ("keepalived", "chime-ha")[i % 2]
        row = trial(daemon, i, args.window, rng, logdir,
                    "  higher_prio_send_advert\n" if args.higher_prio_send_advert else "")
        rows.append(row)
        print(json.dumps(row), flush=True)
    print()
    print("| surviving master | trials | failed 50 ms probes per heal (each trial) | total | heard the lower-priority master |")
    print("|---|---|---|---|---|")
    for daemon in ("keepalived", "chime-ha"):
        mine = [r for r in rows if r["daemon"] == daemon]
        print(f"| {daemon} | {len(mine)} | {', '.join(str(r['failed']) for r in mine)} | "
              f"{sum(r['failed'] for r in mine)} | {sum(r['heard_lower'] for r in mine)}/{len(mine)} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

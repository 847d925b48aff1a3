"""Measure keepalived 2.2.7's VRRPv3 Skew_Time and Master_Down_Interval on the wire.

Question: does keepalived compute the v3 Skew_Time ((256 - priority) x
Master_Adver_Interval / 256) exactly, or truncated to centiseconds (the unit
of the v3 interval field)? At advert_int 0.1 s (10 cs) the candidates differ
by up to ~10 ms (priority 1: 99.6 ms exact, 90 ms truncated), well above the
lab's jitter.

Three lab namespaces (chimeha.lab.netns.Topology): ``ka`` runs keepalived as a
v3 BACKUP (priority P, advert_int 0.1); ``peer`` advertises priority 254 at
0.1 s with chime-ha's codec, then either sends priority 0 (the backup should
take over after Skew_Time) or falls silent (after Master_Down_Interval), and
resumes, so keepalived yields again; ``lis`` captures every advert with one
clock. Delay = first keepalived advert - the peer's last advert.

Usage (root): .venv/bin/python bench/vrrp/skew_v3.py [--cycles N] [--priorities 1,100,200]
Prints one line per (priority, mode) with the median and range against the
two candidate formulas.
"""

from __future__ import annotations

import argparse
import json
import os
import selectors
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "src"))

from chimeha.lab.netns import Topology  # noqa: E402

CAPTURE = os.path.join(ROOT, "tests", "vrrp", "capture_helper.py")
KA, PEER = "192.168.231.11", "192.168.231.12"

SENDER = r"""
import json, socket, sys, time
from chimeha.vrrp import packet
cfg = json.loads(sys.argv[1])
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, packet.VRRP_PROTO)
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 255)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"eth0")
s.bind((cfg["source"], 0))
def send(p):
    s.sendto(packet.encode(3, 51, p, ["192.168.231.10"], 0.1, family=4, source=cfg["source"],
                           destination=packet.MCAST_V4), (packet.MCAST_V4, 0))
for cycle in range(cfg["cycles"]):
    t = time.monotonic()
    while time.monotonic() < t + cfg["advertise"]:
        send(254)
        time.sleep(0.1)
    if cfg["mode"] == "zero":
        send(0)
    time.sleep(cfg["pause"])
print("done", flush=True)
"""

CONF = """global_defs {
  router_id ka
  vrrp_version 3
}
vrrp_instance VI_1 {
  state BACKUP
  interface eth0
  virtual_router_id 51
  priority %d
  advert_int 0.1
  virtual_ipaddress {
    192.168.231.10
  }
}
"""


def exact(p: int, interval: float = 0.1) -> float:
    return (256 - p) * interval / 256


def centis(p: int, interval: float = 0.1) -> float:
    return ((256 - p) * round(interval * 100) // 256) / 100


def run(priority: int, mode: str, cycles: int) -> list[float]:
    with Topology("skew") as topo, tempfile.TemporaryDirectory() as tmp:
        ka = topo.add_host("ka", f"{KA}/24")
        peer = topo.add_host("peer", f"{PEER}/24")
        lis = topo.add_host("lis", "192.168.231.13/24")
        cap = lis.popen([sys.executable, CAPTURE, "eth0", str(cycles * 2.5 + 15)], stdout=subprocess.PIPE, text=True)
        assert cap.stdout.readline().strip() == "ready"
        conf = os.path.join(tmp, "ka.conf")
        with open(conf, "w") as f:
            f.write(CONF % priority)
        ka.popen(["keepalived", "-n", "-l", "--vrrp", "-f", conf, "-p", os.path.join(tmp, "ka.pid"),
                  "-r", os.path.join(tmp, "vrrp.pid")])
        time.sleep(1.0)  # keepalived starts as BACKUP; its own 0.36 s timer may fire first: cycles re-settle it
        env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "src"))
        cfg = {"source": PEER, "cycles": cycles, "mode": mode, "advertise": 1.0, "pause": 1.5}
        snd = peer.popen([sys.executable, "-c", SENDER, json.dumps(cfg)], stdout=subprocess.PIPE, text=True, env=env)
        snd.wait(timeout=cycles * 3 + 30)
        time.sleep(0.5)
        cap.terminate()
        recs = []
        for line in cap.stdout:
            if line.startswith("{"):
                r = json.loads(line)
                recs.append((r["t"], r["src"], bytes.fromhex(r["payload"])[2]))
    delays = []
    last_peer = None
    taken = False
    for t, src, prio in recs:
        if src == PEER:
            if prio != 0 or mode == "zero":
                last_peer = t
            taken = False
        elif src == KA and last_peer is not None and not taken and prio == priority:
            delays.append(t - last_peer)
            taken = True
    return delays[1:]  # the first cycle may overlap keepalived's own start-up timeout


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cycles", type=int, default=8)
    ap.add_argument("--priorities", default="1,100,200")
    args = ap.parse_args()
    for p in [int(x) for x in args.priorities.split(",")]:
        for mode in ("zero", "silence"):
            d = run(p, mode, args.cycles)
            base = 0.0 if mode == "zero" else 3 * 0.1
            ex, ce = base + exact(p), base + centis(p)
            if not d:
                print(f"priority {p:3d} {mode:7s}: no takeover captured")
                continue
            med = statistics.median(d)
            print(f"priority {p:3d} {mode:7s}: n={len(d)} median {med * 1000:7.2f} ms "
                  f"(min {min(d) * 1000:.2f}, max {max(d) * 1000:.2f}); exact {ex * 1000:.2f} ms, "
                  f"centisecond-truncated {ce * 1000:.2f} ms -> closer to "
                  f"{'exact' if abs(med - ex) < abs(med - ce) else 'centiseconds'}", flush=True)


if __name__ == "__main__":
    main()

"""Candidate BGP speakers side by side: FRR bgpd (as chime-ha runs it) vs BIRD 2, same run, same router.

One namespace runs the lab's FRR router (``chimeha.lab.bgp``: dynamic neighbors,
timers 1/3); another runs the speaker under test at 10.99.1.11, AS 65010, hold 3 s.
For every speaker, ``--repeat`` times, alternating:

* ``ready``: exec -> the control socket answers (vtysh / birdc);
* ``first route``: exec -> the router's kernel FIB has the VIP via the speaker
  (FRR: ``network`` added through vtysh as soon as it answers, which is what
  chime-ha does; BIRD: a static route exported from its config);
* ``withdraw`` / ``announce``: the control command is started -> the route is
  gone from / back in the router's FIB (polled every 10 ms);
* ``RSS``: the speaker's VmRSS once the session is up (kB).

    sudo .venv/bin/python bench/bgp/speakers.py [--repeat 5] [--out bench/bgp/SPEAKERS.md]

Needs frr and bird2 (apt-get install frr bird2). Everything lives in namespaces it creates and removes.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "src"))

from chimeha.lab.bgp import FRR, PRIVATE, ROUTER_AS, ROUTER_LAN, VIP, BgpLab  # noqa: E402
from chimeha.lab.node import add_node  # noqa: E402

SPEAKER_IP, LOCAL_AS = "10.99.1.11", 65010

FRR_CONF = f"""frr defaults datacenter
hostname sp
router bgp {LOCAL_AS}
 bgp router-id {SPEAKER_IP}
 no bgp network import-check
 no bgp ebgp-requires-policy
 no bgp default ipv4-unicast
 timers bgp 1 3
 neighbor {ROUTER_LAN} remote-as {ROUTER_AS}
 neighbor {ROUTER_LAN} timers connect 1
 address-family ipv4 unicast
  neighbor {ROUTER_LAN} activate
 exit-address-family
exit
"""

BIRD_CONF = f"""router id {SPEAKER_IP};
protocol device {{ }}
protocol static vip {{
  ipv4;
  route {VIP}/32 blackhole;
}}
protocol bgp up {{
  local {SPEAKER_IP} as {LOCAL_AS};
  neighbor {ROUTER_LAN} as {ROUTER_AS};
  hold time 3;
  keepalive time 1;
  connect retry time 1;
  connect delay time 1;
  ipv4 {{ import none; export where proto = "vip"; }};
}}
"""


class SpeakerLab(BgpLab):
    """The lab's router and one speaker namespace (no directors, no real servers)."""

    def build(self) -> None:
        self.topo.open()
        self.nodes["router"] = add_node(self.topo, "router", f"{ROUTER_LAN}/24", private_dirs=PRIVATE)
        self._start_router()
        self.nodes["sp"] = add_node(self.topo, "sp", f"{SPEAKER_IP}/24", private_dirs=PRIVATE + ("/etc/bird",))


def _until(cond, timeout: float, step: float = 0.01) -> float | None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if cond():
            return time.monotonic() - t0
        time.sleep(step)
    return None


def _rss_kb(sp, pid_inside: str) -> int:
    text = sp.run(["cat", f"/proc/{pid_inside}/status"], check=False).stdout
    return next((int(line.split()[1]) for line in text.splitlines() if line.startswith("VmRSS:")), -1)


class Frr:
    name = "FRR bgpd 8.4 (-Z -n, vtysh)"

    def __init__(self, sp):
        self.sp = sp

    def vtysh(self, *cmds: str) -> subprocess.CompletedProcess:
        argv = ["vtysh", "--vty_socket", "/run/sp", "-d", "bgpd"]
        for c in cmds:
            argv += ["-c", c]
        return self.sp.run(argv, check=False)

    def start(self) -> subprocess.Popen:
        self.sp.run(["mkdir", "-p", "/run/sp"])
        self.sp.write_file("/run/sp/bgpd.conf", FRR_CONF)
        return self.sp.popen([f"{FRR}/bgpd", "-S", "-Z", "-n", "-P", "0", "-f", "/run/sp/bgpd.conf", "--vty_socket",
                              "/run/sp", "-i", "/run/sp/bgpd.pid"])

    def ready(self) -> bool:
        return self.vtysh("show bgp summary json").returncode == 0

    def _net(self, neg: str) -> None:
        self.vtysh("configure terminal", f"router bgp {LOCAL_AS}", "address-family ipv4 unicast",
                   f"{neg}network {VIP}/32", "end")

    def after_ready(self) -> None:
        self._net("")

    def withdraw(self) -> None:
        self._net("no ")

    def announce(self) -> None:
        self._net("")

    def pid(self) -> str:
        return self.sp.read_file("/run/sp/bgpd.pid").strip()


class Bird:
    name = "BIRD 2.0.12 (birdc)"

    def __init__(self, sp):
        self.sp = sp

    def birdc(self, *args: str) -> subprocess.CompletedProcess:
        return self.sp.run(["birdc", "-s", "/run/sp/bird.ctl", *args], check=False)

    def start(self) -> subprocess.Popen:
        self.sp.run(["mkdir", "-p", "/run/sp"])
        self.sp.write_file("/etc/bird/bird.conf", BIRD_CONF)
        return self.sp.popen(["bird", "-f", "-c", "/etc/bird/bird.conf", "-s", "/run/sp/bird.ctl",
                              "-P", "/run/sp/bird.pid"])

    def ready(self) -> bool:
        return self.birdc("show status").returncode == 0

    def after_ready(self) -> None:
        pass  # the static route is exported from the config

    def withdraw(self) -> None:
        self.birdc("disable", "vip")

    def announce(self) -> None:
        self.birdc("enable", "vip")

    def pid(self) -> str:
        return self.sp.read_file("/run/sp/bird.pid").strip()


def one_run(lab: SpeakerLab, kind) -> dict:
    sp = lab.nodes["sp"]
    s = kind(sp)
    have = lambda: SPEAKER_IP in lab.next_hops()  # noqa: E731
    t0 = time.monotonic()
    proc = s.start()
    ready = _until(s.ready, 20)
    s.after_ready()
    first = _until(have, 30)
    out = {"ready": ready, "first route": None if first is None else time.monotonic() - t0 - 0.0}
    out["first route"] = time.monotonic() - t0 if first is not None else None
    time.sleep(0.5)
    out["RSS kB"] = _rss_kb(sp, s.pid())
    t1 = time.monotonic()
    s.withdraw()
    out["withdraw"] = None if _until(lambda: not have(), 10) is None else time.monotonic() - t1
    time.sleep(0.3)
    t1 = time.monotonic()
    s.announce()
    out["announce"] = None if _until(have, 10) is None else time.monotonic() - t1
    sp.stop(proc, grace=3)
    _until(lambda: not have(), 10)  # the session closed: the router forgot the route
    sp.run(["rm", "-rf", "/run/sp"], check=False)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("needs root (namespaces)")
    load0 = open("/proc/loadavg").read().split()[0]
    results: dict[str, list[dict]] = {Frr.name: [], Bird.name: []}
    with SpeakerLab(f"bs{os.getpid() % 1000}") as lab:
        for i in range(args.repeat):
            for kind in (Frr, Bird):
                r = one_run(lab, kind)
                results[kind.name].append(r)
                print(f"{i + 1} {kind.name}: " + ", ".join(
                    f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in r.items()), flush=True)
    load1 = open("/proc/loadavg").read().split()[0]
    keys = ["ready", "first route", "withdraw", "announce", "RSS kB"]
    lines = ["# BGP speakers side by side (`bench/bgp/speakers.py`)", "",
             f"Command: `sudo .venv/bin/python bench/bgp/speakers.py --repeat {args.repeat}`",
             f"Machine: {platform.node()}, {os.cpu_count()} CPUs, kernel {platform.release()}; load average "
             f"before {load0}, after {load1} (shared). Same router (FRR zebra+bgpd, timers 1/3) and namespace "
             "for both; alternating runs. Times in seconds (median over runs, min..max), the router's kernel FIB "
             "polled every 10 ms; `withdraw`/`announce` include starting the control client (vtysh / birdc).",
             "", "| speaker | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for name, rs in results.items():
        cells = []
        for k in keys:
            vals = [r[k] for r in rs if r[k] is not None]
            if not vals:
                cells.append("n/a")
            elif k == "RSS kB":
                cells.append(f"{statistics.median(vals):.0f}")
            else:
                cells.append(f"{statistics.median(vals):.3f} ({min(vals):.3f}..{max(vals):.3f})")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

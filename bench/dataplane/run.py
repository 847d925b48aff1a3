"""Data-plane benchmark: client -> director -> two nginx real servers, in namespaces.

Every setup forwards VIP:80 round robin to the two real servers; wrk (32
connections) measures requests/s with keep-alive and with a new connection per
request (``Connection: close``). All setups run in ONE invocation, alternating
over several rounds so that drift on a shared machine hits all of them alike;
the report gives each setup's median and its ratio to HAProxy and to
hand-written nftables rules.

    sudo .venv/bin/python bench/dataplane/run.py [--duration 10] [--rounds 3] [--out bench/dataplane/RESULTS.md]
        [--only "hand-written nft,chime-ha nft,chime-ha rules (previous layout)"]

``--only`` takes comma-separated setup names (an A/B of a few setups);
"chime-ha rules (previous layout)" (previous_layout.nft) and "chime-ha rules (static)" (the current
renderer's table) are static rules with no daemon running; they and "chime-ha nft (no checks)"
run only when named. `--modes`
restricts the load to "keep-alive" or "new connection".

Needs root, nginx-light, haproxy, nftables and wrk (apt-get install wrk).
Everything lives in namespaces this script creates and removes.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT / "src"))

from chimeha.lab.netns import Topology, stop_process  # noqa: E402

VIP = "192.168.231.10"
RS = ("192.168.231.11", "192.168.231.12")

NGINX = """
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {dir};
    proxy_temp_path {dir};
    fastcgi_temp_path {dir};
    uwsgi_temp_path {dir};
    scgi_temp_path {dir};
    keepalive_requests 1000000;
    server {{
        listen {addr}:8080 backlog=4096;
        listen {addr}:8081 backlog=4096;
        listen {addr}:8082 backlog=4096;
        listen {addr}:8083 backlog=4096;
        listen {addr}:8084 backlog=4096;
        listen {addr}:8085 backlog=4096;
        listen {addr}:8086 backlog=4096;
        listen {addr}:8087 backlog=4096;
        listen {addr}:8088 backlog=4096;
        listen {addr}:8089 backlog=4096;
        listen {addr}:8090 backlog=4096;
        listen {addr}:8091 backlog=4096;
        listen {addr}:8092 backlog=4096;
        listen {addr}:8093 backlog=4096;
        listen {addr}:8094 backlog=4096;
        listen {addr}:8095 backlog=4096;
        listen {addr}:8096 backlog=4096;
        location / {{ return 200 "{name}\\n"; }}
    }}
}}
"""

HAPROXY = """
global
    maxconn 8000
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
listen vip
    bind {vip}:80
    balance roundrobin
    server rs1 {rs1}:{port}
    server rs2 {rs2}:{port}
"""

HAND_NFT = """
table ip bench {{
    chain pre {{
        type nat hook prerouting priority dstnat; policy accept;
        ip daddr {vip} tcp dport 80 dnat to numgen inc mod 2 map {{ 0 : {rs1} . {port}, 1 : {rs2} . {port} }}
    }}
    chain post {{
        type nat hook postrouting priority srcnat; policy accept;
        ct status dnat ip daddr 192.168.231.0/24 {snat}
    }}
}}
"""
#: hand-written source NAT variants (issue 11: which one survives a "dirty" real server)
HAND_SNAT = {
    "hand-written nft": "masquerade",
    "hand nft: masquerade fully-random": "masquerade fully-random",
    "hand nft: masquerade random": "masquerade random",
    "hand nft: ports 1024-32767": "meta l4proto tcp masquerade to :1024-32767",
    "hand nft: snat to VIP": f"snat ip to {VIP}",
}

CHIMEHA_CONF = """
virtual_server {vip} 80 {{
    delay_loop 6
    lb_algo rr
    lb_kind NAT
    protocol TCP
    real_server {rs1} {port} {{
        weight 1
        TCP_CHECK {{
            connect_timeout 3
        }}
    }}
    real_server {rs2} {port} {{
        weight 1
        TCP_CHECK {{
            connect_timeout 3
        }}
    }}
}}
"""


def tree_cpu(pid: int) -> float:
    """CPU seconds (user + system, all threads) of ``pid`` and its descendants so far."""
    tick = os.sysconf("SC_CLK_TCK")
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
            for t in os.listdir(f"/proc/{p}/task"):
                todo += [int(c) for c in Path(f"/proc/{p}/task/{t}/children").read_text().split()]
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
    return total


def wait_port(host, addr, port, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = host.run(["nc", "-z", "-w", "1", addr, str(port)], check=False)
        if r.returncode == 0:
            return True
        time.sleep(0.1)
    return False


class Setup:
    def __init__(self, name, start, stop, extra=False):
        self.name, self.start, self.stop = name, start, stop
        self.extra = extra  # only run when named in --only


def current_rules(port: int) -> str:
    """What chime-ha's nft backend loads for the benchmark's virtual server (rr, source NAT auto)."""
    from chimeha.lvs.backends.nft import Renderer
    from chimeha.lvs.types import DesiredState, Destination, Service, ServiceKey

    key = ServiceKey("TCP", VIP, 80)
    svc = Service(key, "rr", destinations=tuple(Destination(a, port, 1) for a in RS))
    return Renderer("auto", ["192.168.231.0/24"]).render(DesiredState({key: svc}))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--only", help="comma-separated setup names")
    ap.add_argument("--modes", default="keep-alive,new connection",
                    help="comma-separated: keep-alive, new connection (default both)")
    ap.add_argument("--out", default=str(HERE / "RESULTS.md"))
    ap.add_argument("--tuned", action="store_true",
                    help="tcp_tw_reuse=1 and ports 1024-65535 on client and director (default: stock sysctls)")
    ap.add_argument("--dirty", action="store_true",
                    help="before each measurement the director itself loads the real servers' port "
                         "(as HAProxy on the director would): their TIME_WAIT sockets for its address")
    args = ap.parse_args()
    for tool in ("wrk", "nginx", "haproxy", "nft", "nc"):
        if not shutil.which(tool):
            print(f"bench: {tool} is not installed", file=sys.stderr)
            return 2
    tmp = Path(tempfile.mkdtemp(prefix="chimeha-bench-"))
    topo = Topology("bnch")
    topo.open()
    try:
        d = topo.add_host("dir", "192.168.231.2/24", f"{VIP}/32")
        d.run(["sysctl", "-qw", "net.ipv4.ip_forward=1"])
        client = None  # the current setup's client (below): each setup has its own
        for i, addr in enumerate(RS, 1):
            h = topo.add_host(f"rs{i}", f"{addr}/24")
            wd = tmp / f"rs{i}"
            wd.mkdir()
            (wd / "nginx.conf").write_text(NGINX.format(dir=wd, addr=addr, name=f"rs{i}"))
            h.popen(["nginx", "-c", str(wd / "nginx.conf")])
            assert wait_port(h, addr, 8080), f"nginx rs{i} did not start"
        fmt = dict(vip=VIP, rs1=RS[0], rs2=RS[1])
        # Each setup talks to its own real-server port: a real server's TIME_WAIT
        # sockets left by one setup (the director's address and port, seen again
        # through another setup's NAT) would otherwise drop SYNs of the next one.
        for i, (name, snat) in enumerate(HAND_SNAT.items()):
            (tmp / f"hand{i}.nft").write_text(HAND_NFT.format(port=hand_port(i), snat=snat, **fmt))
        (tmp / "haproxy.cfg").write_text(HAPROXY.format(port=8081, **fmt))
        for name, port in (("nft", 8082), ("proxy", 8083), ("proxyuv", 8084), ("proxyaio", 8085), ("nftnc", 8088), ("proxytr", 8094), ("proxy2", 8095),
                           ("nftvip", 8086), ("nftnoc", 8093)):
            (tmp / f"{name}.conf").write_text(CHIMEHA_CONF.format(port=port, **fmt))
        (tmp / "current.nft").write_text(current_rules(8087))
        procs = {}

        def popen_ready(name, argv, port_check=True, ready_file=None):
            procs[name] = d.popen(argv, stderr=open(tmp / f"{name}.log", "w"))
            if ready_file:
                deadline = time.monotonic() + 20
                while not Path(ready_file).exists() and time.monotonic() < deadline:
                    time.sleep(0.05)
            if port_check and not wait_port(client, VIP, 80):
                raise RuntimeError(f"{name} is not answering: {(tmp / f'{name}.log').read_text()[-2000:]}")

        def stop(name):
            p = procs.pop(name, None)
            if p is not None:
                stop_process(p)

        def chime(name, dataplane, *extra):
            rf = tmp / f"{name}.ready"
            rf.unlink(missing_ok=True)
            popen_ready(name, [sys.executable, "-m", "chimeha.runtime.lvs_manager", str(tmp / f"{name}.conf"),
                               "--dataplane", dataplane, "--ready-file", str(rf), *extra], ready_file=rf)

        setups = [
            Setup(name, (lambda i=i: (d.run(["nft", "-f", str(tmp / f"hand{i}.nft")]), wait_port(client, VIP, 80))),
                  lambda: d.run(["nft", "delete", "table", "ip", "bench"]), extra=i > 0)
            for i, name in enumerate(HAND_SNAT)
        ] + [
            # chime-ha's table for this service as the pre-lean renderer wrote it
            # (verdict map, service chain, per-server chains), static: A/B of the layout
            Setup("chime-ha rules (previous layout)", lambda: (d.run(["nft", "-f", str(HERE / "previous_layout.nft")]),
                                                              wait_port(client, VIP, 80)),
                  lambda: d.run(["nft", "delete", "table", "inet", "chimeha"]), extra=True),
            # the current renderer's table for the same service, loaded as static rules
            # (no daemon running): separates the rule layout from the daemon's presence
            Setup("chime-ha rules (static)", lambda: (d.run(["nft", "-f", str(tmp / "current.nft")]),
                                                      wait_port(client, VIP, 80)),
                  lambda: d.run(["nft", "delete", "table", "inet", "chimeha"]), extra=True),
            Setup("haproxy (tcp)", lambda: popen_ready("haproxy", ["haproxy", "-db", "-f", str(tmp / "haproxy.cfg")]),
                  lambda: stop("haproxy")),
            Setup("chime-ha nft", lambda: chime("nft", "nft"), lambda: stop("nft")),
            Setup("chime-ha nft: snat to VIP", lambda: chime("nftvip", "nft", "--snat-to", "vip"),
                  lambda: stop("nftvip"), extra=True),
            # without the per-real-server counters (A/B of their per-packet cost)
            Setup("chime-ha nft (no counters)", lambda: chime("nftnoc", "nft", "--nft-counters", "off"),
                  lambda: stop("nftnoc"), extra=True),
            # the same without health checkers: does the daemon's own activity show?
            Setup("chime-ha nft (no checks)", lambda: chime("nftnc", "nft", "--no-checks"), lambda: stop("nftnc"),
                  extra=True),
            # as inside the VRRP daemon: control on the default loop, relaying on its own uvloop thread
            Setup("chime-ha proxy", lambda: chime("proxy", "proxy"), lambda: stop("proxy")),
            # the relay before the epoll one: asyncio protocols on the uvloop thread, one process (A/B)
            Setup("chime-ha proxy (transports)", lambda: chime("proxytr", "proxy", "--proxy-relay", "transports"),
                  lambda: stop("proxytr")),
            # the same relay in two processes sharing VIP:80 (SO_REUSEPORT), each scheduling alone
            Setup("chime-ha proxy (2 processes)", lambda: chime("proxy2", "proxy", "--proxy-workers", "2"),
                  lambda: stop("proxy2")),
            # not a product: the relay in the kernel (splice_probe.py: sockhash + sk_skb verdict, no
            # back-pressure), what kernel splicing would give the proxy
            Setup("kernel splice (probe)", lambda: popen_ready("splice", [
                sys.executable, str(HERE / "splice_probe.py"), "relay", f"{VIP}:80",
                *(f"{a}:{SETUP_PORT['kernel splice (probe)']}" for a in RS)]), lambda: stop("splice"), extra=True),
            # everything on one uvloop loop (standalone runner with --uvloop)
            Setup("chime-ha proxy, one uvloop", lambda: chime("proxyuv", "proxy", "--uvloop"),
                  lambda: stop("proxyuv")),
            # everything on one default asyncio loop (no uvloop at all)
            Setup("chime-ha proxy, asyncio only", lambda: chime("proxyaio", "proxy", "--proxy-loop", "same"),
                  lambda: stop("proxyaio")),
        ]
        if args.only:
            keep = set(args.only.split(","))
            unknown = keep - {s.name for s in setups}
            if unknown:
                raise SystemExit(f"bench: unknown setup(s) {', '.join(sorted(unknown))}; "
                                 f"known: {', '.join(s.name for s in setups)}")
            setups = [s for s in setups if s.name in keep]
        else:
            setups = [s for s in setups if not s.extra]
        # One client namespace (own address) per setup: with stock sysctls a client's TIME_WAIT
        # sockets (60 s) block its ports towards VIP:80, so a setup that leaves many would
        # otherwise slow down whichever setup runs after it. Each setup still meets its own.
        clients = {s.name: topo.add_host(f"cl{i}", f"192.168.231.{100 + i}/24") for i, s in enumerate(setups)}
        # Stock sysctls unless --tuned (a labelled column): nobody tunes these first.
        if args.tuned:
            for h in (*clients.values(), d):
                h.run(["sysctl", "-qw", "net.ipv4.tcp_tw_reuse=1", "net.ipv4.ip_local_port_range=1024 65535"])
        modes = {"keep-alive": [], "new connection": ["-H", "Connection: close"]}
        wanted = args.modes.split(",")
        if not set(wanted) <= set(modes):
            raise SystemExit(f"bench: --modes takes {', '.join(modes)}")
        modes = {m: v for m, v in modes.items() if m in wanted}
        results = {(s.name, m): [] for s in setups for m in modes}
        tw = {s.name: [] for s in setups}  # client TIME_WAIT sockets after each new-connection load
        errors = {(s.name, m): 0 for s in setups for m in modes}
        cpu = {(s.name, m): [] for s in setups for m in modes}  # balancer CPU us per request
        for rnd in range(args.rounds):
            # rotate the order every round: no setup always runs first (fresh
            # machine) or right after another one's leftovers
            for s in setups[rnd % len(setups):] + setups[:rnd % len(setups)]:
                if args.dirty:  # the director's own connections to this setup's real-server port
                    names = list(HAND_SNAT)
                    port = hand_port(names.index(s.name)) if s.name in names else SETUP_PORT[s.name]
                    for rs in RS:
                        d.run(["wrk", "-t1", "-c16", "-d2s", "-H", "Connection: close", f"http://{rs}:{port}/"],
                              timeout=60, check=False)
                client = clients[s.name]
                s.start()
                # the setup's process (HAProxy, chime-ha; the only one running): its CPU per request
                balancer = next(iter(procs.values()), None)
                try:
                    for mode, extra in modes.items():
                        cpu0 = tree_cpu(balancer.pid) if balancer else None
                        out = client.run(["wrk", "-t2", f"-c{args.connections}", f"-d{args.duration}s", *extra,
                                          f"http://{VIP}/"], timeout=args.duration + 60).stdout
                        rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
                        requests = int(re.search(r"(\d+) requests in", out).group(1))
                        if balancer:
                            cpu[(s.name, mode)].append((tree_cpu(balancer.pid) - cpu0) / max(requests, 1) * 1e6)
                        m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
                        bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
                        errs = (sum(map(int, m.groups())) if m else 0) + (int(bad.group(1)) if bad else 0)
                        results[(s.name, mode)].append(rps)
                        errors[(s.name, mode)] += errs
                        waits = ""
                        if extra:
                            ss = client.run(["ss", "-tanH", "state", "time-wait"], check=False).stdout
                            tw[s.name].append(len(ss.splitlines()))
                            waits = f"  client TIME_WAIT {tw[s.name][-1]}"
                        print(f"round {rnd + 1} {s.name:24s} {mode:15s} {rps:10.0f} req/s  errors {errs}{waits}",
                              flush=True)
                finally:
                    s.stop()
        report(args, setups, modes, results, errors, tw, cpu)
    finally:
        topo.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


def hand_port(i: int) -> int:
    """The real-server port of hand-written variant ``i`` (each its own: no cross-talk via TIME_WAIT)."""
    return 8080 if i == 0 else 8088 + i


SETUP_PORT = {"haproxy (tcp)": 8081, "chime-ha nft": 8082, "chime-ha proxy": 8083, "chime-ha proxy, one uvloop": 8084,
              "chime-ha proxy, asyncio only": 8085, "chime-ha nft: snat to VIP": 8086, "chime-ha rules (static)": 8087, "chime-ha rules (previous layout)": 8086,
              "chime-ha nft (no checks)": 8088, "chime-ha nft (no counters)": 8093,
              "chime-ha proxy (transports)": 8094, "chime-ha proxy (2 processes)": 8095,
              "kernel splice (probe)": 8096}


def report(args, setups, modes, results, errors, tw=None, cpu=None) -> None:
    med = {k: statistics.median(v) for k, v in results.items()}
    cpu_med = {k: statistics.median(v) for k, v in (cpu or {}).items() if v}
    cpu = ""
    try:
        cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    lines = [
        "# Data-plane benchmark (bench/dataplane)", "",
        f"- Command: `{' '.join([sys.executable.split('/')[-1], *sys.argv])}`",
        f"- Machine: {os.cpu_count()} cores, {cpu}, Linux {platform.release()}, Python {platform.python_version()}",
        f"- Layout: client (one namespace and address per setup) -> director (VIP {VIP}:80) -> two nginx real servers ({RS[0]}, {RS[1]}; one port per setup, 8080-8088), "
        "all in network namespaces on one bridge; every process shares the same cores.",
        ("- Client and director namespaces: net.ipv4.tcp_tw_reuse=1, ip_local_port_range 1024-65535 (--tuned); "
         if args.tuned else "- Stock sysctls (no tcp_tw_reuse or port-range tuning); ")
        + ("real servers dirty: before each measurement the director ran wrk -c16 -d2s (Connection: close) "
           "against each real server's port (--dirty); " if args.dirty else "clean real servers; ")
        + "director: ip_forward=1. Health checks (TCP_CHECK, delay_loop 6) run during chime-ha's measurements.",
        f"- Load: wrk -t2 -c{args.connections} -d{args.duration}s, {args.rounds} rounds, setups alternated "
        "within each round, the order rotated every round; figures are medians of the rounds (requests/s).", "",
        "| setup | " + " | ".join(f"{m} req/s | vs HAProxy | vs hand nft" for m in modes) + " | errors |",
        "|---|" + "---|---|---|" * len(modes) + "---|",
    ]
    for s in setups:
        cells = []
        for m in modes:
            v = med[(s.name, m)]
            h = med.get(("haproxy (tcp)", m))
            n = med.get(("hand-written nft", m))
            cells.append(f"{v:,.0f} | " + (f"{v / h:.2f}x" if h else "-") + " | " + (f"{v / n:.2f}x" if n else "-"))
        errs = sum(errors[(s.name, m)] for m in modes)
        lines.append(f"| {s.name} | " + " | ".join(cells) + f" | {errs} |")
    lines += ["", "Raw rounds (req/s):", ""]
    for (name, mode), vals in results.items():
        lines.append(f"- {name}, {mode}: " + ", ".join(f"{v:,.0f}" for v in vals))
    if cpu_med:
        lines += ["", "The balancer process's CPU per request (user + system, all its threads and worker "
                  "processes, including the kernel's network work done in its context), medians of the rounds, "
                  "microseconds (for chime-ha nft the daemon only: the kernel forwards); none for static rules:", "",
                  "| setup | " + " | ".join(f"{m} us/request" for m in modes) + " |",
                  "|---|" + "---|" * len(modes)]
        for s in setups:
            if any((s.name, m) in cpu_med for m in modes):
                lines.append(f"| {s.name} | " + " | ".join(f"{cpu_med[(s.name, m)]:.1f}" if (s.name, m) in cpu_med
                                                            else "-" for m in modes) + " |")
    if tw and any(tw.values()):
        lines += ["", "Client TIME_WAIT sockets after each new-connection measurement (each setup has its own "
                  "client; stock port range 32768-60999, i.e. ~14,000 even ports for connect()):", ""]
        lines += [f"- {name}: " + ", ".join(f"{v:,}" for v in vals) for name, vals in tw.items() if vals]
    text = "\n".join(lines) + "\n"
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    sys.exit(main())

"""Which source NAT survives "dirty" real servers on a stock kernel (issue 11 item 1).

The question: the nft data plane must masquerade DNATed connections when
client and real servers share a subnet. Port-preserving masquerade reuses the
client's port on the director's address; when the director itself (HAProxy,
chime-ha's proxy for another service, a health checker, a director that is
also a client) has just talked to the same real-server port from the same
address, the real server still holds TIME_WAIT sockets for those 4-tuples and
new connections collide with them.

Unlike ``run.py``, every setup here is isolated from the others, so the order
of setups cannot decide a figure (the flaw of the first stock-kernel run, see
RESULTS.md):

* each setup has its own client namespace and address (its TIME_WAIT sockets
  and the director's conntrack entries are its own), and
* its own real-server port (the real servers' TIME_WAIT is per 4-tuple).

``--state dirty`` makes the director itself run ``wrk -c32`` with
``Connection: close`` against the setup's real-server port on both real
servers for ``--dirty-seconds`` right before the setup's turn, from its own
address, until TIME_WAIT sockets cover most of its ephemeral ports (counted
with ``ss`` and reported); ``clean`` does not. Stock sysctls always.

    sudo .venv/bin/python bench/dataplane/snat.py [--state clean,dirty] [--conns 32,256]
        [--duration 5] [--rounds 3] [--only "..."] [--out bench/dataplane/SNAT.md]
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT / "src"))

from chimeha.lab.netns import Topology, stop_process  # noqa: E402

sys.path.insert(0, str(HERE))
# the same DNAT table, HAProxy and chime-ha configurations as run.py
from run import CHIMEHA_CONF, HAND_NFT, HAPROXY, NGINX, RS, VIP, wait_port  # noqa: E402

DIRECTOR = "192.168.231.2"
FIRST_PORT = 9000

def nginx_conf(directory, addr: str, name: str, ports) -> str:
    """run.py's nginx configuration, listening on ``ports`` instead of run.py's fixed ones."""
    listens = "".join(f"        listen {addr}:{p} backlog=4096;\n" for p in ports)
    text = re.sub(r"(        listen \{addr\}:\d+ backlog=4096;\n)+", lambda _: listens.replace("{", "{{").replace("}", "}}"),
                  NGINX)
    return text.format(dir=directory, addr=addr, name=name)


#: hand-written source NAT variants: name -> the postrouting statement
HAND = {
    "hand nft: masquerade": "masquerade",
    "hand nft: masquerade fully-random": "masquerade fully-random",
    "hand nft: masquerade to :1024-32767": "meta l4proto tcp masquerade to :1024-32767",
    "hand nft: snat to VIP": f"snat ip to {VIP}",
}



#: chime-ha setups: name -> extra lvs_manager arguments
CHIME = {
    "chime-ha nft (default)": [],
    "chime-ha nft --snat-to masquerade": ["--snat-to", "masquerade"],
    "chime-ha nft --snat-to vip": ["--snat-to", "vip"],
}
SETUPS = [*HAND, "haproxy (tcp)", *CHIME]



def wrk(host, conns: int, duration: int, close: bool, url: str) -> tuple[float, int]:
    extra = ["-H", "Connection: close"] if close else []
    out = host.run(["wrk", "-t2", f"-c{conns}", f"-d{duration}s", *extra, url], timeout=duration + 60).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return rps, (sum(map(int, m.groups())) if m else 0) + (int(bad.group(1)) if bad else 0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--state", default="clean,dirty")
    ap.add_argument("--conns", default="32,256")
    ap.add_argument("--modes", default="new connection,keep-alive")
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--only", help="comma-separated setup names")
    ap.add_argument("--out", default=str(HERE / "SNAT.md"))
    ap.add_argument("--dirty-seconds", type=int, default=8,
                    help="how long the director loads each real server before a dirty setup's turn")
    args = ap.parse_args()
    for tool in ("wrk", "nginx", "haproxy", "nft", "nc"):
        if not shutil.which(tool):
            print(f"bench: {tool} is not installed", file=sys.stderr)
            return 2
    setups = SETUPS
    if args.only:
        setups = [s for s in args.only.split(",")]
        unknown = set(setups) - set(SETUPS)
        if unknown:
            raise SystemExit(f"bench: unknown setup(s) {', '.join(sorted(unknown))}; known: {', '.join(SETUPS)}")
    states = args.state.split(",")
    conns = [int(c) for c in args.conns.split(",")]
    modes = args.modes.split(",")
    if not set(states) <= {"clean", "dirty"} or not set(modes) <= {"new connection", "keep-alive"}:
        raise SystemExit("bench: --state takes clean,dirty; --modes takes 'new connection',keep-alive")
    # one real-server port per (setup, state): no TIME_WAIT carried between them
    ports = {(s, st): FIRST_PORT + i for i, (s, st) in enumerate((s, st) for s in setups for st in states)}
    tmp = Path(tempfile.mkdtemp(prefix="chimeha-snat-"))
    topo = Topology("snat")
    topo.open()
    procs: dict[str, object] = {}
    try:
        d = topo.add_host("dir", f"{DIRECTOR}/24", f"{VIP}/32")
        d.run(["sysctl", "-qw", "net.ipv4.ip_forward=1"])
        # one client per (setup, state): its own address, its own TIME_WAIT
        clients = {key: topo.add_host(f"c{i}", f"192.168.231.{100 + i}/24") for i, key in enumerate(ports)}
        rs_list = []
        for i, addr in enumerate(RS, 1):
            h = topo.add_host(f"rs{i}", f"{addr}/24")
            rs_list.append(h)
            wd = tmp / f"rs{i}"
            wd.mkdir()
            (wd / "nginx.conf").write_text(nginx_conf(wd, addr, f"rs{i}", ports.values()))
            h.popen(["nginx", "-c", str(wd / "nginx.conf")])
            assert wait_port(h, addr, min(ports.values())), f"nginx rs{i} did not start"
        fmt = dict(vip=VIP, rs1=RS[0], rs2=RS[1])
        rs_hosts = rs_list

        def start(setup: str, port: int, client) -> None:
            if setup in HAND:
                f = tmp / "hand.nft"
                f.write_text(HAND_NFT.format(port=port, snat=HAND[setup], **fmt))
                d.run(["nft", "-f", str(f)])
            elif setup == "haproxy (tcp)":
                f = tmp / "haproxy.cfg"
                f.write_text(HAPROXY.format(port=port, **fmt))
                procs["p"] = d.popen(["haproxy", "-db", "-f", str(f)], stderr=open(tmp / "haproxy.log", "w"))
            else:
                conf, ready = tmp / "chime.conf", tmp / "chime.ready"
                conf.write_text(CHIMEHA_CONF.format(port=port, **fmt))
                ready.unlink(missing_ok=True)
                procs["p"] = d.popen([sys.executable, "-m", "chimeha.runtime.lvs_manager", str(conf), "--dataplane",
                                      "nft", "--ready-file", str(ready), *CHIME[setup]],
                                     stderr=open(tmp / "chime.log", "w"))
                deadline = time.monotonic() + 20
                while not ready.exists() and time.monotonic() < deadline:
                    time.sleep(0.05)
            if not wait_port(client, VIP, 80):
                logs = "".join(f.read_text()[-1500:] for f in tmp.glob("*.log"))
                raise RuntimeError(f"{setup} is not answering: {logs}")

        def stop(setup: str) -> None:
            if setup in HAND:
                d.run(["nft", "delete", "table", "ip", "bench"], check=False)
            p = procs.pop("p", None)
            if p is not None:
                stop_process(p)

        def dirty(port: int) -> int:
            """The director's own connections to ``port`` on both real servers, as HAProxy there would make.

            Enough of them (``--dirty-seconds`` at -c32, both servers at once) to leave TIME_WAIT sockets
            on most of the director's ephemeral ports: they last 60 s, longer than one setup's turn.
            """
            loads = [d.popen(["wrk", "-t1", "-c32", f"-d{args.dirty_seconds}s", "-H", "Connection: close",
                              f"http://{rs}:{port}/"]) for rs in RS]
            for p in loads:
                p.wait(timeout=args.dirty_seconds + 60)
            return sum(len(h.run(["ss", "-Htn", "state", "time-wait", "dst", DIRECTOR, "sport", "=", f":{port}"], timeout=30).stdout.splitlines())
                       for h in rs_hosts)

        tw_counts: dict[str, list[int]] = {}
        results: dict[tuple, list[float]] = {}
        errors: dict[tuple, int] = {}
        order = [(s, st) for st in states for s in setups]
        for rnd in range(args.rounds):
            k = rnd % len(order)
            for setup, state in order[k:] + order[:k]:
                port, client = ports[(setup, state)], clients[(setup, state)]
                if state == "dirty":
                    tw = dirty(port)
                    tw_counts.setdefault(setup, []).append(tw)
                    print(f"round {rnd + 1} {setup}: real servers hold {tw} TIME_WAIT sockets for the director",
                          flush=True)
                start(setup, port, client)
                try:
                    for mode in modes:
                        for c in conns:
                            rps, errs = wrk(client, c, args.duration, mode == "new connection", f"http://{VIP}/")
                            key = (setup, state, mode, c)
                            results.setdefault(key, []).append(rps)
                            errors[key] = errors.get(key, 0) + errs
                            print(f"round {rnd + 1} {setup:36s} {state:5s} {mode:14s} -c{c:<4d} {rps:9.0f} req/s"
                                  f"  errors {errs}", flush=True)
                finally:
                    stop(setup)
        report(args, setups, states, modes, conns, results, errors, tw_counts)
    finally:
        for p in procs.values():
            stop_process(p)
        topo.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


def report(args, setups, states, modes, conns, results, errors, tw_counts) -> None:
    med = {k: statistics.median(v) for k, v in results.items()}
    cols = [(st, m, c) for st in states for m in modes for c in conns]
    load = os.getloadavg()
    lines = [
        "# Source NAT on a stock kernel, clean and dirty real servers (bench/dataplane/snat.py)", "",
        f"- Command: `{' '.join([sys.executable.split('/')[-1], *sys.argv])}`",
        f"- Machine: {os.cpu_count()} cores, Linux {platform.release()}, Python {platform.python_version()}; "
        f"load average at the end {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}",
        "- Stock sysctls. Each (setup, state) has its own client namespace/address and its own real-server "
        "port, so no setup inherits another's TIME_WAIT or conntrack entries. dirty: right before each "
        f"turn the director ran `wrk -t1 -c32 -d{args.dirty_seconds}s` (Connection: close) against that "
        "port on both real servers at once, from its own address.",
        f"- wrk -t2 -d{args.duration}s, {args.rounds} rounds, order rotated each round; medians (requests/s); "
        "ratios are to HAProxy and to the best hand-written nft variant of the same column.", "",
        "| setup | " + " | ".join(f"{st} {m} -c{c}" for st, m, c in cols) + " | errors |",
        "|---|" + "---|" * len(cols) + "---|",
    ]
    hand = [s for s in setups if s in HAND]
    for s in setups:
        cells = []
        for st, m, c in cols:
            v = med.get((s, st, m, c))
            if v is None:
                cells.append("-")
                continue
            h = med.get(("haproxy (tcp)", st, m, c))
            best = max((med.get((x, st, m, c), 0) for x in hand), default=0)
            cell = f"{v:,.0f}"
            if h:
                cell += f" ({v / h:.2f}x H"
                cell += f", {v / best:.2f}x best nft)" if best else ")"
            cells.append(cell)
        errs = sum(e for k, e in errors.items() if k[0] == s)
        lines.append(f"| {s} | " + " | ".join(cells) + f" | {errs} |")
    if tw_counts:
        lines += ["", "TIME_WAIT sockets the two real servers held for the director's address when a dirty "
                  "setup's turn began (ss), per round:", ""]
        lines += [f"- {s}: " + ", ".join(f"{n:,}" for n in v) for s, v in tw_counts.items()]
    lines += ["", "Raw rounds (req/s):", ""]
    for key, vals in results.items():
        lines.append(f"- {key[0]}, {key[1]}, {key[2]}, -c{key[3]}: " + ", ".join(f"{v:,.0f}" for v in vals))
    text = "\n".join(lines) + "\n"
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    sys.exit(main())

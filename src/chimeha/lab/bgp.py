"""The BGP/ECMP lab: an FRR router, a client behind it, three chime-ha directors, two real servers.

::

    client 10.99.2.2 --(veth)-- router 10.99.2.1 | 10.99.1.1  (FRR zebra+bgpd, AS 65000,
                                                    |            maximum-paths 8, L4 ECMP hash)
                               lab bridge 10.99.1.0/24
              d1 .11   d2 .12   d3 .13  (chime-ha run: lb_algo mh, nft, chimeha_bgp AS 65010)
              r1 .21   r2 .22          (real servers: answer "DIRECTOR NAME" per line)

The VIP 10.99.60.10 exists on no interface: the router learns it from the
directors by BGP and forwards to them by ECMP; each director DNATs with the
same Maglev table and masquerades. Everything lives in namespaces this lab
creates (``Topology``); the router's ``ip_forward`` and
``fib_multipath_hash_policy`` are set inside its own namespace only.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from chimeha.lab import bgp_apps
from chimeha.lab.cluster import daemon_argv
from chimeha.lab.netns import BuiltOrTornDown, NetnsError, Topology, run_ip
from chimeha.lab.node import Node, add_node, child_pids, first_child

VIP = "10.99.60.10"
ROUTER_LAN, ROUTER_CLIENT, CLIENT = "10.99.1.1", "10.99.2.1", "10.99.2.2"
#: the client's source addresses (Maglev hashes the source address: many of them
#: exercise many table slots, and show every director choosing the same real server)
CLIENT_SOURCES = tuple(f"10.99.2.{i}" for i in range(2, 18))
DIRECTORS = {"d1": "10.99.1.11", "d2": "10.99.1.12", "d3": "10.99.1.13"}
REALS = {"r1": "10.99.1.21", "r2": "10.99.1.22"}
ROUTER_AS, DIRECTOR_AS = 65000, 65010
HOLD = 3
FRR = "/usr/lib/frr"
PRIVATE = ("/run", "/etc/keepalived", "/etc/frr", "/var/run/frr")


def director_config(address: str, hold: int = HOLD, forwarding: str = "nat", bfd: bool = False) -> str:
    reals = "".join(f"""    real_server {ip} 80 {{
        TCP_CHECK {{
            connect_timeout 1
            delay_loop 1
        }}
    }}
""" for ip in REALS.values())
    return f"""! chime-ha BGP lab director {address}
virtual_server {VIP} 80 {{
    delay_loop 1
    lb_algo mh
    lb_kind NAT
    protocol TCP
{reals}}}
chimeha_bgp {{
    local_as {DIRECTOR_AS}
    router_id {address}
    hold_time {hold}
    neighbor {ROUTER_LAN} {{
        remote_as {ROUTER_AS}{chr(10) + "        bfd" if bfd else ""}
    }}
    announce {{
        {VIP}
    }}
    community {DIRECTOR_AS}:100
    forwarding {forwarding}
}}
"""


def router_config(hold: int = HOLD, bfd: bool = False) -> str:
    return f"""frr defaults datacenter
hostname router
!
router bgp {ROUTER_AS}
 bgp router-id {ROUTER_LAN}
 no bgp ebgp-requires-policy
 timers bgp {max(1, hold // 3)} {hold}
 neighbor DIRS peer-group
 neighbor DIRS remote-as {DIRECTOR_AS}
 bgp listen range 10.99.1.0/24 peer-group DIRS
{" neighbor DIRS bfd" + chr(10) if bfd else ""} address-family ipv4 unicast
  maximum-paths 8
 exit-address-family
exit
!
"""


class BgpLab(BuiltOrTornDown):
    """Build, drive and tear down the lab (use as a context manager)."""

    def __init__(self, tag: str = "bgp", logdir: str | None = None, dataplane: str = "nft",
                 cgroups: dict[str, list[str]] | None = None, forwarding: str = "nat", bfd: bool = False):
        """``dataplane``: the directors' ``--dataplane`` (``proxy`` also puts the VIP on their ``lo``, so
        the routed packets reach its listener); ``cgroups``: per director, ``cgroup.procs`` files its
        chime-ha (and all it starts) must run in (the bench's CPU-limited groups)."""
        self.dataplane = dataplane
        #: "direct": the directors steer statelessly and the real servers answer the clients
        #: themselves (VIP on their lo, a route to the clients via the router)
        self.forwarding = forwarding
        #: BFD between the router and every director (bfdd on both sides)
        self.bfd = bfd
        self.cgroups = cgroups or {}
        self.topo = Topology(tag)
        self.logdir = Path(logdir or tempfile.mkdtemp(prefix="chime-ha-bgp-lab-"))
        self.nodes: dict[str, Node] = {}
        self.daemons: dict[str, subprocess.Popen] = {}

    # ------------------------------------------------------------------ build
    def build(self) -> None:
        self.topo.open()
        r = self.nodes["router"] = add_node(self.topo, "router", f"{ROUTER_LAN}/24", private_dirs=PRIVATE)
        c = self.nodes["client"] = add_node(self.topo, "client", private_dirs=PRIVATE)
        # the client network: one veth straight between the router and the client namespaces
        # (the client's own bridge port stays down and without an address: its only way out is the router)
        run_ip("-n", c.netns, "link", "set", "eth0", "down")
        run_ip("link", "add", "name", "eth1", "netns", r.netns, "type", "veth", "peer", "name", "eth1",
            "netns", c.netns)
        run_ip("-n", r.netns, "addr", "add", f"{ROUTER_CLIENT}/24", "dev", "eth1")
        run_ip("-n", r.netns, "link", "set", "eth1", "up")
        for src in CLIENT_SOURCES:
            run_ip("-n", c.netns, "addr", "add", f"{src}/24", "dev", "eth1")
        run_ip("-n", c.netns, "link", "set", "eth1", "up")
        run_ip("-n", c.netns, "route", "add", "10.99.60.0/24", "via", ROUTER_CLIENT)
        for key, val in (("net.ipv4.ip_forward", "1"), ("net.ipv4.fib_multipath_hash_policy", "1")):
            r.run(["sysctl", "-qw", f"{key}={val}"])
        self._start_router()
        for name, ip in REALS.items():
            n = self.nodes[name] = add_node(self.topo, name, f"{ip}/24", private_dirs=PRIVATE)
            if self.forwarding == "direct":
                n.run(["ip", "addr", "add", f"{VIP}/32", "dev", "lo"])
                n.run(["ip", "route", "add", "10.99.2.0/24", "via", ROUTER_LAN])
            n.popen([sys.executable, "-I", "-c", bgp_apps.SERVER, name])
        for name, ip in DIRECTORS.items():
            n = self.nodes[name] = add_node(self.topo, name, f"{ip}/24", private_dirs=PRIVATE)
            n.run(["sysctl", "-qw", "net.ipv4.ip_forward=1"])  # inside the director's namespace only
            # the way back to the clients (lab-local; a real director has its default route here)
            n.run(["ip", "route", "add", "10.99.2.0/24", "via", ROUTER_LAN])
            if dataplane_needs_local_vip(self.dataplane):
                n.run(["ip", "addr", "add", f"{VIP}/32", "dev", "lo"])
            n.write_file("/etc/keepalived/keepalived.conf", director_config(ip, forwarding=self.forwarding, bfd=self.bfd))
            n.run(["nft", "-f", "-"], input=FLOW_LOG)
            self.start_director(name)

    def _start_router(self) -> None:
        r = self.nodes["router"]
        r.write_file("/etc/frr/zebra.conf", "hostname router\n")
        r.write_file("/etc/frr/bgpd.conf", router_config(bfd=self.bfd))
        r.write_file("/etc/frr/bfdd.conf", "hostname router\n")
        d = "/var/run/frr"
        r.run(["chown", "frr:frr", d])  # zebra drops to user frr (it has no -S)
        common = ["-P", "0", "--vty_socket", d]
        daemons = [("zebra", ["-z", f"{d}/zserv.api"])]
        if self.bfd:
            daemons.append(("bfdd", ["-z", f"{d}/zserv.api", "--bfdctl", f"{d}/bfdd.sock"]))
        daemons.append(("bgpd", ["-S", "-z", f"{d}/zserv.api"]))
        for daemon, extra in daemons:
            log = open(self.logdir / f"router-{daemon}.log", "w")
            r.popen([f"{FRR}/{daemon}", *common, *extra, "-f", f"/etc/frr/{daemon}.conf",
                     "-i", f"{d}/{daemon}.pid"], stdout=log, stderr=subprocess.STDOUT)
            log.close()
            _wait(lambda: r.run(["vtysh", "--vty_socket", d, "-d", daemon, "-c", "show version"],
                                check=False).returncode == 0, 10, f"router {daemon} did not start")

    def start_director(self, name: str) -> None:
        n = self.nodes[name]
        log = open(self.logdir / f"{name}.log", "a")
        argv = [*daemon_argv("chime-ha"), "--dataplane", self.dataplane, "--metrics", "127.0.0.1:9650"]
        procs = self.cgroups.get(name)
        if procs:
            # The node's /sys is its network namespace's sysfs (no cgroupfs there): a shell waits
            # until we have moved it into the groups from here, then execs chime-ha, whose children
            # (bgpd, nft, vtysh) are born inside them.
            argv = ["sh", "-c", f'while [ ! -e {_GO} ]; do sleep 0.02; done; rm -f {_GO}; exec "$@"', "wrap",
                    *argv]
        self.daemons[name] = proc = n.popen(argv, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        if procs:
            shell = first_child(proc.pid, "the command nsenter started")
            for path in procs:
                with open(path, "w") as fh:
                    fh.write(f"{shell}\n")
            n.write_file(_GO, "")

    def kill_director(self, name: str) -> None:
        """SIGKILL the director's chime-ha (its bgpd dies with it: PR_SET_PDEATHSIG)."""
        proc = self.daemons.pop(name)
        # nsenter's child is chime-ha (host PID; a wrapper such as the bench's cgroup shell execs it)
        for pid in child_pids(proc.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.nodes[name].stop(proc, grace=2)

    def stop_director(self, name: str) -> None:
        """SIGTERM: a clean stop (withdraw first)."""
        self.nodes[name].stop(self.daemons.pop(name), grace=10)

    def close(self) -> None:
        for n in list(self.nodes.values()):
            try:
                n.close()
            except Exception:
                pass
        self.topo.close()

    # ------------------------------------------------------------------ look
    def vtysh(self, *cmds: str) -> str:
        argv = ["vtysh", "--vty_socket", "/var/run/frr", "-d", "bgpd"]
        for c in cmds:
            argv += ["-c", c]
        return self.nodes["router"].run(argv, check=False).stdout

    def next_hops(self) -> set[str]:
        """Next hops of the VIP's route in the router's kernel FIB (``ip -j route``)."""
        out = self.nodes["router"].run(["ip", "-j", "route", "show", f"{VIP}/32"], check=False).stdout
        hops = set()
        for r in json.loads(out or "[]"):
            if r.get("gateway"):
                hops.add(r["gateway"])
            for nh in r.get("nexthops", []):
                if nh.get("gateway"):
                    hops.add(nh["gateway"])
        return hops

    def flow_owners(self) -> dict[tuple[str, int], str]:
        """(client address, port) -> the director whose ingress saw the connection's SYN (lab instrumentation:
        with ``forwarding direct`` the real server sees the client, not the director)."""
        out: dict[tuple[str, int], str] = {}
        for name, ip in DIRECTORS.items():
            text = self.nodes[name].run(["nft", "-j", "list", "set", "netdev", "chimeha_lab", "syn"],
                                        check=False).stdout
            for item in json.loads(text or '{"nftables": []}').get("nftables", []):
                for el in (item.get("set") or {}).get("elem") or ():
                    val = el.get("elem", {}).get("val", el) if isinstance(el, dict) else el
                    if isinstance(val, dict) and "concat" in val:
                        out[(str(val["concat"][0]), int(val["concat"][1]))] = ip
        return out

    def attribute(self, conns: list, src_key, port_key, director_key) -> None:
        """Rewrite each connection's director from :meth:`flow_owners` (``forwarding direct`` only)."""
        if self.forwarding != "direct":
            return
        owners = self.flow_owners()
        for c in conns:
            c[director_key] = owners.get((c[src_key], c[port_key]), "unknown")

    def cut_link(self, name: str) -> None:
        """The director's link goes down silently: no FIN, no RST; only hold time or BFD notice."""
        self.nodes[name].run(["ip", "link", "set", "eth0", "down"])

    def hop_order(self) -> list[str]:
        """The VIP route's next hops in the router's FIB order (hash-threshold ECMP splits the
        hash space in this order: removing an end hop shifts the boundaries of the others)."""
        out = self.nodes["router"].run(["ip", "-j", "route", "show", f"{VIP}/32"], check=False).stdout
        return [nh["gateway"] for r in json.loads(out or "[]") for nh in r.get("nexthops", []) if nh.get("gateway")]

    def routes_to_vip(self) -> int:
        out = self.nodes["router"].run(["ip", "-j", "route", "show", f"{VIP}/32"], check=False).stdout
        return len(json.loads(out or "[]"))

    def wait_next_hops(self, want: set[str], timeout: float) -> float | None:
        """Seconds until the VIP's next hops are exactly ``want`` (None on timeout)."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if self.next_hops() == want:
                return time.monotonic() - t0
            time.sleep(0.05)
        return None

    def client_run(self, count: int = 300) -> dict:
        out = json.loads(self.nodes["client"].run([sys.executable, "-I", "-c", bgp_apps.CLIENT, VIP, str(count),
                                                   ",".join(CLIENT_SOURCES)], timeout=120).stdout)
        if self.forwarding == "direct":  # the answers name the client: count directors from their SYNs
            self.attribute(out["conns"], 0, 1, 2)
            out["directors"], out["chosen"] = {}, {}
            for src, _port, d, real in out["conns"]:
                out["directors"][d] = out["directors"].get(d, 0) + 1
                out["chosen"].setdefault(src, {}).setdefault(d, [])
                if real not in out["chosen"][src][d]:
                    out["chosen"][src][d].append(real)
        return out

    def holder(self, count: int, interval: float = 0.1) -> subprocess.Popen:
        c = self.nodes["client"]
        return c.popen([sys.executable, "-I", "-c", bgp_apps.HOLDER, VIP, str(count), str(interval),
                        ",".join(CLIENT_SOURCES)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def status(self, name: str) -> dict:
        out = self.nodes[name].run(_status_argv(), check=False).stdout
        try:
            return json.loads(out)
        except ValueError:
            return {}


_GO = "/run/chimeha-lab-go"
#: Lab instrumentation on every director (not chime-ha's): the SYNs its ingress saw, before any steering.
FLOW_LOG = f"""table netdev chimeha_lab {{
  set syn {{
    type ipv4_addr . inet_service
    size 65535
    flags dynamic
  }}
  chain ingress {{
    type filter hook ingress device "eth0" priority -200; policy accept;
    ip daddr {VIP} tcp dport 80 tcp flags & (syn | ack) == syn add @syn {{ ip saddr . tcp sport }}
  }}
}}
"""


def dataplane_needs_local_vip(dataplane: str) -> bool:
    """The proxy accepts connections itself: the VIP must be a local address of the director."""
    return dataplane == "proxy"


def _status_argv() -> list[str]:
    return _chime() + ["status", "--json"]


def _chime() -> list[str]:
    script = Path(sys.executable).with_name("chime-ha")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from chimeha.cli import main; sys.exit(main())"]


def _wait(cond, timeout: float, what: str) -> None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if cond():
            return
        time.sleep(0.1)
    raise NetnsError(what)

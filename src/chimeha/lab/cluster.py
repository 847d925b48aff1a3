"""The seed's two-server cluster, built in lab nodes, with instruments.

:class:`SeedCluster` makes the document's topology (server1 192.168.231.11 and
server2 192.168.231.12, each a :class:`~chimeha.lab.node.Node` with ``ens160``,
plus a client 192.168.231.100, on one bridge that cannot route out), installs
a keepalived.conf per server as ``/etc/keepalived/keepalived.conf``, runs the
stand-in services and an HA daemon (chime-ha or keepalived) in each server,
and keeps two instruments running:

* a :class:`VipWatcher` per server (``ip monitor address`` inside the node)
  timestamps every address change on arrival, so VIP move times are measured
  to about a millisecond without polling;
* the client's prober (:mod:`chimeha.lab.probe`) hits every service endpoint
  through the VIPs every 20 ms, so client-visible outages are measured too.

All timestamps are ``time.monotonic()``, shared by every namespace.
The verification steps live in :mod:`chimeha.lab.runner`; the failover
benchmark drives the same class.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from chimeha.lab.netns import BuiltOrTornDown, Topology
from chimeha.lab.node import Node, add_node
from chimeha.lab.probe import ProbeResult

SERVERS = {"server1": "192.168.231.11", "server2": "192.168.231.12"}
CLIENT = ("client", "192.168.231.100")
PREFIXLEN = 24
IFNAME = "ens160"
CONF_PATH = "/etc/keepalived/keepalived.conf"
DAEMONS = ("chime-ha", "keepalived")
MODES = ("active-standby", "active-active")

# (label, host, port) of what users reach, per mode, as the document says.
ENDPOINTS = {
    "active-standby": (("Web UI", "192.168.231.10", 8033), ("API", "192.168.231.10", 8801),
                       ("API", "192.168.231.10", 8802)),
    "active-active": (("Web UI", "192.168.231.20", 80), ("API", "192.168.231.10", 8801),
                      ("API", "192.168.231.10", 8802)),
}
VIPS = {"active-standby": ("192.168.231.10",), "active-active": ("192.168.231.10", "192.168.231.20")}

# Daemon log lines worth quoting when a step fails.
# "***" is how keepalived marks a configuration error ("... is missing a parameter").
_EVIDENCE = re.compile(r"passw|auth|invalid|mismatch|error|fatal|exit|fail|refus|wrong|traceback|cannot|unable"
                       r"|missing|\*\*\*", re.IGNORECASE)


def seed_dir() -> Path:
    """examples/seed of this source tree (the configs are never modified)."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        cand = parent / "examples" / "seed"
        if (cand / "active-standby-server1.conf").is_file():
            return cand
    raise FileNotFoundError("examples/seed not found next to the chimeha sources; pass seed_dir explicitly")


def seed_configs(mode: str, directory: Path | None = None) -> dict[str, str]:
    """The seed's config text for each server, byte for byte."""
    directory = directory or seed_dir()
    return {name: (directory / f"{mode}-{name}.conf").read_text(encoding="utf-8") for name in SERVERS}


def daemon_argv(kind: str) -> list[str]:
    """argv that runs ``kind`` in the foreground with the node's keepalived.conf."""
    if kind == "keepalived":
        # -n: stay in the foreground (we own the PID), -l -D: log to stderr, detailed.
        return ["keepalived", "-n", "-l", "-D", "-f", CONF_PATH]
    if kind == "chime-ha":
        script = Path(sys.executable).with_name("chime-ha")
        base = [str(script)] if script.exists() else [
            sys.executable, "-c", "import sys; from chimeha.cli import main; sys.exit(main())"]
        return [*base, "run", "-f", CONF_PATH]
    raise ValueError(f"unknown daemon {kind!r}: expected one of {', '.join(DAEMONS)}")


def chime_ha_available() -> str | None:
    """None when ``chime-ha run`` exists in this tree, else why not."""
    import importlib.util

    if importlib.util.find_spec("chimeha.cli.run") is None:
        return "chime-ha run is not implemented yet (src/chimeha/cli/run.py missing)"
    return None


@dataclass
class AddrEvent:
    t: float
    node: str
    added: bool
    address: str


class VipWatcher:
    """Tracks one node's IPv4 addresses on ``ens160`` from ``ip monitor`` events."""

    def __init__(self, node: Node, events: list[AddrEvent], lock: threading.Lock):
        self.node = node
        self.events = events
        self.lock = lock
        self.current: set[str] = set()
        self.proc = node.popen(["ip", "-o", "-4", "monitor", "address", "dev", IFNAME],
                               stdout=subprocess.PIPE, text=True, bufsize=1)
        # Snapshot only after the monitor runs, so no change can fall between them.
        time.sleep(0.05)
        with self.lock:
            self.current = {a for a in node.addresses_on(IFNAME) if ":" not in a}
        self.thread = threading.Thread(target=self._read, name=f"vipwatch-{node.name}", daemon=True)
        self.thread.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            t = time.monotonic()
            m = re.search(r"\binet (\S+?)/\d+", line)
            if not m:
                continue
            added = not line.startswith("Deleted")
            with self.lock:
                if added:
                    self.current.add(m.group(1))
                else:
                    self.current.discard(m.group(1))
                self.events.append(AddrEvent(t, self.node.name, added, m.group(1)))


@dataclass
class DaemonRun:
    kind: str
    proc: subprocess.Popen
    log_path: Path
    started: float


@dataclass
class SeedCluster(BuiltOrTornDown):
    """The seed's cluster. Use as a context manager; everything is removed on exit."""

    mode: str = "active-standby"
    daemons: dict[str, str] = field(default_factory=lambda: {"server1": "chime-ha", "server2": "chime-ha"})
    configs: dict[str, str] | None = None  # None: the seed's files, unmodified
    probe_interval: float = 0.02
    probe_timeout: float = 0.5
    tag: str = "lab"
    progress: Callable[[str], None] | None = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"unknown lab mode {self.mode!r}: expected one of {', '.join(MODES)}")
        for name, kind in self.daemons.items():
            if name not in SERVERS:
                raise ValueError(f"unknown server {name!r}")
            daemon_argv(kind)  # validates the kind
        if self.configs is None:
            self.configs = seed_configs(self.mode)
        self.topo: Topology | None = None
        self.nodes: dict[str, Node] = {}
        self.client: Node | None = None
        self.services: dict[str, dict[str, subprocess.Popen]] = {n: {} for n in SERVERS}
        self.daemon_runs: dict[str, DaemonRun] = {}
        self.addr_events: list[AddrEvent] = []
        self.watchers: dict[str, VipWatcher] = {}
        self.probes: list[ProbeResult] = []
        self.notes: list[str] = []  # environment settings the document leaves implicit
        self._lock = threading.Lock()
        self._prober: subprocess.Popen | None = None
        self.logdir = Path(tempfile.mkdtemp(prefix="chime-ha-lab-"))

    # -- lifecycle -------------------------------------------------------------
    def _say(self, text: str) -> None:
        if self.progress:
            self.progress(text)

    def build(self) -> None:
        """Create the nodes, stand-ins and instruments (daemons start separately)."""
        self.topo = Topology(self.tag)
        self._say(f"building the topology (namespaces {self.topo.prefix}*: bridge, server1, server2, client)")
        self.topo.open()
        for name, addr in SERVERS.items():
            node = add_node(self.topo, name, f"{addr}/{PREFIXLEN}", ifname=IFNAME)
            self.nodes[name] = node
            node.write_file(CONF_PATH, self.configs[name])
        self.client = add_node(self.topo, CLIENT[0], f"{CLIENT[1]}/{PREFIXLEN}", ifname=IFNAME)
        for node in (*self.nodes.values(), self.client):
            node.run(["ip", "link", "set", "lo", "up"])
        if self.mode == "active-active":
            # LVS NAT directors forward packets; a real server has to be set up
            # so (the document leaves it implicit). Only inside the lab nodes.
            for node in self.nodes.values():
                node.run(["sysctl", "-qw", "net.ipv4.ip_forward=1"])
            self.notes.append("net.ipv4.ip_forward=1 inside server1 and server2 (LVS NAT directors forward)")
        for name in SERVERS:
            self.start_service(name, "chime-server")
            self.start_service(name, "chime-portal")
        for name in SERVERS:
            self.wait_for(lambda n=name: self._services_listening(n), 10,
                          f"stand-in services on {name} did not start listening")
        for name, node in self.nodes.items():
            self.watchers[name] = VipWatcher(node, self.addr_events, self._lock)

    def close(self) -> None:
        """Stop every process and remove every namespace this cluster made."""
        if self._prober is not None and self.client is not None:
            self.client.stop(self._prober, grace=1)
        # keepalived takes about a second to say goodbye (priority 0, VIPs
        # removed): stop every daemon at once rather than one after another.
        stoppers = [threading.Thread(target=self.stop_daemon, args=(name,)) for name in list(self.daemon_runs)]
        for th in stoppers:
            th.start()
        for th in stoppers:
            th.join()
        for node in (*self.nodes.values(), *( [self.client] if self.client else [])):
            node.close()
        if self.topo is not None:
            self.topo.close()
            self.topo = None

    # -- services ----------------------------------------------------------------
    def start_service(self, node: str, service: str = "chime-server") -> None:
        """``systemctl start SERVICE`` on ``node``: run the stand-in."""
        kind = {"chime-server": "server", "chime-portal": "portal"}[service]
        old = self.services[node].get(service)
        if old is not None and old.poll() is None:
            return
        self.services[node][service] = self.nodes[node].popen(
            [sys.executable, "-m", "chimeha.lab.standins", kind, "--name", node])

    def stop_service(self, node: str, service: str = "chime-server") -> None:
        """``systemctl stop SERVICE`` on ``node``: stop the stand-in by PID and wait."""
        proc = self.services[node].pop(service, None)
        if proc is not None:
            self.nodes[node].stop(proc)

    def _services_listening(self, node: str) -> bool:
        out = self.nodes[node].run(["ss", "-Hltn"], check=False).stdout
        return all(f":{p} " in out for p in (8801, 8802, 8033))

    # -- daemons -------------------------------------------------------------------
    def start_daemon(self, node: str) -> DaemonRun:
        kind = self.daemons[node]
        log_path = self.logdir / f"{node}-{kind}.log"
        log = open(log_path, "w")
        proc = self.nodes[node].popen(daemon_argv(kind), stdout=log, stderr=subprocess.STDOUT)
        log.close()
        run = DaemonRun(kind, proc, log_path, time.monotonic())
        self.daemon_runs[node] = run
        return run

    def start_daemons(self) -> None:
        for node in SERVERS:
            self._say(f"starting {self.daemons[node]} on {node}")
            self.start_daemon(node)

    def stop_daemon(self, node: str) -> None:
        run = self.daemon_runs.pop(node, None)
        if run is not None:
            self.nodes[node].stop(run.proc, grace=5)

    def daemon_exit(self, node: str) -> int | None:
        """The daemon's exit status, or None while it runs."""
        run = self.daemon_runs.get(node)
        return None if run is None else run.proc.poll()

    def log_lines(self, node: str) -> list[str]:
        run = self.daemon_runs.get(node)
        if run is None or not run.log_path.exists():
            return []
        return run.log_path.read_text(errors="replace").splitlines()

    def evidence(self, node: str, limit: int = 3) -> list[str]:
        """The last few log lines of ``node``'s daemon that look like a cause."""
        hits = [ln.strip() for ln in self.log_lines(node) if _EVIDENCE.search(ln)]
        # The same complaint every second says nothing new: keep distinct ones.
        seen: dict[str, str] = {}
        for ln in hits:
            key = re.sub(r"^\w{3} \w{3} +\d+ [\d:]+ \d{4}: ", "", ln)
            seen.pop(key, None)
            seen[key] = key
        return list(seen)[-limit:]

    # -- network -------------------------------------------------------------------
    def cut_link(self, node: str) -> None:
        self.nodes[node].link_down()

    def restore_link(self, node: str) -> None:
        self.nodes[node].link_up()

    def holders(self, vip: str) -> list[str]:
        """Servers whose ens160 currently carries ``vip`` (from the watchers)."""
        with self._lock:
            return [n for n, w in self.watchers.items() if vip in w.current]

    def first_change(self, node: str, vip: str, added: bool, since: float) -> float | None:
        """Time of the first add/remove of ``vip`` on ``node`` at or after ``since``."""
        with self._lock:
            for ev in self.addr_events:
                if ev.t >= since and ev.node == node and ev.address == vip and ev.added == added:
                    return ev.t
        return None

    # -- client ----------------------------------------------------------------------
    def endpoints(self) -> list[tuple[str, str]]:
        """(label, host:port) of every user-facing endpoint in this mode."""
        return [(label, f"{host}:{port}") for label, host, port in ENDPOINTS[self.mode]]

    def start_prober(self) -> None:
        targets = [t for _, t in self.endpoints()]
        self._prober = self.client.popen(
            [sys.executable, "-m", "chimeha.lab.probe", "--interval", str(self.probe_interval),
             "--timeout", str(self.probe_timeout), *targets],
            stdout=subprocess.PIPE, text=True, bufsize=1)
        threading.Thread(target=self._read_probes, name="prober", daemon=True).start()

    def _read_probes(self) -> None:
        for line in self._prober.stdout:
            r = ProbeResult.parse(line)
            if r is not None:
                with self._lock:
                    self.probes.append(r)

    def probe_results(self, target: str | None = None, since: float = 0.0) -> list[ProbeResult]:
        with self._lock:
            return [r for r in self.probes if r.t >= since and (target is None or r.target == target)]

    def last_probe(self, target: str, since: float = 0.0) -> ProbeResult | None:
        """The most recently *started* probe of ``target`` that has reported."""
        results = self.probe_results(target, since)
        return max(results, key=lambda r: r.t) if results else None

    # -- helpers ---------------------------------------------------------------------
    @staticmethod
    def wait_for(pred: Callable[[], bool], timeout: float, what: str = "", step: float = 0.02) -> bool:
        """Poll ``pred`` until true or ``timeout``; raises TimeoutError with ``what`` if given."""
        end = time.monotonic() + timeout
        while True:
            if pred():
                return True
            if time.monotonic() >= end:
                if what:
                    raise TimeoutError(what)
                return False
            time.sleep(step)

    def advert_int(self) -> float:
        """The largest advert_int in the installed configs (1 s if none)."""
        vals = [float(v) for text in self.configs.values()
                for v in re.findall(r"^\s*advert_int\s+([\d.]+)", text, re.MULTILINE)]
        return max(vals) if vals else 1.0

    def node_enter_command(self, node: str) -> str:
        n = self.nodes.get(node) or (self.client if node == CLIENT[0] else None)
        return f"nsenter -t {n.init_pid} -p -m -n -- bash"


"""Network-namespace topologies for tests, benchmarks and the lab.

A :class:`Topology` owns everything it creates: a *switch* namespace holding one
Linux bridge, and host namespaces wired to it with veth pairs. Nothing is added
to the machine's own network namespace (no addresses, no routes, no forwarding),
so lab traffic cannot leave the machine: the lab subnet is reachable only from
inside the namespaces the topology made. Every name carries a per-run prefix so
that two runs (or a user's own namespaces) never collide, and :meth:`close`
removes all of it, also after a failure.

Usage::

    with Topology("t") as topo:
        a = topo.add_host("server1", "192.168.231.11/24", ifname="ens160")
        a.run(["ip", "-br", "a"])
"""

from __future__ import annotations

import os
import secrets
import shlex
import signal
import subprocess
import time
from dataclasses import dataclass, field

# Namespaces made by chime-ha share this prefix, so `chime-ha lab down` and the
# test fixtures can find (only) their own leftovers.
NAME_PREFIX = "chha"


class NetnsError(RuntimeError):
    """A command that sets up or tears down the topology failed."""


def run_ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise NetnsError(f"ip {' '.join(args)}: {proc.stderr.strip()}")
    return proc


def unique_prefix(tag: str = "") -> str:
    """A short, unique prefix for one topology's names (namespace names are global)."""
    return f"{NAME_PREFIX}{tag[:4]}{secrets.token_hex(3)}-"


def list_own_namespaces() -> list[str]:
    """Namespaces whose names start with chime-ha's prefix (leftovers included)."""
    proc = run_ip("netns", "list", check=False)
    names = [line.split()[0] for line in proc.stdout.splitlines() if line.strip()]
    return [n for n in names if n.startswith(NAME_PREFIX)]


def run_inside(place, cmd: list[str] | str, check: bool = True, timeout: float = 30,
               **kw) -> subprocess.CompletedProcess:
    """Run ``cmd`` through ``place.argv`` (a Host or a lab Node), output captured as text.

    With ``check``, a non-zero exit raises :class:`NetnsError` naming the place.
    """
    if isinstance(cmd, str):
        cmd = shlex.split(cmd)
    proc = subprocess.run(place.argv(cmd), capture_output=True, text=True, timeout=timeout, **kw)
    if check and proc.returncode != 0:
        raise NetnsError(f"[{place.name}] {' '.join(cmd)}: rc={proc.returncode} {proc.stderr.strip()}")
    return proc


class BuiltOrTornDown:
    """A lab as a context manager: ``build()`` on entry, ``close()`` on exit.

    A build that fails half-way is torn down before the error propagates, so a
    failed set-up never leaves namespaces or processes behind.
    """

    def build(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self):
        try:
            self.build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass
class Host:
    """One namespace on the lab bridge."""

    topo: "Topology"
    name: str  # short name, e.g. "server1"
    netns: str  # full namespace name
    ifname: str
    addresses: list[str] = field(default_factory=list)
    switch_port: str = ""
    procs: list[subprocess.Popen] = field(default_factory=list)
    # (pid, start time) of processes that are not our children when started but
    # may become ours (a node's init, orphaned to us as a child subreaper):
    # close() reaps them if so, so that no zombie outlives the topology.
    adoptable: list[tuple[int, int]] = field(default_factory=list)

    def argv(self, cmd: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.netns, *cmd]

    def run(self, cmd: list[str] | str, check: bool = True, timeout: float = 30, **kw) -> subprocess.CompletedProcess:
        """Run a command inside this host's namespace and wait for it."""
        return run_inside(self, cmd, check, timeout, **kw)

    def popen(self, cmd: list[str], **kw) -> subprocess.Popen:
        """Start a background process in this namespace; it is stopped by close()."""
        kw.setdefault("stdout", subprocess.DEVNULL)
        kw.setdefault("stderr", subprocess.DEVNULL)
        proc = subprocess.Popen(self.argv(cmd), start_new_session=True, **kw)
        self.procs.append(proc)
        return proc

    def addresses_on(self, ifname: str | None = None) -> set[str]:
        """IP addresses (without prefix length) currently on the interface."""
        out = self.run(["ip", "-o", "addr", "show", "dev", ifname or self.ifname], check=False).stdout
        found = set()
        for line in out.splitlines():
            parts = line.split()
            if len(parts) >= 4 and parts[2] in ("inet", "inet6"):
                found.add(parts[3].split("/")[0])
        return found

    def link_down(self) -> None:
        """Cut this host off the bridge (its own interface stays up, like a pulled cable)."""
        run_ip("-n", self.topo.switch_ns, "link", "set", self.switch_port, "down")

    def link_up(self) -> None:
        run_ip("-n", self.topo.switch_ns, "link", "set", self.switch_port, "up")


class Topology:
    """A bridge plus hosts, all in namespaces this object creates and removes."""

    def __init__(self, tag: str = "", prefix: str | None = None):
        self.prefix = prefix or unique_prefix(tag)
        self.switch_ns = f"{self.prefix}sw"
        self.hosts: dict[str, Host] = {}
        self._created: list[str] = []
        self._port_seq = 0

    # -- lifecycle -------------------------------------------------------
    def __enter__(self) -> "Topology":
        self.open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def open(self) -> None:
        self._add_ns(self.switch_ns)
        run_ip("-n", self.switch_ns, "link", "add", "br0", "type", "bridge", "stp_state", "0", "forward_delay", "0")
        # Multicast snooping would make VRRP/IGMP behaviour depend on timing; a
        # plain hub-like bridge is what a lab switch should be.
        run_ip("-n", self.switch_ns, "link", "set", "br0", "type", "bridge", "mcast_snooping", "0", check=False)
        run_ip("-n", self.switch_ns, "link", "set", "br0", "up")

    def _add_ns(self, name: str) -> None:
        run_ip("netns", "add", name)
        self._created.append(name)
        run_ip("-n", name, "link", "set", "lo", "up")

    def add_host(self, name: str, *addresses: str, ifname: str = "eth0") -> Host:
        """A namespace with one interface ``ifname`` on the bridge, holding ``addresses`` (CIDR)."""
        netns = f"{self.prefix}{name}"[:48]
        self._add_ns(netns)
        self._port_seq += 1
        port = f"p{self._port_seq}"
        # Created directly inside the two namespaces: no name ever exists in ours.
        run_ip("link", "add", "name", ifname, "netns", netns, "type", "veth",
            "peer", "name", port, "netns", self.switch_ns)
        run_ip("-n", self.switch_ns, "link", "set", port, "master", "br0")
        run_ip("-n", self.switch_ns, "link", "set", port, "up")
        for addr in addresses:
            fam = "-6" if ":" in addr else "-4"
            extra = ["nodad"] if ":" in addr else []
            run_ip("-n", netns, fam, "addr", "add", addr, "dev", ifname, *extra)
        run_ip("-n", netns, "link", "set", ifname, "up")
        host = Host(self, name, netns, ifname, list(addresses), port)
        self.hosts[name] = host
        return host

    def close(self) -> None:
        """Stop every process started through a host, then delete every namespace."""
        for host in self.hosts.values():
            for proc in host.procs:
                stop_process(proc)
        for name in reversed(self._created):
            kill_namespace_pids(name)
            run_ip("netns", "del", name, check=False)
        self._created.clear()
        for host in self.hosts.values():
            for pid, started in host.adoptable:
                reap_if_child(pid, started)
            host.adoptable.clear()


def stop_process(proc: subprocess.Popen, grace: float = 3.0) -> None:
    """SIGTERM a process we started (its session too), then SIGKILL after ``grace``."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=5)


def process_start_time(pid: int) -> int | None:
    """The kernel's start time of ``pid`` (clock ticks since boot), None when it is gone.

    With the PID it identifies one process: a PID can be reused, a (PID, start time) pair cannot.
    """
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return int(fh.read().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def reap_if_child(pid: int, started: int | None, timeout: float = 5.0) -> bool:
    """Wait for ``pid`` if it is (still) our child, so it does not stay a zombie; True if reaped.

    A process we did not start becomes our child when its parent dies first
    and we are a child subreaper (PR_SET_CHILD_SUBREAPER, as service managers
    and some test runners are). Only the process identified by (``pid``,
    ``started``) is waited for, never a reused PID, and only for ``timeout``.
    """
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return False  # already reaped by someone
    if int(fields[1]) != os.getpid() or (started is not None and int(fields[19]) != started):
        return False
    deadline = time.monotonic() + timeout
    while True:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return False
        if done:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)


def kill_namespace_pids(netns: str) -> None:
    """Kill processes still inside a namespace we created (by PID, from `ip netns pids`)."""
    for _ in range(3):
        out = run_ip("netns", "pids", netns, check=False).stdout.split()
        pids = [int(p) for p in out if p.isdigit()]
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.05)

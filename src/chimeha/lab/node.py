"""Lab nodes: a namespace host that looks like a separate machine.

A :class:`~chimeha.lab.netns.Host` only has its own *network* namespace, so
``pgrep chime-server`` run in it would still see every process on the machine
and ``/run/keepalived.pid`` would be shared by all hosts. A :class:`Node` adds
what the seed's verification needs to treat two namespaces as two servers:

* its own **PID namespace**: ``pgrep`` in server1 does not see server2's
  ``chime-server``, and killing the node's PID 1 kills everything in it;
* its own **mount namespace** with a fresh ``/proc`` and private tmpfs over
  ``/run`` (hence ``/var/run``) and ``/etc/keepalived``, so each node has its own
  ``/etc/keepalived/keepalived.conf`` and pid files.

How: ``ip netns exec NS unshare --pid --fork --kill-child --mount-proc --mount``
starts a tiny init (PID 1 in the node) that mounts the private directories,
reaps orphans (so a killed service never lingers as a zombie that ``pgrep``
would still match) and then waits. Commands are entered with
``nsenter -t INIT -p -m -n``; files are written through ``/proc/INIT/root``,
which the kernel resolves inside the node's mount namespace. Nothing is
mounted or changed outside the node (a missing private directory is created
empty on the shared filesystem so it can serve as a mount point).

Usage::

    with Topology("lab") as topo:
        s1 = add_node(topo, "server1", "192.168.231.11/24", ifname="ens160")
        s1.write_file("/etc/keepalived/keepalived.conf", text)
        proc = s1.popen(["keepalived", "-n", "-l", "-D"])
        s1.run(["pgrep", "keepalived"])
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time

from chimeha.lab.netns import (Host, NetnsError, Topology, process_start_time, reap_if_child, run_inside,
                               stop_process)

#: Directories that get a private, empty tmpfs inside every node.
PRIVATE_DIRS: tuple[str, ...] = ("/run", "/etc/keepalived")

# PID 1 of a node. Blocking SIGCHLD and waiting for it with sigwaitinfo avoids
# the lost-wakeup race of handler+pause: an orphan that exits while we reap is
# still pending when we wait again. PID 1 ignores signals it does not handle,
# so SIGTERM must be waited for explicitly too.
_INIT = r"""
import os, signal, sys
sigs = {signal.SIGCHLD, signal.SIGTERM, signal.SIGINT}
signal.pthread_sigmask(signal.SIG_BLOCK, sigs)
sys.stdout.write("ready\n"); sys.stdout.flush()
os.close(1)
while True:
    info = signal.sigwaitinfo(sigs)
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            break
    if info.si_signo != signal.SIGCHLD:
        sys.exit(0)
"""


class Node:
    """A lab machine: network, PID and mount namespaces of its own.

    Create it with :func:`add_node`. Processes started with :meth:`popen` and the
    node's init are stopped by :meth:`close` (also called by the topology's
    close, because they are registered with the underlying host).
    """

    def __init__(self, host: Host, private_dirs: tuple[str, ...] = PRIVATE_DIRS):
        self.host = host
        self.private_dirs = tuple(private_dirs)
        self.init_pid: int = 0
        self._init_started: int | None = None
        self._unshare: subprocess.Popen | None = None
        self.procs: list[subprocess.Popen] = []

    # -- delegated host facts ---------------------------------------------
    @property
    def name(self) -> str:
        return self.host.name

    @property
    def netns(self) -> str:
        return self.host.netns

    @property
    def ifname(self) -> str:
        return self.host.ifname

    def addresses_on(self, ifname: str | None = None) -> set[str]:
        """IP addresses (without prefix length) on the node's interface."""
        return self.host.addresses_on(ifname)

    def link_down(self) -> None:
        """Pull the node's cable: its port on the lab bridge goes down."""
        self.host.link_down()

    def link_up(self) -> None:
        """Plug the node's cable back in."""
        self.host.link_up()

    # -- lifecycle ----------------------------------------------------------
    def start(self, timeout: float = 10.0) -> "Node":
        """Start the node's init and private mounts; returns self."""
        mounts = []
        for d in self.private_dirs:
            q = shlex.quote(d)
            mounts.append(f"mkdir -p {q} && mount -t tmpfs -o mode=0755 chha-node {q}")
        script = " && ".join(["set -e", *mounts, f"exec {shlex.quote(sys.executable)} -I -S -c {shlex.quote(_INIT)}"])
        cmd = self.host.argv([
            "unshare", "--pid", "--fork", "--kill-child", "--mount-proc", "--mount",
            "--propagation", "private", "sh", "-c", script,
        ])
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
        self._unshare = proc
        # Registered with the host so that Topology.close() stops the node even
        # when the caller forgets Node.close().
        self.host.procs.append(proc)
        line = _readline_with_timeout(proc, timeout)
        if line.strip() != "ready":
            err = ""
            if proc.poll() is not None:
                err = proc.stderr.read().strip()
            stop_process(proc)
            raise NetnsError(f"[{self.name}] node init did not start: {err or line.strip() or 'no output'}")
        self.init_pid = first_child(proc.pid, "the init process forked by unshare")
        self._init_started = process_start_time(self.init_pid)
        # unshare is our child and reaps the init; should unshare die first
        # (killed from outside) while we are a subreaper, the init becomes ours.
        self.host.adoptable.append((self.init_pid, self._init_started))
        return self

    def close(self) -> None:
        """Stop the node's processes (SIGTERM, then SIGKILL) and its init."""
        for proc in reversed(list(self.procs)):
            self.stop(proc)
        self.procs.clear()
        init = self.init_pid
        if init:
            try:
                # PID 1 of a PID namespace: its death kills every process in it.
                # Signalled only while it is still the process we started.
                if process_start_time(init) == self._init_started:
                    os.kill(init, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.init_pid = 0
        if self._unshare is not None:
            stop_process(self._unshare)
            for stream in (self._unshare.stdout, self._unshare.stderr):
                if stream:
                    stream.close()
            self._unshare = None
        if init:
            # Normally unshare has reaped it; if the init was orphaned to us, we must.
            reap_if_child(init, self._init_started)

    def __enter__(self) -> "Node":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- commands ------------------------------------------------------------
    def argv(self, cmd: list[str]) -> list[str]:
        """The argv that runs ``cmd`` inside this node."""
        if not self.init_pid:
            raise NetnsError(f"[{self.name}] node is not running")
        return ["nsenter", "-t", str(self.init_pid), "-p", "-m", "-n", "--", *cmd]

    def run(self, cmd: list[str] | str, check: bool = True, timeout: float = 30, **kw) -> subprocess.CompletedProcess:
        """Run a command inside the node and wait for it (output captured as text)."""
        return run_inside(self, cmd, check, timeout, **kw)

    def popen(self, cmd: list[str], **kw) -> subprocess.Popen:
        """Start a background process inside the node; :meth:`close` stops it.

        The returned Popen is ``nsenter``, which waits for the command and
        shares its process group: :meth:`stop` signals both, by PID.
        """
        kw.setdefault("stdout", subprocess.DEVNULL)
        kw.setdefault("stderr", subprocess.DEVNULL)
        kw.setdefault("stdin", subprocess.DEVNULL)
        proc = subprocess.Popen(self.argv(cmd), start_new_session=True, **kw)
        self.procs.append(proc)
        self.host.procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen, grace: float = 3.0) -> None:
        """Stop one process started by :meth:`popen` and wait until it is gone.

        SIGTERM goes to the command itself, not to ``nsenter``: nsenter would
        die at once and return while the command is still shutting down (as
        ``systemctl stop`` waits for the service, so do we). SIGKILL to both
        after ``grace`` seconds.
        """
        if proc.poll() is None:
            kids = child_pids(proc.pid)
            try:
                if kids:
                    for pid in kids:
                        os.kill(pid, signal.SIGTERM)
                else:
                    os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                for pid in kids:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                stop_process(proc, grace=0.5)
        for stream in (proc.stdout, proc.stderr):
            if stream:
                stream.close()
        if proc in self.procs:
            self.procs.remove(proc)

    def pids(self, name: str) -> list[int]:
        """PIDs (as seen inside the node) of processes whose name is ``name``, like ``pgrep``."""
        out = self.run(["pgrep", "-x", name], check=False).stdout
        return [int(p) for p in out.split()]

    # -- files ---------------------------------------------------------------
    def path(self, path: str) -> str:
        """Host-side path that reaches ``path`` inside the node's mount namespace."""
        if not path.startswith("/"):
            raise ValueError(f"node paths must be absolute: {path!r}")
        if not self.init_pid:
            raise NetnsError(f"[{self.name}] node is not running")
        return f"/proc/{self.init_pid}/root{path}"

    def write_file(self, path: str, text: str | bytes, mode: int = 0o644) -> None:
        """Create or replace ``path`` inside the node (parents are created)."""
        real = self.path(path)
        os.makedirs(os.path.dirname(real), exist_ok=True)
        data = text.encode() if isinstance(text, str) else text
        with open(real, "wb") as fh:
            fh.write(data)
        os.chmod(real, mode)

    def read_file(self, path: str) -> str:
        """Contents of ``path`` inside the node."""
        with open(self.path(path), encoding="utf-8", errors="replace") as fh:
            return fh.read()


def add_node(topo: Topology, name: str, *addresses: str, ifname: str = "eth0",
             private_dirs: tuple[str, ...] = PRIVATE_DIRS) -> Node:
    """Add a host to ``topo`` and turn it into a running :class:`Node`."""
    host = topo.add_host(name, *addresses, ifname=ifname)
    return Node(host, private_dirs).start()


def _readline_with_timeout(proc: subprocess.Popen, timeout: float) -> str:
    import selectors

    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    try:
        if not sel.select(timeout):
            return ""
        return proc.stdout.readline()
    finally:
        sel.close()


def child_pids(pid: int) -> list[int]:
    """Direct children of ``pid`` (host PIDs), empty when it has none or is gone."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as fh:
            return [int(p) for p in fh.read().split()]
    except (FileNotFoundError, ProcessLookupError):
        return []


def first_child(pid: int, what: str, timeout: float = 5.0) -> int:
    """The host PID of the first child ``pid`` forks, waited for up to ``timeout`` s (NetnsError names ``what``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        kids = child_pids(pid)
        if kids:
            return kids[0]
        time.sleep(0.01)
    raise NetnsError(f"cannot find {what} (pid {pid} forked no child within {timeout:g} s)")

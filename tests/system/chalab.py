"""Helpers for daemon-level tests: chime-ha and keepalived nodes in lab namespaces."""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

CHIME_HA = str(Path(sys.executable).with_name("chime-ha"))
CAPTURE_HELPER = str(Path(__file__).resolve().parent.parent / "vrrp" / "capture_helper.py")
FAKE_SERVICE = "#!/bin/sh\n# stands in for chime-server: pgrep matches the script's name\nwhile :; do sleep 1; done\n"


def wait_until(cond, timeout: float, what: str, interval: float = 0.05):
    """Poll ``cond()`` until truthy; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = cond()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what} (last: {last!r})")


def wait_ipv6_usable(node, ifname: str = "eth0") -> None:
    """Wait until no IPv6 address of ``node`` is tentative (DAD done): until then it can neither send nor bind."""
    wait_until(lambda: "tentative" not in node.run(["ip", "-6", "addr", "show", "dev", ifname]).stdout,
               10, f"{node.name} IPv6 addresses usable")


def in_parallel(*calls):
    """Run independent ``calls`` (e.g. one keepalived node and one chime-ha node) at once.

    Returns their results in order; the first exception is re-raised once all have ended,
    so no daemon is left running behind a failure.
    """
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(calls)) as pool:
        futures = [pool.submit(call) for call in calls]
        return [f.result() for f in futures]


def holders(nodes, vip: str) -> list[str]:
    """Names of the nodes that have ``vip`` on their interface now."""
    return [n.name for n in nodes if vip in n.addresses_on()]


def settle_on(nodes, vip: str, owner: str, timeout: float, hold: float = 1.0) -> None:
    """Wait until exactly ``owner`` has the VIP, then check it stays that way for ``hold`` s."""
    wait_until(lambda: holders(nodes, vip) == [owner], timeout, f"{vip} on {owner} only "
               f"(now on {holders(nodes, vip)})")
    end = time.monotonic() + hold
    while time.monotonic() < end:
        now = holders(nodes, vip)
        assert now == [owner], f"{vip} moved to {now} after settling on {owner}"
        time.sleep(0.05)


class Daemon:
    """One daemon process (chime-ha or keepalived) inside a node, with its log in a file."""

    def __init__(self, node, kind: str, conf_text: str, logdir: Path, conf_path: str | None = None,
                 control: bool = False, extra_args: tuple[str, ...] = ()):
        self.node = node
        self.kind = kind
        self.conf = conf_path or f"/etc/keepalived/{kind}.conf"
        self.logfile = logdir / f"{node.name}-{kind}.log"
        self.control = f"/run/chime-ha-{node.name}.sock" if control else None
        node.write_file(self.conf, conf_text)
        self.extra_args = tuple(extra_args)
        self.proc = None

    def start(self) -> "Daemon":
        if self.kind == "chime-ha":
            cmd = [CHIME_HA, "run", "-f", self.conf, "--log-level", "debug"]
            if self.control:
                cmd += ["--control", self.control]
            cmd += list(self.extra_args)
        else:
            cmd = ["keepalived", "-n", "-l", "-D", "-P", "-f", self.conf,
                   "-p", "/run/ka.pid", "-r", "/run/ka-vrrp.pid", "-c", "/run/ka-chk.pid"]
        self._log = open(self.logfile, "ab")
        self.proc = self.node.popen(cmd, stdout=self._log, stderr=subprocess.STDOUT)
        return self

    def pid_in_node(self) -> int:
        """The daemon's PID as the node sees it (for signals sent with kill inside the node)."""
        name = "keepalived" if self.kind == "keepalived" else None
        if name:
            return int(self.node.read_file("/run/ka.pid").split()[0])
        out = self.node.run(["pgrep", "-f", f"run -f {self.conf}"], check=False).stdout.split()
        return int(out[0])

    def signal(self, sig: str) -> None:
        self.node.run(["kill", f"-{sig}", str(self.pid_in_node())])

    def stop(self) -> None:
        if self.proc is not None:
            self.node.stop(self.proc, grace=5)
            self.proc = None
            self._log.close()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        try:
            return self.logfile.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def status(self) -> dict:
        out = self.node.run([sys.executable, "-c",
                             "import json,sys; from chimeha.observe.control import ControlClient;"
                             f"print(json.dumps(ControlClient({self.control!r}, timeout=10).status()))"])
        return json.loads(out.stdout)


def mixed_pair(a, b, chime_master: bool, master_conf: str, backup_conf: str, logdir: Path) -> tuple[Daemon, Daemon]:
    """The master (on ``a``) and backup (on ``b``) of a chime-ha + keepalived pair; chime-ha is the master or not."""
    kinds = ("chime-ha", "keepalived") if chime_master else ("keepalived", "chime-ha")
    return Daemon(a, kinds[0], master_conf, logdir), Daemon(b, kinds[1], backup_conf, logdir)


@contextlib.contextmanager
def capturing(host, capfile: Path, seconds: int = 60, ifname: str = "eth0"):
    """Capture the VRRP packets on ``host``'s ``ifname`` into ``capfile`` while the block runs.

    The block starts once the capture socket is bound, so no packet of the
    block is missed; the capture process (ours) is killed when it ends.
    """
    with open(capfile, "w") as out:
        cap = host.popen([sys.executable, CAPTURE_HELPER, ifname, str(seconds)], stdout=out,
                         stderr=subprocess.STDOUT, text=True)
        try:
            wait_until(lambda: capfile.read_text().startswith("ready"), 10, "capture helper ready")
            yield
        finally:
            cap.kill()
            cap.wait(timeout=10)


def captured(capfile: Path) -> list[dict]:
    """The packets :func:`capturing` wrote to ``capfile`` (none if it never started)."""
    try:
        text = capfile.read_text()
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def start_service(node) -> None:
    node.write_file("/run/bin/chime-server", FAKE_SERVICE, mode=0o755)
    node.popen(["/run/bin/chime-server"])
    wait_until(lambda: node.pids("chime-server"), 10, f"chime-server running on {node.name}")


def stop_service(node) -> None:
    for proc in list(node.procs):
        if proc.args[-1] == "/run/bin/chime-server":
            node.stop(proc)
    wait_until(lambda: not node.pids("chime-server"), 10, f"chime-server gone on {node.name}")


def have_keepalived() -> bool:
    return shutil.which("keepalived") is not None


@contextlib.contextmanager
def stopped_at_end(*daemons, tail: int = 5000):
    """Stop every daemon when the block ends; if it failed, print each one's log tail first."""
    try:
        yield
    except BaseException:
        for d in daemons:
            print(f"--- {getattr(d, 'kind', 'daemon')} ---\n" + d.log()[-tail:])
        raise
    finally:
        for d in daemons:
            d.stop()

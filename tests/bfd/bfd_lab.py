"""BFD peers in lab namespaces: chime-ha, keepalived's BFD process and FRR's bfdd.

Each peer runs in its own lab node (:func:`chimeha.lab.node.add_node`: own
network, mount and PID namespaces), so port 3784 and /var/run/frr are the
node's own. ``state()`` reads the peer's view of its one session.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "system"))
from chalab import Daemon, wait_until  # noqa: E402

FRR = "/usr/lib/frr"
A, B = "10.9.3.11", "10.9.3.12"  # lab-only addresses on the topology's bridge
A6, B6 = "fd00:9:3::11", "fd00:9:3::12"


def bfd_block(me: str, peer: str, tx: int = 50, rx: int = 50, mult: int = 3, extra: str = "") -> str:
    return textwrap.dedent(f"""\
        bfd_instance peer {{
            neighbor_ip {peer}
            source_ip {me}
            min_rx {rx}
            min_tx {tx}
            multiplier {mult}
        {extra}}}
        """)


def vrrp_block(state: str, prio: int, track: str = "", vip: str = "10.9.3.100/24", advert: str = "1") -> str:
    return textwrap.dedent(f"""\
        vrrp_instance VI_B {{
            state {state}
            interface eth0
            virtual_router_id 63
            priority {prio}
            advert_int {advert}
            virtual_ipaddress {{
                {vip}
            }}
        {track}}}
        """)


class ChimePeer:
    """``chime-ha run`` with a bfd_instance; state from its control socket."""

    kind = "chime-ha"

    def __init__(self, node, conf: str, logdir: Path):
        self.node = node
        self.d = Daemon(node, "chime-ha", conf, logdir, control=True)

    def start(self):
        self.d.start()
        wait_until(lambda: self._try_status() is not None, 15, f"chime-ha control socket on {self.node.name}")
        return self

    def _try_status(self):
        try:
            return self.d.status()
        except Exception:
            return None

    def session(self) -> dict:
        return (self.d.status().get("bfd") or {}).get("sessions", {}).get("peer", {})

    def state(self) -> str:
        return self.session().get("state", "?")

    def reload(self, conf: str) -> None:
        self.node.write_file(self.d.conf, conf)
        self.d.signal("HUP")

    def stop(self):
        self.d.stop()

    def log(self) -> str:
        return self.d.log()


class KeepalivedPeer:
    """keepalived 2.2.7 (built with --enable-bfd); state from its log lines."""

    kind = "keepalived"

    def __init__(self, node, conf: str, logdir: Path):
        self.node = node
        self.d = Daemon(node, "keepalived", conf, logdir)

    def start(self):
        self.d.start()
        return self

    def state(self) -> str:
        # keepalived's BFD process logs "(peer) Entering Up state" (Down, Init, AdminDown)
        found = re.findall(r"\(peer\) Entering (\w+) state", self.d.log())
        return {"Admin": "AdminDown"}.get(
            found[-1], found[-1]) if found else "?"

    def reload(self, conf: str) -> None:
        self.node.write_file(self.d.conf, conf)
        self.d.signal("HUP")

    def stop(self):
        self.d.stop()

    def log(self) -> str:
        return self.d.log()


class FrrPeer:
    """FRR's zebra + bfdd in the node; state from ``show bfd peers json``."""

    kind = "frr"

    def __init__(self, node, me: str, peer: str, logdir: Path, tx: int = 50, rx: int = 50, mult: int = 3):
        self.node, self.me, self.peer, self.logdir = node, me, peer, logdir
        self.timers = (tx, rx, mult)
        self.procs: dict[str, subprocess.Popen] = {}

    def _conf(self, shutdown: bool = False) -> str:
        tx, rx, mult = self.timers
        return (f"bfd\n peer {self.peer} local-address {self.me}\n  receive-interval {rx}\n"
                f"  transmit-interval {tx}\n  detect-multiplier {mult}\n" + ("  shutdown\n" if shutdown else "")
                + " !\n!\n")

    def start(self):
        d = "/var/run/frr"
        self.node.run(["mkdir", "-p", d])
        self.node.run(["chown", "frr:frr", d])
        self.node.write_file("/etc/frr/zebra.conf", "hostname peer\n")
        self.node.write_file("/etc/frr/bfdd.conf", self._conf())
        common = ["-P", "0", "--vty_socket", d]
        for daemon, extra in (("zebra", ["-z", f"{d}/zserv.api"]),
                              ("bfdd", ["-z", f"{d}/zserv.api", "--bfdctl", f"{d}/bfdd.sock"])):
            log = open(self.logdir / f"{self.node.name}-{daemon}.log", "ab")
            self.procs[daemon] = self.node.popen([f"{FRR}/{daemon}", *common, *extra, "-f", f"/etc/frr/{daemon}.conf",
                                                  "-i", f"{d}/{daemon}.pid"], stdout=log, stderr=subprocess.STDOUT)
            log.close()
            wait_until(lambda: self.node.run(["vtysh", "--vty_socket", d, "-d", daemon, "-c", "show version"],
                                             check=False).returncode == 0, 15, f"{daemon} answering")
        return self

    def vtysh(self, *cmds: str) -> str:
        argv = ["vtysh", "--vty_socket", "/var/run/frr", "-d", "bfdd"]
        for c in cmds:
            argv += ["-c", c]
        return self.node.run(argv, check=False).stdout

    def session(self) -> dict:
        try:
            peers = json.loads(self.vtysh("show bfd peers json") or "[]")
        except ValueError:
            return {}
        return next((p for p in peers if p.get("peer") == self.peer), {})

    def state(self) -> str:
        st = self.session().get("status", "?")
        return {"up": "Up", "down": "Down", "init": "Init", "shutdown": "AdminDown"}.get(st, st)

    def set_timers(self, tx: int, rx: int, mult: int) -> None:
        self.timers = (tx, rx, mult)
        self.vtysh("configure terminal", "bfd", f"peer {self.peer} local-address {self.me}",
                   f"receive-interval {rx}", f"transmit-interval {tx}", f"detect-multiplier {mult}")

    def shutdown(self, on: bool = True) -> None:
        self.vtysh("configure terminal", "bfd", f"peer {self.peer} local-address {self.me}",
                   "shutdown" if on else "no shutdown")

    def stop(self):
        for name in ("bfdd", "zebra"):
            proc = self.procs.pop(name, None)
            if proc is not None:
                self.node.stop(proc, grace=5)

    def restart_bfdd(self) -> None:
        proc = self.procs.pop("bfdd", None)
        if proc is not None:
            self.node.stop(proc, grace=5)
        d = "/var/run/frr"
        log = open(self.logdir / f"{self.node.name}-bfdd.log", "ab")
        self.procs["bfdd"] = self.node.popen([f"{FRR}/bfdd", "-P", "0", "--vty_socket", d, "-z", f"{d}/zserv.api",
                                              "--bfdctl", f"{d}/bfdd.sock", "-f", "/etc/frr/bfdd.conf",
                                              "-i", f"{d}/bfdd.pid"], stdout=log, stderr=subprocess.STDOUT)
        log.close()

    def log(self) -> str:
        out = []
        for daemon in ("zebra", "bfdd"):
            p = self.logdir / f"{self.node.name}-{daemon}.log"
            if p.exists():
                out.append(p.read_text(errors="replace")[-3000:])
        return "\n".join(out)


def eventually(peer, state: str, timeout: float = 10.0) -> None:
    wait_until(lambda: peer.state() == state, timeout, f"{peer.kind} on {peer.node.name} in state {state} "
               f"(now {peer.state()})", interval=0.05)


def have(prog: str) -> bool:
    return os.path.exists(prog)


def require(reason: str | None) -> None:
    """Skip for ``reason`` (None: nothing missing); under CI=true a missing tool is a failure."""
    import pytest

    if reason is None:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true but {reason}", pytrace=False)
    pytest.skip(reason)

"""Fakes shared by the runtime adapter tests: sockets, netlink worker, a daemon around a real VrrpNode.

Only the I/O edges are fake; the node, the packet codec and the executor are the real code.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
from collections import deque

from chimeha.config import loads
from chimeha.net.vrrpsock import Received
from chimeha.vrrp.from_config import instance_specs, sync_groups
from chimeha.vrrp.node import VrrpNode


def instance_conf(name: str = "VI_1", *, vrid: int = 10, priority: int = 100, src: str = "10.0.0.1",
                  vip: str = "10.0.0.100/24", extra: str = "", state: str = "BACKUP",
                  interface: str = "lo", advert: str = "0.05") -> str:
    """One vrrp_instance block (VRRPv3, fast adverts, a source address so no interface lookup is needed)."""
    return (f"vrrp_instance {name} {{\n state {state}\n interface {interface}\n virtual_router_id {vrid}\n"
            f" priority {priority}\n advert_int {advert}\n version 3\n mcast_src_ip {src}\n{extra}"
            f" virtual_ipaddress {{\n  {vip}\n }}\n}}\n")


def load_ok(text: str, path: str = "node.conf"):
    res = loads(text, path)
    errors = [str(d) for d in res.diagnostics if d.severity == "error"]
    assert res.ok and not errors, errors
    return res.config


class FakeSocket:
    """A VRRP socket stand-in: records sends, can be told to fail, is readable through a pipe."""

    def __init__(self, ifname: str = "lo", family: int = 4, join_group: bool = False, *, fail_for=()):
        self.ifname, self.family, self.join_group = ifname, family, join_group
        self.fail_for = set(fail_for)  # destinations whose send raises OSError ("*" = every send)
        self.sent: list[tuple[bytes, str | None, str | None]] = []
        self.joined = 0
        self.groups: list[str | None] = []  # join() arguments (None: the standard group)
        self.left: list[frozenset] = []  # leave_others() arguments
        self.ttls: list[int | None] = []  # per send: the ttl= given (None: the socket's 255)
        self.join_error: OSError | None = None
        self.closed = False
        self.recv_error: OSError | None = None
        self._r, self._w = os.pipe()
        os.set_blocking(self._r, False)
        self.queue: deque = deque()

    def fileno(self) -> int:
        return self._r

    def join(self, group: str | None = None) -> None:
        if self.join_error is not None:
            raise self.join_error
        self.joined += 1
        self.groups.append(group)

    def leave_others(self, keep) -> None:
        self.left.append(frozenset(keep))

    def send(self, payload: bytes, dst: str | None = None, src: str | None = None, *, ttl: int | None = None) -> None:
        if "*" in self.fail_for or dst in self.fail_for:
            raise OSError(101, "Network is unreachable")
        self.sent.append((payload, dst, src))
        self.ttls.append(ttl)

    def deliver(self, rx: Received) -> None:
        self.queue.append(rx)
        os.write(self._w, b"x")

    def recv(self):
        if self.recv_error is not None:
            err, self.recv_error = self.recv_error, None
            raise err
        if not self.queue:
            return None
        os.read(self._r, 1)
        return self.queue.popleft()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            os.close(self._r)
            os.close(self._w)


class SocketFactory:
    """``socket_factory`` for Daemon/preflight: remembers every socket it made; can refuse some."""

    def __init__(self, refuse=()):
        self.made: list[FakeSocket] = []
        self.refuse = set(refuse)  # (ifname, family) pairs that raise PermissionError

    def __call__(self, ifname: str, family: int, join_group: bool = False) -> FakeSocket:
        if (ifname, family) in self.refuse:
            raise PermissionError(1, "Operation not permitted")
        sock = FakeSocket(ifname, family, join_group)
        self.made.append(sock)
        return sock


class FakeNetlink:
    """The NetlinkWorker interface; ``apply`` returns a future the test completes (``hold=True``) or a done one."""

    def __init__(self, hold: bool = False):
        self.hold = hold
        self.log: list[tuple] = []
        self.held: set[str] = set()
        self.futures: list[concurrent.futures.Future] = []
        self.announces: list[dict] = []
        self.closed = False

    def apply(self, name, addresses, excluded, routes, dev, add):
        for va in tuple(addresses) + tuple(excluded):
            (self.held.add if add else self.held.discard)(va.address)
        self.log.append(("add" if add else "del", name, tuple(v.address for v in addresses), dev))
        fut: concurrent.futures.Future = concurrent.futures.Future()
        if not self.hold:
            fut.set_result(len(addresses))
        self.futures.append(fut)
        return fut

    def announce(self, name, addresses, dev, count, after=None, wanted=lambda: True):
        self.log.append(("garp", name, count))
        self.announces.append({"name": name, "addresses": addresses, "dev": dev, "count": count,
                               "after": after, "wanted": wanted})

    def remove_stale(self, name, addresses, dev):
        self.log.append(("stale", name, tuple(v.address for v in addresses)))

    def call(self, fn, *args):
        raise AssertionError("no interface lookups expected: mcast_src_ip is set")

    def close(self):
        self.closed = True


class RecordingNotifier:
    def __init__(self):
        self.calls: list[tuple] = []

    def notify(self, kind, name, state, priority, scripts):
        self.calls.append((kind, name, state, priority, scripts))

    async def drain(self, timeout):
        pass

    def close(self):
        pass


class FakeDaemon:
    """What the Executor reads from its daemon, around a real VrrpNode built from ``text``."""

    def __init__(self, text: str):
        self.config = load_ok(text)
        self.node = VrrpNode(instance_specs(self.config), sync_groups(self.config))
        self.state_hooks: list = []
        self.event_hooks: list = []
        self.datagrams: list[tuple] = []
        self.datagram_error: Exception | None = None
        self.lvs = None
        self.dataplane = None
        self.scripts: dict = {}  # vrrp_script name -> tracker (none run here)

    def datagram(self, key, rx) -> None:
        if self.datagram_error is not None:
            raise self.datagram_error
        self.datagrams.append((key, rx))

    def owned_vips(self) -> set[str]:
        return set(self.node.owned_vips())


async def until(cond, timeout: float = 5.0, what: str = "") -> None:
    """Wait (polling the running loop) until ``cond()``; fail with ``what`` after ``timeout``."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not cond():
        if loop.time() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)

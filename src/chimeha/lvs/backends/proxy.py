"""Userspace data plane: a TCP and UDP proxy running every scheduler.

Where the kernel path is not allowed (or a scheduler needs live connection
counts that nftables cannot provide), chime-ha accepts the client itself and
opens a second connection to the chosen real server. Because this process
sees every connection open and close, ``lc``/``wlc``/``sed``/``nq``/``lblc``/
``lblcr``/``ovf``/``twos`` run exactly as specified in ``schedulers.py``.

Performance notes (see bench/dataplane/RESULTS.md for numbers):

* TCP is relayed by :mod:`.proxy_relay`: non-blocking sockets on one epoll
  set nested in the relaying loop (batched accepts, plain connect, EPOLLRDHUP
  so that a real server's answer and FIN reach the client in one segment and
  the client's close is the passive one). The asyncio-protocol relay below
  (``_Client``/``_Upstream``) is the one before, kept selectable
  (``relay="transports"``) for the benchmark's A/B.
* By default the relaying runs on its own event loop in a thread
  (``own_loop``): the VRRP daemon must keep the default asyncio loop for
  pyroute2's netlink sockets. That loop's selector is the relay's epoll
  (:mod:`.proxy_loop`): relaying never goes through an event-loop iteration.
  Configuration and counters cross threads through
  ``run_coroutine_threadsafe``; the daemon loop stays free for VRRP timers.
* ``workers=N`` relays services that allow it in N processes sharing the port
  (:mod:`.proxy_workers`).
* Listeners are bound with ``IP_FREEBIND`` so a listener can be opened the
  moment VRRP adds the VIP (or just before) without racing the address.
* The client address as seen by the real server is the director's (full
  NAT), which is what makes the seed's same-subnet layout work.

UDP: one flow per client address:port, scheduled on its first datagram and
forgotten after ``udp_timeout`` seconds idle (IPVS's default is 300 s).
"""

from __future__ import annotations

import asyncio
import errno
import select
import fcntl
import logging
import socket
import termios
import threading
import time

import uvloop
from typing import Sequence

from ..reconcile import Operation, apply_to
from ..schedulers import Persistence, Server, make_scheduler
from ..types import DesiredState, DestKey, Service, ServiceKey
from .base import BackendError
from .proxy_loop import new_loop as new_relay_loop
from .proxy_relay import Listener, Relay
from .proxy_workers import Workers, parallel_ok

IP_FREEBIND = getattr(socket, "IP_FREEBIND", 15)
TCP_CORK = getattr(socket, "TCP_CORK", 3)
POLLRDHUP = getattr(select, "POLLRDHUP", 0x2000)
#: upstream chunks of a connection checked for a queued FIN (see _Upstream): enough for
#: request/response protocols that close after an answer or two, free for long keep-alive
FIN_CHECKS = 4
#: bytes a client may send before its real server accepted the connection; then it is paused
PENDING_MAX = 256 * 1024
log = logging.getLogger("chimeha.lvs.proxy")
_poll = select.poll()  # one per process; used only by the loop thread(s), never blocks (timeout 0)


def _fin_pending(fd: int) -> bool:
    """Is the next thing ``fd`` will read its peer's FIN (FIN arrived, nothing unread)?

    One ``poll(0)`` for POLLRDHUP (and an ioctl when the FIN is there); lets the
    relay pass an answer and the real server's FIN to the client together
    instead of one loop iteration apart (see ``_Upstream``). Data still queued
    in front of the FIN (a large answer) means: not yet.
    """
    try:
        _poll.register(fd, POLLRDHUP)
        try:
            ready = _poll.poll(0)
        finally:
            _poll.unregister(fd)
        if not ready or not ready[0][1] & POLLRDHUP:
            return False
        buf = bytearray(4)
        fcntl.ioctl(fd, termios.FIONREAD, buf)
        return not any(buf)
    except (OSError, ValueError):
        return False


class _Upstream(asyncio.Protocol):
    """The director -> real server leg; mirrors data back to the client.

    Close ordering: a real server that answers and closes (HTTP ``Connection:
    close``) sends its last data and its FIN together, but the event loop
    reports them one iteration apart. Relayed as they come, the answer reaches
    the client first; a client that closes as soon as it has the whole answer
    (wrk, most HTTP clients) then closes *first* and keeps the TIME_WAIT, and a
    stock kernel runs out of client ports at a few thousand connections per
    second. So when the real server's FIN is already queued behind the data,
    the answer and the FIN go to the client in one segment (``TCP_CORK``, then
    ``shutdown(SHUT_WR)``): the client sees the FIN before it closes, its close
    is the passive one, and the TIME_WAIT stays on the director (as with
    HAProxy). Nothing is ever reset: the client's own close still ends the
    connection, and data it sends after the FIN still reaches the real server
    until the real server closes.
    """

    __slots__ = ("peer", "transport", "fd", "checks")

    def __init__(self, peer: "_Client"):
        self.peer = peer
        self.transport = None
        self.fd = -1
        self.checks = FIN_CHECKS

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        peer = self.peer
        peer.totals[2] += len(data)
        if self.checks:
            self.checks -= 1
            if self.fd < 0:
                sock = self.transport.get_extra_info("socket")
                self.fd = sock.fileno() if sock is not None else -1
            if self.fd >= 0 and not peer.eof_up and _fin_pending(self.fd):
                self.checks = 0
                out = peer.transport
                try:
                    out.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, TCP_CORK, 1)
                except (OSError, AttributeError):
                    pass
                out.write(data)
                peer.half_close(upstream=True)
                return
        peer.transport.write(data)

    def eof_received(self):
        return self.peer.half_close(upstream=True)

    def connection_lost(self, exc):
        self.peer.upstream_lost()

    def pause_writing(self):
        self.peer.transport.pause_reading()

    def resume_writing(self):
        self.peer.transport.resume_reading()


class _Client(asyncio.Protocol):
    """The client -> director leg; created by the listener for each accepted connection."""

    def __init__(self, svc: "_Service"):
        self.svc = svc
        self.transport = None
        self.up: _Upstream | None = None
        self.server: Server | None = None
        self.client = ("", 0)
        self.pending: list[bytes] = []
        self.pending_bytes = 0
        self.paused = False  # reading paused until the real server accepts (too much pending)
        self.closed = False
        self.eof_up = self.eof_client = False
        self.totals = [0, 0, 0]  # connections, bytes in (client -> server), bytes out

    def connection_made(self, transport):
        self.transport = transport
        peer = transport.get_extra_info("peername") or ("0.0.0.0", 0)
        self.client = peer[:2]
        server = self.svc.pick(self.client[0], self.client[1])
        if server is None:
            self.svc.refused += 1
            transport.abort()
            return
        self.server = server
        server.active += 1
        self.totals = self.svc.totals.setdefault(server.key, [0, 0, 0])
        self.totals[0] += 1
        # Reading stays on while the real server's connect is in flight: the request that
        # usually follows the accept at once waits in ``pending`` (cheaper than stopping
        # and restarting the read watcher, two epoll_ctl calls); only a client that sends
        # more than PENDING_MAX before the real server answers is paused.
        self.svc.loop.create_task(self._connect(server))

    async def _connect(self, server: Server):
        try:
            _, up = await self.svc.loop.create_connection(lambda: _Upstream(self), server.key.address,
                                                          server.key.port or self.svc.key.port)
        except OSError as e:
            self.svc.connect_errors += 1
            log.debug("%s: connect to %s failed: %s", self.svc.key, server.key, e)
            self.transport.abort()
            return
        if self.closed:
            up.transport.close()
            return
        self.up = up
        for chunk in self.pending:
            up.transport.write(chunk)
        self.pending.clear()
        if self.eof_client:
            up.transport.write_eof()
        elif self.paused:
            self.paused = False
            self.transport.resume_reading()

    def data_received(self, data):
        self.totals[1] += len(data)
        if self.up is not None:
            self.up.transport.write(data)
        else:
            self.pending.append(data)
            self.pending_bytes += len(data)
            if self.pending_bytes > PENDING_MAX and not self.paused:
                self.paused = True
                self.transport.pause_reading()

    def eof_received(self):
        return self.half_close(upstream=False)

    def half_close(self, upstream: bool) -> bool:
        """One side finished sending: pass the EOF on; close both once both sides have.

        Returns what ``eof_received`` must return (True keeps the transport
        open for the other direction). Closing explicitly matters: uvloop, unlike
        the default loop, never closes a transport on its own after two EOFs.
        """
        if upstream:
            if self.eof_up:
                # already passed on with the last data (see _Upstream): now the kernel
                # confirms it; close once the client is done too
                if self.eof_client:
                    self.transport.close()
                    self.up.transport.close()
                    return False
                return True
            self.eof_up = True
            other = self.transport
        else:
            self.eof_client = True
            other = self.up.transport if self.up is not None else None
        if not upstream and self.up is None:
            # EOF before the real server answered the connect (uvloop may deliver
            # it despite pause_reading): passed on once connected.
            return True
        if self.eof_up and self.eof_client:
            self.transport.close()
            if self.up is not None:
                self.up.transport.close()
            return False
        if other is not None and not other.is_closing() and other.can_write_eof():
            other.write_eof()
            return True
        return False

    def pause_writing(self):
        if self.up is not None:
            self.up.transport.pause_reading()

    def resume_writing(self):
        if self.up is not None:
            self.up.transport.resume_reading()

    def upstream_lost(self):
        if not self.transport.is_closing():
            self.transport.close()

    def connection_lost(self, exc):
        self.closed = True
        if self.up is not None and not self.up.transport.is_closing():
            self.up.transport.close()
        if self.server is not None:
            self.server.active -= 1
            self.svc.done(self.client[0])
            self.server = None


class _UdpFlow(asyncio.DatagramProtocol):
    def __init__(self, svc: "_Service", client: tuple, server: Server):
        self.svc, self.client, self.server = svc, client, server
        self.transport = None
        self.last = time.monotonic()

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.last = time.monotonic()
        if self.svc.udp_transport is not None:
            self.svc.udp_transport.sendto(data, self.client)

    def error_received(self, exc):
        self.svc.connect_errors += 1


class _UdpListener(asyncio.DatagramProtocol):
    def __init__(self, svc: "_Service"):
        self.svc = svc

    def datagram_received(self, data, addr):
        self.svc.udp_datagram(data, addr)


class _Service:
    """One virtual service: listener, scheduler, per-real-server counters."""

    def __init__(self, service: Service, udp_timeout: float):
        self.key = service.key
        self.spec = service
        self.servers: dict[DestKey, Server] = {}
        self.sched = None
        self.server = None  # asyncio.Server (TCP)
        self.udp_transport = None
        self.flows: dict[tuple, _UdpFlow] = {}
        self.udp_timeout = udp_timeout
        self.loop: asyncio.AbstractEventLoop | None = None  # the relaying loop (set by open)
        self.listener: Listener | None = None  # TCP with the epoll relay
        self.reuse_port = False
        self.refused = self.connect_errors = 0
        #: per real server: [connections, bytes in, bytes out]; survives weight changes
        self.totals: dict[DestKey, list[int]] = {}
        self.configure(service)

    def configure(self, service: Service) -> None:
        """Take the new weights and scheduler, keeping live counters of surviving servers."""
        old = self.servers
        self.servers = {}
        for d in service.destinations:
            s = old.get(d.key) or Server(d.key, d.weight)
            s.weight = d.weight
            self.servers[d.key] = s
        algo_changed = self.sched is None or service.attrs() != self.spec.attrs()
        self.spec = service
        if algo_changed:
            sched = make_scheduler(service.scheduler, list(self.servers.values()),
                                   **dict.fromkeys(service.flags, True))
            self.sched = (Persistence(sched, service.persistence_timeout, service.persistence_netmask)
                          if service.persistence_timeout else sched)
        else:
            self.sched.update(list(self.servers.values()))

    def pick(self, client: str, port: int) -> Server | None:
        return self.sched.schedule(client, self.key.address or "", time.monotonic(), port)

    def done(self, client: str) -> None:
        if isinstance(self.sched, Persistence):
            self.sched.closed(client, time.monotonic())

    def listening(self) -> bool:
        if self.key.protocol == "UDP":
            return self.udp_transport is not None and not self.udp_transport.is_closing()
        if self.listener is not None:
            return self.listener.serving()
        return self.server is not None and self.server.is_serving()

    async def open(self, relay: Relay | None = None) -> None:
        """Listen; TCP connections go to ``relay`` (epoll), or to asyncio transports without one."""
        fam = socket.AF_INET6 if self.key.family == 6 else socket.AF_INET
        if self.key.fwmark is not None:
            raise BackendError(f"{self.key}: fwmark services need a kernel data plane (nft or ipvs)")
        loop = self.loop = asyncio.get_running_loop()
        kind = socket.SOCK_DGRAM if self.key.protocol == "UDP" else socket.SOCK_STREAM
        if self.key.protocol == "SCTP":
            raise BackendError(f"{self.key}: the proxy data plane does not do SCTP")
        sock = socket.socket(fam, kind)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if self.reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sol = socket.IPPROTO_IPV6 if fam == socket.AF_INET6 else socket.IPPROTO_IP
            sock.setsockopt(sol, IP_FREEBIND, 1)
            sock.bind((self.key.address, self.key.port))
        except OSError as e:
            sock.close()
            hint = ""
            if e.errno == errno.EADDRINUSE:
                hint = (" (another program listens on this port, e.g. on 0.0.0.0; the proxy data plane "
                        "needs the VIP's port free on the director: use --dataplane nft)")
            raise BackendError(f"{self.key}: cannot listen: {e.strerror}{hint}") from None
        sock.setblocking(False)
        if kind == socket.SOCK_STREAM and relay is not None:
            sock.listen(4096)
            self.listener = Listener(relay, sock, self)
        elif kind == socket.SOCK_STREAM:
            self.server = await loop.create_server(lambda: _Client(self), sock=sock, backlog=4096)
        else:
            self.udp_transport, _ = await loop.create_datagram_endpoint(lambda: _UdpListener(self), sock=sock)

    def udp_datagram(self, data: bytes, addr: tuple) -> None:
        flow = self.flows.get(addr)
        now = time.monotonic()
        if flow is not None and now - flow.last > self.udp_timeout:
            self._end_flow(addr)
            flow = None
        if flow is None:
            server = self.pick(addr[0], addr[1])
            if server is None:
                self.refused += 1
                return
            server.active += 1
            flow = _UdpFlow(self, addr, server)
            self.flows[addr] = flow
            asyncio.get_running_loop().create_task(self._udp_connect(flow, data))
            return
        flow.last = now
        if flow.transport is not None:
            flow.transport.sendto(data)

    async def _udp_connect(self, flow: _UdpFlow, first: bytes) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.create_datagram_endpoint(lambda: flow, remote_addr=(
                flow.server.key.address, flow.server.key.port or self.key.port))
        except OSError:
            self.connect_errors += 1
            self._end_flow(flow.client)
            return
        flow.transport.sendto(first)

    def _end_flow(self, addr) -> None:
        flow = self.flows.pop(addr, None)
        if flow is not None:
            flow.server.active -= 1
            self.done(addr[0])
            if flow.transport is not None:
                flow.transport.close()

    def expire_flows(self) -> None:
        now = time.monotonic()
        for addr in [a for a, f in self.flows.items() if now - f.last > self.udp_timeout]:
            self._end_flow(addr)

    async def close(self) -> None:
        if self.listener is not None:
            self.listener.shutdown()  # established connections keep running (IPVS keeps them too)
            self.listener = None
        if self.server is not None:
            self.server.close()
            self.server = None
        if self.udp_transport is not None:
            self.udp_transport.close()
            self.udp_transport = None
        for addr in list(self.flows):
            self._end_flow(addr)


class ProxyBackend:
    """Userspace TCP/UDP proxy backend (see the module docstring)."""

    name = "proxy"

    def __init__(self, udp_timeout: float = 300.0, log: logging.Logger | None = None,
                 own_loop: bool | None = None, relay: str = "epoll", reuse_port: bool = False,
                 workers: int = 1):
        """``own_loop``: relay on a dedicated event loop in a thread (:mod:`.proxy_loop`; uvloop
        for the transports relay). None (default): when the caller's loop is not uvloop already
        (the VRRP daemon must run the default loop for pyroute2's netlink sockets).
        ``relay``: "epoll" (default, :mod:`.proxy_relay`) or "transports" (asyncio protocols,
        the relay before; kept for comparison in bench/dataplane). ``reuse_port``: listen with
        SO_REUSEPORT, so that several proxy processes share a VIP's port (an experiment of
        bench/dataplane: each process then schedules on its own). ``workers``: relay the services
        that allow it in that many processes (see :mod:`.proxy_workers`)."""
        if relay not in ("epoll", "transports"):
            raise ValueError(f"proxy relay {relay!r}: epoll or transports")
        self.relay_kind = relay
        self.reuse_port = reuse_port
        self._workers = (Workers(workers - 1, type(self), {"udp_timeout": udp_timeout, "relay": relay})
                         if workers > 1 else None)
        self._relay: Relay | None = None
        self.log = log or globals()["log"]
        self.udp_timeout = udp_timeout
        self._state = DesiredState()
        self.drift: str | None = None
        self._svcs: dict[ServiceKey, _Service] = {}
        self._sweeper: asyncio.Task | None = None
        self._own_loop = own_loop
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def _start_thread(self) -> asyncio.AbstractEventLoop | None:
        """The proxy's own loop (started on first use), or None to run on the caller's loop."""
        if self._loop is not None:
            return self._loop
        want = self._own_loop
        if want is None:
            want = not isinstance(asyncio.get_running_loop(), uvloop.Loop)
        if not want:
            return None
        # the epoll relay shares the loop's epoll (proxy_loop); the transports relay wants uvloop
        loop = new_relay_loop() if self.relay_kind == "epoll" else uvloop.new_event_loop()
        self._thread = threading.Thread(target=loop.run_forever, name="chimeha-proxy", daemon=True)
        self._thread.start()
        self._loop = loop
        return loop

    async def _in_loop(self, coro):
        loop = self._start_thread()
        if loop is None:
            return await coro
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, loop))

    def unsupported(self, service: Service) -> str | None:
        if service.lb_kind != "NAT" or any(d.lb_kind != "NAT" for d in service.destinations):
            return f"{service.key}: lb_kind {service.lb_kind} (DR/TUN) needs the IPVS data plane"
        if service.key.fwmark is not None:
            return f"{service.key}: fwmark services need a kernel data plane (nft or ipvs)"
        if service.key.protocol == "SCTP":
            return f"{service.key}: the proxy data plane does not do SCTP"
        return None

    async def apply(self, ops: Sequence[Operation]) -> None:
        await self._in_loop(self._apply(list(ops)))

    async def _apply(self, ops: list[Operation]) -> None:
        new = apply_to(self._state, ops)
        errors = []
        for key in list(self._svcs):
            if key not in new.services:
                await self._svcs.pop(key).close()
        for key, svc in new.services.items():
            cur = self._svcs.get(key)
            if cur is None:
                cur = _Service(svc, self.udp_timeout)
                cur.reuse_port = self.reuse_port or (self._workers is not None and parallel_ok(svc))
                if self._relay is None and self.relay_kind == "epoll":
                    self._relay = Relay(asyncio.get_running_loop())
                try:
                    await cur.open(self._relay)
                except BackendError as e:
                    errors.append(str(e))
                    continue
                self._svcs[key] = cur
            else:
                cur.configure(svc)
        self._state = DesiredState({k: v for k, v in new.services.items() if k in self._svcs})
        if self._workers is not None:
            self._workers.apply(self._state)
        if self._sweeper is None and any(k.protocol == "UDP" for k in self._svcs):
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep())
        if errors:
            raise BackendError("; ".join(errors))

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(min(self.udp_timeout, 5.0))
            for s in self._svcs.values():
                s.expire_flows()

    async def preflight(self) -> str | None:
        return None  # sockets only: nothing to install

    async def read_actual(self) -> DesiredState:
        """The services whose listeners are open now (a listener that died is absent)."""
        live = {k: v for k, v in self._state.services.items() if k in self._svcs and self._svcs[k].listening()}
        self.drift = None if len(live) == len(self._state.services) else "a listener closed"
        dead = self._workers.dead() if self._workers is not None else []
        if dead:  # its services read as missing: the repair's apply restarts the worker
            self.drift = self.drift or f"proxy worker {', '.join(map(str, dead))} exited"
            live = {k: v for k, v in live.items() if not parallel_ok(v)}
        self._state = DesiredState(live)
        return self._state

    async def verify(self) -> bool:
        await self.read_actual()
        return self.drift is None

    async def close(self) -> None:
        if self._loop is None and self._own_loop is not False and not self._svcs:
            return  # never used: do not start a thread just to stop it
        await self._in_loop(self._close())
        loop, self._loop = self._loop, None
        if loop is not None:
            loop.call_soon_threadsafe(loop.stop)
            await asyncio.to_thread(self._thread.join, 5.0)
            loop.close()
            self._thread = None

    async def _close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for s in self._svcs.values():
            await s.close()
        self._svcs.clear()
        if self._workers is not None:
            await self._workers.close()
        if self._relay is not None:
            self._relay.close()  # and every connection still open
            self._relay = None
        self._state = DesiredState()

    def worker_pids(self) -> list[int | None]:
        """The worker processes' pids (None: not running), for tests and debugging."""
        return [p.pid if p is not None else None for p in self._workers.procs] if self._workers is not None else []

    def worker_stats(self) -> list[dict]:
        """Each worker process's last counter report (services it serves), for tests and debugging."""
        return [dict(st) for st in self._workers.stats] if self._workers is not None else []

    def stats(self) -> dict:
        """Counters (read from another thread when the proxy has its own loop: list() copies are atomic)."""
        out = {}
        for key, s in list(self._svcs.items()):
            out[str(key)] = {
                "refused": s.refused, "connect_errors": s.connect_errors,
                "real_servers": {str(k): {"active": v.active, "weight": v.weight,
                                          **dict(zip(("connections", "bytes_in", "bytes_out"),
                                                     s.totals.get(k, (0, 0, 0))))}
                                 for k, v in list(s.servers.items())},
            }
        return self._workers.merged_into(out) if self._workers is not None else out

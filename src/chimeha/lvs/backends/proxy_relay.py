"""The proxy's TCP relay: non-blocking sockets on one epoll, nested in the event loop.

Why not asyncio transports (the previous relay): per new connection they cost
about twice HAProxy's CPU on the director (bench/dataplane/RESULTS.md has the
table): a task and a coroutine per connect, a getpeername, extra getsockname,
setsockopt and epoll_ctl calls inside the loop library, and no way to see a
real server's FIN together with its last data. Here:

* One epoll object per relaying loop, so everything runs on the loop's thread
  (no locks; configuration and counters stay where they were) and one wake-up
  handles every ready socket. On the proxy's own thread that epoll is the
  loop's selector (:mod:`.proxy_loop`: one ``epoll_wait`` per wake-up); on any
  other loop it is nested, watched with ``loop.add_reader``.
* ``EPOLLRDHUP`` tells, with the data, that the peer's FIN is queued. A reply
  and the real server's FIN then leave for the client in one segment
  (``send(MSG_MORE)`` + ``shutdown(SHUT_WR)``): the client sees the FIN before
  it closes, its close is the passive one, and the TIME_WAIT stays on the
  director (with the FIN a loop iteration later, 80 % of clients that close
  after a complete answer, as wrk and most HTTP clients do, closed first and
  kept a TIME_WAIT: a stock kernel then runs out of client ports).
* Accepts are batched (up to ``ACCEPT_BATCH`` per wake-up); the client's
  address comes with ``accept``; the real server's connect is a plain
  non-blocking ``connect_ex``; the client is not read before the real server
  accepted (its first request waits in the kernel, not in Python).
* Half-close both ways: an EOF from one side becomes ``shutdown(SHUT_WR)``
  towards the other; both sockets close once both sides have sent their EOF.
  Nothing is reset deliberately: a close happens only after both EOFs, after
  an error or reset of one side (the other side then gets a FIN once its
  pending data is written), or when the connect to the real server fails.
* Back-pressure: what the other side cannot take yet stays in one buffer per
  direction; reading that direction stops until the buffer is written.
"""

from __future__ import annotations

import errno
import logging
import select
import socket

# The relay's sockets are plain ``_socket.socket`` objects (RawSocket): socket.socket's Python
# layer (its __init__, close() and family property) is measurable per connection here.
from _socket import socket as RawSocket

from .proxy_loop import selector_of

log = logging.getLogger("chimeha.lvs.proxy")

IN, OUT = select.EPOLLIN, select.EPOLLOUT
RDHUP = getattr(select, "EPOLLRDHUP", 0x2000)
ERR = select.EPOLLERR | select.EPOLLHUP
MSG_MORE = getattr(socket, "MSG_MORE", 0x8000)
#: bytes read per recv; a read shorter than this drained the socket
CHUNK = 65536
#: accepts per listener wake-up (the rest wait for the next one, so one busy
#: listener does not starve relaying)
ACCEPT_BATCH = 64
_STREAM = int(socket.SOCK_STREAM)
_AF4, _AF6 = int(socket.AF_INET), int(socket.AF_INET6)
_STREAM_NB = int(socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
_NODELAY = (int(socket.IPPROTO_TCP), int(socket.TCP_NODELAY), 1)
_INPROGRESS = (errno.EINPROGRESS, errno.EAGAIN, errno.EWOULDBLOCK, errno.EALREADY)


class Relay:
    """One epoll set of listeners and connections, driven from an event loop."""

    def __init__(self, loop):
        """Relay on ``loop``: on the loop's own epoll when it is a :func:`.proxy_loop.new_loop`
        (its selector hands the relay's events over directly), else on an epoll of its own that
        the loop watches."""
        self.loop = loop
        self.selector = selector = selector_of(loop)
        self.handlers: dict[int, object] = {}
        #: descriptors closed during the current batch of events: their later events in the
        #: batch are stale (and the number may already belong to a new socket); level-triggered
        #: epoll reports a new socket's events again on the next poll
        self.dead: set[int] = set()
        if selector is not None:
            self.ep = selector.epoll
            selector.dispatch = self.dispatch
        else:
            self.ep = select.epoll()
            loop.add_reader(self.ep.fileno(), self.run_once)

    def run_once(self) -> None:
        self.dispatch(self.ep.poll(0, 256))

    def dispatch(self, events) -> None:
        """Run the handlers of ``events`` ((fd, mask) pairs of this relay's descriptors)."""
        handlers, dead = self.handlers, self.dead
        dead.clear()
        for fd, ev in events:
            if fd in dead:
                continue
            h = handlers.get(fd)
            if h is not None:
                try:
                    h(ev)
                except Exception:  # a bug must cost one connection, not the batch or the relay
                    log.exception("proxy relay: fd %d", fd)
                    owner = h.__self__
                    (owner.close if isinstance(owner, Conn) else owner.shutdown)()

    def register(self, fd: int, handler, events: int) -> None:
        """Watch ``fd`` for ``events``; ``handler(events)`` runs when some are ready."""
        self.handlers[fd] = handler
        self.ep.register(fd, events)

    def forget(self, fd: int) -> None:
        """Drop ``fd`` (about to be closed: closing removes it from the epoll set)."""
        self.handlers.pop(fd, None)
        self.dead.add(fd)

    def close(self) -> None:
        for h in {id(h.__self__): h.__self__ for h in self.handlers.values()}.values():
            h.shutdown()
        self.handlers.clear()
        if self.selector is not None:
            self.selector.dispatch = None  # the epoll is the loop's: it closes with the loop
        else:
            self.loop.remove_reader(self.ep.fileno())
            self.ep.close()


class Listener:
    """A listening socket; every accepted connection becomes a :class:`Conn`."""

    def __init__(self, relay: Relay, sock: socket.socket, svc):
        self.relay, self.sock, self.svc = relay, sock, svc
        self.fd = sock.fileno()
        self.family = int(sock.family)
        self.conns: set[Conn] = set()
        sock.setblocking(False)
        relay.register(self.fd, self.event, IN)

    def serving(self) -> bool:
        return self.fd >= 0 and self.sock.fileno() >= 0

    def event(self, ev: int) -> None:
        sock, svc = self.sock, self.svc
        accept = RawSocket._accept  # (fd, address): no socket object for a refused client
        for _ in range(ACCEPT_BATCH):
            try:
                cfd, addr = accept(sock)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:  # EMFILE, ENFILE, ENOBUFS...: try again on the next wake-up
                log.warning("%s: accept: %s", svc.key, e.strerror)
                return
            server = svc.pick(addr[0], addr[1])
            if server is None:
                svc.refused += 1
                _abort_fd(cfd)
                continue
            Conn(self, cfd, addr, server)

    def shutdown(self) -> None:
        """Stop listening; established connections keep running (IPVS keeps them too)."""
        if self.fd >= 0:
            self.relay.forget(self.fd)
            self.fd = -1
            self.sock.close()

    def close_all(self) -> None:
        for c in list(self.conns):
            c.close()


def _abort_fd(fd: int) -> None:
    s = RawSocket(fileno=fd)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
    s.close()


class Conn:
    """One relayed connection: client socket ``c``, real-server socket ``u``."""

    __slots__ = ("lst", "relay", "svc", "server", "client", "c", "u", "cfd", "ufd", "totals",
                 "connected", "eof_c", "eof_u", "shut_c", "shut_u", "to_u", "to_c", "cmask", "umask", "closed")

    def __init__(self, lst: Listener, cfd: int, addr, server):
        self.lst, self.relay, self.svc, self.server = lst, lst.relay, lst.svc, server
        self.client = addr[0]
        svc = self.svc
        self.c = RawSocket(lst.family, _STREAM, 0, cfd)
        self.c.setblocking(False)
        self.cfd, self.ufd, self.u = cfd, -1, None
        self.connected = self.eof_c = self.eof_u = self.shut_c = self.shut_u = self.closed = False
        self.to_u = self.to_c = b""
        self.cmask = self.umask = -1  # not registered
        server.active += 1
        self.totals = svc.totals.get(server.key)
        if self.totals is None:
            self.totals = svc.totals[server.key] = [0, 0, 0]
        self.totals[0] += 1
        lst.conns.add(self)
        key = server.key
        try:
            u = self.u = RawSocket(_AF6 if ":" in key.address else _AF4, _STREAM_NB)
            self.ufd = u.fileno()
            self.c.setsockopt(*_NODELAY)
            u.setsockopt(*_NODELAY)
            err = u.connect_ex((key.address, key.port or svc.key.port))
        except OSError as e:
            err = e.errno or errno.EIO
        if err and err not in _INPROGRESS:
            self._connect_failed(err)
            return
        # the client is not read before the real server accepted: its request waits in the kernel
        self.umask = OUT | RDHUP
        self.relay.register(self.ufd, self.on_u, self.umask)

    def _connect_failed(self, err: int) -> None:
        """The real server refused (or is unreachable): reset the client, as the server would."""
        self.svc.connect_errors += 1
        log.debug("%s: connect to %s failed: %s", self.svc.key, self.server.key, errno.errorcode.get(err, err))
        try:
            self.c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
        except OSError:
            pass
        self.close()

    # ------------------------------------------------------------ events
    # on_c and on_u repeat their fast path for each direction on purpose: it runs once per
    # packet, and a shared helper taking the direction's attributes cost more than it saves
    # (interpreter time is what keeps the proxy behind HAProxy, bench/dataplane/RESULTS.md).
    def on_c(self, ev: int) -> None:
        """The client's socket is ready. Fast path: readable, nothing waiting, data fits."""
        if ev == IN and not self.to_u:
            try:
                data = self.c.recv(CHUNK)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self.close()
                return
            if data:
                self.totals[1] += len(data)
                try:
                    n = self.u.send(data)
                except (BlockingIOError, InterruptedError):
                    n = 0
                except OSError:
                    self.close()
                    return
                if n < len(data):
                    self.to_u = data[n:]
                    self._sync()
                return
            self.eof_c = True
            self._settle()
            return
        if ev & OUT and self.to_c:
            self._flush(True)
        if ev & (IN | RDHUP | ERR) and not self.closed and not self.eof_c:
            self._pump(False, ev)

    def on_u(self, ev: int) -> None:
        """The real server's socket is ready (first: its connect finished)."""
        if ev == IN and not self.to_c:
            try:
                data = self.u.recv(CHUNK)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self.close()
                return
            if data:
                self.totals[2] += len(data)
                try:
                    n = self.c.send(data)
                except (BlockingIOError, InterruptedError):
                    n = 0
                except OSError:
                    self.close()
                    return
                if n < len(data):
                    self.to_c = data[n:]
                    self._sync()
                return
            self.eof_u = True
            self._settle()
            return
        if not self.connected:
            if not ev & (OUT | ERR):
                return
            if ev & ERR:
                self._connect_failed(self.u.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                                     or errno.ECONNREFUSED)
                return
            self.connected = True
            self.cmask = IN | RDHUP
            self.relay.register(self.cfd, self.on_c, self.cmask)
            self._sync()
            return
        if ev & OUT and self.to_u:
            self._flush(False)
        if ev & (IN | RDHUP | ERR) and not self.closed and not self.eof_u:
            self._pump(True, ev)

    def _pump(self, to_client: bool, ev: int) -> None:
        """Read one side once; pass the data, and the FIN queued behind it, to the other."""
        src, dst = (self.u, self.c) if to_client else (self.c, self.u)
        try:
            data = src.recv(CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:  # reset by the peer (or another error): end both sides
            self.close()
            return
        # EPOLLRDHUP: the peer's FIN is queued; a short read drained everything in front of it
        fin = not data or (ev & RDHUP and len(data) < CHUNK)
        if data:
            self.totals[2 if to_client else 1] += len(data)
            if self.to_c if to_client else self.to_u:
                self._keep(data, to_client)
            else:
                try:
                    # MSG_MORE: hold the segment for the FIN that follows (one segment, data + FIN)
                    n = dst.send(data, MSG_MORE) if fin else dst.send(data)
                except (BlockingIOError, InterruptedError):
                    n = 0
                except OSError:
                    self.close()
                    return
                if n < len(data):
                    self._keep(data[n:], to_client)
        if fin:
            if to_client:
                self.eof_u = True
            else:
                self.eof_c = True
        self._settle()

    def _keep(self, rest: bytes, to_client: bool) -> None:
        if to_client:
            self.to_c += rest
        else:
            self.to_u += rest

    def _flush(self, to_client: bool) -> None:
        buf, dst = (self.to_c, self.c) if to_client else (self.to_u, self.u)
        try:
            n = dst.send(buf)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.close()
            return
        if to_client:
            self.to_c = buf[n:]
        else:
            self.to_u = buf[n:]
        self._settle()

    def _settle(self) -> None:
        """Pass on FINs whose data is out, close when both sides are done, fix the epoll masks."""
        if self.eof_u and not self.to_c and not self.shut_c:
            self.shut_c = True
            if self.eof_c and not self.to_u:
                self.close()  # both done: the close sends the FIN
                return
            _shut(self.c)
        if self.eof_c and not self.to_u and not self.shut_u:
            self.shut_u = True
            if self.eof_u and not self.to_c:
                self.close()
                return
            _shut(self.u)
        if self.shut_c and self.shut_u:
            self.close()
            return
        self._sync()

    def _sync(self) -> None:
        """epoll masks from the state: read a side unless it sent its FIN or the other side
        is still full (back-pressure); write a side while data waits for it."""
        ep = self.relay.ep
        cm = (0 if self.eof_c or self.to_u else IN | RDHUP) | (OUT if self.to_c else 0)
        if cm != self.cmask:
            self.cmask = cm
            ep.modify(self.cfd, cm)
        um = (0 if self.eof_u or self.to_c else IN | RDHUP) | (OUT if self.to_u else 0)
        if um != self.umask:
            self.umask = um
            ep.modify(self.ufd, um)

    def close(self) -> None:
        """Close both sockets (graceful: the kernel still sends what it holds, then a FIN)."""
        if self.closed:
            return
        self.closed = True
        relay = self.relay
        relay.forget(self.cfd)
        self.c.close()
        if self.u is not None:
            relay.forget(self.ufd)
            self.u.close()
        self.lst.conns.discard(self)
        self.server.active -= 1
        self.svc.done(self.client)

    def shutdown(self) -> None:
        self.close()


def _shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass

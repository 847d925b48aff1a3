"""BFD on real sockets: the thin asyncio adapter around the pure :class:`~chimeha.bfd.node.BfdNode`.

Theory of operation
-------------------
Every protocol decision is the node's (RFC 5880 through :mod:`chimeha.bfd`);
this module owns only sockets and one timer, in the aioquic style:

* **receive** (RFC 5881 section 4): one UDP socket per address family bound
  to port 3784 on the wildcard address, asking the kernel for each
  datagram's TTL / hop limit (``IP_RECVTTL`` / ``IPV6_RECVHOPLIMIT``) and
  destination (``IP_PKTINFO`` / ``IPV6_RECVPKTINFO``); the node checks the
  TTL (255 unless ``max_hops``) and demultiplexes.
* **send**: one socket per session, bound to its ``source_ip`` (or the
  wildcard) and a source port drawn from 49152-65535 (the same port for the
  session's life, as section 4 requires), TTL / hop limit ``ttl`` (255).
* **time**: ``loop.time()`` is every ``now``; one ``call_at`` handle at
  ``node.get_timer()``, re-armed after every input.
* **outputs**: :class:`~chimeha.bfd.session.SendControl` -> the session's
  socket; :class:`~chimeha.bfd.session.SessionChanged` -> ``on_change``.

:func:`attach` wires it into the daemon (like :func:`chimeha.runtime.bgp.attach`):
a session change becomes ``Daemon.tracked("bfd", ...)`` (track_bfd weights
and FAULT), then, when a session that was Up goes down, the instances that
track it are told their master may be gone
(:meth:`chimeha.vrrp.node.VrrpNode.master_unreachable`: a BACKUP whose master
is the session's neighbor takes over after Skew_Time instead of waiting for
its Master_Down_Timer), and the session's state is published for BFD_CHECK
(:mod:`chimeha.check.bfd`). A reload keeps every session whose
configuration is unchanged (a timer-only change is a Poll Sequence).
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import random as _random
import socket
import struct
from typing import Any, Callable, Iterable

from chimeha.bfd.node import BfdNode
from chimeha.bfd.packet import CONTROL_PORT, REQUIRED_TTL, SOURCE_PORTS, SessionState, encode
from chimeha.bfd.session import SendControl, SessionChanged, SessionSpec
from chimeha.errors import HostError
from chimeha.net.sockopt import (IP_PKTINFO, IP_RECVTTL, IP_TTL, IPV6_HOPLIMIT, IPV6_PKTINFO, IPV6_RECVHOPLIMIT,
                                 IPV6_RECVPKTINFO)

log = logging.getLogger("chimeha.bfd")

_ANC = socket.CMSG_SPACE(4) + socket.CMSG_SPACE(32)


def _check_states():
    """BFD_CHECK's registry, imported on first use: the checker package (HTTP, SMTP...) is not needed
    to run VRRP alone (tests/observe/test_observe_lazy.py)."""
    from chimeha.check.bfd import STATES

    return STATES


class BfdSocketError(HostError):
    """A BFD socket cannot be opened (port 3784 taken, no such source address...)."""


def spec_from_config(inst: Any) -> SessionSpec:
    """A :class:`SessionSpec` from a typed ``bfd_instance`` (milliseconds -> seconds)."""
    return SessionSpec(name=inst.name, neighbor=inst.neighbor_ip, source=inst.source_ip,
                       min_tx=inst.min_tx / 1000.0, min_rx=inst.min_rx / 1000.0, idle_tx=inst.idle_tx / 1000.0,
                       multiplier=inst.multiplier, passive=inst.passive,
                       ttl=inst.ttl if inst.ttl is not None else REQUIRED_TTL, max_hops=inst.max_hops)


def specs_from_config(config: Any) -> list[SessionSpec]:
    from chimeha.config.build_bfd import bfd_instances

    known, _ = bfd_instances(config)
    return [spec_from_config(i) for i in known.values()]


def _parse_anc(family: int, anc: list) -> tuple[int | None, str | None]:
    ttl = dst = None
    for level, kind, data in anc:
        if family == 4 and level == socket.IPPROTO_IP:
            if kind == IP_TTL and len(data) >= 4:
                ttl = struct.unpack("=i", data[:4])[0]
            elif kind == IP_PKTINFO and len(data) >= 12:
                dst = socket.inet_ntop(socket.AF_INET, data[8:12])  # in_pktinfo.ipi_addr: the header's
        elif family == 6 and level == socket.IPPROTO_IPV6:
            if kind == IPV6_HOPLIMIT and len(data) >= 4:
                ttl = struct.unpack("=i", data[:4])[0]
            elif kind == IPV6_PKTINFO and len(data) >= 16:
                dst = socket.inet_ntop(socket.AF_INET6, data[:16])
    return ttl, dst


def open_receiver(family: int, port: int = CONTROL_PORT) -> socket.socket:
    """The UDP 3784 socket of one family (non-blocking), TTL and destination reported per datagram."""
    af = socket.AF_INET if family == 4 else socket.AF_INET6
    s = socket.socket(af, socket.SOCK_DGRAM)
    try:
        # No SO_REUSEADDR: with it, a second BFD daemon in this namespace would silently share
        # (and steal) the port; without it the bind fails with a clear error instead.
        if family == 4:
            s.setsockopt(socket.IPPROTO_IP, IP_RECVTTL, 1)
            s.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
            s.bind(("0.0.0.0", port))
        else:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            s.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVHOPLIMIT, 1)
            s.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVPKTINFO, 1)
            s.bind(("::", port))
        s.setblocking(False)
    except OSError as exc:
        s.close()
        raise BfdSocketError(f"BFD: cannot listen on UDP port {port} (IPv{family}): {exc.strerror or exc}") from None
    return s


def open_sender(spec: SessionSpec, random: Callable[[], float] = _random.random,
                ports: tuple[int, int] = SOURCE_PORTS) -> socket.socket:
    """The session's send socket: bound to its source and a free port in ``ports``, TTL ``spec.ttl``."""
    v6 = spec.family == 6
    s = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_DGRAM)
    try:
        if v6:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, spec.ttl)
        else:
            s.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, spec.ttl)
        host = spec.source or ("::" if v6 else "0.0.0.0")
        low, high = ports
        span = high - low + 1
        first = int(random() * span)
        for i in range(span):
            try:
                s.bind((host, low + (first + i) % span))
                break
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    raise
        else:
            raise OSError(errno.EADDRINUSE, f"no free source port in {low}-{high}")
        s.setblocking(False)
    except OSError as exc:
        s.close()
        raise BfdSocketError(f"BFD session {spec.name}: cannot send from {spec.source or 'any address'}: "
                             f"{exc.strerror or exc}") from None
    return s


def _same_endpoints(a: SessionSpec, b: SessionSpec) -> bool:
    return (a.neighbor, a.source, a.idle_tx, a.passive, a.ttl, a.max_hops) == \
        (b.neighbor, b.source, b.idle_tx, b.passive, b.ttl, b.max_hops)


class BfdService:
    """The sessions of one node on real sockets (see the module docstring).

    ``on_change(change)`` gets every :class:`SessionChanged`; its exceptions are logged.
    """

    def __init__(self, specs: Iterable[SessionSpec], on_change: Callable[[SessionChanged], Any] | None = None, *,
                 port: int = CONTROL_PORT, random: Callable[[], float] = _random.random):
        self.node = BfdNode(specs, random=random)
        self.on_change = on_change
        self.port = port
        self.random = random
        self.send_errors = 0
        self.errors: list[str] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._rx: dict[int, socket.socket] = {}
        self._tx: dict[str, socket.socket] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False

    def now(self) -> float:
        return self._loop.time()

    # -- lifecycle ---------------------------------------------------------
    def start(self) -> None:
        """Open the sockets and start every session (on the running loop); raises :class:`BfdSocketError`."""
        self._loop = asyncio.get_running_loop()
        try:
            for fam in sorted({s.spec.family for s in self.node.sessions.values()}):
                self._open_rx(fam)
            for sess in self.node.sessions.values():
                self._tx[sess.name] = open_sender(sess.spec, self.random)
        except BfdSocketError:
            self.close()
            raise
        self.node.start(self.now())
        self._after_input()

    def _open_rx(self, family: int) -> None:
        if family in self._rx:
            return
        sock = open_receiver(family, self.port)
        self._rx[family] = sock
        self._loop.add_reader(sock.fileno(), self._readable, family)

    def close(self) -> None:
        """Tell every peer AdminDown (best effort), then close the sockets."""
        if self._loop is not None and not self._closed:
            for name in list(self.node.sessions):
                self.node.remove(name, self.now())
            self._execute(self.node.pop_actions(), notify=False)
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for fam, sock in self._rx.items():
            if self._loop is not None:
                self._loop.remove_reader(sock.fileno())
            sock.close()
        self._rx.clear()
        for sock in self._tx.values():
            sock.close()
        self._tx.clear()

    def reconfigure(self, specs: Iterable[SessionSpec]) -> dict[str, list[str]]:
        """A reload: unchanged sessions stay as they are, a timer-only change runs a Poll Sequence.

        Returns ``{"kept": [...], "retimed": [...], "added": [...], "removed": [...]}``.
        A new session whose socket cannot open is logged and left out.
        """
        now = self.now()
        new = {s.name: s for s in specs}
        out: dict[str, list[str]] = {"kept": [], "retimed": [], "added": [], "removed": []}
        for name in list(self.node.sessions):
            old = self.node.sessions[name].spec
            spec = new.get(name)
            if spec is not None and spec == old:
                out["kept"].append(name)
            elif spec is not None and _same_endpoints(spec, old):
                self.node.sessions[name].set_timers(now, min_tx=spec.min_tx, min_rx=spec.min_rx,
                                                    multiplier=spec.multiplier)
                self.node.sessions[name].spec = spec
                out["retimed"].append(name)
            else:
                self.node.remove(name, now)
                out["removed"].append(name)
        self._execute(self.node.pop_actions(), notify=False)  # the AdminDown of removed sessions
        for name in out["removed"]:
            sock = self._tx.pop(name, None)
            if sock is not None:
                sock.close()
            _check_states().forget(name)
        for name, spec in new.items():
            if name in self.node.sessions:
                continue
            try:
                self._open_rx(spec.family)
                self._tx[name] = open_sender(spec, self.random)
            except BfdSocketError as exc:
                self._error(str(exc))
                continue
            self.node.add(spec, now)
            out["added"].append(name)
            if name in out["removed"]:
                out["removed"].remove(name)  # replaced: a new session under the same name
        self._after_input()
        return out

    def admin_down(self, name: str) -> None:
        self.node.admin_down(name, self.now())
        self._after_input()

    def admin_up(self, name: str) -> None:
        self.node.admin_up(name, self.now())
        self._after_input()

    # -- inputs ------------------------------------------------------------
    def _readable(self, family: int) -> None:
        sock = self._rx.get(family)
        if sock is None:
            return
        for _ in range(64):  # drain what is queued, but let the loop breathe
            try:
                data, anc, _flags, addr = sock.recvmsg(512, _ANC)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                self._error(f"BFD: receive failed: {exc}")
                break
            ttl, dst = _parse_anc(family, anc)
            self.node.receive(data, addr[0], dst, ttl, self.now())
        self._after_input()

    def _on_timer(self) -> None:
        self._timer = None
        try:
            self.node.handle_timer(self.now())
        except Exception:
            log.exception("unexpected error in the BFD timer")
        self._after_input()

    # -- outputs -----------------------------------------------------------
    def _after_input(self) -> None:
        self._execute(self.node.pop_actions())
        self._arm()

    def _execute(self, actions: list, notify: bool = True) -> None:
        for act in actions:
            if isinstance(act, SendControl):
                self._send(act)
            elif isinstance(act, SessionChanged) and notify:
                self._changed(act)

    def _send(self, act: SendControl) -> None:
        sock = self._tx.get(act.session)
        if sock is None:
            return
        try:
            sock.sendto(encode(act.packet), (act.neighbor, CONTROL_PORT))
        except OSError as exc:  # no route, buffer full: detection on the far side handles it
            self.send_errors += 1
            if self.send_errors == 1 or self.send_errors % 1000 == 0:
                log.warning("BFD session %s: send to %s failed: %s (%d so far)", act.session, act.neighbor,
                            exc.strerror or exc, self.send_errors)

    def _changed(self, change: SessionChanged) -> None:
        (log.warning if change.old is SessionState.UP else log.info)("%s", change.describe())
        _check_states().publish(change.session, change.up, change.describe())
        if self.on_change is None:
            return
        try:
            self.on_change(change)
        except Exception:
            log.exception("BFD change handler failed for %s", change.session)

    def _arm(self) -> None:
        if self._closed or self._loop is None:
            return
        when = self.node.get_timer()
        if self._timer is not None:
            if when is not None and self._timer.when() <= when:
                return  # fires no later than needed: it re-arms after running
            self._timer.cancel()
            self._timer = None
        if when is not None:
            self._timer = self._loop.call_at(when, self._on_timer)

    def _error(self, msg: str) -> None:
        log.error("%s", msg)
        self.errors = (self.errors + [msg])[-5:]

    def snapshot(self) -> dict:
        """The "bfd" section of the daemon snapshot: every session (state, timers, counters), drops."""
        snap = self.node.snapshot()
        snap["send_errors"] = self.send_errors
        snap["errors"] = list(self.errors)
        for name, sess in snap["sessions"].items():
            sock = self._tx.get(name)
            try:
                snap["sessions"][name]["source_port"] = sock.getsockname()[1] if sock else None
            except OSError:
                snap["sessions"][name]["source_port"] = None
        return snap


class BfdManager:
    """The daemon side: session changes -> track_bfd, master_unreachable, BFD_CHECK."""

    def __init__(self, daemon: Any, service: BfdService):
        self.daemon = daemon
        self.service = service
        self.takeovers = 0  # times a BFD Down cut a BACKUP's Master_Down_Timer
        service.on_change = self.changed

    def changed(self, change: SessionChanged) -> None:
        from chimeha.bfd.tracks import tracking_instances

        daemon = self.daemon
        if getattr(daemon, "_stopping", False):
            return
        now = daemon.now()
        # weights / FAULT first, so Skew_Time below uses the priority this event leaves
        daemon.node.set_tracked(change.session, change.up, now, kind="bfd", detail=_detail(change))
        if change.old is SessionState.UP and not change.up and not self._administrative(change):
            names = tracking_instances(daemon.config, change.session)
            moved = daemon.node.master_unreachable(change.neighbor, now, change.describe(), names)
            if moved:
                self.takeovers += len(moved)
                log.warning("BFD session %s down: %s take(s) over after Skew_Time, not the Master_Down_Timer",
                            change.session, ", ".join(moved))
        daemon.after_input()

    def _administrative(self, change: SessionChanged) -> bool:
        """RFC 5882 3.2: a session taken down by AdminDown (ours or the peer's) is no path failure."""
        sess = self.service.node.sessions.get(change.session)
        return change.new is SessionState.ADMIN_DOWN or (sess is not None
                                                         and sess.remote_state is SessionState.ADMIN_DOWN)

    def reload(self, config: Any) -> dict:
        out = self.service.reconfigure(specs_from_config(config))
        log.info("BFD reload: %s", "; ".join(f"{k} {', '.join(v)}" for k, v in out.items() if v) or "no sessions")
        return out

    def resync(self) -> None:
        """Feed every session's current state to the instances (rebuilt ones start with it Down)."""
        now = self.daemon.now()
        for name, sess in self.service.node.sessions.items():
            ch = sess.last_change
            detail = _detail(ch) if ch is not None else None
            self.daemon.node.set_tracked(name, sess.state is SessionState.UP, now, kind="bfd", detail=detail)
        self.daemon.after_input()

    def stop(self) -> None:
        self.service.close()
        _check_states().clear()

    def snapshot(self) -> dict:
        snap = self.service.snapshot()
        snap["takeovers"] = self.takeovers
        return snap


def _detail(change: SessionChanged) -> str:
    """The track reason reads ``track_bfd NAME to 192.168.231.12 down: control detection time expired, 150 ms``."""
    return change.describe().removeprefix("BFD ")


def attach(daemon: Any, port: int = CONTROL_PORT) -> BfdManager | None:
    """Start the BFD sessions of the daemon's config (None without ``bfd_instance`` or on error, logged)."""
    specs = specs_from_config(daemon.config)
    if not specs:
        return None
    service = BfdService(specs, port=port)
    mgr = BfdManager(daemon, service)
    try:
        service.start()
    except BfdSocketError as exc:
        log.error("%s; BFD sessions stay Down", exc)
        service.close()
        return None
    log.info("BFD: %d session(s): %s", len(specs), ", ".join(f"{s.name} -> {s.neighbor}" for s in specs))
    return mgr

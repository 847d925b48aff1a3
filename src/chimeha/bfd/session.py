"""One BFD session in asynchronous mode, sans I/O.

Theory of operation
-------------------
This is the session of RFC 5880 (section 6.2 state machine, 6.8 procedures)
for RFC 5881 single-hop IPv4/IPv6, as a pure object in the aioquic style:
every input carries ``now`` (seconds, any epoch), every output is queued for
:meth:`Session.pop_actions`, and the owner arms one timer at
:meth:`Session.get_timer` and calls :meth:`Session.handle_timer`.

State machine (6.2, 6.8.6)::

    Down  --rx Down-->  Init   --rx Init/Up-->  Up
    Down  --rx Init-->  Up
    Init/Up --rx Down / AdminDown, or detection timer--> Down
    any   --admin_down()--> AdminDown --admin_up()--> Down

Timers:

* Transmission (6.8.7): every ``max(bfd.DesiredMinTxInterval,
  bfd.RemoteMinRxInterval)``, jittered to 75-100% of it (75-90% when our
  Detect Mult is 1) with the injected ``random`` source. Nothing is sent
  periodically while the remote's Required Min RX is 0, nor (``passive``)
  before the remote has sent to us, nor while the remote is in Demand mode
  and both ends are Up. A packet with Poll set is answered at once with
  Final set; a state change is announced at once (outside the schedule).
* Detection (6.8.4): ``remote Detect Mult x max(bfd.RequiredMinRxInterval,
  last received Desired Min TX)``, restarted by every valid packet; expiry
  in Init/Up gives Down with diagnostic 1 and forgets the remote
  discriminator (6.8.1).
* Slow start (6.8.3): while not Up we advertise a Desired Min TX of
  ``idle_tx`` (never under 1 s); on Up the configured ``min_tx`` is
  advertised in a Poll Sequence (6.5). A larger Desired Min TX is used for
  our own transmission only once the Poll Sequence ends (Final received); a
  smaller Required Min RX counts for detection only once it ends.
  :meth:`Session.set_timers` changes the timers of a running session the
  same way (a reload).
"""

from __future__ import annotations

import random as _random
from dataclasses import dataclass, field
from typing import Callable

from chimeha.bfd.packet import REQUIRED_TTL, ControlPacket, Diag, SessionState, diag_text

SLOW_TX = 1.0  # RFC 5880 6.8.3: at least one second while the session is not Up
INITIAL_REMOTE_MIN_RX = 1e-6  # RFC 5880 6.8.1: bfd.RemoteMinRxInterval starts at 1 us


def _ms3(seconds: float) -> float:
    """Seconds -> milliseconds rounded to the microsecond (the wire's resolution)."""
    return round(seconds * 1000, 3)


def ms(seconds: float) -> str:
    """``0.15`` -> ``"150 ms"``, ``0.003312`` -> ``"3.312 ms"``."""
    text = f"{seconds * 1000:.3f}".rstrip("0").rstrip(".")
    return f"{text} ms"


@dataclass(frozen=True)
class SessionSpec:
    """What a session needs from a ``bfd_instance`` (intervals in seconds).

    Defaults are keepalived 2.2.7's (min_rx/min_tx 10 ms, idle_tx 1000 ms,
    multiplier 5). ``ttl`` is the TTL / hop limit we send; a packet is
    accepted with a TTL of at least ``ttl - max_hops`` (``max_hops`` 255: any).
    """

    name: str
    neighbor: str
    source: str | None = None
    min_tx: float = 0.010
    min_rx: float = 0.010
    idle_tx: float = 1.0
    multiplier: int = 5
    passive: bool = False
    ttl: int = REQUIRED_TTL
    max_hops: int = 0

    @property
    def family(self) -> int:
        return 6 if ":" in self.neighbor else 4

    @property
    def min_ttl(self) -> int:
        return 0 if self.max_hops >= 255 or self.max_hops < 0 else max(0, self.ttl - self.max_hops)


@dataclass(frozen=True)
class SendControl:
    """Send ``packet`` to ``neighbor`` (UDP 3784) from ``source`` (None: the kernel's choice)."""

    session: str
    neighbor: str
    source: str | None
    packet: ControlPacket
    at: float


@dataclass(frozen=True)
class SessionChanged:
    """The local session state changed; ``reason`` in operator words."""

    session: str
    neighbor: str
    old: SessionState
    new: SessionState
    diag: int
    reason: str
    at: float
    detection_time: float | None = None

    @property
    def up(self) -> bool:
        return self.new is SessionState.UP

    def describe(self) -> str:
        """e.g. ``BFD to 192.168.231.12 down: control detection time expired, 150 ms``."""
        word = {SessionState.UP: "up", SessionState.DOWN: "down", SessionState.INIT: "init",
                SessionState.ADMIN_DOWN: "admin down"}[self.new]
        return f"BFD to {self.neighbor} {word}: {self.reason}"


@dataclass
class SessionCounters:
    """Per-session packet and event counters."""

    tx: int = 0
    rx: int = 0
    polls_sent: int = 0
    finals_sent: int = 0
    polls_completed: int = 0
    up: int = 0
    down: int = 0
    detect_expired: int = 0
    drops: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"tx": self.tx, "rx": self.rx, "polls_sent": self.polls_sent, "finals_sent": self.finals_sent,
                "polls_completed": self.polls_completed, "up": self.up, "down": self.down,
                "detect_expired": self.detect_expired, "drops_by_reason": dict(self.drops)}


class Session:
    """One BFD session (pure; see the module docstring).

    ``random`` returns floats in [0, 1) (jitter); ``local_discr`` is our
    non-zero My Discriminator (the node picks unique ones).
    """

    def __init__(self, spec: SessionSpec, local_discr: int, random: Callable[[], float] = _random.random):
        if not 0 < local_discr <= 0xFFFFFFFF:
            raise ValueError("the local discriminator must be a non-zero 32-bit number")
        self.spec = spec
        self.name = spec.name
        self.random = random
        self.local_discr = local_discr
        self.state = SessionState.DOWN
        self.diag = Diag.NONE
        self.remote_discr = 0
        self.remote_state = SessionState.DOWN
        self.remote_demand = False
        self.remote_min_rx = INITIAL_REMOTE_MIN_RX
        self.remote_desired_tx = 0.0
        self.remote_mult = 0
        self.desired_tx = self._slow()
        self.required_rx = spec.min_rx
        self._tx_applied = self.desired_tx  # the Desired Min TX our schedule uses (lags during a Poll)
        self._rx_applied = self.required_rx  # the Required Min RX detection uses (lags during a Poll)
        self.polling = False
        self.counters = SessionCounters()
        self.last_rx: float | None = None
        self.last_change: SessionChanged | None = None
        self._started = False
        self._tx_at: float | None = None
        self._detect_at: float | None = None
        self._actions: list = []

    # -- public API ------------------------------------------------------
    def start(self, now: float) -> None:
        """Begin: Down, sending at the slow rate (a passive session waits to hear the remote)."""
        if self._started:
            return
        self._started = True
        if self._may_transmit():
            self._send(now)
            self._schedule_tx(now)

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` must next be called (None: no timer)."""
        times = [t for t in (self._tx_at, self._detect_at) if t is not None]
        return min(times) if times else None

    def handle_timer(self, now: float) -> None:
        """Run the timers due at ``now`` (calling early is harmless)."""
        if self._detect_at is not None and now >= self._detect_at:
            self._detect_at = None
            self.counters.detect_expired += 1
            dt = self.detection_time()
            self.remote_discr = 0
            self.remote_state = SessionState.DOWN
            self.remote_min_rx = INITIAL_REMOTE_MIN_RX
            self.remote_demand = False
            if self.state in (SessionState.INIT, SessionState.UP):
                self._change(SessionState.DOWN, now, Diag.DETECT_EXPIRED,
                             f"{Diag.DETECT_EXPIRED.text}, {ms(dt)}" if dt else Diag.DETECT_EXPIRED.text)
                self._send(now)
            self._schedule_tx(now)
        if self._tx_at is not None and now >= self._tx_at:
            self._send(now)
            self._schedule_tx(now)

    def handle_packet(self, p: ControlPacket, now: float) -> None:
        """A packet that :func:`packet.validate` and the node's demultiplexing accepted (6.8.6)."""
        self.counters.rx += 1
        self.last_rx = now
        heard_before = self.remote_discr != 0
        self.remote_discr = p.my_discr
        self.remote_state = p.state
        self.remote_demand = p.demand
        old_min_rx = self.remote_min_rx
        self.remote_min_rx = p.required_min_rx
        self.remote_desired_tx = p.desired_min_tx
        self.remote_mult = p.detect_mult
        if p.final and self.polling:
            self._end_poll()
        if self.state is SessionState.ADMIN_DOWN:
            self.counters.drops["local-admin-down"] = self.counters.drops.get("local-admin-down", 0) + 1
            return
        self._detect_at = now + self.detection_time()
        before = self.state
        sent = self.counters.tx
        if p.state is SessionState.ADMIN_DOWN:
            if self.state is not SessionState.DOWN:
                self._change(SessionState.DOWN, now, Diag.NEIGHBOR_DOWN, "neighbor signaled session down "
                                                                         "(administratively down)")
        elif self.state is SessionState.DOWN:
            if p.state is SessionState.DOWN:
                self._change(SessionState.INIT, now, Diag.NONE, "neighbor is Down, three-way handshake started")
            elif p.state is SessionState.INIT:
                self._change(SessionState.UP, now, Diag.NONE, "neighbor is Init")
        elif self.state is SessionState.INIT:
            if p.state in (SessionState.INIT, SessionState.UP):
                self._change(SessionState.UP, now, Diag.NONE, f"neighbor is {p.state}")
        elif p.state is SessionState.DOWN:
            self._change(SessionState.DOWN, now, Diag.NEIGHBOR_DOWN,
                         f"{Diag.NEIGHBOR_DOWN.text} (remote diagnostic: {diag_text(p.diag)})")
        if p.poll:
            self._send(now, final=True)
        if self.state is not before and self.counters.tx == sent:
            self._send(now)  # announce the new state at once
        if self.state is not before or not heard_before or self._tx_at is None:
            self._schedule_tx(now)
        elif p.required_min_rx != old_min_rx and self._tx_at is not None:
            # The remote may now want packets sooner (or later): follow its new interval.
            self._schedule_tx(now)

    def admin_down(self, now: float) -> None:
        """Operator: AdminDown (diagnostic 7); the remote is told, detection stops."""
        if self.state is SessionState.ADMIN_DOWN:
            return
        self._detect_at = None
        self._change(SessionState.ADMIN_DOWN, now, Diag.ADMIN_DOWN, Diag.ADMIN_DOWN.text)
        self._send(now)
        self._schedule_tx(now)

    def admin_up(self, now: float) -> None:
        """Operator: leave AdminDown for Down (the handshake starts again)."""
        if self.state is not SessionState.ADMIN_DOWN:
            return
        self._change(SessionState.DOWN, now, Diag.NONE, "administratively enabled")
        self._send(now)
        self._schedule_tx(now)

    def set_timers(self, now: float, *, min_tx: float | None = None, min_rx: float | None = None,
                   multiplier: int | None = None) -> None:
        """Change the configured timers of a running session (6.8.3, Poll Sequence when Up)."""
        import dataclasses

        changes = {k: v for k, v in (("min_tx", min_tx), ("min_rx", min_rx), ("multiplier", multiplier))
                   if v is not None and getattr(self.spec, k) != v}
        if not changes:
            return
        self.spec = dataclasses.replace(self.spec, **changes)
        if self.state is not SessionState.UP:
            self.required_rx = self._rx_applied = self.spec.min_rx
            return
        self._retime(now, self.spec.min_tx, self.spec.min_rx)

    def detection_time(self) -> float:
        """Remote Detect Mult x max(our Required Min RX, its Desired Min TX); 0 before any packet."""
        return self.remote_mult * max(self._rx_applied, self.remote_desired_tx)

    def tx_interval(self) -> float:
        """The un-jittered transmission interval now in use."""
        return max(self._tx_applied, self.remote_min_rx)

    def pop_actions(self) -> list:
        """Return and clear the queued :class:`SendControl` / :class:`SessionChanged` actions."""
        out, self._actions = self._actions, []
        return out

    def snapshot(self) -> dict:
        """A JSON-able view: states, diagnostic, negotiated intervals, counters."""
        return {
            "name": self.name,
            "neighbor": self.spec.neighbor,
            "source": self.spec.source,
            "state": str(self.state),
            "remote_state": str(self.remote_state),
            "diag": int(self.diag),
            "diag_text": Diag(self.diag).text,
            "local_discriminator": self.local_discr,
            "remote_discriminator": self.remote_discr,
            "desired_min_tx_ms": _ms3(self.desired_tx),
            "required_min_rx_ms": _ms3(self.required_rx),
            "remote_desired_min_tx_ms": _ms3(self.remote_desired_tx),
            "remote_required_min_rx_ms": _ms3(self.remote_min_rx),
            "tx_interval_ms": _ms3(self.tx_interval()),
            "multiplier": self.spec.multiplier,
            "remote_multiplier": self.remote_mult,
            "detection_time_ms": _ms3(self.detection_time()),
            "passive": self.spec.passive,
            "polling": self.polling,
            "last_change": None if self.last_change is None else {
                "at": self.last_change.at, "from": str(self.last_change.old), "to": str(self.last_change.new),
                "reason": self.last_change.reason},
            "counters": self.counters.as_dict(),
        }

    # -- internals -------------------------------------------------------
    def _slow(self) -> float:
        return max(self.spec.idle_tx, SLOW_TX)

    def _may_transmit(self) -> bool:
        if self.remote_min_rx <= 0:
            return False  # 6.8.7: the remote asked for no packets
        if self.spec.passive and self.remote_discr == 0:
            return False
        if (self.remote_demand and self.state is SessionState.UP and self.remote_state is SessionState.UP
                and not self.polling):
            return False  # 6.6: the remote is in Demand mode
        return True

    def _schedule_tx(self, now: float) -> None:
        if not self._may_transmit():
            self._tx_at = None
            return
        top = 0.9 if self.spec.multiplier == 1 else 1.0
        factor = 0.75 + (top - 0.75) * min(max(self.random(), 0.0), 1.0)
        self._tx_at = now + self.tx_interval() * factor

    def _send(self, now: float, final: bool = False) -> None:
        poll = self.polling and not final
        p = ControlPacket(state=self.state, my_discr=self.local_discr, your_discr=self.remote_discr,
                          diag=int(self.diag), detect_mult=self.spec.multiplier, desired_min_tx=self.desired_tx,
                          required_min_rx=self.required_rx, poll=poll, final=final)
        self.counters.tx += 1
        if poll:
            self.counters.polls_sent += 1
        if final:
            self.counters.finals_sent += 1
        self._actions.append(SendControl(self.name, self.spec.neighbor, self.spec.source, p, now))

    def _retime(self, now: float, tx: float, rx: float) -> None:
        """Advertise new intervals while Up, by a Poll Sequence (6.8.3)."""
        if tx == self.desired_tx and rx == self.required_rx:
            return
        if tx < self._tx_applied:
            self._tx_applied = tx  # a faster rate may start at once
        if rx > self._rx_applied:
            self._rx_applied = rx  # a longer detection time may start at once
        self.desired_tx, self.required_rx = tx, rx
        self.polling = True
        self._send(now)
        self._schedule_tx(now)

    def _end_poll(self) -> None:
        self.polling = False
        self.counters.polls_completed += 1
        self._tx_applied = self.desired_tx
        self._rx_applied = self.required_rx

    def _change(self, new: SessionState, now: float, diag: Diag, reason: str) -> None:
        old = self.state
        self.state = new
        self.diag = diag
        change = SessionChanged(self.name, self.spec.neighbor, old, new, int(diag), reason, now,
                                self.detection_time() or None)
        self.last_change = change
        self._actions.append(change)  # before any packet the same input causes
        if new is SessionState.UP:
            self.counters.up += 1
            self._retime(now, self.spec.min_tx, self.spec.min_rx)
        elif old is SessionState.UP:
            self.counters.down += 1
            self.polling = False
            self.desired_tx = self._tx_applied = self._slow()
            self.required_rx = self._rx_applied = self.spec.min_rx

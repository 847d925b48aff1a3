"""The relaying thread's event loop: asyncio on the relay's own epoll, relay events first.

Before, the relay's epoll descriptor was watched by a uvloop loop: every
wake-up cost two ``epoll_wait`` calls (the loop's, then the relay's with
timeout 0), a nested-epoll wake-up in the kernel (the socket wakes the relay's
epoll, which wakes the loop's) and the loop library's own iteration. Here the
relay's epoll *is* the loop's selector:

* :class:`RelaySelector` is an ``EpollSelector`` whose ``select`` hands events of
  descriptors that asyncio did not register (the relay's sockets, registered
  directly on the same epoll) straight to the relay, and returns to the loop
  only when one of the loop's own descriptors is ready (its self-pipe:
  ``call_soon_threadsafe``, a UDP socket, ...) or its timeout is up. Relaying
  then never leaves ``select``: one ``epoll_wait`` per wake-up and no Python
  event-loop iteration in between.
* Everything else (listener set-up, UDP flows, counters, shutdown) stays
  ordinary asyncio on the same thread, so the proxy's control code does not
  change and needs no locks.
"""

from __future__ import annotations

import asyncio
import math
import selectors
import time
from select import EPOLLIN, EPOLLOUT

#: events taken from the kernel per epoll_wait
MAX_EVENTS = 256


class RelaySelector(selectors.EpollSelector):
    """An epoll selector shared with a relay (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__()
        #: ``dispatch([(fd, events), ...])`` of the relay whose sockets share this epoll (set by the relay)
        self.dispatch = None

    @property
    def epoll(self):
        return self._selector

    def select(self, timeout=None):
        poll, keys, dispatch = self._selector.poll, self._fd_to_key, self.dispatch
        # asyncio asks with timeout None (wait), 0 (poll) or seconds until its next timer
        deadline = None if timeout is None or timeout <= 0 else time.monotonic() + timeout
        wait = -1 if timeout is None else (0 if timeout <= 0 else math.ceil(timeout * 1e3) * 1e-3)
        while True:
            try:
                events = poll(wait, MAX_EVENTS)
            except InterruptedError:
                return []
            ready = []
            relayed = []
            for fd, ev in events:
                key = keys.get(fd)
                if key is None:
                    relayed.append((fd, ev))
                    continue
                mask = 0
                if ev & ~EPOLLOUT:  # EPOLLIN, EPOLLERR, EPOLLHUP...: readable (as EpollSelector)
                    mask |= selectors.EVENT_READ
                if ev & ~EPOLLIN:  # EPOLLOUT, EPOLLERR, EPOLLHUP...: writable
                    mask |= selectors.EVENT_WRITE
                ready.append((key, mask & key.events))
            if relayed and dispatch is not None:
                dispatch(relayed)
            if ready or wait == 0 or not relayed:
                return ready  # the loop's own work, a poll, or the timeout: back to asyncio
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return ready
                wait = math.ceil(left * 1e3) * 1e-3


def new_loop() -> asyncio.AbstractEventLoop:
    """An asyncio loop whose selector a :class:`~.proxy_relay.Relay` can share."""
    selector = RelaySelector()
    loop = asyncio.SelectorEventLoop(selector)
    loop.relay_selector = selector
    return loop


def selector_of(loop: asyncio.AbstractEventLoop) -> RelaySelector | None:
    """The :class:`RelaySelector` of a loop made by :func:`new_loop`; None for any other loop."""
    return getattr(loop, "relay_selector", None)

"""Watchers for track_interface and track_file (vrrp_track_process: :mod:`chimeha.runtime.proc_monitor`).

Each watcher measures one raw fact and calls ``on_change(name, value)`` when
it changes (and once with the initial value); weights and FAULT decisions are
the pure core's business.

* Interfaces: event driven. A NETLINK_ROUTE socket subscribed to link events
  wakes us; the state is then read with SIOCGIFFLAGS. keepalived treats an
  interface as up when it is both administratively up and running (carrier).
* Files: polled (stat + read) every ``poll`` seconds; the value is the leading
  integer of the file, 0 when missing or not a number (keepalived's reading).
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import socket
import struct

log = logging.getLogger("chimeha.runtime.trackers")

SIOCGIFFLAGS = 0x8913
IFF_UP = 0x1
IFF_RUNNING = 0x40
RTMGRP_LINK = 0x1
NETLINK_ROUTE = 0


def interface_up(ifname: str) -> bool:
    """True when ``ifname`` exists, is up and has carrier."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            res = fcntl.ioctl(s.fileno(), SIOCGIFFLAGS, struct.pack("16sH14x", ifname.encode()[:15], 0))
        except OSError:
            return False
    flags = struct.unpack("16sH14x", res)[1]
    return bool(flags & IFF_UP) and bool(flags & IFF_RUNNING)


class InterfaceWatcher:
    """Reports up/down of a set of interfaces, woken by netlink link events."""

    def __init__(self, ifnames, on_change):
        self.state: dict[str, bool] = {name: interface_up(name) for name in ifnames}
        self.on_change = on_change
        self._sock: socket.socket | None = None
        self._poll_task: asyncio.Task | None = None

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE)
        sock.bind((0, RTMGRP_LINK))
        sock.setblocking(False)
        self._sock = sock
        loop.add_reader(sock.fileno(), self._readable)
        # A slow safety net in case a netlink overrun ever loses an event.
        self._poll_task = loop.create_task(self._poll())
        for name, up in self.state.items():
            self.on_change(name, up)

    def _readable(self) -> None:
        if self._sock is None:
            return
        try:
            while self._sock is not None:
                self._sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:  # ENOBUFS: we missed events; re-reading the flags is enough
            pass
        self.check()

    def check(self) -> None:
        for name, old in list(self.state.items()):
            up = interface_up(name)
            if up != old:
                self.state[name] = up
                log.info("interface %s is %s", name, "up" if up else "down")
                self.on_change(name, up)

    async def _poll(self) -> None:
        while self._sock is not None:
            await asyncio.sleep(2.0)
            if self._sock is not None:
                self.check()

    def stop(self) -> None:
        if self._sock is not None:
            asyncio.get_running_loop().remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None
        if self._poll_task:
            self._poll_task.cancel()
            self._poll_task = None


def read_track_file(path: str) -> int:
    """The integer a track_file holds; 0 if missing, unreadable or not a number."""
    try:
        with open(path, "rb") as fh:
            text = fh.read(64).decode("ascii", "replace").split()
    except OSError:
        return 0
    if not text:
        return 0
    word = text[0]
    sign = -1 if word.startswith("-") else 1
    digits = word.lstrip("+-")
    num = ""
    for ch in digits:
        if not ch.isdigit():
            break
        num += ch
    return sign * int(num) if num else 0


class _Poller:
    def __init__(self, poll: float):
        self.poll = poll
        self._stopped = False
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._stopped = False
        self.check()
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def _loop(self) -> None:
        # The flag ends the loop even if a cancellation were lost: stop() must always win.
        while not self._stopped:
            await asyncio.sleep(self.poll)
            if self._stopped:
                break
            try:
                self.check()
            except Exception:
                log.exception("tracker poll failed")

    def stop(self) -> None:
        self._stopped = True
        if self._task:
            self._task.cancel()
            self._task = None

    def check(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError


class FileWatcher(_Poller):
    """Reports the integer value of each tracked file when it changes."""

    def __init__(self, files: dict[str, str], on_change, poll: float = 0.5):
        super().__init__(poll)
        self.files = dict(files)  # name -> path
        self.values: dict[str, int | None] = {name: None for name in files}
        self.on_change = on_change

    def check(self) -> None:
        for name, path in self.files.items():
            value = read_track_file(path)
            if value != self.values[name]:
                self.values[name] = value
                self.on_change(name, value)


def init_track_file(path: str, value: int, overwrite: bool) -> None:
    """keepalived's ``init_file``: write ``value`` if the file is missing (or always)."""
    if overwrite or not os.path.exists(path):
        with open(path, "w") as fh:
            fh.write(f"{value}\n")

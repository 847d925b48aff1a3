"""vrrp_track_process on the event loop: one monitor for every tracked process.

Theory of operation
-------------------
The counting and the delays are the pure :class:`chimeha.track.process.ProcessQuorum`;
the matching is :class:`chimeha.track.process.ProcessRule`. This adapter only
feeds them facts, with ``loop.time()`` as the clock:

* **Exits** are seen at once: every counted PID has a pidfd on the loop
  (:class:`chimeha.runtime.pidfd.ExitWatcher`, the code fast script
  detection uses too).
* **Appearances** (fork, exec, a name change) come from the kernel's process
  events connector (``NETLINK_CONNECTOR``, ``CN_IDX_PROC``), as keepalived
  does, when it answers: root, in the initial network and PID namespaces. A
  fork of a counted process counts the child (``fork_delay`` applies); an exec
  or a name change re-reads that one PID.
* Otherwise (a node in its own PID namespace, a container, no privilege) **one
  /proc scan**, shared by every ``vrrp_track_process`` of the config, runs every
  ``scan_interval`` seconds. A new PID whose parent is counted by the same
  track is taken as a fork (``fork_delay``); a counted PID that no longer
  matches but still runs has exec'd into something else.

Zombies never count (keepalived skips them too). The connector's listen
request is acknowledged by the kernel; until that acknowledgement arrives,
and whenever events are lost (ENOBUFS), the scan runs and resynchronises.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
import struct
from typing import Callable

from chimeha.runtime.pidfd import ExitWatcher
from chimeha.track.process import NO_MAX, ProcessQuorum, ProcessRule

log = logging.getLogger("chimeha.runtime.proc_monitor")

#: Seconds between /proc scans when the kernel's process events are not available.
SCAN_INTERVAL = 0.5

NETLINK_CONNECTOR = 11
CN_IDX_PROC = 1
CN_VAL_PROC = 1
PROC_CN_MCAST_LISTEN = 1
PROC_CN_MCAST_IGNORE = 2
EV_NONE, EV_FORK, EV_EXEC, EV_COMM = 0, 0x1, 0x2, 0x200
_NLMSG = struct.Struct("=IHHII")
_CN = struct.Struct("=IIIIHH")
_EV = struct.Struct("=IIQ")
_EV_AT = _NLMSG.size + _CN.size  # 36: struct proc_event
_DATA_AT = _EV_AT + _EV.size  # 52: its event_data union


def parse_proc_event(data: bytes) -> tuple[int, tuple] | None:
    """``(what, fields)`` of one proc connector datagram, or None when it is not one.

    fields: FORK ``(parent_pid, parent_tgid, child_pid, child_tgid)``, EXEC
    ``(pid, tgid)``, COMM ``(pid, tgid, comm)``, NONE ``(err,)`` (the
    acknowledgement of the listen request); other events ``()``.
    """
    if len(data) < _DATA_AT:
        return None
    _len, _type, _flags, _seq, _port = _NLMSG.unpack_from(data)
    idx, val, _cseq, _ack, _clen, _cflags = _CN.unpack_from(data, _NLMSG.size)
    if idx != CN_IDX_PROC or val != CN_VAL_PROC:
        return None
    what, _cpu, _ts = _EV.unpack_from(data, _EV_AT)
    body = data[_DATA_AT:]
    try:
        if what == EV_NONE:
            return what, struct.unpack_from("=I", body)
        if what == EV_FORK:
            return what, struct.unpack_from("=4i", body)
        if what == EV_EXEC:
            return what, struct.unpack_from("=2i", body)
        if what == EV_COMM:
            pid, tgid = struct.unpack_from("=2i", body)
            return what, (pid, tgid, body[8:24].split(b"\0", 1)[0].decode(errors="surrogateescape"))
    except struct.error:
        return None
    return what, ()


def listen_request(op: int = PROC_CN_MCAST_LISTEN) -> bytes:
    """The netlink datagram that subscribes to (or, IGNORE, leaves) the process events."""
    payload = struct.pack("=I", op)
    cn = _CN.pack(CN_IDX_PROC, CN_VAL_PROC, 0, 0, len(payload), 0) + payload
    return _NLMSG.pack(_NLMSG.size + len(cn), 3, 0, 0, 0) + cn  # NLMSG_DONE


def _be(v: int) -> int:
    """``v`` as classic BPF loads a host-order 32-bit field (network order)."""
    return int.from_bytes(struct.pack("=I", v), "big")


def event_filter() -> bytes:
    """A classic BPF program: keep only the acknowledgement, exec, comm and process (not thread) forks.

    The kernel then never wakes us for exits (pidfds tell), thread creation or
    uid/gid/sid changes, which are most of a busy machine's events.
    """
    ld_w, ldx_m, st, jeq_k, jeq_x, ret = 0x20, 0x61, 0x02, 0x15, 0x1D, 0x06
    fork_at = _DATA_AT + 8  # child_pid, child_tgid

    def ins(code, jt, jf, k):
        return struct.pack("=HBBI", code, jt, jf, k)

    prog = [
        ins(ld_w, 0, 0, _EV_AT),            # 0: A = what
        ins(jeq_k, 5, 0, _be(EV_FORK)),     # 1: fork -> 7
        ins(jeq_k, 3, 0, _be(EV_EXEC)),     # 2: exec -> keep
        ins(jeq_k, 2, 0, _be(EV_COMM)),     # 3: comm -> keep
        ins(jeq_k, 1, 0, _be(EV_NONE)),     # 4: ack -> keep
        ins(ret, 0, 0, 0),                  # 5: drop
        ins(ret, 0, 0, 0xFFFFFFFF),         # 6: keep
        ins(ld_w, 0, 0, fork_at),           # 7: A = child_pid
        ins(st, 0, 0, 0),                   # 8: M[0] = A
        ins(ld_w, 0, 0, fork_at + 4),       # 9: A = child_tgid
        ins(ldx_m, 0, 0, 0),                # 10: X = M[0]
        ins(jeq_x, 0, 1, 0),                # 11: a process -> 12, a thread -> 13
        ins(ret, 0, 0, 0xFFFFFFFF),         # 12: keep
        ins(ret, 0, 0, 0),                  # 13: drop
    ]
    return b"".join(prog)


SO_ATTACH_FILTER = 26


def _attach_filter(sock: socket.socket) -> None:
    import ctypes

    code = event_filter()
    buf = ctypes.create_string_buffer(code, len(code))
    fprog = struct.pack("HL", len(code) // 8, ctypes.addressof(buf))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


def _list_pids(proc: str) -> list[str]:
    return os.listdir(proc)


def read_process(proc: str, pid: int | str, cmdline: bool) -> tuple[str, bytes, int] | None:
    """``(comm, cmdline, ppid)`` of a live (not zombie) process, or None."""
    try:
        with open(f"{proc}/{pid}/stat", "rb") as fh:
            stat = fh.read()
        cmd = b""
        if cmdline:
            with open(f"{proc}/{pid}/cmdline", "rb") as fh:
                cmd = fh.read()
    except OSError:
        return None
    lo, hi = stat.find(b"("), stat.rfind(b")")
    if lo < 0 or hi < lo:
        return None
    rest = stat[hi + 2:].split(b" ", 2)
    if len(rest) < 2 or rest[0] in (b"Z", b"X"):
        return None
    try:
        ppid = int(rest[1])
    except ValueError:
        return None
    return stat[lo + 1:hi].decode(errors="surrogateescape"), cmd, ppid


class _Track:
    def __init__(self, spec):
        self.name = spec.name
        self.rule = ProcessRule.from_config(tuple(spec.process), spec.param_match, spec.full_command)
        qmax = NO_MAX if spec.quorum_max is None else spec.quorum_max
        fork = spec.fork_delay if spec.fork_delay is not None else spec.delay
        term = spec.terminate_delay if spec.terminate_delay is not None else spec.delay
        self.quorum = ProcessQuorum(quorum=spec.quorum, quorum_max=qmax, fork_delay=fork or 0.0,
                                    terminate_delay=term or 0.0)


class ProcessMonitor:
    """Reports ``on_change(name, ok, detail)`` for every ``vrrp_track_process`` in ``specs``.

    ``events``: ``"auto"`` (the proc connector when the kernel answers, else
    the scan), ``"scan"`` (never the connector). ``scans`` counts /proc scans.
    """

    def __init__(self, specs: dict, on_change: Callable[[str, bool, str], None], *,
                 scan_interval: float = SCAN_INTERVAL, events: str = "auto", proc: str = "/proc"):
        self.tracks = {name: _Track(spec) for name, spec in specs.items()}
        self.on_change = on_change
        self.scan_interval = scan_interval
        self.events = events
        self.proc = proc
        self.scans = 0
        self.connector = False  # True once the kernel acknowledged the listen request
        self.pidfds = True  # False when the kernel has no pidfd_open: exits are then found by the scan
        self._ppid: dict[int, int] = {}
        self._alive: set[int] = set()
        self._need_cmdline = any(t.rule.full_command for t in self.tracks.values())
        self._by_comm: dict[str, list[_Track]] = {}
        self._by_argv0: dict[str, list[_Track]] = {}
        for t in self.tracks.values():
            (self._by_argv0 if t.rule.full_command else self._by_comm).setdefault(t.rule.name, []).append(t)
        self._exits = ExitWatcher(self._exited)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sock: socket.socket | None = None
        self._scan_task: asyncio.Task | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._stopped = False

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopped = False
        if self.events == "auto":
            self._open_connector()
        now = self._loop.time()
        found = self._scan() or {}
        for t in self.tracks.values():
            pids = {pid for pid in found.get(t.name, ()) if self._watch(pid)}
            t.quorum.start(pids, now)
            self._report(t)
        self._scan_task = self._loop.create_task(self._scan_loop())

    def stop(self) -> None:
        self._stopped = True
        if self._scan_task is not None:
            self._scan_task.cancel()
            self._scan_task = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._close_connector()
        self._exits.close()

    def _close_connector(self) -> None:
        if self._sock is not None:
            self._loop.remove_reader(self._sock.fileno())
            try:
                self._sock.send(listen_request(PROC_CN_MCAST_IGNORE))
            except OSError:
                pass
            self._sock.close()
            self._sock = None

    def status(self) -> dict[str, dict]:
        """Per track: up, the counted PIDs, a pending delay; and how appearances are found."""
        return {name: {"up": t.quorum.up, "pids": sorted(t.quorum.pids), "pending": t.quorum.pending(),
                       "source": "proc-connector" if self.connector else "scan"}
                for name, t in self.tracks.items()}

    # ------------------------------------------------------------------ the facts
    def _matching(self, comm: str, cmdline: bytes) -> list[_Track]:
        out = [t for t in self._by_comm.get(comm, ()) if t.rule.matches(comm, cmdline)]
        if self._by_argv0:
            argv0 = cmdline.partition(b"\0")[0].decode(errors="surrogateescape")
            out += [t for t in self._by_argv0.get(argv0, ()) if t.rule.matches(comm, cmdline)]
        return out

    def _scan(self) -> dict[str, set[int]] | None:
        """One pass over /proc for every track: name -> matching live PIDs (also keeps the parents).

        None when /proc cannot be listed (then nothing is concluded from it).
        """
        self.scans += 1
        found: dict[str, set[int]] = {}
        try:
            entries = _list_pids(self.proc)
        except OSError as exc:
            log.warning("vrrp_track_process: cannot list %s: %s", self.proc, exc)
            return None
        self._ppid, self._alive = {}, set()
        for entry in entries:
            if not entry.isdigit():
                continue
            info = read_process(self.proc, entry, self._need_cmdline)
            if info is None:
                continue
            comm, cmd, ppid = info
            pid = int(entry)
            self._alive.add(pid)
            for t in self._matching(comm, cmd):
                found.setdefault(t.name, set()).add(pid)
                self._ppid[pid] = ppid
        return found

    def _watch(self, pid: int) -> bool:
        """A pidfd for ``pid``; False if it is gone. Without pidfds the scan notices exits instead."""
        try:
            return self._exits.watch(pid)
        except OSError as exc:
            if self.pidfds:
                log.warning("vrrp_track_process: pidfd_open: %s; exits are found by the /proc scan", exc)
            self.pidfds = False
            return True

    def _counted(self, pid: int) -> bool:
        return any(pid in t.quorum.pids for t in self.tracks.values())

    def _exited(self, pid: int) -> None:
        now = self._loop.time()
        for t in self.tracks.values():
            self._apply(t, t.quorum.remove(pid, now, exited=True))
        self._rearm()

    def _recheck(self, pid: int, comm_only: str | None = None) -> None:
        """An exec (or, ``comm_only``, a name change) of ``pid``: does it match now?"""
        if comm_only is not None:
            tracks = [t for t in self.tracks.values() if not t.rule.full_command]
            hits = {t.name for t in self._by_comm.get(comm_only, ()) if t.rule.matches(comm_only, b"")}
        else:
            tracks = list(self.tracks.values())
            info = read_process(self.proc, pid, self._need_cmdline)
            hits = {t.name for t in self._matching(info[0], info[1])} if info else set()
        if not hits and not any(pid in t.quorum.pids for t in tracks):
            return
        now = self._loop.time()
        if hits and not self._watch(pid):
            hits = set()  # gone already
        for t in tracks:
            if t.name in hits:
                self._apply(t, t.quorum.add(pid, now, forked=False))
            else:
                self._apply(t, t.quorum.remove(pid, now, exited=False))
        if not self._counted(pid):
            self._exits.unwatch(pid)
        self._rearm()

    def _forked(self, parent: int, child: int) -> None:
        parents = [t for t in self.tracks.values() if parent in t.quorum.pids]
        if not parents or not self._watch(child):
            return
        now = self._loop.time()
        for t in parents:
            self._apply(t, t.quorum.add(child, now, forked=True))
        self._rearm()

    def _rescan(self, resync: bool = False) -> None:
        """Compare one scan with what is counted (``resync``: after lost events)."""
        found = self._scan()
        if found is None:
            return
        now = self._loop.time()
        for t in self.tracks.values():
            cur = {pid for pid in found.get(t.name, set()) if self._watch(pid)}
            if resync:
                self._apply(t, t.quorum.resync(cur, now))
                continue
            for pid in sorted(cur - t.quorum.pids):
                forked = self._ppid.get(pid) in t.quorum.pids
                self._apply(t, t.quorum.add(pid, now, forked=forked))
            for pid in sorted(t.quorum.pids - cur):
                exited = pid not in self._alive  # a live one no longer matches: exec or new name
                self._apply(t, t.quorum.remove(pid, now, exited=exited))
        for pid in self._exits.pids:
            if not self._counted(pid):
                self._exits.unwatch(pid)
        self._rearm()

    # ------------------------------------------------------------------ reporting and the timer
    def _apply(self, t: _Track, change: bool | None) -> None:
        if change is not None and not self._stopped:
            self._report(t)

    def _report(self, t: _Track) -> None:
        q = t.quorum
        n = q.count
        bounds = f"{q.quorum}" if q.quorum_max == NO_MAX else f"{q.quorum}..{q.quorum_max}"
        detail = f"{'recovered' if q.up else 'failed'} ({n} process{'' if n == 1 else 'es'}, quorum {bounds})"
        log.info("vrrp_track_process %s is %s: %d matching process(es)", t.name, "up" if q.up else "down", n)
        self.on_change(t.name, q.up, detail)

    def _rearm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        due = [d for d in (t.quorum.next_deadline() for t in self.tracks.values()) if d is not None]
        if due and not self._stopped:
            self._timer = self._loop.call_at(min(due), self._fire)

    def _fire(self) -> None:
        self._timer = None
        now = self._loop.time()
        for t in self.tracks.values():
            self._apply(t, t.quorum.handle_timer(now))
        self._rearm()

    # ------------------------------------------------------------------ appearances
    async def _scan_loop(self) -> None:
        while not self._stopped:
            await asyncio.sleep(self.scan_interval)
            if self._sock is not None and not self.connector:
                self._close_connector()  # no acknowledgement: another PID namespace; the scan it is
            if self._stopped or (self.connector and self.pidfds):
                continue
            try:
                self._rescan()
            except Exception:
                log.exception("vrrp_track_process scan failed")

    def _open_connector(self) -> None:
        try:
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK
                                 | socket.SOCK_CLOEXEC, NETLINK_CONNECTOR)
        except OSError as exc:  # EPROTONOSUPPORT outside the initial network namespace
            log.debug("process events connector unavailable: %s; scanning /proc", exc)
            return
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            try:
                _attach_filter(sock)
            except OSError as exc:  # only a cost: every event then reaches us
                log.debug("process events: no socket filter: %s", exc)
            sock.bind((0, CN_IDX_PROC))
            sock.send(listen_request())
        except OSError as exc:
            log.debug("process events connector refused: %s; scanning /proc", exc)
            sock.close()
            return
        self._sock = sock
        self._loop.add_reader(sock.fileno(), self._readable)

    def _readable(self) -> None:
        lost = False
        while self._sock is not None:
            try:
                data, addr = self._sock.recvfrom(4096)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:  # events were lost: resynchronise below
                    lost = True
                    continue
                log.warning("vrrp_track_process: process events socket: %s", exc)
                break
            if addr[0] != 0:
                continue  # not from the kernel
            ev = parse_proc_event(data)
            if ev is None:
                continue
            try:
                self._event(*ev)
            except Exception:
                log.exception("vrrp_track_process: handling a process event failed")
        if lost and self.connector:
            log.warning("vrrp_track_process: process events were lost; rescanning /proc")
            self._rescan(resync=True)

    def _event(self, what: int, f: tuple) -> None:
        if what == EV_NONE:
            if f and f[0] == 0 and not self.connector:
                self.connector = True
                log.info("vrrp_track_process: using the kernel's process events")
                self._rescan()  # what happened between the first scan and now
            elif f and f[0] != 0:
                log.info("process events connector: listen refused (errno %d); scanning /proc", f[0])
            return
        if not self.connector:
            return
        if what == EV_FORK and f[2] == f[3]:  # a process, not a thread
            self._forked(f[1], f[3])
        elif what == EV_EXEC and f[0] == f[1]:
            self._recheck(f[1])
        elif what == EV_COMM and f[0] == f[1]:
            self._recheck(f[1], comm_only=f[2])

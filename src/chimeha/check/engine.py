"""The shared probe engine: TCP_CHECK and plain HTTP_GET for many real servers at little CPU.

Theory of operation
-------------------
A per-checker asyncio task that awaits ``open_connection`` costs a task, a
future, a transport, a timer and several selector registrations per probe;
at 1,000 real servers probed every second that machinery, not the check,
was most of the daemon's CPU. One :class:`ProbeEngine` per event loop runs
all eligible checkers (see :func:`eligible`) instead:

* **One timer.** A job's next probe (from its pure
  :class:`~chimeha.check.schedule.CheckSchedule`) is an entry
  ``(when, seq, job, gen)`` in one heap; the deadline of an attempt in
  flight is appended to a FIFO per ``connect_timeout`` value (deadlines of
  one timeout come in order, so no heap is needed). The engine keeps a single
  asyncio timer, armed for the earliest entry rounded *up* to :data:`TICK`,
  so probes due within the same tick start in one batch; an entry whose
  ``gen`` is no longer the job's is stale (the attempt finished, the job was
  stopped) and is dropped.
* **One epoll.** Probes are raw non-blocking sockets registered once in the
  engine's own epoll object, whose descriptor is the only thing the asyncio
  loop watches. An attempt is: ``socket()``, ``connect_ex()``, one epoll
  registration; writable means connected (on ERR/HUP ``SO_ERROR`` says why
  not); HTTP_GET then sends its request bytes, built once per URL, and reads
  to EOF; ``close()`` also drops the registration. Loopback and LAN
  handshakes often complete inside ``connect()``, so after starting a batch
  the engine polls once more without waiting.
* **No per-probe objects** beyond the socket: the success result of a job is
  built once and reused.

Semantics are the checkers' own: ``connect_timeout`` bounds each attempt
(each URL's fetch for HTTP_GET), the schedule's retry / delay_before_retry /
warmup / alpha logic is unchanged, results carry the same operator sentences
as :func:`chimeha.check.dispatch.probe`, and HTTP status, regex and digest
are judged by :func:`chimeha.check.http.judge`. Anything else (SSL_GET,
MISC_CHECK, ...) runs as a per-checker task (:mod:`chimeha.check.runner`).
"""

from __future__ import annotations

import asyncio
import collections
import errno
import heapq
import itertools
import logging
import math
import select
import socket
from typing import Any, Callable

from chimeha.check import http as _http
from chimeha.check._net import describe_oserror, endpoint, family_of, fmt, new_socket
from chimeha.check.schedule import CheckSchedule, Transition
from chimeha.check.spec import CheckResult, Target, Timing, checker_kind
from chimeha.config.model import Checker, HttpUrl

log = logging.getLogger(__name__)

TICK = 0.005
"""Timer resolution (s): probes due within one tick start together, at most this late."""

_OUT, _IN = select.EPOLLOUT, select.EPOLLIN | select.EPOLLRDHUP
_ERR = select.EPOLLERR | select.EPOLLHUP
_CONNECTING, _SENDING, _READING = 1, 2, 3
_EINPROGRESS = errno.EINPROGRESS
_INFLIGHT_ERRNOS = frozenset((0, errno.EINPROGRESS, errno.EAGAIN))


def eligible(checker: Checker) -> bool:
    """Whether the engine runs ``checker``: TCP_CHECK, and HTTP_GET without TLS."""
    kind = checker_kind(checker)
    return kind == "TCP_CHECK" or kind == "HTTP_GET"


class _Url:
    __slots__ = ("url", "path", "request")

    def __init__(self, url: HttpUrl, path: str, request: bytes):
        self.url, self.path, self.request = url, path, request


class Job:
    """One checker in the engine: its schedule, address and the attempt in flight."""

    __slots__ = ("engine", "checker", "schedule", "report", "timeout", "gen", "sock", "fd", "state", "kind",
                 "addr", "family", "where", "ok_result", "urls", "url_i", "chunks", "size", "sent", "notes",
                 "last_result", "setup_error")

    def __init__(self, engine: "ProbeEngine", checker: Checker, target: Target, schedule: CheckSchedule,
                 timing: Timing, report: Callable[[Transition | None, CheckResult], Any]):
        self.engine = engine
        self.checker = checker
        self.schedule = schedule
        self.report = report
        self.timeout = timing.connect_timeout
        self.gen = 0  # bumped by every attempt start and end: older timer entries are stale
        self.sock: socket.socket | None = None
        self.fd = -1
        self.state = 0
        self.kind = checker_kind(checker)
        self.last_result: CheckResult | None = None
        self.setup_error: str | None = None
        self.urls: list[_Url] = []
        self.url_i = 0
        self.chunks: list[bytes] = []
        self.size = 0
        self.sent = 0
        self.notes: list[str] = []
        self.addr: tuple[str, int] = ("", 0)
        self.family = socket.AF_INET
        self.where = ""
        self.ok_result = CheckResult(True, "")
        try:
            host, port = endpoint(checker, target)
            self.family = family_of(host)
            self.addr, self.where = (host, port), fmt(host, port)
            if self.kind == "HTTP_GET":
                for url in getattr(checker, "urls", ()) or (HttpUrl(),):
                    path, _, request, _ = _http.prepare_url(checker, target, url)  # type: ignore[arg-type]
                    self.urls.append(_Url(url, path, request))
            else:
                self.ok_result = CheckResult(True, f"connected to {self.where}")
        except ValueError as exc:  # same sentence as dispatch.probe's
            self.setup_error = f"{self.kind}: {exc}"

    # --- attempts ------------------------------------------------------------

    def begin(self, now: float) -> None:
        """The schedule said a probe is due: start it."""
        self.schedule.probe_started(now)
        if self.setup_error is not None:
            self.finish(CheckResult(False, self.setup_error), now)
            return
        self.url_i = 0
        self.notes = []
        self.connect(now)

    def connect(self, now: float) -> None:
        self.gen += 1
        try:
            sock = new_socket(self.checker, self.family, socket.SOCK_STREAM)
        except OSError as exc:
            self.fail_os(exc, now)
            return
        err = sock.connect_ex(self.addr)
        if err not in _INFLIGHT_ERRNOS:
            sock.close()
            self.fail_os(OSError(err, ""), now)
            return
        self.sock, self.fd, self.state = sock, sock.fileno(), _CONNECTING
        self.engine.watch(self, _OUT, now + self.timeout)

    def close(self) -> None:
        if self.sock is not None:
            self.engine.forget(self.fd)
            self.sock.close()  # also drops the epoll registration
            self.sock, self.fd, self.state = None, -1, 0

    def on_event(self, events: int, now: float) -> None:
        sock = self.sock
        if sock is None:
            return
        if self.state == _CONNECTING:
            # Writable without ERR/HUP is a completed connect: SO_ERROR is asked only otherwise.
            err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) if events & _ERR else 0
            if err:
                self.fail_os(OSError(err, ""), now)
                return
            if not self.urls:  # TCP_CHECK: connected is all we wanted
                self.close()
                self.finish(self.ok_result, now)
                return
            self.state, self.sent, self.chunks, self.size = _SENDING, 0, [], 0
        if self.state == _SENDING:
            self.send(now)
        elif self.state == _READING:
            self.read(now)

    def send(self, now: float) -> None:
        request = self.urls[self.url_i].request
        try:
            self.sent += self.sock.send(request[self.sent:] if self.sent else request)  # type: ignore[union-attr]
        except BlockingIOError:
            return
        except OSError as exc:
            self.fail_os(exc, now)
            return
        if self.sent >= len(request):
            self.state = _READING
            self.engine.modify(self.fd, _IN)

    def read(self, now: float) -> None:
        sock = self.sock
        while True:
            try:
                data = sock.recv(65536)  # type: ignore[union-attr]
            except BlockingIOError:
                return
            except OSError as exc:
                self.fail_os(exc, now)
                return
            if not data or self.size > _http.MAX_BODY:
                break
            self.chunks.append(data)
            self.size += len(data)
        self.close()
        u = self.urls[self.url_i]
        try:
            status, body = _http.parse_or_error(u.path, self.where, b"".join(self.chunks))
        except _http.HttpProbeError as exc:
            self.finish(CheckResult(False, str(exc)), now)
            return
        self.chunks = []
        failed = _http.judge(u.url, u.path, self.where, status, body)
        if failed is not None:
            self.finish(failed, now)
            return
        self.notes.append(f"{u.path} {status}")
        self.url_i += 1
        if self.url_i < len(self.urls):
            self.connect(now)  # next URL, its own connection and deadline
            return
        self.finish(CheckResult(True, f"GET from {self.where}: " + ", ".join(self.notes)), now)

    def timed_out(self, now: float) -> None:
        self.close()
        if self.urls:
            self.finish(CheckResult(False, _http.timeout_error(self.urls[self.url_i].path, self.where, self.timeout)), now)
        else:
            self.finish(CheckResult(False, f"connect to {self.where} timed out after {self.timeout:g} s"), now)

    def fail_os(self, exc: OSError, now: float) -> None:
        """The attempt failed on ``exc``: close its socket (if it has one yet) and report the failure."""
        self.close()
        if self.urls:
            self.finish(CheckResult(False, _http.connection_error(self.urls[self.url_i].path, self.where, exc)), now)
        else:
            self.finish(CheckResult(False, f"connect to {self.where} {describe_oserror(exc)}"), now)

    def finish(self, result: CheckResult, now: float) -> None:
        self.gen += 1
        self.state = 0
        self.last_result = result
        transition = self.schedule.probe_done(result, now)
        if transition is not None:
            self.report(transition, result)
        due = self.schedule.get_timer()
        if due is not None and self.engine.has(self):
            self.engine.at(due, self)


class ProbeEngine:
    """Runs :class:`Job` s on one event loop (see the module docstring); :func:`engine_for` gives the loop's."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self._ep = select.epoll()
        self._heap: list[tuple[float, int, Job, int]] = []  # (due, seq, job, gen): next probes
        self._deadlines: dict[float, collections.deque[tuple[float, Job, int]]] = {}  # per connect_timeout
        self._seq = itertools.count()
        self._fds: dict[int, Job] = {}
        self._jobs: set[Job] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf
        self._busy = False
        self._closed = False
        loop.add_reader(self._ep.fileno(), self._on_ready)

    # --- jobs ----------------------------------------------------------------

    def add(self, checker: Checker, target: Target, schedule: CheckSchedule, timing: Timing,
            report: Callable[[Transition | None, CheckResult], Any]) -> Job:
        """Start running a checker; the first probe comes after its warmup delay."""
        job = Job(self, checker, target, schedule, timing, report)
        self._jobs.add(job)
        now = self.loop.time()
        schedule.start(now)
        self.at(schedule.get_timer() or now, job)
        self._arm()
        return job

    def remove(self, job: Job) -> None:
        """Stop a job; its attempt in flight (if any) is closed and never reported."""
        self._jobs.discard(job)
        job.gen += 1
        job.close()
        if not self._jobs:
            self.close()

    def has(self, job: Job) -> bool:
        return job in self._jobs

    def close(self) -> None:
        """Release the epoll and timer (when the last job left, or the loop is closing)."""
        if self._closed:
            return
        self._closed = True
        if _ENGINES.get(self.loop) is self:
            del _ENGINES[self.loop]
        for job in list(self._jobs):
            job.gen += 1
            job.close()
        self._jobs.clear()
        self._heap.clear()
        self._deadlines.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self.loop.is_closed():
            self.loop.remove_reader(self._ep.fileno())
        self._ep.close()

    # --- used by jobs --------------------------------------------------------

    def at(self, when: float, job: Job) -> None:
        heapq.heappush(self._heap, (when, next(self._seq), job, job.gen))

    def watch(self, job: Job, events: int, deadline: float) -> None:
        self._fds[job.fd] = job
        self._ep.register(job.fd, events)
        q = self._deadlines.get(job.timeout)
        if q is None:
            q = self._deadlines[job.timeout] = collections.deque()
        q.append((deadline, job, job.gen))  # one timeout per queue: deadlines come in order

    def modify(self, fd: int, events: int) -> None:
        self._ep.modify(fd, events)

    def forget(self, fd: int) -> None:
        self._fds.pop(fd, None)

    # --- the loop's callbacks ------------------------------------------------

    def _arm(self) -> None:
        if self._busy or self._closed:
            return
        first = self._heap[0][0] if self._heap else math.inf
        for q in self._deadlines.values():
            if q and q[0][0] < first:
                first = q[0][0]
        if first == math.inf:
            return
        when = math.ceil(first / TICK) * TICK
        if when == self._timer_at and self._timer is not None:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = when
        self._timer = self.loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self._timer, self._timer_at = None, math.inf
        self._busy = True
        try:
            now = self.loop.time()
            for q in self._deadlines.values():
                while q and q[0][0] <= now:
                    _, job, gen = q.popleft()
                    if gen == job.gen and job.state:  # else stale: that attempt is over
                        try:
                            job.timed_out(now)
                        except Exception:
                            self._crashed(job, now)
            heap, jobs = self._heap, self._jobs
            pop = heapq.heappop
            started = False
            limit = next(self._seq)  # entries pushed by this batch (delay_loop 0, ...) wait for the next tick
            while heap and heap[0][0] <= now and heap[0][1] < limit:
                _, _, job, gen = pop(heap)
                if gen == job.gen and job in jobs:
                    started = True
                    try:
                        job.begin(now)
                    except Exception:
                        self._crashed(job, now)
            if started:
                self._poll(now)  # handshakes that completed inside connect()
        finally:
            self._busy = False
            self._arm()

    def _on_ready(self) -> None:
        self._busy = True
        try:
            self._poll(self.loop.time())
        finally:
            self._busy = False
            self._arm()

    def _poll(self, now: float) -> None:
        if self._closed:  # a report callback removed the last job
            return
        fds = self._fds
        for fd, events in self._ep.poll(0, 1024):
            job = fds.get(fd)
            if job is not None:
                try:
                    job.on_event(events, now)
                except Exception:
                    self._crashed(job, now)

    def _crashed(self, job: Job, now: float) -> None:
        """A bug in one job must not stop the others: its attempt ends as a failure, its schedule goes on."""
        log.exception("probe engine: %s %s crashed", job.kind, job.where)
        if job in self._jobs and job.schedule.get_timer() is None:
            job.close()
            job.finish(CheckResult(False, f"{job.kind}: internal error"), now)


_ENGINES: dict[asyncio.AbstractEventLoop, ProbeEngine] = {}


def engine_for(loop: asyncio.AbstractEventLoop) -> ProbeEngine:
    """The running loop's engine (made on first use, released when its last job is removed)."""
    for other in [e for lp, e in _ENGINES.items() if lp.is_closed()]:
        other.close()  # a loop closed with jobs still added (a test, an aborted run)
    eng = _ENGINES.get(loop)
    if eng is None:
        eng = _ENGINES[loop] = ProbeEngine(loop)
    return eng

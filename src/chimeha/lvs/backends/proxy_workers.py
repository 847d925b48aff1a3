"""Extra proxy processes: several relays share a virtual service's port (SO_REUSEPORT).

One Python process relays on one core at most (the GIL); on the benchmark's
two cores the single relay was the bottleneck at 256 connections
(bench/dataplane/RESULTS.md). With ``workers=N`` the proxy backend starts N-1
worker processes (``spawn``: nothing of the daemon's threads is forked); each
runs its own :class:`~chimeha.lvs.backends.proxy.ProxyBackend` with the same
desired state and listens with ``SO_REUSEPORT``, so the kernel spreads new
connections over all N listeners.

Each process schedules on its own, so only services whose scheduling does not
depend on state shared between connections run in parallel (see
:func:`parallel_ok`): ``rr``/``wrr`` (each process cycles through the same
weights: the sum over processes has the configured proportions), and the hash
schedulers ``sh``/``dh``/``mh`` (the same hash in every process). Services
with ``persistence_timeout`` (the template must be one for all of a client's
connections) or a connection-count scheduler (``lc``, ``wlc``, ``sed``, ``nq``,
``lblc``, ``lblcr``, ``ovf``, ``twos``: exact counts need one process) stay in
the backend's own process only.

Health changes reach the workers as a new desired state over a pipe; the
workers send their counters every ``STATS_INTERVAL`` seconds and the backend
adds them to its own (so the per-real-server counters in status and metrics
lag by up to that long for connections handled by a worker).
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os

from ..reconcile import diff
from ..types import DesiredState, Service

log = logging.getLogger("chimeha.lvs.proxy")

#: seconds between two counter reports of a worker
STATS_INTERVAL = 1.0
#: schedulers whose result does not depend on state shared between processes
PARALLEL_SCHEDULERS = frozenset({"rr", "wrr", "sh", "dh", "mh"})


def parallel_ok(svc: Service) -> bool:
    """May this service be served by several processes at once (see the module docstring)?"""
    return (svc.key.protocol == "TCP" and svc.key.fwmark is None and not svc.persistence_timeout
            and svc.scheduler in PARALLEL_SCHEDULERS)


def parallel_part(state: DesiredState) -> DesiredState:
    return DesiredState({k: v for k, v in state.services.items() if parallel_ok(v)})


def default_workers() -> int:
    """One relay per core, at most 4 (the default of the daemon and the standalone runner)."""
    return max(1, min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))


class Workers:
    """The worker processes of one proxy backend, driven from the backend's relaying loop."""

    def __init__(self, count: int, backend_cls, backend_kwargs: dict):
        """``backend_kwargs``: keyword arguments of ``backend_cls`` for the workers' backends."""
        self.count, self.backend_cls, self.backend_kwargs = count, backend_cls, dict(backend_kwargs)
        self.ctx = multiprocessing.get_context("spawn")
        self.procs: list = [None] * count
        self.pipes: list = [None] * count
        self.stats: list[dict] = [{} for _ in range(count)]
        self.state = DesiredState()
        self.loop: asyncio.AbstractEventLoop | None = None

    def _start(self, i: int) -> None:
        parent, child = self.ctx.Pipe()
        p = self.ctx.Process(target=worker_main, args=(child, self.backend_cls, self.backend_kwargs),
                             name=f"chimeha-proxy-{i + 1}", daemon=True)
        p.start()
        child.close()
        self.procs[i], self.pipes[i] = p, parent
        self.stats[i] = {}
        self.loop.add_reader(parent.fileno(), self._receive, i)
        self._send(i, ("state", self.state))

    def apply(self, state: DesiredState) -> None:
        """Give every worker the parallel services of ``state`` (starting dead or new workers)."""
        self.loop = asyncio.get_running_loop()
        self.state = parallel_part(state)
        for i in range(self.count):
            p = self.procs[i]
            if p is None or not p.is_alive():
                if p is not None:
                    log.warning("proxy worker %d exited (code %s): restarting it", i + 1, p.exitcode)
                    self._drop(i)
                self._start(i)
            else:
                self._send(i, ("state", self.state))

    def dead(self) -> list[int]:
        return [i + 1 for i, p in enumerate(self.procs) if p is not None and not p.is_alive()]

    def _send(self, i: int, msg) -> None:
        try:
            self.pipes[i].send(msg)
        except (OSError, ValueError):
            pass  # the worker died: dead() reports it, the next apply restarts it

    def _receive(self, i: int) -> None:
        try:
            kind, payload = self.pipes[i].recv()
        except (EOFError, OSError):
            self._drop(i)
            return
        if kind == "stats":
            self.stats[i] = payload

    def _drop(self, i: int) -> None:
        pipe = self.pipes[i]
        if pipe is not None:
            try:
                self.loop.remove_reader(pipe.fileno())
            except (OSError, ValueError):
                pass
            pipe.close()
            self.pipes[i] = None

    def merged_into(self, out: dict) -> dict:
        """Add the workers' last counters to ``out`` (the backend's own ``stats()``)."""
        for st in list(self.stats):
            for svc, s in list(st.items()):
                mine = out.get(svc)
                if mine is None:
                    continue
                mine["refused"] += s["refused"]
                mine["connect_errors"] += s["connect_errors"]
                for rs, c in s["real_servers"].items():
                    m = mine["real_servers"].get(rs)
                    if m is not None:
                        for f in ("active", "connections", "bytes_in", "bytes_out"):
                            m[f] += c[f]
        return out

    async def close(self) -> None:
        for i in range(self.count):
            if self.pipes[i] is not None:
                self._send(i, ("close", None))
        for i, p in enumerate(self.procs):
            if p is None:
                continue
            await asyncio.to_thread(p.join, 5.0)
            if p.is_alive():
                p.kill()  # our own child, by its handle
                await asyncio.to_thread(p.join, 2.0)
            if self.loop is not None:
                self._drop(i)
            self.procs[i] = None


def worker_main(conn, backend_cls, backend_kwargs: dict) -> None:
    """A worker process: one backend on one relay loop, fed the desired state over ``conn``."""
    import uvloop

    from .proxy_loop import new_loop

    factory = new_loop if backend_kwargs.get("relay", "epoll") == "epoll" else uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(_serve(conn, backend_cls, backend_kwargs))


async def _serve(conn, backend_cls, backend_kwargs: dict) -> None:
    loop = asyncio.get_running_loop()
    backend = backend_cls(**backend_kwargs, own_loop=False, reuse_port=True)
    inbox: asyncio.Queue = asyncio.Queue()

    def readable() -> None:
        try:
            inbox.put_nowait(conn.recv())
        except (EOFError, OSError):  # the backend's process is gone
            loop.remove_reader(conn.fileno())
            inbox.put_nowait(("close", None))

    loop.add_reader(conn.fileno(), readable)

    async def report() -> None:
        while True:
            await asyncio.sleep(STATS_INTERVAL)
            try:
                conn.send(("stats", backend.stats()))
            except (OSError, ValueError):
                return

    reporter = loop.create_task(report())
    try:
        while True:
            kind, payload = await inbox.get()
            if kind == "close":
                break
            try:
                await backend.apply(diff(payload, await backend.read_actual()))
            except Exception as e:  # noqa: BLE001 - a worker reports and keeps serving the rest
                log.warning("proxy worker: %s", e)
    finally:
        reporter.cancel()
        await backend.close()

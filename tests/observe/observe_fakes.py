"""Test doubles and helpers for tests/observe (imported by conftest.py and the tests).

:class:`FakeDaemon` is a test double standing in for ``runtime.Daemon``: it
only returns a snapshot dict that the test edits, so observe can be tested
without sockets or namespaces. System tests use the real daemon.
"""

from __future__ import annotations

import asyncio
import copy
import threading
import time

from chimeha.vrrp.events import State, StateChanged


def sample_snapshot() -> dict:
    """A two-instance, one-script, one-virtual-server snapshot in the documented schema."""
    now = time.time()
    return {
        "schema": 1,
        "taken_at": now,
        "node": {"router_id": "server1", "hostname": "server1", "pid": 4242, "started_at": now - 60,
                 "config_path": "/etc/keepalived/keepalived.conf", "config_loaded_at": now - 60, "reloads": 0},
        "instances": {
            "VI_1": {
                "name": "VI_1", "state": "MASTER", "vrid": 51, "version": 2, "interface": "ens160",
                "base_priority": 255, "effective_priority": 255, "master_address": "192.168.231.11",
                "vips": ["192.168.231.10/32"], "vips_owned": True, "advert_interval": 1.0,
                "adverts_sent": 812, "adverts_received": 3, "priority_zero_sent": 0, "priority_zero_received": 1,
                "became_master": 2, "released_master": 1,
                "drops_by_reason": {"ttl": 1, "checksum": 2, "auth": 4, "advert-interval": 5, "length": 6},
                "last_transition": {"at": now - 30, "from": "BACKUP", "to": "MASTER",
                                    "reason": "higher priority 255 than master 192.168.231.12 (254)"},
                "split_brain": {"active": False, "peer": None, "since": None},
                "failovers": {"count": 1, "last_seconds": 0.992, "recent": [0.992]},
                "track_scripts": ["chk_server"],
            },
            "VI_2": {
                "name": "VI_2", "state": "BACKUP", "vrid": 52, "version": 3, "interface": "ens160",
                "base_priority": 100, "effective_priority": 90, "master_address": "192.168.231.12",
                "vips": ["192.168.231.20/32"], "vips_owned": False, "advert_interval": 1.0,
                "adverts_sent": 0, "adverts_received": 700,
                "drops_by_reason": {}, "last_transition": None,
                "split_brain": {"active": False, "peer": None, "since": None},
                "failovers": {"count": 0, "last_seconds": None, "recent": []},
                "track_scripts": [],
            },
        },
        "scripts": {"chk_server": {"name": "chk_server", "result": "ok", "last_exit": 0, "last_run_at": now - 1,
                                   "detail": "exit 0", "weight": -10}},
        "virtual_servers": [{
            "address": "192.168.231.10", "port": 8801, "fwmark": None, "protocol": "TCP",
            "lb_algo": "rr", "lb_kind": "NAT", "dataplane": "nft", "active": True,
            "real_servers": [
                {"address": "192.168.231.11", "port": 8801, "healthy": True, "weight": 1, "detail": "connected",
                 "stats": {"connections": 311, "packets_in": 10, "packets_out": 20, "bytes_in": 300, "bytes_out": 400}},
                {"address": "192.168.231.12", "port": 8801, "healthy": False, "weight": 0,
                 "detail": "connect to 192.168.231.12:8801: refused",
                 "stats": {"connections": 12, "packets_in": 1, "packets_out": 2, "bytes_in": 3, "bytes_out": 4}},
            ],
        }],
        "drops_by_reason": {"vrid-unknown": 7},
    }


class FakeDaemon:
    """Test double for runtime.Daemon (observe.service.ObservedDaemon): ``snap`` is what snapshot() returns."""

    def __init__(self, snap: dict | None = None):
        self.snap = snap if snap is not None else sample_snapshot()
        self.reload_result: object = {"ok": True, "message": "reloaded: 2 kept", "diagnostics": []}
        self.reloads = 0
        self.fail_snapshot = False
        self.state_hooks: list = []
        self.event_hooks: list = []
        self._generation = 0

    @property
    def generation(self) -> int:
        """Moves at every look: tests edit ``snap`` behind the observer's back."""
        self._generation += 1
        return self._generation

    def instance_snapshot(self, name: str) -> dict | None:
        inst = self.snapshot()["instances"].get(name)
        return None if inst is None else inst

    def snapshot(self) -> dict:
        if self.fail_snapshot:
            raise RuntimeError("snapshot exploded")
        self.snap["taken_at"] = time.time()
        return copy.deepcopy(self.snap)

    async def reload(self):
        self.reloads += 1
        await asyncio.sleep(0)
        if isinstance(self.reload_result, Exception):
            raise self.reload_result
        return self.reload_result


def Event(instance, old, new, reason, at=None, failover=None) -> StateChanged:
    """The core's StateChanged from state words (``at`` None: now, on the monotonic clock)."""
    return StateChanged(instance, State(old), State(new), reason, time.monotonic() if at is None else at,
                        failover=failover)


class ThreadedObserver:
    """An Observer running on its own event loop in a thread, for synchronous clients (the CLI, Chromium)."""

    def __init__(self, observer):
        self.observer = observer
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        self.call(self.observer.start())
        return self

    def call(self, coro_or_fn, *args):
        """Run a coroutine (or a plain function) on the observer's loop and return its result."""
        if asyncio.iscoroutine(coro_or_fn):
            return asyncio.run_coroutine_threadsafe(coro_or_fn, self.loop).result(timeout=30)

        async def wrap():
            return coro_or_fn(*args)
        return asyncio.run_coroutine_threadsafe(wrap(), self.loop).result(timeout=30)

    def __exit__(self, *exc):
        try:
            self.call(self.observer.stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=10)
            self.loop.close()

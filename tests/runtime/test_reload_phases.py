"""runtime/reload.py phase by phase, and Daemon.reload: a refused reload changes nothing, an accepted one only the difference."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import logging
import threading

import pytest
from rtfakes import FakeNetlink, SocketFactory, instance_conf, load_ok, until

from chimeha.errors import ConfigError
from chimeha.runtime import reload as reloading
from chimeha.runtime.daemon import Daemon
from chimeha.runtime.status import ReloadOutcome
from chimeha.vrrp.events import InstanceSpec, State


def spec(name="VI_1", vrid=1, interface="lo", family=4, primary="", where="") -> InstanceSpec:
    return InstanceSpec(name=name, vrid=vrid, interface=interface, family=family, primary_address=primary,
                        where=where)


# -- build_specs -------------------------------------------------------------------------------
def test_build_specs_returns_specs_and_existing_sync_group_members():
    cfg = load_ok(instance_conf("VI_1", vrid=1) + instance_conf("VI_2", vrid=2, vip="10.0.0.101/24")
                  + "vrrp_sync_group G {\n group {\n  VI_1\n  VI_2\n }\n}\n")
    specs, groups = reloading.build_specs(cfg)
    assert [s.name for s in specs] == ["VI_1", "VI_2"] and groups == {"G": ("VI_1", "VI_2")}


def test_build_specs_refuses_a_vrid_used_twice_on_one_interface(monkeypatch):
    # The config checker reports this too; build_specs must hold on its own (the node's own rule).
    monkeypatch.setattr(reloading, "instance_specs", lambda config: [spec("VI_1", 7), spec("VI_2", 7)])
    with pytest.raises(ConfigError, match="virtual_router_id 7 is already used by VI_1"):
        reloading.build_specs(load_ok(instance_conf()))


def test_build_specs_refuses_an_instance_without_interface(monkeypatch):
    no_iface = dataclasses.replace(spec(where="node.conf:3: "), interface="")
    monkeypatch.setattr(reloading, "instance_specs", lambda config: [no_iface])
    with pytest.raises(reloading.ReloadRefused, match=r"^node.conf:3: vrrp_instance VI_1: no interface$"):
        reloading.build_specs(object())


# -- preflight ---------------------------------------------------------------------------------
def lookup(table):
    asked = []

    def primary_address(ifname, family):
        asked.append((ifname, family))
        return table.get((ifname, family))
    primary_address.asked = asked
    return primary_address


def test_preflight_fills_the_source_address_and_opens_one_socket_per_new_pair():
    factory = SocketFactory()
    pa = lookup({("lo", 4): "127.0.0.1"})
    specs = [spec("A", 1), spec("B", 2), spec("C", 3, primary="10.9.9.9"), spec("D", 4, family=6, primary="fe80::1")]
    pre = reloading.preflight(specs, open_sockets={("lo", 6)}, primary_address=pa, socket_factory=factory)
    assert [s.primary_address for s in pre.specs] == ["127.0.0.1", "127.0.0.1", "10.9.9.9", "fe80::1"]
    assert pa.asked == [("lo", 4), ("lo", 4)]  # configured sources are not looked up
    assert list(pre.opened) == [("lo", 4)]  # ("lo", 6) is the daemon's already
    assert [(s.ifname, s.family, s.join_group) for s in factory.made] == [("lo", 4, False)]
    pre.close()
    assert factory.made[0].closed and pre.opened == {}


def test_preflight_missing_interface_closes_what_it_opened():
    factory = SocketFactory()
    specs = [spec("A", 1, primary="127.0.0.1"), spec("B", 2, interface="nope0", where="new.conf:9: ")]
    with pytest.raises(reloading.PreflightError) as exc:
        reloading.preflight(specs, open_sockets=set(), primary_address=lookup({}), socket_factory=factory)
    assert str(exc.value) == "new.conf:9: vrrp_instance B: interface nope0 does not exist"
    assert len(factory.made) == 1 and factory.made[0].closed


@pytest.mark.parametrize("family", [4, 6])
def test_preflight_accepts_an_interface_without_address(family, caplog):
    # issue 10 item 3: the instance waits in FAULT for an address instead of refusing the file
    with caplog.at_level(logging.WARNING):
        pre = reloading.preflight([spec("A", 1, family=family)], open_sockets=set(), primary_address=lookup({}),
                                  socket_factory=SocketFactory())
    assert [s.name for s in pre.specs] == ["A"] and not pre.specs[0].primary_address
    assert f"has no IPv{family} address" in caplog.text and "waiting in FAULT" in caplog.text
    pre.close()


def test_preflight_socket_refused_is_a_preflight_error_and_earlier_sockets_close():
    factory = SocketFactory(refuse={("lo", 6)})
    specs = [spec("A", 1, primary="127.0.0.1"), spec("B", 2, family=6, primary="fe80::1")]
    with pytest.raises(reloading.PreflightError, match="vrrp_instance B: .*Operation not permitted"):
        reloading.preflight(specs, open_sockets=set(), primary_address=lookup({}), socket_factory=factory)
    assert [s.closed for s in factory.made] == [True]


def test_preflight_close_ignores_a_socket_that_fails_to_close():
    class Sticky:
        def close(self):
            raise OSError("EBADF")

    pre = reloading.Preflight([], {("lo", 4): Sticky()})
    pre.close()
    assert pre.opened == {}


# -- load_config -------------------------------------------------------------------------------
async def test_load_config_reads_off_the_loop_and_reports_diagnostics(tmp_path):
    path = tmp_path / "k.conf"
    path.write_text(instance_conf().replace("virtual_router_id 10", "virtual_router_id 300"))
    res = await reloading.load_config(str(path))
    assert not res.ok and any(f"{path}:4:" in str(d) for d in res.diagnostics)


async def test_load_config_of_a_fifo_is_refused_with_where_and_what(tmp_path):
    fifo = tmp_path / "k.conf"
    os.mkfifo(fifo)
    res = await reloading.load_config(str(fifo), timeout=5)
    assert not res.ok and f"{fifo}:0: error: cannot read {fifo}: it is a FIFO" in str(res.diagnostics[0])


async def test_a_stalled_read_times_out_without_stalling_the_loop(monkeypatch):
    import chimeha.config

    release = threading.Event()
    monkeypatch.setattr(chimeha.config, "load", lambda path: release.wait(10))  # a hung file system
    ticks = 0

    async def ticker():
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    t = asyncio.create_task(ticker())
    try:
        with pytest.raises(reloading.ReloadRefused, match=r"^/x.conf: reading the configuration took more than "
                                                          r"0.3 s .*; still running the old one$"):
            await reloading.load_config("/x.conf", timeout=0.3)
        assert ticks >= 10  # the loop kept running while the worker thread was blocked
    finally:
        t.cancel()
        release.set()


# -- Daemon.reload -----------------------------------------------------------------------------
class Node:
    """One Daemon on fakes, with its config file."""

    def __init__(self, tmp_path, text, factory=None):
        self.path = tmp_path / "node.conf"
        self.path.write_text(text)
        self.nl = FakeNetlink()
        self.factory = factory or SocketFactory()
        self.d = Daemon(str(self.path), load_ok(text, str(self.path)), socket_factory=self.factory,
                        netlink=self.nl)
        self.outcomes = []
        self.d.event_hooks.append(lambda e: self.outcomes.append(e) if isinstance(e, ReloadOutcome) else None)

    async def reload(self, text):
        self.path.write_text(text)
        return await self.d.reload()


TWO = instance_conf("VI_1", vrid=1) + instance_conf("VI_2", vrid=2, vip="10.0.0.101/24")
CHK = 'vrrp_script chk {\n script "/bin/true"\n interval 0.05\n timeout 10\n}\n'  # a loaded machine is slow to fork


def frozen(n: Node) -> dict:
    d = n.d
    return {"names": d.node.names, "states": [d.node.state(x) for x in d.node.names], "held": set(n.nl.held),
            "sockets": dict(d.sockets), "trackers": d.trackers, "notifier": d._ex.notifier,  # noqa: SLF001
            "config": d.config, "reloads": d.reloads, "specs": d.node.specs()}


@pytest.mark.parametrize("bad, why", [
    ("vrrp_instance VI_1 {\n interface lo\n virtual_router_id 999\n}\n", "node.conf:3:"),
    (TWO + instance_conf("VI_3", vrid=2, vip="10.0.0.102/24"), "[duplicate-vrid]"),
    (TWO + instance_conf("VI_3", vrid=3, interface="nope0"), "interface nope0 does not exist"),
    (instance_conf("VI_1", vrid=1) + instance_conf("VI_6", vrid=6).replace("mcast_src_ip 10.0.0.1", "mcast_src_ip fe80::1")
     .replace("10.0.0.100/24", "fd00::100/64"), "Operation not permitted"),
])
async def test_a_refused_reload_changes_nothing(tmp_path, bad, why):
    n = Node(tmp_path, CHK + TWO.replace(" virtual_ipaddress", " track_script {\n  chk\n }\n virtual_ipaddress", 1),
             SocketFactory(refuse={("lo", 6)}))
    await n.d.start()
    try:
        await until(lambda: n.d.node.state("VI_1") is State.MASTER and n.d.node.state("VI_2") is State.MASTER,
                    what="both MASTER")
        before, log_len, gen = frozen(n), len(n.nl.log), n.d.generation
        result = await n.reload(bad)
        assert result["ok"] is False and why in " ".join(result["diagnostics"]), result
        assert frozen(n) == before
        assert n.nl.log[log_len:] == []  # no VIP touched, no stale check, nothing
        assert not any(s.closed for s in n.factory.made[:1])
        assert n.d.trackers.scripts["chk"]._task is not None  # noqa: SLF001 - the old tracker still runs
        assert [o.ok for o in n.outcomes] == [False] and n.d.generation > gen
        sent = n.d.node.instance_status("VI_2").sent
        await until(lambda: n.d.node.instance_status("VI_2").sent > sent, what="VI_2 still advertising")
    finally:
        await n.d.stop()


async def test_reload_removes_adds_and_keeps_exactly_what_changed(tmp_path):
    n = Node(tmp_path, TWO)
    await n.d.start()
    try:
        await until(lambda: all(n.d.node.state(x) is State.MASTER for x in ("VI_1", "VI_2")), what="both MASTER")
        vi1 = n.d.node.instance("VI_1")
        log_len = len(n.nl.log)
        new = instance_conf("VI_1", vrid=1) + instance_conf("VI_3", vrid=3, vip="10.0.0.103/24")
        result = await n.reload(new)
        assert result["ok"], result
        assert result["message"] == "reloaded: 1 instance(s) unchanged, 0 changed, 1 added, 1 removed"
        assert n.d.node.names == ("VI_1", "VI_3")
        assert n.d.node.instance("VI_1") is vi1 and vi1.state is State.MASTER  # kept: same object, same state
        tail = n.nl.log[log_len:]
        assert ("del", "VI_2", ("10.0.0.101/24",), "lo") in tail
        assert not [e for e in tail if e[1] == "VI_1"]  # the unchanged instance's VIP is never touched
        assert n.d.reloads == 1 and n.outcomes[-1].ok and n.outcomes[-1].plan.added == ("VI_3",)
        await until(lambda: n.d.node.state("VI_3") is State.MASTER, what="VI_3 MASTER")
        assert n.nl.held == {"10.0.0.100/24", "10.0.0.103/24"}
    finally:
        await n.d.stop()
    assert n.nl.held == set()


async def test_a_changed_master_stays_master_and_drops_only_unlisted_vips(tmp_path):
    two_vips = instance_conf("VI_1", vrid=1, vip="10.0.0.100/24\n  10.0.0.200/24")
    n = Node(tmp_path, two_vips)
    await n.d.start()
    try:
        await until(lambda: n.d.node.state("VI_1") is State.MASTER, what="MASTER")
        log_len = len(n.nl.log)
        result = await n.reload(two_vips.replace("  10.0.0.200/24\n", "").replace("priority 100", "priority 120"))
        assert result["ok"], result
        assert n.d.node.state("VI_1") is State.MASTER
        tail = n.nl.log[log_len:]
        dels = [e for e in tail if e[0] == "del"]
        assert dels == [("del", "VI_1", ("10.0.0.200/24",), "lo")]  # no gap for the VIP still listed
        assert n.nl.held == {"10.0.0.100/24"}
        assert n.d.node.instance("VI_1").priority == 120
    finally:
        await n.d.stop()


async def test_reload_closes_the_sockets_no_instance_uses_any_more(tmp_path):
    v6 = instance_conf("VI_6", vrid=6).replace("mcast_src_ip 10.0.0.1", "mcast_src_ip fe80::1").replace(
        "10.0.0.100/24", "fd00::100/64")
    n = Node(tmp_path, instance_conf("VI_1", vrid=1) + v6)
    await n.d.start()
    try:
        assert set(n.d.sockets) == {("lo", 4), ("lo", 6)}
        v4 = n.d.sockets[("lo", 4)]
        result = await n.reload(v6)
        assert result["ok"], result
        assert set(n.d.sockets) == {("lo", 6)} and v4.closed
        result = await n.reload(v6 + instance_conf("VI_1", vrid=1))
        assert result["ok"] and set(n.d.sockets) == {("lo", 4), ("lo", 6)}
        assert n.d.sockets[("lo", 4)] is not v4 and not n.d.sockets[("lo", 4)].closed
    finally:
        await n.d.stop()


async def test_concurrent_reloads_run_one_after_the_other(tmp_path):
    n = Node(tmp_path, TWO)
    await n.d.start()
    try:
        results = await asyncio.gather(n.d.reload(), n.d.reload())
        assert [r["ok"] for r in results] == [True, True] and n.d.reloads == 2
        assert results[1]["message"] == "reloaded: 2 instance(s) unchanged, 0 changed, 0 added, 0 removed"
    finally:
        await n.d.stop()


async def test_reload_restarts_the_trackers_and_stops_the_old_ones(tmp_path):
    text = CHK + instance_conf().replace(" virtual_ipaddress", " track_script {\n  chk\n }\n virtual_ipaddress")
    n = Node(tmp_path, text)
    await n.d.start()
    try:
        old = n.d.trackers
        old_task = old.scripts["chk"]._task  # noqa: SLF001
        result = await n.reload(text.replace("interval 0.05", "interval 0.1"))
        assert result["ok"], result
        assert n.d.trackers is not old and old.scripts == {} and old_task.done()
        assert n.d.trackers.scripts["chk"].interval == 0.1
        await until(lambda: n.d.trackers.scripts["chk"].runs >= 1, what="the new tracker runs")
    finally:
        await n.d.stop()

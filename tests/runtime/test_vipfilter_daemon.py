"""The daemon drives the no_accept filter: VIPs filtered while held, in order with the address changes, gone at stop."""

from __future__ import annotations

from rtfakes import FakeNetlink, SocketFactory, instance_conf, load_ok, until

from chimeha.net.vipfilter import VipFilter
from chimeha.runtime.daemon import Daemon
from chimeha.vrrp.events import State


def _daemon(tmp_path, extra: str, glob: str = ""):
    loaded: list[str] = []
    text = (f"global_defs {{\n{glob}}}\n" if glob else "") + instance_conf(extra=extra, state="MASTER")
    d = Daemon(str(tmp_path / "k.conf"), load_ok(text), socket_factory=SocketFactory(), netlink=FakeNetlink(),
               vip_filter=VipFilter(runner=loaded.append))
    return d, loaded


async def test_no_accept_vips_are_filtered_while_master_and_released_at_stop(tmp_path):
    d, loaded = _daemon(tmp_path, " no_accept\n")
    await d.start()
    try:
        await until(lambda: d.node.state("VI_1") is State.MASTER, what="MASTER")
        await until(lambda: d.vip_filter.blocked == {"10.0.0.100"}, what="the VIP filtered")
        assert "ip daddr @vips4 drop" in loaded[-1] and "10.0.0.100" in loaded[-1]
    finally:
        await d.stop()
    assert d.vip_filter.blocked == frozenset()
    assert "10.0.0.100" not in loaded[-1] and "ip daddr" not in loaded[-1]  # the table is deleted


async def test_strict_mode_filters_by_default_and_accept_does_not_filter(tmp_path):
    # version 3 (instance_conf): accept is allowed in strict mode
    d, loaded = _daemon(tmp_path, "", glob=" vrrp_strict\n")
    await d.start()
    try:
        await until(lambda: d.node.state("VI_1") is State.MASTER, what="MASTER")
        await until(lambda: d.vip_filter.blocked == {"10.0.0.100"}, what="the VIP filtered")
    finally:
        await d.stop()
    d, loaded = _daemon(tmp_path, " accept\n", glob=" vrrp_strict\n")
    await d.start()
    try:
        await until(lambda: d.node.state("VI_1") is State.MASTER, what="MASTER")
        assert d.vip_filter.blocked == frozenset() and loaded == []
    finally:
        await d.stop()
    assert loaded == []  # never touched nft


async def test_a_reload_that_turns_accept_on_releases_the_filter_of_a_held_vip(tmp_path):
    path = tmp_path / "k.conf"
    text = instance_conf(extra=" no_accept\n", state="MASTER")
    path.write_text(text)
    loaded: list[str] = []
    d = Daemon(str(path), load_ok(text), socket_factory=SocketFactory(), netlink=FakeNetlink(),
               vip_filter=VipFilter(runner=loaded.append))
    await d.start()
    try:
        await until(lambda: d.vip_filter.blocked == {"10.0.0.100"}, what="the VIP filtered")
        path.write_text(text.replace(" no_accept\n", " accept\n"))
        outcome = await d.reload()
        assert outcome["ok"] if isinstance(outcome, dict) else outcome.ok
        await until(lambda: d.vip_filter.blocked == frozenset(), what="the filter released after the reload")
        assert d.node.state("VI_1") is State.MASTER and "ip daddr" not in loaded[-1]
        path.write_text(text)  # and back: filtered again while still MASTER
        await d.reload()
        await until(lambda: d.vip_filter.blocked == {"10.0.0.100"}, what="filtered again")
    finally:
        await d.stop()

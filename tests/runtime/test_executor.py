"""runtime/executor.py: what the node asks, executed in order against fake sockets and a fake netlink worker."""

from __future__ import annotations

import asyncio
import logging
import threading
from types import SimpleNamespace

import pytest
from rtfakes import FakeDaemon, FakeNetlink, FakeSocket, RecordingNotifier, instance_conf, until

from chimeha.net.vrrpsock import Received
from chimeha.runtime import executor as executor_mod
from chimeha.runtime.executor import READS_PER_WAKEUP, Executor
from chimeha.vrrp import packet
from chimeha.vrrp.events import (AddAddresses, GroupStateChanged, InstanceRemoved, PriorityChanged, RemoveAddresses, SendAdvert,
                                 SendGratuitous, SplitBrain, State, StateChanged, VipsChanged)

TWO = instance_conf("VI_1", vrid=10) + instance_conf("VI_2", vrid=11, vip="10.0.0.101/24")


def advert(name="VI_1", vrid=10, priority=100) -> SendAdvert:
    return SendAdvert(name, vrid=vrid, version=3, family=4, priority=priority, interval=0.05,
                      addresses=("10.0.0.100",))


def setup(text=TWO, hold=False, **sock_kw):
    d = FakeDaemon(text)
    nl = FakeNetlink(hold=hold)
    ex = Executor(d, nl)
    sock = FakeSocket("lo", 4, **sock_kw)
    ex.sockets[("lo", 4)] = sock  # not adopted: no reader needed for the send path
    return d, nl, ex, sock


def add(d, name="VI_1") -> AddAddresses:
    return AddAddresses(name, d.node.spec(name).virtual_ipaddresses)


def sent_priorities(sock) -> list[int]:
    return [payload[2] for payload, _dst, _src in sock.sent]  # byte 2 of a VRRP header is the priority


# -- advert gating after a VIP add -------------------------------------------------------------
async def test_advert_after_a_vip_add_waits_until_the_worker_has_installed_the_vip():
    d, nl, ex, sock = setup(hold=True)
    ex.execute(add(d))
    ex.execute(advert(priority=100))
    ex.execute(advert(priority=101))
    await asyncio.sleep(0.05)
    assert sock.sent == []  # the old master must not let go before the VIP answers here
    threading.Thread(target=nl.futures[0].set_result, args=(1,)).start()  # the worker thread finishes
    await until(lambda: len(sock.sent) == 2, what="both deferred adverts")
    assert sent_priorities(sock) == [100, 101]  # in the order the node queued them
    assert d.node.instance_status("VI_1").sent == 2
    ex.execute(advert(priority=102))  # the job is done: no more deferral
    assert sent_priorities(sock) == [100, 101, 102]


async def test_a_failed_vip_add_still_releases_the_advert():
    d, nl, ex, sock = setup(hold=True)
    ex.execute(add(d))
    ex.execute(advert())
    nl.futures[0].set_exception(OSError("netlink: EPERM"))
    await until(lambda: len(sock.sent) == 1, what="the advert after a failed add")


async def test_gating_is_per_instance():
    d, nl, ex, sock = setup(hold=True)
    ex.execute(add(d, "VI_1"))
    ex.execute(advert("VI_2", vrid=11))
    assert len(sock.sent) == 1  # VI_2 has no pending netlink job of its own
    ex.execute(advert("VI_1"))
    assert len(sock.sent) == 1
    nl.futures[0].set_result(1)
    await until(lambda: len(sock.sent) == 2, what="VI_1's advert")


async def test_an_advert_for_an_instance_removed_meanwhile_is_dropped():
    d, nl, ex, sock = setup(hold=True)
    ex.execute(add(d))
    ex.execute(advert())
    d.node = FakeDaemon(instance_conf("VI_2", vrid=11)).node  # a reload removed VI_1
    nl.futures[0].set_result(1)
    await asyncio.sleep(0.05)
    assert sock.sent == []


async def test_wait_netlink_waits_for_pending_jobs_and_is_bounded():
    d, nl, ex, _sock = setup(hold=True)
    ex.execute(add(d))
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    await ex.wait_netlink(0.1)  # never completed: returns after the bound
    assert 0.09 <= loop.time() - t0 < 2
    loop.call_later(0.05, nl.futures[0].set_result, 1)
    await ex.wait_netlink(5)
    assert nl.futures[0].done()


# -- sends and their feedback ------------------------------------------------------------------
async def test_send_success_and_failure_are_fed_back_to_the_node():
    d, nl, ex, sock = setup()
    ex.execute(advert())
    sock.fail_for = {"*"}
    ex.execute(advert())
    ex.execute(advert())
    st = d.node.instance_status("VI_1")
    assert (st.sent, st.send_errors) == (1, 2)


async def test_missing_socket_counts_as_a_send_error():
    d, nl, ex, sock = setup()
    del ex.sockets[("lo", 4)]
    ex.execute(advert())
    st = d.node.instance_status("VI_1")
    assert (st.sent, st.send_errors) == (0, 1)


async def test_unicast_peers_get_one_packet_each_and_fail_independently():
    text = instance_conf(extra=" unicast_peer {\n  10.0.0.2\n  10.0.0.3\n }\n")
    d, nl, ex, sock = setup(text, fail_for={"10.0.0.3"})
    ex.execute(advert())
    assert [(dst, src) for _p, dst, src in sock.sent] == [("10.0.0.2", "10.0.0.1")]
    st = d.node.instance_status("VI_1")
    assert (st.sent, st.send_errors) == (1, 1)


async def test_sent_bytes_are_a_valid_advert_with_the_pseudo_header_of_each_destination():
    text = instance_conf(extra=" unicast_peer {\n  10.0.0.2\n  10.0.0.3\n }\n")
    d, nl, ex, sock = setup(text)
    ex.execute(advert(priority=150))
    (p2, dst2, src), (p3, dst3, _) = sock.sent
    for payload, dst in ((p2, dst2), (p3, dst3)):
        adv = packet.decode(payload, family=4, source=src)
        assert (adv.vrid, adv.priority, adv.addresses) == (10, 150, ("10.0.0.100",))
        assert packet.verify_checksum(payload, adv, source=src, destination=dst)
    assert not packet.verify_checksum(p2, packet.decode(p2, source=src), source=src, destination=dst3)
    assert p2 != p3  # VRRPv3's checksum covers the destination: one encoding per peer


async def test_an_unchanged_advert_is_encoded_once(monkeypatch):
    d, nl, ex, sock = setup()
    calls = []
    real = packet.encode
    monkeypatch.setattr(packet, "encode", lambda *a, **kw: calls.append(a) or real(*a, **kw))
    for _ in range(5):
        ex.execute(advert())
    assert len(calls) == 1 and len(sock.sent) == 5
    ex.execute(advert(priority=90))  # a field changed: encoded again
    assert len(calls) == 2 and sent_priorities(sock)[-1] == 90


async def test_send_errors_are_logged_rarely(caplog):
    d, nl, ex, sock = setup(fail_for={"*"})
    with caplog.at_level(logging.WARNING, logger="chimeha.runtime"):
        for _ in range(1000):
            ex.execute(advert())
    warnings = [r for r in caplog.records if "cannot send advert" in r.getMessage()]
    assert len(warnings) == 4  # the 1st, 10th, 100th and 1000th
    assert "multicast" in warnings[0].getMessage()
    assert d.node.instance_status("VI_1").send_errors == 1000


# -- gratuitous announcements ------------------------------------------------------------------
async def test_garp_waits_for_the_vip_job_and_is_skipped_once_the_vips_are_given_up():
    d, nl, ex, sock = setup(hold=True)
    vips = d.node.spec("VI_1").virtual_ipaddresses
    ex.execute(AddAddresses("VI_1", vips))
    ex.execute(SendGratuitous("VI_1", vips, interface="lo", count=5))
    garp = nl.announces[-1]
    assert garp["after"] is nl.futures[0] and garp["count"] == 5 and garp["dev"] == "lo"
    assert garp["wanted"]() is True
    ex.execute(RemoveAddresses("VI_1", vips))
    assert garp["wanted"]() is False  # read when the garp thread gets to it: no announce for a lost VIP
    ex.execute(AddAddresses("VI_1", vips))
    assert garp["wanted"]() is True
    assert nl.held == {"10.0.0.100/24"} and [e[0] for e in nl.log] == ["add", "garp", "del", "add"]


async def test_garp_of_an_instance_never_added_is_wanted_and_not_chained():
    d, nl, ex, sock = setup()
    ex.execute(SendGratuitous("VI_2", d.node.spec("VI_2").virtual_ipaddresses, interface="lo", count=1))
    garp = nl.announces[-1]
    assert garp["after"] is None and garp["wanted"]() is True


async def test_addresses_go_to_the_instances_interface():
    d, nl, ex, sock = setup(instance_conf(interface="lo"))
    ex.execute(add(d))
    ex.execute(RemoveAddresses("ghost", ()))  # never added, gone by now: no interface known, no crash
    assert nl.log == [("add", "VI_1", ("10.0.0.100/24",), "lo"), ("del", "ghost", (), "")]


# -- sockets -----------------------------------------------------------------------------------
def rx(payload=b"\x31\x0a", src="10.0.0.9") -> Received:
    return Received(payload, src, "224.0.0.18", 255, 1, 4)


async def test_adopted_socket_feeds_datagrams_to_the_daemon():
    d, nl, ex, _ = setup()
    sock = FakeSocket("eth9", 4)
    ex.adopt_sockets({("eth9", 4): sock})
    sock.deliver(rx(src="10.0.0.7"))
    await until(lambda: d.datagrams, what="the datagram at the daemon")
    assert d.datagrams[0][0] == ("eth9", 4) and d.datagrams[0][1].src == "10.0.0.7"
    ex.close_sockets()


async def test_one_wakeup_reads_a_bounded_batch():
    d, nl, ex, sock = setup()
    for _ in range(READS_PER_WAKEUP + 36):
        sock.deliver(rx())
    ex._readable(("lo", 4))  # noqa: SLF001 - the reader callback, called as the loop would
    assert len(d.datagrams) == READS_PER_WAKEUP  # a flood cannot starve the timers
    ex._readable(("lo", 4))  # noqa: SLF001
    assert len(d.datagrams) == READS_PER_WAKEUP + 36


async def test_receive_errors_and_handler_errors_are_counted_not_raised(caplog):
    d, nl, ex, sock = setup()
    sock.recv_error = OSError(105, "No buffer space available")
    ex._readable(("lo", 4))  # noqa: SLF001
    assert d.node.drops["receive-error"] == 1
    d.datagram_error = RuntimeError("bug")
    sock.deliver(rx())
    sock.deliver(rx())
    with caplog.at_level(logging.ERROR, logger="chimeha.runtime"):
        ex._readable(("lo", 4))  # noqa: SLF001
    assert d.node.drops["internal-error"] == 2  # both packets were still read
    assert "unexpected error handling a packet from 10.0.0.9" in caplog.text


async def test_close_unused_sockets_keeps_the_ones_still_used():
    d, nl, ex, _ = setup()
    ex.sockets.clear()
    a, b = FakeSocket("eth0", 4), FakeSocket("eth1", 6)
    ex.adopt_sockets({("eth0", 4): a, ("eth1", 6): b})
    ex.close_unused_sockets({("eth0", 4): True})
    assert not a.closed and b.closed and set(ex.sockets) == {("eth0", 4)}
    loop = asyncio.get_running_loop()
    assert loop.remove_reader(a.fileno()) is True  # still registered...
    loop.add_reader(a.fileno(), ex._readable, ("eth0", 4))  # noqa: SLF001 - ...put it back
    ex.close_sockets()
    assert a.closed and ex.sockets == {}


async def test_join_groups_only_where_multicast_is_wanted_and_survives_an_error(caplog):
    d, nl, ex, _ = setup()
    ex.sockets.clear()
    a, b, c = FakeSocket("eth0", 4), FakeSocket("eth1", 4), FakeSocket("eth2", 4)
    a.join_error = OSError(19, "No such device")
    ex.sockets.update({("eth0", 4): a, ("eth1", 4): b, ("eth2", 4): c})
    with caplog.at_level(logging.ERROR, logger="chimeha.runtime"):
        ex.join_groups({("eth0", 4): True, ("eth1", 4): True, ("eth2", 4): False, ("eth3", 4): True})
    assert (b.joined, c.joined) == (1, 0)  # unicast-only stays out of the group
    assert "eth0: cannot join the VRRP multicast group" in caplog.text


# -- transitions, notify, hooks ----------------------------------------------------------------
def change(old, new, name="VI_1") -> StateChanged:
    return StateChanged(name, old=old, new=new, reason="test", at=1.0)


async def test_state_changes_notify_with_the_instances_priority_and_stop_for_init():
    d, nl, ex, sock = setup(instance_conf(priority=150))
    ex.notifier = rec = RecordingNotifier()
    ex.execute(change(State.INIT, State.INIT))  # not a transition anyone is told about
    ex.execute(change(State.INIT, State.BACKUP))
    ex.execute(change(State.BACKUP, State.MASTER))
    ex.execute(change(State.MASTER, State.INIT))
    cfg = d.config.instances["VI_1"]
    assert rec.calls == [("INSTANCE", "VI_1", "BACKUP", 150, cfg), ("INSTANCE", "VI_1", "MASTER", 150, cfg),
                         ("INSTANCE", "VI_1", "STOP", 150, cfg)]


async def test_group_changes_notify_the_groups_scripts_without_priority():
    text = TWO + "vrrp_sync_group G1 {\n group {\n  VI_1\n  VI_2\n }\n}\n"
    d, nl, ex, sock = setup(text)
    ex.notifier = rec = RecordingNotifier()
    ex.execute(GroupStateChanged("G1", "MASTER", 1.0))
    assert rec.calls == [("GROUP", "G1", "MASTER", None, d.config.sync_groups["G1"])]


async def test_a_broken_hook_does_not_stop_the_others_or_vrrp(caplog):
    d, nl, ex, sock = setup()
    ex.notifier = RecordingNotifier()
    seen, events = [], []

    def broken(_a):
        raise ValueError("observer bug")

    d.state_hooks += [broken, seen.append]
    d.event_hooks += [broken, events.append]
    prio = PriorityChanged("VI_1", old=100, new=90, reason="script chk failed", at=1.0)
    split = SplitBrain("VI_1", peer="10.0.0.2", peer_priority=100, local_priority=100, reason="two masters", at=1.0)
    with caplog.at_level(logging.ERROR, logger="chimeha.runtime"):
        ex.execute(change(State.BACKUP, State.MASTER))
        ex.execute(prio)
        ex.execute(split)
        ex.execute(advert())
    assert [(a.old, a.new) for a in seen] == [(State.BACKUP, State.MASTER)]
    assert events == [prio, split]
    assert caplog.text.count("hook") >= 3 and len(sock.sent) == 1


async def test_vips_changed_reach_the_virtual_servers_and_their_errors_stay_there(caplog):
    d, nl, ex, sock = setup()
    got = []

    class Lvs:
        def on_vips_changed(self, owned):
            got.append(owned)
            if len(got) == 2:
                raise RuntimeError("lvs bug")

    d.lvs = Lvs()
    ex.execute(VipsChanged("VI_1", frozenset({"10.0.0.100"}), 1.0))
    with caplog.at_level(logging.ERROR, logger="chimeha.runtime"):
        ex.execute(VipsChanged("VI_1", frozenset(), 2.0))
    assert got == [{"10.0.0.100"}, set()] and all(type(o) is set for o in got)
    assert "on_vips_changed failed" in caplog.text
    d.lvs = None
    ex.execute(VipsChanged("VI_1", frozenset(), 3.0))  # no virtual servers: nothing to tell


# -- notify FIFO configuration (the typed fields: tests/config/test_typed_options.py) ------------
async def test_setup_notify_opens_both_fifos_and_skips_a_bad_one(tmp_path, caplog):
    good, bad = tmp_path / "vrrp.fifo", tmp_path / "plain"
    bad.write_text("not a fifo")
    text = (f"global_defs {{\n vrrp_notify_fifo {good}\n notify_fifo {bad}\n}}\n" + instance_conf())
    d, nl, ex, sock = setup(text)
    with caplog.at_level(logging.WARNING, logger="chimeha.runtime"):
        ex.setup_notify(d.config)
    assert [f.path for f in ex.notifier.fifos] == [str(good)]
    assert f"notify FIFO {bad}" in caplog.text and "not a FIFO" in caplog.text
    ex.close_notify()


# -- virtual servers lifecycle -----------------------------------------------------------------
class FakeLvs:
    instances: list["FakeLvs"] = []
    fail_start = False

    def __init__(self, config, dataplane="auto"):
        self.config, self.dataplane, self.calls = config, dataplane, []
        FakeLvs.instances.append(self)

    async def start(self):
        if FakeLvs.fail_start:
            raise OSError("nft: not found")
        self.calls.append("start")

    def on_vips_changed(self, owned):
        self.calls.append(("vips", set(owned)))

    async def reload(self, config):
        self.calls.append("reload")

    async def stop(self):
        self.calls.append("stop")


@pytest.fixture
def fake_lvs(monkeypatch):
    from chimeha.runtime import lvs_manager

    FakeLvs.instances, FakeLvs.fail_start = [], False
    monkeypatch.setattr(lvs_manager, "LvsManager", FakeLvs)
    return FakeLvs


VS = "virtual_server 10.0.0.100 80 {\n lb_kind NAT\n protocol TCP\n real_server 10.0.0.5 80 {\n }\n}\n"


async def test_lvs_starts_only_with_virtual_servers_and_gets_the_owned_vips(fake_lvs):
    d, nl, ex, sock = setup(instance_conf())
    await ex.start_lvs(d.config)
    assert d.lvs is None and fake_lvs.instances == []
    d2, _, ex2, _ = setup(instance_conf() + VS)
    d2.dataplane = "nft"
    await ex2.start_lvs(d2.config)
    assert d2.lvs is fake_lvs.instances[0] and d2.lvs.dataplane == "nft"
    assert d2.lvs.calls == ["start", ("vips", set())]


async def test_lvs_that_cannot_start_leaves_vrrp_running(fake_lvs, caplog):
    fake_lvs.fail_start = True
    d, nl, ex, sock = setup(instance_conf() + VS)
    with caplog.at_level(logging.ERROR, logger="chimeha.runtime"):
        await ex.start_lvs(d.config)
    assert d.lvs is None and "virtual servers could not start: nft: not found" in caplog.text


async def test_reload_lvs_starts_reloads_or_stops_as_the_new_config_says(fake_lvs):
    with_vs, without = FakeDaemon(instance_conf() + VS).config, FakeDaemon(instance_conf()).config
    d, nl, ex, sock = setup(instance_conf())
    await ex.reload_lvs(with_vs)  # none before: started
    first = d.lvs
    assert first.calls == ["start", ("vips", set())]
    await ex.reload_lvs(with_vs)  # running: reloaded in place, VIPs told again
    assert d.lvs is first and first.calls[2:] == ["reload", ("vips", set())]
    await ex.reload_lvs(without)  # gone from the config: stopped
    assert d.lvs is None and first.calls[-1] == "stop"
    await ex.stop_lvs()  # nothing left to stop


async def test_a_worker_result_that_is_not_a_future_does_not_gate_adverts():
    d, nl, ex, sock = setup()
    nl.apply = lambda *a: None  # e.g. a worker that ran the change synchronously
    ex.execute(add(d))
    ex.execute(advert())
    assert len(sock.sent) == 1


async def test_vips_are_removed_from_the_interface_they_were_added_on_even_after_the_instance_is_gone():
    # A reload that removes an instance installs the new node before the removal executes: the
    # interface must come from the add, not from a spec that no longer exists (else dev "" and
    # the VIP silently stays on the interface).
    d, nl, ex, sock = setup(instance_conf(interface="lo"))
    vips = d.node.spec("VI_1").virtual_ipaddresses
    ex.execute(AddAddresses("VI_1", vips))
    d.node = FakeDaemon(instance_conf("VI_2", vrid=11)).node
    ex.execute(RemoveAddresses("VI_1", vips))
    assert nl.log[-1] == ("del", "VI_1", ("10.0.0.100/24",), "lo")


async def test_transitions_feed_the_mail_alerts_removed_instance_as_fault():
    d, nl, ex, sock = setup()
    ex.notifier = RecordingNotifier()
    seen = []
    ex.mail = SimpleNamespace(vrrp=lambda *a: seen.append(a))
    ex.execute(change(State.INIT, State.BACKUP))
    ex.execute(change(State.BACKUP, State.INIT))
    ex.execute(GroupStateChanged("G9", "MASTER", 1.0))
    # a reload removed GONE: its own shutdown is no mail (it is not in the node any more), the removal is
    ex.execute(change(State.MASTER, State.INIT, name="GONE"))
    ex.execute(InstanceRemoved("GONE", State.MASTER, 100, 2.0))
    ex.execute(InstanceRemoved("WAS_FAULT", State.FAULT, 0, 2.0))  # keepalived: nothing for one in FAULT
    assert seen == [("INSTANCE", "VI_1", "BACKUP"), ("INSTANCE", "VI_1", "STOP"), ("GROUP", "G9", "MASTER"),
                    ("INSTANCE", "GONE", "FAULT")]

"""runtime/executor.py for issue 10 item 5: the advert's group and TTL, group joins, and keepalived's extra notifies.

Real node, codec, executor and Notifier (with real FIFOs and scripts); only sockets and netlink are fakes.
"""

from __future__ import annotations

import os

from rtfakes import FakeDaemon, FakeNetlink, FakeSocket, instance_conf

from chimeha.runtime.executor import Executor
from chimeha.runtime.notify import Notifier, NotifyFifo
from chimeha.vrrp import packet
from chimeha.vrrp.events import InstanceRemoved, LowerPriorityHeard, PriorityChanged, SendAdvert, State, StateChanged


def setup(text: str):
    d = FakeDaemon(text)
    ex = Executor(d, FakeNetlink())
    sock = FakeSocket("lo", 4)
    ex.sockets[("lo", 4)] = sock
    return d, ex, sock


def advert(priority=100) -> SendAdvert:
    return SendAdvert("VI_1", vrid=10, version=3, family=4, priority=priority, interval=0.05,
                      addresses=("10.0.0.100",))


def with_fifo(ex, tmp_path):
    fifo = NotifyFifo(str(tmp_path / "fifo"))
    fifo.open()
    reader = os.open(fifo.path, os.O_RDONLY | os.O_NONBLOCK)
    ex.notifier = Notifier([fifo])
    return reader


def lines(fd) -> list[str]:
    try:
        return os.read(fd, 65536).decode().splitlines()
    except BlockingIOError:
        return []


# -- the wire ------------------------------------------------------------------------------------
async def test_multicast_advert_goes_to_the_instances_group_with_the_group_in_its_checksum():
    d, ex, sock = setup(instance_conf(extra=" mcast_dst_ip 224.0.0.99\n"))
    ex.execute(advert())
    ((payload, dst, src),) = sock.sent
    assert (dst, src) == ("224.0.0.99", "10.0.0.1")
    exp = packet.expectation_for(d.node.spec("VI_1"))
    ok = packet.validate(payload, source="10.0.0.1", destination="224.0.0.99", ttl=255, family=4,
                         expect=packet.Expectation(**{**exp.__dict__, "local_addresses": ()}))
    assert isinstance(ok, packet.Advertisement)


async def test_standard_group_keeps_the_default_destination():
    _d, ex, sock = setup(instance_conf())
    ex.execute(advert())
    assert [dst for _p, dst, _s in sock.sent] == [None] and sock.ttls == [None]


async def test_unicast_ttl_is_set_on_every_unicast_advert():
    _d, ex, sock = setup(instance_conf(extra=" unicast_ttl 9\n unicast_peer {\n  10.0.0.2\n  10.0.0.3\n }\n"))
    ex.execute(advert())
    assert [dst for _p, dst, _s in sock.sent] == ["10.0.0.2", "10.0.0.3"] and sock.ttls == [9, 9]


async def test_join_groups_joins_each_group_and_leaves_the_rest():
    _d, ex, sock = setup(instance_conf())
    ex.join_groups({("lo", 4): frozenset({"224.0.0.99", "224.0.0.18"})})
    assert set(sock.groups) == {None, "224.0.0.99"} and len(sock.groups) == 2  # None: the standard group
    assert sock.left == [frozenset({"224.0.0.99", "224.0.0.18"})]
    ex.join_groups({("lo", 4): frozenset()})  # now unicast only: leave everything
    assert sock.left[-1] == frozenset()


# -- notify_priority_changes ---------------------------------------------------------------------
def prio(new=80, state=State.MASTER) -> PriorityChanged:
    return PriorityChanged("VI_1", 100, new, "track_script chk failed", 1.0, state)


async def test_priority_change_line_only_when_asked(tmp_path):
    _d, ex, _s = setup(instance_conf())
    r = with_fifo(ex, tmp_path)
    ex.execute(prio())
    assert lines(r) == []  # keepalived's default: no line
    _d, ex, _s = setup(instance_conf(extra=" notify_priority_changes\n"))
    r = with_fifo(ex, tmp_path)
    ex.execute(prio(80, State.MASTER))
    ex.execute(prio(70, State.BACKUP))
    ex.execute(prio(60, State.FAULT))
    assert lines(r) == ['INSTANCE "VI_1" MASTER_PRIORITY 80', 'INSTANCE "VI_1" BACKUP_PRIORITY 70',
                        'INSTANCE "VI_1" BACKUP_PRIORITY 60']


async def test_priority_change_setting_instance_then_group_then_global(tmp_path):
    group = "vrrp_sync_group G {\n group {\n  VI_1\n }\n notify_priority_changes %s\n}\n"
    glob = "global_defs {\n vrrp_notify_priority_changes\n}\n"
    cases = [(glob, "", True), (glob + group % "false", "", False),
             (glob + group % "false", " notify_priority_changes true\n", True), (group % "true", "", True),
             ("", " notify_priority_changes off\n", False)]
    for head, extra, want in cases:
        _d, ex, _s = setup(head + instance_conf(extra=extra))
        r = with_fifo(ex, tmp_path)
        ex.execute(prio())
        assert bool(lines(r)) is want, (head, extra)
        os.close(r)
        ex.close_notify()


# -- notify_master_rx_lower_pri ---------------------------------------------------------------------
async def test_master_hearing_a_lower_priority_gets_the_line_and_runs_the_script(tmp_path):
    out = tmp_path / "ran"
    script = tmp_path / "rx.sh"
    script.write_text(f"#!/bin/sh\necho \"ran $#\" >> {out}\n")
    script.chmod(0o755)
    d, ex, _s = setup(instance_conf(priority=150, extra=f" notify_master_rx_lower_pri {script}\n"))
    r = with_fifo(ex, tmp_path)
    ex.execute(LowerPriorityHeard("VI_1", "10.0.0.2", 50, 1.0))
    assert lines(r) == ['INSTANCE "VI_1" MASTER_RX_LOWER_PRI 150']
    await ex.notifier.drain(10)
    assert out.read_text() == "ran 0\n"  # no arguments added: keepalived runs it as configured


async def test_lower_priority_line_is_written_without_a_script_too(tmp_path):
    _d, ex, _s = setup(instance_conf())
    r = with_fifo(ex, tmp_path)
    ex.execute(LowerPriorityHeard("VI_1", "10.0.0.2", 50, 1.0))
    assert lines(r) == ['INSTANCE "VI_1" MASTER_RX_LOWER_PRI 100'] and ex.notifier.executed == []


# -- an instance removed by a reload ------------------------------------------------------------------
async def _removed(tmp_path, extra: str, state: State):
    out = tmp_path / "calls"
    rec = tmp_path / "rec.sh"
    rec.write_text(f"#!/bin/sh\necho \"$*\" >> {out}\n")
    rec.chmod(0o755)
    d, ex, _s = setup(instance_conf(extra=extra.replace("REC", str(rec))) + instance_conf("VI_2", vrid=11,
                                                                                    vip="10.0.0.101/24"))
    ex.setup_notify(d.config)  # the snapshot a reload leaves behind
    r = with_fifo(ex, tmp_path)
    plan = d.node.plan_reload([d.node.spec("VI_2")])
    d.config = type(d.config)(**{**d.config.__dict__, "instances": {"VI_2": d.config.instances["VI_2"]}})
    d.node.apply_reload(plan, 5.0)
    for a in [StateChanged("VI_1", state, State.INIT, "shutdown", 5.0), InstanceRemoved("VI_1", state, 100, 5.0)]:
        ex.execute(a)
    await ex.notifier.drain(10)
    return lines(r), (out.read_text().splitlines() if out.exists() else [])


async def test_removed_instance_is_notified_as_fault_by_default_never_stop(tmp_path):
    fifo, calls = await _removed(tmp_path, " notify_fault 'REC fault'\n notify 'REC'\n", State.BACKUP)
    assert fifo == ['INSTANCE "VI_1" FAULT 100']
    assert calls == ["fault", "INSTANCE VI_1 FAULT 100"]


async def test_removed_instance_with_notify_deleted_is_deleted_and_runs_its_script(tmp_path):
    fifo, calls = await _removed(tmp_path, " notify_deleted 'REC deleted'\n notify 'REC'\n", State.MASTER)
    assert fifo == ['INSTANCE "VI_1" DELETED 100']
    assert calls == ["deleted", "INSTANCE VI_1 DELETED 100"]


async def test_removed_instance_bare_notify_deleted_reports_deleted_without_a_script(tmp_path):
    fifo, calls = await _removed(tmp_path, " notify_deleted\n notify 'REC'\n", State.BACKUP)
    assert fifo == ['INSTANCE "VI_1" DELETED 100'] and calls == ["INSTANCE VI_1 DELETED 100"]


async def test_removed_instance_in_fault_is_not_notified_without_notify_deleted(tmp_path):
    fifo, calls = await _removed(tmp_path, " notify 'REC'\n", State.FAULT)
    assert fifo == [] and calls == []

"""notify_priority_changes: the notify FIFO lines of chime-ha and of the real keepalived 2.2.7, byte for byte.

One node per daemon, the same configuration (global_defs asks for
priority-change notification, a track_file whose value x weight moves the
effective priority): the instance becomes MASTER alone, the tracked value
lowers its priority, then restores it, then the daemon stops. Both FIFOs must
carry the same lines in the same order (keepalived: ``INSTANCE "VI_P"
MASTER_PRIORITY 80`` ...).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from chalab import Daemon, in_parallel, stopped_at_end, wait_until

pytestmark = [pytest.mark.system, pytest.mark.keepalived]

CONF = """global_defs {
    router_id prio_%(kind)s
    vrrp_notify_fifo /run/vrrp.fifo
    vrrp_notify_priority_changes
}
track_file weightfile {
    file /run/w
    weight -20
}
vrrp_instance VI_P {
    state MASTER
    interface eth0
    virtual_router_id %(vrid)d
    priority 100
    version 3
    advert_int 0.5
    track_file {
        weightfile
    }
    virtual_ipaddress {
        %(vip)s/24
    }
}
"""


def _fifo_reader(node, argv: list[str] | None = None):
    """A notify FIFO at /run/vrrp.fifo in ``node`` and a reader of it (``cat`` to a pipe by default)."""
    node.run(["mkfifo", "/run/vrrp.fifo"])
    if argv is not None:
        return node.popen(argv)
    return node.popen(["cat", "/run/vrrp.fifo"], stdout=subprocess.PIPE, text=True)


def _node(topology, name: str, addr: str):
    from chimeha.lab.node import add_node

    return add_node(topology, name, f"{addr}/24")


def _both(topology, run, ka_args: tuple, ch_args: tuple):
    """``run(node, "keepalived", ...)`` and ``run(node, "chime-ha", ...)`` on two nodes at once.

    The nodes share the bridge but use different VRIDs and VIPs, so neither daemon
    acts on the other's adverts; the nodes are made first (the topology is not thread-safe).
    """
    ka_node, ch_node = _node(topology, "ka", ka_args[0]), _node(topology, "ch", ch_args[0])
    return in_parallel(lambda: run(ka_node, "keepalived", *ka_args),
                       lambda: run(ch_node, "chime-ha", *ch_args))


def _run(node, kind: str, addr: str, tmp_path, vip: str, vrid: int) -> list[str]:
    node.write_file("/run/w", "0\n")
    reader = _fifo_reader(node)
    d = Daemon(node, kind, CONF % {"kind": kind.replace("-", ""), "vrid": vrid, "vip": vip}, tmp_path)
    try:
        with stopped_at_end(d):
            d.start()
            wait_until(lambda: vip in node.addresses_on(), 10, f"{kind}: MASTER alone")
            node.write_file("/run/w", "1\n")  # 1 x -20: priority 80
            wait_until(lambda: "80" in _priority(d), 10, f"{kind}: priority 80")
            node.write_file("/run/w", "0\n")  # back to 100
            wait_until(lambda: "100" in _priority(d, after="80"), 10, f"{kind}: priority 100 again")
            d.stop()
            return reader.stdout.read().splitlines()
    finally:
        node.stop(reader)


def _priority(d: Daemon, after: str | None = None) -> str:
    """The priorities the daemon logged it changed to (keepalived: "Changing effective priority ...")."""
    log = d.log()
    if after is not None:
        cut = max(log.rfind(f"to {after}"), log.rfind(f"-> {after}"))
        log = log[cut + 1:] if cut >= 0 else ""
    words = []
    for line in log.splitlines():
        if "effective priority from" in line or "priority " in line and " -> " in line:
            words.append(line.rsplit(" ", 1)[-1] if "effective" in line else line.split(" -> ")[1].split()[0])
    return " ".join(words)


def test_priority_change_fifo_lines_match_keepalived(topology, tmp_path):
    ka, ch = _both(topology, _run, ("10.9.1.11", tmp_path, "10.9.1.100", 91),
                   ("10.9.1.12", tmp_path, "10.9.1.101", 92))
    assert 'INSTANCE "VI_P" MASTER_PRIORITY 80' in ka, ka  # what keepalived 2.2.7 writes
    print("keepalived FIFO:", ka)
    assert ch == ka, f"chime-ha {ch} != keepalived {ka}"


GROUP_CONF = """global_defs {
    router_id grp_%(kind)s
    vrrp_notify_fifo /run/vrrp.fifo
}
vrrp_sync_group G {
    group {
        VI_A
        VI_B
    }
}
vrrp_instance VI_A {
    state MASTER
    interface eth0
    virtual_router_id %(vrid)d
    priority 100
    version 3
    advert_int 0.5
    virtual_ipaddress {
        %(vip)s/24
    }
}
vrrp_instance VI_B {
    state MASTER
    interface eth0
    virtual_router_id %(vrid2)d
    priority 100
    version 3
    advert_int 0.5
    virtual_ipaddress {
        %(vip2)s/24
    }
}
"""


def _run_group(node, kind: str, addr: str, tmp_path, vips: tuple[str, str], vrid: int) -> list[str]:
    reader = _fifo_reader(node)
    d = Daemon(node, kind, GROUP_CONF % {"kind": kind.replace("-", ""), "vrid": vrid, "vrid2": vrid + 1,
                                         "vip": vips[0], "vip2": vips[1]}, tmp_path)
    try:
        with stopped_at_end(d):
            d.start()
            wait_until(lambda: set(vips) <= node.addresses_on(), 10, f"{kind}: both MASTER alone")
            d.stop()
            return reader.stdout.read().splitlines()
    finally:
        node.stop(reader)


def test_sync_group_fifo_lines_match_keepalived(topology, tmp_path):
    """keepalived 2.2.7 writes a group's line with priority 0: ``GROUP "G" MASTER 0``."""
    ka, ch = _both(topology, _run_group, ("10.9.1.11", tmp_path, ("10.9.1.100", "10.9.1.102"), 93),
                   ("10.9.1.12", tmp_path, ("10.9.1.101", "10.9.1.103"), 95))
    groups = [[line for line in lines if line.startswith("GROUP")] for lines in (ka, ch)]
    assert groups[0] == ['GROUP "G" BACKUP 0', 'GROUP "G" MASTER 0', 'GROUP "G" STOP 0'], ka
    assert groups[1] == groups[0], (ch, ka)
    # Every instance line keepalived wrote, chime-ha wrote too (the order within a group differs: see docs/vrrp.md).
    assert sorted(line for line in ch if line.startswith("INSTANCE")) == \
        sorted(line for line in ka if line.startswith("INSTANCE")), (ch, ka)


DEL_CONF = """global_defs {
    router_id del_%(kind)s
    vrrp_notify_fifo /run/vrrp.fifo
}
""" + "".join("""vrrp_instance VI_%(n)s {
    state MASTER
    interface eth0
    virtual_router_id %%(vrid%(n)s)d
    priority 100
    version 3
    advert_int 0.5
%(extra)s    virtual_ipaddress {
        %%(vip%(n)s)s/24
    }
}
""" % {"n": n, "extra": extra} for n, extra in (("A", ""), ("B", "%(deleted)s"), ("C", "")))


READER = """
import os
fd = os.open("/run/vrrp.fifo", os.O_RDWR)  # also a writer: never sees EOF when the daemon reopens it
with open("/run/fifo.log", "ab", buffering=0) as out:
    while True:
        out.write(os.read(fd, 65536))
"""


def _run_removal(node, kind: str, addr: str, tmp_path, base: int, deleted: bool) -> list[str]:
    """Three MASTER instances; a SIGHUP to a config without VI_B and VI_C (VI_B has notify_deleted if asked)."""
    # keepalived closes and reopens the FIFO on a reload: a plain `cat` would stop at that EOF.
    reader = _fifo_reader(node, [sys.executable, "-c", READER])
    net = addr.rsplit(".", 1)[0]
    vals = {"kind": kind.replace("-", ""), "deleted": "    notify_deleted\n" if deleted else "",
            "vridA": base, "vridB": base + 1, "vridC": base + 2,
            "vipA": f"{net}.{base}", "vipB": f"{net}.{base + 1}", "vipC": f"{net}.{base + 2}"}
    full = DEL_CONF % vals
    d = Daemon(node, kind, full, tmp_path)
    try:
        with stopped_at_end(d):
            d.start()
            wait_until(lambda: {vals["vipA"], vals["vipB"], vals["vipC"]} <= node.addresses_on(), 10,
                       f"{kind}: three MASTERs")
            only_a = full[:full.index("vrrp_instance VI_B")]
            node.write_file(d.conf, only_a)
            d.signal("HUP")
            wait_until(lambda: not ({vals["vipB"], vals["vipC"]} & node.addresses_on()), 10, f"{kind}: B, C removed")
            time.sleep(1.0)
            d.stop()
            time.sleep(0.3)
            return node.read_file("/run/fifo.log").splitlines()
    finally:
        node.stop(reader)


@pytest.mark.parametrize("deleted", [False, True], ids=["default-fault", "notify_deleted"])
def test_instances_removed_by_reload_are_notified_as_keepalived_does(topology, tmp_path, deleted):
    ka, ch = _both(topology, _run_removal, ("10.9.2.11", tmp_path, 110, deleted),
                   ("10.9.2.12", tmp_path, 120, deleted))
    print("keepalived FIFO:", ka)
    removed = 'INSTANCE "VI_B" DELETED 100' if deleted else 'INSTANCE "VI_B" FAULT 100'
    assert removed in ka and 'INSTANCE "VI_C" FAULT 100' in ka, ka
    assert sorted(ch) == sorted(ka), (ch, ka)


SENDER = os.path.join(os.path.dirname(__file__), "..", "vrrp", "send_helper.py")
RX_CONF = """global_defs {
    router_id rx_%(kind)s
    vrrp_notify_fifo /run/vrrp.fifo
}
vrrp_instance VI_R {
    state MASTER
    interface eth0
    virtual_router_id %(vrid)d
    priority 200
    advert_int 1
    lower_prio_no_advert
    notify_master_rx_lower_pri /run/rx.sh
    virtual_ipaddress {
        %(vip)s/24
    }
}
"""


def _run_rx_lower(node, kind: str, addr: str, rogue, tmp_path, vip: str, vrid: int):
    """A MASTER hears three adverts of priority 50 from a third host (a lower-priority master)."""
    node.write_file("/run/rx.sh", '#!/bin/sh\necho "args=$#" >> /run/rx.log\n', mode=0o755)
    reader = _fifo_reader(node)
    d = Daemon(node, kind, RX_CONF % {"kind": kind.replace("-", ""), "vrid": vrid, "vip": vip}, tmp_path)
    try:
        with stopped_at_end(d):
            d.start()
            wait_until(lambda: vip in node.addresses_on(), 10, f"{kind}: MASTER alone")
            cfg = {"family": 4, "ifname": "eth0", "source": addr.rsplit(".", 1)[0] + ".99", "version": 2,
                   "vrid": vrid, "priority": 50, "vips": [vip], "interval": 0.4, "auth_pass": None, "seconds": 1.1}
            rogue.run([sys.executable, SENDER, json.dumps(cfg)], timeout=20)
            wait_until(lambda: node.run(["test", "-e", "/run/rx.log"], check=False).returncode == 0
                       and len(node.read_file("/run/rx.log").splitlines()) >= 3, 5, f"{kind}: rx script runs")
            d.stop()
            return reader.stdout.read().splitlines(), node.read_file("/run/rx.log").splitlines()
    finally:
        node.stop(reader)


def test_master_rx_lower_pri_matches_keepalived(topology, tmp_path):
    # Each rogue sends from .99 of its own /24, so both get a distinct subnet here.
    rogues = [topology.add_host(f"r{name}", f"{net}.99/24") for name, net in (("ka", "10.9.3"), ("ch", "10.9.5"))]
    (ka, ka_runs), (ch, ch_runs) = _both(topology, _run_rx_lower,
                                         ("10.9.3.11", rogues[0], tmp_path, "10.9.3.100", 97),
                                         ("10.9.5.12", rogues[1], tmp_path, "10.9.5.101", 98))
    print("keepalived FIFO:", ka, ka_runs)
    want = ['INSTANCE "VI_R" BACKUP 200', 'INSTANCE "VI_R" MASTER 200'] + \
        ['INSTANCE "VI_R" MASTER_RX_LOWER_PRI 200'] * 3 + ['INSTANCE "VI_R" STOP 200']
    assert ka == want, ka
    assert ch == ka
    assert ka_runs == ch_runs == ["args=0"] * 3  # the script gets no arguments


def _run_initial(node, kind: str, addr: str, tmp_path, vip: str, vrid: int) -> list[str]:
    """The tracked value already lowers the priority when the daemon starts."""
    node.write_file("/run/w", "1\n")
    reader = _fifo_reader(node)
    d = Daemon(node, kind, CONF % {"kind": kind.replace("-", ""), "vrid": vrid, "vip": vip}, tmp_path)
    try:
        with stopped_at_end(d):
            d.start()
            wait_until(lambda: vip in node.addresses_on(), 10, f"{kind}: MASTER alone")
            time.sleep(0.5)
            d.stop()
            return reader.stdout.read().splitlines()
    finally:
        node.stop(reader)


def test_priority_lowered_at_start_fifo_lines_match_keepalived(topology, tmp_path):
    ka, ch = _both(topology, _run_initial, ("10.9.4.11", tmp_path, "10.9.4.100", 81),
                   ("10.9.4.12", tmp_path, "10.9.4.101", 82))
    print("keepalived FIFO:", ka)
    assert ch == ka, (ch, ka)

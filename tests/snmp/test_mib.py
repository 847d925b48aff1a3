"""The SNMP objects built from a VrrpNode's status (chimeha.snmp.mib), driven by a fake clock."""

from chimeha.snmp import agentx as ax
from chimeha.snmp import mib
from chimeha.vrrp import packet
from chimeha.vrrp.events import InstanceSpec
from chimeha.vrrp.node import VrrpNode

MC = packet.MCAST_V4
V3 = mib.VRRPV3_MIB + (1, 1, 1, 1)
V3_STATS = mib.VRRPV3_MIB + (1, 2, 5, 1)
V2 = mib.VRRP_MIB + (1, 3, 1)
KA = mib.KEEPALIVED_MIB + (2, 3, 1)


def node():
    a = InstanceSpec("VI_1", 51, 150, interface="eth0", primary_address="10.0.0.1", advert_addresses=("10.0.0.100",),
                     virtual_ipaddresses=("10.0.0.100/24", "10.0.0.101/24"), auth_type="PASS", auth_pass="x",
                     sync_group="G1")
    b = InstanceSpec("VI_6", 52, 100, version=3, family=6, interface="eth0", primary_address="fe80::1",
                     advert_addresses=("fd00::100",), virtual_ipaddresses=("fd00::100/64",), advert_int=0.5,
                     nopreempt=True)
    n = VrrpNode([a, b])
    n.start(0.0)
    n.handle_timer(10.0)  # no master heard: both become MASTER
    n.receive_datagram(packet.encode(2, 51, 200, ["10.0.0.100"], 1.0, auth_type="PASS", auth_pass="x",
                                     source="10.0.0.2"), "10.0.0.2", MC, 255, 4, "eth0", 11.0)  # VI_1 yields
    n.receive_datagram(packet.encode(2, 51, 200, ["10.0.0.100"], 1.0, source="10.0.0.2"),
                       "10.0.0.2", MC, 255, 4, "eth0", 11.5)  # wrong auth: one auth drop
    n.receive_datagram(b"\x21\x63", "10.0.0.2", MC, 255, 4, "eth0", 11.6)  # too short: node-level drop
    n.pop_actions()
    return n


def test_vrrpv3_operations_and_statistics_rows():
    n = node()
    objs = mib.vrrpv3_objects(n.status(), {"eth0": 2}, uptime_ticks=1234, node_drops=n.drops)
    r1, r6 = (2, 51, 1), (2, 52, 2)
    assert objs[V3 + (6,) + r1] == (ax.INTEGER, 2)  # VI_1 backup after the higher priority advert
    assert objs[V3 + (6,) + r6] == (ax.INTEGER, 3)  # VI_6 master
    assert objs[V3 + (3,) + r1] == (ax.OCTET_STRING, bytes([10, 0, 0, 2]))  # the master's address
    assert objs[V3 + (4,) + r6][1] == bytes.fromhex("fe80" + "00" * 13 + "01")
    assert objs[V3 + (5,) + r6] == (ax.OCTET_STRING, bytes([0, 0, 0x5E, 0, 2, 52]))  # IPv6 virtual MAC
    assert objs[V3 + (7,) + r6] == (ax.GAUGE32, 100)
    assert objs[V3 + (8,) + r1] == (ax.INTEGER, 2)
    assert objs[V3 + (9,) + r6] == (ax.INTEGER, 50)  # centiseconds
    assert objs[V3 + (10,) + r6] == (ax.INTEGER, mib.FALSE)  # nopreempt
    assert objs[V3 + (12,) + r6] == (ax.TIME_TICKS, 1234)
    addr = mib.VRRPV3_MIB + (1, 1, 2, 1, 2) + r1
    assert objs[addr + (4, 10, 0, 0, 101)] == (ax.INTEGER, mib.ROW_ACTIVE)
    assert objs[V3_STATS + (1,) + r1] == (ax.COUNTER32, 1)  # became master once
    assert objs[V3_STATS + (2,) + r6] == (ax.INTEGER, 3)  # masterNoResponse
    assert objs[V3_STATS + (2,) + r1] == (ax.INTEGER, 0)  # notMaster
    assert objs[V3_STATS + (3,) + r1] == (ax.COUNTER64, 1)  # one advert accepted
    assert objs[mib.VRRPV3_MIB + (1, 2, 1, 0)][0] == ax.COUNTER64


def test_interface_without_ifindex_has_no_rows():
    n = node()
    objs = mib.vrrpv3_objects(n.status(), {}, uptime_ticks=0, node_drops=n.drops)
    assert not [k for k in objs if k[:len(V3)] == V3]


def test_rfc2787_lists_only_ipv4_v2_instances_and_counts_auth_failures():
    n = node()
    objs = mib.vrrpv2_objects(n.status(), {"eth0": 2}, uptime_ticks=0, node_drops=n.drops)
    rows = {k[len(V2) + 1:] for k in objs if k[:len(V2)] == V2}
    assert rows == {(2, 51)}
    assert objs[V2 + (3, 2, 51)] == (ax.INTEGER, 2)
    assert objs[V2 + (7, 2, 51)] == (ax.IP_ADDRESS, "10.0.0.2")
    assert objs[V2 + (9, 2, 51)] == (ax.INTEGER, 2)  # simpleTextPassword
    assert objs[mib.VRRP_MIB + (1, 4, 1, 2, 2, 51, 10, 0, 0, 100)] == (ax.INTEGER, 1)
    assert objs[mib.VRRP_MIB + (2, 4, 1, 4, 2, 51)] == (ax.COUNTER32, 1)  # the wrong-password advert


def test_keepalived_instance_table():
    n = node()
    objs = mib.keepalived_objects(n.status(), version="chime-ha 0.1.0", router_id="node1")
    assert objs[mib.KEEPALIVED_MIB + (1, 1, 0)] == (ax.OCTET_STRING, b"chime-ha 0.1.0")
    assert objs[mib.KEEPALIVED_MIB + (1, 2, 0)] == (ax.OCTET_STRING, b"node1")
    assert objs[KA + (2, 1)] == (ax.OCTET_STRING, b"VI_1") and objs[KA + (2, 2)] == (ax.OCTET_STRING, b"VI_6")
    assert objs[KA + (4, 1)] == (ax.INTEGER, 1) and objs[KA + (4, 2)] == (ax.INTEGER, 2)  # backup, master
    assert objs[KA + (7, 1)] == (ax.INTEGER, 150) and objs[KA + (3, 2)] == (ax.GAUGE32, 52)
    assert objs[KA + (12, 1)] == (ax.GAUGE32, 1) and objs[KA + (12, 2)] == (ax.GAUGE32, 50)
    assert objs[KA + (13, 2)] == (ax.INTEGER, 2) and objs[KA + (15, 1)] == (ax.INTEGER, 1)
    assert objs[KA + (18, 1)] == (ax.OCTET_STRING, b"G1") and (KA + (18, 2)) not in objs
    assert objs[KA + (35, 1)] == (ax.OCTET_STRING, bytes([224, 0, 0, 18])) and objs[KA + (34, 2)] == (ax.INTEGER, 2)
    assert (KA + (1, 1)) not in objs  # the index column is not-accessible
    assert objs[KA + (30, 2)] == (ax.INTEGER, 3)
    # a walk of the table through the view visits every cell in column order
    view = ax.MibView(objs)
    seen, rng = [], ax.SearchRange(KA, KA[:-1] + (KA[-1] + 1,), False)
    while True:
        vb = view.next(rng)
        if vb.type == ax.END_OF_MIB_VIEW:
            break
        seen.append(vb.oid)
        rng = ax.SearchRange(vb.oid, rng.end, False)
    assert seen == sorted(k for k in objs if k[:len(KA)] == KA)


def test_checker_tables_from_the_model_and_the_manager_snapshot():
    from chimeha.config import loads
    from chimeha.snmp import mib_checker

    cfg = loads("""virtual_server 10.0.0.10 8801 {
    lb_algo wrr
    lb_kind NAT
    protocol TCP
    persistence_timeout 300
    delay_loop 2
    quorum 2
    sorry_server 10.0.0.99 8801
    real_server 10.0.0.11 8801 {
        weight 3
        TCP_CHECK {
        }
    }
    real_server 10.0.0.12 8801 {
        TCP_CHECK {
        }
    }
}
virtual_server fwmark 7 {
    lb_algo mh
    protocol UDP
    real_server 10.0.0.13 53 {
    }
}
""").config
    snap = [{"active": True, "quorum": False,
             "real_servers": [{"healthy": True, "weight": 3, "stats": {"connections": 5, "bytes_in": 100}},
                              {"healthy": False, "weight": 0, "stats": {"connections": 2}}]},
            {"active": False, "quorum": True, "real_servers": [{"healthy": True, "weight": 1}]}]
    objs = mib_checker.checker_objects(cfg.virtual_servers, snap)
    vs, rs = mib.KEEPALIVED_MIB + (3, 3, 1), mib.KEEPALIVED_MIB + (3, 4, 1)
    assert objs[vs + (2, 1)] == (ax.INTEGER, 2) and objs[vs + (6, 1)] == (ax.OCTET_STRING, bytes([10, 0, 0, 10]))
    assert objs[vs + (7, 1)] == (ax.GAUGE32, 8801) and objs[vs + (9, 1)] == (ax.INTEGER, 2)  # wrr
    assert objs[vs + (11, 1)] == (ax.INTEGER, 1) and objs[vs + (11, 2)] == (ax.INTEGER, 2)  # alive / dead
    assert objs[vs + (14, 1)] == (ax.GAUGE32, 300) and objs[vs + (16, 1)] == (ax.GAUGE32, 2)
    assert objs[vs + (20, 1)] == (ax.GAUGE32, 2) and objs[vs + (21, 1)] == (ax.GAUGE32, 1)
    assert objs[vs + (23, 1)] == (ax.INTEGER, 2) and objs[vs + (23, 2)] == (ax.INTEGER, 1)  # quorum notMet / met
    assert objs[vs + (27, 1)] == (ax.COUNTER32, 7) and objs[vs + (30, 1)] == (ax.COUNTER32, 100)
    assert objs[vs + (2, 2)] == (ax.INTEGER, 1) and objs[vs + (4, 2)] == (ax.GAUGE32, 7)
    assert objs[vs + (8, 2)] == (ax.INTEGER, 2) and objs[vs + (9, 2)] == (ax.INTEGER, 13)  # udp, mh
    assert objs[rs + (6, 1, 1)] == (ax.INTEGER, 1) and objs[rs + (6, 1, 2)] == (ax.INTEGER, 2)
    assert objs[rs + (7, 1, 1)] == (ax.INTEGER, 3) and objs[rs + (14, 1, 1)] == (ax.COUNTER32, 5)
    assert objs[rs + (2, 1, 3)] == (ax.INTEGER, 2) and objs[rs + (4, 1, 3)][1] == bytes([10, 0, 0, 99])  # sorry
    assert objs[rs + (5, 2, 1)] == (ax.GAUGE32, 53)

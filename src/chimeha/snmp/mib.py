"""The objects chime-ha serves over SNMP, built from the node's typed status (pure).

Three MIBs, as keepalived serves them (``enable_snmp_rfcv2`` / ``enable_snmp_rfcv3`` /
``enable_snmp_vrrp``):

* **VRRP-MIB** (RFC 2787, ``mib-2 68``): ``vrrpOperTable`` and
  ``vrrpAssoIpAddrTable`` indexed by (ifIndex, VRID), the router error
  counters and ``vrrpRouterStatsTable``; IPv4 VRRPv2 instances only, as the
  MIB defines it.

* **VRRPv3-MIB** (RFC 6527, ``mib-2 207``): ``vrrpv3OperationsTable`` indexed by
  (ifIndex, VRID, address type), ``vrrpv3AssociatedIpAddrTable`` (the VIPs),
  the router-wide error counters and ``vrrpv3StatisticsTable`` (same index).
  It describes VRRPv2 instances too: the MIB's rows carry no version, and
  keepalived lists both.
* **KEEPALIVED-MIB** basics (``enterprises 9586 100 5``): ``version``,
  ``routerId`` and the first columns of ``vrrpInstanceTable`` (index = the
  instance's position in the config, from 1): name, VRID, state, initial and
  wanted state, base and effective priority, VIP status, interface, advert
  interval, preempt, preempt delay, auth type, sync group, VRRP version.

Values keepalived reports that chime-ha has no equivalent for are left out
rather than made up (docs/operations.md lists them).
"""

from __future__ import annotations

import ipaddress
from typing import Iterable, Mapping

from chimeha.snmp.agentx import COUNTER32, COUNTER64, GAUGE32, INTEGER, IP_ADDRESS, OCTET_STRING, TIME_TICKS, Oid
from chimeha.vrrp.events import State
from chimeha.vrrp.node_types import InstanceStatus

VRRP_MIB: Oid = (1, 3, 6, 1, 2, 1, 68)
VRRPV3_MIB: Oid = (1, 3, 6, 1, 2, 1, 207)
KEEPALIVED_MIB: Oid = (1, 3, 6, 1, 4, 1, 9586, 100, 5)

_OPS_ENTRY = VRRPV3_MIB + (1, 1, 1, 1)  # vrrpv3OperationsEntry
_ADDR_ENTRY = VRRPV3_MIB + (1, 1, 2, 1)  # vrrpv3AssociatedIpAddrEntry
_STATS = VRRPV3_MIB + (1, 2)  # vrrpv3Statistics
_STATS_ENTRY = _STATS + (5, 1)  # vrrpv3StatisticsEntry
_KA_INSTANCE = KEEPALIVED_MIB + (2, 3, 1)  # vrrpInstanceEntry

ROW_ACTIVE, TRUE, FALSE = 1, 1, 2
REFRESH_MS = 100  # how stale a served value may be (the subagent reuses one view this long)
_V3_STATUS = {State.BACKUP: 2, State.MASTER: 3}  # everything else: initialize(1)
_KA_STATE = {State.INIT: 0, State.BACKUP: 1, State.MASTER: 2, State.FAULT: 3}  # VrrpState TC
_KA_WORD = {"BACKUP": 1, "MASTER": 2}
_AUTH = {None: 0, "PASS": 1, "AH": 2}

Objects = dict[Oid, tuple[int, object]]


def _addr(text: str | None) -> bytes:
    if not text:
        return b""
    return ipaddress.ip_address(text.split("/", 1)[0].split("%", 1)[0]).packed


def _bare(va) -> str:
    return (va.address if hasattr(va, "address") else str(va)).split("/", 1)[0]


def _new_master_reason(st: InstanceStatus) -> int:
    """vrrpv3StatisticsNewMasterReason: notMaster(0), priority(1), preempted(2), masterNoResponse(3).

    Reported from the current state's transition: a backup says notMaster(0)
    even if it was master before (keepalived keeps the last master's reason).
    """
    if st.state is not State.MASTER:
        return 0
    reason = (st.last_change.reason if st.last_change else "").lower()
    if "no advertisement" in reason or "priority 0" in reason:
        return 3
    if "preempt" in reason or "lower priority" in reason:
        return 2
    return 1


def vrrpv3_objects(statuses: Iterable[InstanceStatus], ifindex: Mapping[str, int], *,
                   uptime_ticks: int, node_drops: Mapping[str, int]) -> Objects:
    """RFC 6527's operations, associated-address and statistics objects."""
    out: Objects = {}
    for st in statuses:
        spec = st.spec
        idx = ifindex.get(spec.interface)
        if idx is None:  # interface gone: no row (the MIB's index needs an ifIndex)
            continue
        atype = 1 if spec.family == 4 else 2
        row = (idx, spec.vrid, atype)
        mac = bytes([0, 0, 0x5E, 0, 1 if spec.family == 4 else 2, spec.vrid])
        vips = [v for v in spec.virtual_ipaddresses if ipaddress.ip_address(_bare(v)).version == spec.family]
        cols = {
            3: (OCTET_STRING, _addr(st.master)),
            4: (OCTET_STRING, _addr(spec.primary_address)),
            5: (OCTET_STRING, mac),
            6: (INTEGER, _V3_STATUS.get(st.state, 1)),
            7: (GAUGE32, st.priority),
            8: (INTEGER, len(vips)),
            9: (INTEGER, round(st.advert_interval * 100)),
            10: (INTEGER, FALSE if spec.nopreempt else TRUE),
            # chime-ha never filters traffic to its VIPs: the accept mode is in effect.
            11: (INTEGER, TRUE),
            12: (TIME_TICKS, uptime_ticks if st.state in _V3_STATUS else 0),
            13: (INTEGER, ROW_ACTIVE),
        }
        for col, tv in cols.items():
            out[_OPS_ENTRY + (col,) + row] = tv
        for v in vips:
            raw = _addr(_bare(v))
            out[_ADDR_ENTRY + (2,) + row + (len(raw),) + tuple(raw)] = (INTEGER, ROW_ACTIVE)
        d, c = st.drops, st.counters
        stats = {
            1: (COUNTER32, c.get("became_master", 0)),
            2: (INTEGER, _new_master_reason(st)),
            3: (COUNTER64, st.received),
            4: (COUNTER64, d.get("advert-interval", 0)),
            5: (COUNTER64, d.get("ttl", 0)),
            6: (INTEGER, 0),
            7: (COUNTER64, c.get("priority_zero_received", 0)),
            8: (COUNTER64, c.get("priority_zero_sent", 0)),
            9: (COUNTER64, d.get("type", 0)),
            10: (COUNTER64, d.get("address-list", 0) + d.get("address-count", 0)),
            11: (COUNTER64, d.get("length", 0)),
            12: (TIME_TICKS, 0),
            13: (GAUGE32, REFRESH_MS),
        }
        for col, tv in stats.items():
            out[_STATS_ENTRY + (col,) + row] = tv
    totals = _drop_totals(statuses, node_drops)
    out[_STATS + (1, 0)] = (COUNTER64, totals.get("checksum", 0))
    out[_STATS + (2, 0)] = (COUNTER64, totals.get("version", 0))
    out[_STATS + (3, 0)] = (COUNTER64, totals.get("vrid-unknown", 0))
    out[_STATS + (4, 0)] = (TIME_TICKS, 0)
    return out


_V2_OPER = VRRP_MIB + (1, 3, 1)  # vrrpOperEntry
_V2_ADDR = VRRP_MIB + (1, 4, 1)  # vrrpAssoIpAddrEntry
_V2_STATS = VRRP_MIB + (2,)
_V2_AUTH = {None: 1, "PASS": 2, "AH": 3}  # noAuthentication, simpleTextPassword, ipAuthenticationHeader


def vrrpv2_objects(statuses: Iterable[InstanceStatus], ifindex: Mapping[str, int], *,
                   uptime_ticks: int, node_drops: Mapping[str, int]) -> Objects:
    """RFC 2787's objects, for the IPv4 VRRPv2 instances."""
    out: Objects = {VRRP_MIB + (1, 1, 0): (INTEGER, 2), VRRP_MIB + (1, 2, 0): (INTEGER, FALSE)}
    v2 = [st for st in statuses if st.spec.family == 4 and st.spec.version == 2]
    for st in v2:
        spec = st.spec
        idx = ifindex.get(spec.interface)
        if idx is None:
            continue
        row = (idx, spec.vrid)
        vips = [_bare(v) for v in spec.virtual_ipaddresses if ipaddress.ip_address(_bare(v)).version == 4]
        cols = {
            2: (OCTET_STRING, bytes([0, 0, 0x5E, 0, 1, spec.vrid])),
            3: (INTEGER, _V3_STATUS.get(st.state, 1)),
            4: (INTEGER, 1),  # adminState up
            5: (INTEGER, st.priority),
            6: (INTEGER, len(vips)),
            7: (IP_ADDRESS, (st.master or "0.0.0.0").split("/", 1)[0]),
            8: (IP_ADDRESS, spec.primary_address or "0.0.0.0"),
            9: (INTEGER, _V2_AUTH.get(spec.auth_type, 1)),
            11: (INTEGER, round(st.advert_interval)),
            12: (INTEGER, FALSE if spec.nopreempt else TRUE),
            13: (TIME_TICKS, 0),
            14: (INTEGER, 1),  # protocol ip
            15: (INTEGER, ROW_ACTIVE),
        }
        for col, tv in cols.items():
            out[_V2_OPER + (col,) + row] = tv
        for v in vips:
            out[_V2_ADDR + (2,) + row + tuple(ipaddress.IPv4Address(v).packed)] = (INTEGER, ROW_ACTIVE)
        d, c = st.drops, st.counters
        stats = {1: c.get("became_master", 0), 2: st.received, 3: d.get("advert-interval", 0),
                 4: d.get("auth", 0), 5: d.get("ttl", 0), 6: c.get("priority_zero_received", 0),
                 7: c.get("priority_zero_sent", 0), 8: d.get("type", 0),
                 9: d.get("address-list", 0) + d.get("address-count", 0), 10: 0, 11: 0, 12: d.get("length", 0)}
        for col, n in stats.items():
            out[_V2_STATS + (4, 1, col) + row] = (COUNTER32, n)
    totals = _drop_totals(statuses, node_drops)
    out[_V2_STATS + (1, 0)] = (COUNTER32, totals.get("checksum", 0))
    out[_V2_STATS + (2, 0)] = (COUNTER32, totals.get("version", 0))
    out[_V2_STATS + (3, 0)] = (COUNTER32, totals.get("vrid-unknown", 0))
    return out


def _drop_totals(statuses: Iterable[InstanceStatus], node_drops: Mapping[str, int]) -> dict[str, int]:
    totals = dict(node_drops)
    for st in statuses:
        for reason, n in st.drops.items():
            totals[reason] = totals.get(reason, 0) + n
    return totals


def keepalived_objects(statuses: Iterable[InstanceStatus], *, version: str, router_id: str | None) -> Objects:
    """The KEEPALIVED-MIB ``version``, ``routerId`` and ``vrrpInstanceTable`` basics."""
    out: Objects = {KEEPALIVED_MIB + (1, 1, 0): (OCTET_STRING, version.encode())}
    if router_id:
        out[KEEPALIVED_MIB + (1, 2, 0)] = (OCTET_STRING, router_id.encode())
    for i, st in enumerate(statuses, start=1):
        spec = st.spec
        initial = _KA_WORD.get(str(spec.initial_state).upper(), 1)
        cols = {
            2: (OCTET_STRING, spec.name.encode()),
            3: (GAUGE32, spec.vrid),
            4: (INTEGER, _KA_STATE.get(st.state, 4)),
            5: (INTEGER, initial),
            6: (INTEGER, initial),
            7: (INTEGER, spec.priority),
            8: (INTEGER, st.priority),
            9: (INTEGER, 1 if st.vips_owned else 2),  # allSet(1) / notAllSet(2)
            10: (OCTET_STRING, spec.vip_interface.encode()),  # keepalived: vrrp->ifp, the VMAC
            12: (GAUGE32, round(st.advert_interval) if spec.version == 2 else round(st.advert_interval * 100)),
            13: (INTEGER, 2 if spec.nopreempt else 1),
            14: (GAUGE32, round(spec.preempt_delay)),
            15: (INTEGER, _AUTH.get(spec.auth_type, 0)),
            19: (GAUGE32, round(spec.garp_master_delay)),
            30: (INTEGER, spec.version),
        }
        if not spec.unicast_peers:  # vrrpInstanceMulticastAddressType / Address
            group = getattr(spec, "mcast_group", "") or ("224.0.0.18" if spec.family == 4 else "ff02::12")
            cols[34] = (INTEGER, 1 if spec.family == 4 else 2)
            cols[35] = (OCTET_STRING, _addr(group))
        if spec.sync_group:
            cols[18] = (OCTET_STRING, spec.sync_group.encode())
        for col, tv in cols.items():
            out[_KA_INSTANCE + (col, i)] = tv
    return out

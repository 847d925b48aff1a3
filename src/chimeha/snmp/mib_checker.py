"""KEEPALIVED-MIB's checker part (``enable_snmp_checker``): virtual and real server basics (pure).

``virtualServerTable`` (``check 3``, index = the virtual server's position in
the config, from 1) and ``realServerTable`` (``check 4``, index = virtual
server, real server; a sorry server comes after the real servers, with type
sorry(2)). Configuration columns come from the typed model, health, quorum
and counters from the virtual-server manager's snapshot (the same data as
``chime-ha status``). Columns whose counterpart chime-ha has not (IPVS rate
estimators, active/inactive connection split) are left out.
"""

from __future__ import annotations

import ipaddress
from typing import Mapping, Sequence

from chimeha.snmp.agentx import COUNTER32, GAUGE32, INTEGER, OCTET_STRING, Oid
from chimeha.snmp.mib import KEEPALIVED_MIB, TRUE, FALSE, Objects

_VS_ENTRY: Oid = KEEPALIVED_MIB + (3, 3, 1)
_RS_ENTRY: Oid = KEEPALIVED_MIB + (3, 4, 1)
_PROTO = {"TCP": 1, "UDP": 2, "SCTP": 3}
_ALGO = {a: i for i, a in enumerate(("rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "fo",
                                     "ovf", "mh", "twos"), start=1)}
_KIND = {"NAT": 1, "DR": 2, "TUN": 3}
ALIVE, DEAD = 1, 2


def _addr(text: str | None) -> tuple[int, bytes]:
    if not text:
        return 0, b""
    ip = ipaddress.ip_address(text)
    return (1 if ip.version == 4 else 2), ip.packed


def _stats(cols: dict, stats: Mapping | None, base: int) -> None:
    """connections, packets in/out, bytes in/out at columns base, base+1.. (Counter32, wrapped as SNMP does)."""
    if not stats:
        return
    for off, key in ((0, "connections"), (1, "packets_in"), (2, "packets_out"), (3, "bytes_in"), (4, "bytes_out")):
        if key in stats:
            cols[base + off] = (COUNTER32, int(stats[key]) & 0xFFFFFFFF)


def checker_objects(virtual_servers: Sequence, snapshot: Sequence[Mapping]) -> Objects:
    """``virtual_servers``: the config's VirtualServer objects; ``snapshot``: LvsManager.snapshot()["virtual_servers"]."""
    out: Objects = {}
    for i, vs in enumerate(virtual_servers, start=1):
        snap = snapshot[i - 1] if i - 1 < len(snapshot) else {}
        rs_snap = list(snap.get("real_servers") or [])
        cols: dict[int, tuple[int, object]] = {}
        if vs.group:
            cols[2], cols[3] = (INTEGER, 3), (OCTET_STRING, vs.group.encode())
        elif vs.fwmark is not None:
            cols[2], cols[4] = (INTEGER, 1), (GAUGE32, vs.fwmark)
        else:
            atype, raw = _addr(vs.address)
            cols[2], cols[5], cols[6] = (INTEGER, 2), (INTEGER, atype), (OCTET_STRING, raw)
            cols[7] = (GAUGE32, vs.port or 0)
        cols[8] = (INTEGER, _PROTO.get(vs.protocol, 4))
        cols[9] = (INTEGER, _ALGO.get(vs.lb_algo, 99))
        cols[10] = (INTEGER, _KIND.get(vs.lb_kind, 1))
        cols[11] = (INTEGER, ALIVE if snap.get("active") else DEAD)
        if vs.virtualhost:
            cols[12] = (OCTET_STRING, vs.virtualhost.encode())
        cols[13] = (INTEGER, TRUE if vs.persistence_timeout else FALSE)
        if vs.persistence_timeout:
            cols[14] = (GAUGE32, vs.persistence_timeout)
        cols[16] = (GAUGE32, round(vs.delay_loop))
        cols[18] = (INTEGER, TRUE if vs.alpha else FALSE)
        cols[19] = (INTEGER, TRUE if vs.omega else FALSE)
        healthy = [r for r in rs_snap if r.get("healthy")]
        cols[20] = (GAUGE32, len(vs.real_servers))
        cols[21] = (GAUGE32, len(healthy))
        cols[22] = (GAUGE32, vs.quorum)
        quorum = snap.get("quorum")
        met = quorum.get("met") if isinstance(quorum, Mapping) else quorum
        if met is not None:
            cols[23] = (INTEGER, 1 if met else 2)
        cols[26] = (GAUGE32, vs.hysteresis)
        _stats(cols, _sum_stats(rs_snap), 27)
        for col, tv in cols.items():
            out[_VS_ENTRY + (col, i)] = tv
        servers = [(rs, rs_snap[j] if j < len(rs_snap) else {}, 1) for j, rs in enumerate(vs.real_servers)]
        if vs.sorry_server is not None:
            servers.append((vs.sorry_server, {}, 2))
        for j, (rs, rsnap, kind) in enumerate(servers, start=1):
            atype, raw = _addr(rs.address)
            rcols: dict[int, tuple[int, object]] = {
                2: (INTEGER, kind), 3: (INTEGER, atype), 4: (OCTET_STRING, raw),
                5: (GAUGE32, rs.port or vs.port or 0),
                6: (INTEGER, ALIVE if rsnap.get("healthy", kind == 2) else DEAD),
                7: (INTEGER, rsnap.get("weight") if rsnap.get("weight") is not None else rs.weight),
            }
            stats = rsnap.get("stats") or {}
            if "connections" in stats:
                rcols[14] = (COUNTER32, int(stats["connections"]) & 0xFFFFFFFF)
            for col, key in ((18, "packets_in"), (19, "packets_out"), (20, "bytes_in"), (21, "bytes_out")):
                if key in stats:
                    rcols[col] = (COUNTER32, int(stats[key]) & 0xFFFFFFFF)
            for col, tv in rcols.items():
                out[_RS_ENTRY + (col, i, j)] = tv
    return out


def _sum_stats(rs_snap: Sequence[Mapping]) -> dict[str, int]:
    total: dict[str, int] = {}
    for r in rs_snap:
        for k, v in (r.get("stats") or {}).items():
            total[k] = total.get(k, 0) + int(v)
    return total

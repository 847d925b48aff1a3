"""Kernel NAT data plane with nftables: one table, replaced atomically.

Layout of the table ``inet chimeha`` (the only thing this backend touches):

* the common case, a service without persistence scheduled by rr, wrr or
  fo, is one rule in ``prerouting`` (remote clients) and ``output`` (clients
  on the director itself), the rule an operator writes by hand:
  ``ip daddr VIP tcp dport P dnat ip to numgen inc mod N map { slot : rs . port }``
  (up to ``INLINE_MAX`` address services; more go through the maps below);
* otherwise maps ``svc4`` / ``svc6`` (``daddr . l4proto . dport : verdict``)
  and ``fwm`` (``mark : verdict``), consulted only when not empty, send the
  first packet of a new connection to its service chain;
* a service chain first honours persistence (one timed set per real server,
  holding masked client addresses: a hit jumps straight to that server), then
  schedules: ``numgen inc`` over one full period of the rr/wrr sequence,
  ``jhash`` into the 256-bucket sh/dh table or the 251-entry Maglev table, or
  a constant jump for ``fo``;
* a real-server chain refreshes the client's persistence entry and DNATs
  (a lean service's chain is its one DNAT statement instead);
* only NAT hooks: the kernel consults them for a connection's first packet
  only, so established flows cost nothing here (conntrack keeps the binding);
  no counters (a rule counter would be touched by every new connection);
* ``postrouting`` masquerades DNATed connections whose client and real server
  share a subnet (``snat="auto"``, the seed's layout: without it the real
  server answers the client directly and the client drops the reply), every
  DNATed connection (``"always"``) or none (``"never"``).

Every change renders the whole table and loads it with one ``nft -f`` (a
single transaction: no packet sees a half-programmed table). Persistence
entries that still apply are carried into the new table with their remaining
lifetime; conntrack keeps established connections on their real server.

Declined (see :meth:`NftBackend.unsupported`): schedulers that need live
connection counts (lc wlc sed nq lblc lblcr ovf) or the random ``twos``, and
the DR/TUN forwarding methods, which need IPVS.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import json
import logging
import shutil
from typing import Sequence

from ..reconcile import DelDest, Operation, apply_to
from ..catalog import CONNECTION_AWARE, implemented_by
from ..schedulers import MH_TABLE_SIZE, SH_TABLE_SIZE, Server, make_scheduler
from ..types import DesiredState, Destination, Service, ServiceKey
from . import nft_counters, nft_read
from .base import BackendError

TABLE = "chimeha"
#: Source addresses the postrouting rules may NAT to (see Renderer.snat_to).
SNAT_TO = ("auto", "masquerade", "vip")
NFT_ALGOS = implemented_by("nft")
#: An interleaved wrr period longer than this is declined (the map would be huge).
MAX_PERIOD = 65536
#: Up to this many address services get one rule each in the hook chains;
#: beyond, a verdict map (one lookup, whatever the number) finds the service.
INLINE_MAX = 4
#: A numgen map up to this size lists every slot (a hash lookup); longer wrr
#: periods merge runs of one server into ranges (an interval lookup, fewer elements).
ENUMERATE_MAX = 64

#: jhash seed of the sh/dh/mh tables: the same on every director, so all pick one real server per client
JHASH_SEED = 0x63686D61
log = logging.getLogger("chimeha.lvs.nft")


def _id(*parts: object) -> str:
    return hashlib.sha1("|".join(map(str, parts)).encode()).hexdigest()[:10]


def _fam(addr: str) -> str:
    return "ip6" if ":" in addr else "ip"


def _mask_expr(key: ServiceKey, granularity: str | None) -> str:
    fam = "ip6" if key.family == 6 else "ip"
    if not granularity:
        return f"{fam} saddr"
    bits = 128 if key.family == 6 else 32
    if granularity.isdigit():
        plen = int(granularity)
    else:
        plen = ipaddress.ip_network(f"0.0.0.0/{granularity}").prefixlen if key.family == 4 else bits
    if plen >= bits:
        return f"{fam} saddr"
    mask = ipaddress.ip_address((((1 << plen) - 1) << (bits - plen)) if plen else 0)
    return f"{fam} saddr & {mask}"


def _dnat_target(d: Destination) -> str:
    host = f"[{d.address}]" if ":" in d.address else d.address
    return f"{host}:{d.port}" if d.port else d.address


def _ranges(entries: list[str]) -> str:
    """``0-2 : goto a, 3 : goto b`` from a list of one verdict per slot (runs merged)."""
    out, start = [], 0
    for i in range(1, len(entries) + 1):
        if i == len(entries) or entries[i] != entries[start]:
            span = f"{start}" if i - 1 == start else f"{start}-{i - 1}"
            out.append(f"{span} : goto {entries[start]}")
            start = i
    return ", ".join(out)


def schedule_slots(service: Service) -> tuple[str, list[Destination | None]]:
    """The selector expression kind and one destination per slot (None = no server).

    The slots come from the pure scheduler itself, so the kernel path and the
    proxy agree on the sequence (rr/wrr) and the tables (sh/dh/mh).
    """
    servers = [Server(d.key, d.weight) for d in service.destinations]
    by_key = {d.key: d for d in service.destinations}
    algo = service.scheduler
    sched = make_scheduler(algo, servers, **dict.fromkeys(service.flags, True))
    if algo in ("rr", "wrr"):
        live = [s for s in servers if s.available]
        if not live:
            return "numgen", []
        if algo == "rr":
            return "numgen", [by_key[s.key] for s in live]
        period = sched.cycle()
        if len(period) > MAX_PERIOD:
            raise BackendError(f"{service.key}: wrr period {len(period)} too long for an nftables map")
        return "numgen", [by_key[s.key] for s in period]
    if algo == "fo":
        s = sched.schedule("0.0.0.0")
        return "const", [by_key[s.key]] if s else []
    size = MH_TABLE_SIZE if algo == "mh" else SH_TABLE_SIZE
    slots: list[Destination | None] = []
    probes = size if "fallback" in service.flags else 1
    for b in range(size):
        chosen = None
        for p in range(probes):  # the scheduler's own fallback walk, precomputed per slot
            idx = sched.table[(b + p) % size] if sched.table else -1
            if idx >= 0 and servers[idx].available:
                chosen = by_key[servers[idx].key]
                break
        slots.append(chosen)
    return "hash", slots


def _lean_dnat(service: Service) -> str | None:
    """The single DNAT statement of a service that needs nothing else, or None.

    The common case (no persistence, rr/wrr/fo, an address service whose real
    servers have its family and a port) is one ``dnat ... to numgen ... map``,
    exactly the hand-written rule: no per-server chains, no sets. "" means the
    service has no live server (nothing to NAT to). The caller puts the
    protocol match in front (nft needs one before a port).
    """
    if service.persistence_timeout or service.key.fwmark is not None:
        return None
    if service.scheduler not in ("rr", "wrr", "fo"):
        return None
    fam = "ip6" if service.key.family == 6 else "ip"
    if any(not d.port or _fam(d.address) != fam for d in service.destinations):
        return None
    kind, slots = schedule_slots(service)
    if not slots:
        return ""
    if kind == "const" or len({d.key for d in slots}) == 1:
        return f"dnat {fam} to {_dnat_target(slots[0])}"
    host = (lambda a: f"[{a}]") if fam == "ip6" else (lambda a: a)
    targets = [f"{host(d.address)} . {d.port}" for d in slots]
    if len(slots) <= ENUMERATE_MAX:
        # one element per slot: a hash lookup, no interval tree
        entries = ", ".join(f"{i} : {t}" for i, t in enumerate(targets))
    else:
        entries = _ranges(targets).replace(" : goto ", " : ")
    return f"dnat {fam} to numgen inc mod {len(slots)} map {{ {entries} }}"


class Renderer:
    """Pure: DesiredState (+ carried persistence entries) -> one nft script."""

    def __init__(self, snat: str = "auto", snat_subnets: Sequence[str] = (), snat_to: str = "auto",
                 counters: dict[str, tuple[int, int]] | None = None):
        #: None: no per-real-server counters; else their values to carry into the new table
        self.counters = counters
        self.snat = snat
        self.snat_subnets = list(snat_subnets)
        #: "masquerade": the outgoing interface's address, client port kept when free;
        #: "vip": the connection's own VIP (replies reach whichever director holds it, and the
        #: tuples never meet the director's own connections from its primary address);
        #: "auto": "vip" for a VIP inside the real server's subnet (the real server reaches it
        #: on the link), "masquerade" for any other. Why not plain masquerade: it keeps the
        #: client's port on the director's own address, so after the director itself talked to
        #: the same real-server port (HAProxy, a proxy-backed service, a director that is also a
        #: client) the real servers' TIME_WAIT sockets hold those tuples and new connections
        #: stall on them (bench/dataplane/SNAT.md: 227 against 11,922 new conn/s).
        self.snat_to = snat_to

    def render(self, state: DesiredState, carried: dict[str, list[str]] | None = None) -> str:
        carried = carried or {}
        lines = [f"table inet {TABLE} {{}}", f"delete table inet {TABLE}", f"table inet {TABLE} {{"]
        maps = {"svc4": [], "svc6": [], "fwm": []}
        vips = {4: set(), 6: set()}
        chains: list[str] = []
        sets: list[str] = []
        keys = sorted(state.services, key=ServiceKey.sort_key)
        # Few plain services: one self-contained rule each in the hook chains,
        # as an operator would write by hand (no map lookup, no chain jump).
        # Many: one verdict-map lookup finds the service whatever their number.
        inline_ok = sum(1 for k in keys if k.fwmark is None) <= INLINE_MAX
        inline: list[str] = []
        for key in keys:
            svc = state.services[key]
            if key.fwmark is None:
                vips[key.family].add(key.address)
            lean = _lean_dnat(svc)
            if lean is not None and inline_ok:
                if lean:  # no live server: no rule, the connection is not NATed
                    fam = "ip6" if key.family == 6 else "ip"
                    inline.append(f"{fam} daddr {key.address} {key.protocol.lower()} dport {key.port} {lean}")
                continue
            sid = "s_" + _id(key)
            if key.fwmark is not None:
                maps["fwm"].append(f"{key.fwmark} : goto {sid}")
            else:
                mapname = "svc6" if key.family == 6 else "svc4"
                maps[mapname].append(f"{key.address} . {key.protocol.lower()} . {key.port} : goto {sid}")
            chains.append(self._service_chain(svc, sid, sets, carried, lean))
        # Empty maps are declared (a stable layout for readers and tools) but
        # not consulted: each consulted map is one more lookup per new connection.
        for name, typ in (("svc4", "ipv4_addr . inet_proto . inet_service"),
                          ("svc6", "ipv6_addr . inet_proto . inet_service"), ("fwm", "mark")):
            elems = f"\n    elements = {{ {', '.join(maps[name])} }}" if maps[name] else ""
            lines.append(f"  map {name} {{\n    type {typ} : verdict{elems}\n  }}")
        lines += sets + chains
        # No "ct state new" guard: the kernel runs NAT chains only for a
        # connection's first packet (later ones follow conntrack's binding),
        # so established flows never reach these rules.
        hook_rules = inline + [rule for name, rule in (
            ("svc4", "ip daddr . meta l4proto . th dport vmap @svc4"),
            ("svc6", "ip6 daddr . meta l4proto . th dport vmap @svc6"),
            ("fwm", "meta mark vmap @fwm")) if maps[name]]
        for hook, prio in (("prerouting", "dstnat"), ("output", "-100")):
            lines.append(f"  chain {hook} {{\n    type nat hook {hook} priority {prio}; policy accept;\n"
                         + "".join(f"    {r}\n" for r in hook_rules) + "  }")
        lines.append(self._postrouting(state, vips))
        if self.counters is not None:
            lines += nft_counters.render(state, self.counters)
        lines.append("}")
        return "\n".join(lines) + "\n"

    def _service_chain(self, svc: Service, sid: str, sets: list[str], carried, lean: str | None = None) -> str:
        if lean is not None:  # one statement: schedule and DNAT, no per-server chains
            rule = f"meta l4proto {svc.key.protocol.lower()} {lean}" if lean else ""
            return f"  chain {sid} {{\n" + (f"    {rule}\n" if rule else "") + "  }"
        body: list[str] = []
        persist = bool(svc.persistence_timeout)
        mexpr = _mask_expr(svc.key, svc.persistence_netmask) if persist else ""
        settype = "ipv6_addr" if svc.key.family == 6 else "ipv4_addr"
        dest_chains = []
        for d in svc.destinations:
            did = "d_" + _id(svc.key, d.key)
            stmts = []
            if persist:
                pset = "p_" + _id(svc.key, d.key, svc.persistence_netmask)
                elems = carried.get(pset, [])
                el = f"\n    elements = {{ {', '.join(elems)} }}" if elems else ""
                sets.append(f"  set {pset} {{\n    type {settype}\n    flags dynamic,timeout\n"
                            f"    timeout {svc.persistence_timeout}s{el}\n  }}")
                if d.weight > 0:
                    body.append(f"{mexpr} @{pset} goto {did}")
                stmts.append(f"update @{pset} {{ {mexpr} }}")
            fam = "ip6" if ":" in d.address else "ip"
            stmts.append(f"meta l4proto {svc.key.protocol.lower()} dnat {fam} to {_dnat_target(d)}")
            dest_chains.append(f"  chain {did} {{\n" + "".join(f"    {s}\n" for s in stmts) + "  }")
        kind, slots = schedule_slots(svc)
        dids = {d.key: "d_" + _id(svc.key, d.key) for d in svc.destinations}
        if kind == "const" and slots:
            body.append(f"goto {dids[slots[0].key]}")
        elif kind == "numgen" and slots:
            body.append(f"numgen inc mod {len(slots)} vmap {{ {_ranges([dids[d.key] for d in slots])} }}")
        elif kind == "hash" and any(slots):
            fam = "ip6" if svc.key.family == 6 else "ip"
            field = f"{fam} daddr" if svc.scheduler == "dh" else f"{fam} saddr"
            if "port" in svc.flags and svc.scheduler != "dh":
                field += " . th sport"
            # Slots without a server are left out of the map: no match, no NAT.
            names = [dids[d.key] if d is not None else "" for d in slots]
            entries = ", ".join(e for e in _ranges(names).split(", ") if not e.endswith("goto "))
            # A fixed seed: without one the kernel draws a random seed per rule, and
            # two directors (BGP/ECMP) would send one client to different real servers.
            body.append(f"jhash {field} mod {len(slots)} seed {JHASH_SEED:#x} vmap {{ {entries} }}")
        return (f"  chain {sid} {{\n" + "".join(f"    {r}\n" for r in body) + "  }\n"
                + "\n".join(dest_chains))

    def _postrouting(self, state: DesiredState, vips) -> str:
        rules = []
        if self.snat != "never":
            nets = [None] if self.snat == "always" else self.snat_subnets
            for fam, famname in ((4, "ip"), (6, "ip6")):
                if not vips[fam]:
                    continue
                # one VIP: a plain comparison rather than a (one-element) set lookup
                for net in nets:
                    if net is not None and ipaddress.ip_network(net).version != fam:
                        continue
                    cond = "" if net is None else f" {famname} saddr {net} {famname} daddr {net}"
                    for match, verdict in self._snat_groups(sorted(vips[fam]), famname, net):
                        rules.append(f"ct status dnat ct original {famname} daddr {match}{cond} {verdict}")
            marks = sorted(k.fwmark for k in state.services if k.fwmark is not None)
            for m in marks:
                for net in nets:
                    fam = "ip" if net is None or ipaddress.ip_network(net).version == 4 else "ip6"
                    cond = "" if net is None else f" {fam} saddr {net} {fam} daddr {net}"
                    rules.append(f"ct status dnat meta mark {m}{cond} masquerade")
        return ("  chain postrouting {\n    type nat hook postrouting priority srcnat; policy accept;\n"
                + "".join(f"    {r}\n" for r in rules) + "  }")


    def _snat_groups(self, vips: list[str], famname: str, net: str | None) -> list[tuple[str, str]]:
        """(VIP match, source NAT statement) pairs for connections to ``vips`` whose real server is in ``net``."""
        if self.snat_to == "vip":
            own = list(vips)
        elif self.snat_to == "auto" and net is not None:
            subnet = ipaddress.ip_network(net)
            own = [v for v in vips if ipaddress.ip_address(v) in subnet]
        else:
            own = []
        rest = [v for v in vips if v not in own]
        groups = [(v, f"snat {famname} to {v}") for v in own]
        if rest:
            # one VIP: a plain comparison rather than a (one-element) set lookup
            groups.append((("{ " + ", ".join(rest) + " }") if len(rest) > 1 else rest[0], "masquerade"))
        return groups


class NftBackend:
    """nftables NAT backend (see the module docstring).

    ``netns``: run ``nft`` inside this network namespace (tests, the lab);
    None = the daemon's own namespace. ``snat``: "auto" | "always" | "never".
    """

    name = "nft"

    def __init__(self, netns: str | None = None, snat: str = "auto", log: logging.Logger | None = None,
                 snat_to: str = "auto", counters: bool = True):
        if snat not in ("auto", "always", "never"):
            raise ValueError(f"snat must be auto, always or never, not {snat!r}")
        if snat_to not in SNAT_TO:
            raise ValueError(f"snat_to must be one of {', '.join(SNAT_TO)}, not {snat_to!r}")
        self.netns = netns
        self.snat = snat
        self.snat_to = snat_to
        #: named per-real-server counters (connections, packets and bytes each way), read back into stats()
        self.counters = counters
        self._stats: dict = {}
        self.log = log or globals()["log"]
        self._state = DesiredState()  # what read_actual() last returned: apply() works from it
        self._intent = DesiredState()  # what the last load programmed
        self._expected: nft_read.Reading | None = None  # the table as read right after that load
        self.drift: str | None = None
        self._programmed = False
        self._warned_conntrack = False
        self.last_script = ""

    def unsupported(self, service: Service) -> str | None:
        if shutil.which("nft") is None:
            return "the nft program is not installed (apt-get install nftables)"
        if service.lb_kind != "NAT" or any(d.lb_kind != "NAT" for d in service.destinations):
            return (f"{service.key}: lb_kind {service.lb_kind} (DR/TUN) needs the IPVS data plane; "
                    "nftables only does NAT")
        if service.scheduler in CONNECTION_AWARE:
            why = "random two-choice" if service.scheduler == "twos" else "live connection counts"
            return (f"{service.key}: lb_algo {service.scheduler} needs {why}, which nftables NAT cannot "
                    "schedule by; use --dataplane proxy or ipvs")
        if service.scheduler not in NFT_ALGOS:
            return f"{service.key}: lb_algo {service.scheduler} is not implemented by nftables"
        try:
            schedule_slots(service)
        except BackendError as e:
            return str(e)
        return None

    def _argv(self, *args: str) -> list[str]:
        pre = ["ip", "netns", "exec", self.netns] if self.netns else []
        return [*pre, "nft", *args]

    async def _nft(self, *args: str, stdin: str | None = None) -> str:
        try:
            proc = await asyncio.create_subprocess_exec(
                *self._argv(*args), stdin=asyncio.subprocess.PIPE if stdin is not None else None,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        except OSError as e:
            raise BackendError(f"cannot run nft: {e.strerror} (apt-get install nftables)") from None
        out, err = await proc.communicate(stdin.encode() if stdin is not None else None)
        if proc.returncode != 0:
            raise BackendError(f"nft {' '.join(args)} failed: {err.decode().strip()}")
        return out.decode()

    async def _snat_subnets(self, state: DesiredState) -> list[str]:
        """Directly connected subnets that hold a real server (where replies would bypass us)."""
        pre = ["ip", "netns", "exec", self.netns] if self.netns else []
        proc = await asyncio.create_subprocess_exec(*pre, "ip", "-j", "addr", "show",
                                                    stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.DEVNULL)
        out, _ = await proc.communicate()
        nets = []
        try:
            for link in json.loads(out or b"[]"):
                for a in link.get("addr_info", []):
                    if a.get("scope") == "global":
                        nets.append(ipaddress.ip_network(f"{a['local']}/{a['prefixlen']}", strict=False))
        except (ValueError, KeyError):
            return []
        found = set()
        for svc in state.services.values():
            for d in svc.destinations:
                ip = ipaddress.ip_address(d.address)
                found.update(str(n) for n in nets if ip in n)
        return sorted(found)

    async def _listing(self) -> dict | None:
        """The live table as nft's JSON, or None when there is no table."""
        proc = await asyncio.create_subprocess_exec(
            *self._argv("-j", "list", "table", "inet", TABLE),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await proc.communicate()
        if proc.returncode != 0:
            text = err.decode().strip()
            if "No such file or directory" in text or "does not exist" in text:
                return None
            raise BackendError(f"nft -j list table inet {TABLE} failed: {text}")
        try:
            return json.loads(out or b"{}")
        except ValueError as e:
            raise BackendError(f"nft -j list table inet {TABLE}: unreadable JSON ({e})") from None

    @staticmethod
    def _carried(doc: dict | None) -> dict[str, list[str]]:
        """Persistence entries of the live table with their remaining lifetime, per set."""
        out: dict[str, list[str]] = {}
        for obj in (doc or {}).get("nftables", []):
            s = obj.get("set")
            if not s or not s.get("name", "").startswith("p_"):
                continue
            for e in s.get("elem", []):
                e = e.get("elem", e) if isinstance(e, dict) else e
                if isinstance(e, dict) and isinstance(e.get("val"), str) and e.get("expires"):
                    out.setdefault(s["name"], []).append(f"{e['val']} expires {int(e['expires'])}s")
        return out

    async def preflight(self) -> str | None:
        if shutil.which("nft") is None:
            return "the nft program is not installed (apt-get install nftables)"
        try:
            await self._nft("list", "tables")
        except BackendError as e:
            return f"nftables is not usable here: {e}"
        return None

    async def apply(self, ops: Sequence[Operation]) -> None:
        """Apply ``ops`` to the state :meth:`read_actual` last returned: render it all, load it atomically."""
        new = apply_to(self._state, list(ops))
        for svc in new.services.values():
            why = self.unsupported(svc)
            if why:
                raise BackendError(why)
        subnets = await self._snat_subnets(new) if self.snat == "auto" else []
        live = await self._listing() if self._programmed else None
        carried = self._carried(live)
        values = nft_counters.carried(live) if self.counters else None
        script = Renderer(self.snat, subnets, self.snat_to, values).render(new, carried)
        await self._nft("-f", "-", stdin=script)
        self.last_script = script
        self._state = self._intent = new
        self._programmed = True
        doc = await self._listing()
        self._expected = nft_read.read(doc) if doc is not None else None
        self._stats = nft_counters.stats(new, doc) if self.counters else {}
        for op in ops:
            if isinstance(op, DelDest):
                await self._forget(op.service, op.dest)

    async def _forget(self, key: ServiceKey, dest: Destination) -> None:
        """Delete the conntrack entries of ``dest`` in service ``key``: a removed real server's
        clients (UDP flows, persistent TCP clients) are scheduled again at their next packet
        instead of following the old NAT binding. A weight-0 (quiescent) server keeps them."""
        if shutil.which("conntrack") is None:
            if not self._warned_conntrack:
                self.log.warning("the conntrack program is missing (apt-get install conntrack): connections "
                                 "of removed real servers stay on them until they end")
                self._warned_conntrack = True
            return
        sel = ["--reply-src", dest.address] + (["--reply-port-src", str(dest.port)] if dest.port else [])
        if key.fwmark is None:  # a mark service: the packet mark is not in conntrack; the server's address is
            sel += ["--orig-dst", key.address, "--orig-port-dst", str(key.port)]
        pre = ["ip", "netns", "exec", self.netns] if self.netns else []
        fam = ["-f", "ipv6"] if ":" in dest.address else []
        proc = await asyncio.create_subprocess_exec(
            *pre, "conntrack", "-D", "-p", key.protocol.lower(), *fam, *sel,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        _, err = await proc.communicate()
        text = err.decode().strip()
        # exit 1 with "0 flow entries have been deleted" is the ordinary nothing-to-do answer
        if proc.returncode not in (0, 1) or (proc.returncode == 1 and "0 flow entries" not in text):
            self.log.warning("conntrack -D for %s in %s failed: %s", dest.key, key, text)
        else:
            self.log.info("virtual servers: %s left %s: %s", dest.key, key, text.splitlines()[-1] if text else "")

    async def read_actual(self) -> DesiredState:
        """The live table parsed back (see :mod:`.nft_read`); ``drift`` says what differed."""
        doc = await self._listing()
        reading = nft_read.read(doc) if doc is not None else None
        self._state, self.drift = nft_read.actual_state(reading, self._expected, self._intent)
        if self.counters:
            self._stats = nft_counters.stats(self._intent, doc)
        return self._state

    async def refresh_stats(self) -> dict:
        """Read the counters from the live table now (stats() returns the last reading)."""
        if self.counters and self._programmed:
            self._stats = nft_counters.stats(self._intent, await self._listing())
        return self._stats

    async def verify(self) -> bool:
        """True when the live table is exactly what was loaded last (someone may have flushed it)."""
        await self.read_actual()
        return self.drift is None

    async def close(self) -> None:
        if self._programmed:
            try:
                await self._nft("-f", "-", stdin=f"table inet {TABLE} {{}}\ndelete table inet {TABLE}\n")
            finally:
                self._programmed = False
                self._state = self._intent = DesiredState()
                self._expected = None
                self._stats = {}

    def stats(self) -> dict:
        """Per service, per real server: connections, packets_in/out, bytes_in/out (the last reading:
        every reconcile and every verify_interval)."""
        return self._stats

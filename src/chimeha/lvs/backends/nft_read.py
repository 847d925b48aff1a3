"""Read the live ``inet chimeha`` table back into the reconciler's types.

``nft -j list table inet chimeha`` gives the kernel's table as JSON. This
module walks it the way a packet would: from the ``prerouting`` hook chain
through inline DNAT rules or the ``svc4`` / ``svc6`` / ``fwm`` verdict maps to
each service's chain and its real-server chains, collecting the DNAT targets.

What the kernel cannot show (an rr service's weights, the configured
persistence netmask) is taken from the last programmed intent, but only for a
service whose rules are exactly the ones chime-ha loaded: each service's
subtree and the table's shared parts (hook chains, postrouting source NAT,
map declarations) are fingerprinted after every load (handles, counter values
and dynamic set elements left out). A service whose subtree changed reads
back as ``Service(key, scheduler="?" + the intended one)`` without
destinations, so the reconciler re-adds it in configuration order (the drift
sentence lists the DNAT targets found); a change in the shared parts marks every
service that way. A missing table reads back as an empty state.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ..types import DesiredState, Service, ServiceKey

HOOKS = ("prerouting", "output", "postrouting")


def _strip(obj: Any) -> Any:
    """The JSON without what changes by itself (handles, counter values, dynamic set contents)."""
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if k == "handle" or k in ("packets", "bytes"):
                continue
            if k == "elem" and {"dynamic", "timeout"} & set(obj.get("flags") or ()):  # filled by traffic
                continue
            out[k] = _strip(v)
        return out
    if isinstance(obj, (list, tuple)):
        return [_strip(v) for v in obj]
    return obj


def _canon(obj: Any) -> str:
    return json.dumps(_strip(obj), sort_keys=True, separators=(",", ":"))


@dataclass
class Table:
    """The parts of one listing this module needs."""

    chains: dict[str, dict] = field(default_factory=dict)
    rules: dict[str, list[list[dict]]] = field(default_factory=dict)
    maps: dict[str, dict] = field(default_factory=dict)
    sets: dict[str, dict] = field(default_factory=dict)
    counters: dict[str, dict] = field(default_factory=dict)

    @classmethod
    def from_json(cls, doc: dict) -> "Table":
        t = cls()
        for obj in doc.get("nftables", []):
            if "chain" in obj:
                t.chains[obj["chain"]["name"]] = obj["chain"]
                t.rules.setdefault(obj["chain"]["name"], [])
            elif "rule" in obj:
                t.rules.setdefault(obj["rule"]["chain"], []).append(obj["rule"].get("expr", []))
            elif "map" in obj:
                t.maps[obj["map"]["name"]] = obj["map"]
            elif "set" in obj:
                t.sets[obj["set"]["name"]] = obj["set"]
            elif "counter" in obj:
                t.counters[obj["counter"]["name"]] = obj["counter"]
        return t


def _targets(node: Any, out: list) -> None:
    """Every chain a goto/jump names, and every DNAT target, under ``node`` (in order)."""
    if isinstance(node, dict):
        for verb in ("goto", "jump"):
            if verb in node and isinstance(node[verb], dict) and "target" in node[verb]:
                out.append(("chain", node[verb]["target"]))
        if "dnat" in node and isinstance(node["dnat"], dict):
            d = node["dnat"]
            addr = d.get("addr")
            if isinstance(addr, str):
                out.append(("dnat", (addr, int(d.get("port") or 0))))
            elif isinstance(addr, dict) and "map" in addr:
                for _slot, tgt in addr["map"].get("data", {}).get("set", []):
                    if isinstance(tgt, dict) and "concat" in tgt:
                        out.append(("dnat", (str(tgt["concat"][0]), int(tgt["concat"][1]))))
            return
        for v in node.values():
            _targets(v, out)
    elif isinstance(node, list):
        for v in node:
            _targets(v, out)


def _subtree(t: Table, chain: str, seen: set[str]) -> tuple[list, list[tuple[str, int]]]:
    """(canonical pieces, DNAT targets in slot order) of ``chain`` and every chain it reaches."""
    if chain in seen:
        return [], []
    seen.add(chain)
    rules = t.rules.get(chain)
    if rules is None:
        return [("missing chain", chain)], []
    pieces: list = [("chain", chain, rules)]
    dnats: list[tuple[str, int]] = []
    for expr in rules:
        found: list = []
        _targets(expr, found)
        for kind, val in found:
            if kind == "dnat":
                dnats.append(val)
            else:
                p, d = _subtree(t, val, seen)
                pieces += p
                dnats += d
        for name in _set_refs(expr):
            pieces.append(("set", name, t.sets.get(name)))
    return pieces, dnats


def _set_refs(node: Any) -> list[str]:
    out = []
    if isinstance(node, dict):
        for v in node.values():
            out += _set_refs(v)
    elif isinstance(node, list):
        for v in node:
            out += _set_refs(v)
    elif isinstance(node, str) and node.startswith("@"):
        out.append(node[1:])
    return out


def _inline_key(expr: list[dict]) -> ServiceKey | None:
    """``ip daddr A tcp dport P dnat ...``: the service key of an inline hook rule."""
    addr = proto = port = None
    for e in expr:
        m = e.get("match") if isinstance(e, dict) else None
        if not m or m.get("op") != "==":
            continue
        left = m.get("left", {}).get("payload", {})
        if left.get("field") == "daddr" and left.get("protocol") in ("ip", "ip6"):
            addr = m.get("right")
        elif left.get("field") == "dport" and left.get("protocol") in ("tcp", "udp", "sctp"):
            proto, port = left["protocol"].upper(), m.get("right")
    if isinstance(addr, str) and isinstance(port, int) and proto:
        return ServiceKey(proto, addr, port)
    return None


def _is_lookup(expr: list[dict]) -> str | None:
    """The map name when the rule is the hook's ``... vmap @svc4`` lookup."""
    for e in expr:
        v = e.get("vmap") if isinstance(e, dict) else None
        if v and isinstance(v.get("data"), str) and v["data"].startswith("@"):
            return v["data"][1:]
    return None


def _map_key(name: str, key: Any) -> ServiceKey | None:
    if name == "fwm" and isinstance(key, int):
        return ServiceKey("TCP", fwmark=key)  # the protocol of a mark service is not in the map
    if isinstance(key, dict) and "concat" in key and len(key["concat"]) == 3:
        addr, proto, port = key["concat"]
        return ServiceKey(str(proto).upper(), str(addr), int(port))
    return None


@dataclass
class Reading:
    """A parsed listing: one fingerprint of the shared parts, one per service, and its DNAT targets."""

    shared: str = ""
    services: dict[ServiceKey, tuple[str, list[tuple[str, int]]]] = field(default_factory=dict)


def read(doc: dict) -> Reading:
    """Walk one ``nft -j list table`` document (see the module docstring)."""
    t = Table.from_json(doc)
    out = Reading()
    shared: list = [("chains", sorted(t.chains)), ("maps", [(n, {k: v for k, v in m.items() if k != "elem"})
                                                          for n, m in sorted(t.maps.items())])]
    for hook in HOOKS:
        c = t.chains.get(hook)
        shared.append(("hook", hook, {k: c.get(k) for k in ("type", "hook", "prio", "policy")} if c else None))
    shared.append(("postrouting", t.rules.get("postrouting")))
    inline_pre, inline_out = [], []
    for hook, inline in (("prerouting", inline_pre), ("output", inline_out)):
        for expr in t.rules.get(hook, []):
            name = _is_lookup(expr)
            if name is not None:
                shared.append(("lookup", hook, expr))
            else:
                inline.append(_canon(expr))
    shared.append(("inline rules match in both hooks", sorted(inline_pre) == sorted(inline_out)))
    out.shared = _canon(shared)
    for expr in t.rules.get("prerouting", []):
        name = _is_lookup(expr)
        if name is None:
            key = _inline_key(expr)
            if key is not None:
                dnats: list = []
                _targets(expr, dnats)
                out.services[key] = (_canon(("inline", expr)), [v for k, v in dnats if k == "dnat"])
            continue
        m = t.maps.get(name) or {}
        for key_json, verdict in m.get("elem", []):
            key = _map_key(name, key_json)
            found: list = []
            _targets(verdict, found)
            if key is None or not found:
                continue
            pieces, dnats = _subtree(t, found[0][1], set())
            out.services[key] = (_canon((name, key_json, verdict, pieces)), dnats)
    return out


def actual_state(reading: Reading | None, expected: Reading | None, intent: DesiredState) -> tuple[DesiredState, str | None]:
    """The reconciler's view of the kernel, and a sentence on the drift found (None: none).

    ``reading`` is the live table (None: no table), ``expected`` the reading
    taken right after the last load, ``intent`` what that load programmed.
    """
    if reading is None:
        return DesiredState(), ("the table inet chimeha is missing" if intent.services else None)
    expected = expected or Reading()
    shared_ok = reading.shared == expected.shared
    services: dict[ServiceKey, Service] = {}
    drifted = []
    fw_intent = {k.fwmark: k for k in intent.services if k.fwmark is not None}
    for key, (fp, dnats) in reading.services.items():
        if key.fwmark is not None:  # the map does not say the protocol: take the intent's
            key = fw_intent.get(key.fwmark, key)
        want = intent.services.get(key)
        exp = expected.services.get(key)
        if want is not None and shared_ok and exp is not None and exp[0] == fp:
            services[key] = want
            continue
        targets = sorted({f"{a}:{p}" for a, p in dnats})
        drifted.append(f"{key} (DNAT to {', '.join(targets) or 'nothing'})")
        # Read back without destinations: the reconciler re-adds them in configuration order
        # (the slot order rr/wrr follow), which a partial table could not give.
        services[key] = Service(key, "?" + (want.scheduler if want else "unknown"))
    missing = [str(k) for k in intent.services if k not in services]
    parts = [] if shared_ok else ["hook chains, maps or source NAT rules of table inet chimeha changed"]
    if missing:
        parts.append(f"missing: {', '.join(missing)}")
    if drifted and shared_ok:
        parts.append(f"changed: {', '.join(drifted)}")
    why = "; ".join(parts) or None
    return DesiredState(services), why

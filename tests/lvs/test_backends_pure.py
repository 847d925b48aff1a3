"""Backend logic that needs no kernel: nft rendering, IPVS encoding, data-plane choice."""

from __future__ import annotations

import socket

import pytest

from chimeha.lvs.backends.ipvs import IpvsBackend, encode, kernel_unavailable
from chimeha.lvs.backends.nft import NftBackend, Renderer, schedule_slots
from chimeha.lvs.backends.proxy import ProxyBackend
from chimeha.lvs.backends.select import choose
from chimeha.lvs.reconcile import diff
from chimeha.lvs.schedulers import ALGORITHMS, CONNECTION_AWARE
from chimeha.lvs.types import DesiredState, Destination, LvsConfigError, Service, ServiceKey

K = ServiceKey("TCP", "192.168.231.10", 8801)


def svc(algo="rr", weights=(1, 1), kind="NAT", key=K, **kw):
    ds = tuple(Destination(f"192.168.231.{11 + i}", 8801, w, kind) for i, w in enumerate(weights))
    return Service(key, algo, lb_kind=kind, destinations=ds, **kw)


def test_numgen_period_is_the_wrr_sequence():
    kind, slots = schedule_slots(svc("wrr", (3, 1, 0)))
    assert kind == "numgen"
    assert [d.address[-2:] for d in slots] == ["11", "11", "11", "12"]
    kind, slots = schedule_slots(svc("rr", (5, 0, 1)))
    assert [d.address[-2:] for d in slots] == ["11", "13"]


def test_render_persistence_snat_and_weights():
    s = svc("wrr", (2, 1), persistence_timeout=50, persistence_netmask="255.255.255.0")
    text = Renderer("auto", ["192.168.231.0/24"]).render(DesiredState({K: s}), {})
    assert text.startswith("table inet chimeha {}\ndelete table inet chimeha\n")  # one atomic replace
    assert "192.168.231.10 . tcp . 8801 : goto s_" in text
    assert "numgen inc mod 3 vmap { 0-1 : goto d_" in text
    assert text.count("timeout 50s") == 2  # one timed set per real server
    assert "ip saddr & 255.255.255.0 @p_" in text
    assert "dnat ip to 192.168.231.12:8801" in text
    assert ("ct status dnat ct original ip daddr 192.168.231.10 ip saddr 192.168.231.0/24 "
            "ip daddr 192.168.231.0/24 snat ip to 192.168.231.10") in text  # auto: the VIP is on the link
    assert "ip daddr . meta l4proto . th dport vmap @svc4" in text  # persistence: through the service chain
    assert "masquerade" not in Renderer("never").render(DesiredState({K: s}))


def _hook(text: str, chain: str) -> list[str]:
    """The rules of one hook chain of a rendered table."""
    body = text.split(f"  chain {chain} {{\n", 1)[1].split("\n  }", 1)[0]
    return [r.strip() for r in body.splitlines()[1:]]  # [0] is the "type nat hook" line


def test_render_common_case_is_the_hand_written_rule():
    """No persistence, rr/wrr: one rule per service in each hook, nothing else per new connection."""
    s = svc("wrr", (3, 1, 0))
    text = Renderer("auto", ["192.168.231.0/24"]).render(DesiredState({K: s}))
    rule = ("ip daddr 192.168.231.10 tcp dport 8801 dnat ip to numgen inc mod 4 map { 0 : 192.168.231.11 . 8801, "
            "1 : 192.168.231.11 . 8801, 2 : 192.168.231.11 . 8801, 3 : 192.168.231.12 . 8801 }")
    assert _hook(text, "prerouting") == [rule] and _hook(text, "output") == [rule]
    # no per-server chains, no service chain, no sets, no counters, no "ct state" guard
    assert " chain d_" not in text and " chain s_" not in text and " set " not in text
    assert "counter" not in text and "ct state" not in text
    # only NAT hooks: the kernel runs them for a connection's first packet, never for established ones
    hooks = [x.strip() for x in text.splitlines() if " hook " in x]
    assert len(hooks) == 3 and all(h.startswith("type nat hook ") for h in hooks)
    assert "@svc4" not in text and "@fwm" not in text  # empty maps are never looked up
    # fo: a constant DNAT to the highest-weight server; a single live server: no numgen
    fo = Renderer("never").render(DesiredState({K: svc("fo", (1, 5))}))
    assert _hook(fo, "prerouting") == ["ip daddr 192.168.231.10 tcp dport 8801 dnat ip to 192.168.231.12:8801"]
    one = Renderer("never").render(DesiredState({K: svc("rr", (0, 2))}))
    assert _hook(one, "prerouting") == ["ip daddr 192.168.231.10 tcp dport 8801 dnat ip to 192.168.231.12:8801"]
    # no live server: no rule at all (the director refuses, as IPVS with no destination)
    assert _hook(Renderer("never").render(DesiredState({K: svc("rr", (0, 0))})), "prerouting") == []


def test_render_many_services_use_one_map_lookup_and_long_periods_ranges():
    keys = [ServiceKey("TCP", "192.168.231.10", 9000 + i) for i in range(6)]
    state = DesiredState({k: svc("wrr", (100, 1), key=k) for k in keys})
    text = Renderer("never").render(state)
    assert _hook(text, "prerouting") == ["ip daddr . meta l4proto . th dport vmap @svc4"]
    assert text.count("192.168.231.10 . tcp . 90") == 6
    # each service chain is its one DNAT statement; a 101-slot period is two ranges
    assert text.count("meta l4proto tcp dnat ip to numgen inc mod 101 map { 0-99 : 192.168.231.11 . 8801, "
                      "100 : 192.168.231.12 . 8801 }") == 6
    assert " chain d_" not in text
    # mixed: a persistent service keeps its chains, the plain ones stay inline
    k2 = ServiceKey("UDP", "192.168.231.10", 53)
    mixed = Renderer("never").render(DesiredState({K: svc("rr", persistence_timeout=50), k2: svc("rr", key=k2)}))
    assert _hook(mixed, "prerouting") == [
        "ip daddr 192.168.231.10 udp dport 53 dnat ip to numgen inc mod 2 map { 0 : 192.168.231.11 . 8801, "
        "1 : 192.168.231.12 . 8801 }",
        "ip daddr . meta l4proto . th dport vmap @svc4"]
    assert mixed.count(" chain d_") == 2


def test_render_carries_persistence_entries_over():
    s = svc("rr", persistence_timeout=50)
    r = Renderer("never")
    first = r.render(DesiredState({K: s}))
    pset = next(w for w in first.split() if w.startswith("p_"))
    again = r.render(DesiredState({K: s}), {pset: ["10.1.1.1 expires 20s"]})
    assert "elements = { 10.1.1.1 expires 20s }" in again


def test_render_hash_schedulers_use_scheduler_tables():
    text = Renderer("never").render(DesiredState({K: svc("mh", (1, 1))}))
    assert "jhash ip saddr mod 251 seed 0x63686d61 vmap" in text  # fixed seed: directors agree
    text = Renderer("never").render(DesiredState({K: svc("sh", (1, 0))}))
    line = next(x for x in text.splitlines() if "jhash" in x)
    # the quiescent server's buckets (every other one) are absent: those clients
    # are not NATed, as IPVS drops them
    assert line.strip().startswith("jhash ip saddr mod 256 seed 0x63686d61 vmap { 0 : goto d_")
    assert line.count(" : goto ") == 128 and " 1 : goto" not in line


@pytest.mark.parametrize("algo", ALGORITHMS)
def test_nft_declines_exactly_the_connection_aware_schedulers(algo):
    why = NftBackend().unsupported(svc(algo))
    if algo in CONNECTION_AWARE:
        assert why is not None and f"lb_algo {algo}" in why and "proxy" in why
    else:
        assert why is None


def test_select_auto_prefers_nft_then_proxy_and_says_why():
    checkers = {"nft": NftBackend(), "proxy": ProxyBackend()}
    services = [svc("rr"), svc("wlc", key=ServiceKey("TCP", "192.168.231.10", 8802))]
    c = choose(services, "auto", checkers, ipvs_missing="no ip_vs here")
    assert c.backend[K] == "nft"
    assert c.backend[services[1].key] == "proxy"
    assert "ipvs: no ip_vs here" in c.reasons[K]
    assert "lb_algo wlc needs live connection counts" in c.reasons[services[1].key]
    with pytest.raises(LvsConfigError, match="lb_algo wlc"):
        choose(services, "nft", checkers, ipvs_missing="x")
    assert choose(services, "proxy", checkers, ipvs_missing="x").used() == {"proxy"}
    with pytest.raises(LvsConfigError, match="--dataplane"):
        choose(services, "fast", checkers)
    assert choose(services + [svc(kind="DR")], "none", checkers).backend == {}  # check-only: no errors


@pytest.mark.parametrize("dataplane", ["auto", "nft", "proxy"])
def test_dr_and_tun_without_ipvs_are_config_errors(dataplane):
    checkers = {"nft": NftBackend(), "proxy": ProxyBackend()}
    with pytest.raises(LvsConfigError, match="lb_kind DR needs IPVS"):
        choose([svc(kind="DR")], dataplane, checkers, ipvs_missing="no ip_vs module")

    class KernelWithIpvs:  # stands in for IpvsBackend on a machine that has ip_vs
        def unsupported(self, service):
            return None

    # with IPVS present, DR/TUN go there, whatever the scheduler
    c = choose([svc("wlc", kind="TUN")], "auto", {"ipvs": KernelWithIpvs(), **checkers}, ipvs_missing="")
    assert c.backend[K] == "ipvs"
    assert (IpvsBackend().unsupported(svc()) is None) == (kernel_unavailable() is None)


def test_ipvs_encoding_round_trips_through_netlink_messages():
    from pyroute2 import IPVSDest, IPVSService
    from pyroute2.netlink.generic import ipvs as gi

    s = svc("wlc", (2, 1), kind="DR", persistence_timeout=300, persistence_netmask="255.255.255.0")
    calls = encode(diff(DesiredState({K: s}), DesiredState()))
    assert [(c.obj, c.command) for c in calls] == [("service", "add"), ("dest", "add"), ("dest", "add")]
    assert calls[0].service == {"protocol": socket.IPPROTO_TCP, "af": socket.AF_INET, "addr": "192.168.231.10",
                                "port": 8801, "sched_name": "wlc", "flags": {"flags": 1, "mask": 0xFFFF},
                                "timeout": 300, "netmask": "255.255.255.0"}
    assert calls[1].dest["fwd_method"] == 3 and calls[1].dest["weight"] == 2
    # encode to the wire and decode again, as the kernel would receive it
    msg = gi.ipvsmsg()
    msg["cmd"] = gi.IPVS_CMD_NEW_DEST
    msg["version"] = 1
    msg["attrs"] = [("IPVS_CMD_ATTR_SERVICE", IPVSService(**calls[1].service).dump_key()),
                    ("IPVS_CMD_ATTR_DEST", IPVSDest(**calls[1].dest).dump_nla())]
    msg.encode()
    back = gi.ipvsmsg(msg.data)
    back.decode()
    d = back.get("IPVS_CMD_ATTR_DEST")
    assert d.get("IPVS_DEST_ATTR_ADDR") == "192.168.231.11"
    assert d.get("IPVS_DEST_ATTR_PORT") == 8801 and d.get("IPVS_DEST_ATTR_FWD_METHOD") == 3
    assert back.get("IPVS_CMD_ATTR_SERVICE").get("IPVS_SVC_ATTR_PORT") == 8801
    # weight change -> set, removal -> del; a fwmark service is keyed by its mark
    s2 = svc("wlc", (5,), kind="DR", persistence_timeout=300, persistence_netmask="255.255.255.0")
    calls = encode(diff(DesiredState({K: s2}), DesiredState({K: s})))
    assert [(c.obj, c.command, c.dest["addr"]) for c in calls] == [("dest", "del", "192.168.231.12"),
                                                                   ("dest", "set", "192.168.231.11")]
    fk = ServiceKey("UDP", fwmark=9)
    calls = encode(diff(DesiredState(), DesiredState({fk: svc(key=fk)})))
    assert calls[0].command == "del" and calls[0].service == {"protocol": 17, "fwmark": 9, "af": 2}


def test_sh_flags_reach_every_backend():
    from chimeha.config import loads
    from chimeha.lvs.desired import desired_state

    cfg = loads("virtual_server 10.0.0.1 80 {\n protocol TCP\n lb_algo sh\n sh-port\n sh-fallback\n"
                " real_server 10.0.0.2 80 {\n weight 1\n }\n real_server 10.0.0.3 80 {\n weight 0\n }\n}\n").config
    s = next(iter(desired_state(cfg, None).services.values()))
    assert s.flags == ("fallback", "port")
    text = Renderer("never").render(DesiredState({s.key: s}))
    line = next(x for x in text.splitlines() if "jhash" in x)
    assert "jhash ip saddr . th sport mod 256" in line
    assert line.count(" : goto ") == 1 and "0-255 : goto" in line  # fallback: every slot to the live server
    assert encode(diff(DesiredState({s.key: s}), DesiredState()))[0].service["flags"]["flags"] == 0x18


def test_snat_to_vip_writes_one_rule_per_vip_with_that_vip_as_source():
    from chimeha.lvs.backends.nft import NftBackend
    a = svc("rr", (1, 1))
    from dataclasses import replace
    b = replace(a, key=ServiceKey("TCP", "192.168.231.20", 80))
    text = Renderer("auto", ["192.168.231.0/24"], "vip").render(DesiredState({a.key: a, b.key: b}))
    post = _hook(text, "postrouting")
    assert post == [f"ct status dnat ct original ip daddr {v} ip saddr 192.168.231.0/24 "
                    f"ip daddr 192.168.231.0/24 snat ip to {v}" for v in ("192.168.231.10", "192.168.231.20")]
    assert "masquerade" not in text
    with pytest.raises(ValueError, match="snat_to must be one of auto, masquerade, vip"):
        NftBackend(snat_to="dedicated")


def test_snat_to_auto_uses_the_vip_only_where_the_real_servers_subnet_holds_it():
    """A VIP on the real servers' link: NAT to it (no tuple shared with the director's own
    connections); a VIP the real servers cannot reach on the link (a /32 elsewhere): masquerade."""
    from dataclasses import replace
    a = svc("rr", (1, 1))  # 192.168.231.10, real servers in 192.168.231.0/24
    b = replace(a, key=ServiceKey("TCP", "10.20.0.10", 80))
    c = replace(a, key=ServiceKey("TCP", "10.20.0.11", 80))
    state = DesiredState({x.key: x for x in (a, b, c)})
    cond = "ip saddr 192.168.231.0/24 ip daddr 192.168.231.0/24"
    auto = _hook(Renderer("auto", ["192.168.231.0/24"]).render(state), "postrouting")
    assert auto == [f"ct status dnat ct original ip daddr 192.168.231.10 {cond} snat ip to 192.168.231.10",
                    f"ct status dnat ct original ip daddr {{ 10.20.0.10, 10.20.0.11 }} {cond} masquerade"]
    assert Renderer("auto", ["192.168.231.0/24"]).snat_to == "auto"  # the default
    plain = _hook(Renderer("auto", ["192.168.231.0/24"], "masquerade").render(state), "postrouting")
    assert plain == [f"ct status dnat ct original ip daddr {{ 10.20.0.10, 10.20.0.11, 192.168.231.10 }} {cond} "
                     "masquerade"]
    # snat always (no subnet known): auto cannot tell, so the interface's address
    always = _hook(Renderer("always", [], "auto").render(DesiredState({a.key: a})), "postrouting")
    assert always == ["ct status dnat ct original ip daddr 192.168.231.10 masquerade"]

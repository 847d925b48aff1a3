"""Desired state from the config model, quorum/hysteresis, and the reconciler's diffs."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from chimeha.config.model import (Config, RealServer, TcpCheck, VirtualAddress, VirtualServer,
                                  VirtualServerGroup, VirtualServerGroupEntry, VrrpInstance)
from chimeha.lvs.desired import RsHealth, desired_state, quorum_changes, rs_id, vs_id
from chimeha.lvs.reconcile import (AddDest, AddService, DelDest, DelService, EditDest, EditService, apply_to,
                                   diff)
from chimeha.lvs.types import DesiredState, Destination, Service, ServiceKey

CHECK = (TcpCheck(),)


def vs(*rss, **kw):
    kw.setdefault("address", "192.168.231.10")
    kw.setdefault("port", 8801)
    kw.setdefault("lb_algo", "rr")
    return VirtualServer(real_servers=tuple(rss), **kw)


def rs(addr, weight=1, port=8801, **kw):
    kw.setdefault("checkers", CHECK)
    return RealServer(addr, port=port, weight=weight, **kw)


def config(*vss, vips=("192.168.231.10/32",), groups=None):
    inst = VrrpInstance("VI_1", virtual_ipaddresses=tuple(VirtualAddress(a) for a in vips))
    return Config(instances={"VI_1": inst}, virtual_servers=tuple(vss), virtual_server_groups=groups or {})


def dests(state, key=ServiceKey("TCP", "192.168.231.10", 8801)):
    return [(d.address, d.weight) for d in state.services[key].destinations]


def test_only_the_vip_holder_forwards():
    v = vs(rs("192.168.231.11"), rs("192.168.231.12"))
    other = vs(rs("10.0.0.1", port=80), address="10.9.9.9", port=80)  # not a VRRP address
    cfg = config(v, other)
    backup = desired_state(cfg, set())
    assert list(backup.services) == [ServiceKey("TCP", "10.9.9.9", 80)]
    assert backup.notes[vs_id(v)] == "standby: VIP held by another node"
    master = desired_state(cfg, {"192.168.231.10"})
    assert dests(master) == [("192.168.231.11", 1), ("192.168.231.12", 1)]
    assert len(desired_state(cfg, None).services) == 2  # no gating


def test_down_real_server_removed_or_inhibited_and_dynamic_weight():
    a, b = rs("192.168.231.11", 3), rs("192.168.231.12", 2)
    v = vs(a, b)
    cfg = config(v)
    h = {rs_id(v, a): RsHealth(False)}
    assert dests(desired_state(cfg, None, h)) == [("192.168.231.12", 2)]
    inhibited = config(replace(v, inhibit_on_failure=True))
    assert dests(desired_state(inhibited, None, h)) == [("192.168.231.11", 0), ("192.168.231.12", 2)]
    # the real server's own setting wins over the virtual server's
    v2 = vs(replace(a, inhibit_on_failure=False), b, inhibit_on_failure=True)
    assert dests(desired_state(config(v2), None, {rs_id(v2, v2.real_servers[0]): (False, None)})) == \
        [("192.168.231.12", 2)]
    assert dests(desired_state(cfg, None, {rs_id(v, a): RsHealth(True, 7)})) == \
        [("192.168.231.11", 7), ("192.168.231.12", 2)]


def test_alpha_starts_down_until_checked_and_no_checkers_is_up():
    a, b = rs("192.168.231.11"), rs("192.168.231.12", checkers=())
    v = vs(a, b, alpha=True)
    assert dests(desired_state(config(v), None)) == [("192.168.231.12", 1)]
    assert dests(desired_state(config(v), None, {rs_id(v, a): RsHealth(True)})) == \
        [("192.168.231.11", 1), ("192.168.231.12", 1)]


def test_quorum_with_hysteresis_and_sorry_server():
    rss = [rs(f"192.168.231.{i}") for i in (11, 12, 13, 14)]
    v = vs(*rss, quorum=3, hysteresis=1, sorry_server=RealServer("192.168.231.99", port=8080))
    cfg = config(v)
    vid = vs_id(v)

    def step(prev, n_up):
        h = {rs_id(v, r): RsHealth(i < n_up) for i, r in enumerate(rss)}
        return desired_state(cfg, None, h, prev)

    s = step(None, 4)
    assert s.quorum[vid] and not s.services[ServiceKey("TCP", "192.168.231.10", 8801)].sorry
    s2 = step(s, 2)  # 2 >= quorum - hysteresis = 2: still up
    assert s2.quorum[vid] and quorum_changes(s, s2) == []
    s3 = step(s2, 1)  # below 2: lost, sorry server replaces the real servers
    assert not s3.quorum[vid]
    assert quorum_changes(s2, s3) == [(vid, False)]
    assert dests(s3) == [("192.168.231.99", 1)]
    assert s3.services[ServiceKey("TCP", "192.168.231.10", 8801)].destinations[0].port == 8080
    s4 = step(s3, 3)  # 3 < quorum + hysteresis = 4: still lost
    assert not s4.quorum[vid]
    s5 = step(s4, 4)
    assert s5.quorum[vid] and quorum_changes(s4, s5) == [(vid, True)]
    assert len(dests(s5)) == 4


def test_quorum_lost_without_sorry_server_keeps_live_servers():
    rss = [rs("192.168.231.11"), rs("192.168.231.12")]
    v = vs(*rss, quorum=2)
    s = desired_state(config(v), None, {rs_id(v, rss[0]): RsHealth(False)})
    assert not s.quorum[vs_id(v)]
    assert dests(s) == [("192.168.231.12", 1)]


def test_groups_fwmark_and_persistence_mapping():
    g = VirtualServerGroup("G", members=(VirtualServerGroupEntry(address="192.168.231.30", range_end=31, port=80),
                                         VirtualServerGroupEntry(fwmark=7)))
    v = VirtualServer(group="G", lb_algo="sh", persistence_timeout=50, persistence_granularity="255.255.255.0",
                      real_servers=(rs("192.168.231.11", port=None),))
    s = desired_state(config(v, groups={"G": g}), None)
    assert set(s.services) == {ServiceKey("TCP", "192.168.231.30", 80), ServiceKey("TCP", "192.168.231.31", 80),
                               ServiceKey("TCP", fwmark=7)}
    svc = s.services[ServiceKey("TCP", "192.168.231.31", 80)]
    assert (svc.scheduler, svc.persistence_timeout, svc.persistence_netmask) == ("sh", 50, "255.255.255.0")
    assert s.services[ServiceKey("TCP", fwmark=7)].destinations[0].port == 0  # keep the packet's port
    missing = VirtualServer(group="nope", real_servers=())
    bad = desired_state(config(missing), None)
    assert not bad.services and "not defined" in bad.notes[vs_id(missing)]


# ---------------------------------------------------------------- reconciler

K1, K2 = ServiceKey("TCP", "10.0.0.10", 80), ServiceKey("UDP", "10.0.0.10", 53)


def svc(key, *ds, algo="rr", **kw):
    return Service(key, algo, destinations=tuple(Destination(a, 80, w) for a, w in ds), **kw)


def state(*ss):
    return DesiredState({s.key: s for s in ss})


def test_diff_orders_operations_safely():
    have = state(svc(K1, ("10.0.0.1", 1), ("10.0.0.2", 1)), svc(K2, ("10.0.0.1", 1)))
    want = state(svc(K1, ("10.0.0.2", 5), ("10.0.0.3", 1), algo="wrr"))
    ops = diff(want, have)
    assert [type(o) for o in ops] == [DelService, EditService, DelDest, EditDest, AddDest]
    assert ops[0].key == K2
    assert ops[1].service.scheduler == "wrr" and ops[1].service.destinations == ()
    assert (ops[2].dest.address, ops[3].dest.weight, ops[4].dest.address) == ("10.0.0.1", 5, "10.0.0.3")
    assert diff(want, want) == []


def test_diff_adds_service_before_its_destinations():
    ops = diff(state(svc(K1, ("10.0.0.2", 1), ("10.0.0.1", 2))), DesiredState())
    assert isinstance(ops[0], AddService)
    assert [o.dest.address for o in ops[1:]] == ["10.0.0.2", "10.0.0.1"]  # configuration order


service_st = st.builds(
    lambda key, ds, algo, pt: svc(key, *ds, algo=algo, persistence_timeout=pt),
    st.sampled_from([K1, K2, ServiceKey("TCP", fwmark=3)]),
    st.lists(st.tuples(st.sampled_from(["10.0.0.1", "10.0.0.2", "10.0.0.3"]), st.integers(0, 3)),
             unique_by=lambda t: t[0], max_size=3),
    st.sampled_from(["rr", "wlc", "sh"]), st.sampled_from([None, 50]))
states_st = st.lists(service_st, unique_by=lambda s: s.key, max_size=3).map(lambda ss: state(*ss))


@given(states_st, states_st)
@settings(max_examples=200)
def test_applying_the_diff_reaches_desired(want, have):
    ops = diff(want, have)
    got = apply_to(have, ops)
    norm = lambda s: {k: (v.attrs(), set(v.destinations)) for k, v in s.services.items()}  # noqa: E731
    assert norm(got) == norm(want)
    assert diff(want, got) == []
    # minimal: never touches a service that is already right
    for op in ops:
        k = getattr(op, "key", None) or getattr(op, "service", None)
        k = k.key if isinstance(k, Service) else k
        assert not (k in want.services and k in have.services and want.services[k] == have.services[k])


def test_unprogrammable_virtual_servers_are_skipped_with_a_reason():
    bad_algo = vs(rs("192.168.231.11"), lb_algo="fastest")
    bad_mask = vs(rs("192.168.231.11"), port=8802, persistence_timeout=50, persistence_granularity="255.0.255.0")
    good = vs(rs("192.168.231.11"), port=8803)
    s = desired_state(config(bad_algo, bad_mask, good), None)
    assert list(s.services) == [ServiceKey("TCP", "192.168.231.10", 8803)]
    assert "unknown lb_algo 'fastest'" in s.notes[vs_id(bad_algo)]
    assert "bad persistence_granularity '255.0.255.0'" in s.notes[vs_id(bad_mask)]

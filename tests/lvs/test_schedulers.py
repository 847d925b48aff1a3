"""Distribution and stickiness of every scheduler (pure, property-based)."""

from __future__ import annotations

import collections
import ipaddress
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chimeha.lvs.schedulers import (ALGORITHMS, MH_TABLE_SIZE, Persistence, Server, make_scheduler,
                                    mask_client)
from chimeha.lvs.types import DestKey, LvsConfigError

weights_st = st.lists(st.integers(min_value=0, max_value=6), min_size=1, max_size=6)


def servers(weights):
    return [Server(DestKey(f"10.0.0.{i + 1}", 80), w) for i, w in enumerate(weights)]


def clients(n, seed=1):
    rnd = random.Random(seed)
    return [str(ipaddress.IPv4Address(rnd.getrandbits(32))) for _ in range(n)]


@given(weights_st, st.integers(min_value=1, max_value=5))
def test_rr_visits_every_available_server_in_turn(weights, rounds):
    ss = servers(weights)
    sched = make_scheduler("rr", ss)
    live = [s for s in ss if s.weight > 0]
    picks = [sched.schedule("1.2.3.4") for _ in range(rounds * len(live))]
    if not live:
        assert picks == [None] * len(picks)
        return
    assert picks == live * rounds


@given(weights_st)
def test_wrr_period_matches_weights(weights):
    ss = servers(weights)
    sched = make_scheduler("wrr", ss)
    live = [s for s in ss if s.weight > 0]
    if not live:
        assert sched.schedule("1.2.3.4") is None
        return
    import math
    g = math.gcd(*(s.weight for s in live))
    period = sum(s.weight for s in live) // g
    counts = collections.Counter(id(sched.schedule("1.2.3.4")) for _ in range(period * 3))
    for s in live:
        assert counts[id(s)] == 3 * s.weight // g
    assert all(counts[id(s)] == 0 for s in ss if s.weight == 0)


def test_wrr_is_interleaved_like_ipvs():
    ss = servers([4, 3, 2])
    sched = make_scheduler("wrr", ss)
    names = [sched.schedule("c").key.address[-1] for _ in range(9)]
    # current weight steps 4,3,2,1: servers whose weight reaches it, in order
    assert names == list("112123123")


@pytest.mark.parametrize("algo", ["lc", "wlc", "sed"])
@given(weights=weights_st, loads=st.lists(st.integers(0, 20), min_size=6, max_size=6),
       inactive=st.lists(st.integers(0, 300), min_size=6, max_size=6))
def test_least_load_schedulers_pick_a_minimum(algo, weights, loads, inactive):
    ss = servers(weights)
    for s, a, i in zip(ss, loads, inactive):
        s.active, s.inactive = a, i
    chosen = make_scheduler(algo, ss).schedule("c")
    live = [s for s in ss if s.weight > 0]
    if not live:
        assert chosen is None
        return

    def cost(s):
        if algo == "lc":
            return (s.active * 256 + s.inactive, 1)
        if algo == "wlc":
            return (s.active * 256 + s.inactive, s.weight)
        return (s.active + 1, s.weight)

    cn, cd = cost(chosen)
    assert chosen.weight > 0
    for o in live:
        on, od = cost(o)
        assert cn * od <= on * cd
    # ties go to the first server in configuration order
    first = next(o for o in live if cost(o)[0] * cd == cn * cost(o)[1])
    assert first is chosen


def test_wlc_balances_by_weight_under_load():
    ss = servers([3, 1])
    sched = make_scheduler("wlc", ss)
    for _ in range(400):
        sched.schedule("c").active += 1  # connections never close
    assert (ss[0].active, ss[1].active) == (300, 100)


def test_nq_prefers_idle_server_then_sed():
    ss = servers([1, 5, 1])
    ss[0].active, ss[1].active, ss[2].active = 3, 2, 0
    sched = make_scheduler("nq", ss)
    assert sched.schedule("c") is ss[2]
    ss[2].active = 4
    # sed: (3+1)/1=4, (2+1)/5=0.6, (4+1)/1=5
    assert sched.schedule("c") is ss[1]


@pytest.mark.parametrize("algo", ["sh", "mh"])
@given(weights=st.lists(st.integers(1, 5), min_size=1, max_size=5))
@settings(max_examples=30)
def test_hashing_is_sticky_per_client(algo, weights):
    ss = servers(weights)
    sched = make_scheduler(algo, ss)
    for c in clients(50):
        first = sched.schedule(c)
        assert first is not None
        assert all(sched.schedule(c) is first for _ in range(3))


def test_sh_table_proportional_to_weights():
    ss = servers([1, 3])
    sched = make_scheduler("sh", ss)
    counts = collections.Counter(sched.table)
    assert counts == {0: 64, 1: 192}


def test_sh_quiescent_server_drops_or_falls_back_without_moving_others():
    ss = servers([1, 1, 1])
    base = {c: make_scheduler("sh", ss).schedule(c).key for c in clients(300)}
    ss[1].weight = 0
    strict = make_scheduler("sh", ss)
    fb = make_scheduler("sh", ss, fallback=True)
    for c, k in base.items():
        if k == ss[1].key:
            assert strict.schedule(c) is None
            assert fb.schedule(c).key != ss[1].key
        else:
            assert strict.schedule(c).key == k
            assert fb.schedule(c).key == k


def test_dh_keys_on_destination():
    ss = servers([1, 1, 1, 1])
    sched = make_scheduler("dh", ss)
    picks = {sched.schedule(c, dest="10.9.9.9").key for c in clients(50)}
    assert len(picks) == 1


@given(n=st.integers(1, 7))
@settings(max_examples=7)
def test_maglev_equal_weights_fill_table_evenly(n):
    sched = make_scheduler("mh", servers([1] * n))
    counts = collections.Counter(sched.table)
    assert sum(counts.values()) == MH_TABLE_SIZE
    assert max(counts.values()) - min(counts.values()) <= 1


def test_maglev_weights_and_minimal_disruption():
    ss = servers([2, 1, 1, 1])
    counts = collections.Counter(make_scheduler("mh", ss).table)
    assert abs(counts[0] - 2 * counts[1]) <= 2
    before = {c: make_scheduler("mh", ss).schedule(c).key for c in clients(2000)}
    after_sched = make_scheduler("mh", ss[:3])  # the last server is removed
    moved = sum(1 for c, k in before.items() if k != ss[3].key and after_sched.schedule(c).key != k)
    kept_total = sum(1 for k in before.values() if k != ss[3].key)
    assert moved / kept_total < 0.1  # Maglev: nearly only the removed server's clients move


def test_lblc_keeps_destination_until_overloaded():
    ss = servers([2, 2])
    sched = make_scheduler("lblc", ss)
    first = sched.schedule("c", dest="10.1.1.1", now=0)
    first.active = 2  # at its weight: not overloaded
    assert sched.schedule("c", dest="10.1.1.1", now=1) is first
    first.active = 3  # above weight while the other is idle: overloaded
    other = sched.schedule("c", dest="10.1.1.1", now=2)
    assert other is not first
    # an idle entry expires after 6 minutes and the destination is rescheduled by wlc
    other.active = 50
    assert sched.schedule("c", dest="10.1.1.1", now=2 + 361) is first


def test_lblcr_grows_set_on_overload_and_spreads_inside_it():
    ss = servers([1, 1, 1])
    sched = make_scheduler("lblcr", ss)
    a = sched.schedule("c", dest="d", now=0)
    a.active = 5
    b = sched.schedule("c", dest="d", now=1)
    assert b is not a
    assert set(sched._table["d"][0]) == {a.key, b.key}
    b.active = 1
    # b is the least loaded member and not overloaded: stays inside the set
    assert sched.schedule("c", dest="d", now=2) is b


def test_fo_and_ovf():
    ss = servers([1, 5, 3])
    fo = make_scheduler("fo", ss)
    assert fo.schedule("c") is ss[1]
    ss[1].weight = 0
    assert fo.schedule("c") is ss[2]
    ss[1].weight = 5
    ovf = make_scheduler("ovf", ss)
    got = []
    for _ in range(9):
        s = ovf.schedule("c")
        got.append(ss.index(s))
        s.active += 1
    assert got == [1] * 5 + [2] * 3 + [0]
    assert ovf.schedule("c") is None  # every server at its weight


def test_twos_picks_less_loaded_of_two_random_choices():
    ss = servers([1, 1])
    ss[0].active = 10
    seq = iter([0, 1, 1, 0, 0, 0])
    sched = make_scheduler("twos", ss, rng=lambda n: next(seq))
    assert sched.schedule("c") is ss[1]
    assert sched.schedule("c") is ss[1]
    assert sched.schedule("c") is ss[0]  # both choices landed on the same server


@given(weights=st.lists(st.integers(0, 4), min_size=1, max_size=5), seed=st.integers(0, 1000))
@settings(max_examples=40)
def test_twos_never_picks_weight_zero(weights, seed):
    ss = servers(weights)
    sched = make_scheduler("twos", ss, rng=random.Random(seed).randrange)
    for _ in range(20):
        s = sched.schedule("c")
        assert (s is None) == all(w == 0 for w in weights)
        assert s is None or s.weight > 0


@pytest.mark.parametrize("algo", ALGORITHMS)
def test_no_server_available_gives_none(algo):
    sched = make_scheduler(algo, servers([0, 0]))
    assert sched.schedule("1.1.1.1", dest="2.2.2.2") is None
    assert make_scheduler(algo, []).schedule("1.1.1.1") is None


def test_unknown_algorithm_is_a_config_error():
    with pytest.raises(LvsConfigError, match="unknown lb_algo 'xyz'"):
        make_scheduler("xyz")


@given(st.sampled_from(["rr", "wrr", "lc", "wlc", "sed", "nq"]), st.integers(1, 100))
@settings(max_examples=30)
def test_persistence_sticks_within_timeout(algo, timeout):
    ss = servers([1, 1, 1])
    p = Persistence(make_scheduler(algo, ss), timeout)
    first = p.schedule("10.1.1.1", now=0)
    first.active += 1
    p.closed("10.1.1.1", 0.5)
    for t in range(1, timeout):
        assert p.schedule("10.1.1.1", now=t) is first  # each new connection re-arms the template
        p.closed("10.1.1.1", t)


def test_persistence_expires_unless_connections_are_open():
    ss = servers([1, 1])
    p = Persistence(make_scheduler("rr", ss), 50)
    a = p.schedule("10.1.1.1", now=0)
    assert p.schedule("10.2.2.2", now=0) is not a  # rr moved on
    p.closed("10.2.2.2", 1)
    # the first client's connection is still open at t=100: its template holds
    assert p.schedule("10.1.1.1", now=100) is a
    p.closed("10.1.1.1", 100)
    p.closed("10.1.1.1", 100)
    # closed, and 50 s later nothing of it remains: rr decides again
    p.schedule("10.3.3.3", now=151)
    p.closed("10.3.3.3", 151)
    assert "10.1.1.1" not in p.templates


def test_persistence_granularity_groups_clients_and_skips_quiescent():
    ss = servers([1, 1])
    p = Persistence(make_scheduler("rr", ss), 50, "255.255.255.0")
    a = p.schedule("10.1.1.1", now=0)
    assert p.schedule("10.1.1.200", now=1) is a
    assert p.schedule("10.1.2.1", now=1) is not a
    a.weight = 0
    assert p.schedule("10.1.1.9", now=2) is not a


def test_mask_client():
    assert mask_client("10.1.2.3", "255.255.0.0") == "10.1.0.0"
    assert mask_client("fd00::1:2", "64") == "fd00::"
    assert mask_client("10.1.2.3", None) == "10.1.2.3"
    with pytest.raises(LvsConfigError, match="persistence_granularity"):
        mask_client("10.1.2.3", "255.0.255.0")

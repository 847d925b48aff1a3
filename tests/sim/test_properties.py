"""Property tests: whatever happened before, a healed segment converges to one master."""

from hypothesis import given, settings, strategies as st

from chimeha.sim import ScriptModel, Segment
from chimeha.vrrp.events import InstanceSpec, TrackSpec
from chimeha.vrrp.timing import master_down_interval

VIP = "192.168.231.10"
ACTIONS = ["link-down", "link-up", "stop", "start", "crash", "check-fail", "check-ok"]


def build(prios, nopreempt, version, interval):
    seg = Segment()
    for i, p in enumerate(prios):
        spec = InstanceSpec("VI_1", 51, p, version=version, advert_int=interval, advert_addresses=(VIP,),
                            virtual_ipaddresses=(VIP,), interface="eth0", nopreempt=nopreempt,
                            initial_state="MASTER" if p == 255 else "BACKUP",
                            tracks=(TrackSpec("chk"), TrackSpec("eth0", "interface")))
        seg.add_node(f"n{i}", f"10.0.0.{i + 1}", [spec], scripts=[ScriptModel("chk", 1.0)])
    return seg


def apply(seg, t, node, action):
    {"link-down": lambda: seg.link_down(node, at=t), "link-up": lambda: seg.link_up(node, at=t),
     "stop": lambda: seg.stop_node(node, at=t), "start": lambda: seg.start_node(node, at=t),
     "crash": lambda: seg.crash_node(node, at=t), "check-fail": lambda: seg.check_fail(node, "chk", at=t),
     "check-ok": lambda: seg.check_ok(node, "chk", at=t)}[action]()


@settings(max_examples=120, deadline=None)
@given(
    prios=st.lists(st.sampled_from([1, 50, 100, 100, 200, 254, 255]), min_size=2, max_size=4),
    nopreempt=st.booleans(),
    version=st.sampled_from([2, 3]),
    interval=st.sampled_from([1.0, 0.5]),
    events=st.lists(st.tuples(st.floats(0, 30, allow_nan=False), st.integers(0, 3), st.sampled_from(ACTIONS)),
                    max_size=12),
)
def test_healed_segment_has_exactly_one_master_holding_the_vip(prios, nopreempt, version, interval, events):
    if version == 2:
        interval = 1.0
    seg = build(prios, nopreempt, version, interval)
    seg.start(0.0)
    names = list(seg.nodes)
    for t, idx, action in events:
        apply(seg, round(t, 3), names[idx % len(names)], action)
    # Heal everything at 40 s.
    for n in names:
        seg.link_up(n, at=40.0)
        seg.check_ok(n, "chk", at=40.0)
        seg.start_node(n, at=40.0)
    settle = 40.0 + 1.0 + 2 * max(master_down_interval(p, interval, version) for p in prios) + 1.0
    seg.run_until(settle)
    masters = seg.masters("VI_1")
    assert len(masters) == 1, seg.timeline[-20:]
    assert seg.holders(VIP) == set(masters)
    eff = {n: seg.instance(n, "VI_1").priority for n in names}
    for n, p in zip(names, prios):
        # Only two owners MASTER at once lower a priority (255 -> 254 until reload, as keepalived).
        assert eff[n] == p or (p == 255 and eff[n] == 254 and prios.count(255) > 1), (n, p, eff)
    if not nopreempt:
        # Preemption: the master has the top (effective) priority (equal priorities: any of
        # them, the tie-break only decides between simultaneous masters).
        assert eff[masters[0]] == max(eff.values())

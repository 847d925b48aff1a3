"""Trackers on a vrrp_sync_group (keepalived 2.2.7 semantics), driven with a fake clock.

The config is read as keepalived.conf text, turned into specs by
``chimeha.vrrp.from_config`` and run on one :class:`VrrpNode`: time is an
argument, no sockets, no sleeps.
"""

from __future__ import annotations

from chimeha.config import loads
from chimeha.track.spec import TrackSpec
from chimeha.vrrp.events import GroupStateChanged, State
from chimeha.vrrp.from_config import instance_specs, sync_groups
from chimeha.vrrp.node import VrrpNode
from chimeha.vrrp.sync_group import member_tracks

HEAD = """global_defs {
    enable_script_security
    script_user root
}
vrrp_script chk {
    script "/bin/true"
    weight -10
}
vrrp_script gate {
    script "/bin/true"
}
"""


def _inst(name: str, vrid: int, prio: int, state: str, extra: str = "") -> str:
    return f"""vrrp_instance {name} {{
    state {state}
    interface eth0
    virtual_router_id {vrid}
    priority {prio}
    advert_int 1
    unicast_src_ip 10.0.0.1
{extra}    virtual_ipaddress {{
        10.0.0.{vrid}
    }}
}}
"""


def _config(group_body: str, a_extra: str = "", prio_a: int = 100, state_a: str = "MASTER"):
    text = (HEAD + "vrrp_sync_group G {\n    group {\n        VI_A\n        VI_B\n    }\n" + group_body + "}\n"
            + _inst("VI_A", 51, prio_a, state_a, a_extra) + _inst("VI_B", 52, 100, "MASTER"))
    r = loads(text, "sg.conf")
    assert r.ok, [str(d) for d in r.diagnostics]
    return r.config


def _run(node: VrrpNode, until: float) -> None:
    """Fire every timer due up to ``until`` (the fake clock)."""
    while (t := node.get_timer()) is not None and t <= until:
        node.handle_timer(t)


def _node(config) -> VrrpNode:
    node = VrrpNode(instance_specs(config), sync_groups(config))
    node.start(0.0)
    _run(node, 5.0)  # nobody else on the segment: both are MASTER after Master_Down_Interval
    node.pop_actions()
    return node


def _states(node) -> tuple[State, State]:
    return node.state("VI_A"), node.state("VI_B")


def test_group_tracker_is_attached_to_every_member_with_the_group_name():
    c = _config("    track_script {\n        gate\n    }\n")
    for spec in instance_specs(c):
        assert [(t.name, t.kind, t.weight, t.group) for t in spec.tracks if t.kind == "script"] == [
            ("gate", "script", 0, "G")]


def test_unweighted_group_script_failing_puts_the_whole_group_in_fault_and_back():
    node = _node(_config("    track_script {\n        gate\n    }\n"))
    assert _states(node) == (State.MASTER, State.MASTER)
    touched = node.set_tracked("gate", False, 6.0, kind="script", detail="failed 1/1 times")
    assert set(touched) == {"VI_A", "VI_B"}  # one result feeds both members
    assert _states(node) == (State.FAULT, State.FAULT)
    events = node.pop_actions()
    assert [e.state for e in events if isinstance(e, GroupStateChanged)] == ["FAULT"]
    node.set_tracked("gate", True, 9.0, kind="script")
    assert _states(node) == (State.BACKUP, State.BACKUP)
    _run(node, 9.0 + 3 * 1 + 1)  # nobody else: Master_Down_Interval later both take over
    assert _states(node) == (State.MASTER, State.MASTER)


def test_weighted_group_script_lowers_every_member_without_tracking_weight():
    """keepalived applies a group tracker's weight even without sync_group_tracking_weight."""
    node = _node(_config("    track_script {\n        chk\n    }\n"))
    node.set_tracked("chk", False, 6.0, kind="script")
    assert (node.instance("VI_A").priority, node.instance("VI_B").priority) == (90, 90)
    assert _states(node) == (State.MASTER, State.MASTER)


def test_members_own_weighted_script_is_ignored_unless_sync_group_tracking_weight():
    own = "    track_script {\n        chk\n    }\n"
    node = _node(_config("", a_extra=own))
    assert not any(t.name == "chk" for t in node.spec("VI_A").tracks)
    assert node.set_tracked("chk", False, 6.0, kind="script") == ()
    assert node.instance("VI_A").priority == 100
    node = _node(_config("    sync_group_tracking_weight\n", a_extra=own))
    node.set_tracked("chk", False, 6.0, kind="script")
    assert node.instance("VI_A").priority == 90
    node = _node(_config("    global_tracking\n", a_extra=own))  # deprecated synonym
    node.set_tracked("chk", False, 6.0, kind="script")
    assert node.instance("VI_A").priority == 90


def test_members_weighted_interface_becomes_a_fault_in_a_sync_group():
    node = _node(_config("", a_extra="    track_interface {\n        eth1 weight 20\n    }\n"))
    node.set_tracked("eth1", False, 6.0, kind="interface")
    assert _states(node) == (State.FAULT, State.FAULT)


def test_owner_member_clears_the_group_weights():
    c = _config("    track_script {\n        chk\n    }\n", prio_a=255)
    spec = {s.name: s for s in instance_specs(c)}
    assert [(t.name, t.weight) for t in spec["VI_B"].tracks if t.kind == "script"] == [("chk", 0)]
    node = _node(c)
    node.set_tracked("chk", False, 6.0, kind="script")
    assert _states(node) == (State.FAULT, State.FAULT)


def test_tracker_on_member_and_group_counts_once_with_the_group_weight():
    own = TrackSpec("chk", "script", -10)
    group = TrackSpec("chk", "script", -40, group="G")
    assert member_tracks([own], [group], tracking_weight=True, owner_in_group=False) == (
        TrackSpec("chk", "script", -40, group="G"),)
    unweighted = TrackSpec("chk", "script", 0)
    assert member_tracks([unweighted], [group], tracking_weight=True, owner_in_group=False) == (unweighted,)


def test_member_tracks_rules_per_kind():
    own = [TrackSpec("s", "script", 5), TrackSpec("i", "interface", 5, reverse=True), TrackSpec("f1", "file", 1),
           TrackSpec("f2", "file", 3), TrackSpec("b", "bfd", -5), TrackSpec("p", "process", -7),
           TrackSpec("z", "script", 0)]
    got = member_tracks(own, [], tracking_weight=False, owner_in_group=False)
    assert [(t.name, t.weight) for t in got] == [("i", 0), ("f1", 0), ("p", -7), ("z", 0)]
    assert member_tracks(own, [], tracking_weight=True, owner_in_group=False) == tuple(own)


def test_an_instance_in_two_groups_stays_in_the_first():
    text = (HEAD + "vrrp_sync_group G {\n    group {\n        VI_A\n        VI_B\n    }\n}\n"
            "vrrp_sync_group H {\n    group {\n        VI_B\n    }\n    track_script {\n        gate\n    }\n}\n"
            + _inst("VI_A", 51, 100, "BACKUP") + _inst("VI_B", 52, 100, "BACKUP"))
    r = loads(text, "two.conf")
    # keepalived -t: "Virtual router VI_B cannot exist in more than one sync group; ignoring H" (exit 5)
    assert [(d.line, d.code) for d in r.diagnostics if d.code.startswith("sync")] == [(19, "sync-group-twice")]
    assert sync_groups(r.config) == {"G": ("VI_A", "VI_B")}
    spec = {s.name: s for s in instance_specs(r.config)}
    assert spec["VI_B"].sync_group == "G" and not any(t.name == "gate" for t in spec["VI_B"].tracks)

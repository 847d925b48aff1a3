"""Scenarios built from real configs (config.loads -> from_config -> segment)."""

import pytest

from chimeha.config import loads
from chimeha.sim.scenario import NodeInput, ScenarioError, lint, parse_event, prepare, simulate
from chimeha.vrrp.from_config import instance_specs, sync_groups
from chimeha.vrrp.timing import master_down_interval


def conf(prio, state="BACKUP", extra="", scripts="", track="", vips="192.168.231.10", vrid=51, name="VI_1"):
    return f"""{scripts}
vrrp_instance {name} {{
    state {state}
    interface ens160
    virtual_router_id {vrid}
    priority {prio}
    advert_int 1
    {extra}
    virtual_ipaddress {{
        {vips}
    }}
    {track}
}}
"""


def node(name, text, address=""):
    res = loads(text, f"{name}.conf")
    assert res.ok, [str(d) for d in res.diagnostics]
    return NodeInput(name, res.config, address)


SCRIPT = 'vrrp_script chk { \n script "/bin/true"\n interval 2\n weight -60\n fall 2\n}\n'


def test_from_config_builds_specs_with_tracks_and_interface():
    res = loads(conf(150, extra="nopreempt\n    preempt_delay 4\n    version 3\n    advert_int 0.5",
                     scripts=SCRIPT, track="track_script {\n chk\n }"), "a.conf")
    assert res.ok, [str(d) for d in res.diagnostics]
    (s,) = instance_specs(res.config, "10.0.0.1")
    assert (s.name, s.vrid, s.priority, s.version, s.advert_int, s.nopreempt, s.preempt_delay) == \
        ("VI_1", 51, 150, 3, 0.5, True, 4.0)
    assert s.advert_addresses == ("192.168.231.10",) and s.primary_address == "10.0.0.1"
    assert [(t.name, t.kind, t.weight) for t in s.tracks] == [("chk", "script", -60), ("ens160", "interface", 0)]
    assert not s.skip_check_adv_addr
    res = loads("global_defs {\n vrrp_skip_check_adv_addr\n}\n" + conf(100), "b.conf")
    assert instance_specs(res.config)[0].skip_check_adv_addr


def test_from_config_track_weight_override_and_dont_track_primary():
    res = loads(conf(100, extra="dont_track_primary", scripts=SCRIPT,
                     track="track_script {\n chk weight 10 reverse\n }"), "a.conf")
    (s,) = instance_specs(res.config)
    assert [(t.name, t.weight, t.reverse) for t in s.tracks] == [("chk", 10, True)]


def test_from_config_unicast_peers_with_ttl_range():
    res = loads(conf(100, extra="unicast_src_ip 10.0.0.1\n    unicast_peer {\n 10.0.0.2 min_ttl 250\n 10.0.0.3\n }"),
                "a.conf")
    assert res.ok, [str(d) for d in res.diagnostics]
    (s,) = instance_specs(res.config)
    assert s.primary_address == "10.0.0.1" and s.unicast_peers == ("10.0.0.2", "10.0.0.3")
    assert s.check_unicast_src and s.unicast_peer_ttl == (("10.0.0.2", 250, None),)


def test_from_config_sync_groups():
    text = ("vrrp_sync_group G { group { VI_1\n VI_2 } }\n" + conf(100)
            + conf(100, vrid=52, name="VI_2", vips="192.168.231.20"))
    res = loads(text, "a.conf")
    assert sync_groups(res.config) == {"G": ("VI_1", "VI_2")}
    assert {s.sync_group for s in instance_specs(res.config)} == {"G"}


def test_weighted_failover_from_configs_is_timed_by_the_formulas():
    track = "track_script {\n chk\n }"
    a = node("a", conf(150, scripts=SCRIPT, track=track), "192.168.231.11")
    b = node("b", conf(120), "192.168.231.12")
    out = simulate([a, b], [parse_event("10.5 a check-fail chk")])
    moves = out["vip_moves"]
    t_a = master_down_interval(150, 1.0)
    assert moves[0] == {"at": pytest.approx(t_a), "vip": "192.168.231.10", "from": None, "to": "a",
                        "after_event": "start", "delay": pytest.approx(t_a)}
    # fall 2 with interval 2: failing runs at 12 and 14 -> priority 90 at 14; b ignores a's
    # lower adverts from then on and times out from a's last advert before 14.
    last_valid = t_a + 10  # a advertises at t_a + k; t_a + 10 < 14 < t_a + 11
    assert last_valid < 14 < last_valid + 1
    assert moves[1]["to"] == "b"
    assert moves[1]["at"] == pytest.approx(last_valid + master_down_interval(120, 1.0), abs=1e-6)
    assert out["final"] == {"VI_1": {"a": "BACKUP", "b": "MASTER"}}


def test_lint_flags_equal_priorities_two_owners_and_mismatches():
    nodes = [node("a", conf(255, "MASTER")), node("b", conf(255, extra="advert_int 2")),
             node("c", conf(100, vrid=60, name="X")), node("d", conf(100, vrid=60, name="X", vips="10.1.1.1"))]
    prepare(nodes)
    warnings = "\n".join(lint(nodes))
    assert "2 address owners (priority 255) on a, b" in warnings
    assert "mismatched advert_int (a=1.0, b=2.0)" in warnings
    assert "equal priority 100 on c, d" in warnings
    assert "virtual_ipaddress lists differ" in warnings


def test_lint_flags_a_weight_too_small_to_move_the_vip_and_owner_weights():
    script = SCRIPT.replace("-60", "-10")
    nodes = [node("a", conf(150, scripts=script, track="track_script {\n chk\n }")), node("b", conf(120))]
    prepare(nodes)
    assert any("lowers priority 150 by 10 to 140, not below 120" in w for w in lint(nodes))
    nodes = [node("a", conf(255, scripts=script, track="track_script {\n chk\n }")), node("b", conf(120))]
    prepare(nodes)
    assert any("ignored on an address owner" in w for w in lint(nodes))


def test_clean_pair_has_no_warnings():
    nodes = [node("a", conf(200)), node("b", conf(100))]
    prepare(nodes)
    assert lint(nodes) == []


@pytest.mark.parametrize("text,msg", [
    ("1 a", "expected 'TIME NODE ACTION"),
    ("-1 a stop", "finite number >= 0"),
    ("nan a stop", "finite number >= 0"),
    ("1 a explode", "unknown action 'explode'"),
    ("1 a check-fail", "takes a script/track name"),
    ("1 a stop now", "takes no argument"),
])
def test_bad_events_are_clear_errors(text, msg):
    with pytest.raises(ScenarioError, match=msg):
        parse_event(text)


def test_event_time_may_carry_a_unit():
    assert parse_event("2.5s server1 link-down").at == 2.5


def test_duplicate_node_names_and_bad_addresses_are_errors():
    with pytest.raises(ScenarioError, match="two nodes are named 'a'"):
        prepare([node("a", conf(100)), node("a", conf(90))])
    with pytest.raises(ScenarioError, match="not an IP address"):
        prepare([node("a", conf(100), "nope")])

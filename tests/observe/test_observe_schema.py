import json

from hypothesis import given, settings, strategies as st

from chimeha.observe.schema import STAT_KEYS, normalize
from chimeha.vrrp.events import State
from chimeha.vrrp.packet import DropReason

from observe_fakes import sample_snapshot


def test_empty_snapshot_gets_every_section():
    snap = normalize({})
    assert snap["instances"] == {} and snap["scripts"] == {} and snap["virtual_servers"] == []
    assert snap["node"]["reloads"] == 0 and snap["schema"] == 1


def test_partial_instance_is_completed_with_defaults():
    snap = normalize({"instances": {"VI_1": {"state": "master", "base_priority": "200"}}})
    inst = snap["instances"]["VI_1"]
    assert inst["name"] == "VI_1"
    assert inst["state"] == "MASTER"
    assert inst["base_priority"] == 200
    assert inst["effective_priority"] == 200  # falls back to the base priority
    assert inst["split_brain"] == {"active": False, "peer": None, "since": None}
    assert inst["failovers"] == {"count": 0, "last_seconds": None, "recent": []}


def test_enum_states_and_drop_reasons_are_named_by_value():
    snap = normalize({"instances": {"a": {"state": State.BACKUP,
                                          "drops_by_reason": {DropReason.TTL: 3, DropReason.VRID_UNKNOWN: 1}}}})
    assert snap["instances"]["a"]["state"] == "BACKUP"
    assert snap["instances"]["a"]["drops_by_reason"] == {"ttl": 3, "vrid-unknown": 1}


def test_bare_split_brain_flag_and_failover_list_are_accepted():
    snap = normalize({"instances": {"a": {"split_brain": True, "failovers": {"recent": [1.5, 3.25]}}}})
    inst = snap["instances"]["a"]
    assert inst["split_brain"]["active"] is True
    assert inst["failovers"] == {"count": 2, "last_seconds": 3.25, "recent": [1.5, 3.25]}


def test_virtual_server_name_and_totals_are_derived():
    vs = normalize(sample_snapshot())["virtual_servers"][0]
    assert vs["name"] == "192.168.231.10:8801/TCP"
    assert vs["stats"]["connections"] == 311 + 12
    assert set(vs["stats"]) == set(STAT_KEYS)
    fw = normalize({"virtual_servers": [{"fwmark": 3, "protocol": "udp"}]})["virtual_servers"][0]
    assert fw["name"] == "fwmark 3/UDP"


def test_script_bool_result_and_unknown_words():
    snap = normalize({"scripts": {"a": {"result": False}, "b": {"result": "weird"}, "c": {"result": True}}})
    assert [snap["scripts"][k]["result"] for k in "abc"] == ["failed", "unknown", "ok"]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=15)


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.sampled_from(["node", "instances", "scripts", "virtual_servers", "drops_by_reason", "x"]),
                       st.dictionaries(st.text(max_size=4), json_values, max_size=3) | json_values, max_size=5))
def test_normalize_never_raises_and_is_json_serializable(raw):
    snap = normalize(raw)
    json.dumps(snap, allow_nan=False)  # NaN/inf never leak into the JSON the page reads
    for inst in snap["instances"].values():
        assert isinstance(inst["effective_priority"], int)
        assert isinstance(inst["split_brain"]["active"], bool)


def test_lvs_manager_shaped_entries_are_understood():
    raw = {"virtual_server": "TCP 192.168.231.10:8801", "lb_algo": "rr", "lb_kind": "NAT", "dataplane": "proxy",
           "counters": {"refused": 2}, "real_servers": [
               {"address": "192.168.231.21", "port": 8801, "healthy": True, "weight": 1, "in_service": True},
               {"address": "192.168.231.22", "port": 8801, "healthy": False, "weight": None, "in_service": False}]}
    vs = normalize({"virtual_servers": [raw]})["virtual_servers"][0]
    assert vs["name"] == "TCP 192.168.231.10:8801" and vs["dataplane"] == "proxy" and vs["active"] is True
    assert [r["weight"] for r in vs["real_servers"]] == [1, 0]
    assert vs["stats"]["connections"] == 0  # counters without known keys are not mistaken for stats
    idle = dict(raw, real_servers=[dict(raw["real_servers"][1])])
    assert normalize({"virtual_servers": [idle]})["virtual_servers"][0]["active"] is False

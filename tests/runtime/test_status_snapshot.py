"""runtime/status.py: the snapshot built from the node's typed status, driven by a fake clock."""

from __future__ import annotations

import logging
import socket
from types import SimpleNamespace

import pytest
from rtfakes import FakeDaemon, instance_conf

from chimeha.runtime import status
from chimeha.runtime.scripts import ScriptResult
from chimeha.vrrp.events import State

CHK = 'vrrp_script chk {\n script "/bin/true"\n weight -20\n}\nvrrp_script other {\n script "/bin/false"\n}\n'
TRACKS = " track_script {\n  chk\n }\n track_interface {\n  lo\n }\n"


def master_node(text=None):
    d = FakeDaemon(text or CHK + instance_conf(priority=150, vip="10.0.0.100/24\n  10.0.0.200/24", extra=TRACKS))
    n = d.node
    n.start(100.0)
    n.handle_timer(n.get_timer())  # nobody else on the LAN: Master_Down expires
    n.pop_actions()
    assert n.state("VI_1") is State.MASTER
    return d


def test_instance_entry_reports_what_the_node_knows():
    d = master_node()
    n = d.node
    n.note_send("VI_1", True)
    n.note_send("VI_1", True)
    n.note_send("VI_1", False)
    e = status.instance_entry(n.instance_status("VI_1"), 101.0)
    assert (e["name"], e["state"], e["vrid"], e["version"], e["interface"]) == ("VI_1", "MASTER", 10, 3, "lo")
    assert (e["base_priority"], e["effective_priority"], e["master_address"]) == (150, 150, "10.0.0.1")
    assert e["vips"] == ["10.0.0.100/24", "10.0.0.200/24"] and e["vips_owned"] is True
    assert (e["adverts_sent"], e["send_errors"], e["adverts_received"]) == (2, 1, 0)
    assert e["became_master"] == 1 and e["entered_fault"] == 0
    assert e["track_scripts"] == ["chk"]  # scripts only, not the tracked interface
    assert e["faults"] == [] and e["sync_group"] is None
    assert e["split_brain"] == {"active": False, "peer": None, "since": None}
    last = e["last_transition"]
    assert (last["from"], last["to"]) == ("BACKUP", "MASTER") and "master down interval" in last["reason"]


def test_transition_times_become_wall_clock_and_read_the_same_in_every_snapshot():
    d = master_node()
    st = d.node.instance_status("VI_1")
    first = status.instance_entry(st, 101.0)["last_transition"]["at"]
    later = status.instance_entry(st, 500.0)["last_transition"]["at"]
    assert first == later  # one fixed offset: an event does not move between polls
    assert first == pytest.approx(st.last_change.at + status._WALL_OFFSET)  # noqa: SLF001


def test_faults_are_listed_only_while_in_fault():
    d = master_node()
    d.node.set_tracked("lo", False, 101.0, kind="interface")
    e = status.instance_entry(d.node.instance_status("VI_1"), 101.0)
    assert e["state"] == "FAULT" and e["faults"] == ["track_interface lo"] and e["vips_owned"] is False
    assert e["entered_fault"] == 1
    d.node.set_tracked("lo", True, 102.0, kind="interface")
    e = status.instance_entry(d.node.instance_status("VI_1"), 102.0)
    assert e["state"] != "FAULT" and e["faults"] == []


def test_a_failed_script_lowers_the_effective_priority_only():
    d = master_node()
    d.node.set_tracked("chk", False, 101.0, kind="script")
    e = status.instance_entry(d.node.instance_status("VI_1"), 101.0)
    assert (e["base_priority"], e["effective_priority"]) == (150, 130)


class Tracker(SimpleNamespace):
    pass


def daemon_for_snapshot(d, *, scripts=None, lvs=None, bgp=None, router_id="lb1"):
    if router_id is None:
        d.config = SimpleNamespace(global_defs=SimpleNamespace(router_id=None), vrrp_scripts=d.config.vrrp_scripts)
    d.now = lambda: 101.0
    d.started_at, d.config_loaded_at, d.config_path, d.reloads = 1000.0, 1001.0, "/etc/k.conf", 3
    d.scripts = scripts or {}
    d.lvs, d.bgp = lvs, bgp
    return d


def test_snapshot_node_section_and_router_id():
    text = "global_defs {\n router_id lb1\n}\n" + CHK + instance_conf(extra=TRACKS)
    snap = status.snapshot(daemon_for_snapshot(master_node(text)))
    assert snap["schema"] == 1
    node = snap["node"]
    assert node["router_id"] == "lb1" and node["hostname"] == socket.gethostname()
    assert (node["started_at"], node["config_loaded_at"], node["config_path"], node["reloads"]) == (
        1000.0, 1001.0, "/etc/k.conf", 3)
    assert list(snap["instances"]) == ["VI_1"] and snap["instances"]["VI_1"]["state"] == "MASTER"
    assert snap["virtual_servers"] == [] and snap["bgp"] is None


def test_snapshot_router_id_defaults_to_the_hostname():
    snap = status.snapshot(daemon_for_snapshot(master_node(), router_id=None))
    assert snap["node"]["router_id"] == socket.gethostname()


def test_snapshot_scripts_unknown_then_ok_or_failed_with_the_configured_weight():
    never = Tracker(last=None, last_run_at=None, state=SimpleNamespace(ok=True))
    passed = Tracker(last=ScriptResult(True, 0), last_run_at=5.0, state=SimpleNamespace(ok=True))
    # The hysteresis state decides, not the last run: a failed run below `fall` is still "ok".
    failing = Tracker(last=ScriptResult(False, 3), last_run_at=6.0, state=SimpleNamespace(ok=True))
    down = Tracker(last=ScriptResult(False, None, timed_out=True, duration=2.0), last_run_at=7.0,
                   state=SimpleNamespace(ok=False))
    snap = status.snapshot(daemon_for_snapshot(master_node(), scripts={
        "chk": never, "other": passed, "gone": failing, "slow": down}))
    s = snap["scripts"]
    assert s["chk"] == {"name": "chk", "result": "unknown", "last_exit": None, "last_run_at": None,
                        "detail": "not run yet", "weight": -20}
    assert (s["other"]["result"], s["other"]["last_exit"], s["other"]["detail"], s["other"]["weight"]) == (
        "ok", 0, "exit status 0", 0)
    assert (s["gone"]["result"], s["gone"]["last_exit"], s["gone"]["weight"]) == ("ok", 3, 0)
    assert s["slow"]["result"] == "failed" and s["slow"]["detail"] == "timed out after 2.000 s (killed)"


class Lvs:
    def __init__(self, snap):
        self.snap = snap

    def snapshot(self):
        if isinstance(self.snap, Exception):
            raise self.snap
        return self.snap


@pytest.mark.parametrize("snap, want", [
    ({"virtual_servers": [{"virtual_server": "a"}], "errors": []}, [{"virtual_server": "a"}]),
    ({"errors": ["x"]}, []),
])
def test_snapshot_virtual_servers_from_the_manager(snap, want):
    assert status.snapshot(daemon_for_snapshot(master_node(), lvs=Lvs(snap)))["virtual_servers"] == want


def test_a_failing_virtual_server_snapshot_does_not_break_the_status(caplog):
    with caplog.at_level(logging.ERROR, logger="chimeha.runtime"):
        snap = status.snapshot(daemon_for_snapshot(master_node(), lvs=Lvs(RuntimeError("lvs bug"))))
    assert snap["virtual_servers"] == [] and snap["instances"]["VI_1"]["state"] == "MASTER"
    assert "virtual servers: snapshot failed" in caplog.text


def test_snapshot_bgp_section_and_node_level_drops():
    d = daemon_for_snapshot(master_node(), bgp=SimpleNamespace(snapshot=lambda: {"announced": ["10.0.0.100/32"]}))
    d.node.receive_datagram(b"\x00", "10.0.0.9", "224.0.0.18", 255, 4, "lo", 101.0)  # too short for any VRID
    snap = status.snapshot(d)
    assert snap["bgp"] == {"announced": ["10.0.0.100/32"]} and snap["drops_by_reason"] == {"length": 1}


def test_reload_outcome_as_dict_is_the_control_socket_answer():
    o = status.ReloadOutcome(False, ("a.conf:3: error: x",), "invalid configuration", 5.0)
    assert o.as_dict() == {"ok": False, "diagnostics": ["a.conf:3: error: x"], "message": "invalid configuration"}
    assert o.plan is None

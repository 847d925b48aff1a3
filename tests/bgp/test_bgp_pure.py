"""chimeha_bgp block, announce policy and FRR rendering (pure; no speaker needed)."""

import json

from chimeha.bgp import frr, policy
from chimeha.config import loads
from chimeha.config.build_bgp import build_bgp
from chimeha.lab.bgp import director_config

VS = """virtual_server 192.168.60.10 80 {
    lb_algo mh
    protocol TCP
    real_server 10.0.0.21 80 {
    }
}
vrrp_instance VI {
    interface eth0
    virtual_router_id 7
    virtual_ipaddress {
        192.168.70.5/32
    }
}
"""


def _bgp(body: str):
    res = loads(VS + "chimeha_bgp {\n" + body + "}\n", "b.conf")
    return res, build_bgp(res.config, []) if res.config else None


def _codes(res):
    return {(d.line, d.code) for d in res.diagnostics if d.code not in ("protocol-missing",)}


GOOD = """    local_as 65010
    router_id 10.0.0.11
    hold_time 3
    neighbor 10.0.0.1 {
        remote_as 65000
    }
    announce {
        192.168.60.10
        192.168.70.5
    }
    community 65010:100 no-export
    med 20
    prepend 2
"""


def test_good_block_builds_typed_model_without_diagnostics():
    res, bgp = _bgp(GOOD)
    assert not [d for d in res.diagnostics if "chimeha_bgp" in d.message]
    assert bgp.local_as == 65010 and bgp.hold_time == 3 and bgp.keepalive == 1
    assert [n.address for n in bgp.neighbors] == ["10.0.0.1"] and bgp.neighbors[0].remote_as == 65000
    assert [a.prefix for a in bgp.announce] == ["192.168.60.10/32", "192.168.70.5/32"]
    assert bgp.communities == ("65010:100", "no-export") and bgp.med == 20 and bgp.prepend == 2


def test_bad_as_unknown_vip_and_bad_community_have_file_line():
    res, bgp = _bgp("""    local_as 0
    neighbor 10.0.0.1 {
        remote_as 23456
    }
    announce {
        192.168.99.9
    }
    community 70000:1
""")
    assert bgp is None and not res.ok
    got = {(d.file, d.line, d.code) for d in res.errors}
    # VS is 13 lines, then "chimeha_bgp {" on line 14
    assert ("b.conf", 15, "bad-as") in got
    assert ("b.conf", 17, "bad-as") in got  # AS_TRANS
    assert ("b.conf", 20, "unknown-vip") in got
    assert ("b.conf", 22, "bad-community") in got


def test_missing_neighbor_and_local_as_are_errors_typo_is_a_hint():
    res, bgp = _bgp("    local_ass 65010\n")
    assert bgp is None
    codes = {d.code for d in res.diagnostics}
    assert "missing-parameter" in codes
    hint = [d for d in res.diagnostics if d.code == "unknown-keyword"]
    assert hint and "did you mean 'local_as'" in hint[0].message


def test_hold_time_rules():
    res, _ = _bgp(GOOD.replace("hold_time 3", "hold_time 2"))
    assert any(d.code == "bad-number" and "RFC 4271" in d.message for d in res.errors)
    res, _ = _bgp(GOOD + "    keepalive 5\n")
    assert any(d.code == "bad-number" and "below hold_time" in d.message for d in res.errors)


def test_bfd_is_typed_and_rendered_as_neighbor_bfd():
    res, bgp = _bgp(GOOD.replace("remote_as 65000", "remote_as 65000\n        bfd"))
    assert bgp is not None and bgp.neighbors[0].bfd
    assert not [d for d in res.diagnostics if "chimeha_bgp" in d.message]  # implemented: no warning
    assert frr.wants_bfd(bgp) and " neighbor 10.0.0.1 bfd" in frr.render_config(bgp).splitlines()
    _, plain = _bgp(GOOD)
    assert not frr.wants_bfd(plain) and "bfd" not in frr.render_config(plain)


def test_lab_director_config_is_clean():
    res = loads(director_config("10.99.1.11"), "d1.conf")
    assert res.ok, [str(d) for d in res.diagnostics]
    assert build_bgp(res.config, []).announce[0].address == "10.99.60.10"


def _decide(quorum, states, stopping=False):
    res, bgp = _bgp(GOOD)
    by_vs, by_inst = policy.inputs(res.config, quorum, states)
    return policy.decide(bgp, by_vs, by_inst, stopping=stopping)


def test_policy_follows_quorum_and_vrrp_state():
    d = _decide({"TCP 192.168.60.10:80": True}, {"VI": "MASTER"})
    assert d.announce == {"192.168.60.10/32", "192.168.70.5/32"}
    d = _decide({"TCP 192.168.60.10:80": False}, {"VI": "MASTER"})
    assert d.announce == {"192.168.70.5/32"}
    assert "no quorum" in d.withheld["192.168.60.10/32"]
    d = _decide({"TCP 192.168.60.10:80": True}, {"VI": "FAULT"})
    assert d.announce == {"192.168.60.10/32"} and "FAULT" in d.withheld["192.168.70.5/32"]
    # a virtual server not reconciled yet counts as without quorum
    assert _decide({}, {"VI": "BACKUP"}).announce == frozenset()


def test_policy_withdraws_everything_when_stopping():
    d = _decide({"TCP 192.168.60.10:80": True}, {"VI": "MASTER"}, stopping=True)
    assert d.announce == frozenset() and set(d.withheld) == {"192.168.60.10/32", "192.168.70.5/32"}


def test_changes_diff():
    assert policy.changes(frozenset({"a", "b"}), {"b", "c"}) == (["a"], ["c"])


def test_frr_config_and_commands():
    _, bgp = _bgp(GOOD)
    text = frr.render_config(bgp)
    assert "router bgp 65010" in text and "timers bgp 1 3" in text
    assert " neighbor 10.0.0.1 remote-as 65000" in text
    assert " set community 65010:100 no-export" in text and " set metric 20" in text
    assert " set as-path prepend 65010 65010" in text
    assert "\n  network" not in text  # prefixes are added live, by the policy
    cmds = frr.change_commands(bgp, ["192.168.60.10/32"], ["192.168.70.5/32"])
    assert cmds[:2] == ["configure terminal", "router bgp 65010"]
    assert cmds.index("no network 192.168.70.5/32") < cmds.index("network 192.168.60.10/32")
    assert frr.change_commands(bgp, [], []) == []


def test_frr_json_parsing():
    rib = {"routes": {"192.168.60.10/32": [{"peerId": "(unspec)", "path": "", "origin": "IGP"}],
                      "10.1.0.0/16": [{"peerId": "10.0.0.1", "path": "65000", "origin": "IGP"}]}}
    assert frr.originated(json.dumps(rib)) == {"192.168.60.10/32"}
    assert frr.originated("not json") == set()
    summary = {"ipv4Unicast": {"peers": {"10.0.0.1": {"state": "Established", "remoteAs": 65000, "pfxSnt": 1}}}}
    s = frr.sessions(json.dumps(summary))
    assert s["10.0.0.1"]["state"] == "Established" and s["10.0.0.1"]["prefixes_sent"] == 1


SCRIPT = "vrrp_script chk_app {\n    script \"/usr/bin/pgrep chime-server\"\n}\n"


def test_track_script_gates_every_announcement():
    res = loads(SCRIPT + VS + "chimeha_bgp {\n" + GOOD + "    track_script {\n        chk_app\n    }\n}\n", "b.conf")
    bgp = build_bgp(res.config, [])
    assert bgp.track_scripts == ("chk_app",)
    by_vs, by_inst = policy.inputs(res.config, {"TCP 192.168.60.10:80": True}, {"VI": "MASTER"})
    up = policy.decide(bgp, by_vs, by_inst, scripts={"chk_app": True})
    assert up.announce == {"192.168.60.10/32", "192.168.70.5/32"}
    for scripts in ({"chk_app": False}, {}, None):  # failing, not run yet, no tracker
        down = policy.decide(bgp, by_vs, by_inst, scripts=scripts)
        assert down.announce == frozenset()
        assert down.withheld["192.168.60.10/32"] == "vrrp_script chk_app failing"


def test_track_script_must_name_a_defined_vrrp_script():
    res = loads(VS + "chimeha_bgp {\n" + GOOD + "    track_script {\n        chk_nope\n    }\n}\n", "b.conf")
    errs = [(d.file, d.line, d.code) for d in res.errors]
    assert ("b.conf", 28, "unknown-script") in errs, [str(d) for d in res.diagnostics]  # the track_script line


def test_a_script_only_bgp_tracks_is_run_by_the_trackers():
    from chimeha.runtime.tracking import Trackers

    res = loads(SCRIPT + VS + "chimeha_bgp {\n" + GOOD + "    track_script chk_app\n}\n", "b.conf")
    t = Trackers(res.config, [], lambda *a: None)
    assert "chk_app" in t._wanted["script"]  # noqa: SLF001 - what start() will run

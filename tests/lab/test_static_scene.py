"""The static scene's config builder: every entry lands in its block, in order; empty blocks are left out."""

import chimeha.config
from chimeha.lab.static_scene import VIP, static_config


def _load(text):
    res = chimeha.config.loads(text, "static.conf")
    assert res.ok, [str(d) for d in res.diagnostics]
    return res.config


def test_entries_land_in_their_blocks_in_order():
    cfg = _load(static_config(
        static_ipaddress=["10.77.0.5/24 dev eth0"],
        static_routes=["10.78.0.0/24 via 10.77.0.1 dev eth0", "10.79.0.0/24 dev eth0 table 100"],
        static_rules=["from 10.77.0.0/24 table 100 preference 200", "to 10.80.0.0/16 table 101"],
        virtual_routes=["10.81.0.0/24 dev eth0"],
        virtual_rules=["from 10.77.0.100 table 110 preference 500"]))
    assert [a.address for a in cfg.static_ipaddresses] == ["10.77.0.5/24"]
    assert [r.words[0] for r in cfg.static_routes] == ["10.78.0.0/24", "10.79.0.0/24"]
    assert [r.words[:2] for r in cfg.static_rules] == [("from", "10.77.0.0/24"), ("to", "10.80.0.0/16")]
    (inst,) = cfg.instances.values()
    assert (inst.name, inst.state, inst.virtual_router_id, inst.priority) == ("VI_1", "MASTER", 77, 200)
    assert (inst.version, inst.advert_int) == (3, 0.1)
    assert [v.ip for v in inst.virtual_ipaddresses] == [VIP]
    assert [r.words[0] for r in inst.virtual_routes] == ["10.81.0.0/24"]
    assert [r.words[-1] for r in inst.virtual_rules] == ["500"]


def test_empty_blocks_are_left_out():
    text = static_config(static_rules=["from 10.100.0.0/24 table 100 preference 1000"])
    assert "static_ipaddress" not in text and "static_routes" not in text and "virtual_rules" not in text
    cfg = _load(text)
    assert len(cfg.static_rules) == 1 and not cfg.static_routes and not cfg.static_ipaddresses

"""use_vmac / use_ipvlan: names, MACs and config errors (pure), the node's view of the link (fake clock)."""

import pytest

from chimeha.config import loads
from chimeha.vrrp import vmac as V
from chimeha.vrrp.events import (AddAddresses, InstanceSpec, RestoreLink, SendGratuitous, State, StateChanged)
from chimeha.vrrp.from_config import instance_specs
from chimeha.vrrp.node import VrrpNode


def test_rfc5798_virtual_mac_per_family():
    assert V.virtual_mac(1) == "00:00:5e:00:01:01"
    assert V.virtual_mac(255, 4) == "00:00:5e:00:01:ff"
    assert V.virtual_mac(77, 6) == "00:00:5e:00:02:4d"
    with pytest.raises(V.VmacError):
        V.virtual_mac(0)


def test_configured_mac_five_octets_take_the_vrid():
    assert V.mac_for(None, 10, 4) == "00:00:5e:00:01:0a"
    assert V.mac_for("02:11:22:33:44", 10, 4) == "02:11:22:33:44:0a"
    assert V.mac_for("02:11:22:33:44:", 10, 6) == "02:11:22:33:44:0a"
    assert V.mac_for("02:11:22:33:44:55", 10, 4) == "02:11:22:33:44:55"
    for bad, why in (("01:00:00:00:00:01", "multicast"), ("00:00:5e:00:01:07", "RFC 5798"),
                     ("00:00:5e:00:02", "RFC 5798"), ("02:11:22", "five or six"), ("02:zz:22:33:44:55", "invalid"),
                     ("02:111:22:33:44:55", "five or six")):
        with pytest.raises(V.VmacError, match=why):
            V.parse_mac(bad)


def test_default_names_follow_keepalived_create_vmac_name():
    assert V.default_name("vrrp", 7, 4, set()) == "vrrp.7"
    assert V.default_name("vrrp", 7, 4, {"vrrp.7"}) == "vrrp1.7"
    assert V.default_name("vrrp", 7, 4, {"vrrp.7", "vrrp1.7"}) == "vrrp2.7"
    assert V.default_name("vrrp", 7, 6, {"vrrp.7"}) == "vrrp6.7"
    assert V.default_name("vrrp", 7, 6, {"vrrp.7", "vrrp6.7", "vrrp1.7", "vrrp2.7", "vrrp3.7", "vrrp4.7",
                                         "vrrp5.7"}) == "vrrp7.7"
    long = V.default_name("averyveryverylongprefix", 255, 4, set())
    assert long == "averyveryve.255" and len(long) == V.IFNAMSIZ - 1


def test_interface_names_as_the_kernel_checks_them():
    assert V.valid_name("vrrp.1") and V.valid_name("a" * 15)
    for bad in ("", ".", "..", "a" * 16, "a/b", "a:b", "a b"):
        assert not V.valid_name(bad)


def test_ipvlan_words():
    assert V.ipvlan_words(["ipv1", "10.0.0.5/24", "private"]) == ("ipv1", "10.0.0.5/24", "private")
    assert V.ipvlan_words(["fe80::5"]) == (None, "fe80::5/128", "bridge")
    with pytest.raises(V.VmacError, match="already"):
        V.ipvlan_words(["bridge", "vepa"])


CONF = """global_defs {{
  {globals}
}}
vrrp_instance A {{
  interface eth0
  virtual_router_id 7
  {a}
  virtual_ipaddress {{
    10.0.0.1/24
  }}
}}
vrrp_instance B {{
  interface eth1
  virtual_router_id {vrid_b}
  {b}
  virtual_ipaddress {{
    10.0.1.1/24
  }}
}}
"""


def load(a="use_vmac", b="", vrid_b=7, globals="router_id x"):
    return loads(CONF.format(a=a, b=b, vrid_b=vrid_b, globals=globals), "v.conf")


def errors(r):
    return [(d.line, d.code, d.message) for d in r.diagnostics if d.severity == "error"]


def test_default_names_and_prefix_in_file_order():
    r = load(b="use_vmac", globals="vmac_prefix vx")
    assert r.ok, r.diagnostics
    a, b = r.config.instances["A"].vmac, r.config.instances["B"].vmac
    assert (a.name, b.name) == ("vx.7", "vx1.7")  # one VRID on two interfaces: keepalived's second name
    assert not [d for d in r.diagnostics if d.code == "not-implemented"]


def test_spec_of_a_vmac_instance():
    r = load(a="use_vmac vrrp77", b="use_vmac\n  vmac_xmit_base")
    a, b = instance_specs(r.config)
    assert a.link == V.Link("macvlan", "vrrp77", "eth0", 4, mac="00:00:5e:00:01:07")
    assert (a.interface, a.vip_interface, a.source_interface) == ("vrrp77", "vrrp77", "eth0")
    assert b.link.xmit_base and (b.interface, b.vip_interface, b.source_interface) == ("eth1", "vrrp.7", "eth1")


def test_unicast_peers_imply_xmit_base_as_in_keepalived():
    r = load(a="use_vmac\n  unicast_peer {\n    10.0.0.9\n  }")
    a = instance_specs(r.config)[0]
    assert a.link.xmit_base and a.interface == "eth0"
    assert any(d.code == "vmac-unicast" and d.line == 7 for d in r.diagnostics)


def test_name_too_long_is_an_error_at_its_line():
    r = load(a="use_vmac averyveryverylongname")
    assert errors(r) == [(7, "invalid-value", "use_vmac: VMAC interface name 'averyveryverylongname' is too long "
                                               "(at most 15 characters) or has invalid characters ('/', ':', "
                                               "white space)")]
    assert str(r.diagnostics[-1]).startswith("v.conf:7: error:")


def test_bad_mac_is_an_error_at_its_line():
    r = load(a="use_vmac 00:00:5e:00:01:09")
    assert [(ln, code) for ln, code, _ in errors(r)] == [(7, "invalid-value")]
    assert "RFC 5798" in errors(r)[0][2]


def test_two_instances_naming_one_link_is_an_error():
    r = load(a="use_vmac vm0", b="use_vmac vm0", vrid_b=8)
    assert [(ln, code) for ln, code, _ in errors(r)] == [(15, "vmac-name-clash")]
    assert "already a link of vrrp_instance A (v.conf:4)" in errors(r)[0][2]


def test_vrid_based_mac_collision_on_one_interface_is_an_error():
    # Five octets: the VRID completes them; 02:..:08 is then given twice on eth0.
    r = loads(CONF.replace("interface eth1", "interface eth0").format(
        a="use_vmac 02:00:00:00:00:08", b="use_vmac 02:00:00:00:00", vrid_b=8, globals="router_id x"), "v.conf")
    assert [(ln, code) for ln, code, _ in errors(r)] == [(15, "vmac-mac-clash")]
    msg = errors(r)[0][2]
    assert "02:00:00:00:00:08 on eth0 is already the VMAC of vrrp_instance A" in msg


def test_same_vrid_on_two_interfaces_is_no_collision():
    assert load(b="use_vmac").ok


def test_ipv4_ipvlan_needs_an_address():
    r = load(a="use_ipvlan ipv0")
    assert [(ln, code) for ln, code, _ in errors(r)] == [(7, "missing-parameter")]
    r = load(a="use_ipvlan ipv0 10.0.0.5/24 vepa")
    assert r.ok
    s = instance_specs(r.config)[0]
    assert s.link.kind == "ipvlan" and s.link.mode == "vepa" and s.primary_address == "10.0.0.5"
    assert s.source_configured and s.interface == "ipv0"


def test_round_trip_renders_the_link_as_written():
    from chimeha.config.render import render

    r = load(a="use_vmac 02:00:00:00:00", b="use_ipvlan ipv1 10.0.1.5/24 private")
    text = render(r.config)
    assert "use_vmac 02:00:00:00:00\n" in text and "use_ipvlan ipv1 10.0.1.5/24 private\n" in text
    again = loads(text, "r.conf")
    assert again.config.instances["A"].vmac.name == "vrrp.7"


# -- the node --------------------------------------------------------------------------------

LINK = V.Link("macvlan", "vrrp.51", "eth0", 4, mac="00:00:5e:00:01:33")


def spec(link=LINK, prio=200):
    return InstanceSpec("VI_1", 51, prio, interface=link.socket_interface, link=link, primary_address="",
                        advert_addresses=("10.0.0.100",), virtual_ipaddresses=("10.0.0.100",), garp_master_delay=0)


def started(node):
    node.set_interface("eth0", True, 2, 0.0, sources={4: "10.0.0.1"})
    node.set_interface("vrrp.51", True, 5, 0.0, sources={})
    node.start(0.0)
    while node.state("VI_1") is not State.MASTER:
        node.handle_timer(node.get_timer())
    return node.pop_actions()


def test_vips_and_gratuitous_arps_go_on_the_link_with_the_base_address_as_source():
    node = VrrpNode([spec()])
    acts = started(node)
    assert node.spec("VI_1").primary_address == "10.0.0.1"  # the base's: a VMAC has none of its own
    garp = next(a for a in acts if isinstance(a, SendGratuitous))
    assert garp.interface == "vrrp.51" and any(isinstance(a, AddAddresses) for a in acts)
    assert node.socket_keys() == {("vrrp.51", 4): {"224.0.0.18"}}


def test_a_deleted_link_faults_the_instance_and_is_restored():
    node = VrrpNode([spec()])
    started(node)
    node.set_interface("vrrp.51", False, None, 10.0)
    acts = node.pop_actions()
    assert [a for a in acts if isinstance(a, RestoreLink)] == [RestoreLink("VI_1", LINK, 10.0)]
    assert [(a.old, a.new) for a in acts if isinstance(a, StateChanged)] == [(State.MASTER, State.FAULT)]
    node.set_interface("vrrp.51", True, 8, 10.2, sources={})
    acts = node.pop_actions()
    assert node.state("VI_1") is State.BACKUP and not [a for a in acts if isinstance(a, RestoreLink)]


def test_the_link_goes_with_its_base_and_comes_back_after_it():
    node = VrrpNode([spec()])
    started(node)
    node.set_interface("eth0", False, None, 10.0)
    node.set_interface("vrrp.51", False, None, 10.0)  # the kernel deletes a macvlan with its lower device
    acts = node.pop_actions()
    assert not [a for a in acts if isinstance(a, RestoreLink)]  # nothing to build it on
    assert node.state("VI_1") is State.FAULT
    node.set_interface("eth0", True, 9, 12.0, sources={4: "10.0.0.1"})
    acts = node.pop_actions()
    assert [a.link.name for a in acts if isinstance(a, RestoreLink)] == ["vrrp.51"]
    assert node.state("VI_1") is State.FAULT  # until the link is back


def test_xmit_base_sends_on_the_base_but_still_needs_the_link():
    link = V.Link("macvlan", "vrrp.51", "eth0", 4, mac="00:00:5e:00:01:33", xmit_base=True)
    node = VrrpNode([spec(link)])
    started(node)
    assert node.socket_keys() == {("eth0", 4): {"224.0.0.18"}}
    node.set_interface("vrrp.51", False, None, 10.0)
    assert node.state("VI_1") is State.FAULT


def test_reload_that_adds_use_vmac_moves_the_vips_of_a_master():
    from chimeha.vrrp.events import RemoveAddresses

    plain = InstanceSpec("VI_1", 51, 200, interface="eth0", primary_address="10.0.0.1",
                         advert_addresses=("10.0.0.100",), virtual_ipaddresses=("10.0.0.100",), garp_master_delay=0)
    node = VrrpNode([plain])
    node.set_interface("eth0", True, 2, 0.0, sources={4: "10.0.0.1"})
    node.start(0.0)
    while node.state("VI_1") is not State.MASTER:
        node.handle_timer(node.get_timer())
    node.pop_actions()
    plan = node.plan_reload([spec()])
    assert plan.changed == ("VI_1",) and plan.vips_removed == (("VI_1", ("10.0.0.100",)),)
    node.apply_reload(plan, 5.0)
    acts = node.pop_actions()
    kinds = [type(a).__name__ for a in acts if isinstance(a, (RemoveAddresses, AddAddresses, SendGratuitous))]
    assert kinds[:2] == ["RemoveAddresses", "AddAddresses"] and node.state("VI_1") is State.MASTER
    assert next(a for a in acts if isinstance(a, SendGratuitous)).interface == "vrrp.51"


def test_vips_are_placed_as_keepalived_places_them():
    r = loads("""vrrp_instance A {
  interface eth0
  virtual_router_id 7
  use_vmac
  virtual_ipaddress {
    10.0.0.1/24
    10.0.0.2/24 dev eth0
    10.0.9.3/24 dev eth1
  }
  virtual_ipaddress_excluded {
    10.0.0.4/24
    fd00::5/64
  }
}
""", "p.conf")
    s = instance_specs(r.config)[0]
    assert [v.dev for v in s.virtual_ipaddresses] == ["vrrp.7", "vrrp.7", "eth1"]
    # the other family's eVIP stays on the interface itself: the VMAC's MAC is an IPv4 one
    assert [v.dev for v in s.virtual_ipaddresses_excluded] == ["vrrp.7", "eth0"]
    assert s.link.ipv6  # IPv6 stays on for it


def test_use_vmac_addr_and_a_vips_use_vmac_get_vmacs_of_their_own():
    r = loads("""global_defs {
  vmac_addr_prefix va
}
vrrp_instance A {
  interface eth0
  virtual_router_id 7
  use_vmac
  use_vmac_addr
  virtual_ipaddress {
    10.0.0.1/24
    10.0.9.3/24 dev eth1
    10.0.9.4/24 dev eth1
  }
  virtual_ipaddress_excluded {
    fd00::5/64
  }
}
vrrp_instance B {
  interface eth0
  virtual_router_id 8
  virtual_ipaddress {
    10.0.0.8/24 use_vmac
    10.0.0.9/24 dev eth0 use_vmac
    10.0.0.10/24
  }
}
""", "p.conf")
    assert r.ok and not [d for d in r.diagnostics if d.code == "not-implemented"], r.diagnostics
    a, b = instance_specs(r.config)
    assert [v.dev for v in a.virtual_ipaddresses] == ["vrrp.7", "va.7", "va.7"]
    assert [v.dev for v in a.virtual_ipaddresses_excluded] == ["va6.7"]  # other family: a VMAC on eth0
    assert [(lk.name, lk.base, lk.mac) for lk in a.extra_links] == [
        ("va.7", "eth1", "00:00:5e:00:01:07"), ("va6.7", "eth0", "00:00:5e:00:02:07")]
    assert set(a.interfaces()) == {"vrrp.7", "eth0", "va.7", "va6.7"}
    # no use_vmac on the instance: adverts on eth0, the flagged VIPs on a VMAC
    assert b.link is None and b.interface == "eth0"
    assert [v.dev for v in b.virtual_ipaddresses] == ["va.8", "va.8", None]
    assert [lk.name for lk in b.links()] == ["va.8"]


def test_vip_use_vmac_is_a_flag_and_renders_back():
    from chimeha.config.render import render

    r = loads("vrrp_instance A {\n  interface eth0\n  virtual_router_id 7\n  use_vmac_addr\n"
              "  virtual_ipaddress {\n    10.0.0.8/24 use_vmac dev eth1\n  }\n}\n", "f.conf")
    va = r.config.instances["A"].virtual_ipaddresses[0]
    assert (va.use_vmac, va.dev) == ("", "eth1")  # 'dev' is not eaten as a name
    assert any(d.code == "vmac-both" and d.line == 6 for d in r.diagnostics)
    text = render(r.config)
    assert "use_vmac_addr\n" in text and "use_vmac" in text.split("10.0.0.8/24", 1)[1].split("\n")[0]


def test_a_vips_vmac_and_another_instances_on_one_interface_with_one_mac_collide():
    r = loads("""vrrp_instance A {
  interface eth0
  virtual_router_id 7
  virtual_ipaddress {
    10.0.9.3/24 dev eth1 use_vmac
  }
}
vrrp_instance B {
  interface eth1
  virtual_router_id 7
  use_vmac
  virtual_ipaddress {
    10.0.9.7/24
  }
}
""", "c.conf")
    errs = [(d.line, d.code) for d in r.diagnostics if d.severity == "error"]
    assert errs == [(11, "vmac-mac-clash")], r.diagnostics


def test_simulate_cuts_the_cable_not_the_vmac(capsys, tmp_path):
    from chimeha.cli import main

    text = ("vrrp_instance VI_1 {{\n  state BACKUP\n  interface eth0\n  virtual_router_id 77\n  priority {p}\n"
            "  use_vmac\n  virtual_ipaddress {{\n    10.78.0.100/24\n  }}\n}}\n")
    for name, prio in (("a", 200), ("b", 100)):
        (tmp_path / f"{name}.conf").write_text(text.format(p=prio))
    rc = main(["simulate", "-f", str(tmp_path / "a.conf"), "-f", str(tmp_path / "b.conf"), "--event", "5 a link-down",
               "--until", "12"])
    out = capsys.readouterr().out
    assert rc == 0 and "a/VI_1       MASTER -> FAULT: track_interface eth0 failed" in out
    assert "VI_1: a=FAULT, b=MASTER" in out


GARP_EXTRA = """global_defs {{
  {g}
}}
vrrp_instance A {{
  interface eth0
  virtual_router_id 3
  {a}
  virtual_ipaddress {{
    10.0.0.1/24
    10.0.1.1/24 dev eth1
    10.0.1.2/24 dev eth1
    10.0.2.1/24 dev eth2
  }}
}}
"""


def test_garp_extra_if_picks_one_vip_per_interface_that_sends_no_adverts():
    from chimeha.config.render import render

    r = loads(GARP_EXTRA.format(g="router_id x", a="use_vmac\n  use_vmac_addr\n  garp_extra_if 50"), "g.conf")
    s = instance_specs(r.config)[0]
    assert s.garp_extra_interval == 50.0
    assert [(v.address, v.dev) for v in s.garp_extra_addresses] == [("10.0.1.1/24", "vrrp1.3"), ("10.0.2.1/24", "vrrp2.3")]
    assert "garp_extra_if 50\n" in render(r.config)
    # no VMACs elsewhere: only with 'all' (the global default here), on the plain other interfaces
    r = loads(GARP_EXTRA.format(g="vrrp_garp_extra_if all 60", a=""), "g.conf")
    s = instance_specs(r.config)[0]
    assert s.garp_extra_interval == 60.0 and [v.dev for v in s.garp_extra_addresses] == ["eth1", "eth2"]
    r = loads(GARP_EXTRA.format(g="vrrp_garp_extra_if 60", a=""), "g.conf")
    assert instance_specs(r.config)[0].garp_extra_interval == 0.0  # keepalived: no extra VMAC, off
    r = loads(GARP_EXTRA.format(g="router_id x", a="vmac_garp_intvl 90000"), "g.conf")
    assert [(d.line, d.code) for d in r.diagnostics if d.severity == "error"] == [(7, "invalid-value")]


def test_garp_extra_if_sends_one_round_every_interval_while_master():
    vips = ("10.0.1.1/24",)
    s = InstanceSpec("VI_1", 3, 200, interface="eth0", primary_address="10.0.0.1", advert_addresses=("10.0.0.1",),
                     virtual_ipaddresses=("10.0.0.1",), garp_master_delay=0, garp_extra_interval=50.0,
                     garp_extra_addresses=vips)
    node = VrrpNode([s])
    node.start(0.0)
    while node.state("VI_1") is not State.MASTER:
        node.handle_timer(node.get_timer())
    became = node.instance_status("VI_1").last_change.at
    extra = []
    while node.get_timer() < became + 120:
        t = node.get_timer()
        node.handle_timer(t)
        extra += [(round(a.at - became, 3), a.addresses, a.count) for a in node.pop_actions()
                  if isinstance(a, SendGratuitous) and a.why == "extra-if"]
    assert extra == [(50.0, vips, 1), (100.0, vips, 1)]

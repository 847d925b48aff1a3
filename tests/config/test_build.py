"""The typed model: keepalived's defaults, inheritance, every checker kind, positions."""

from __future__ import annotations

from chimeha.config import loads
from chimeha.config.model import (BfdCheck, DnsCheck, FileCheck, HttpCheck, MiscCheck, PingCheck, SmtpCheck,
                                  TcpCheck, UdpCheck, VrrpInstance)

MIN = """vrrp_instance V {
    interface eth0
    virtual_router_id 7
    virtual_ipaddress {
        10.0.0.1
    }
%s}
"""


def one(text: str, **kw):
    r = loads(text, filename="t.conf", config_id="n1", **kw)
    assert r.config is not None
    return r


def test_instance_defaults_are_keepalived_defaults():
    r = one(MIN % "")
    assert r.diagnostics == []
    i = r.config.instances["V"]
    assert (i.state, i.priority, i.advert_int, i.version, i.family) == ("BACKUP", 100, 1.0, 2, 4)
    assert (i.nopreempt, i.preempt_delay, i.auth_type, i.auth_pass) == (False, 0.0, None, None)
    assert (i.garp_master_delay, i.garp_master_repeat, i.garp_master_refresh, i.garp_master_refresh_repeat) == (5.0, 5, 0.0, 1)
    assert (i.down_timer_adverts, i.use_vmac, i.accept, i.unicast_peers) == (3, None, None, ())
    assert i.where.line == 1 and i.positions["virtual_router_id"].line == 3


def test_global_version_and_garp_are_inherited_unless_overridden():
    g = "global_defs {\n    vrrp_version 3\n    vrrp_garp_master_delay 2\n    vrrp_garp_master_repeat 1\n}\n"
    i = one(g + MIN % "").config.instances["V"]
    assert (i.version, i.garp_master_delay, i.garp_master_repeat) == (3, 2.0, 1)
    i = one(g + MIN % "    version 2\n    garp_master_delay 7\n").config.instances["V"]
    assert (i.version, i.garp_master_delay, i.garp_master_repeat) == (2, 7.0, 1)


def test_advert_int_units_per_version():
    r = one(MIN % "    version 3\n    advert_int 0.25\n")
    assert r.diagnostics == [] and r.config.instances["V"].advert_int == 0.25
    r = one(MIN % "    version 3\n    advert_int 0.255\n")
    assert r.config.instances["V"].advert_int == 0.26 and [d.code for d in r.diagnostics] == ["advert-int-rounded"]
    r = one(MIN % "    advert_int 2.6\n")
    assert r.config.instances["V"].advert_int == 3.0 and [(d.line, d.code) for d in r.diagnostics] == [(7, "advert-int-rounded")]


def test_ipv6_family_and_cidr_vips():
    r = one(MIN.replace("10.0.0.1", "fd00::1 dev eth1 label x scope link -nodad no_track") % "")
    i = r.config.instances["V"]
    (vip,) = i.virtual_ipaddresses
    assert i.family == 6 and vip.address == "fd00::1/128" and vip.ip == "fd00::1"
    assert (vip.dev, vip.label, vip.scope, vip.nodad, vip.no_track) == ("eth1", "x", "link", True, True)


def test_did_you_mean():
    r = one(MIN % "    priorty 50\n    advert_intt 2\n    zzz 1\n")
    msgs = [d.message for d in r.diagnostics]
    assert "did you mean 'priority'?" in msgs[0] and "did you mean 'advert_int'?" in msgs[1]
    assert "did you mean" not in msgs[2]
    assert isinstance(r.config.instances["V"], VrrpInstance) and r.config.instances["V"].priority == 100


def test_tracking_objects_and_refs():
    text = """global_defs {
    enable_script_security
}
vrrp_script s1 {
    script "/bin/true"
    interval 0.5
    timeout 3
    weight -20 reverse
    rise 2
    fall 4
    user root wheel
    init_fail
}
track_file f1 {
    file "/run/f1"
    weight -5
    init_file 3 overwrite
}
vrrp_track_process p1 {
    process chime-server --api
    param_match partial
    quorum 2
    delay 1.5
}
vrrp_sync_group G {
    group {
        V
    }
    notify_master "/bin/g.sh master"
    sync_group_tracking_weight
}
""" + MIN % "    track_script {\n        s1 weight 10\n    }\n    track_file {\n        f1\n    }\n    track_process {\n        p1 weight -3 reverse\n    }\n    track_interface {\n        eth1 weight 5\n    }\n"
    r = one(text)
    # vrrp_track_process delay is implemented (chimeha.track.process); a sync group of one
    # instance is reported as keepalived -t does.
    assert [(d.line, d.code) for d in r.diagnostics] == [(26, "sync-group-one-member")]
    c = r.config
    s = c.vrrp_scripts["s1"]
    assert (s.script, s.interval, s.timeout, s.weight, s.weight_reverse, s.rise, s.fall, s.user, s.group, s.init_fail) == (
        ("/bin/true",), 0.5, 3.0, -20, True, 2, 4, "root", "wheel", True)
    f = c.track_files["f1"]
    assert (f.file, f.weight, f.init_file, f.init_file_value, f.init_file_overwrite) == ("/run/f1", -5, True, 3, True)
    p = c.track_processes["p1"]
    assert (p.process, p.param_match, p.quorum, p.delay) == (("chime-server", "--api"), "partial", 2, 1.5)
    assert (p.fork_delay, p.terminate_delay) == (1.5, 1.5)  # delay sets both
    g = c.sync_groups["G"]
    assert g.group == ("V",) and g.notify_master == ("/bin/g.sh", "master")
    i = c.instances["V"]
    assert [(t.name, t.weight, t.reverse) for t in i.track_scripts] == [("s1", 10, False)]
    assert [(t.name, t.weight) for t in i.track_files] == [("f1", None)]
    assert [(t.name, t.weight, t.reverse) for t in i.track_processes] == [("p1", -3, True)]
    assert [(t.name, t.weight) for t in i.track_interfaces] == [("eth1", 5)]


LVS = """virtual_server_group G1 {
    10.1.0.1-5 80
    fd00::1-a 443
    fwmark 9
}
virtual_server group G1 {
    protocol TCP
    lb_algo wrr
    lb_kind TUN
    weight 4
    sorry_server 10.2.0.9 8080
    real_server 10.2.0.1 80 {
        weight
        notify_up "/bin/up.sh x" root
        HTTP_GET {
            url {
                path /health
                status_code 200-299
                digest abc
            }
            connect_port 8080
            nb_get_retry 3
        }
        SSL_GET {
            url {
                path /
            }
            enable_sni
        }
        MISC_CHECK {
            misc_path "/bin/check --fast"
            misc_timeout 4
            user nobody
        }
        SMTP_CHECK {
            helo_name mx.example
            host {
                connect_ip 10.2.0.2
                connect_port 25
            }
        }
        DNS_CHECK {
            type AAAA
            name example.org
        }
        UDP_CHECK {
            payload ping
            require_reply pong
        }
        PING_CHECK {
            delay_loop 2
        }
        FILE_CHECK {
            track_file f1
            weight 2 reverse
        }
        BFD_CHECK {
            name b1
        }
        TCP_CHECK {
            connect_timeout 1.5
            bindto 10.2.0.100
            warmup 3
        }
    }
}
virtual_server fwmark 9 {
    real_server 10.2.0.3 {
    }
}
virtual_server 10.1.0.100 53 {
    real_server 10.2.0.4 53 {
    }
}
track_file f1 {
    file /run/f1
}
"""


def test_virtual_servers_and_every_checker():
    r = one(LVS)
    assert sorted((d.line, d.code) for d in r.diagnostics) == [
        (13, "bare-weight"), (22, "deprecated"), (57, "unknown-bfd"),  # BFD_CHECK is implemented (issue 12)
        (71, "protocol-missing")]
    c = r.config
    g = c.virtual_server_groups["G1"]
    assert [(m.address, m.range_end, m.port, m.fwmark) for m in g.members] == [
        ("10.1.0.1", 5, 80, None), ("fd00::1", 10, 443, None), (None, None, None, 9)]
    vs, fw, udp = c.virtual_servers
    assert (vs.group, vs.key, vs.lb_algo, vs.lb_kind, vs.weight, vs.protocol) == ("G1", "group G1", "wrr", "TUN", 4, "TCP")
    assert (vs.sorry_server.address, vs.sorry_server.port) == ("10.2.0.9", 8080)
    (rs,) = vs.real_servers
    assert rs.weight == 4  # bare weight -> the virtual server's weight
    assert rs.notify_up == ("/bin/up.sh", "x") and rs.script_users == {"notify_up": ("root",)}
    kinds = [type(ch) for ch in rs.checkers]
    assert kinds == [HttpCheck, HttpCheck, MiscCheck, SmtpCheck, DnsCheck, UdpCheck, PingCheck, FileCheck, BfdCheck, TcpCheck]
    http, ssl, misc, smtp, dns, udpc, ping, filec, bfd, tcp = rs.checkers
    assert (http.kind, http.ssl, http.connect_port, http.retry) == ("HTTP_GET", False, 8080, 3)
    assert [(u.path, u.status_code, u.digest) for u in http.urls] == [("/health", ("200-299",), "abc")]
    assert (ssl.kind, ssl.ssl, ssl.enable_sni, ssl.urls[0].path) == ("SSL_GET", True, True, "/")
    assert (misc.misc_path, misc.misc_timeout, misc.user) == (("/bin/check", "--fast"), 4.0, "nobody")
    assert smtp.helo_name == "mx.example" and smtp.hosts[0].connect_ip == "10.2.0.2" and smtp.hosts[0].connect_port == 25
    assert (dns.type, dns.name) == ("AAAA", "example.org")
    assert (udpc.payload, udpc.require_reply) == ("ping", "pong")
    assert ping.delay_loop == 2.0
    assert (filec.track_file, filec.weight, filec.weight_reverse) == ("f1", 2, True)
    assert bfd.name == "b1"
    assert (tcp.connect_timeout, tcp.bindto, tcp.warmup, tcp.where.line) == (1.5, "10.2.0.100", 3.0, 60)
    assert (fw.fwmark, fw.key, fw.real_servers[0].port, fw.real_servers[0].weight) == (9, "fwmark 9", None, 1)
    assert udp.protocol == "UDP" and not udp.protocol_explicit  # keepalived's silent default


def test_static_and_generic_blocks():
    text = """static_ipaddress {
    192.168.1.1/24 dev eth0 scope link
}
static_routes {
    10.0.0.0/8 via 192.168.1.254 dev eth0
}
static_rules {
    from 192.168.1.0/24 table 5 preference 10
}
garp_group {
    garp_interval 0.1
    interfaces {
        eth0
    }
}
bfd_instance b1 {
    neighbor_ip 10.0.0.2
    bogus 1
}
"""
    r = one(text)
    # Static addresses/routes/rules act (runtime/static.py), garp_group (issue 10) and
    # bfd_instance (issue 12) too; the unknown keyword is still reported.
    assert [(d.line, d.code) for d in r.diagnostics] == [(18, "unknown-keyword")]
    c = r.config
    assert c.static_ipaddresses[0].address == "192.168.1.1/24" and c.static_ipaddresses[0].dev == "eth0"
    assert (c.static_routes[0].destination, c.static_routes[0].via, c.static_routes[0].dev) == ("10.0.0.0/8", "192.168.1.254", "eth0")
    assert c.static_rules[0].words == ("from", "192.168.1.0/24", "table", "5", "preference", "10")
    assert (c.static_rules[0].spec.src, c.static_rules[0].spec.table, c.static_rules[0].spec.priority) == (
        "192.168.1.0/24", 5, 10)
    garp, bfd = c.blocks
    assert garp.keyword == "garp_group" and [ch.keyword for ch in garp.children] == ["garp_interval", "interfaces"]
    assert garp.children[1].children[0].keyword == "eth0"
    assert (bfd.keyword, bfd.args, bfd.where.line) == ("bfd_instance", ("b1",), 16)


def test_known_but_untyped_keywords_are_kept_in_options():
    r = one("global_defs {\n    max_auto_priority 20\n    vrrp_iptables IN OUT\n}\n" + MIN % "    promote_secondaries\n")
    assert [(d.line, d.code) for d in r.diagnostics] == [(2, "no-effect"), (3, "no-effect"), (11, "not-implemented")]
    assert r.config.global_defs.options == {"max_auto_priority": (("20",),), "vrrp_iptables": (("IN", "OUT"),)}
    assert r.config.instances["V"].options == {"promote_secondaries": ((),)}


def test_model_is_frozen_and_hashable():
    import dataclasses

    import pytest

    c = one(LVS).config
    vs = c.virtual_servers[0]
    nodes = [c, vs, *vs.real_servers, *vs.real_servers[0].checkers, *c.virtual_server_groups.values()]
    assert len({hash(n) for n in nodes}) == len(nodes)
    with pytest.raises(dataclasses.FrozenInstanceError):
        vs.protocol = "UDP"


def test_v3_advert_int_rounds_half_up_like_keepalived():
    # round() would give 0.12 (banker's rounding of 12.5); keepalived rounds half up.
    r = one(MIN.replace("virtual_router_id", "version 3\n    advert_int 0.125\n    virtual_router_id") % "")
    assert r.config.instances["V"].advert_int == 0.13
    assert [d.code for d in r.diagnostics] == ["advert-int-rounded"]

"""The typed ip rule of virtual_rules / static_rules (keepalived 2.2.7's grammar, measured with -t)."""

from __future__ import annotations

import pytest

from chimeha.config import loads
from chimeha.config.rules import Names, RuleError, RuleSpec, parse_rule, read_names


def spec(line: str) -> RuleSpec:
    s, warnings = parse_rule(line.split())
    assert warnings == []
    return s


def test_selectors_and_table_action():
    s = spec("from 10.1.0.0/24 to 10.2.0.0/16 table 100 preference 200 iif eth0 oif eth1 tos 0x10")
    assert (s.family, s.src, s.dst, s.action, s.table, s.priority) == (4, "10.1.0.0/24", "10.2.0.0/16", "table", 100,
                                                                       200)
    assert (s.iif, s.oif, s.tos, s.protocol, s.no_track) == ("eth0", "eth1", 16, 18, False)


def test_a_bare_address_is_a_host_and_all_is_no_selector():
    assert spec("from 10.1.0.9 table 5 priority 1").src == "10.1.0.9/32"
    s = spec("from all to any lookup 5 order 1")
    assert s.src is None and s.dst is None and s.table == 5 and s.priority == 1


def test_table_names_come_from_rt_tables():
    assert spec("from all table main preference 3").table == 254
    names = Names({"main": 254, "isp2": 202}, {}, {})
    assert parse_rule("from all table isp2 preference 3".split(), names)[0].table == 202
    with pytest.raises(RuleError, match="routing table"):
        parse_rule("from all table isp3 preference 3".split(), names)
    with pytest.raises(RuleError, match="table 0"):
        spec("from all table 0 preference 3")


def test_read_names_parses_host_files():
    files = {"/etc/iproute2/rt_tables": "# c\n255 local\n202\tisp2 # x\nbad line here\n",
             "/etc/iproute2/rt_dsfield": "0x10 lowdelay\n", "/etc/protocols": "tcp 6 TCP\nmyproto 99 X\n"}
    names = read_names(files.get)
    assert names.tables["isp2"] == 202 and names.tables["main"] == 254
    assert names.dsfield == {"lowdelay": 16} and names.protocols["myproto"] == 99


@pytest.mark.parametrize("line,field,value", [
    ("fwmark 0x10/0xff table 5 preference 1", "fwmark", 16),
    ("fwmark 0x10/0xff table 5 preference 1", "fwmask", 255),
    ("fwmark 7 table 5 preference 1", "fwmask", None),
    ("uidrange 100-200 table 5 preference 1", "uidrange", (100, 200)),
    ("ipproto tcp dport 80-80 sport 1000-2000 table 5 preference 1", "ipproto", 6),
    ("ipproto 17 table 5 preference 1", "ipproto", 17),
    ("ipproto tcp dport 80-80 sport 1000-2000 table 5 preference 1", "dport", (80, 80)),
    ("ipproto tcp dport 80-80 sport 1000-2000 table 5 preference 1", "sport", (1000, 2000)),
    ("realms 3/4 table 5 preference 1", "realms", (3 << 16) | 4),
    ("realms 4 table 5 preference 1", "realms", 4),
    ("to 10.0.0.0/8 suppress_prefixlength 0 table 5 preference 1", "suppress_prefixlen", 0),
    ("sup_group 3 table 5 preference 1", "suppress_ifgroup", 3),
    ("tunnel-id 42 table 5 preference 1", "tunnel_id", 42),
    ("not from all table 5 preference 1", "invert", True),
    ("from 10.0.0.1 blackhole preference 1", "action", "blackhole"),
    ("from 10.0.0.1 type prohibit preference 1", "action", "prohibit"),
    ("from 10.0.0.1 unreachable preference 1", "action", "unreachable"),
    ("from all nop preference 1", "action", "nop"),
    ("from all goto 400 preference 1", "goto", 400),
    ("l3mdev preference 1", "action", "l3mdev"),
])
def test_each_keyword(line, field, value):
    assert getattr(spec(line), field) == value


def test_inet6_swallows_the_next_word_as_keepalived_does():
    s = spec("inet6 x from fd00::/64 table 106 preference 9")
    assert (s.family, s.src) == (6, "fd00::/64")
    with pytest.raises(RuleError, match="unknown rule option 'fd00::/64'"):
        spec("inet6 from fd00::/64 table 106 preference 9")  # 2.2.7 steps over "from"
    assert spec("to fd01::/64 table 106 preference 9").family == 6


def test_protocol_18_unless_no_track():
    assert spec("from all table 5 preference 1").protocol == 18
    s, warnings = parse_rule("from all table 5 preference 1 protocol 99".split())
    assert s.protocol == 18 and warnings[0][0] == "rule-protocol-reset" and "reset to 18" in warnings[0][1]
    assert spec("from all table 5 preference 1 protocol 99 no_track").protocol == 99
    assert spec("from all table 5 preference 1 no_track").protocol is None


@pytest.mark.parametrize("line,message", [
    ("from 10.0.0.0/8 table 5 pref 1", "unknown rule option 'pref'"),
    ("ipproto tcp dport 80 table 5 preference 1", "single value"),
    ("from 10.0.0.0/8 preference 1", "no action"),
    ("from all table 5 blackhole preference 1", "more than one"),
    ("from all goto 5 preference 10", "not below the goto target"),
    ("from all goto 5", "without a preference"),
    ("from 10.0.0.0/8 to fd00::/64 table 5 preference 1", "mixes IPv4 and IPv6"),
    ("inet6 x realms 3 table 5 preference 1", "realms is only valid for IPv4"),
    ("realms 3 blackhole preference 1", "need a table action"),
    ("from 10.0.0./8 table 5 preference 1", "not an address"),
    ("from all table 5 preference -1", "preference"),
    ("from all table 5 preference 4294967296", "out of range"),
    ("fwmark 0x1/zz table 5 preference 1", "fwmark mask"),
    ("ipproto sctp table 5 preference 1", "ipproto"),
    ("from all table 5 preference 1 type unicast", "invalid rule action 'unicast'"),
    ("from all table", "missing its value"),
    ("uidrange 100 table 5 preference 1", "uidrange"),
])
def test_rules_keepalived_refuses(line, message):
    with pytest.raises(RuleError, match=message):
        parse_rule(line.split())


CONF = """static_rules {
    to 10.84.0.0/24 table 5
    inet6 x from fd00::/64 table 106
    from all table 5 preference 77
}
vrrp_instance VI_1 {
    state MASTER
    interface eth0
    virtual_router_id 77
    priority 200
    virtual_ipaddress {
        10.77.0.100/24
    }
    virtual_rules {
        to 10.85.0.0/24 table 5
        from 10.77.0.0/24 table main pref 9
    }
}
"""


def test_automatic_preferences_count_down_per_family_in_file_order():
    r = loads(CONF, "k.conf")
    static = [x.spec.priority for x in r.config.static_rules]
    virtual = [x.spec.priority for x in r.config.instances["VI_1"].virtual_rules]
    # measured with keepalived 2.2.7: 16384 then 16383 for the IPv4 rules, 16384 for the IPv6 one
    assert static == [16384, 16384, 77] and virtual == [16383]
    assert [(d.line, d.code) for d in r.diagnostics if d.code == "rule-no-preference"] == [(2, "rule-no-preference"),
                                                                                         (3, "rule-no-preference"),
                                                                                         (15, "rule-no-preference")]
    assert "16383" in next(d.message for d in r.diagnostics if d.line == 15)


def test_a_refused_rule_is_an_error_at_its_line_and_left_out():
    r = loads(CONF, "k.conf")
    assert not r.ok
    (err,) = r.errors
    assert (err.file, err.line, err.code) == ("k.conf", 16, "invalid-rule") and "'pref'" in err.message
    assert len(r.config.instances["VI_1"].virtual_rules) == 1


def test_numbering_restarts_for_every_load():
    assert [x.spec.priority for x in loads(CONF, "k.conf").config.static_rules] == \
        [x.spec.priority for x in loads(CONF, "k.conf").config.static_rules]


def test_track_group_only_in_static_rules_and_not_implemented():
    s, warnings = parse_rule("iif eth0 table 5 preference 1 track_group g1".split(), static=True)
    assert s.iif == "eth0" and [c for c, _ in warnings] == ["not-implemented"]
    with pytest.raises(RuleError, match="unknown rule option 'track_group'"):
        parse_rule("iif eth0 table 5 preference 1 track_group g1".split())  # 2.2.7: not in virtual_rules

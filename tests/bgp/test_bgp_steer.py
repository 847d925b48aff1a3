"""``forwarding direct``: the stateless steering table (pure) and the keyword."""

from chimeha.bgp import steer
from chimeha.config import loads
from chimeha.config.build_bgp import build_bgp
from chimeha.lvs.backends.nft import JHASH_SEED, schedule_slots
from chimeha.lvs.types import Destination, Service, ServiceKey

BLOCK = """virtual_server 192.168.60.10 80 {
    lb_algo mh
    protocol TCP
    real_server 10.0.0.21 80 {
    }
}
chimeha_bgp {
    local_as 65010
    neighbor 10.0.0.1 {
        remote_as 65000
    }
    announce {
        192.168.60.10
    }
    forwarding %s
}
"""


def _svc(addr="192.168.60.10", port=80, sched="mh", reals=("10.0.0.21", "10.0.0.22"), rport=80, flags=()):
    key = ServiceKey("TCP", addr, port)
    dests = tuple(Destination(r, rport) for r in reals)
    return key, Service(key, sched, destinations=dests, flags=tuple(flags))


def test_keyword_defaults_to_nat_accepts_direct_and_names_a_bad_value():
    res = loads(BLOCK % "direct", "s.conf")
    assert build_bgp(res.config, []).forwarding == "direct"
    res = loads((BLOCK % "nat").replace("    forwarding nat\n", ""), "s.conf")
    assert build_bgp(res.config, []).forwarding == "nat"
    diags: list = []
    res = loads(BLOCK % "dsr", "s.conf")
    assert build_bgp(res.config, diags) is None
    (d,) = [d for d in diags if d.code == "bad-value"]
    assert d.file == "s.conf" and d.line == 15 and "'dsr'" in d.message and "nat, direct" in d.message


def test_maglev_table_of_the_nat_path_is_steered_with_the_same_seed():
    key, svc = _svc()
    found, skipped = steer.services({"192.168.60.10"}, {key: svc}, schedule_slots)
    assert skipped == [] and len(found) == 1
    s = found[0]
    assert len(s.slots) == 251 and set(s.slots) == {"10.0.0.21", "10.0.0.22"}
    # the same Maglev table the NAT path programs: slot i goes to the same real server
    _, nat_slots = schedule_slots(svc)
    assert list(s.slots) == [d.address for d in nat_slots]
    text = steer.render("eth0", "eth1", found, JHASH_SEED)
    rule = next(line for line in text.splitlines() if "fwd ip to" in line)
    assert rule.strip().startswith("ip daddr 192.168.60.10 tcp dport 80 fwd ip to jhash ip saddr mod 251 seed 0x63686d61")
    assert rule.count(" : 10.0.0.2") == 251 and rule.endswith('device "eth1"')
    assert 'hook ingress device "eth0"' in text


def test_dead_slots_are_left_out_and_nothing_live_means_no_table():
    s = steer.Steered("192.168.60.10", "tcp", 80, ("10.0.0.21", None, "10.0.0.22"))
    rule = next(line for line in steer.render("eth0", "eth0", [s], 1).splitlines() if "fwd" in line)
    assert "map { 0 : 10.0.0.21, 2 : 10.0.0.22 }" in rule and "mod 3" in rule
    empty = steer.render("eth0", "eth0", [steer.Steered("192.168.60.10", "tcp", 80, (None, None))], 1)
    assert empty.splitlines() == [f"table netdev {steer.TABLE} {{}}", f"delete table netdev {steer.TABLE}"]


def test_what_cannot_be_steered_says_why():
    services = dict([_svc(sched="rr"), _svc(port=443, rport=8443), _svc(addr="192.168.60.99"),
                     _svc(port=8080, rport=8080, flags=("port",))])
    found, skipped = steer.services({"192.168.60.10"}, services, schedule_slots)
    assert [(s.port, s.by_port) for s in found] == [(8080, True)]  # mh-port: hash the source port too
    assert any(":80/tcp: lb_algo rr is not a hash" in w for w in skipped)
    assert any(":443/tcp: a real server listens on another port" in w for w in skipped)
    assert not any("192.168.60.99" in w for w in skipped)  # not announced: not our business
    rule = next(line for line in steer.render("e", "e", found, 1).splitlines() if "fwd" in line)
    assert "jhash ip saddr . th sport mod 251" in rule

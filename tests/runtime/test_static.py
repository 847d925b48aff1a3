"""static_ipaddress / static_routes / static_rules: the desired set, its diff, and the order of the work."""

from __future__ import annotations

import concurrent.futures

from chimeha.config import loads
from chimeha.net.addresses import rule_request
from chimeha.config.rules import parse_rule
from chimeha.runtime.static import StaticManager, StaticSet, apply, desired, diff

BASE = """static_ipaddress {
    10.77.0.5/24 dev eth1
    10.77.0.6/24
}
static_routes {
    10.78.0.0/24 via 10.77.0.1 dev eth1
    10.79.0.0/24 dev eth1 table 100
}
static_rules {
    from 10.77.0.0/24 table 100 preference 200
    to 10.80.0.0/16 table 101
}
"""

CHANGED = """static_ipaddress {
    10.77.0.5/24 dev eth1
}
static_routes {
    10.78.0.0/24 via 10.77.0.1 dev eth1
    10.81.0.0/24 dev eth1
}
static_rules {
    # moved and renumbered lines are the same rule
    from 10.77.0.0/24 table 100 preference 200
    fwmark 7 table 102 preference 300
}
"""


def config(text):
    r = loads(text, "k.conf")
    assert r.config is not None
    return r.config


def test_desired_reads_every_line_with_keepalived_defaults():
    want = desired(config(BASE))
    assert [str(a) for a in want.addresses] == ["10.77.0.5/24 dev eth1", "10.77.0.6/24 dev eth0"]  # eth0: keepalived's
    assert [(r.dst, r.gateway, r.dev, r.table, r.protocol) for r in want.routes] == [
        ("10.78.0.0/24", "10.77.0.1", "eth1", None, 18), ("10.79.0.0/24", None, "eth1", 100, 18)]
    assert [(r.src, r.dst, r.table, r.priority) for r in want.rules] == [
        ("10.77.0.0/24", None, 100, 200), (None, "10.80.0.0/16", 101, 16384)]
    assert desired(None) == StaticSet() and not desired(config("global_defs {\n}\n"))


def test_diff_removes_what_left_adds_what_is_new_leaves_the_rest():
    old, new = desired(config(BASE)), desired(config(CHANGED))
    remove, add = diff(old, new)
    assert [a.address for a in remove.addresses] == ["10.77.0.6"] and add.addresses == ()
    assert [r.dst for r in remove.routes] == ["10.79.0.0/24"] and [r.dst for r in add.routes] == ["10.81.0.0/24"]
    assert [r.dst for r in remove.rules] == ["10.80.0.0/16"] and [r.fwmark for r in add.rules] == [7]
    assert diff(new, new) == (StaticSet(), StaticSet())
    assert diff(old, StaticSet()) == (old, StaticSet()) and diff(StaticSet(), old) == (StaticSet(), old)


class Recorder:
    """An AddressManager double: records calls; 'fail' objects raise like a refused netlink request."""

    def __init__(self, fail=()):
        self.calls, self.fail = [], set(fail)

    def _do(self, what, op, obj):
        self.calls.append((what, op, str(obj)))
        if str(obj) in self.fail:
            from chimeha.net.addresses import AddressError
            raise AddressError("refused")
        return True

    def add(self, vip):
        return self._do("address", "add", vip)

    def delete(self, vip):
        return self._do("address", "del", vip)

    def route(self, op, r):
        return self._do("route", op, r)

    def rule(self, op, r):
        return self._do("rule", op, r)


def test_apply_deletes_rules_routes_addresses_then_adds_addresses_routes_rules():
    old, new = desired(config(BASE)), desired(config(CHANGED))
    remove, add = diff(old, new)
    m = Recorder()
    assert apply(m, remove, add) == 5
    assert [(w, op) for w, op, _ in m.calls] == [("rule", "del"), ("route", "del"), ("address", "del"),
                                                ("route", "add"), ("rule", "add")]


def test_a_refused_line_is_logged_and_the_others_go_on(caplog):
    want = desired(config(BASE))
    m = Recorder(fail={"10.77.0.5/24 dev eth1"})
    assert apply(m, StaticSet(), want) == want.count() - 1
    assert len(m.calls) == want.count()
    assert "static address 10.77.0.5/24 dev eth1: refused" in caplog.text


class Worker:
    """The netlink worker's submit(), run at once on a Recorder."""

    def __init__(self):
        self.m = Recorder()

    def submit(self, fn, *args):
        fut = concurrent.futures.Future()
        fut.set_result(fn(self.m, *args))
        return fut


def test_manager_start_reload_stop():
    w = Worker()
    mgr = StaticManager(w)
    mgr.start(config(BASE))
    assert len(w.m.calls) == 6 and all(op == "add" for _, op, _ in w.m.calls)
    w.m.calls.clear()
    mgr.reload(config(BASE))  # unchanged: nothing to do
    assert w.m.calls == []
    mgr.reload(config(CHANGED))
    assert len(w.m.calls) == 5
    w.m.calls.clear()
    assert mgr.stop().result() == 5  # everything CHANGED holds
    assert all(op == "del" for _, op, _ in w.m.calls) and mgr.held == StaticSet()
    assert mgr.stop() is None


def test_manager_without_static_lines_never_uses_the_worker():
    mgr = StaticManager(object())  # no submit(): a test double of the daemon
    mgr.start(config("global_defs {\n}\n"))
    mgr.reload(config("global_defs {\n}\n"))
    assert mgr.stop() is None


def test_rule_request_carries_what_keepalived_sends():
    spec = parse_rule("not from 10.1.0.0/24 to 10.2.0.0/16 iif eth0 oif eth1 fwmark 0x10/0xff uidrange 1-2 "
                      "ipproto tcp sport 1-2 dport 80-81 tos 0x10 table 1000 preference 5".split())[0]
    kw = rule_request(spec)
    assert kw == {"family": 2, "action": 1, "priority": 5, "tos": 16, "table": 1000, "flags": 2,
                  "src": "10.1.0.0", "src_len": 24, "dst": "10.2.0.0", "dst_len": 16, "fwmark": 16, "fwmask": 255,
                  "iifname": "eth0", "oifname": "eth1", "protocol": 18, "ip_proto": 6,
                  "uid_range": "1:2", "sport_range": "1:2", "dport_range": "80:81"}
    assert rule_request(parse_rule("from all goto 9 preference 5 no_track".split())[0]) == {
        "family": 2, "action": 2, "priority": 5, "tos": 0, "goto": 9}
    six = rule_request(parse_rule("to fd00::/64 l3mdev preference 5".split())[0])
    assert (six["family"], six["l3mdev"], six["dst"], six["dst_len"], "table" in six) == (10, 1, "fd00::", 64, False)


def test_routes_carry_protocol_18_unless_no_track():
    from types import SimpleNamespace

    from chimeha.net.addresses import route_from_config

    def proto(*words):
        return route_from_config(SimpleNamespace(words=words, destination=words[0], via=None, dev="eth0")).protocol
    assert proto("10.0.0.0/8", "dev", "eth0") == 18
    assert proto("10.0.0.0/8", "dev", "eth0", "protocol", "static") == 18  # keepalived resets it (and says so)
    assert proto("10.0.0.0/8", "dev", "eth0", "protocol", "static", "no_track") == 4
    assert proto("10.0.0.0/8", "dev", "eth0", "protocol", "99", "no_track") == 99
    assert proto("10.0.0.0/8", "dev", "eth0", "no_track") is None

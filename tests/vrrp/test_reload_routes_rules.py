"""virtual_rules follow MASTER like virtual_routes; a reloaded MASTER drops only what left its block (fake clock)."""

from chimeha.config.model import Route, Where
from chimeha.config.rules import parse_rule
from chimeha.vrrp.events import AddAddresses, InstanceSpec, RemoveAddresses, SendAdvert, State
from chimeha.vrrp.node import VrrpNode


def rule(line):
    return parse_rule(line.split())[0]


def route(dest, line=1):
    return Route((dest, "dev", "eth0"), Where("k.conf", line), dest, None, "eth0")


R1, R2 = rule("from 10.0.0.0/24 table 5 preference 10"), rule("to 10.9.0.0/16 table 6 preference 11")


def spec(routes=(), rules=(), prio=100, vip="10.0.0.100/32"):
    return InstanceSpec("VI_1", 51, prio, interface="eth0", primary_address="10.0.0.1", advert_addresses=(vip,),
                        virtual_ipaddresses=(vip,), virtual_routes=tuple(routes), virtual_rules=tuple(rules))


def master(node):
    node.start(0.0)
    node.handle_timer(node.get_timer())
    acts = node.pop_actions()
    assert node.state("VI_1") is State.MASTER
    return acts


def test_rules_are_added_with_the_vips_and_removed_when_leaving_master():
    node = VrrpNode([spec(rules=(R1, R2))])
    (add,) = [a for a in master(node) if isinstance(a, AddAddresses)]
    assert add.rules == (R1, R2)
    node.shutdown(5.0)
    (rem,) = [a for a in node.pop_actions() if isinstance(a, RemoveAddresses)]
    assert rem.rules == (R1, R2) and rem.addresses == ("10.0.0.100/32",)


def test_reload_of_a_master_deletes_lost_routes_and_rules_keeps_the_vip():
    node = VrrpNode([spec(routes=(route("10.1.0.0/24"), route("10.2.0.0/24")), rules=(R1, R2))])
    master(node)
    R3 = rule("fwmark 7 table 7 preference 12")
    # 10.2.0.0/24 moved to another line (not a change), 10.1.0.0/24 and R1 left, R3 is new.
    new = spec(routes=(route("10.2.0.0/24", line=30), route("10.3.0.0/24")), rules=(R2, R3), prio=120)
    plan = node.plan_reload([new])
    assert plan.changed == ("VI_1",) and plan.vips_removed == ()
    (name, routes, rules), = plan.routes_removed
    assert name == "VI_1" and [r.destination for r in routes] == ["10.1.0.0/24"] and rules == (R1,)
    node.apply_reload(plan, 6.0)
    acts = node.pop_actions()
    assert node.state("VI_1") is State.MASTER
    assert not any(isinstance(a, SendAdvert) and a.priority == 0 for a in acts)
    (rem,) = [a for a in acts if isinstance(a, RemoveAddresses)]
    assert rem.addresses == () and [r.destination for r in rem.routes] == ["10.1.0.0/24"] and rem.rules == (R1,)
    (add,) = [a for a in acts if isinstance(a, AddAddresses)]
    assert acts.index(rem) < acts.index(add)  # old ones go before the new ones are added
    assert add.rules == (R2, R3) and [r.destination for r in add.routes] == ["10.2.0.0/24", "10.3.0.0/24"]
    assert node.owned_vips() == {"10.0.0.100"}


def test_reload_of_a_backup_touches_no_route_or_rule():
    node = VrrpNode([spec(routes=(route("10.1.0.0/24"),), rules=(R1,))])
    node.start(0.0)
    node.pop_actions()
    plan = node.plan_reload([spec(rules=(R2,))])
    assert plan.routes_removed == ()
    node.apply_reload(plan, 1.0)
    assert not [a for a in node.pop_actions() if isinstance(a, (AddAddresses, RemoveAddresses))]


def test_an_unchanged_master_is_kept_as_it_is():
    node = VrrpNode([spec(routes=(route("10.1.0.0/24"),), rules=(R1,))])
    master(node)
    plan = node.plan_reload([spec(routes=(route("10.1.0.0/24", line=99),), rules=(rule(
        "from 10.0.0.0/24 table 5 preference 10"),))])
    assert plan.kept == ("VI_1",) and plan.routes_removed == ()
